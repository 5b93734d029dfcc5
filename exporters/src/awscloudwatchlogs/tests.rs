//! Config errors, otelcol's event JSON, `raw_log` routing of EMF bodies, `emf_only`, and a batch
//! cut into calls by stream.

use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde_json::json;
use vigil_core::attrs::{kv, kv_str};

fn id() -> ComponentId {
    ComponentId::parse("awscloudwatchlogs/test").unwrap()
}

fn decode(v: Value) -> Result<AwsCloudWatchLogsConfig, ConfigError> {
    let cfg: AwsCloudWatchLogsConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Exporter, &id(), &v)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn err(v: Value) -> String {
    decode(v).unwrap_err().to_string()
}

#[test]
fn config_keys_defaults_and_errors() {
    let base = json!({"log_group_name": "g", "log_stream_name": "s", "region": "us-east-1"});
    let cfg = decode(base.clone()).unwrap();
    assert_eq!(cfg.sending_queue.num_consumers, 1, "otelcol's default");
    assert_eq!(cfg.settings().timeout, std::time::Duration::from_secs(30));
    // A partial section keeps the component's default consumer count.
    let mut v = base.clone();
    v["sending_queue"] = json!({"queue_size": 50});
    let cfg = decode(v).unwrap();
    assert_eq!(
        (
            cfg.sending_queue.num_consumers,
            cfg.sending_queue.queue_size
        ),
        (1, 50)
    );
    assert!(err(json!({"log_stream_name": "s"})).contains("log_group_name"));
    assert!(err(json!({"log_group_name": "g"})).contains("log_stream_name"));
    let with = |k: &str, x: Value| {
        let mut v = base.clone();
        v[k] = x;
        err(v)
    };
    let e = with("role_arn", json!("arn:aws:iam::1:role/r"));
    assert!(e.contains("role_arn") && e.contains("not supported"), "{e}");
    assert!(with("log_retention", json!(8)).contains("log_retention"));
    assert!(with("tags", json!({"a": "b!"})).contains("tags::a"));
    assert!(
        with("timeout", json!("5s")).contains("timeout"),
        "otelcol has no timeout key"
    );
    assert!(with("nope", json!(1)).contains("nope"));
    let mut v = base;
    v["raw_log"] = json!(true);
    v["emf_only"] = json!(true);
    v["log_retention"] = json!(365);
    v["tags"] = json!({"team": "obs"});
    v["endpoint"] = json!("logs.us-east-1.amazonaws.com");
    v["retry_on_failure"] = json!({"enabled": true, "initial_interval": "10ms"});
    decode(v).unwrap();
}

fn sender(extra: Value) -> CwlSender {
    let mut v = json!({"log_group_name": "g", "log_stream_name": "s", "region": "us-east-1"});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    let cfg = decode(v).unwrap();
    let client = reqwest::Client::new();
    CwlSender {
        id: id(),
        logs: CwLogs::new(
            JsonApi::new(
                "logs",
                "CloudWatch Logs",
                client,
                CredentialSource::from_env(),
            ),
            0,
            BTreeMap::new(),
        ),
        counters: EventCounters {
            truncated: metrics::Counter::noop(),
            dropped: metrics::Counter::noop(),
        },
        unwritable: metrics::Counter::noop(),
        rejected: metrics::Counter::noop(),
        cfg,
    }
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Any::StringValue(s.into())),
    })
}

fn logs(records: Vec<LogRecord>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "shop")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "shop.checkout".into(),
                version: "1.2".into(),
                ..Default::default()
            }),
            log_records: records,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

const NOW_NS: u64 = 1_764_930_000_000_000_000;

fn now_ns() -> u64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap() as u64
}

#[test]
fn a_record_is_written_as_otelcols_json() {
    let r = LogRecord {
        time_unix_nano: NOW_NS,
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(Any::KvlistValue(KeyValueList {
                values: vec![kv_str("z", "1"), kv("a", Any::BytesValue(vec![1, 2]))],
            })),
        }),
        attributes: vec![kv("n", Any::IntValue(3)), kv("ok", Any::BoolValue(true))],
        trace_id: vec![0xab; 16],
        span_id: vec![0; 8],
        flags: 1,
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "shop.checkout".into(),
        ..Default::default()
    };
    let res = Some(r#"{"service.name":"shop"}"#.to_string());
    let text = wrapped(&r, Some(&scope), &res).unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"body":{{"a":"AQI=","z":"1"}},"severity_number":9,"severity_text":"INFO","flags":1,"trace_id":"{}","attributes":{{"n":3,"ok":true}},"scope":{{"name":"shop.checkout"}},"resource":{{"service.name":"shop"}}}}"#,
            "ab".repeat(16)
        )
    );
    // Nothing set: an empty object, as Go's omitempty writes it.
    assert_eq!(wrapped(&LogRecord::default(), None, &None).unwrap(), "{}");
    // A NaN cannot be JSON: the record cannot be written (otelcol's marshal fails too).
    let nan = LogRecord {
        attributes: vec![kv("x", Any::DoubleValue(f64::NAN))],
        ..Default::default()
    };
    assert!(wrapped(&nan, None, &None).is_none());
}

#[test]
fn records_become_calls_by_stream_in_time_order() {
    let s = sender(json!({}));
    let t = now_ns();
    let rec = |dt: u64, body: &str| LogRecord {
        time_unix_nano: t - dt * 1_000_000,
        body: string(body),
        ..Default::default()
    };
    let nan = LogRecord {
        time_unix_nano: t,
        body: Some(AnyValue {
            value: Some(Any::DoubleValue(f64::INFINITY)),
        }),
        ..Default::default()
    };
    let req = s
        .prepare(&logs(vec![rec(1, "second"), rec(2, "first"), nan]))
        .unwrap();
    assert_eq!(req.batches.len(), 1);
    assert_eq!(req.dropped, 1, "the record with an infinite body");
    let b = &req.batches[0];
    assert_eq!((b.group.as_str(), b.stream.as_str()), ("g", "s"));
    let bodies: Vec<Value> = b
        .events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.1).unwrap()["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("first"), json!("second")]);
    let first: Value = serde_json::from_str(&b.events[0].1).unwrap();
    assert_eq!(
        first["scope"],
        json!({"name": "shop.checkout", "version": "1.2"})
    );
    assert_eq!(first["resource"], json!({"service.name": "shop"}));
}

#[test]
fn raw_log_sends_the_body_and_routes_emf_by_its_own_group_and_stream() {
    let s = sender(json!({"raw_log": true}));
    let t = now_ns();
    let rec = |body: &str| LogRecord {
        time_unix_nano: t,
        body: string(body),
        ..Default::default()
    };
    let v1 = r#"{"_aws":{"Timestamp":1,"LogGroupName":"emf-g","LogStreamName":"emf-s","CloudWatchMetrics":[]},"x":1}"#;
    let v0 = r#"{"log_group_name":"v0-g","CloudWatchMetrics":[],"y":2}"#;
    let req = s
        .prepare(&logs(vec![rec("plain text"), rec(v1), rec(v0)]))
        .unwrap();
    let got: Vec<(&str, &str, &str)> = req
        .batches
        .iter()
        .flat_map(|b| {
            b.events
                .iter()
                .map(move |e| (b.group.as_str(), b.stream.as_str(), e.1.as_str()))
        })
        .collect();
    assert_eq!(
        got,
        [
            ("g", "s", "plain text"),
            ("emf-g", "emf-s", v1),
            ("v0-g", "s", v0)
        ]
    );

    // emf_only leaves out what is not EMF.
    let s = sender(json!({"raw_log": true, "emf_only": true}));
    let req = s
        .prepare(&logs(vec![rec("plain text"), rec(v1), rec("{\"a\":1}")]))
        .unwrap();
    assert_eq!(req.dropped, 2);
    assert_eq!(req.events(), 1);
}
