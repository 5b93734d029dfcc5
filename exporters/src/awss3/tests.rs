//! Keys, config errors, credentials, and delivery against a local S3 double that fails first.

use super::*;
use crate::helper::aws::profile_keys;
use crate::helper::encode::tests::sample_traces;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use vigil_core::{Component, ComponentKind, Consumer};

fn id() -> ComponentId {
    ComponentId::parse("awss3/test").unwrap()
}

fn decode(v: Value) -> Result<AwsS3Config, ConfigError> {
    let cfg: AwsS3Config = vigil_core::config::decode(ComponentKind::Exporter, &id(), &v)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

#[test]
fn keys_are_time_partitioned_for_pruning() {
    let cfg = decode(json!({"s3uploader": {
        "s3_bucket": "lake", "s3_prefix": "/otel/raw/", "file_prefix": "node-a_", "compression": "gzip"
    }}))
    .unwrap();
    let u = cfg.uploader().unwrap();
    let at = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:07:42Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        object_key(u, Marshaler::OtlpJson, Signal::Traces, at, 0xabc),
        "otel/raw/year=2026/month=12/day=05/hour=10/minute=07/node-a_traces_0000000000000abc.json.gz"
    );
    let plain = decode(
        json!({"s3uploader": {"s3_bucket": "lake", "s3_partition_format": "%Y/%m/%d"},
        "marshaler": "otlp_proto"}),
    )
    .unwrap();
    assert_eq!(
        object_key(
            plain.uploader().unwrap(),
            plain.marshaler,
            Signal::Logs,
            at,
            1
        ),
        "2026/12/05/logs_0000000000000001.binpb"
    );
}

#[test]
fn config_errors_name_the_key() {
    let err = |v: Value| decode(v).unwrap_err().to_string();
    assert!(err(json!({})).contains("s3uploader: is required"));
    assert!(err(json!({"s3uploader": {}})).contains("s3uploader::s3_bucket"));
    assert!(
        err(json!({"s3uploader": {"s3_bucket": "b", "role_arn": "arn:aws:iam::1:role/x"}}))
            .contains("s3uploader::role_arn: assuming a role is not supported")
    );
    assert!(
        err(json!({"s3uploader": {"s3_bucket": "b", "s3_partition_format": "%Q"}}))
            .contains("s3uploader::s3_partition_format")
    );
    assert!(
        err(json!({"s3uploader": {"s3_bucket": "b", "endpoint": "http://127.0.0.1:9000"}}))
            .contains("s3_force_path_style")
    );
    assert!(
        err(json!({"s3uploader": {"s3_bucket": "b", "compression": "zstd"}}))
            .contains("s3uploader::compression")
    );
    assert!(
        err(json!({"s3uploader": {"s3_bucket": "b"}, "marshaler": "sumo_ic"}))
            .contains("marshaler")
    );
    decode(
        json!({"s3uploader": {"s3_bucket": "b", "endpoint": "127.0.0.1:9000",
        "s3_force_path_style": true, "disable_ssl": true}}),
    )
    .unwrap();
}

#[test]
fn shared_credentials_file_profiles() {
    let text = "[default]\naws_access_key_id = AK1\naws_secret_access_key = S1\n\n\
                [profile other]\naws_access_key_id=AK2\naws_secret_access_key=S2\naws_session_token=T2\n";
    assert_eq!(profile_keys(text, "default")["aws_access_key_id"], "AK1");
    let other = profile_keys(text, "other");
    assert_eq!(other["aws_session_token"], "T2");
    assert!(profile_keys(text, "missing").is_empty());
}

/// A bucket that answers 503 to the first `fail` PUTs, never answers the next `stall`, then
/// stores objects.
#[derive(Default)]
struct FakeS3 {
    fail: usize,
    stall: usize,
    calls: AtomicUsize,
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    signed: AtomicUsize,
}

async fn put(
    State(s): State<Arc<FakeS3>>,
    Path((bucket, key)): Path<(String, String)>,
    uri: Uri,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    if uri.query().is_some_and(|q| q.contains("X-Amz-Signature=")) {
        s.signed.fetch_add(1, Ordering::SeqCst);
    }
    if n < s.fail {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<Error><Code>SlowDown</Code></Error>".into(),
        );
    }
    if n < s.fail + s.stall {
        std::future::pending::<()>().await;
    }
    vigil_core::lock(&s.objects).insert(format!("{bucket}/{key}"), body.to_vec());
    (StatusCode::OK, String::new())
}

async fn fake_s3(fail: usize, stall: usize) -> (Arc<FakeS3>, String) {
    let s = Arc::new(FakeS3 {
        fail,
        stall,
        ..Default::default()
    });
    let app = axum::Router::new()
        .route("/{bucket}/{*key}", axum::routing::put(put))
        .with_state(Arc::clone(&s));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (s, format!("http://{addr}"))
}

fn exporter(endpoint: &str, extra: Value, creds: &std::path::Path) -> SendStack<S3Sender> {
    let mut v = json!({
        "s3uploader": {"s3_bucket": "lake", "endpoint": endpoint, "s3_force_path_style": true,
                       "compression": "gzip"},
        "timeout": "300ms",
        "retry_on_failure": {"initial_interval": "10ms", "max_interval": "20ms", "max_elapsed_time": "0s"},
    });
    if let (Some(c), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    let cfg = decode(v).unwrap();
    let set = Settings::new(ComponentKind::Exporter, &id());
    // The test's own credentials file, whatever the machine has (the environment still wins).
    let source = CredentialSource {
        file: Some(creds.to_path_buf()),
        profile: "default".into(),
    };
    build_with(&set, cfg, source).unwrap()
}

#[tokio::test]
async fn a_bucket_answering_503_then_stalling_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id=AKTEST\naws_secret_access_key=secret\n",
    )
    .unwrap();
    let (s3, endpoint) = fake_s3(3, 2).await;
    let e = exporter(&endpoint, json!({}), &creds);
    e.start(&Host::detached()).await.unwrap();
    for _ in 0..4 {
        e.consume(sample_traces(5)).await.unwrap();
    }
    for _ in 0..1500 {
        if vigil_core::lock(&s3.objects).len() == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let objects = vigil_core::lock(&s3.objects).clone();
    assert_eq!(
        objects.len(),
        4,
        "every batch is one object after 3 × 503 and 2 stalls"
    );
    assert!(s3.calls.load(Ordering::SeqCst) >= 9);
    assert_eq!(
        s3.signed.load(Ordering::SeqCst),
        s3.calls.load(Ordering::SeqCst)
    );
    for (key, body) in &objects {
        assert!(key.starts_with("lake/year="), "{key}");
        assert!(key.ends_with(".json.gz"), "{key}");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        let spans: usize = v["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["scopeSpans"].as_array().unwrap())
            .map(|s| s["spans"].as_array().unwrap().len())
            .sum();
        assert_eq!(spans, 5);
    }
    e.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_bucket_is_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id=A\naws_secret_access_key=S\n",
    )
    .unwrap();
    // Nothing routes PUT /lake/...: 404 from the router, which S3 answers for NoSuchBucket too.
    let app = axum::Router::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let e = exporter(
        &format!("http://{addr}"),
        json!({"sending_queue": {"enabled": false}}),
        &creds,
    );
    e.start(&Host::detached()).await.unwrap();
    let err = e.consume(sample_traces(2)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}
