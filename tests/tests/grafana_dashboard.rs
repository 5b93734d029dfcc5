//! The Grafana dashboard in deploy/grafana is checked against Grafana's own dashboard schema (the
//! `Dashboard` type of @grafana/schema, compiled with TypeScript by deploy/grafana/check.sh).

use std::process::Command;
use vigil_tests::repo_root;

fn check(file: &std::path::Path) -> std::process::Output {
    let out = Command::new(repo_root().join("deploy/grafana/check.sh"))
        .arg(file)
        .output()
        .expect("run deploy/grafana/check.sh");
    assert_ne!(
        out.status.code(),
        Some(2),
        "the schema checker is not installed: run scripts/test.sh (it runs `npm ci` in \
         deploy/grafana/schema-check)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn the_shipped_dashboard_matches_grafanas_schema() {
    let dashboard = repo_root().join("deploy/grafana/vigil.json");
    let out = check(&dashboard);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The dashboard reads metrics vigil exposes under these names (the check above cannot know).
    let text = std::fs::read_to_string(&dashboard).expect("read dashboard");
    for name in [
        "otelcol_receiver_accepted_spans",
        "otelcol_exporter_sent_spans",
        "vigil_anomaly_series_live",
        "vigil_anomaly_events",
        "vigil_anomaly_score",
    ] {
        assert!(text.contains(name), "dashboard lacks {name}");
    }
}

#[test]
fn the_check_refuses_a_broken_dashboard() {
    let good = std::fs::read_to_string(repo_root().join("deploy/grafana/vigil.json"))
        .expect("read dashboard");
    let mut value: serde_json::Value = serde_json::from_str(&good).expect("dashboard is JSON");
    value["panels"][1]["gridPos"]["h"] = serde_json::json!("eight");
    value["panels"][2]["no_such_key"] = serde_json::json!(true);
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, serde_json::to_string_pretty(&value).expect("json")).expect("write");
    let out = check(&bad);
    assert!(!out.status.success(), "a broken dashboard passed the check");
    let stderr = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("TS2322") || stderr.contains("TS2353"),
        "{stderr}"
    );
}
