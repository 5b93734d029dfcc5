//! `transform` and `routing` end to end, with examples written in the style of otelcol's transform and
//! routing READMEs: the OpenTelemetry Python SDK sends spans from two tenants, logs with JSON and plain
//! bodies, and a counter over OTLP/gRPC; vigil rewrites them with OTTL statements and routes them to
//! one `file` exporter per route; the test reads what each file got. A second test checks that
//! `vigil validate` refuses an unsupported function and a route to an unknown pipeline, naming them.

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use vigil_tests::{
    bin, eventually, free_port, otlp_attr, python, read_json_lines, repo_root, Agent,
};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:GRPC
processors:
  transform:
    error_mode: ignore
    trace_statements:
      - context: resource
        statements:
          - keep_keys(attributes, ["service.name", "tenant"])
      - context: span
        statements:
          - set(status.code, STATUS_CODE_ERROR) where attributes["http.response.status_code"] >= 500
          - replace_pattern(name, "/users/\\d+", "/users/{id}")
          - set(attributes["user.email"], SHA256(attributes["user.email"])) where attributes["user.email"] != nil
          - limit(attributes, 5, ["http.route", "user.email"])
      - 'set(span.attributes["tenant.copy"], resource.attributes["tenant"])'
    log_statements:
      - context: log
        conditions:
          - IsMatch(body, "^\\{")
        statements:
          - merge_maps(attributes, ParseJSON(body), "upsert")
          - set(severity_text, attributes["level"])
          - delete_key(attributes, "level")
      - set(log.attributes["body.length"], Len(log.body))
    metric_statements:
      - set(metric.description, "requests served") where metric.name == "ottl.requests"
      - context: datapoint
        statements:
          - set(attributes["unit"], metric.unit)
connectors:
  routing/traces:
    default_pipelines: [traces/other]
    error_mode: ignore
    table:
      - statement: route() where resource.attributes["tenant"] == "acme"
        pipelines: [traces/acme]
      - condition: attributes["http.response.status_code"] >= 500
        context: span
        pipelines: [traces/errors]
  routing/logs:
    default_pipelines: [logs/other]
    match_once: true
    table:
      - condition: severity_text == "ERROR"
        context: log
        pipelines: [logs/errors]
exporters:
  file/acme: {path: OUT/acme.jsonl}
  file/errors: {path: OUT/errors.jsonl}
  file/other: {path: OUT/other.jsonl}
  file/log_errors: {path: OUT/log_errors.jsonl}
  file/log_other: {path: OUT/log_other.jsonl}
  file/metrics: {path: OUT/metrics.jsonl}
extensions:
  health_check:
    endpoint: 127.0.0.1:HEALTH
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [transform], exporters: [routing/traces]}
    traces/acme: {receivers: [routing/traces], exporters: [file/acme]}
    traces/errors: {receivers: [routing/traces], exporters: [file/errors]}
    traces/other: {receivers: [routing/traces], exporters: [file/other]}
    logs: {receivers: [otlp], processors: [transform], exporters: [routing/logs]}
    logs/errors: {receivers: [routing/logs], exporters: [file/log_errors]}
    logs/other: {receivers: [routing/logs], exporters: [file/log_other]}
    metrics: {receivers: [otlp], processors: [transform], exporters: [file/metrics]}
  telemetry:
    metrics:
      level: none
"#;

fn attr_str(attrs: &Value, key: &str) -> Option<String> {
    otlp_attr(attrs, key).and_then(|v| v["stringValue"].as_str().map(str::to_string))
}

/// Every span in a traces file, with its resource.
fn spans(path: &Path) -> Vec<(Value, Value)> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rs in l["resourceSpans"].as_array().into_iter().flatten() {
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    out.push((rs["resource"].clone(), s.clone()));
                }
            }
        }
    }
    out
}

fn logs(path: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for l in read_json_lines(path) {
        for rl in l["resourceLogs"].as_array().into_iter().flatten() {
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                out.extend(sl["logRecords"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

#[test]
fn transform_and_routing_on_sdk_traffic() {
    let (grpc, health) = (free_port(), free_port());
    let out = tempfile::tempdir().expect("tempdir");
    let cfg = CONFIG
        .replace("GRPC", &grpc.to_string())
        .replace("HEALTH", &health.to_string())
        .replace("OUT", &out.path().display().to_string());
    let mut agent = Agent::with_config(&cfg);
    agent.wait_http_ok(
        &format!("http://127.0.0.1:{health}/"),
        Duration::from_secs(30),
    );

    let sent = Command::new(python())
        .arg(repo_root().join("tests/python/ottl_send.py"))
        .args(["--endpoint", &format!("http://127.0.0.1:{grpc}")])
        .output()
        .expect("run the SDK script");
    assert!(
        sent.status.success(),
        "SDK script failed: {}\nvigil: {}",
        String::from_utf8_lossy(&sent.stderr),
        agent.logs()
    );
    let sent: Value = serde_json::from_slice(&sent.stdout).expect("SDK script prints JSON");
    let dir = out.path();

    // Traces: acme's resource goes to traces/acme whole; ecorp's spans are split by status.
    let acme = eventually(Duration::from_secs(20), "acme's two spans", || {
        let s = spans(&dir.join("acme.jsonl"));
        (s.len() == 2).then_some(s)
    });
    let errors = eventually(Duration::from_secs(20), "ecorp's failed span", || {
        let s = spans(&dir.join("errors.jsonl"));
        (s.len() == 1).then_some(s)
    });
    let other = eventually(Duration::from_secs(20), "ecorp's good span", || {
        let s = spans(&dir.join("other.jsonl"));
        (s.len() == 1).then_some(s)
    });
    for (res, s) in &acme {
        assert_eq!(
            attr_str(&res["attributes"], "tenant").as_deref(),
            Some("acme")
        );
        // keep_keys on the resource dropped the SDK's telemetry.sdk.* attributes.
        let keys: Vec<&str> = res["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|kv| kv["key"].as_str())
            .collect();
        assert_eq!(keys, ["service.name", "tenant"], "{res}");
        assert!(
            s["name"].as_str().unwrap().starts_with("GET /users/{id}"),
            "{s}"
        );
        assert_eq!(
            attr_str(&s["attributes"], "tenant.copy").as_deref(),
            Some("acme")
        );
        // limit kept 5 attributes (the priority keys among them), then one more was set.
        assert_eq!(s["attributes"].as_array().unwrap().len(), 6, "{s}");
        assert!(otlp_attr(&s["attributes"], "http.route").is_some(), "{s}");
    }
    let (_, failed) = &errors[0];
    assert_eq!(failed["status"]["code"], 2, "{failed}");
    assert_eq!(
        attr_str(&failed["attributes"], "user.email"),
        sent["emails"]["ecorp/1"].as_str().map(str::to_string),
        "the e-mail address is hashed"
    );
    let (res, good) = &other[0];
    assert_eq!(
        attr_str(&res["attributes"], "tenant").as_deref(),
        Some("ecorp")
    );
    assert!(good["status"]["code"].as_i64().unwrap_or(0) != 2, "{good}");
    assert_eq!(
        attr_str(&good["attributes"], "user.email"),
        sent["emails"]["ecorp/0"].as_str().map(str::to_string)
    );

    // Logs: the JSON body's fields became attributes and its level the severity; the ERROR one
    // was routed apart; every record carries its body's length.
    let log_errors = eventually(Duration::from_secs(20), "the ERROR log", || {
        let l = logs(&dir.join("log_errors.jsonl"));
        (l.len() == 1).then_some(l)
    });
    let log_other = eventually(Duration::from_secs(20), "the other two logs", || {
        let l = logs(&dir.join("log_other.jsonl"));
        (l.len() == 2).then_some(l)
    });
    let e = &log_errors[0];
    assert_eq!(e["severityText"], "ERROR");
    assert_eq!(
        attr_str(&e["attributes"], "msg").as_deref(),
        Some("payment failed")
    );
    assert_eq!(attr_str(&e["attributes"], "order").as_deref(), Some("o-1"));
    assert!(otlp_attr(&e["attributes"], "level").is_none(), "{e}");
    let body_len = sent["bodies"][0]
        .as_str()
        .unwrap()
        .chars()
        .count()
        .to_string();
    assert_eq!(
        otlp_attr(&e["attributes"], "body.length")
            .map(|v| v["intValue"].to_string().trim_matches('"').to_string()),
        Some(body_len)
    );
    let sev: Vec<&str> = log_other
        .iter()
        .map(|l| l["severityText"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(sev, ["INFO", "INFO"]);
    assert!(
        log_other
            .iter()
            .any(|l| l["body"]["stringValue"] == "plain text line"
                && otlp_attr(&l["attributes"], "msg").is_none()),
        "the plain line is untouched by the JSON group: {log_other:?}"
    );

    // Metrics: the flat statement set the description, the datapoint group copied the unit.
    let m = eventually(Duration::from_secs(20), "the counter", || {
        read_json_lines(&dir.join("metrics.jsonl"))
            .into_iter()
            .find_map(|l| {
                l["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
                    .as_array()?
                    .iter()
                    .find(|m| m["name"] == "ottl.requests")
                    .cloned()
            })
    });
    assert_eq!(m["description"], "requests served");
    let dp = &m["sum"]["dataPoints"][0];
    assert_eq!(
        attr_str(&dp["attributes"], "unit").as_deref(),
        Some("1"),
        "{dp}"
    );
}

/// Runs `vigil validate` on a config that must fail, and returns what it printed.
fn validate_fails(cfg: &Path) -> String {
    let out = Command::new(bin("vigil"))
        .args(["validate", "--config", &cfg.display().to_string()])
        .output()
        .expect("run vigil validate");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

#[test]
fn validate_names_unsupported_functions_and_unknown_pipelines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:0
processors:
  transform:
    log_statements:
      - set(log.attributes["h"], Levenshtein(log.body))
connectors:
  routing:
    table:
      - condition: resource.attributes["tenant"] == "acme"
        pipelines: [logs/typo]
exporters:
  debug:
service:
  pipelines:
    logs: {receivers: [otlp], processors: [transform], exporters: [routing]}
    logs/out: {receivers: [routing], exporters: [debug]}
"#,
    )
    .expect("write config");
    let err = validate_fails(&cfg);
    assert!(
        err.contains("processors::transform::log_statements::0")
            && err.contains("unsupported converter \"Levenshtein\""),
        "{err}"
    );

    // With the function fixed, the graph is built and the route's typo is found.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("Levenshtein(log.body)", "SHA256(log.body)"),
    )
    .unwrap();
    let err = validate_fails(&cfg);
    assert!(
        err.contains("connectors::routing::table::0::pipelines") && err.contains("logs/typo"),
        "{err}"
    );
}
