//! `auth: {authenticator: <id>}` on a network exporter, as otelcol's configauth: the named extension
//! (`bearertokenauth`, ...) is looked up when the exporter starts, and its headers go on every
//! request.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use vigil_core::component::OutgoingRequest;
use vigil_core::{ClientAuth, ComponentId, ComponentKind, ConfigError, Host};

/// The `auth` key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub authenticator: String,
}

impl AuthConfig {
    /// The authenticator's id, checked at `validate`.
    pub fn id(&self, exporter: &ComponentId) -> Result<ComponentId, ConfigError> {
        ComponentId::parse(&self.authenticator).map_err(|e| {
            ConfigError::component(
                ComponentKind::Exporter,
                exporter,
                "auth::authenticator",
                format!("{:?}: {e}", self.authenticator),
            )
        })
    }
}

/// The authenticator of one exporter, resolved at start.
#[derive(Default)]
pub struct Authenticator {
    /// The extension to ask for, when `auth` is configured.
    id: Option<ComponentId>,
    resolved: OnceLock<Arc<dyn ClientAuth>>,
    /// The exporter passes whole requests ([`Authenticator::apply_request`]), so authenticators
    /// that sign them (`sigv4auth`) can be used.
    passes_requests: bool,
}

impl Authenticator {
    pub fn new(id: Option<ComponentId>) -> Self {
        Authenticator {
            id,
            resolved: OnceLock::new(),
            passes_requests: false,
        }
    }

    /// For an exporter that calls [`Authenticator::apply_request`] on every request.
    pub fn passing_requests(mut self) -> Self {
        self.passes_requests = true;
        self
    }

    /// Looks the extension up; an exporter whose authenticator is missing does not start.
    pub fn start(&self, host: &Host, exporter: &ComponentId) -> anyhow::Result<()> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        let auth = host
            .client_auth(id)
            .map_err(|e| anyhow::anyhow!("exporters::{exporter}::auth::authenticator: {e}"))?;
        if auth.needs_request() && !self.passes_requests {
            anyhow::bail!(
                "exporters::{exporter}::auth::authenticator: {id} signs whole HTTP requests, \
                 which this exporter does not pass to an authenticator (otlphttp and \
                 prometheusremotewrite do)"
            );
        }
        let _ = self.resolved.set(auth);
        Ok(())
    }

    /// Whether `auth` is configured.
    pub fn is_configured(&self) -> bool {
        self.id.is_some()
    }

    /// Puts the credentials on a request whose headers so far are `headers`. With `auth`
    /// configured but not resolved (the exporter was not started), or a credential that cannot be
    /// had now, the request must not go out without it: the error is retryable, as the credential
    /// may come back.
    pub async fn apply(&self, headers: &mut http::HeaderMap) -> Result<(), String> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        match self.resolved.get() {
            Some(auth) => auth.apply(headers).await,
            None => Err(format!("authenticator {id} is not started")),
        }
    }

    /// [`Authenticator::apply`] for an exporter that passes the whole request, which
    /// authenticators that sign requests need. `headers` must hold every header the exporter
    /// sets (content type and encoding included), as a signature may cover them.
    pub async fn apply_request(
        &self,
        request: OutgoingRequest<'_>,
        headers: &mut http::HeaderMap,
    ) -> Result<(), String> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        match self.resolved.get() {
            Some(auth) => auth.apply_request(request, headers).await,
            None => Err(format!("authenticator {id} is not started")),
        }
    }
}
