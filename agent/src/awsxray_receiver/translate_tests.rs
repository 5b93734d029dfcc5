//! The translation of documents the AWS X-Ray SDK for Python sent (recorded from
//! `tests/python/xray_sdk_emit.py` into `receivers/testdata/awsxray/`), and of the shapes it does
//! not send (in-progress segments, AWS calls, a cause by id, mistakes).

use super::*;
use vigil_core::attrs::{get, get_str};

const SEGMENT: &[u8] = include_bytes!("../../../receivers/testdata/awsxray/python_sdk_segment.txt");
const SUBSEGMENT: &[u8] =
    include_bytes!("../../../receivers/testdata/awsxray/python_sdk_subsegment.txt");

fn spans_of(datagram: &[u8]) -> (Vec<KeyValue>, Vec<Span>) {
    let doc = split_datagram(datagram).unwrap();
    let t = to_resource_spans(doc);
    let rs = t.result.unwrap();
    let spans = rs.scope_spans[0].spans.clone();
    assert_eq!(t.spans, spans.len());
    (rs.resource.unwrap().attributes, spans)
}

fn by_name<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|s| s.name == name).unwrap()
}

fn int(attrs: &[KeyValue], k: &str) -> Option<i64> {
    match get(attrs, k) {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        _ => None,
    }
}

fn boolean(attrs: &[KeyValue], k: &str) -> Option<bool> {
    match get(attrs, k) {
        Some(any_value::Value::BoolValue(b)) => Some(*b),
        _ => None,
    }
}

#[test]
fn python_sdk_segment_with_embedded_subsegments() {
    let (res, spans) = spans_of(SEGMENT);
    assert_eq!(spans.len(), 4);
    assert_eq!(get_str(&res, "service.name"), Some("checkout"));
    assert_eq!(get_str(&res, "cloud.provider"), Some("aws"));
    assert_eq!(
        get_str(&res, "telemetry.sdk.name"),
        Some("X-Ray for Python")
    );
    assert_eq!(get_str(&res, "telemetry.sdk.version"), Some("2.15.0"));
    assert_eq!(get_str(&res, "telemetry.sdk.language"), Some("Python"));

    let trace = hex("6b14f0f9b92056ec3e94e33e1ec534f1").unwrap();
    let root = by_name(&spans, "checkout");
    assert_eq!(root.trace_id, trace);
    assert_eq!(root.span_id, hex("4aea7c414566e584").unwrap());
    assert!(root.parent_span_id.is_empty());
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.start_time_unix_nano / 1_000_000, 1_796_534_521_724);
    assert!(root.end_time_unix_nano > root.start_time_unix_nano);
    let a = &root.attributes;
    assert_eq!(get_str(a, "http.method"), Some("GET"));
    assert_eq!(
        get_str(a, "http.url"),
        Some("http://shop.example.com/cart?id=7")
    );
    assert_eq!(get_str(a, "http.client_ip"), Some("10.1.2.3"));
    assert_eq!(get_str(a, "http.user_agent"), Some("curl/8.0"));
    assert_eq!(int(a, "http.status_code"), Some(500));
    assert_eq!(boolean(a, "aws.xray.inprogress"), Some(false));
    assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Error as i32);
    // Annotations: their own attributes, listed for the exporter; numbers as doubles.
    assert_eq!(get_str(a, "customer"), Some("c-42"));
    assert!(matches!(get(a, "items"), Some(any_value::Value::DoubleValue(f)) if *f == 3.0));
    let Some(any_value::Value::ArrayValue(keys)) = get(a, "aws.xray.annotations") else {
        panic!("no annotation list")
    };
    assert_eq!(keys.values.len(), 2);
    assert_eq!(
        get_str(a, "aws.xray.metadata.shop"),
        Some(r#"{"cart":{"sku":["a","b"]}}"#)
    );

    for s in spans.iter().filter(|s| s.name != "checkout") {
        assert_eq!(s.trace_id, trace, "{}", s.name);
        assert_eq!(s.parent_span_id, root.span_id, "{}", s.name);
    }
    let db = by_name(&spans, "db");
    assert_eq!(db.kind, SpanKind::Internal as i32);
    assert_eq!(get_str(&db.attributes, "db.system"), Some("PostgreSQL"));
    assert_eq!(get_str(&db.attributes, "db.name"), Some("orders"));
    assert_eq!(
        get_str(&db.attributes, "db.connection_string"),
        Some("postgresql://db.example.com:5432")
    );
    assert_eq!(get_str(&db.attributes, "db.user"), Some("app"));
    assert_eq!(
        get_str(&db.attributes, "db.statement"),
        Some("SELECT * FROM cart WHERE id = $1")
    );
    assert_eq!(db.status.as_ref().unwrap().code, StatusCode::Unset as i32);

    let remote = by_name(&spans, "payments.example.com");
    assert_eq!(remote.kind, SpanKind::Client as i32);
    assert_eq!(int(&remote.attributes, "http.status_code"), Some(404));
    assert_eq!(
        remote.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );

    let render = by_name(&spans, "render");
    assert_eq!(
        render.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    assert_eq!(render.events.len(), 1);
    let ev = &render.events[0].attributes;
    assert_eq!(get_str(ev, "exception.type"), Some("ValueError"));
    assert_eq!(get_str(ev, "exception.message"), Some("template missing"));
    assert_eq!(
        get_str(ev, "aws.xray.exception.id"),
        Some("9a5d72c18d7bc537")
    );
    let st = get_str(ev, "exception.stacktrace").unwrap();
    assert!(
        st.starts_with("ValueError: template missing\n\tat <module>(xray_sdk_emit.py: 67)\n"),
        "{st}"
    );
    assert!(st.ends_with("\tat main(xray_sdk_emit.py: 49)\n"), "{st}");
}

#[test]
fn python_sdk_streamed_subsegment() {
    let (res, spans) = spans_of(SUBSEGMENT);
    assert_eq!(get_str(&res, "service.name"), Some("payments.example.com"));
    assert_eq!(get_str(&res, "cloud.provider"), Some("unknown"));
    let s = &spans[0];
    // Sent on its own, it is still the child of its segment and not a server span.
    assert_eq!(s.parent_span_id, hex("91c151d06df1df20").unwrap());
    assert_eq!(s.kind, SpanKind::Client as i32);
    assert_eq!(s.trace_id, hex("6b14f17f2831f8f450d9e91299be7bbb").unwrap());
    assert_eq!(s.status.as_ref().unwrap().code, StatusCode::Error as i32);
}

fn one(doc: serde_json::Value) -> Result<ResourceSpans, String> {
    to_resource_spans(doc.to_string().as_bytes()).result
}

#[test]
fn in_progress_aws_call_and_flags() {
    let rs = one(serde_json::json!({
        "trace_id": "1-5f84c7a1-e7d1852db8c4fd35d88bf49a", "id": "0000000000000001", "name": "api",
        "start_time": 1602537377.5, "in_progress": true, "user": "ann",
        "aws": {"account_id": "123", "ec2": {"instance_id": "i-1", "availability_zone": "us-east-1a"}},
        "service": {"version": "1.2"},
        "subsegments": [
            {"id": "0000000000000002", "name": "DynamoDB", "namespace": "aws", "start_time": 1602537377.6,
             "end_time": 1602537377.7, "throttle": true, "error": true,
             "aws": {"operation": "PutItem", "table_name": "t", "region": "us-west-2", "retries": 2,
                     "request_id": "r1"}},
            {"id": "0000000000000003", "name": "local", "start_time": 1602537377.6, "end_time": 1602537377.7,
             "fault": true, "cause": "00000000000000ab",
             "subsegments": [{"id": "0000000000000004", "name": "deep", "start_time": 1602537377.61}]}
        ]
    }))
    .unwrap();
    let res = rs.resource.unwrap().attributes;
    assert_eq!(get_str(&res, "host.id"), Some("i-1"));
    assert_eq!(get_str(&res, "cloud.account.id"), Some("123"));
    assert_eq!(get_str(&res, "service.version"), Some("1.2"));
    let spans = &rs.scope_spans[0].spans;
    let root = by_name(spans, "api");
    assert_eq!(boolean(&root.attributes, "aws.xray.inprogress"), Some(true));
    assert_eq!(root.end_time_unix_nano, 0);
    assert_eq!(get_str(&root.attributes, "enduser.id"), Some("ann"));
    assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Unset as i32);
    let ddb = by_name(spans, "DynamoDB");
    assert_eq!(ddb.kind, SpanKind::Client as i32);
    assert_eq!(get_str(&ddb.attributes, "aws.service"), Some("DynamoDB"));
    assert_eq!(get_str(&ddb.attributes, "aws.operation"), Some("PutItem"));
    assert_eq!(get_str(&ddb.attributes, "aws.region"), Some("us-west-2"));
    assert_eq!(int(&ddb.attributes, "aws.xray.retries"), Some(2));
    assert_eq!(ddb.status.as_ref().unwrap().code, StatusCode::Error as i32);
    let local = by_name(spans, "local");
    assert_eq!(local.status.as_ref().unwrap().message, "00000000000000ab");
    let deep = by_name(spans, "deep");
    assert_eq!(deep.parent_span_id, local.span_id);
    assert_eq!(deep.trace_id, root.trace_id);
}

#[test]
fn refusals() {
    let base = || {
        serde_json::json!({"trace_id": "1-5f84c7a1-e7d1852db8c4fd35d88bf49a", "id": "0000000000000001",
                           "name": "a", "start_time": 1.0})
    };
    assert!(one(base()).is_ok());
    for field in ["trace_id", "id", "name", "start_time"] {
        let mut d = base();
        d.as_object_mut().unwrap().remove(field);
        let e = one(d).unwrap_err();
        assert!(e.contains(field), "{e}");
    }
    let mut d = base();
    d["trace_id"] = "1-xyz".into();
    assert!(one(d).unwrap_err().contains("trace_id"));
    let mut d = base();
    d["id"] = "12".into();
    assert!(one(d).unwrap_err().contains("16 hex"));
    let mut d = base();
    d["namespace"] = "galaxy".into();
    assert!(one(d).unwrap_err().contains("namespace"));
    let mut d = base();
    d["sql"] = serde_json::json!({"url": "nodatabase"});
    assert!(one(d).unwrap_err().contains("sql.url"));
    let mut d = base();
    d["subsegments"] = serde_json::json!([{"name": "x"}]);
    let t = to_resource_spans(d.to_string().as_bytes());
    assert_eq!(t.spans, 2);
    assert!(t.result.is_err());
    let t = to_resource_spans(b"{not json");
    assert_eq!(t.spans, 1);
    assert!(t.result.is_err());

    assert!(split_datagram(b"{\"format\":\"json\",\"version\":1}\n{}").is_ok());
    assert!(split_datagram(b"{\"format\":\"json\",\"version\":2}\n{}").is_err());
    assert!(split_datagram(b"{\"format\":\"xml\",\"version\":1}\n{}").is_err());
    assert!(split_datagram(b"{\"format\":\"json\",\"version\":1}\n  ").is_err());
    assert!(split_datagram(b"{}").is_err());
}
