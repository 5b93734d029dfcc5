//! The status page (`zpages`' `/debug/vigilz`) in a real browser. vigil runs the incidents pipelines
//! (config-examples/incidents.yaml's data flow, with the score gauges and log patterns also kept) and
//! `vigil-loadgen scenario` injects a fault, so that anomalies, an incident and service-graph edges
//! exist. Debian's headless Chromium then loads the page: its DOM must show them, and a screenshot goes
//! into the test's output directory (a copy in `target/status-page.png`) for a person to look at.
//! The other zpages are checked over plain HTTP.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vigil_tests::{bin, eventually, free_port, http_get as get, repo_root, Agent};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs headless Chromium with `args` and the given profile dir; its stdout, or a panic with its
/// stderr. Killed after two minutes, so that a hung browser fails the test instead of stalling it.
fn chromium(profile: &Path, args: &[&str]) -> String {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait for chromium").is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish within 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the section that starts at heading `h2` (up to the next one).
fn section<'a>(page: &'a str, h2: &str) -> &'a str {
    let Some(start) = page.find(&format!("<h2>{h2}")) else {
        panic!("no section {h2:?} in the page:\n{page}");
    };
    let rest = &page[start + 4..];
    let end = rest.find("<h2>").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_status_page_shows_what_vigil_sees_in_a_real_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium package (apt-get install \
         --no-install-recommends chromium) for this test"
    );
    let (grpc, zpages, metrics) = (free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
connectors:
  servicegraph:
    metrics_flush_interval: 1s
  anomalydetection:
    interval: 10s
    confirm_points: 2
processors:
  # Incidents are announced at once rather than after a settling time, so they show while the
  # agent still runs.
  correlation:
    settle: 0s
  logpattern:
exporters:
  debug:
extensions:
  zpages:
    endpoint: 127.0.0.1:{zpages}
    expvar:
      enabled: true
service:
  extensions: [zpages]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [servicegraph, anomalydetection]
    metrics:
      receivers: [otlp, servicegraph]
      exporters: [anomalydetection]
    metrics/scores:
      receivers: [anomalydetection]
      exporters: [debug]
    logs:
      receivers: [otlp]
      processors: [logpattern]
      exporters: [debug]
    logs/findings:
      receivers: [anomalydetection]
      processors: [correlation]
      exporters: [debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    );
    let mut agent = Agent::with_config(&cfg);
    let base = format!("http://127.0.0.1:{zpages}");
    agent.wait_http_ok(&format!("{base}/debug/servicez"), Duration::from_secs(60));

    let sent = Command::new(bin("vigil-loadgen"))
        .args(["scenario", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--services", "6", "--seed", "5"])
        .output()
        .expect("run vigil-loadgen scenario");
    assert!(
        sent.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let report: Value = serde_json::from_slice(&sent.stdout).expect("loadgen prints JSON");
    let faulty = report["faulty"]
        .as_str()
        .expect("faulty service")
        .to_string();
    let spans = report["spans"].as_u64().expect("span count");
    let logs = Command::new(bin("vigil-loadgen"))
        .args(["logs", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--items", "300", "--rate", "1000", "--duration", "60s"])
        .output()
        .expect("run vigil-loadgen logs");
    assert!(
        logs.status.success(),
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );

    // The page is read from what flows; wait until the incident, the edges and the patterns are in.
    let vigilz = format!("{base}/debug/vigilz");
    eventually(
        Duration::from_secs(60),
        "incident, edges and patterns on the page",
        || {
            let (code, page) = get(&vigilz);
            (code == 200
                && section(&page, "Incidents").contains("<ol><li>")
                && section(&page, "Service graph").contains("→")
                && section(&page, "Top log patterns").contains("<td class=\"n\">300</td>")
            // Set at the detector's first interval tick.
            && !page.contains("still warming up<b>—"))
            .then_some(())
        },
    );

    // What a browser shows.
    let profile = tempfile::tempdir().expect("profile dir");
    let dom = chromium(profile.path(), &["--dump-dom", &vigilz]);
    assert!(dom.contains("What vigil sees now"), "{dom}");
    let pipes = section(&dom, "Pipelines");
    let traces_row = pipes
        .split("<tr>")
        .find(|r| r.contains("<b>traces</b>"))
        .unwrap_or_else(|| panic!("no traces pipeline row:\n{pipes}"));
    assert!(
        traces_row.contains(&format!(">{spans}<")),
        "the traces pipeline's accepted count is the loadgen's {spans} spans:\n{traces_row}"
    );
    let watched = dom
        .split("series watched<b>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(watched > 0, "series watched: {dom}");
    let warming = dom
        .split("still warming up<b>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        warming.is_some_and(|w| w <= watched),
        "series still warming up, of {watched}: {warming:?}"
    );
    let anomalies = format!(
        "{}{}",
        section(&dom, "Open anomalies"),
        dom.find("<h2>Recently ended")
            .map(|_| section(&dom, "Recently ended"))
            .unwrap_or("")
    );
    assert!(
        anomalies.contains(&format!("service.name={faulty}")),
        "an anomaly of the faulty service {faulty}:\n{anomalies}"
    );
    let incidents = section(&dom, "Incidents");
    assert!(incidents.contains("probably <b>"), "{incidents}");
    let graph = section(&dom, "Service graph");
    for (i, callees) in report["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .enumerate()
    {
        let client = report["services"][i].as_str().expect("service name");
        for c in callees.as_array().expect("callees") {
            let server = report["services"][c.as_u64().expect("index") as usize]
                .as_str()
                .expect("service name");
            let edge = format!("<td>{client}</td><td>→</td><td>{server}</td>");
            assert!(graph.contains(&edge), "edge {client} → {server}:\n{graph}");
        }
    }
    assert!(
        section(&dom, "Top log patterns").contains("&lt;*&gt;"),
        "a mined template"
    );
    let plots = section(&dom, "Series and their expected band");
    assert!(
        plots.contains("<svg class=\"plot\"") && plots.contains("<polygon"),
        "a plotted band:\n{plots}"
    );

    // The screenshot, for people.
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&out_dir).expect("test output dir");
    let shot = out_dir.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
            &vigilz,
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    let copy = repo_root().join("target").join("status-page.png");
    std::fs::copy(&shot, &copy).expect("copy the screenshot");
    println!(
        "status page screenshot: {} (copy: {})",
        shot.display(),
        copy.display()
    );

    // The other pages, over plain HTTP.
    let (code, index) = get(&format!("{base}/"));
    assert_eq!(code, 200);
    assert!(index.contains("href=\"/debug/vigilz\""), "{index}");
    let (code, servicez) = get(&format!("{base}/debug/servicez"));
    assert_eq!(code, 200);
    assert!(servicez.contains(env!("CARGO_PKG_VERSION")), "{servicez}");
    for id in [
        "otlp",
        "servicegraph",
        "anomalydetection",
        "correlation",
        "zpages",
    ] {
        assert!(
            servicez.contains(&format!("<code>{id}</code>")),
            "{id}: {servicez}"
        );
    }
    assert!(servicez.contains("uptime"), "{servicez}");
    let (code, pipelinez) = get(&format!("{base}/debug/pipelinez"));
    assert_eq!(code, 200);
    assert!(pipelinez.contains("<h2>logs/findings"), "{pipelinez}");
    assert!(
        pipelinez.contains(&format!("receiver_accepted_spans <b>{spans}</b>")),
        "{pipelinez}"
    );
    let (code, ext) = get(&format!("{base}/debug/extensionz"));
    assert_eq!(code, 200);
    assert!(
        ext.contains("<code>zpages</code>") && ext.contains("running"),
        "{ext}"
    );
    let (code, features) = get(&format!("{base}/debug/featurez"));
    assert_eq!(code, 200);
    assert!(features.contains("no feature gates"), "{features}");
    let (code, expvar) = get(&format!("{base}/debug/expvarz"));
    assert_eq!(code, 200);
    let expvar: Value = serde_json::from_str(&expvar).expect("expvarz is JSON");
    assert_eq!(
        expvar["otelcol_receiver_accepted_spans{receiver=\"otlp\",transport=\"grpc\"}"],
        spans as f64,
        "{expvar}"
    );
    let (code, _) = get(&format!("{base}/debug/nothing"));
    assert_eq!(code, 404);
    drop(agent);
}
