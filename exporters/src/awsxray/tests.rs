//! Segment documents from spans, and the config.

use super::*;
use opentelemetry_proto::tonic::trace::v1::{span::Event, Status};
use vigil_core::attrs::{kv_i64, kv_str};

fn cfg(v: Value) -> AwsXrayConfig {
    let id = ComponentId::parse("awsxray").unwrap();
    let c: AwsXrayConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Exporter, &id, &v).unwrap();
    c.validate(&id).unwrap();
    c
}

const NOW: i64 = 1_764_930_000;

fn trace_id() -> Vec<u8> {
    let mut id = ((NOW - 60) as u32).to_be_bytes().to_vec();
    id.extend_from_slice(&[0xab; 12]);
    id
}

#[test]
fn server_span_is_a_segment_named_after_the_service() {
    let span = Span {
        trace_id: trace_id(),
        span_id: vec![1; 8],
        name: "GET /cart".into(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_500_000_000,
        end_time_unix_nano: 1_700_000_001_000_000_000,
        attributes: vec![
            kv_str("http.request.method", "GET"),
            kv_str("url.full", "http://shop/cart"),
            kv_i64("http.response.status_code", 503),
            kv_str("customer", "c-1"),
            kv_str("tier", "gold"),
            kv_str("enduser.id", "u-7"),
        ],
        status: Some(Status {
            code: StatusCode::Error as i32,
            message: "backend down".into(),
        }),
        ..Default::default()
    };
    let resource = vec![
        kv_str("service.name", "cart"),
        kv_str("cloud.provider", "aws"),
        kv_str("cloud.platform", "aws_ec2"),
        kv_str("host.id", "i-0abc"),
        kv_str("telemetry.sdk.name", "opentelemetry"),
        kv_str("telemetry.sdk.language", "python"),
    ];
    let c = cfg(json!({"indexed_attributes": ["customer"], "aws_log_groups": ["/app/cart"]}));
    let d = segment(&span, &resource, &c, NOW).unwrap();
    assert_eq!(d["name"], "cart");
    assert_eq!(
        d["trace_id"],
        format!("1-{:08x}-{}", NOW - 60, "ab".repeat(12))
    );
    assert_eq!(d["id"], "0101010101010101");
    assert_eq!(d["start_time"], 1_700_000_000.5);
    assert!(d.get("type").is_none() && d.get("parent_id").is_none());
    assert_eq!(d["http"]["request"]["method"], "GET");
    assert_eq!(d["http"]["response"]["status"], 503);
    assert_eq!(
        (d["fault"].clone(), d["error"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(d["cause"]["exceptions"][0]["message"], "backend down");
    assert_eq!(d["annotations"], json!({"customer": "c-1"}));
    assert_eq!(d["metadata"]["default"]["tier"], "gold");
    assert_eq!(
        d["metadata"]["default"]["otel.resource.service.name"],
        "cart"
    );
    assert!(d["metadata"]["default"].get("url.full").is_none());
    assert_eq!(d["user"], "u-7");
    assert_eq!(d["origin"], "AWS::EC2::Instance");
    assert_eq!(d["aws"]["ec2"]["instance_id"], "i-0abc");
    assert_eq!(
        d["aws"]["cloudwatch_logs"],
        json!([{"log_group": "/app/cart"}])
    );
    assert_eq!(d["aws"]["xray"]["sdk"], "opentelemetry for python");
}

#[test]
fn client_span_is_a_remote_subsegment() {
    let span = Span {
        trace_id: trace_id(),
        span_id: vec![2; 8],
        parent_span_id: vec![1; 8],
        name: "SELECT".into(),
        kind: SpanKind::Client as i32,
        attributes: vec![
            kv_str("db.system", "postgresql"),
            kv_str("db.name", "orders"),
            kv_str("db.statement", "SELECT 1"),
            kv_str("db.connection_string", "postgresql://db.internal:5432"),
            kv_i64("http.status_code", 429),
        ],
        events: vec![Event {
            name: "exception".into(),
            attributes: vec![
                kv_str("exception.type", "Timeout"),
                kv_str("exception.message", "slow"),
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let d = segment(&span, &[], &cfg(json!({"index_all_attributes": true})), NOW).unwrap();
    assert_eq!(d["name"], "orders@db.internal");
    assert_eq!(d["type"], "subsegment");
    assert_eq!(d["namespace"], "remote");
    assert_eq!(d["parent_id"], "0101010101010101");
    assert_eq!(d["sql"]["database_type"], "postgresql");
    assert_eq!(
        (d["throttle"].clone(), d["error"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(d["cause"]["exceptions"][0]["type"], "Timeout");
    assert_eq!(d["annotations"]["db_system"], "postgresql");
}

#[test]
fn random_trace_ids_are_refused_like_otelcol() {
    let e = xray_trace_id(&[0xff; 16], NOW).unwrap_err();
    assert!(e.contains("X-Ray id generator"), "{e}");
    assert!(xray_trace_id(&[1; 8], NOW).is_err());
    assert_eq!(segment_name("a<b>c"), "abc");
    assert_eq!(segment_name("<>"), "span");
}

#[test]
fn config_keys() {
    let id = ComponentId::parse("awsxray").unwrap();
    let bad = |v: Value| {
        let c: Result<AwsXrayConfig, _> =
            vigil_core::config::decode(vigil_core::ComponentKind::Exporter, &id, &v);
        match c {
            Ok(c) => c.validate(&id).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    };
    assert!(bad(json!({"role_arn": "arn:aws:iam::1:role/r"})).contains("role_arn"));
    assert!(bad(json!({"endpoint": "ftp://x"})).contains("endpoint"));
    assert!(bad(json!({"indexed_attribute": []})).contains("indexed_attribute"));
    let c = cfg(
        json!({"region": "eu-west-1", "local_mode": true, "telemetry": {"enabled": true, "include_metadata": true}}),
    );
    assert_eq!(c.session().request_timeout_seconds, 30);
}
