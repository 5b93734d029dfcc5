//! vigil's own telemetry: logs through `tracing` to stderr at the configured level and encoding, and
//! metrics through the `metrics` facade on a Prometheus pull endpoint (`localhost:8888/metrics` by
//! default) with otelcol's names, including the process metrics otelcol reports.

use crate::config::{LogsTelemetry, MetricsTelemetry};
use std::time::{Duration, Instant};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber: stderr at the configured level and encoding, and, when
/// `service::telemetry::logs::processors` is set, the OTLP copy (`crate::telemetry_logs`).
/// `RUST_LOG`, when set, overrides the configured level.
pub fn init_logs(
    cfg: &LogsTelemetry,
    otlp: Option<crate::telemetry_logs::OtlpLayer>,
) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let level = match cfg.level.to_ascii_lowercase().as_str() {
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        other => {
            return Err(format!(
                "service::telemetry::logs::level: unknown level {other:?} (use debug, info, warn or error)"
            ))
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match cfg.encoding.as_str() {
        "json" => fmt.json().boxed(),
        "console" | "text" => fmt.boxed(),
        other => {
            return Err(format!(
            "service::telemetry::logs::encoding: unknown encoding {other:?} (use console or json)"
        ))
        }
    };
    let r = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otlp)
        .try_init();
    // A second init (tests, reload) keeps the first subscriber; that is not an error worth failing on.
    let _ = r;
    Ok(())
}

/// Where the Prometheus endpoint listens, or `None` when own metrics are turned off.
pub fn metrics_address(cfg: &MetricsTelemetry) -> Result<Option<String>, String> {
    if cfg.level.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if let Some(a) = &cfg.address {
        return Ok(Some(a.clone()));
    }
    for (i, r) in cfg.readers.iter().enumerate() {
        let prom = r
            .get("pull")
            .and_then(|p| p.get("exporter"))
            .and_then(|e| e.get("prometheus"));
        if let Some(p) = prom {
            let host = p
                .get("host")
                .and_then(|h| h.as_str())
                .unwrap_or("localhost");
            let port = p.get("port").and_then(|h| h.as_u64()).ok_or_else(|| {
                format!("service::telemetry::metrics::readers::{i}::pull::exporter::prometheus::port: expected a port number")
            })?;
            return Ok(Some(format!("{host}:{port}")));
        }
    }
    // otelcol's default reader is a pull one on localhost:8888; readers that are all `periodic`
    // (crate::telemetry_metrics) replace it, and nothing listens.
    if !cfg.readers.is_empty() {
        return Ok(None);
    }
    Ok(Some("localhost:8888".into()))
}

static OWN_METRICS: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
    std::sync::OnceLock::new();

/// vigil's own metrics in the Prometheus text format, as the pull endpoint serves them; `None` when
/// own metrics are turned off.
pub fn own_metrics() -> Option<String> {
    OWN_METRICS.get().map(|h| h.render())
}

/// Installs the own-metrics recorder and the process-metrics sampler (unless `level: none`),
/// and starts the Prometheus endpoint when there is a pull reader (or no reader at all).
pub fn init_metrics(cfg: &MetricsTelemetry) -> anyhow::Result<()> {
    if cfg.level.eq_ignore_ascii_case("none") {
        return Ok(());
    }
    let Some(addr) = metrics_address(cfg).map_err(anyhow::Error::msg)? else {
        // Only periodic readers: they read the same recorder the endpoint would serve.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _ = OWN_METRICS.set(handle.clone());
        metrics::set_global_recorder(recorder)
            .map_err(|e| anyhow::anyhow!("service::telemetry::metrics: {e}"))?;
        tokio::spawn(sample_process(handle));
        return Ok(());
    };
    let sock = vigil_core::config::resolve_endpoint(&addr).map_err(|e| {
        anyhow::anyhow!("service::telemetry::metrics: cannot resolve {addr:?}: {e}")
    })?;
    // Bind once ourselves first: the exporter's listener reports a taken port only in a background
    // task, and a user must hear about it at start.
    match std::net::TcpListener::bind(sock) {
        Ok(l) => drop(l),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "service::telemetry::metrics: cannot listen on {addr} ({sock}): the port is already in use"
        ),
        Err(e) => anyhow::bail!("service::telemetry::metrics: cannot listen on {addr}: {e}"),
    }
    let tls = match &cfg.tls {
        Some(t) => Some(
            t.server(HTTP_ALPN)
                .map_err(|e| anyhow::anyhow!("service::telemetry::metrics::tls::{e}"))?,
        ),
        None => None,
    };
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // Kept so that the status page (zpages) reads the same numbers the endpoint serves.
    let _ = OWN_METRICS.set(handle.clone());
    metrics::set_global_recorder(recorder)
        .map_err(|e| anyhow::anyhow!("service::telemetry::metrics: {e}"))?;
    // Served by the same loop as every other listener (header and idle timeouts, a connection
    // cap, optional TLS), so idle sockets cannot take the endpoint down either.
    let listener = std::net::TcpListener::bind(sock)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|e| {
            anyhow::anyhow!("service::telemetry::metrics: cannot listen on {addr}: {e}")
        })?;
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let render = render.clone();
            async move { render.render() }
        }),
    );
    let opts = vigil_core::net::serve::ServeOptions {
        tls,
        ..Default::default()
    };
    let counters = vigil_core::net::serve::ConnCounters::new("service", "telemetry", "http");
    tokio::spawn(vigil_core::net::serve::serve(
        listener,
        app,
        opts,
        counters,
        vigil_core::net::serve::CancellationToken::new(),
    ));
    tokio::spawn(sample_process(handle));
    Ok(())
}

/// What the own-metrics endpoint offers over TLS.
pub(crate) const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

async fn sample_process(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let started = Instant::now();
    let uptime = metrics::counter!("otelcol_process_uptime");
    let rss = metrics::gauge!("otelcol_process_memory_rss");
    let cpu = metrics::counter!("otelcol_process_cpu_seconds");
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        // The exporter's own listener did this; without it histograms keep every sample.
        handle.run_upkeep();
        uptime.absolute(started.elapsed().as_secs());
        if let Some(bytes) = read_rss() {
            rss.set(bytes as f64);
        }
        if let Some(secs) = read_cpu_seconds() {
            cpu.absolute(secs);
        }
    }
}

fn read_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

fn read_cpu_seconds() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces, so count fields after its closing parenthesis.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: as above.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some((utime + stime) / u64::try_from(hz).ok()?.max(1))
}
