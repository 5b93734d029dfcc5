//! vigil as a cluster-level gateway, end to end against the Kubernetes API-server double (no
//! cluster can run here; vigil_tests::k8s_api speaks the API's discovery, list/watch and
//! create/replace protocol): `k8sobjects` pulls and watches objects through a dropped watch and a
//! `410 Gone` without losing or doubling a change; `k8s_events` reports new Events as otelcol does;
//! an unknown resource fails the start; and of two vigil instances with `k8s_leader_elector` only
//! the leader runs the receiver, the other taking over when the leader is killed.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use vigil_tests::k8s_api::{self, K8sApi, Kind, Resource};
use vigil_tests::{free_port, otlp_attr, read_json_lines, Agent};

static WIDGETS: Resource = Resource {
    api_version: "example.com/v1",
    kind: "Widget",
    plural: "widgets",
    namespaced: true,
};

fn str_attr(attrs: &Value, key: &str) -> Option<String> {
    otlp_attr(attrs, key).and_then(|v| v["stringValue"].as_str().map(str::to_string))
}

/// Every log record in the file exporter's output, with its resource's attributes.
fn records(out: &Path) -> Vec<(Value, Value)> {
    let mut v = Vec::new();
    for line in read_json_lines(out) {
        for rl in line["resourceLogs"].as_array().cloned().unwrap_or_default() {
            let res = rl["resource"]["attributes"].clone();
            for sl in rl["scopeLogs"].as_array().cloned().unwrap_or_default() {
                for r in sl["logRecords"].as_array().cloned().unwrap_or_default() {
                    v.push((res.clone(), r));
                }
            }
        }
    }
    v
}

/// A kvlist body's value at `key`, as OTLP/JSON writes it.
fn kv<'a>(body: &'a Value, key: &str) -> Option<&'a Value> {
    body["kvlistValue"]["values"]
        .as_array()?
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| &e["value"])
}

fn start(api: &K8sApi, dir: &tempfile::TempDir, receivers: &str, health: u16, out: &Path) -> Agent {
    let kubeconfig = api.kubeconfig(dir.path());
    let cfg = format!(
        "receivers:
{receivers}
{exporter}  pipelines:
    logs:
      receivers: [{names}]
      exporters: [file]
  telemetry:
    metrics:
      level: none
",
        exporter = vigil_tests::file_exporter_and_health(out, health),
        names = receivers
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
            .map(|l| l.trim().trim_end_matches(':'))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let path = vigil_tests::write_config(dir.path(), "vigil.yaml", &cfg);
    Agent::start_env(
        tempfile::tempdir().expect("run dir"),
        &["--config".into(), path.display().to_string()],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    )
}

#[test]
fn k8sobjects_pulls_and_watches_without_losing_or_doubling_a_change() {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("shop"));
    for p in ["web-1", "web-2"] {
        api.apply(
            Kind::Pod,
            k8s_api::pod("shop", p, "node-a", "10.1.0.1", k8s_api::Owner::None),
        );
    }
    api.register(&WIDGETS);
    let dir = tempfile::tempdir().expect("dir");
    let (health, out) = (free_port(), dir.path().join("out.json"));
    let mut agent = start(
        &api,
        &dir,
        "  k8sobjects:
    auth_type: kubeConfig
    objects:
      - name: pods
        mode: pull
      - name: widgets
        group: example.com
        mode: watch
        namespaces: [shop]",
        health,
        &out,
    );
    agent.wait_healthy(health, Duration::from_secs(60));

    // Pull: one record per pod, the body the object, as otelcol writes it.
    let pulled = vigil_tests::eventually(Duration::from_secs(30), "two pulled pods", || {
        let pods: Vec<_> = records(&out)
            .into_iter()
            .filter(|(_, r)| {
                str_attr(&r["attributes"], "k8s.resource.name").as_deref() == Some("pods")
            })
            .collect();
        (pods.len() >= 2).then_some(pods)
    });
    assert_eq!(pulled.len(), 2);
    for (res, r) in &pulled {
        assert_eq!(str_attr(res, "k8s.namespace.name").as_deref(), Some("shop"));
        assert_eq!(
            kv(&r["body"], "kind").and_then(|k| k["stringValue"].as_str()),
            Some("Pod")
        );
        assert!(r["observedTimeUnixNano"].as_str().is_some_and(|t| t != "0"));
        assert!(
            otlp_attr(&r["attributes"], "event.name").is_none(),
            "pulls are not events"
        );
    }

    // Watch: wait for the watch to be open, then change widgets.
    vigil_tests::eventually(Duration::from_secs(30), "the widget watch", || {
        api.requests()
            .iter()
            .any(|r| r.contains("/widgets") && r.contains("watch=true"))
            .then_some(())
    });
    let w = |name: &str, size: i64| {
        k8s_api::custom(&WIDGETS, "shop", name, serde_json::json!({"size": size}))
    };
    api.apply(Kind::Other(&WIDGETS), w("w1", 1));
    api.apply(Kind::Other(&WIDGETS), w("w1", 2));
    // Another namespace is not watched.
    api.apply(
        Kind::Other(&WIDGETS),
        k8s_api::custom(&WIDGETS, "other", "x", serde_json::json!({})),
    );
    wait_changes(&out, 2);
    // A dropped watch: resumed from the last version, nothing replayed twice.
    api.drop_watches();
    api.apply(Kind::Other(&WIDGETS), w("w2", 1));
    wait_changes(&out, 3);
    // Changes the watch never hears of, then 410 Gone: the re-list reports them.
    api.delete_silently(Kind::Other(&WIDGETS), "shop", "w1");
    api.preload(Kind::Other(&WIDGETS), [w("w3", 1)]);
    api.compact();
    wait_changes(&out, 5);
    // And the watch goes on after the re-list.
    api.apply(Kind::Other(&WIDGETS), w("w3", 7));
    wait_changes(&out, 6);
    std::thread::sleep(Duration::from_millis(500));

    let got = changes(&out);
    let want: BTreeMap<(String, String), usize> = [
        (("ADDED", "w1"), 1),
        (("MODIFIED", "w1"), 1),
        (("ADDED", "w2"), 1),
        (("DELETED", "w1"), 1),
        (("ADDED", "w3"), 1),
        (("MODIFIED", "w3"), 1),
    ]
    .into_iter()
    .map(|((t, n), c)| ((t.to_string(), n.to_string()), c))
    .collect();
    assert_eq!(got, want, "every change once, none lost");
    // The watch record's shape: {type, object}, event.domain/event.name, the namespace resource.
    let (res, r) = records(&out)
        .into_iter()
        .find(|(_, r)| {
            str_attr(&r["attributes"], "k8s.resource.name").as_deref() == Some("widgets")
        })
        .expect("a widget record");
    assert_eq!(
        str_attr(&res, "k8s.namespace.name").as_deref(),
        Some("shop")
    );
    assert_eq!(
        str_attr(&r["attributes"], "event.domain").as_deref(),
        Some("k8s")
    );
    assert_eq!(
        str_attr(&r["attributes"], "event.name").as_deref(),
        Some("w1")
    );
    let obj = kv(&r["body"], "object").expect("object");
    assert_eq!(
        kv(obj, "kind").and_then(|k| k["stringValue"].as_str()),
        Some("Widget")
    );
    assert!(
        api.count_requests(|r| r.contains("/widgets") && !r.contains("watch=true")) >= 2,
        "the 410 made a re-list"
    );
    agent.stop_ok(Duration::from_secs(30));
}

/// `(type, name)` → how many watch records of widgets say so.
fn changes(out: &Path) -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for (_, r) in records(out) {
        if str_attr(&r["attributes"], "k8s.resource.name").as_deref() != Some("widgets") {
            continue;
        }
        let t = kv(&r["body"], "type")
            .and_then(|t| t["stringValue"].as_str())
            .unwrap_or("?");
        let n = str_attr(&r["attributes"], "event.name").unwrap_or_default();
        *m.entry((t.to_string(), n)).or_insert(0) += 1;
    }
    m
}

fn wait_changes(out: &Path, n: usize) {
    vigil_tests::eventually(
        Duration::from_secs(30),
        &format!("{n} widget changes"),
        || {
            let c: usize = changes(out).values().sum();
            (c >= n).then_some(())
        },
    );
}

#[test]
fn k8s_events_reports_new_events_as_otelcol_does() {
    let api = K8sApi::start();
    let old = "2020-01-01T00:00:00Z";
    api.apply(
        Kind::Event,
        k8s_api::event(
            "shop",
            "web-1.old",
            "web-1",
            "Pulled",
            "old news",
            "Normal",
            old,
        ),
    );
    let dir = tempfile::tempdir().expect("dir");
    let (health, out) = (free_port(), dir.path().join("out.json"));
    let mut agent = start(
        &api,
        &dir,
        "  k8s_events:
    auth_type: kubeConfig
    namespaces: [shop]",
        health,
        &out,
    );
    agent.wait_healthy(health, Duration::from_secs(60));
    vigil_tests::eventually(Duration::from_secs(30), "the event watch", || {
        api.requests()
            .iter()
            .any(|r| r.contains("/events") && r.contains("watch=true"))
            .then_some(())
    });
    let now = k8s_api::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 1,
    );
    api.apply(
        Kind::Event,
        k8s_api::event(
            "shop",
            "web-1.17a",
            "web-1",
            "BackOff",
            "Back-off restarting failed container",
            "Warning",
            &now,
        ),
    );
    // An update of the old event that is still old is not news either.
    api.apply(
        Kind::Event,
        k8s_api::event(
            "shop",
            "web-1.old",
            "web-1",
            "Pulled",
            "old news",
            "Normal",
            old,
        ),
    );
    let got = vigil_tests::eventually(Duration::from_secs(30), "the new event", || {
        let r = records(&out);
        (!r.is_empty()).then_some(r)
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = if records(&out).len() > got.len() {
        records(&out)
    } else {
        got
    };
    assert_eq!(got.len(), 1, "only the new event: {got:?}");
    let (res, r) = &got[0];
    assert_eq!(
        r["body"]["stringValue"],
        "Back-off restarting failed container"
    );
    assert_eq!(r["severityNumber"], 13);
    assert_eq!(r["severityText"], "Warning");
    for (k, v) in [
        ("k8s.event.reason", "BackOff"),
        ("k8s.event.name", "web-1.17a"),
        ("k8s.namespace.name", "shop"),
    ] {
        assert_eq!(str_attr(&r["attributes"], k).as_deref(), Some(v), "{k}");
    }
    assert_eq!(str_attr(res, "k8s.object.kind").as_deref(), Some("Pod"));
    assert_eq!(str_attr(res, "k8s.object.name").as_deref(), Some("web-1"));
    assert_eq!(str_attr(res, "k8s.node.name").as_deref(), Some("node-a"));
    agent.stop_ok(Duration::from_secs(30));
}

#[test]
fn an_unknown_resource_fails_the_start() {
    let api = K8sApi::start();
    let dir = tempfile::tempdir().expect("dir");
    let (health, out) = (free_port(), dir.path().join("out.json"));
    let mut agent = start(
        &api,
        &dir,
        "  k8s_objects:
    auth_type: kubeConfig
    objects:
      - name: gizmos",
        health,
        &out,
    );
    let code = agent.wait_exit(Duration::from_secs(60));
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    let log = agent.logs();
    assert!(
        log.contains(
            "objects::0::name: resource not found: gizmos. Available resources in cluster:"
        ) && log.contains(" pods "),
        "{log}"
    );
}

/// A gateway instance with a leader elector (short durations) and `k8sobjects` pulling
/// namespaces every 200 ms while it leads.
fn gateway(api: &K8sApi, dir: &Path, name: &str) -> (Agent, std::path::PathBuf, u16) {
    let kubeconfig = api.kubeconfig(dir);
    let (health, out) = (free_port(), dir.join(format!("{name}.json")));
    let cfg = format!(
        "receivers:
  k8sobjects:
    auth_type: kubeConfig
    k8s_leader_elector: k8s_leader_elector/objects
    objects:
      - name: namespaces
        interval: 200ms
exporters:
  file:
    path: {out}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  k8s_leader_elector/objects:
    auth_type: kubeConfig
    lease_name: k8s.objects.receiver.opentelemetry.io
    lease_namespace: default
    lease_duration: 2s
    renew_deadline: 1500ms
    retry_period: 250ms
service:
  extensions: [health_check, k8s_leader_elector/objects]
  pipelines:
    logs:
      receivers: [k8sobjects]
      exporters: [file]
  telemetry:
    metrics:
      level: none
",
        out = out.display()
    );
    let path = vigil_tests::write_config(dir, &format!("{name}.yaml"), &cfg);
    let agent = Agent::start_env(
        tempfile::tempdir().expect("run dir"),
        &["--config".into(), path.display().to_string()],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    (agent, out, health)
}

#[test]
fn only_the_leader_runs_the_receiver_and_the_other_takes_over_when_it_dies() {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("default"));
    let dir = tempfile::tempdir().expect("dir");
    let (mut a, out_a, health_a) = gateway(&api, dir.path(), "a");
    let (mut b, out_b, health_b) = gateway(&api, dir.path(), "b");
    a.wait_healthy(health_a, Duration::from_secs(60));
    b.wait_healthy(health_b, Duration::from_secs(60));
    let n = |p: &Path| records(p).len();
    vigil_tests::eventually(Duration::from_secs(30), "a leader's pulls", || {
        (n(&out_a) + n(&out_b) >= 3).then_some(())
    });
    // Several pull intervals later, still only one instance has pulled.
    std::thread::sleep(Duration::from_secs(2));
    let (na, nb) = (n(&out_a), n(&out_b));
    assert!(
        (na == 0) != (nb == 0),
        "exactly one instance runs the receiver: a {na}, b {nb}"
    );
    let (mut leader, mut follower, follower_out) =
        if na > 0 { (a, b, out_b) } else { (b, a, out_a) };
    let lease = api
        .get(
            Kind::Lease,
            "default",
            "k8s.objects.receiver.opentelemetry.io",
        )
        .expect("the lease exists");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!holder.is_empty(), "{lease}");

    // Kill the leader without a chance to release the lease.
    leader.signal(libc::SIGKILL);
    leader.wait_exit(Duration::from_secs(10));
    let killed = Instant::now();
    vigil_tests::eventually(Duration::from_secs(20), "the follower's pulls", || {
        (n(&follower_out) > 0).then_some(())
    });
    let took = killed.elapsed();
    eprintln!("takeover after the leader was killed: {took:?} (lease_duration 2s)");
    assert!(
        // The lease's 2 s, a retry (250 ms, jittered), the first pull and the file write, with
        // room for a loaded CI machine.
        took < Duration::from_millis(2000 + 2500),
        "the follower took over in {took:?}, more than the lease duration and a retry"
    );
    let lease = api
        .get(
            Kind::Lease,
            "default",
            "k8s.objects.receiver.opentelemetry.io",
        )
        .expect("the lease");
    assert_ne!(
        lease["spec"]["holderIdentity"].as_str(),
        Some(holder.as_str())
    );
    assert!(
        lease["spec"]["leaseTransitions"].as_i64() >= Some(1),
        "{lease}"
    );
    follower.stop_ok(Duration::from_secs(30));
    // A graceful stop releases the lease.
    let lease = api
        .get(
            Kind::Lease,
            "default",
            "k8s.objects.receiver.opentelemetry.io",
        )
        .expect("the lease");
    assert!(
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or("")
            .is_empty(),
        "released on stop: {lease}"
    );
}
