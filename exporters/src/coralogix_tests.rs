use super::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use opentelemetry_proto::tonic::collector::profiles::v1development::{
    ExportProfilesServiceRequest, ExportProfilesServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use serde_json::{json, Value};
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};

/// One call: its metadata, signal and resources.
type Call = (MetadataMap, &'static str, Vec<Option<Resource>>);

/// What a real tonic OTLP server received.
#[derive(Default)]
struct Received {
    calls: Mutex<Vec<Call>>,
    /// When set, every call is answered with this status.
    fail: Mutex<Option<Status>>,
}

#[derive(Clone)]
struct Backend(Arc<Received>);

impl Backend {
    fn record<T>(
        &self,
        req: Request<T>,
        signal: &'static str,
        resources: impl Fn(&T) -> Vec<Option<Resource>>,
    ) -> Result<(), Status> {
        let md = req.metadata().clone();
        let r = resources(req.get_ref());
        lock(&self.0.calls).push((md, signal, r));
        match lock(&self.0.fail).clone() {
            Some(s) => Err(s),
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl TraceService for Backend {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.record(req, "traces", |r| {
            r.resource_spans
                .iter()
                .map(|x| x.resource.clone())
                .collect()
        })?;
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Backend {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.record(req, "metrics", |r| {
            r.resource_metrics
                .iter()
                .map(|x| x.resource.clone())
                .collect()
        })?;
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Backend {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.record(req, "logs", |r| {
            r.resource_logs.iter().map(|x| x.resource.clone()).collect()
        })?;
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl ProfilesService for Backend {
    async fn export(
        &self,
        req: Request<ExportProfilesServiceRequest>,
    ) -> Result<Response<ExportProfilesServiceResponse>, Status> {
        self.record(req, "profiles", |r| {
            r.resource_profiles
                .iter()
                .map(|x| x.resource.clone())
                .collect()
        })?;
        Ok(Response::new(ExportProfilesServiceResponse::default()))
    }
}

/// A tonic server with the four OTLP services on a free port, accepting gzip as Coralogix's
/// ingress does.
async fn backend() -> (Arc<Received>, String) {
    let rec = Arc::new(Received::default());
    let b = Backend(rec.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(b.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                MetricsServiceServer::new(b.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                LogsServiceServer::new(b.clone()).accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(ProfilesServiceServer::new(b).accept_compressed(CompressionEncoding::Gzip))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (rec, format!("http://{addr}"))
}

fn id(name: &str) -> ComponentId {
    ComponentId::parse(name).unwrap()
}

fn exporter(name: &str, v: Value) -> Arc<dyn Exporter> {
    factory().create(&id(name), &v).unwrap()
}

fn resource(attrs: &[(&str, &str)]) -> Option<Resource> {
    Some(Resource {
        attributes: attrs
            .iter()
            .map(|(k, v)| KeyValue {
                key: k.to_string(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(v.to_string())),
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

fn attr(r: &Option<Resource>, key: &str) -> String {
    r.as_ref()
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == key))
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn spans(res: Option<Resource>) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        resource: res,
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: "checkout".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn gauge(res: Option<Resource>) -> Telemetry {
    Telemetry::Metrics(vec![ResourceMetrics {
        resource: res,
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "queue.depth".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![NumberDataPoint::default()],
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn logs(res: Option<Resource>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: res,
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default()],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn profiles(res: Option<Resource>) -> Telemetry {
    use vigil_core::otlp::profiles::v1development::{
        Profile, ProfilesData, ResourceProfiles, Sample, ScopeProfiles,
    };
    Telemetry::Profiles(ProfilesData {
        resource_profiles: vec![ResourceProfiles {
            resource: res,
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![Profile {
                    samples: vec![Sample::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// Every signal reaches its endpoint with the private key as a bearer token, the configured
/// headers, and the Coralogix application and subsystem names resolved per resource.
#[tokio::test]
async fn every_signal_arrives_with_the_key_headers_and_names() {
    let (rec, endpoint) = backend().await;
    let block = |h: &str| json!({"endpoint": endpoint, "headers": {"X-Coralogix-Distribution": h}});
    let e = exporter(
        "coralogix",
        json!({
            "private_key": "cxtp_SECRET",
            "application_name": "otel",
            "subsystem_name": "integration",
            "application_name_attributes": ["k8s.namespace.name", "service.namespace"],
            "subsystem_name_attributes": ["k8s.deployment.name", "service.name"],
            "domain_settings": {"headers": {"X-Shared": "yes"}},
            "traces": block("t/1"),
            "metrics": block("m/1"),
            "logs": block("l/1"),
            "profiles": block("p/1"),
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
    );
    e.start(&Host::detached()).await.unwrap();
    e.consume(spans(resource(&[
        ("service.namespace", "shop"),
        ("k8s.namespace.name", ""),
        ("service.name", "cart"),
    ])))
    .await
    .unwrap();
    e.consume(gauge(resource(&[("k8s.deployment.name", "api")])))
        .await
        .unwrap();
    // Neither attribute: the configured names.
    e.consume(logs(None)).await.unwrap();
    e.consume(profiles(resource(&[("service.name", "ebpf")])))
        .await
        .unwrap();
    e.shutdown().await.unwrap();
    let calls = lock(&rec.calls);
    assert_eq!(calls.len(), 4);
    let want = [
        ("traces", "t/1", "shop", "cart"),
        ("metrics", "m/1", "otel", "api"),
        ("logs", "l/1", "otel", "integration"),
        ("profiles", "p/1", "otel", "ebpf"),
    ];
    for ((md, signal, res), (want_signal, dist, app, sub)) in calls.iter().zip(want) {
        assert_eq!(*signal, want_signal);
        assert_eq!(md.get("authorization").unwrap(), "Bearer cxtp_SECRET");
        assert_eq!(md.get("x-coralogix-distribution").unwrap(), dist);
        assert_eq!(md.get("x-shared").unwrap(), "yes");
        assert_eq!(md.get("grpc-encoding").unwrap(), "gzip", "gzip by default");
        assert_eq!(attr(&res[0], APP_ATTR), app, "{signal}");
        assert_eq!(attr(&res[0], SUBSYSTEM_ATTR), sub, "{signal}");
    }
}

/// A second instance as Coralogix's charts run it (`coralogix/resource_catalog`: logs only, its
/// own names and ingress header); a signal without an endpoint is refused permanently.
#[tokio::test]
async fn a_resource_catalog_instance_sends_its_logs_apart() {
    let (rec, endpoint) = backend().await;
    let e = exporter(
        "coralogix/resource_catalog",
        json!({
            "private_key": "cxtp_CATALOG",
            "application_name": "resource",
            "subsystem_name": "catalog",
            "logs": {"endpoint": endpoint, "headers": {"x-coralogix-ingress": "metadata-as-otlp-logs/v1"}},
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
    );
    e.start(&Host::detached()).await.unwrap();
    e.consume(logs(resource(&[(APP_ATTR, "preset")])))
        .await
        .unwrap();
    let err = e.consume(spans(None)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("no endpoint for traces"), "{err}");
    let calls = lock(&rec.calls);
    assert_eq!(calls.len(), 1);
    let (md, signal, res) = &calls[0];
    assert_eq!(*signal, "logs");
    assert_eq!(md.get("authorization").unwrap(), "Bearer cxtp_CATALOG");
    assert_eq!(
        md.get("x-coralogix-ingress").unwrap(),
        "metadata-as-otlp-logs/v1"
    );
    // `application_name` wins over an attribute already there; the subsystem is the default.
    assert_eq!(attr(&res[0], APP_ATTR), "resource");
    assert_eq!(attr(&res[0], SUBSYSTEM_ATTR), "catalog");
}

/// After `threshold` UNAUTHENTICATED answers, exports fail without reaching the backend until
/// `duration` has passed.
#[tokio::test]
async fn the_rate_limiter_stops_sending_after_auth_failures() {
    let (rec, endpoint) = backend().await;
    *lock(&rec.fail) = Some(Status::unauthenticated("invalid private key"));
    let e = exporter(
        "coralogix",
        json!({
            "private_key": "cxtp_BAD",
            "application_name": "otel",
            "traces": {"endpoint": endpoint},
            "rate_limiter": {"threshold": 2, "duration": "300ms"},
            "sending_queue": {"enabled": false},
            "retry_on_failure": {"enabled": false},
        }),
    );
    for _ in 0..2 {
        let err = e.consume(spans(None)).await.unwrap_err();
        assert!(err.to_string().contains("UNAUTHENTICATED"), "{err}");
    }
    let err = e.consume(spans(None)).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("rate limit exceeded"),
        "{err}"
    );
    assert_eq!(lock(&rec.calls).len(), 2, "the third export was not sent");
    tokio::time::sleep(Duration::from_millis(350)).await;
    *lock(&rec.fail) = None;
    e.consume(spans(None)).await.unwrap();
    assert_eq!(lock(&rec.calls).len(), 3);
}

#[test]
fn domain_addressing_and_merging() {
    let cfg = |v: Value| -> CoralogixConfig {
        vigil_core::config::decode(ComponentKind::Exporter, &id("coralogix"), &v).unwrap()
    };
    let c = cfg(json!({
        "domain": "eu2.coralogix.com",
        "private_key": "k",
        "application_name": "a",
        "domain_settings": {"compression": "zstd", "headers": {"a": "1", "b": "1"},
                            "keepalive": {"enabled": true, "time": "30s", "timeout": "10s"}},
        "logs": {"headers": {"b": "2"}, "compression": "none"},
        "metrics": {"endpoint": "otel-metrics.coralogix.com:443", "tls": {"insecure": true}},
    }));
    let t = c.transport("traces").unwrap();
    assert_eq!(t.endpoint, "ingress.eu2.coralogix.com:443");
    assert_eq!(t.compression, Compression::Zstd);
    assert_eq!(t.keepalive.as_ref().unwrap().time, Duration::from_secs(30));
    assert_eq!(t.headers["Authorization"], "Bearer k");
    let l = c.transport("logs").unwrap();
    assert_eq!(
        (l.headers["a"].as_str(), l.headers["b"].as_str()),
        ("1", "2")
    );
    assert_eq!(l.compression, Compression::None);
    let m = c.transport("metrics").unwrap();
    assert_eq!(m.endpoint, "otel-metrics.coralogix.com:443");
    assert!(m.tls.insecure);
    let mut p = c.clone();
    p.private_link = true;
    assert_eq!(
        p.transport("traces").unwrap().endpoint,
        "ingress.private.eu2.coralogix.com:443"
    );
    p.domain = "private.eu2.coralogix.com".into();
    assert_eq!(
        p.transport("traces").unwrap().endpoint,
        "ingress.private.eu2.coralogix.com:443"
    );
    // Without a domain, only the signals with an endpoint have a transport.
    let c = cfg(json!({"private_key": "k", "application_name": "a", "logs": {"endpoint": "h:1"}}));
    assert!(c.transport("traces").is_none() && c.transport("logs").is_some());
    // Defaults: gzip, upstream's rate limiter.
    assert_eq!(c.transport("logs").unwrap().compression, Compression::Gzip);
    assert_eq!(c.rate_limiter, RateLimiterConfig::default());
    assert_eq!(c.timeout, Duration::from_secs(5));
}

#[test]
fn config_errors_name_the_key() {
    let f = factory();
    let check = |v: Value| match f.validate(&id("coralogix"), &v) {
        Ok(()) => panic!("accepted: {v}"),
        Err(e) => e.to_string(),
    };
    let base = || json!({"domain": "coralogix.com", "private_key": "k", "application_name": "a"});
    assert!(f.validate(&id("coralogix"), &base()).is_ok());
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    assert!(check(without("domain")).contains("coralogix::domain: `domain` or `traces::endpoint`"));
    assert!(check(without("private_key")).contains("coralogix::private_key: not specified"));
    assert!(check(without("application_name")).contains("application_name: not specified"));
    assert!(
        check(with("endpoint", json!("ingress.eu2.coralogix.com:9443"))).starts_with(
            "exporters::coralogix::endpoint: a component vigil does not have: the coralogix exporter of old"
        )
    );
    assert!(check(with("protocol", json!("http"))).contains("protocol: http is not built"));
    assert!(check(with("rate_limiter", json!({"threshold": 0})))
        .contains("rate_limiter::threshold: must be greater than 0"));
    assert!(check(with(
        "traces",
        json!({"tls": {"ca_file": "/nonexistent/ca.pem"}})
    ))
    .contains("coralogix::traces::tls::ca_file: cannot read"));
    assert!(check(with("logs", json!({"endpoint": "h:port"})))
        .contains("coralogix::logs::endpoint: invalid endpoint"));
    assert!(check(with("domain", json!("coralogix.com/eu2")))
        .contains("coralogix::domain: invalid endpoint"));
    assert!(check(with(
        "domain_settings",
        json!({"proxy_url": "http://proxy:3128"})
    ))
    .contains("domain_settings::proxy_url"));
    assert!(check(with("traces", json!({"endpont": "x:1"}))).contains("traces::endpont"));
}
