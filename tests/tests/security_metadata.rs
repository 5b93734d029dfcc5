//! Request metadata from a client to the next hop, end to end, as otelcol's `include_metadata` →
//! `batch::metadata_keys` → `headers_setter::from_context`: the OpenTelemetry Python SDK sends spans
//! with an `x-tenant` header (gRPC and HTTP) to a first vigil, whose `otlp` exporter copies it into
//! `X-Scope-OrgID` on its way to a second vigil. The second one proves the header arrived: it
//! authenticates with `bearertokenauth` reading that header, and its roles stamp the tenant the
//! header named on every resource it writes. Without `include_metadata` on the first vigil the
//! header never leaves it, so the second one refuses every request (counted as unauthenticated) and
//! writes nothing.

use std::time::Duration;
use vigil_tests::{
    eventually, free_port, metric_sum, sdk_auth_export, spans_by_resource_attrs, Agent,
};

/// One SDK export of three spans with `headers`; `"SUCCESS"` or `"FAILURE"`.
fn sdk(protocol: &str, endpoint: &str, run: &str, headers: &[&str]) -> String {
    sdk_auth_export(protocol, endpoint, run, headers, &[])
}

/// The sum of a counter of an agent's own metrics over its labels.
fn counter(port: u16, name: &str) -> f64 {
    metric_sum(port, name, "").unwrap_or(0.0)
}

struct Hops {
    first: Agent,
    second: Agent,
    grpc: String,
    http: String,
    second_metrics: u16,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The second vigil (authenticating by `X-Scope-OrgID`, tenants by role, writing to a file), then
/// the first (SDK-facing, `include_metadata` as given, `batch` keyed on `x-tenant`, exporting over
/// gRPC through `headers_setter`).
fn start(include_metadata: bool) -> Hops {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("second.jsonl");
    let (b_grpc, b_health, b_metrics) = (free_port(), free_port(), free_port());
    let mut second = Agent::with_config(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{b_grpc}
        auth:
          authenticator: bearertokenauth
          roles:
            - {{principals: [acme], tenant: acme}}
            - {{principals: [globex], tenant: globex}}
extensions:
  bearertokenauth:
    header: X-Scope-OrgID
    scheme: ""
    tokens:
      - {{token: acme, principal: acme}}
      - {{token: globex, principal: globex}}
  health_check:
    endpoint: 127.0.0.1:{b_health}
exporters:
  file:
    path: {}
service:
  extensions: [health_check, bearertokenauth]
  pipelines:
    traces: {{receivers: [otlp], exporters: [file]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{b_metrics}
"#,
        out.display()
    ));
    second.wait_healthy(b_health, Duration::from_secs(60));
    let (a_grpc, a_http, a_health) = (free_port(), free_port(), free_port());
    let mut first = Agent::with_config(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "127.0.0.1:{a_grpc}", include_metadata: {include_metadata}}}
      http: {{endpoint: "127.0.0.1:{a_http}", include_metadata: {include_metadata}}}
processors:
  batch:
    timeout: 100ms
    metadata_keys: [x-tenant]
extensions:
  headers_setter:
    headers:
      - key: X-Scope-OrgID
        from_context: x-tenant
  health_check:
    endpoint: 127.0.0.1:{a_health}
exporters:
  otlp:
    endpoint: 127.0.0.1:{b_grpc}
    tls: {{insecure: true}}
    auth: {{authenticator: headers_setter}}
    retry_on_failure: {{enabled: false}}
service:
  extensions: [health_check, headers_setter]
  pipelines:
    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}
  telemetry:
    metrics:
      address: 127.0.0.1:{}
"#,
        free_port()
    ));
    first.wait_healthy(a_health, Duration::from_secs(60));
    Hops {
        first,
        second,
        grpc: format!("http://127.0.0.1:{a_grpc}"),
        http: format!("http://127.0.0.1:{a_http}"),
        second_metrics: b_metrics,
        out,
        _dir: dir,
    }
}

impl Hops {
    /// `(test.run, tenant.id)` of every span the second vigil wrote, sorted.
    fn spans(&self) -> Vec<(String, String)> {
        spans_by_resource_attrs(&self.out, "test.run", "tenant.id")
    }
}

#[test]
fn a_client_header_reaches_the_next_hop_with_include_metadata() {
    let h = start(true);
    assert_eq!(sdk("http", &h.http, "http", &["x-tenant=acme"]), "SUCCESS");
    assert_eq!(
        sdk("grpc", &h.grpc, "grpc", &["x-tenant=globex"]),
        "SUCCESS"
    );
    let got = eventually(
        Duration::from_secs(30),
        "6 spans at the second vigil",
        || {
            let s = h.spans();
            (s.len() >= 6).then_some(s)
        },
    );
    let want: Vec<(String, String)> = [("grpc", "globex"), ("http", "acme")]
        .iter()
        .flat_map(|(r, t)| vec![(r.to_string(), t.to_string()); 3])
        .collect();
    assert_eq!(
        got, want,
        "each request's tenant header reached the next hop"
    );
    assert_eq!(
        counter(h.second_metrics, "vigil_receiver_requests_unauthenticated"),
        0.0
    );
    drop(h.first);
    drop(h.second);
}

#[test]
fn without_include_metadata_the_header_stays_behind() {
    let h = start(false);
    // The first vigil accepts (its receiver has no auth); its export to the second one is refused.
    assert_eq!(sdk("http", &h.http, "http", &["x-tenant=acme"]), "SUCCESS");
    assert_eq!(
        sdk("grpc", &h.grpc, "grpc", &["x-tenant=globex"]),
        "SUCCESS"
    );
    eventually(
        Duration::from_secs(30),
        "the second vigil to refuse the first's exports",
        || {
            (counter(h.second_metrics, "vigil_receiver_requests_unauthenticated") >= 1.0)
                .then_some(())
        },
    );
    assert!(h.spans().is_empty(), "{:?}", h.spans());
    drop(h.first);
    drop(h.second);
}
