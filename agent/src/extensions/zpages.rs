//! `zpages`: otelcol's in-process debug pages, served as plain HTML on `endpoint` (default
//! `localhost:55679`): `/debug/servicez` (build, uptime, the running config's components),
//! `/debug/pipelinez` (each pipeline's components with their own-metrics counters), `/debug/extensionz`,
//! `/debug/featurez` and `/debug/tracez`, plus vigil's status page `/debug/vigilz`: what the
//! detectors see now, from the taps of `crate::observed`. With `expvar::enabled`, `/debug/expvarz`
//! serves the own metrics as JSON.

mod page;
mod plot;
mod prom;

use super::health_check::{serve_http, server_tls};
use crate::observed::{self, Observed};
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use vigil_core::config::{bind_tcp, check_endpoint};
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ZPagesConfig {
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default)]
    expvar: Expvar,
    /// TLS (and mutual TLS with `client_ca_file`), with otelcol's `configtls` keys.
    #[serde(default)]
    tls: Option<TlsServerSettings>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Expvar {
    #[serde(default)]
    enabled: bool,
}

fn default_endpoint() -> String {
    "localhost:55679".into()
}

#[cfg(test)]
fn parse(id: &ComponentId, value: &serde_json::Value) -> Result<ZPagesConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Extension, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, cfg: ZPagesConfig) -> Result<ZPagesConfig, ConfigError> {
    check_endpoint(&cfg.endpoint)
        .map_err(|e| ConfigError::component(ComponentKind::Extension, id, "endpoint", e))?;
    if let Some(t) = &cfg.tls {
        t.server_config(super::health_check::HTTP_ALPN)
            .map_err(|e| {
                ConfigError::component(
                    ComponentKind::Extension,
                    id,
                    format!("tls::{}", e.key),
                    e.message,
                )
            })?;
    }
    Ok(cfg)
}

struct Factory;

/// The `zpages` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = ZPagesConfig;

    fn type_name(&self) -> &'static str {
        "zpages"
    }

    fn validate(&self, id: &ComponentId, cfg: &ZPagesConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Beta
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: ZPagesConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        Ok(Arc::new(ZPages {
            id: id.clone(),
            cfg,
            observed: observed::global(),
            tasks: set.tasks.clone(),
        }))
    }
}

struct ZPages {
    id: ComponentId,
    cfg: ZPagesConfig,
    observed: Arc<Observed>,
    tasks: vigil_core::task::Tasks,
}

impl Extension for ZPages {}

#[derive(Clone)]
struct Pages {
    observed: Arc<Observed>,
}

fn html(body: String) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response()
}

async fn index() -> Response {
    html(page::index())
}

async fn servicez(State(p): State<Pages>) -> Response {
    html(page::servicez(&p.observed.snapshot(), &own_metrics()))
}

async fn pipelinez(State(p): State<Pages>) -> Response {
    html(page::pipelinez(&p.observed.snapshot(), &own_metrics()))
}

async fn extensionz(State(p): State<Pages>) -> Response {
    html(page::extensionz(&p.observed.snapshot()))
}

async fn featurez() -> Response {
    html(page::featurez(&feature_gates()))
}

static FEATURE_GATES: std::sync::OnceLock<Vec<(String, bool)>> = std::sync::OnceLock::new();

/// Records the `--feature-gates` values for `/debug/featurez`: comma-separated ids, each with an
/// optional `+` (enable, the default) or `-` (disable), as otelcol reads them. Set once at start.
pub fn set_feature_gates(flags: &[String]) {
    let gates = flags
        .iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| match g.strip_prefix('-') {
            Some(id) => (id.to_string(), false),
            None => (g.strip_prefix('+').unwrap_or(g).to_string(), true),
        })
        .collect();
    let _ = FEATURE_GATES.set(gates);
}

fn feature_gates() -> Vec<(String, bool)> {
    FEATURE_GATES.get().cloned().unwrap_or_default()
}

/// Whether `--feature-gates` named gate `id`: `Some(true)` enabled, `Some(false)` disabled with
/// `-id`, `None` not named (the last mention wins, as in otelcol).
pub fn feature_gate(id: &str) -> Option<bool> {
    FEATURE_GATES
        .get()?
        .iter()
        .rev()
        .find(|(g, _)| g == id)
        .map(|(_, on)| *on)
}

async fn tracez() -> Response {
    html(page::tracez())
}

async fn vigilz(State(p): State<Pages>) -> Response {
    html(page::vigilz(&p.observed.snapshot(), &own_metrics()))
}

async fn expvarz() -> Response {
    let mut vars = serde_json::Map::new();
    for s in own_metrics().samples {
        vars.insert(s.key(), serde_json::json!(s.value));
    }
    axum::Json(Value::Object(vars)).into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, html(page::not_found())).into_response()
}

fn own_metrics() -> prom::Metrics {
    match crate::telemetry::own_metrics() {
        Some(text) => prom::Metrics::parse(&text),
        None => prom::Metrics::off(),
    }
}

#[async_trait]
impl Component for ZPages {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let listener = bind_tcp(ComponentKind::Extension, &self.id, &self.cfg.endpoint).await?;
        let mut app = axum::Router::new()
            .route("/", axum::routing::get(index))
            .route("/debug", axum::routing::get(index))
            .route("/debug/servicez", axum::routing::get(servicez))
            .route("/debug/pipelinez", axum::routing::get(pipelinez))
            .route("/debug/extensionz", axum::routing::get(extensionz))
            .route("/debug/featurez", axum::routing::get(featurez))
            .route("/debug/tracez", axum::routing::get(tracez))
            .route("/debug/vigilz", axum::routing::get(vigilz));
        if self.cfg.expvar.enabled {
            app = app.route("/debug/expvarz", axum::routing::get(expvarz));
        }
        let app = app.fallback(not_found).with_state(Pages {
            observed: self.observed.clone(),
        });
        let tls = server_tls(&self.id, "", self.cfg.tls.as_ref())?;
        serve_http(&self.id, &self.tasks, listener, app, tls);
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::task::Tasks> {
        Some(&self.tasks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_mistakes() {
        let id = ComponentId::new("zpages", None);
        let cfg = parse(&id, &Value::Null).unwrap();
        assert_eq!(cfg.endpoint, "localhost:55679");
        assert!(!cfg.expvar.enabled);
        let cfg = parse(
            &id,
            &serde_json::json!({"endpoint": "0.0.0.0:1234", "expvar": {"enabled": true}}),
        )
        .unwrap();
        assert!(cfg.expvar.enabled);
        let e = parse(&id, &serde_json::json!({"endpoint": "nowhere"})).unwrap_err();
        assert!(e.to_string().contains("endpoint"), "{e}");
        let e = parse(&id, &serde_json::json!({"endpoit": "x:1"})).unwrap_err();
        assert!(e.to_string().contains("endpoit"), "{e}");
    }
}
