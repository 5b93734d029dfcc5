//! Root cause on a real instrumented application (issue #19). Four Flask services (tests/app) run the
//! stock OpenTelemetry Python SDK with the Flask, requests and SQLite instrumentations: real context
//! propagation, the SDK's own batching and export, time-compressed (1 s export interval and 1 s
//! detection interval instead of 5 s and 10 s). Traffic goes through vigil's incident pipeline
//! (`servicegraph` + `anomalydetection` + `correlation`, as in config-examples/incidents.yaml).
//! After a fault-free period, faults of three kinds are switched on one at a time: added latency,
//! errors, and a slow database; then the incidents vigil wrote are scored: which fault got an
//! incident, what the first and the last report ranked first, the time from the fault to the first
//! report naming it, and incidents that belong to no fault. Every service has an availability and
//! a latency SLO (multi-window burn rates): each fault must fire the faulty service's alert of its
//! kind, and alerts in the fault-free period are reported. The host's load average (hostmetrics)
//! goes through the same pipeline, so that incidents on a loaded host say so in their candidates.
//!
//! CI runs one round (three faults, about 4 minutes) and asserts what must hold on any run; the
//! figures in BENCHMARKS.md come from `VIGIL_REAL_APP_ROUNDS=4` (twelve faults). The summary is
//! printed as JSON either way (`cargo test -p vigil-tests --test real_app -- --nocapture`).

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_tests::{
    eventually, file_exporter_and_health, free_port, otlp_attr, python, read_json_lines, repo_root,
    Agent,
};

/// A child process killed when the test ends, pass or fail.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Service {
    name: &'static str,
    port: u16,
    calls: Vec<&'static str>,
    db: bool,
}

fn start_service(
    s: &Service,
    ports: &[(&str, u16)],
    otlp: u16,
    dir: &Path,
    export_ms: u64,
) -> Proc {
    let mut cmd = Command::new(python());
    cmd.arg(repo_root().join("tests/app/service.py"))
        .args(["--name", s.name, "--port", &s.port.to_string()])
        .args(["--otlp", &format!("http://127.0.0.1:{otlp}")])
        .args(["--export-ms", &export_ms.to_string()])
        // The stable HTTP conventions: server.address/server.port on both sides.
        .env("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(dir.join(format!("{}.log", s.name)))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
    for c in &s.calls {
        let port = ports
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, p)| *p)
            .expect("a known callee");
        cmd.args(["--call", &format!("http://127.0.0.1:{port}/work")]);
    }
    if s.db {
        cmd.args([
            "--db",
            &dir.join(format!("{}.db", s.name)).display().to_string(),
        ]);
    }
    Proc(cmd.spawn().expect("start a test app service"))
}

fn set_fault(port: u16, body: Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/_fault"))
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .expect("the fault switch answers");
    assert!(r.status().is_success(), "fault switch: {}", r.status());
}

/// One injected fault and what a correct ranking names first.
#[derive(Debug, Clone)]
struct Fault {
    service: &'static str,
    kind: &'static str,
    /// The root cause: the service, or for a slow database its database node.
    root: String,
    start_ns: u64,
    end_ns: u64,
}

impl Fault {
    /// Whether `name` is a right answer: the root, or for a slow database also the service it is
    /// embedded in (its own latency is the database's).
    fn names(&self, name: Option<&str>) -> bool {
        name.is_some_and(|n| n == self.root || (self.kind == "slowdb" && n == self.service))
    }
}

/// An incident record as the `file` exporter wrote it.
#[derive(Debug, Clone)]
struct Rec {
    id: String,
    status: String,
    at_ns: u64,
    services: Vec<String>,
    candidates: Vec<String>,
    root: Option<String>,
}

fn strs(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v["arrayValue"]["values"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x["stringValue"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn incidents(path: &Path) -> Vec<Rec> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let a = &r["attributes"];
                    if otlp_attr(a, "event.name").and_then(|v| v["stringValue"].as_str())
                        != Some("vigil.incident")
                    {
                        continue;
                    }
                    let s = |k: &str| {
                        otlp_attr(a, k)
                            .and_then(|v| v["stringValue"].as_str())
                            .map(String::from)
                    };
                    let ns = |k: &str| {
                        r[k].as_str()
                            .and_then(|t| t.parse::<u64>().ok())
                            .or_else(|| r[k].as_u64())
                            .unwrap_or(0)
                    };
                    out.push(Rec {
                        id: s("vigil.incident.id").unwrap_or_default(),
                        status: s("vigil.incident.status").unwrap_or_default(),
                        at_ns: ns("observedTimeUnixNano"),
                        services: strs(otlp_attr(a, "vigil.incident.services")),
                        candidates: strs(otlp_attr(a, "vigil.incident.root_cause.candidates")),
                        root: s("vigil.incident.root_cause"),
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| r.at_ns);
    out
}

/// SLOs on every service, time-compressed like the rest (60×): the SRE workbook's fast-burn alert
/// pair (1 h and 5 m windows) becomes 60 s and 5 s, at a burn rate of 6. An alert fires once the bad
/// share over the long window reaches 6 × (1 − objective); a fault that makes every request bad for
/// `d` seconds gives `d / 60` there, so a 20 s fault can fire an objective of at most 1 − 1/18
/// (94.4%). Availability: 99% of requests succeed (a 50% error fault reaches 6% after about 7 s;
/// without a fault nothing fails). Latency: 98% under 150 ms (`VIGIL_REAL_APP_LATENCY_SLO=0` leaves
/// it out): a +150 ms fault, or a database call 150 ms slower, makes every request of the faulty
/// service slower than that, which reaches 12% of the long window after about 7 s. 150 ms is four to
/// eight times the frontend's median on a quiet host; on a host at load 10 the frontend's own
/// latency breaks it without a fault (BENCHMARKS.md). An SLO alert alone opens no incident
/// (docs/events.md), so such alerts are counted, not scored as false incidents. (The 90% objective of
/// earlier runs could not fire for a 20 s fault: a 6× burn of a 10% budget needs 60% of the minute.)
fn slo_config(services: &[&str], latency: bool) -> String {
    let mut out = String::from("    slos:\n");
    for s in services {
        out.push_str(&format!(
            "      - service: {s}\n        availability: 0.99\n{}        alerts: [{{burn_rate: 6, long: 60s, short: 5s}}]\n",
            if latency {
                "        latency: {threshold: 150ms, objective: 0.98}\n"
            } else {
                ""
            }
        ));
    }
    out
}

/// A `vigil.slo` alert as the `file` exporter wrote it.
#[derive(Debug, Clone)]
struct SloRec {
    at_ns: u64,
    state: String,
    service: String,
    indicator: String,
}

fn slo_alerts(path: &Path) -> Vec<SloRec> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let a = &r["attributes"];
                    let s = |k: &str| {
                        otlp_attr(a, k)
                            .and_then(|v| v["stringValue"].as_str())
                            .map(String::from)
                            .unwrap_or_default()
                    };
                    if s("event.name") != "vigil.slo" {
                        continue;
                    }
                    let at_ns = r["observedTimeUnixNano"]
                        .as_str()
                        .and_then(|t| t.parse::<u64>().ok())
                        .or_else(|| r["observedTimeUnixNano"].as_u64())
                        .unwrap_or(0);
                    out.push(SloRec {
                        at_ns,
                        state: s("vigil.slo.state"),
                        service: s("vigil.slo.service"),
                        indicator: s("vigil.slo.indicator"),
                    });
                }
            }
        }
    }
    out.sort_by_key(|r| r.at_ns);
    out
}

/// Per fault: detected, the first and last report's top candidate, seconds to the first report.
#[derive(Debug)]
struct Score {
    fault: Fault,
    first_top: Option<String>,
    last_top: Option<String>,
    last_top3: Vec<String>,
    to_first_s: Option<f64>,
    /// Seconds to the first report that ranks the root cause first.
    to_first_top_s: Option<f64>,
}

fn score(faults: &[Fault], recs: &[Rec], quiet: (u64, u64), end_ns: u64) -> (Vec<Score>, Vec<Rec>) {
    let mut scores = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let until = faults.get(i + 1).map(|n| n.start_ns).unwrap_or(end_ns);
        let holds = |r: &Rec| r.services.iter().any(|s| *s == f.root || *s == f.service);
        let during: Vec<&Rec> = recs
            .iter()
            .filter(|r| r.at_ns >= f.start_ns && r.at_ns < until)
            .filter(|r| r.status != "resolved" && holds(r))
            .collect();
        let top = |r: &Rec| r.root.clone();
        scores.push(Score {
            fault: f.clone(),
            first_top: during.first().and_then(|r| top(r)),
            last_top: during.last().and_then(|r| top(r)),
            last_top3: during
                .last()
                .map(|r| {
                    r.candidates
                        .iter()
                        .filter_map(|c| c.split(": ").next().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            to_first_s: during
                .first()
                .map(|r| r.at_ns.saturating_sub(f.start_ns) as f64 / 1e9),
            to_first_top_s: during
                .iter()
                .find(|r| f.names(r.root.as_deref()))
                .map(|r| r.at_ns.saturating_sub(f.start_ns) as f64 / 1e9),
        });
    }
    // An incident is false when it opened in the fault-free period, or during a fault without the
    // faulty service among its services at any point.
    let mut false_opens = Vec::new();
    for o in recs.iter().filter(|r| r.status == "open") {
        let all: BTreeSet<&String> = recs
            .iter()
            .filter(|r| r.id == o.id)
            .flat_map(|r| r.services.iter())
            .collect();
        let in_quiet = o.at_ns >= quiet.0 && o.at_ns < quiet.1;
        let fault = faults
            .iter()
            .enumerate()
            .find(|(i, f)| {
                let until = faults.get(i + 1).map(|n| n.start_ns).unwrap_or(end_ns);
                o.at_ns >= f.start_ns && o.at_ns < until
            })
            .map(|(_, f)| f);
        let explained =
            fault.is_some_and(|f| all.contains(&f.root) || all.contains(&f.service.to_string()));
        if in_quiet || (o.at_ns >= quiet.1 && !explained) {
            false_opens.push(o.clone());
        }
    }
    (scores, false_opens)
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn incidents_on_an_instrumented_app_name_the_faulty_service() {
    let rounds = env_u64("VIGIL_REAL_APP_ROUNDS", 1).max(1);
    let fault_s = env_u64("VIGIL_REAL_APP_FAULT_S", 20);
    // Long enough for the episodes to end and the incident's gap to pass, so that faults stay apart.
    let recover_s = env_u64("VIGIL_REAL_APP_RECOVER_S", 45);
    let quiet_s = env_u64("VIGIL_REAL_APP_QUIET_S", 20);
    let export_ms = env_u64("VIGIL_REAL_APP_EXPORT_MS", 1000);
    // Warm-up: the detector learns 30 points before it scores.
    let warmup_s = env_u64("VIGIL_REAL_APP_WARMUP_S", 45);

    let latency_slo = env_u64("VIGIL_REAL_APP_LATENCY_SLO", 1) == 1;
    let (otlp, health, metrics) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("findings.jsonl");
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
  hostmetrics:
    collection_interval: 1s
    scrapers:
      load:
        metrics:
          system.cpu.load_average.5m:
            enabled: false
          system.cpu.load_average.15m:
            enabled: false
processors:
  # The services report host.name node-1; the host's own metrics are that node's.
  resource/node:
    attributes:
      - key: host.name
        value: node-1
        action: upsert
  correlation:
    window: 30s
    gap: 10s
    update_interval: 5s
    settle: 2s
connectors:
  servicegraph:
    metrics_flush_interval: 1s
  anomalydetection:
    interval: 1s
{slos}{frame}  pipelines:
    traces:
      receivers: [otlp]
      exporters: [servicegraph, anomalydetection]
    metrics:
      receivers: [otlp, servicegraph]
      exporters: [anomalydetection]
    metrics/host:
      receivers: [hostmetrics]
      processors: [resource/node]
      exporters: [anomalydetection]
    logs/findings:
      receivers: [anomalydetection]
      processors: [correlation]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        frame = file_exporter_and_health(&out, health),
        slos = slo_config(
            &["frontend", "checkout", "inventory", "payments"],
            latency_slo
        ),
    );
    let mut agent = Agent::with_config(&cfg);
    agent.wait_healthy(health, Duration::from_secs(60));

    let services = [
        Service {
            name: "frontend",
            port: free_port(),
            calls: vec!["checkout"],
            db: false,
        },
        Service {
            name: "checkout",
            port: free_port(),
            calls: vec!["inventory", "payments"],
            db: false,
        },
        Service {
            name: "inventory",
            port: free_port(),
            calls: vec![],
            db: true,
        },
        Service {
            name: "payments",
            port: free_port(),
            calls: vec![],
            db: true,
        },
    ];
    let ports: Vec<(&str, u16)> = services.iter().map(|s| (s.name, s.port)).collect();
    let port_of = |n: &str| {
        ports
            .iter()
            .find(|(s, _)| *s == n)
            .map(|(_, p)| *p)
            .unwrap_or(0)
    };
    let _procs: Vec<Proc> = services
        .iter()
        .map(|s| start_service(s, &ports, otlp, dir.path(), export_ms))
        .collect();
    let client = reqwest::blocking::Client::new();
    for s in &services {
        eventually(Duration::from_secs(60), "a test app service ready", || {
            client
                .get(format!("http://127.0.0.1:{}/_ready", s.port))
                .timeout(Duration::from_secs(1))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        });
    }

    // Open-loop load: 20 requests a second into the frontend, whatever their latency.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    {
        let (stop, sent) = (stop.clone(), sent.clone());
        let url = format!("http://127.0.0.1:{}/work", port_of("frontend"));
        rt.spawn(async move {
            let c = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let (c, url) = (c.clone(), url.clone());
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = c.get(url).timeout(Duration::from_secs(10)).send().await;
                });
            }
        });
    }

    let pause = |s: u64| std::thread::sleep(Duration::from_secs(s));
    pause(warmup_s);
    let quiet = (now_ns(), 0);
    pause(quiet_s);
    let quiet = (quiet.0, now_ns());
    let scrape = || {
        client
            .get(format!("http://127.0.0.1:{metrics}/metrics"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    };
    // Before any fault: a saturated slow database later delays server halves past any ttl.
    let sent_before = sent.load(Ordering::Relaxed) as f64;
    let unpaired_before = metric_value(&scrape(), "vigil_servicegraph_unpaired");
    let kinds: [(&str, &str, Value); 3] = [
        ("latency", "payments", json!({"kind": "latency", "ms": 150})),
        (
            "errors",
            "inventory",
            json!({"kind": "errors", "ratio": 0.5}),
        ),
        ("slowdb", "inventory", json!({"kind": "slowdb", "ms": 150})),
    ];
    // Later rounds move each kind to another service, so that every service takes each kind.
    let rotation = ["payments", "inventory", "checkout"];
    let mut faults = Vec::new();
    for round in 0..rounds as usize {
        for (k, (kind, first, body)) in kinds.iter().enumerate() {
            let service = if round == 0 {
                *first
            } else {
                rotation[(round + k) % rotation.len()]
            };
            // Only services with a database can have a slow one.
            let service = if *kind == "slowdb" && service == "checkout" {
                "payments"
            } else {
                service
            };
            let root = if *kind == "slowdb" {
                format!("sqlite@{service}")
            } else {
                service.to_string()
            };
            let start_ns = now_ns();
            set_fault(port_of(service), body.clone());
            pause(fault_s);
            set_fault(port_of(service), json!({"kind": "none"}));
            let end_ns = now_ns();
            faults.push(Fault {
                service,
                kind,
                root,
                start_ns,
                end_ns,
            });
            pause(recover_s);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let end_ns = now_ns();
    let telemetry = scrape();
    agent.signal(libc::SIGTERM);
    agent.wait_exit(Duration::from_secs(30));

    // A hand run keeps what vigil wrote (anomalies and incidents) for a closer look.
    if let Ok(keep) = std::env::var("VIGIL_REAL_APP_KEEP") {
        let _ = std::fs::copy(&out, &keep);
    }
    let recs = incidents(&out);
    let (scores, false_opens) = score(&faults, &recs, quiet, end_ns);
    // SLO alerts: per fault, whether the faulty service's SLO of its kind fired between the fault
    // and the next one (errors: availability; latency and a slow database: latency), and which
    // services' alerts fired; alerts that fired in the fault-free period are false.
    let slos = slo_alerts(&out);
    let firing = |r: &&SloRec| r.state == "firing";
    let slo_per_fault: Vec<Value> = faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let until = faults.get(i + 1).map(|n| n.start_ns).unwrap_or(end_ns);
            let want = if f.kind == "errors" {
                "availability"
            } else {
                "latency"
            };
            let during: Vec<&SloRec> = slos
                .iter()
                .filter(firing)
                .filter(|r| r.at_ns >= f.start_ns && r.at_ns < until)
                .collect();
            let own = during
                .iter()
                .find(|r| r.service == f.service && r.indicator == want);
            json!({
                "kind": f.kind, "service": f.service,
                "own_fired_after_s": own.map(|r| r.at_ns.saturating_sub(f.start_ns) as f64 / 1e9),
                "fired": during.iter().map(|r| format!("{}/{}", r.service, r.indicator)).collect::<BTreeSet<_>>(),
            })
        })
        .collect();
    let slo_false: Vec<Value> = slos
        .iter()
        .filter(firing)
        .filter(|r| r.at_ns >= quiet.0 && r.at_ns < quiet.1)
        .map(|r| json!({"at_ns": r.at_ns, "service": r.service, "indicator": r.indicator}))
        .collect();
    let slo_fired_own = slo_per_fault
        .iter()
        .filter(|v| !v["own_fired_after_s"].is_null())
        .count();
    let detected: Vec<&Score> = scores.iter().filter(|s| s.to_first_s.is_some()).collect();
    let top1 = scores
        .iter()
        .filter(|s| s.fault.names(s.last_top.as_deref()))
        .count();
    let first_top1 = scores
        .iter()
        .filter(|s| s.fault.names(s.first_top.as_deref()))
        .count();
    let top3 = scores
        .iter()
        .filter(|s| s.last_top3.iter().any(|c| s.fault.names(Some(c))))
        .count();
    let mut times: Vec<f64> = detected.iter().filter_map(|s| s.to_first_s).collect();
    times.sort_by(f64::total_cmp);
    let mut top_times: Vec<f64> = scores.iter().filter_map(|s| s.to_first_top_s).collect();
    top_times.sort_by(f64::total_cmp);
    let no_fault_h =
        (quiet.1 - quiet.0) as f64 / 3.6e12 + scores.len() as f64 * recover_s as f64 / 3600.0;
    let unpaired = metric_value(&telemetry, "vigil_servicegraph_unpaired");
    // Spans the receiver refused (a loaded machine, a slow debug build) leave their other halves
    // unpaired; that is not the pairing's doing.
    let refused = metric_value(&telemetry, "otelcol_receiver_refused_spans");
    let summary = json!({
        "faults": scores.len(),
        "detected": detected.len(),
        "top1_last_report": top1,
        "top1_first_report": first_top1,
        "top3_last_report": top3,
        "false_incidents": false_opens.len(),
        "no_fault_hours": no_fault_h,
        "fault_to_first_report_s": {
            "median": times.get(times.len() / 2),
            "min": times.first(),
            "max": times.last(),
        },
        "fault_to_first_report_ranking_it_first_s": {
            "n": top_times.len(),
            "median": top_times.get(top_times.len() / 2),
            "min": top_times.first(),
            "max": top_times.last(),
        },
        "requests": sent.load(Ordering::Relaxed),
        "servicegraph_unpaired": unpaired,
        "servicegraph_unpaired_before_faults": unpaired_before,
        "requests_before_faults": sent_before,
        "per_fault": scores.iter().map(|s| json!({
            "kind": s.fault.kind, "service": s.fault.service, "root": s.fault.root,
            "first_top": s.first_top, "last_top": s.last_top, "last_top3": s.last_top3,
            "to_first_s": s.to_first_s, "to_first_top_s": s.to_first_top_s, "start_ns": s.fault.start_ns, "end_ns": s.fault.end_ns,
        })).collect::<Vec<_>>(),
        "quiet_ns": [quiet.0, quiet.1],
        "refused_spans": refused,
        "unpaired_lines": telemetry.lines().filter(|l| l.starts_with("vigil_servicegraph")).collect::<Vec<_>>(),
        "slo_alerts": slos.iter().filter(firing).count(),
        "slo_fired_for_faulty_service": slo_fired_own,
        "slo_false_in_fault_free_period": slo_false,
        "slo_per_fault": slo_per_fault,
        "reports_with_host_cpu_reason": recs
            .iter()
            .filter(|r| r.candidates.iter().any(|c| c.contains("system.cpu.load_average")))
            .count(),
        "reports": recs.len(),
        "false": false_opens.iter().map(|r| json!({"at_ns": r.at_ns, "id": r.id, "services": r.services, "candidates": r.candidates})).collect::<Vec<_>>(),
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    );
    let context = || {
        format!(
            "summary: {summary}\nincident records:\n{}",
            recs.iter()
                .map(|r| format!(
                    "{} {} {} {:?} {:?}",
                    r.at_ns, r.id, r.status, r.services, r.candidates
                ))
                .collect::<Vec<_>>()
                .join("\n")
        )
    };

    // What must hold on any run, loaded machine or not.
    // Every fault but at most one got an incident holding the faulty service, and it is in the top
    // three. Why one miss is allowed: a 20 s slow-database fault at load ~3 went unreported once in
    // 30 faults in session 9's measurements (its level shifts scored, no incident opened), and
    // #19's target is 90% over many faults; requiring 3 of 3 here would make CI fail about one run
    // in ten on that alone. BENCHMARKS.md reports every miss.
    assert!(detected.len() + 1 >= scores.len(), "{}", context());
    assert_eq!(top3, detected.len(), "{}", context());
    // Most faults rank the root cause first.
    assert!(top1 * 3 >= scores.len() * 2, "{}", context());
    // Names mean something: no incident ever ranked a bare address first, and the two services'
    // SQLite databases are two nodes.
    for r in &recs {
        let top = r.root.as_deref().unwrap_or("");
        assert!(
            !top.starts_with("127.0.0.1") && !top.starts_with("localhost"),
            "a bare address ranked first: {r:?}\n{}",
            context()
        );
        assert!(
            !r.services.iter().any(|s| s == "sqlite"),
            "databases merged into one node: {r:?}"
        );
    }
    // Halves exported a second apart pair: next to nothing goes unpaired before the faults. (During
    // the slow-database fault, SQLite's one writer at a time queues requests for longer than the
    // callers' timeout, so their server halves end after any ttl: that is counted, not a failure.)
    let calls = sent_before * 3.0;
    assert!(
        unpaired_before <= calls * 0.01 + refused,
        "{unpaired_before} unpaired halves of about {calls} calls before the faults\n{}",
        context()
    );
    // Every errors fault burns the faulty service's availability budget fast enough to alert within
    // the fault (a 50% error ratio is a burn rate of 50 against 6).
    // And with the latency SLO, every latency and slow-database fault its latency alert: each of the
    // faulty service's requests is slower than 150 ms, however loaded the host.
    for (f, v) in faults.iter().zip(&slo_per_fault) {
        if f.kind == "errors" || latency_slo {
            assert!(
                !v["own_fired_after_s"].is_null(),
                "no SLO alert of its kind for {f:?}: {v}\n{}",
                context()
            );
        }
    }
    // Few false incidents (the goal is none; BENCHMARKS.md has the rate). Weak findings on several
    // services at once get through on a heavily loaded host, so the bound leaves room for two.
    assert!(false_opens.len() <= 2, "{}", context());
}
