use super::*;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::AnyValue;
use vigil_core::otlp::logs::v1::LogRecord;
use vigil_core::otlp::trace::v1::{status::StatusCode, Span, Status};

fn log() -> LogRecord {
    LogRecord {
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue {
            value: Some(Value::StringValue("GET /health 200".into())),
        }),
        attributes: vec![kv_str("http.route", "/health"), kv_i64("http.status", 503)],
        ..Default::default()
    }
}

fn on_log(src: &str) -> Result<bool, String> {
    let c = parse_condition(Context::LogRecord, src)?;
    let l = log();
    let res = vec![kv_str("service.name", "web")];
    c.eval(&LogCtx {
        log: &l,
        resource: &res,
    })
}

#[test]
fn log_conditions() {
    assert_eq!(on_log(r#"attributes["http.route"] == "/health""#), Ok(true));
    assert_eq!(on_log("severity_number >= SEVERITY_NUMBER_ERROR"), Ok(true));
    assert_eq!(on_log("severity_number < SEVERITY_NUMBER_WARN2"), Ok(false));
    assert_eq!(
        on_log(
            r#"IsMatch(body, "^GET /health") and not (resource.attributes["service.name"] != "web")"#
        ),
        Ok(true)
    );
    assert_eq!(on_log(r#"attributes["missing"] == nil or false"#), Ok(true));
    assert_eq!(on_log(r#"attributes["http.status"] > 499.5"#), Ok(true));
    assert_eq!(
        on_log(r#"severity_text == "ERROR" and attributes["http.status"] == "503""#),
        Ok(false)
    );
    assert_eq!(on_log(r#"log.severity_text == "ERROR""#), Ok(true));
}

#[test]
fn span_conditions() {
    let s = Span {
        name: "GET /x".into(),
        kind: 2,
        status: Some(Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let check = |src: &str| {
        parse_condition(Context::Span, src)
            .unwrap()
            .eval(&SpanCtx {
                span: &s,
                resource: &[],
            })
            .unwrap()
    };
    assert!(check(
        "kind == SPAN_KIND_SERVER and status.code == STATUS_CODE_ERROR"
    ));
    assert!(!check(r#"name == "GET /y""#));
    assert!(check(r#"span.name != "GET /y""#));
}

#[test]
fn unsupported_parts_are_named() {
    let e = parse_condition(Context::LogRecord, r#"Concat(body, "x") == "y""#).unwrap_err();
    assert!(e.contains("Concat"), "{e}");
    let e = parse_condition(Context::Span, "body == nil").unwrap_err();
    assert!(
        e.contains("unsupported path body in the span context"),
        "{e}"
    );
    let e = parse_condition(Context::LogRecord, "attributes == nil").unwrap_err();
    assert!(e.contains("needs a key"), "{e}");
    let e = parse_condition(Context::LogRecord, "severity_number + 1 > 3").unwrap_err();
    assert!(e.contains("unsupported character '+'"), "{e}");
    let e = parse_condition(Context::Metric, "name == \"x\" where").unwrap_err();
    assert!(e.contains("where"), "{e}");
}
