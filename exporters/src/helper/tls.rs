//! Client TLS for the exporters: the rustls configuration from otelcol's `configtls` client keys,
//! built by `vigil_core::net::client_tls` (which the scraping receivers share) with its errors
//! placed in the exporter's section. The `otlp` exporter hands tonic a connector that does its
//! handshake with this configuration (tonic's own TLS cannot narrow the version range or the
//! suites); the HTTP exporters use it where reqwest has no setting of its own
//! (`server_name_override`, `cipher_suites`).

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use vigil_core::config::TlsClientConfig;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// The rustls client configuration for `tls`, offering `alpn`, with errors at `tls::` keys of the
/// exporter `id` (see `vigil_core::net::client_tls::client_config`: the files are read here,
/// except in `vigil validate`).
pub fn client_config(
    id: &ComponentId,
    tls: &TlsClientConfig,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, ConfigError> {
    vigil_core::net::client_tls::client_config(tls, alpn, |key, msg| {
        ConfigError::component(ComponentKind::Exporter, id, key, msg)
    })
}

/// `name` as a TLS server name (a DNS name or an IP address, brackets allowed around IPv6), with
/// an error at `tls::{key}`.
pub fn server_name(
    id: &ComponentId,
    key: &str,
    name: &str,
) -> Result<ServerName<'static>, ConfigError> {
    vigil_core::net::client_tls::server_name(name).map_err(|msg| {
        ConfigError::component(ComponentKind::Exporter, id, format!("tls::{key}"), msg)
    })
}

/// Opens a TCP connection to the URI's host and port and runs the TLS handshake on it, verifying
/// the server as `name` (the endpoint's host, or `server_name_override`; also sent as SNI, as Go
/// does). tonic is given plaintext `http://` URIs with this connector, so its own TLS stays out.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl TlsConnector {
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> TlsConnector {
        TlsConnector {
            connector: tokio_rustls::TlsConnector::from(config),
            name,
        }
    }
}

type Connected = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = Connected;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        let name = self.name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "no host to connect to")
                })?;
            let port = uri.port_u16().unwrap_or(443);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            // gRPC sends small frames that must not wait for Nagle's timer, as tonic sets it.
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the keys do is tested in `vigil_core::net::client_tls`; here, where the errors land.
    #[test]
    fn errors_are_placed_in_the_exporters_section() {
        let id = ComponentId::parse("otlp/t").unwrap();
        let bad: TlsClientConfig = serde_json::from_value(
            serde_json::json!({"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}),
        )
        .unwrap();
        let e = client_config(&id, &bad, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("exporters::otlp/t::tls::cipher_suites: \"TLS_RSA_WITH_RC4_128_SHA\""),
            "{e}"
        );
        let e = server_name(&id, "server_name_override", "not a name!")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("exporters::otlp/t::tls::server_name_override: \"not a name!\""),
            "{e}"
        );
    }
}
