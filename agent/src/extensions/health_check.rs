//! `health_check`: an HTTP endpoint that answers 200 with a JSON status while every pipeline runs, and
//! 503 while the agent starts or stops. Kubernetes probes and systemd watchdogs poll it.

use crate::service::status::{self, Status};
use async_trait::async_trait;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use vigil_core::config::{bind_tcp, check_endpoint};
use vigil_core::net::serve::{serve, ConnCounters, ServeOptions};
use vigil_core::net::tls::{ServerTls, TlsServerSettings};
use vigil_core::{Component, ComponentId, ComponentKind, ConfigError, Extension, Host};

/// What the endpoint offers over TLS.
pub(crate) const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The server TLS of an extension's HTTP endpoint, from `tls` (at key path `at`, "" or "name::")
/// when set; a certificate that cannot be loaded is an error naming the extension and key.
pub(crate) fn server_tls(
    id: &ComponentId,
    at: &str,
    tls: Option<&TlsServerSettings>,
) -> anyhow::Result<Option<Arc<ServerTls>>> {
    tls.map(|t| {
        t.server(HTTP_ALPN)
            .map_err(|e| anyhow::anyhow!("extensions::{id}::{at}{e}"))
    })
    .transpose()
}

/// Serves an extension's HTTP `app` on `listener` until its tasks stop, with the receivers'
/// listener loop (header and idle timeouts and a connection cap), so idle sockets cannot keep
/// requests from being answered.
pub(crate) fn serve_http(
    id: &ComponentId,
    tasks: &vigil_core::task::Tasks,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<ServerTls>>,
) {
    let opts = ServeOptions {
        tls,
        ..ServeOptions::default()
    };
    let counters = ConnCounters::new("extension", &id.to_string(), "http");
    tasks.spawn(serve(listener, app, opts, counters, tasks.stopping()));
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct HealthCheckConfig {
    #[serde(default = "default_endpoint")]
    endpoint: String,
    #[serde(default = "default_path")]
    path: String,
    /// TLS (and mutual TLS with `client_ca_file`), with otelcol's `configtls` keys.
    #[serde(default)]
    tls: Option<TlsServerSettings>,
    /// Deprecated in otelcol and ignored there too; accepted so existing configs load.
    #[serde(default)]
    #[allow(dead_code)]
    check_collector_pipeline: Option<Value>,
    /// otelcol's fixed answers: with it set, the body is `healthy` or `unhealthy` as plain text
    /// instead of the JSON status.
    #[serde(default)]
    response_body: Option<ResponseBody>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct ResponseBody {
    #[serde(default)]
    healthy: String,
    #[serde(default)]
    unhealthy: String,
}

fn default_endpoint() -> String {
    "localhost:13133".into()
}
fn default_path() -> String {
    "/".into()
}

/// Checks a decoded section and prepares what the component runs with.
fn check(id: &ComponentId, cfg: HealthCheckConfig) -> Result<HealthCheckConfig, ConfigError> {
    check_endpoint(&cfg.endpoint)
        .map_err(|e| ConfigError::component(ComponentKind::Extension, id, "endpoint", e))?;
    if let Some(t) = &cfg.tls {
        t.server_config(HTTP_ALPN).map_err(|e| {
            ConfigError::component(
                ComponentKind::Extension,
                id,
                format!("tls::{}", e.key),
                e.message,
            )
        })?;
    }
    if !cfg.path.starts_with('/') {
        return Err(ConfigError::component(
            ComponentKind::Extension,
            id,
            "path",
            format!("path {:?} must start with '/'", cfg.path),
        ));
    }
    Ok(cfg)
}

struct Factory;

/// The `health_check` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = HealthCheckConfig;

    fn type_name(&self) -> &'static str {
        "health_check"
    }

    fn validate(&self, id: &ComponentId, cfg: &HealthCheckConfig) -> Result<(), ConfigError> {
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
        cfg: HealthCheckConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        let id = &set.id;
        Ok(Arc::new(HealthCheck {
            id: id.clone(),
            cfg,
            tasks: set.tasks.clone(),
        }))
    }
}

struct HealthCheck {
    id: ComponentId,
    cfg: HealthCheckConfig,
    tasks: vigil_core::task::Tasks,
}

impl Extension for HealthCheck {}

async fn answer(fixed: Option<Arc<ResponseBody>>) -> axum::response::Response {
    let st = status::get();
    if let Some(b) = fixed {
        return if st == Status::Ready {
            (StatusCode::OK, b.healthy.clone()).into_response()
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, b.unhealthy.clone()).into_response()
        };
    }
    let up = status::up_since();
    let body = serde_json::json!({
        "status": if st == Status::Ready { "Server available" } else { "Server not available" },
        "state": st.as_str(),
        "upSince": up.0,
        "uptime": format!("{:.3}s", up.1.as_secs_f64()),
    });
    let code = if st == Status::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

#[async_trait]
impl Component for HealthCheck {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let listener = bind_tcp(ComponentKind::Extension, &self.id, &self.cfg.endpoint).await?;
        let fixed = self.cfg.response_body.clone().map(Arc::new);
        let app = axum::Router::new().route(
            &self.cfg.path,
            axum::routing::get(move || answer(fixed.clone())),
        );
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

    #[tokio::test]
    async fn response_body_replaces_the_json_status() {
        let cfg: HealthCheckConfig = serde_json::from_value(serde_json::json!({
            "response_body": {"healthy": "I'm OK", "unhealthy": "I'm not well"}
        }))
        .unwrap();
        let resp = answer(cfg.response_body.map(Arc::new)).await;
        let code = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        // Whatever the agent's state is here, the body is the configured text for it.
        let want: &[u8] = if code == StatusCode::OK {
            b"I'm OK"
        } else {
            b"I'm not well"
        };
        assert_eq!(&body[..], want);
        let resp = answer(None).await;
        let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
        assert!(
            body.starts_with(b"{"),
            "the JSON status without response_body"
        );
    }
}
