//! The `loadbalancing` exporter between real vigil processes: a front agent routes over three
//! backend agents (each an `otlp` receiver writing a file). Every span of a trace lands on one
//! backend; a backend killed with SIGKILL and started again loses nothing, because its share
//! waits in the front's queue for that backend; the `dns` resolver follows a real name; the `k8s`
//! resolver follows a Service's EndpointSlices on the API-server double (tests/src/k8s_api.rs: no
//! cluster can run here), moving only the share of an endpoint that joins or leaves, and keeping its
//! backends across a dropped watch and a `410 Gone` re-list.

#[path = "support/otlp_http.rs"]
mod otlp_http;

use opentelemetry_proto::tonic::trace::v1::Span;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vigil_tests::{eventually, free_port, read_json_lines, Agent};

const START: Duration = Duration::from_secs(60);
const ARRIVE: Duration = Duration::from_secs(90);

/// A backend: OTLP/gRPC on `127.0.0.1:<grpc>` (or `[::1]`), spans appended to `out` (a restarted
/// backend keeps what it wrote before).
fn backend(dir: &Path, name: &str, host: &str, grpc: u16, out: &Path) -> Agent {
    let health = free_port();
    let yaml = format!(
        "receivers:
  otlp:
    protocols:
      grpc:
        endpoint: {host}:{grpc}
exporters:
  file:
    path: {out}
    append: true
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      level: none
",
        out = out.display()
    );
    let mut a = Agent::with_config_file(dir, &format!("{name}.yaml"), &yaml, &[]);
    a.wait_healthy(health, START);
    a
}

/// The front: OTLP/HTTP on `http`, `loadbalancing` with `resolver` (YAML under `resolver:`).
fn front(dir: &Path, http: u16, resolver: &str) -> Agent {
    let health = free_port();
    let mut a =
        Agent::with_config_file(dir, "front.yaml", &front_yaml(http, health, resolver), &[]);
    a.wait_healthy(health, START);
    a
}

fn front_yaml(http: u16, health: u16, resolver: &str) -> String {
    format!(
        "receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
exporters:
  loadbalancing:
    routing_key: traceID
    protocol:
      otlp:
        tls:
          insecure: true
        timeout: 2s
        retry_on_failure:
          initial_interval: 100ms
          max_interval: 500ms
          max_elapsed_time: 0s
    resolver:
{resolver}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [loadbalancing]}}
  telemetry:
    metrics:
      level: none
"
    )
}

fn trace_id(t: u32) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[0] = 0x5a;
    id[8..12].copy_from_slice(&t.wrapping_mul(2_654_435_761).to_be_bytes());
    id[12..].copy_from_slice(&t.to_be_bytes());
    id
}

/// One export: span `span` (0, 1, 2…) of each trace in `traces`.
fn post(http: u16, traces: std::ops::Range<u32>, span: u8) {
    let spans = traces
        .map(|t| Span {
            trace_id: trace_id(t),
            span_id: vec![span + 1, 0, 0, 0, 0, 0, (t >> 8) as u8, t as u8],
            name: format!("op-{span}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_001_000_000,
            ..Default::default()
        })
        .collect();
    let status = otlp_http::post_spans(http, "checkout", spans);
    assert!(status.is_success(), "front answered {status}");
}

/// (trace id hex, span id hex) → the backends that wrote it, over every output file.
fn arrived(outs: &[PathBuf]) -> BTreeMap<(String, String), BTreeSet<usize>> {
    let mut seen: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
    for (i, out) in outs.iter().enumerate() {
        for line in read_json_lines(out) {
            for rs in line["resourceSpans"].as_array().into_iter().flatten() {
                for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                    for s in ss["spans"].as_array().into_iter().flatten() {
                        let key = (
                            s["traceId"].as_str().unwrap_or_default().to_lowercase(),
                            s["spanId"].as_str().unwrap_or_default().to_lowercase(),
                        );
                        seen.entry(key).or_default().insert(i);
                    }
                }
            }
        }
    }
    seen
}

/// trace → the backends that got any of its spans.
fn traces(seen: &BTreeMap<(String, String), BTreeSet<usize>>) -> BTreeMap<String, BTreeSet<usize>> {
    let mut t: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for ((trace, _), b) in seen {
        t.entry(trace.clone()).or_default().extend(b);
    }
    t
}

fn spans_in(out: &Path) -> usize {
    read_json_lines(out)
        .iter()
        .flat_map(|l| l["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .map(|ss| ss["spans"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn traces_stay_whole_and_a_killed_backend_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("b{i}.jsonl")))
        .collect();
    let mut backends: Vec<Option<Agent>> = (0..3)
        .map(|i| {
            Some(backend(
                dir.path(),
                &format!("b{i}"),
                "127.0.0.1",
                ports[i],
                &outs[i],
            ))
        })
        .collect();
    let http = free_port();
    let hostnames: String = ports
        .iter()
        .map(|p| format!("          - 127.0.0.1:{p}\n"))
        .collect();
    let _front = front(
        dir.path(),
        http,
        &format!("      static:\n        hostnames:\n{hostnames}"),
    );

    // 60 traces, each trace's three spans sent in three separate exports.
    for span in 0..3u8 {
        for chunk in 0..6u32 {
            post(http, chunk * 10..chunk * 10 + 10, span);
        }
    }
    let seen = eventually(ARRIVE, "180 spans on the backends", || {
        let s = arrived(&outs);
        (s.len() == 180).then_some(s)
    });
    let by_trace = traces(&seen);
    assert_eq!(by_trace.len(), 60);
    for (t, b) in &by_trace {
        assert_eq!(b.len(), 1, "trace {t} was split over backends {b:?}");
    }
    let used: BTreeSet<usize> = by_trace.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "60 traces use all three backends");

    // Backend 1 dies. Its share of the next spans (of the same traces and of new ones) waits in
    // the front's queue for it; the others keep receiving theirs.
    let victim = 1usize;
    let mut dead = backends[victim].take().unwrap();
    dead.signal(libc::SIGKILL);
    dead.wait_exit(Duration::from_secs(10));
    drop(dead);
    let victims_traces = by_trace.values().filter(|b| b.contains(&victim)).count();
    let before: Vec<usize> = outs.iter().map(|o| spans_in(o)).collect();
    for span in 3..5u8 {
        for chunk in 0..9u32 {
            post(http, chunk * 10..chunk * 10 + 10, span);
        }
    }
    // 60 old traces get 2 more spans each, 30 new traces get 2 each: 180 spans. The old traces
    // the live backends own get theirs while the victim is down.
    let live_old = 60 - victims_traces;
    eventually(ARRIVE, "the live backends' share", || {
        let s = arrived(&outs);
        let got = s
            .keys()
            .filter(|(t, _)| by_trace.get(t).is_some_and(|b| !b.contains(&victim)))
            .count();
        (got == live_old * 5).then_some(())
    });
    assert_eq!(
        spans_in(&outs[victim]),
        before[victim],
        "nothing reached the dead backend"
    );

    // It comes back on the same port; its queued share arrives, nothing is lost.
    backends[victim] = Some(backend(
        dir.path(),
        "b1-again",
        "127.0.0.1",
        ports[victim],
        &outs[victim],
    ));
    let seen = eventually(ARRIVE, "all 360 spans after the restart", || {
        let s = arrived(&outs);
        (s.len() == 360).then_some(s)
    });
    let by_trace = traces(&seen);
    assert_eq!(by_trace.len(), 90);
    for (t, b) in &by_trace {
        assert_eq!(b.len(), 1, "trace {t} was split over backends {b:?}");
    }
    let written: usize = outs.iter().map(|o| spans_in(o)).sum();
    println!(
        "loadbalancing: 360 distinct spans arrived, {written} written (duplicates: {})",
        written - 360
    );
}

#[test]
fn the_dns_resolver_follows_a_real_name() {
    // `localhost` through the system resolver: 127.0.0.1, and ::1 where the hosts file says so.
    // A backend listens on every address it resolves to, on one port.
    use std::net::ToSocketAddrs;
    let port = free_port();
    let addrs: BTreeSet<std::net::IpAddr> = ("localhost", port)
        .to_socket_addrs()
        .expect("resolve localhost")
        .map(|a| a.ip())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    let mut keep = Vec::new();
    for (i, ip) in addrs.iter().enumerate() {
        let host = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        let out = dir.path().join(format!("d{i}.jsonl"));
        keep.push(backend(dir.path(), &format!("d{i}"), &host, port, &out));
        outs.push(out);
    }
    let http = free_port();
    let _front = front(
        dir.path(),
        http,
        &format!("      dns:\n        hostname: localhost\n        port: \"{port}\"\n        interval: 1s\n"),
    );
    for chunk in 0..4u32 {
        post(http, chunk * 10..chunk * 10 + 10, 0);
        post(http, chunk * 10..chunk * 10 + 10, 1);
    }
    let seen = eventually(ARRIVE, "80 spans through the dns resolver", || {
        let s = arrived(&outs);
        (s.len() == 80).then_some(s)
    });
    for (t, b) in traces(&seen) {
        assert_eq!(b.len(), 1, "trace {t} split over {b:?}");
    }
    println!("dns resolver: localhost resolved to {addrs:?}");
}

/// Which backend got span `span` of each trace.
fn owners(seen: &BTreeMap<(String, String), BTreeSet<usize>>, span: u8) -> BTreeMap<String, usize> {
    let sid = format!("{:02x}", span + 1);
    seen.iter()
        .filter(|((_, s), _)| s.starts_with(&sid))
        .map(|((t, _), b)| (t.clone(), *b.iter().next().expect("a backend")))
        .collect()
}

#[test]
fn the_k8s_resolver_follows_endpoint_slices_and_moves_only_their_share() {
    use vigil_tests::k8s_api::{endpoint_slice, K8sApi, Kind, ENDPOINT_SLICE};
    const N: u32 = 300;
    let api = K8sApi::start();
    let slices = Kind::Other(&ENDPOINT_SLICE);
    let dir = tempfile::tempdir().unwrap();
    // Three pods of the gateway Service, one port, three loopback addresses.
    let port = free_port();
    let ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let mut outs = Vec::new();
    let mut keep = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let out = dir.path().join(format!("k{i}.jsonl"));
        keep.push(backend(dir.path(), &format!("k{i}"), ip, port, &out));
        outs.push(out);
    }
    // The third pod is not ready yet; a slice of another Service is not ours.
    api.apply(
        slices,
        endpoint_slice(
            "obs",
            "gw-a1b2c",
            "gw",
            &[(ips[0], None, true), (ips[1], None, true)],
            port,
        ),
    );
    api.apply(
        slices,
        endpoint_slice("obs", "gw-d3e4f", "gw", &[(ips[2], None, false)], port),
    );
    api.apply(
        slices,
        endpoint_slice(
            "obs",
            "other-x1",
            "other",
            &[("127.0.0.9", None, true)],
            port,
        ),
    );

    let http = free_port();
    let health = free_port();
    let kubeconfig = api.kubeconfig(dir.path());
    let cfg = vigil_tests::write_config(
        dir.path(),
        "front.yaml",
        &front_yaml(
            http,
            health,
            &format!("      k8s:\n        service: gw.obs\n        ports: [{port}]\n"),
        ),
    );
    let mut fr = Agent::start_env(
        tempfile::tempdir().unwrap(),
        &["--config".into(), cfg.display().to_string()],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    fr.wait_healthy(health, START);
    fr.wait_log("backends=2", START);

    // Two ready endpoints: every trace on one of them.
    post(http, 0..N, 0);
    let seen = eventually(ARRIVE, "span 0 of every trace", || {
        let s = arrived(&outs);
        (s.len() == N as usize).then_some(s)
    });
    let first = owners(&seen, 0);
    assert!(first.values().all(|b| *b < 2), "the not-ready pod got data");

    // The third pod turns ready: only the traces it now owns move, all to it.
    api.apply(
        slices,
        endpoint_slice("obs", "gw-d3e4f", "gw", &[(ips[2], None, true)], port),
    );
    fr.wait_log("backends=3", START);
    post(http, 0..N, 1);
    let seen = eventually(ARRIVE, "span 1 of every trace", || {
        let s = arrived(&outs);
        (s.len() == 2 * N as usize).then_some(s)
    });
    let second = owners(&seen, 1);
    let moved: Vec<_> = first.iter().filter(|(t, b)| second[*t] != **b).collect();
    assert!(
        moved.iter().all(|(t, _)| second[*t] == 2),
        "a trace moved between the old backends"
    );
    let share = moved.len() as f64 / N as f64;
    println!(
        "k8s resolver: {} of {N} traces moved to the pod that turned ready",
        moved.len()
    );
    assert!(
        (0.15..0.55).contains(&share),
        "the new backend took {share:.2} of the traces, expected about 1/3"
    );

    // A dropped watch, then etcd compaction (the next watch gets 410 Gone and re-lists): the ring
    // stays as it was throughout.
    let lists_before =
        api.count_requests(|r| r.contains("endpointslices") && !r.contains("watch=true"));
    api.drop_watches();
    post(http, 0..N, 2);
    api.compact();
    post(http, 0..N, 3);
    eventually(ARRIVE, "a re-list after 410 Gone", || {
        (api.count_requests(|r| r.contains("endpointslices") && !r.contains("watch=true"))
            > lists_before)
            .then_some(())
    });
    let seen = eventually(ARRIVE, "spans 2 and 3 of every trace", || {
        let s = arrived(&outs);
        (s.len() == 4 * N as usize).then_some(s)
    });
    for span in [2, 3] {
        assert_eq!(
            owners(&seen, span),
            second,
            "span {span}: the ring changed across the watch break"
        );
    }

    // The first pod leaves: only its traces move.
    api.apply(
        slices,
        endpoint_slice("obs", "gw-a1b2c", "gw", &[(ips[1], None, true)], port),
    );
    fr.wait_log("left=1", START);
    post(http, 0..N, 4);
    let seen = eventually(ARRIVE, "span 4 of every trace", || {
        let s = arrived(&outs);
        (s.len() == 5 * N as usize).then_some(s)
    });
    let last = owners(&seen, 4);
    for (t, b) in &second {
        if *b == 0 {
            assert_ne!(last[t], 0, "trace {t} still went to the pod that left");
        } else {
            assert_eq!(last[t], *b, "trace {t} moved though its backend stayed");
        }
    }
    for (t, b) in traces(&arrived(&outs)) {
        assert!(b.len() <= 3, "trace {t}: {b:?}");
    }
    drop(keep);
}
