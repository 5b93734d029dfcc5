//! otelcol's zPages as vigil serves them (`/debug/servicez`, `pipelinez`, `extensionz`, `featurez`,
//! `tracez`), read over plain HTTP from a running agent that has carried real OTLP data: each page
//! must show the running service's state (build, uptime, command line, pipelines and their
//! counters, extensions, the requested feature gates). status_page.rs covers `/debug/vigilz` in a
//! browser.

use std::process::Command;
use std::time::Duration;
use vigil_tests::{bin, eventually, free_port, http_get as get, Agent};

/// The table row of `page` that contains `needle`.
fn row<'a>(page: &'a str, needle: &str) -> &'a str {
    page.split("<tr>")
        .find(|r| r.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in:\n{page}"))
}

#[test]
fn zpages_show_the_running_service() {
    let (grpc, zpages, health, metrics) = (free_port(), free_port(), free_port(), free_port());
    let cfg = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
processors:
  batch:
exporters:
  debug:
  debug/unused:
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  zpages:
    endpoint: 127.0.0.1:{zpages}
service:
  extensions: [health_check, zpages]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [debug]
    logs/in:
      receivers: [otlp]
      exporters: [debug]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, cfg).expect("write config");
    let mut agent = Agent::start_in(
        dir,
        &[
            "--config".into(),
            path.display().to_string(),
            "--feature-gates=+exporter.otlp.example,-receiver.example.off".into(),
        ],
    );
    let base = format!("http://127.0.0.1:{zpages}");
    // health_check answers 200 once every pipeline runs; zpages is up earlier (extensions start
    // first).
    agent.wait_healthy(health, Duration::from_secs(60));

    let sent = Command::new(bin("vigil-loadgen"))
        .args(["traces", "--otlp-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--items", "250", "--rate", "0", "--batch", "50"])
        .output()
        .expect("run vigil-loadgen traces");
    assert!(
        sent.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );

    // servicez: build, process and the components of the running config.
    let (code, page) = get(&format!("{base}/debug/servicez"));
    assert_eq!(code, 200, "{page}");
    assert!(
        row(&page, "<td>version</td>").contains(env!("CARGO_PKG_VERSION")),
        "{page}"
    );
    assert!(row(&page, "<td>uptime</td>").contains('s'), "{page}");
    assert!(
        row(&page, "<td>process id</td>").contains(&agent.child.id().to_string()),
        "{page}"
    );
    assert!(
        row(&page, "<td>command line</td>").contains("--feature-gates"),
        "{page}"
    );
    assert!(
        row(&page, "<td>feature gates</td>").contains("2 requested"),
        "{page}"
    );
    assert!(row(&page, "<td>pipelines</td>").contains(">2<"), "{page}");
    assert!(
        row(&page, "<code>otlp</code>").contains("logs/in, traces"),
        "{page}"
    );
    assert!(
        row(&page, "<code>debug/unused</code>").contains("no pipeline"),
        "{page}"
    );
    assert!(
        row(&page, "<code>zpages</code>").contains("service::extensions"),
        "{page}"
    );

    // pipelinez: each pipeline's components with their own counters, once the batch is out.
    let page = eventually(
        Duration::from_secs(30),
        "the debug exporter's sent spans on /debug/pipelinez",
        || {
            let (code, page) = get(&format!("{base}/debug/pipelinez"));
            (code == 200 && page.contains("exporter_sent_spans <b>250</b>")).then_some(page)
        },
    );
    let traces = page
        .split("<h2>")
        .find(|s| s.starts_with("traces"))
        .unwrap_or_else(|| panic!("no traces pipeline:\n{page}"));
    assert!(traces.contains("(traces)"), "{traces}");
    assert!(
        row(traces, "<code>otlp</code>").contains("receiver_accepted_spans <b>250</b>"),
        "{traces}"
    );
    assert!(
        row(traces, "<code>batch</code>").contains("processor"),
        "{traces}"
    );
    assert!(page.contains("<h2>logs/in"), "{page}");

    // extensionz: both running.
    let (code, page) = get(&format!("{base}/debug/extensionz"));
    assert_eq!(code, 200);
    for id in ["health_check", "zpages"] {
        assert!(
            row(&page, &format!("<code>{id}</code>")).contains("running"),
            "{id}: {page}"
        );
    }

    // featurez: the requested gates, each said to have no effect.
    let (code, page) = get(&format!("{base}/debug/featurez"));
    assert_eq!(code, 200);
    let on = row(&page, "<code>exporter.otlp.example</code>");
    assert!(on.contains("enabled") && on.contains("no effect"), "{page}");
    assert!(
        row(&page, "<code>receiver.example.off</code>").contains("disabled"),
        "{page}"
    );

    // tracez: a page that says why there is nothing to show.
    let (code, page) = get(&format!("{base}/debug/tracez"));
    assert_eq!(code, 200);
    assert!(page.contains("records no spans"), "{page}");

    let (code, page) = get(&format!("{base}/debug/none"));
    assert_eq!(code, 404, "{page}");
    drop(agent);
}
