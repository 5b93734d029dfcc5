//! `auth: {authenticator: <id>}` on a network exporter, as otelcol's configauth: the named extension
//! (`bearertokenauth`, ...) is looked up when the exporter starts, and its headers go on every
//! request.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
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
}

impl Authenticator {
    pub fn new(id: Option<ComponentId>) -> Self {
        Authenticator {
            id,
            resolved: OnceLock::new(),
        }
    }

    /// Looks the extension up; an exporter whose authenticator is missing does not start.
    pub fn start(&self, host: &Host, exporter: &ComponentId) -> anyhow::Result<()> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        let auth = host
            .client_auth(id)
            .map_err(|e| anyhow::anyhow!("exporters::{exporter}::auth::authenticator: {e}"))?;
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
}
