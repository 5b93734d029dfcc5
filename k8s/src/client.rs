//! How a component reaches the API server, as otelcol's `k8sconfig.APIConfig`: `auth_type`
//! `serviceAccount` (the pod's token and CA, the server from `KUBERNETES_SERVICE_HOST`/`_PORT`),
//! `kubeConfig` (`KUBECONFIG` or `~/.kube/config`, optionally a named `context`), or `none` (the
//! same in-cluster address without credentials and without certificate checks, as otelcol does).
//!
//! otelcol's `k8sconfig` also accepts `auth_type: tls`, but has no key for a client certificate or
//! key and builds no client for it (its `CreateRestConfig` has no `tls` case, under a TODO), so
//! there is no behaviour to match: vigil refuses `tls` when the config is read.

use serde::{Deserialize, Serialize};

/// `auth_type`: how to authenticate to the API server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AuthType {
    /// No credentials; the server's certificate is not checked.
    #[serde(rename = "none")]
    None,
    /// The pod's service account token and cluster CA (the default).
    #[default]
    #[serde(rename = "serviceAccount")]
    ServiceAccount,
    /// A kubeconfig file (`KUBECONFIG`, else `~/.kube/config`).
    #[serde(rename = "kubeConfig")]
    KubeConfig,
}

/// The API connection keys a Kubernetes component embeds in its own config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiConfig {
    #[serde(default)]
    pub auth_type: AuthType,
    /// The kubeconfig context to use with `kubeConfig`; empty means the current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// Why no client could be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("auth_type {auth}: {reason}")]
    Config { auth: &'static str, reason: String },
    #[error("building the Kubernetes client: {0}")]
    Client(String),
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "none",
            AuthType::ServiceAccount => "serviceAccount",
            AuthType::KubeConfig => "kubeConfig",
        }
    }
}

/// Builds a client for `cfg`, reading the environment and files it names. Nothing is contacted
/// yet: the first request (or watch) does that, so a component can start before the API answers.
pub async fn connect(cfg: &ApiConfig) -> Result<kube::Client, ConnectError> {
    let auth = cfg.auth_type.as_str();
    let err = |reason: String| ConnectError::Config { auth, reason };
    let config = match cfg.auth_type {
        AuthType::ServiceAccount => kube::Config::incluster()
            .map_err(|e| err(format!("{e}; is vigil running in a pod?")))?,
        AuthType::KubeConfig => {
            let opts = kube::config::KubeConfigOptions {
                context: cfg.context.clone().filter(|c| !c.is_empty()),
                ..Default::default()
            };
            kube::Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| err(e.to_string()))?
        }
        AuthType::None => {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_default();
            if host.is_empty() || port.is_empty() {
                return Err(err(
                    "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set".into(),
                ));
            }
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            let url = format!("https://{host}:{port}")
                .parse()
                .map_err(|e| err(format!("invalid API server address: {e}")))?;
            let mut c = kube::Config::new(url);
            c.accept_invalid_certs = true;
            c
        }
    };
    client_for(config)
}

/// A client for an already built `kube::Config` (tests point one at a local API-server double).
pub fn client_for(config: kube::Config) -> Result<kube::Client, ConnectError> {
    kube::Client::try_from(config).map_err(|e| ConnectError::Client(e.to_string()))
}

/// A client for a plain-HTTP API server at `url` without credentials: the test doubles.
pub fn client_at(url: &str) -> Result<kube::Client, ConnectError> {
    let uri = url
        .parse()
        .map_err(|e| ConnectError::Client(format!("invalid URL {url:?}: {e}")))?;
    client_for(kube::Config::new(uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_types_are_spelled_as_otelcol_spells_them() {
        for (s, a) in [
            ("none", AuthType::None),
            ("serviceAccount", AuthType::ServiceAccount),
            ("kubeConfig", AuthType::KubeConfig),
        ] {
            let got: AuthType = serde_json::from_value(serde_json::json!(s)).unwrap();
            assert_eq!(got, a);
            assert_eq!(a.as_str(), s);
        }
        assert!(serde_json::from_value::<AuthType>(serde_json::json!("tls")).is_err());
        let c: ApiConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(c.auth_type, AuthType::ServiceAccount);
    }

    #[test]
    fn an_invalid_url_is_an_error_not_a_panic() {
        assert!(client_at("not a url").is_err());
    }

    #[tokio::test]
    async fn a_kubeconfig_context_that_does_not_exist_is_named() {
        // The default kubeconfig may be absent here; either way the error says what is wrong
        // instead of panicking, and names the auth type.
        let e = connect(&ApiConfig {
            auth_type: AuthType::KubeConfig,
            context: Some("no-such-context-vigil".into()),
        })
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.starts_with("auth_type kubeConfig: "), "{e}");
    }
}
