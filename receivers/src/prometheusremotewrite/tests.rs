//! Unit tests of the remote-write receiver: decoding, the OTLP mapping, and the HTTP answers a
//! Prometheus sender acts on.

use super::*;
use proto::{Label, MetricMetadata, Sample, TimeSeries};
use std::sync::Mutex as StdMutex;
use vigil_core::testing::Counters;

#[derive(Default)]
struct Sink {
    got: StdMutex<Vec<Telemetry>>,
    fail: Option<ConsumeError>,
}

#[async_trait]
impl vigil_core::Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Some(e) = &self.fail {
            return Err(e.clone());
        }
        self.got.lock().unwrap().push(data);
        Ok(())
    }
}

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.into(),
        value: v.into(),
    }
}

fn series(name: &str, extra: &[(&str, &str)], value: f64, ts: i64) -> TimeSeries {
    let mut labels = vec![
        label("__name__", name),
        label("job", "node"),
        label("instance", "h:9100"),
    ];
    labels.extend(extra.iter().map(|(k, v)| label(k, v)));
    TimeSeries {
        labels,
        samples: vec![Sample {
            value,
            timestamp: ts,
        }],
        exemplars: vec![],
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn snappy(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn id() -> ComponentId {
    ComponentId::parse("prometheusremotewrite").unwrap()
}

fn settings() -> Settings {
    Settings::new(ComponentKind::Receiver, &id())
}

fn shared() -> Shared {
    let obs = ReceiverObs::new(&id(), "http");
    Shared::new(&id(), &Config::default(), NextConsumers::new(), obs)
}

#[test]
fn maps_series_to_resources_sums_and_gauges() {
    let s = shared();
    let t = now_ms();
    let req = WriteRequest {
        timeseries: vec![
            series(
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "idle")],
                12.5,
                t,
            ),
            series("node_load1", &[], 0.4, t),
        ],
        metadata: vec![],
    };
    let rms = s.translate(req, SystemTime::now());
    assert_eq!(rms.len(), 1);
    let attrs = &rms[0].resource.as_ref().unwrap().attributes;
    assert_eq!(
        vigil_core::attrs::get_str(attrs, "service.name"),
        Some("node")
    );
    assert_eq!(
        vigil_core::attrs::get_str(attrs, "service.instance.id"),
        Some("h:9100")
    );
    let metrics = &rms[0].scope_metrics[0].metrics;
    assert_eq!(metrics[0].name, "node_cpu_seconds_total");
    match &metrics[0].data {
        Some(Data::Sum(sum)) => {
            assert!(sum.is_monotonic);
            let p = &sum.data_points[0];
            assert_eq!(p.value, Some(number_data_point::Value::AsDouble(12.5)));
            assert_eq!(p.time_unix_nano, t as u64 * 1_000_000);
            assert_eq!(
                vigil_core::attrs::get_str(&p.attributes, "mode"),
                Some("idle")
            );
        }
        other => panic!("expected a Sum, got {other:?}"),
    }
    assert!(matches!(metrics[1].data, Some(Data::Gauge(_))));
}

#[test]
fn metadata_decides_the_type_and_old_samples_are_dropped() {
    let s = shared();
    let t = now_ms();
    let meta = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "requests".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    };
    assert!(s.translate(meta, SystemTime::now()).is_empty());
    let req = WriteRequest {
        timeseries: vec![
            series("requests", &[], 3.0, t),
            series("old", &[], 1.0, t - 25 * 3600 * 1000),
            series("gone", &[], f64::from_bits(STALE_NAN_BITS), t),
        ],
        metadata: vec![],
    };
    let rms = s.translate(req, SystemTime::now());
    let metrics = &rms[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    assert_eq!(metrics[0].description, "Requests served.");
    assert!(matches!(metrics[0].data, Some(Data::Sum(_))));
    match &metrics[1].data {
        Some(Data::Gauge(g)) => {
            assert_eq!(g.data_points[0].flags, 1);
            assert_eq!(g.data_points[0].value, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_bodies_are_refused() {
    let limits = Limits::default();
    assert!(decode_body(b"not snappy at all", &limits).is_err());
    let junk = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
    assert!(decode_body(&junk, &limits)
        .unwrap_err()
        .message()
        .contains("protobuf"));
}

#[test]
fn config_keys_and_defaults() {
    let id = ComponentId::parse("prometheusremotewrite").unwrap();
    let c = load(&id, &serde_json::Value::Null).unwrap();
    assert_eq!(c.endpoint, "localhost:9090");
    assert_eq!(c.time_threshold, 24);
    let e = load(&id, &serde_json::json!({"endpont": "x"})).unwrap_err();
    assert!(e.to_string().contains("has invalid keys: endpont"), "{e}");
    let e = load(&id, &serde_json::json!({"endpoint": "localhost:99999"})).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("receivers::prometheusremotewrite::endpoint"),
        "{e}"
    );
    let e = load(&id, &serde_json::json!({"time_threshold": 0})).unwrap_err();
    assert!(e.to_string().contains("time_threshold"), "{e}");
}

#[tokio::test]
async fn http_answers_204_400_415_and_503() {
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let id = ComponentId::parse("prometheusremotewrite").unwrap();
    let cfg = load(&id, &serde_json::json!({"endpoint": "127.0.0.1:0"})).unwrap();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let make = |next: NextConsumers, cfg: Config| {
        metrics::with_local_recorder(&recorder, || {
            RemoteWriteReceiver::new(settings(), cfg, next)
        })
    };
    let r = make(next, cfg.clone());
    r.start(&Host::detached()).await.unwrap();
    let url = format!("http://{}/api/v1/write", r.local_addr().unwrap());
    let client = reqwest::Client::new();
    let body = snappy(&WriteRequest {
        timeseries: vec![series("up", &[], 1.0, now_ms())],
        metadata: vec![],
    });
    let send = |b: Vec<u8>, ct: &'static str| {
        client
            .post(&url)
            .header("Content-Type", ct)
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(b)
            .send()
    };
    assert_eq!(
        send(body.clone(), "application/x-protobuf")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(sink.got.lock().unwrap().len(), 1);
    assert_eq!(
        send(b"garbage".to_vec(), "application/x-protobuf")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        send(body.clone(), "application/json")
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        send(
            body.clone(),
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        )
        .await
        .unwrap()
        .status(),
        415
    );
    r.shutdown().await.unwrap();

    // Backpressure becomes 503, which Prometheus retries.
    let busy = Arc::new(Sink {
        got: StdMutex::new(vec![]),
        fail: Some(ConsumeError::retryable("full")),
    });
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, busy);
    let r = make(next, cfg);
    r.start(&Host::detached()).await.unwrap();
    let url = format!("http://{}/api/v1/write", r.local_addr().unwrap());
    let resp = client
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    r.shutdown().await.unwrap();
    // One point accepted (the first 204), one refused (the 503), as otelcol's obsreport counts.
    let counters = Counters::take(&snapshotter);
    assert_eq!(
        counters.find("otelcol_receiver_accepted_metric_points", &[]),
        Some(1)
    );
    assert_eq!(
        counters.find("otelcol_receiver_refused_metric_points", &[]),
        Some(1)
    );
}

fn raw_snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// A series with 20 labels and 100,000 empty samples: 200 KB on the wire, which snappy shrinks to a
/// few KB, and about 200 MB once every sample is a data point with its own copy of the labels.
/// Before the decoded size was bounded, it was accepted.
fn label_heavy_series_with_empty_samples() -> Vec<u8> {
    let mut ts = TimeSeries {
        labels: (0..20)
            .map(|i| label(&format!("label_{i}"), &format!("value_{i}")))
            .collect(),
        samples: vec![],
        exemplars: vec![],
    };
    ts.labels.push(label("__name__", "up"));
    let mut raw = WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    }
    .encode_to_vec();
    // Append the samples to the one series by hand: building them with prost is the allocation the
    // test is about. The series is field 1 of the request; re-frame it with the samples added.
    let mut pos = 0;
    let Some((1, decoded::Field::Bytes(series))) = decoded::next_field(&raw, &mut pos) else {
        panic!("unexpected encoding");
    };
    let mut series = series.to_vec();
    series.extend([0x12u8, 0x00].repeat(100_000));
    raw = vec![0x0a];
    let mut n = series.len();
    while n >= 0x80 {
        raw.push((n as u8) | 0x80);
        n >>= 7;
    }
    raw.push(n as u8);
    raw.extend(series);
    raw
}

use crate::otlp::decoded;

#[test]
fn a_body_that_decodes_to_far_more_than_it_weighs_is_refused() {
    let raw = label_heavy_series_with_empty_samples();
    let body = raw_snappy(&raw);
    assert!(body.len() < 20_000, "{} bytes", body.len());
    let Err(e) = decode_body(&body, &Limits::default()) else {
        panic!("accepted");
    };
    assert!(
        matches!(&e, DecodeError::TooLarge(m) if m.contains("max_decoded_size_mib")),
        "{e:?}"
    );
    // The same series with a few samples decodes.
    let mut small = series("up", &[("a", "b")], 1.0, now_ms());
    small.samples = vec![Sample::default(); 1000];
    let req = WriteRequest {
        timeseries: vec![small],
        metadata: vec![],
    };
    let got = decode_body(&snappy(&req), &Limits::default()).unwrap();
    assert_eq!(got.timeseries[0].samples.len(), 1000);
    // The estimate is not far above what a normal request takes: a few hundred bytes a sample.
    let est = decoded_estimate(&req.encode_to_vec(), usize::MAX).unwrap();
    assert!(est < 1000 * 400, "{est}");
}

#[test]
fn a_body_that_decompresses_past_the_body_limit_is_refused() {
    // 21 MiB of help text: valid, and over the 20 MiB default once decompressed. Before, anything up
    // to 256 MiB decompressed was decoded.
    let req = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Gauge as i32,
            metric_family_name: "up".into(),
            help: "h".repeat(21 * 1024 * 1024),
            unit: String::new(),
        }],
    };
    let body = snappy(&req);
    let Err(e) = decode_body(&body, &Limits::default()) else {
        panic!("accepted");
    };
    assert!(
        matches!(&e, DecodeError::TooLarge(m) if m.contains("max_request_body_size")),
        "{e:?}"
    );
}

#[tokio::test]
async fn too_large_is_413_and_counted() {
    use metrics_util::debugging::DebuggingRecorder;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, Arc::new(Sink::default()));
    let id = ComponentId::parse("prometheusremotewrite").unwrap();
    let cfg = load(&id, &serde_json::json!({"endpoint": "127.0.0.1:0"})).unwrap();
    let r = metrics::with_local_recorder(&recorder, || {
        RemoteWriteReceiver::new(settings(), cfg, next)
    });
    r.start(&Host::detached()).await.unwrap();
    let url = format!("http://{}/api/v1/write", r.local_addr().unwrap());
    let resp = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(raw_snappy(&label_heavy_series_with_empty_samples()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let count = Counters::take(&snapshotter).find("vigil_receiver_requests_too_large", &[]);
    assert_eq!(count, Some(1));
    r.shutdown().await.unwrap();
}

/// Random mutations of valid requests through decoding and translation, from a fixed seed;
/// `VIGIL_FUZZ_ITERS` runs it longer.
#[test]
fn random_bodies_never_panic_the_decoder() {
    let iters: u64 = std::env::var("VIGIL_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let mut seed_req = WriteRequest {
        timeseries: vec![
            series("up", &[("a", "b")], 1.0, now_ms()),
            series("x_total", &[], 2.0, now_ms()),
        ],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "x".into(),
            help: "h".into(),
            unit: "u".into(),
        }],
    };
    seed_req.timeseries[0].exemplars.push(proto::Exemplar {
        labels: vec![label("trace_id", "abc")],
        value: 1.0,
        timestamp: now_ms(),
    });
    let seed = seed_req.encode_to_vec();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..iters {
        let mut body = seed.clone();
        for _ in 0..=(next() % 6) {
            let at = (next() as usize) % body.len().max(1);
            match next() % 4 {
                0 if !body.is_empty() => body[at] = next() as u8,
                1 => body.insert(at.min(body.len()), next() as u8),
                2 => body.truncate(at),
                _ => body.extend_from_slice(seed.get(at..).unwrap_or_default()),
            }
        }
        fuzz_decode(&body);
    }
}

/// With `tls`, remote write is served over HTTPS only.
#[tokio::test]
async fn serves_tls() {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = (dir.path().join("s.pem"), dir.path().join("s.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
    let id = ComponentId::parse("prometheusremotewrite").unwrap();
    let cfg = load(
        &id,
        &serde_json::json!({"endpoint": "127.0.0.1:0", "tls": {"cert_file": crt, "key_file": key}}),
    )
    .unwrap();
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let r = RemoteWriteReceiver::new(settings(), cfg, next);
    r.start(&Host::detached()).await.unwrap();
    let addr = r.local_addr().unwrap();
    let body = snappy(&WriteRequest {
        timeseries: vec![series("up", &[], 1.0, now_ms())],
        metadata: vec![],
    });
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let send = |client: &reqwest::Client, url: String| {
        client
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body.clone())
            .send()
    };
    let resp = send(&client, format!("https://{addr}/api/v1/write"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(send(&client, format!("http://{addr}/api/v1/write"))
        .await
        .is_err());
    assert_eq!(sink.got.lock().unwrap().len(), 1);
    // A missing key file fails at load, naming the key.
    let e = load(
        &id,
        &serde_json::json!({"tls": {"cert_file": dir.path().join("s.pem"), "key_file": "/nonexistent"}}),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("prometheusremotewrite::tls::key_file"),
        "{e}"
    );
    r.shutdown().await.unwrap();
}

/// A server authenticator with three tokens, for three principals.
struct Tokens;

#[async_trait]
impl Component for Tokens {}

impl vigil_core::Extension for Tokens {
    fn server_auth(&self) -> Option<Arc<dyn vigil_core::ServerAuth>> {
        Some(Arc::new(Tokens))
    }
}

#[async_trait]
impl vigil_core::ServerAuth for Tokens {
    async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<vigil_core::component::Principal, String> {
        let name = match headers.get("authorization").map(|v| v.as_bytes()) {
            Some(b"Bearer w") => "writer",
            Some(b"Bearer l") => "logs-only",
            Some(b"Bearer s") => "stranger",
            Some(_) => return Err("wrong token".into()),
            None => return Err("no authorization header".into()),
        };
        Ok(vigil_core::component::Principal::named(name))
    }
}

/// `auth` with roles, as on the otlp receiver: no or a wrong token is 401, a principal without a
/// role or whose role lacks `metrics` is 403 (both counted), and an allowed write has its role's
/// tenant stamped on every resource in place of the one the sender put in its labels.
#[tokio::test]
async fn auth_and_roles_guard_remote_write() {
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let cfg = load(
        &id(),
        &serde_json::json!({
            "endpoint": "127.0.0.1:0",
            "auth": {
                "authenticator": "bearertokenauth/in",
                "roles": [
                    {"principals": ["writer"], "signals": ["metrics"], "tenant": "t1"},
                    {"principals": ["logs-only"], "signals": ["logs"]},
                ],
            },
        }),
    )
    .unwrap();
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let r = metrics::with_local_recorder(&recorder, || {
        RemoteWriteReceiver::new(settings(), cfg, next)
    });
    let e = r.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(e.contains("bearertokenauth/in"), "{e}");
    let mut extensions: HashMap<ComponentId, Arc<dyn vigil_core::Extension>> = HashMap::new();
    extensions.insert(
        ComponentId::parse("bearertokenauth/in").unwrap(),
        Arc::new(Tokens),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = Host::new(extensions, tx);
    r.start(&host).await.unwrap();
    let url = format!("http://{}/api/v1/write", r.local_addr().unwrap());
    let body = snappy(&WriteRequest {
        timeseries: vec![series("up", &[("tenant.id", "forged")], 1.0, now_ms())],
        metadata: vec![],
    });
    let send = |token: Option<&'static str>| {
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .body(body.clone());
        if let Some(t) = token {
            req = req.header("authorization", t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("Bearer nope")).await, 401);
    assert_eq!(send(Some("Bearer s")).await, 403);
    assert_eq!(send(Some("Bearer l")).await, 403);
    assert!(sink.got.lock().unwrap().is_empty());
    assert_eq!(send(Some("Bearer w")).await, 204);
    let got = sink.got.lock().unwrap().clone();
    let Telemetry::Metrics(rms) = &got[0] else {
        panic!("metrics expected")
    };
    for rm in rms {
        let tenants: Vec<_> = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .filter(|kv| kv.key == "tenant.id")
            .map(|kv| format!("{:?}", kv.value))
            .collect();
        assert_eq!(tenants.len(), 1, "{tenants:?}");
        assert!(tenants[0].contains("t1"), "{tenants:?}");
    }
    let counted = Counters::take(&snapshotter);
    assert_eq!(
        counted.find("vigil_receiver_requests_unauthenticated", &[]),
        Some(2),
        "{counted:?}"
    );
    assert_eq!(
        counted.find("vigil_receiver_requests_forbidden", &[]),
        Some(2),
        "{counted:?}"
    );
    r.shutdown().await.unwrap();
}
