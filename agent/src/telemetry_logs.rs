//! vigil's own logs over OTLP: `service::telemetry::logs::processors`, as otelcol reads it (the
//! OpenTelemetry declarative config: `batch` or `simple` processors, each with an `otlp` exporter
//! whose `protocol` is `grpc`, `http/protobuf` or `http/json`). Every log event that passes the
//! configured level is also turned into an OTLP log record and sent through vigil's own `otlp` or
//! `otlphttp` exporter (created from the registry, so TLS, compression, headers, retries and the
//! sending queue are the exporters'), with the resource in `service::telemetry::resource`.
//!
//! Bounded: events wait in a queue of `max_queue_size` (2048) per processor; an event that finds
//! it full, or a batch the exporter did not take within `export_timeout`, is dropped and counted in
//! `vigil_telemetry_logs_dropped`. Events logged inside these exporters themselves (their
//! `component` span names a `telemetry_logs` exporter) stay on stderr only, so a collector that is
//! down does not feed its errors back into the queue that is trying to reach it.

use crate::registry::Registry;
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{ComponentId, Telemetry};

/// One `processors` entry, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct LogProcessor {
    /// `simple` sends each record as it comes; `batch` collects them.
    pub batch: bool,
    /// The vigil exporter type (`otlp` for gRPC, `otlphttp`) and its config.
    pub exporter: &'static str,
    pub exporter_config: Value,
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
}

/// A duration in whole milliseconds (the declarative config's unit), `default` when absent.
pub(crate) fn ms(v: Option<&Value>, default: u64, at: &str) -> Result<Duration, String> {
    match v {
        None | Some(Value::Null) => Ok(Duration::from_millis(default)),
        Some(v) => v
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{at}: expected milliseconds as a whole number, got {v}")),
    }
}

fn count(v: Option<&Value>, default: usize, at: &str) -> Result<usize, String> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| format!("{at}: expected a number above 0, got {v}")),
    }
}

/// The vigil exporter config for one declarative-config `otlp` exporter of `signal` (`logs` or
/// `metrics`: the path an http endpoint gets and the `<signal>_endpoint` key it is set on).
fn exporter_config(
    o: &Map<String, Value>,
    signal: &str,
    at: &str,
) -> Result<(&'static str, Value), String> {
    const KEYS: &[&str] = &[
        "protocol",
        "endpoint",
        "insecure",
        "headers",
        "headers_list",
        "compression",
        "timeout",
        "certificate",
        "client_key",
        "client_certificate",
    ];
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "{at}::{k}: unknown key (expected one of {})",
            KEYS.join(", ")
        ));
    }
    let protocol = o
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("http/protobuf");
    let insecure_flag = o.get("insecure").and_then(Value::as_bool).unwrap_or(false);
    let endpoint = o.get("endpoint").and_then(Value::as_str).unwrap_or("");
    let mut headers = Map::new();
    if let Some(list) = o.get("headers").and_then(Value::as_array) {
        for (i, h) in list.iter().enumerate() {
            let (Some(n), Some(v)) = (
                h.get("name").and_then(Value::as_str),
                h.get("value").and_then(Value::as_str),
            ) else {
                return Err(format!("{at}::headers::{i}: expected name and value"));
            };
            headers.insert(n.to_string(), json!(v));
        }
    }
    if let Some(list) = o.get("headers_list").and_then(Value::as_str) {
        for pair in list.split(',').filter(|p| !p.trim().is_empty()) {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(format!(
                    "{at}::headers_list: expected key=value pairs separated by commas"
                ));
            };
            headers
                .entry(k.trim().to_string())
                .or_insert(json!(v.trim()));
        }
    }
    let mut tls = Map::new();
    for (from, to) in [
        ("certificate", "ca_file"),
        ("client_key", "key_file"),
        ("client_certificate", "cert_file"),
    ] {
        if let Some(v) = o.get(from).and_then(Value::as_str) {
            tls.insert(to.into(), json!(v));
        }
    }
    let mut cfg = Map::new();
    if !headers.is_empty() {
        cfg.insert("headers".into(), Value::Object(headers));
    }
    match o.get("compression").and_then(Value::as_str) {
        None | Some("gzip") => {}
        Some("none") => {
            cfg.insert("compression".into(), json!("none"));
        }
        Some(c) => {
            return Err(format!(
                "{at}::compression: unknown compression {c:?} (expected gzip or none)"
            ))
        }
    }
    if let Some(t) = o.get("timeout") {
        let d = ms(Some(t), 10_000, &format!("{at}::timeout"))?;
        cfg.insert("timeout".into(), json!(format!("{}ms", d.as_millis())));
    }
    let parsed = url::Url::parse(endpoint).map_err(|e| {
        format!(
            "{at}::endpoint: expected a URL such as http://collector:4318, got {endpoint:?}: {e}"
        )
    })?;
    let plain = parsed.scheme() == "http" || insecure_flag;
    let host = parsed.host_str().unwrap_or_default();
    let port = parsed.port_or_known_default().unwrap_or(0);
    match protocol {
        "grpc" => {
            cfg.insert("endpoint".into(), json!(format!("{host}:{port}")));
            if plain {
                tls.insert("insecure".into(), json!(true));
            }
            if !tls.is_empty() {
                cfg.insert("tls".into(), Value::Object(tls));
            }
            Ok(("otlp", Value::Object(cfg)))
        }
        "http/protobuf" | "http/json" => {
            // As otelcol's otelconf: an endpoint without a path gets /v1/<signal>; one with a
            // path is the signal's URL itself.
            let mut url = parsed.clone();
            if url.path().is_empty() || url.path() == "/" {
                url.set_path(&format!("/v1/{signal}"));
            }
            if plain && url.scheme() == "https" && insecure_flag {
                let _ = url.set_scheme("http");
            }
            cfg.insert(format!("{signal}_endpoint"), json!(url.to_string()));
            if protocol == "http/json" {
                cfg.insert("encoding".into(), json!("json"));
            }
            if !tls.is_empty() {
                cfg.insert("tls".into(), Value::Object(tls));
            }
            Ok(("otlphttp", Value::Object(cfg)))
        }
        p => Err(format!(
            "{at}::protocol: unknown protocol {p:?} (expected grpc, http/protobuf or http/json)"
        )),
    }
}

/// The vigil exporter (type and config) for one declarative-config push exporter `name: config`
/// under `at` (`otlp`, `otlp_http` or `otlp_grpc`), checked by that exporter's own factory.
/// Shared by own logs and own metrics (`crate::telemetry_metrics`).
pub(crate) fn otlp_exporter(
    name: &str,
    config: &Value,
    signal: &str,
    registry: &Registry,
    at: &str,
) -> Result<(&'static str, Value), String> {
    let (etype, ecfg) = match name {
        "otlp" | "otlp_http" | "otlp_grpc" => {
            let mut o = config.as_object().cloned().unwrap_or_default();
            if name == "otlp_grpc" {
                o.entry("protocol").or_insert(json!("grpc"));
            }
            exporter_config(&o, signal, &format!("{at}::{name}"))?
        }
        o => return Err(format!("{at}::{o}: unknown exporter (expected otlp)")),
    };
    if let Some(f) = registry.exporter(etype) {
        let id = ComponentId::new(etype, Some(&format!("telemetry_{signal}")));
        f.validate(&id, &ecfg).map_err(|e| format!("{at}: {e}"))?;
    }
    Ok((etype, ecfg))
}

/// Creates and starts one own-telemetry exporter, named `<type>/<name>`; errors start with `at`.
pub(crate) async fn start_exporter(
    registry: &Registry,
    etype: &str,
    config: &Value,
    name: &str,
    at: &str,
) -> anyhow::Result<Arc<dyn vigil_core::Exporter>> {
    let factory = registry
        .exporter(etype)
        .ok_or_else(|| anyhow::anyhow!("{at}: no {etype} exporter"))?;
    let id = ComponentId::new(etype, Some(name));
    let exporter = factory
        .create(&id, config)
        .map_err(|e| anyhow::anyhow!("{at}: {e}"))?;
    exporter
        .start(&vigil_core::Host::detached())
        .await
        .map_err(|e| anyhow::anyhow!("{at}: {e:#}"))?;
    Ok(exporter)
}

/// Checks `service::telemetry::logs::processors` and prepares each exporter, every error with
/// its key path. The exporter configs are also checked by the exporters' own factories.
pub fn check(processors: &[Value], registry: &Registry) -> Result<Vec<LogProcessor>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, p) in processors.iter().enumerate() {
        let at = format!("service::telemetry::logs::processors::{i}");
        let Some(obj) = p.as_object().filter(|o| o.len() == 1) else {
            errors.push(format!(
                "{at}: expected one of batch or simple, with an exporter"
            ));
            continue;
        };
        let (kind, body) = obj.iter().next().expect("one entry");
        let batch = match kind.as_str() {
            "batch" => true,
            "simple" => false,
            k => {
                errors.push(format!(
                    "{at}::{k}: unknown log processor (expected batch or simple)"
                ));
                continue;
            }
        };
        let at = format!("{at}::{kind}");
        let r = (|| {
            let b = body.as_object().cloned().unwrap_or_default();
            let allowed: &[&str] = if batch {
                &[
                    "exporter",
                    "schedule_delay",
                    "export_timeout",
                    "max_queue_size",
                    "max_export_batch_size",
                ]
            } else {
                &["exporter"]
            };
            if let Some(k) = b.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(format!(
                    "{at}::{k}: unknown key (expected one of {})",
                    allowed.join(", ")
                ));
            }
            let exp = b
                .get("exporter")
                .and_then(Value::as_object)
                .ok_or_else(|| format!("{at}::exporter: expected an exporter such as otlp"))?;
            let (ename, econf) = match exp.iter().next() {
                Some((n, c)) if exp.len() == 1 => (n.as_str(), c),
                _ => return Err(format!("{at}::exporter: expected exactly one exporter")),
            };
            if ename == "console" {
                return Err(format!(
                    "{at}::exporter::console: not built in vigil: its logs already go to stderr (service::telemetry::logs::encoding)"
                ));
            }
            let (etype, ecfg) =
                otlp_exporter(ename, econf, "logs", registry, &format!("{at}::exporter"))?;
            Ok(LogProcessor {
                batch,
                exporter: etype,
                exporter_config: ecfg,
                schedule_delay: ms(
                    b.get("schedule_delay"),
                    1000,
                    &format!("{at}::schedule_delay"),
                )?,
                export_timeout: ms(
                    b.get("export_timeout"),
                    30_000,
                    &format!("{at}::export_timeout"),
                )?,
                max_queue_size: count(
                    b.get("max_queue_size"),
                    2048,
                    &format!("{at}::max_queue_size"),
                )?,
                max_export_batch_size: count(
                    b.get("max_export_batch_size"),
                    512,
                    &format!("{at}::max_export_batch_size"),
                )?,
            })
        })();
        match r {
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

/// Records dropped because a processor's queue was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

type Receivers = Vec<(LogProcessor, mpsc::Receiver<LogRecord>)>;

/// Queues made at `init_logs` (before the runtime), taken by [`start`] inside it.
static PENDING: OnceLock<Mutex<Receivers>> = OnceLock::new();

/// The tracing layer that copies each event into every processor's queue.
pub struct OtlpLayer {
    senders: Vec<mpsc::Sender<LogRecord>>,
}

/// The layer for `processors`, or `None` when there are none.
pub fn layer(processors: &[LogProcessor]) -> Option<OtlpLayer> {
    if processors.is_empty() {
        return None;
    }
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for p in processors {
        let (tx, rx) = mpsc::channel(p.max_queue_size);
        senders.push(tx);
        receivers.push((p.clone(), rx));
    }
    let _ = PENDING.set(Mutex::new(receivers));
    Some(OtlpLayer { senders })
}

#[derive(Default)]
struct Fields {
    message: String,
    attrs: Vec<KeyValue>,
}

impl Visit for Fields {
    fn record_str(&mut self, f: &Field, v: &str) {
        if f.name() == "message" {
            self.message = v.to_string();
        } else {
            self.attrs.push(kv_str(f.name(), v));
        }
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.attrs.push(kv_i64(f.name(), v));
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.attrs
            .push(kv_i64(f.name(), v.min(i64::MAX as u64) as i64));
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.attrs.push(vigil_core::attrs::kv(
            f.name(),
            any_value::Value::BoolValue(v),
        ));
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        if f.name() == "message" {
            self.message = format!("{v:?}");
        } else {
            self.attrs.push(kv_str(f.name(), format!("{v:?}")));
        }
    }
}

/// The fields of the spans an event is in (a component's `component{kind, id}`), kept with each
/// span so events can carry them as otelcol's logs carry `otelcol.component.*`.
struct SpanFields(Vec<KeyValue>);

impl<S> tracing_subscriber::Layer<S> for OtlpLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        let kvs = f
            .attrs
            .into_iter()
            .map(|mut kv| {
                kv.key = match kv.key.as_str() {
                    "kind" => "otelcol.component.kind".into(),
                    "id" => "otelcol.component.id".into(),
                    _ => kv.key,
                };
                kv
            })
            .collect();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(kvs));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let meta = event.metadata();
        let (number, text) = match *meta.level() {
            tracing::Level::ERROR => (17, "error"),
            tracing::Level::WARN => (13, "warn"),
            tracing::Level::INFO => (9, "info"),
            tracing::Level::DEBUG => (5, "debug"),
            tracing::Level::TRACE => (1, "trace"),
        };
        let mut attrs = f.attrs;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(kvs)) = span.extensions().get::<SpanFields>() {
                    let own = kvs.iter().any(|kv| {
                        kv.key == "otelcol.component.id"
                            && matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                                Some(any_value::Value::StringValue(s)) if s.contains("/telemetry_logs_"))
                    });
                    if own {
                        return;
                    }
                    attrs.extend(kvs.iter().cloned());
                }
            }
        }
        attrs.push(kv_str("code.namespace", meta.target()));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let rec = LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: number,
            severity_text: text.into(),
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(f.message)),
            }),
            attributes: attrs,
            ..Default::default()
        };
        for tx in &self.senders {
            if tx.try_send(rec.clone()).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("vigil_telemetry_logs_dropped").increment(1);
            }
        }
    }
}

/// What runs the export of own logs (here) or own metrics (`crate::telemetry_metrics`); stopped
/// with [`Exporting::stop`] so the last records, or a last export of metrics, go out.
pub struct Exporting {
    pub(crate) stop: tokio_util::sync::CancellationToken,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Exporting {
    /// Cancels the tasks, which send what is queued (a last export), then waits for them to stop
    /// the exporters, by `deadline`.
    pub async fn stop(self, deadline: std::time::Instant) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = vigil_core::task::within(deadline, t).await;
        }
    }
}

/// The resource of vigil's own logs and metrics: `service.name` and `service.version`, then
/// `service::telemetry::resource` (a null value removes an attribute, as in otelcol).
pub(crate) fn resource(extra: Option<&Value>) -> Resource {
    let mut attrs = vec![
        kv_str("service.name", "vigil"),
        kv_str("service.version", env!("CARGO_PKG_VERSION")),
    ];
    if let Some(Value::Object(m)) = extra {
        for (k, v) in m {
            attrs.retain(|kv| &kv.key != k);
            match v {
                Value::Null => {}
                Value::String(s) => attrs.push(kv_str(k, s.clone())),
                other => attrs.push(kv_str(k, other.to_string())),
            }
        }
    }
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

/// Creates and starts each processor's exporter and the task that feeds it; `None` when there
/// is nothing to export.
pub async fn start(
    registry: &Registry,
    resource_cfg: Option<&Value>,
) -> anyhow::Result<Option<Exporting>> {
    let Some(pending) = PENDING.get() else {
        return Ok(None);
    };
    let receivers: Receivers = std::mem::take(&mut *vigil_core::lock(pending));
    if receivers.is_empty() {
        return Ok(None);
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let mut tasks = Vec::new();
    let res = resource(resource_cfg);
    for (i, (p, mut rx)) in receivers.into_iter().enumerate() {
        let exporter = start_exporter(
            registry,
            p.exporter,
            &p.exporter_config,
            &format!("telemetry_logs_{i}"),
            &format!("service::telemetry::logs::processors::{i}"),
        )
        .await?;
        let stop = stop.clone();
        let res = res.clone();
        tasks.push(tokio::spawn(async move {
            let send = |records: Vec<LogRecord>| {
                let exporter = Arc::clone(&exporter);
                let data = Telemetry::Logs(vec![ResourceLogs {
                    resource: Some(res.clone()),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(InstrumentationScope {
                            name: "vigil".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        log_records: records,
                        ..Default::default()
                    }],
                    ..Default::default()
                }]);
                async move {
                    let n = vigil_core::telemetry::log_record_count(match &data {
                        Telemetry::Logs(l) => l,
                        _ => &[],
                    });
                    let r = tokio::time::timeout(p.export_timeout, exporter.consume(data)).await;
                    if !matches!(r, Ok(Ok(()))) {
                        DROPPED.fetch_add(n as u64, Ordering::Relaxed);
                        metrics::counter!("vigil_telemetry_logs_dropped").increment(n as u64);
                    }
                }
            };
            let max = if p.batch { p.max_export_batch_size } else { 1 };
            let mut buf = Vec::new();
            let mut tick = tokio::time::interval(p.schedule_delay.max(Duration::from_millis(1)));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = rx.recv() => match r {
                        Some(rec) => {
                            buf.push(rec);
                            if buf.len() >= max {
                                send(std::mem::take(&mut buf)).await;
                            }
                        }
                        None => break,
                    },
                    _ = tick.tick(), if p.batch => {
                        if !buf.is_empty() {
                            send(std::mem::take(&mut buf)).await;
                        }
                    }
                }
            }
            while let Ok(rec) = rx.try_recv() {
                buf.push(rec);
            }
            for chunk in buf.chunks(max.max(1)) {
                send(chunk.to_vec()).await;
            }
            let _ = exporter
                .shutdown_by(std::time::Instant::now() + p.export_timeout)
                .await;
        }));
    }
    Ok(Some(Exporting { stop, tasks }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarative_config_becomes_vigil_exporters() {
        let reg = Registry::builtin();
        let p = check(
            &[json!({"batch": {"exporter": {"otlp": {
                "endpoint": "http://collector:4318", "insecure": true, "protocol": "http/protobuf",
                "headers": [{"name": "x-team", "value": "a"}]}}}})],
            &reg,
        )
        .unwrap();
        assert_eq!(p[0].exporter, "otlphttp");
        assert_eq!(
            p[0].exporter_config,
            json!({"logs_endpoint": "http://collector:4318/v1/logs", "headers": {"x-team": "a"}})
        );
        assert_eq!(p[0].schedule_delay, Duration::from_millis(1000));
        assert_eq!(p[0].max_queue_size, 2048);
        let g = check(
            &[json!({"simple": {"exporter": {"otlp": {"endpoint": "http://10.0.0.1:14317", "protocol": "grpc"}}}})],
            &reg,
        )
        .unwrap();
        assert_eq!(g[0].exporter, "otlp");
        assert_eq!(
            g[0].exporter_config,
            json!({"endpoint": "10.0.0.1:14317", "tls": {"insecure": true}})
        );
        assert!(!g[0].batch);
    }

    #[test]
    fn errors_name_the_key_path() {
        let reg = Registry::builtin();
        let e = check(&[json!({"fancy": {}})], &reg).unwrap_err();
        assert!(
            e[0].contains("processors::0::fancy: unknown log processor"),
            "{e:?}"
        );
        let e = check(
            &[json!({"batch": {"exporter": {"otlp": {"endpoint": "http://a:1", "protocol": "thrift"}}}})],
            &reg,
        )
        .unwrap_err();
        assert!(
            e[0].contains("processors::0::batch::exporter::otlp::protocol"),
            "{e:?}"
        );
        let e = check(&[json!({"batch": {"exporter": {"console": {}}}})], &reg).unwrap_err();
        assert!(
            e[0].contains("exporter::console: not built in vigil"),
            "{e:?}"
        );
    }
}
