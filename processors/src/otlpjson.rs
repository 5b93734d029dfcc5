//! `otlpjson` (`otlp_json`, logs → traces, metrics, logs): otelcol-contrib's connector for logs whose
//! bodies are whole OTLP/JSON requests, as otelcol's `file` exporter writes them and as some apps log
//! them to stdout. A body that starts as a request of an output signal does (`{"resourceSpans": [`,
//! `{"resourceMetrics": [` or `{"resourceLogs": [`, the prefixes otelcol matches) is decoded with the
//! OTLP/HTTP receiver's JSON decoder and sent on; any other record is skipped. A body of the right
//! shape that does not decode is skipped and counted (`vigil_otlpjson_undecodable{connector}`), with
//! a warning at most once a minute, as otelcol logs it and goes on.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vigil_core::codec::decode::decode_json;
use vigil_core::factory::{self, ConnectorFactory, DynConnectorFactory, FactoryBase};
use vigil_core::otlp::collector::logs::v1::ExportLogsServiceRequest;
use vigil_core::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use vigil_core::otlp::collector::trace::v1::ExportTraceServiceRequest;
use vigil_core::otlp::common::v1::any_value;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_core::otlp::metrics::v1::ResourceMetrics;
use vigil_core::otlp::trace::v1::ResourceSpans;
use vigil_core::{
    lock, Component, ConfigError, ConnectorObs, ConsumeError, Consumer, NextConsumers, Settings,
    Signal, Stability, Telemetry,
};

/// `otlpjson` has no keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpJsonConfig {}

struct Factory;

/// The `otlpjson` connector factory.
pub fn factory() -> Arc<dyn DynConnectorFactory> {
    factory::connector(Factory)
}

impl FactoryBase for Factory {
    type Config = OtlpJsonConfig;

    fn type_name(&self) -> &'static str {
        "otlpjson"
    }
}

impl ConnectorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Signal, Stability)] {
        &[
            (Signal::Logs, Signal::Traces, Stability::Alpha),
            (Signal::Logs, Signal::Metrics, Stability::Alpha),
            (Signal::Logs, Signal::Logs, Stability::Alpha),
        ]
    }

    fn create(
        &self,
        set: Settings,
        _cfg: OtlpJsonConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn vigil_core::Connector>, ConfigError> {
        let undecodable = metrics::counter!(
            "vigil_otlpjson_undecodable",
            "connector" => set.id.to_string()
        );
        Ok(Arc::new(OtlpJson {
            id: set.id.to_string(),
            next,
            obs: set.connector_obs(),
            undecodable,
            last_warning: Mutex::new(None),
        }))
    }
}

struct OtlpJson {
    id: String,
    next: NextConsumers,
    obs: ConnectorObs,
    undecodable: metrics::Counter,
    last_warning: Mutex<Option<Instant>>,
}

impl Component for OtlpJson {}

/// The signal whose request a body starts as: `{`, spaces, the signal's key, spaces, `:`, spaces,
/// `[`. Hand-written rather than a regex: it is a fixed prefix, read once per record.
fn request_signal(body: &str) -> Option<Signal> {
    let rest = body.strip_prefix('{')?.trim_start();
    let (signal, rest) = [
        ("\"resourceSpans\"", Signal::Traces),
        ("\"resourceMetrics\"", Signal::Metrics),
        ("\"resourceLogs\"", Signal::Logs),
    ]
    .into_iter()
    .find_map(|(key, s)| rest.strip_prefix(key).map(|r| (s, r)))?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest.starts_with('[').then_some(signal)
}

#[derive(Default)]
struct Decoded {
    traces: Vec<ResourceSpans>,
    metrics: Vec<ResourceMetrics>,
    logs: Vec<ResourceLogs>,
}

impl OtlpJson {
    fn warn(&self, signal: Signal, reason: &str) {
        self.undecodable.increment(1);
        let mut last = lock(&self.last_warning);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(
                connector = %self.id,
                "a log body that starts as an OTLP/JSON {signal} request does not decode, skipped \
                 (counted in vigil_otlpjson_undecodable): {reason}"
            );
        }
    }

    fn decode(&self, logs: &[ResourceLogs]) -> Decoded {
        let mut out = Decoded::default();
        let records = logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .flat_map(|s| &s.log_records);
        for record in records {
            let Some(any_value::Value::StringValue(body)) =
                record.body.as_ref().and_then(|b| b.value.as_ref())
            else {
                continue;
            };
            let Some(signal) = request_signal(body) else {
                continue;
            };
            if self.next.get(signal).is_none() {
                continue;
            }
            let bytes = body.as_bytes();
            let decoded = match signal {
                Signal::Traces => decode_json::<ExportTraceServiceRequest>(bytes)
                    .map(|r| out.traces.extend(r.resource_spans)),
                Signal::Metrics => decode_json::<ExportMetricsServiceRequest>(bytes)
                    .map(|r| out.metrics.extend(r.resource_metrics)),
                Signal::Logs => decode_json::<ExportLogsServiceRequest>(bytes)
                    .map(|r| out.logs.extend(r.resource_logs)),
                // `request_signal` names only the three signals this connector emits.
                Signal::Profiles => continue,
            };
            if let Err(e) = decoded {
                self.warn(signal, &e.to_string());
            }
        }
        out
    }
}

#[async_trait]
impl Consumer for OtlpJson {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let Telemetry::Logs(logs) = &data else {
            return Err(ConsumeError::permanent(
                format!("otlpjson takes logs, not {}", data.signal()),
                data.item_count(),
            ));
        };
        self.obs.consumed(Signal::Logs, data.item_count());
        let decoded = self.decode(logs);
        let mut result = Ok(());
        for batch in [
            Telemetry::Traces(decoded.traces),
            Telemetry::Metrics(decoded.metrics),
            Telemetry::Logs(decoded.logs),
        ] {
            let (signal, n) = (batch.signal(), batch.item_count());
            if n == 0 {
                continue;
            }
            self.obs.produced(signal, n);
            // Every output is tried; the first error is the answer, so a refusal reaches the
            // sender (a retryable one makes filelog read the lines again).
            if let Err(e) = self.next.consume(batch).await {
                result = result.and(Err(e));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::otlp::common::v1::AnyValue;
    use vigil_core::otlp::logs::v1::{LogRecord, ScopeLogs};
    use vigil_core::ComponentId;

    struct Sink(Mutex<Vec<Telemetry>>);

    #[async_trait]
    impl Consumer for Sink {
        async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
            lock(&self.0).push(data);
            Ok(())
        }
    }

    fn bodies(lines: &[&str]) -> Telemetry {
        let records = lines
            .iter()
            .map(|l| LogRecord {
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(l.to_string())),
                }),
                ..Default::default()
            })
            .collect();
        Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }])
    }

    fn connector(signals: &[Signal]) -> (Arc<dyn vigil_core::Connector>, Arc<Sink>) {
        let sink = Arc::new(Sink(Mutex::new(Vec::new())));
        let mut next = NextConsumers::new();
        for s in signals {
            next.insert(*s, sink.clone());
        }
        let id = ComponentId::new("otlp_json", None);
        let c = factory()
            .create(&id, &serde_json::Value::Null, next)
            .expect("create");
        (c, sink)
    }

    // Shaped as otelcol's file exporter and the OTLP/JSON spec write them: hex ids, 64-bit integers
    // as strings, enum names and numbers.
    const TRACE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},"scopeSpans":[{"scope":{"name":"io.opentelemetry.okhttp"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /cart","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","status":{"code":2}},{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"SELECT","kind":3,"startTimeUnixNano":"1544712660100000000","endTimeUnixNano":"1544712660200000000"}]}]}]}"#;
    const METRIC: &str = r#"{ "resourceMetrics" : [{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},"scopeMetrics":[{"metrics":[{"name":"http.requests","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"42","timeUnixNano":"1544712660300000000"}]}}]}]}]}"#;
    const LOG: &str = r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":"1544712660300000000","severityNumber":9,"severityText":"Info","body":{"stringValue":"inner line"}}]}]}]}"#;

    #[tokio::test]
    async fn each_body_goes_to_its_signal_and_other_lines_are_skipped() {
        let (c, sink) = connector(&[Signal::Traces, Signal::Metrics, Signal::Logs]);
        c.consume(bodies(&[
            TRACE,
            "plain text line",
            METRIC,
            LOG,
            r#"{"other":[1]}"#,
            TRACE,
        ]))
        .await
        .expect("consumed");
        let got = lock(&sink.0);
        let counts: Vec<(Signal, usize)> =
            got.iter().map(|t| (t.signal(), t.item_count())).collect();
        assert_eq!(
            counts,
            vec![(Signal::Traces, 4), (Signal::Metrics, 1), (Signal::Logs, 1)]
        );
        let Telemetry::Traces(rs) = &got[0] else {
            panic!("traces first")
        };
        let span = &rs[0].scope_spans[0].spans[0];
        assert_eq!(span.name, "GET /cart");
        assert_eq!(hex_id(&span.trace_id), "5b8efff798038103d269b633813fc60c");
        assert_eq!(span.kind, 2, "SPAN_KIND_SERVER by name");
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            1_000_000_000
        );
        let Telemetry::Logs(rl) = &got[2] else {
            panic!("logs last")
        };
        let body = rl[0].scope_logs[0].log_records[0].body.as_ref();
        assert!(
            matches!(body.and_then(|b| b.value.as_ref()), Some(any_value::Value::StringValue(s)) if s == "inner line"),
            "the inner record, not the outer line: {body:?}"
        );
    }

    fn hex_id(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[tokio::test]
    async fn only_wired_signals_are_decoded_and_bad_json_is_skipped() {
        let (c, sink) = connector(&[Signal::Logs]);
        c.consume(bodies(&[
            TRACE,
            r#"{"resourceLogs": [ {"scopeLogs": 7} ]}"#,
            LOG,
        ]))
        .await
        .expect("a bad body is skipped, not a refusal");
        let got = lock(&sink.0);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].signal(), got[0].item_count()), (Signal::Logs, 1));
    }

    #[test]
    fn prefixes_match_as_otelcols() {
        assert_eq!(
            request_signal("{ \n\"resourceSpans\" :\t["),
            Some(Signal::Traces)
        );
        assert_eq!(
            request_signal("{\"resourceMetrics\":[]}"),
            Some(Signal::Metrics)
        );
        assert_eq!(
            request_signal(" {\"resourceLogs\":[]}"),
            None,
            "must start with {{"
        );
        assert_eq!(request_signal("{\"resourceLogs\":{}}"), None);
        assert_eq!(request_signal("{\"scopeLogs\":[]}"), None);
    }
}
