//! `prometheus`: otelcol's Prometheus exporter. It keeps the latest value of every series it is
//! sent and serves them at `http://<endpoint>/metrics` for a Prometheus to scrape, named per the
//! OpenTelemetry Prometheus compatibility specification (see `translate`). The exposition is written
//! here rather than through a client library: the series are arbitrary incoming data, not this
//! process's own instruments, and the tikv `prometheus` crate would bring a global registry and a
//! second protobuf stack.

pub mod registry;
pub mod translate;

use async_trait::async_trait;
use registry::{Registry, Settings};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use translate::Naming;
use vigil_core::config::{bind_tcp, check_endpoint, duration};
use vigil_core::net::serve::{serve, ConnCounters, ServeOptions};
use vigil_core::net::tls::{ServerTls, TlsServerSettings};
use vigil_core::{
    lock, Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Exporter,
    ExporterObs, Host, Signal, Tasks, Telemetry,
};

/// `resource_to_telemetry_conversion`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceToTelemetry {
    #[serde(default)]
    pub enabled: bool,
}

/// The `prometheus` exporter config, with otelcol's keys and defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Where to serve `/metrics`, `host:port`.
    #[serde(default)]
    pub endpoint: String,
    /// Prefixed to every metric name, with `_`.
    #[serde(default)]
    pub namespace: String,
    /// Labels added to every series.
    #[serde(default)]
    pub const_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub resource_to_telemetry_conversion: ResourceToTelemetry,
    /// Series not updated for this long are no longer served (default 5m).
    #[serde(default = "default_expiration", with = "duration")]
    pub metric_expiration: Duration,
    /// Append unit and `_total` suffixes (default true).
    #[serde(default = "yes")]
    pub add_metric_suffixes: bool,
    /// Write each sample's timestamp (default false: Prometheus stamps scrape time).
    #[serde(default)]
    pub send_timestamps: bool,
    /// Serve OpenMetrics to scrapers that ask for it (default false).
    #[serde(default)]
    pub enable_open_metrics: bool,
    /// TLS (and mutual TLS with `client_ca_file`) on `/metrics`, with otelcol's `configtls` keys.
    #[serde(default)]
    pub tls: Option<TlsServerSettings>,
}

fn default_expiration() -> Duration {
    Duration::from_secs(300)
}

fn yes() -> bool {
    true
}

#[cfg(test)]
fn load(id: &ComponentId, value: &serde_json::Value) -> Result<PrometheusConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Exporter, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
pub fn check(id: &ComponentId, cfg: PrometheusConfig) -> Result<PrometheusConfig, ConfigError> {
    let err = |k: &str, m: String| ConfigError::component(ComponentKind::Exporter, id, k, m);
    if cfg.endpoint.is_empty() {
        return Err(err(
            "endpoint",
            "must be specified (host:port to serve /metrics on)".into(),
        ));
    }
    check_endpoint(&cfg.endpoint).map_err(|e| err("endpoint", e))?;
    if let Some(t) = &cfg.tls {
        t.server_config(HTTP_ALPN)
            .map_err(|e| err(&format!("tls::{}", e.key), e.message))?;
    }
    for k in cfg.const_labels.keys() {
        if translate::sanitize_label(k) != *k || k.starts_with("__") {
            return Err(err(
                &format!("const_labels::{k}"),
                "is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)".into(),
            ));
        }
    }
    Ok(cfg)
}

/// What `/metrics` offers over TLS: scrapers speak HTTP/1.1, some HTTP/2.
const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

struct Factory;

/// The `prometheus` exporter factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExporterFactory> {
    vigil_core::factory::exporter(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = PrometheusConfig;

    fn type_name(&self) -> &'static str {
        "prometheus"
    }

    fn validate(&self, id: &ComponentId, cfg: &PrometheusConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ExporterFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: PrometheusConfig,
    ) -> Result<Arc<dyn Exporter>, ConfigError> {
        let cfg = check(&set.id, cfg)?;
        Ok(Arc::new(PrometheusExporter::new(&set, cfg)))
    }
}

/// A running `prometheus` exporter.
pub struct PrometheusExporter {
    id: ComponentId,
    endpoint: String,
    open_metrics: bool,
    tls: Option<TlsServerSettings>,
    registry: Arc<Mutex<Registry>>,
    obs: ExporterObs,
    /// The `/metrics` server.
    tasks: Tasks,
}

impl PrometheusExporter {
    pub fn new(set: &vigil_core::Settings, cfg: PrometheusConfig) -> Self {
        let settings = Settings {
            naming: Naming {
                namespace: cfg.namespace.clone(),
                add_suffixes: cfg.add_metric_suffixes,
            },
            const_labels: cfg.const_labels.clone(),
            resource_to_telemetry: cfg.resource_to_telemetry_conversion.enabled,
            expiration: cfg.metric_expiration,
            send_timestamps: cfg.send_timestamps,
        };
        PrometheusExporter {
            id: set.id.clone(),
            endpoint: cfg.endpoint,
            open_metrics: cfg.enable_open_metrics,
            tls: cfg.tls,
            registry: Arc::new(Mutex::new(Registry::new(settings))),
            obs: set.exporter_obs(),
            tasks: set.tasks.clone(),
        }
    }
}

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPEN_METRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn serve_metrics(
    registry: Arc<Mutex<Registry>>,
    open_metrics_enabled: bool,
    headers: http::HeaderMap,
) -> impl axum::response::IntoResponse {
    let wants_om = open_metrics_enabled
        && headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/openmetrics-text"));
    let body = {
        let mut r = lock(&registry);
        r.expire(Instant::now());
        r.render(wants_om)
    };
    let ct = if wants_om { OPEN_METRICS } else { TEXT };
    ([(http::header::CONTENT_TYPE, ct)], body)
}

#[async_trait]
impl Component for PrometheusExporter {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let listener = bind_tcp(ComponentKind::Exporter, &self.id, &self.endpoint).await?;
        let registry = Arc::clone(&self.registry);
        let om = self.open_metrics;
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move |headers: http::HeaderMap| {
                serve_metrics(Arc::clone(&registry), om, headers)
            }),
        );
        // Validated at load; re-read here, so a file removed since fails start with its key.
        let tls: Option<Arc<ServerTls>> = match &self.tls {
            Some(t) => Some(
                t.server(HTTP_ALPN)
                    .map_err(|e| anyhow::anyhow!("exporters::{}::{e}", self.id))?,
            ),
            None => None,
        };
        // The receivers' listener loop: header and idle timeouts and a connection cap, so idle
        // scrapers cannot exhaust descriptors.
        let opts = ServeOptions {
            tls,
            ..ServeOptions::default()
        };
        let counters = ConnCounters::new("exporter", &self.id.to_string(), "http");
        self.tasks
            .spawn(serve(listener, app, opts, counters, self.tasks.stopping()));
        Ok(())
    }

    /// Stopping cancels the server; a scrape in flight may finish until the deadline.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for PrometheusExporter {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry::Metrics(batch) = &data else {
            return Ok(());
        };
        let now = Instant::now();
        let conflicts = {
            let mut r = lock(&self.registry);
            let c = r.update(batch, now);
            r.expire(now);
            c
        };
        let items = data.item_count() as u64;
        let failed = (conflicts as u64).min(items);
        self.obs.sent(Signal::Metrics, items - failed);
        if failed > 0 {
            self.obs.send_failed(Signal::Metrics, failed);
            tracing::warn!(
                exporter = %self.id,
                points = conflicts,
                "dropped points whose Prometheus name is already used by a metric of another type"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::common::v1::InstrumentationScope;
    use vigil_core::otlp::metrics::v1::{
        metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
        Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        Summary, SummaryDataPoint,
    };
    use vigil_core::otlp::resource::v1::Resource;

    fn settings() -> Settings {
        Settings {
            naming: Naming {
                namespace: String::new(),
                add_suffixes: true,
            },
            const_labels: BTreeMap::from([("region".to_string(), "eu".to_string())]),
            resource_to_telemetry: false,
            expiration: Duration::from_secs(300),
            send_timestamps: false,
        }
    }

    fn point(attrs: &[(&str, &str)], v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs.iter().map(|(k, v)| kv_str(k, *v)).collect(),
            time_unix_nano: 1_700_000_000_123_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn batch(metrics: Vec<Metric>) -> Vec<ResourceMetrics> {
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("service.name", "api"),
                    kv_str("service.instance.id", "i-1"),
                    kv_str("host.name", "node-1"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    fn sum(name: &str, unit: &str, delta: bool, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: "Some help.".into(),
            data: Some(Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: if delta {
                    AggregationTemporality::Delta
                } else {
                    AggregationTemporality::Cumulative
                } as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn counters_gauges_target_info_and_delta_accumulation() {
        let mut r = Registry::new(settings());
        let now = Instant::now();
        let m = vec![
            sum(
                "requests",
                "{request}",
                true,
                vec![point(&[("code", "200")], 3.0)],
            ),
            Metric {
                name: "queue.depth".into(),
                unit: "1".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: vec![point(&[("q", "a\"b")], 0.5)],
                })),
                ..Default::default()
            },
        ];
        r.update(&batch(m.clone()), now);
        r.update(&batch(m), now);
        let text = r.render(false);
        assert!(
            text.contains("# HELP requests_total Some help.\n# TYPE requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "requests_total{code=\"200\",instance=\"i-1\",job=\"api\",otel_scope_name=\"lib\",region=\"eu\"} 6\n"
            ),
            "{text}"
        );
        assert!(text.contains("queue_depth_ratio{"), "{text}");
        assert!(text.contains("q=\"a\\\"b\""), "{text}");
        assert!(
            text.contains(
                "target_info{host_name=\"node-1\",instance=\"i-1\",job=\"api\",region=\"eu\"} 1\n"
            ),
            "{text}"
        );
        let om = r.render(true);
        assert!(om.contains("# TYPE requests counter\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");

        // Expiry forgets what was not updated.
        r.expire(now + Duration::from_secs(301));
        assert!(r.is_empty());
    }

    #[test]
    fn histograms_exponential_histograms_and_summaries() {
        let mut s = settings();
        s.const_labels.clear();
        s.send_timestamps = true;
        let mut r = Registry::new(s);
        let m = vec![
            Metric {
                name: "http.server.duration".into(),
                unit: "ms".into(),
                data: Some(Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        count: 5,
                        sum: Some(42.0),
                        bucket_counts: vec![1, 3, 1],
                        explicit_bounds: vec![10.0, 100.0],
                        time_unix_nano: 1_700_000_000_123_000_000,
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "latency".into(),
                unit: "s".into(),
                data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        count: 3,
                        sum: Some(3.5),
                        scale: 0,
                        positive: Some(
                            vigil_core::otlp::metrics::v1::exponential_histogram_data_point::Buckets {
                                offset: 0,
                                bucket_counts: vec![1, 2],
                            },
                        ),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.size".into(),
                unit: "By".into(),
                data: Some(Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        count: 2,
                        sum: 10.0,
                        quantile_values: vec![ValueAtQuantile { quantile: 0.5, value: 4.0 }],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
        ];
        r.update(&batch(m), Instant::now());
        let text = r.render(false);
        let l = "instance=\"i-1\",job=\"api\",otel_scope_name=\"lib\"";
        for want in [
            format!("http_server_duration_milliseconds_bucket{{{l},le=\"10\"}} 1 1700000000123\n"),
            format!("http_server_duration_milliseconds_bucket{{{l},le=\"100\"}} 4 1700000000123\n"),
            format!(
                "http_server_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} 5 1700000000123\n"
            ),
            format!("http_server_duration_milliseconds_sum{{{l}}} 42 1700000000123\n"),
            format!("latency_seconds_bucket{{{l},le=\"0\"}} 0\n"),
            format!("latency_seconds_bucket{{{l},le=\"2\"}} 1\n"),
            format!("latency_seconds_bucket{{{l},le=\"4\"}} 3\n"),
            format!("latency_seconds_count{{{l}}} 3\n"),
            format!("rpc_size_bytes{{{l},quantile=\"0.5\"}} 4\n"),
            format!("rpc_size_bytes_count{{{l}}} 2\n"),
            "# TYPE latency_seconds histogram\n".to_string(),
            "# TYPE rpc_size_bytes summary\n".to_string(),
        ] {
            assert!(text.contains(&want), "missing {want:?} in\n{text}");
        }
        let om = r.render(true);
        assert!(om.contains("le=\"10\"} 1 1700000000.123\n"), "{om}");
    }

    #[test]
    fn stale_points_remove_series_and_type_conflicts_are_counted() {
        let mut r = Registry::new(settings());
        let now = Instant::now();
        r.update(
            &batch(vec![sum("x", "", false, vec![point(&[], 1.0)])]),
            now,
        );
        let mut stale = point(&[], 0.0);
        stale.flags = 1;
        let conflicts = r.update(
            &batch(vec![
                sum("x", "", false, vec![stale]),
                Metric {
                    name: "x_total".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(&[], 2.0)],
                    })),
                    ..Default::default()
                },
            ]),
            now,
        );
        assert_eq!(conflicts, 1);
        assert!(!r.render(false).contains("x_total{"));
    }

    #[test]
    fn config_defaults_and_errors() {
        let id = ComponentId::parse("prometheus").unwrap();
        let cfg = load(&id, &serde_json::json!({"endpoint": "127.0.0.1:8889"})).unwrap();
        assert!(cfg.add_metric_suffixes);
        assert_eq!(cfg.metric_expiration, Duration::from_secs(300));
        let e = load(&id, &serde_json::json!({})).unwrap_err();
        assert!(
            e.to_string().contains("exporters::prometheus::endpoint"),
            "{e}"
        );
        let e = load(
            &id,
            &serde_json::json!({"endpoint": ":1", "const_labels": {"a-b": "x"}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("const_labels::a-b"), "{e}");
    }
}
