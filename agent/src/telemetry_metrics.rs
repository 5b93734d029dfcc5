//! vigil's own metrics pushed over OTLP: `service::telemetry::metrics::readers` entries of the
//! `periodic` kind, as otelcol reads them (the OpenTelemetry declarative config: `interval`,
//! default 60000 ms, `timeout`, default 30000 ms, 0 for none, and an `otlp` exporter whose
//! `protocol` is `grpc`, `http/protobuf` or `http/json`). Every `interval` the same numbers the
//! pull reader serves (otelcol's names) are read, turned into OTLP as the `prometheus` receiver
//! does (counters become monotonic cumulative sums, with a start time kept across exports), and
//! sent through vigil's own `otlp` or `otlphttp` exporter, with the resource of own logs
//! (`crate::telemetry_logs::resource`).
//!
//! Bounded: each reader has one export in flight; the exporter runs without a sending queue or
//! retries, because the next interval's cumulative values replace anything lost. A failed or
//! timed-out export is counted in `vigil_telemetry_metrics_export_failures` and logged at most
//! once a minute.

use crate::registry::Registry;
use crate::telemetry_logs::{ms, otlp_exporter, resource, start_exporter, Exporting};
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_core::otlp::common::v1::InstrumentationScope;
use vigil_core::otlp::metrics::v1::{ResourceMetrics, ScopeMetrics};
use vigil_core::Telemetry;
use vigil_receivers::prometheus::convert::{ScrapeSettings, TargetInfo, Translator};
use vigil_receivers::prometheus::parse::Format;

/// One `periodic` reader, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodicReader {
    /// Its index in `readers`, for error messages and the exporter's name.
    pub index: usize,
    /// The vigil exporter type (`otlp` for gRPC, `otlphttp`) and its config.
    pub exporter: &'static str,
    pub exporter_config: Value,
    pub interval: Duration,
    /// `None`: no limit (`timeout: 0`).
    pub timeout: Option<Duration>,
}

/// Checks every `periodic` reader in `service::telemetry::metrics::readers` (the `pull` ones are
/// the Prometheus endpoint's, read by `crate::telemetry`); every error names its key path.
pub fn check(readers: &[Value], registry: &Registry) -> Result<Vec<PeriodicReader>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in readers.iter().enumerate() {
        let at = format!("service::telemetry::metrics::readers::{i}");
        let Some((kind, body)) = r
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
        else {
            errors.push(format!("{at}: expected one of periodic or pull"));
            continue;
        };
        match kind.as_str() {
            "pull" => {
                // The endpoint itself is crate::telemetry's; only its exporter kind is checked here,
                // so that a pull reader vigil cannot serve is not dropped silently.
                let exp = body.get("exporter").and_then(Value::as_object);
                if let Some(k) = exp.and_then(|e| e.keys().find(|k| *k != "prometheus")) {
                    errors.push(format!(
                        "{at}::pull::exporter::{k}: unknown pull exporter (expected prometheus)"
                    ));
                }
                continue;
            }
            "periodic" => {}
            k => {
                errors.push(format!(
                    "{at}::{k}: unknown metric reader (expected periodic or pull)"
                ));
                continue;
            }
        }
        let at = format!("{at}::periodic");
        match periodic(i, body, registry, &at) {
            Ok(p) => out.push(p),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn periodic(
    i: usize,
    body: &Value,
    registry: &Registry,
    at: &str,
) -> Result<PeriodicReader, String> {
    let b = body.as_object().cloned().unwrap_or_default();
    for k in b.keys() {
        match k.as_str() {
            "interval" | "timeout" | "exporter" => {}
            "producers" | "cardinality_limits" => {
                return Err(format!(
                    "{at}::{k}: not built in vigil (own metrics are exported as the pull endpoint serves them)"
                ))
            }
            _ => {
                return Err(format!(
                    "{at}::{k}: unknown key (expected one of interval, timeout, exporter)"
                ))
            }
        }
    }
    let exp = b
        .get("exporter")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("{at}::exporter: expected an exporter such as otlp"))?;
    let (ename, econf) = match exp.iter().next() {
        Some((n, c)) if exp.len() == 1 => (n.as_str(), c),
        _ => return Err(format!("{at}::exporter: expected exactly one exporter")),
    };
    let eat = format!("{at}::exporter::{ename}");
    match ename {
        "console" => {
            return Err(format!(
                "{eat}: not built in vigil: own metrics are served by a pull reader (prometheus) and zpages"
            ))
        }
        "prometheus" => {
            return Err(format!(
                "{eat}: prometheus is a pull exporter: put it under readers::{i}::pull"
            ))
        }
        _ => {}
    }
    // The metric-only keys: what vigil can honour is what it already does.
    let mut conf = econf.as_object().cloned().unwrap_or_default();
    match conf.remove("temporality_preference") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "cumulative" => {}
        Some(v) => {
            return Err(format!(
                "{eat}::temporality_preference: {v} is not built in vigil (own metrics are exported cumulative; use cumulative)"
            ))
        }
    }
    if let Some(v) = conf.remove("default_histogram_aggregation") {
        if !v.is_null() {
            return Err(format!(
                "{eat}::default_histogram_aggregation: not built in vigil (own histograms are exported as the pull endpoint serves them)"
            ));
        }
    }
    let (etype, mut ecfg) = otlp_exporter(
        ename,
        &Value::Object(conf),
        "metrics",
        registry,
        &format!("{at}::exporter"),
    )?;
    // One export in flight and no retries: the next interval's cumulative values supersede a
    // failed one, so a queue would only hold stale copies.
    if let Some(o) = ecfg.as_object_mut() {
        o.insert("sending_queue".into(), json!({"enabled": false}));
        o.insert("retry_on_failure".into(), json!({"enabled": false}));
    }
    let interval = ms(b.get("interval"), 60_000, &format!("{at}::interval"))?;
    let timeout = ms(b.get("timeout"), 30_000, &format!("{at}::timeout"))?;
    Ok(PeriodicReader {
        index: i,
        exporter: etype,
        exporter_config: ecfg,
        // As the SDK: an interval of 0 means the default.
        interval: if interval.is_zero() {
            Duration::from_millis(60_000)
        } else {
            interval
        },
        timeout: (!timeout.is_zero()).then_some(timeout),
    })
}

/// Own metrics as OTLP, under vigil's resource; `None` when own metrics are off.
fn collect(
    translator: &mut Translator,
    res: &vigil_core::otlp::resource::v1::Resource,
) -> Option<Vec<ResourceMetrics>> {
    let text = crate::telemetry::own_metrics()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let target = TargetInfo {
        labels: vec![
            ("instance".into(), "vigil".into()),
            ("job".into(), "vigil".into()),
        ],
        scheme: "http".into(),
    };
    let settings = ScrapeSettings {
        honor_labels: true,
        honor_timestamps: false,
        metric_relabel: &[],
        sample_limit: 0,
        start_time_metric: None,
        label_limits: Default::default(),
    };
    let t = translator
        .translate(&text, Format::Text, now, &target, &settings)
        .ok()?;
    let metrics = t
        .resource_metrics
        .into_iter()
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect();
    Some(vec![ResourceMetrics {
        resource: Some(res.clone()),
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "vigil".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            }),
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }])
}

/// Creates and starts each periodic reader's exporter and its export loop; `None` when there
/// are none.
pub async fn start(
    readers: Vec<PeriodicReader>,
    registry: &Registry,
    resource_cfg: Option<&Value>,
) -> anyhow::Result<Option<Exporting>> {
    if readers.is_empty() {
        return Ok(None);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    let res = resource(resource_cfg);
    for r in readers {
        let at = format!(
            "service::telemetry::metrics::readers::{}::periodic",
            r.index
        );
        let exporter = start_exporter(
            registry,
            r.exporter,
            &r.exporter_config,
            &format!("telemetry_metrics_{}", r.index),
            &at,
        )
        .await?;
        let stop = stop.clone();
        let res = res.clone();
        tasks.push(tokio::spawn(async move {
            let failures = metrics::counter!("vigil_telemetry_metrics_export_failures");
            let mut translator = Translator::new();
            let mut last_warned: Option<Instant> = None;
            let mut tick = tokio::time::interval(r.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is immediate; the first export waits one interval, as the SDK's.
            tick.tick().await;
            let mut last = false;
            while !last {
                tokio::select! {
                    _ = stop.cancelled() => last = true,
                    _ = tick.tick() => {}
                }
                let Some(data) = collect(&mut translator, &res) else {
                    continue;
                };
                let send = exporter.consume(Telemetry::Metrics(data));
                let err = match r.timeout {
                    Some(t) => match tokio::time::timeout(t, send).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some(format!("no answer within {t:?}")),
                    },
                    None => send.await.err().map(|e| e.to_string()),
                };
                if let Some(e) = err {
                    failures.increment(1);
                    if last_warned.is_none_or(|w| w.elapsed() >= Duration::from_secs(60)) {
                        last_warned = Some(Instant::now());
                        tracing::warn!(reader = %at, error = %e, "Own metrics export failed (logged at most once a minute; counted in vigil_telemetry_metrics_export_failures)");
                    }
                }
            }
            let _ = exporter
                .shutdown_by(Instant::now() + r.timeout.unwrap_or(Duration::from_secs(5)))
                .await;
        }));
    }
    Ok(Some(Exporting { stop, tasks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_readers_become_vigil_exporters() {
        let reg = Registry::builtin();
        let r = check(
            &[
                json!({"pull": {"exporter": {"prometheus": {"host": "localhost", "port": 8888}}}}),
                json!({"periodic": {"interval": 500, "exporter": {"otlp": {
                    "endpoint": "http://collector:4318", "protocol": "http/protobuf",
                    "temporality_preference": "cumulative"}}}}),
                json!({"periodic": {"exporter": {"otlp": {
                    "endpoint": "http://10.0.0.1:4317", "protocol": "grpc"}}}}),
            ],
            &reg,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].index, 1);
        assert_eq!(r[0].exporter, "otlphttp");
        assert_eq!(
            r[0].exporter_config["metrics_endpoint"],
            json!("http://collector:4318/v1/metrics")
        );
        assert_eq!(r[0].interval, Duration::from_millis(500));
        assert_eq!(r[0].timeout, Some(Duration::from_secs(30)));
        assert_eq!(r[1].exporter, "otlp");
        assert_eq!(r[1].exporter_config["endpoint"], json!("10.0.0.1:4317"));
        assert_eq!(r[1].interval, Duration::from_secs(60));
    }

    #[test]
    fn keys_vigil_cannot_honour_are_errors_with_their_path() {
        let reg = Registry::builtin();
        let cases = [
            (
                json!({"periodic": {"exporter": {"otlp": {"endpoint": "http://a:1", "protocol": "thrift"}}}}),
                "readers::0::periodic::exporter::otlp::protocol",
            ),
            (
                json!({"periodic": {"exporter": {"otlp": {"endpoint": "http://a:1", "temporality_preference": "delta"}}}}),
                "readers::0::periodic::exporter::otlp::temporality_preference",
            ),
            (
                json!({"periodic": {"exporter": {"console": {}}}}),
                "readers::0::periodic::exporter::console: not built",
            ),
            (
                json!({"periodic": {"producers": [], "exporter": {"otlp": {"endpoint": "http://a:1"}}}}),
                "readers::0::periodic::producers: not built",
            ),
            (
                json!({"push": {}}),
                "readers::0::push: unknown metric reader",
            ),
            (
                json!({"pull": {"exporter": {"otlp": {}}}}),
                "readers::0::pull::exporter::otlp: unknown pull exporter",
            ),
        ];
        for (cfg, want) in cases {
            let e = check(&[cfg], &reg).unwrap_err();
            assert!(e[0].contains(want), "{e:?} lacks {want}");
        }
    }
}
