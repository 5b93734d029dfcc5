//! The `otlp` receiver's config: otelcol's keys and defaults (`configgrpc.ServerConfig`,
//! `confighttp.ServerConfig` and the receiver's own URL paths), decoded with the key path in every
//! error, and a `validate` that catches what would otherwise only fail at start.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;
use vigil_core::config::{check_endpoint, decode, present};
use vigil_core::{ComponentId, ComponentKind, ConfigError};

pub use super::decoded::DEFAULT_MAX_DECODED_MIB;
use crate::serve::ServeOptions;
use crate::tls::TlsServerSettings;

/// What the gRPC listener offers in ALPN: HTTP/2 only.
pub const GRPC_ALPN: &[&[u8]] = &[b"h2"];
/// What the HTTP listener offers in ALPN.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The largest `max_concurrent_streams` accepted: each stream may hold a decoding request.
pub const MAX_STREAMS_CAP: u32 = 10_000;

/// The largest `max_decoded_size_mib` accepted: beyond it the setting no longer bounds anything a
/// node agent can hold.
pub const MAX_DECODED_MIB_CAP: u64 = 16 * 1024;

/// gRPC's default receive limit, as in grpc-go and otelcol.
pub const DEFAULT_GRPC_MAX_RECV_MIB: u64 = 4;

/// confighttp's default body limit (20 MiB). The OTLP spec recommends accepting up to 64 MiB; we keep
/// otelcol's figure so that a drop-in replacement refuses exactly what otelcol refuses, and users who
/// need more raise `max_request_body_size` as they would in otelcol.
pub const DEFAULT_HTTP_MAX_BODY: u64 = 20 * 1024 * 1024;

/// `receivers::otlp` as a whole.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// The transports to serve; each one is on only if its key is present, even when empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub protocols: Protocols,
}

/// `protocols:` with nothing under it is YAML null; take it as an empty map, as otelcol's confmap does.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `protocols`: `grpc:` and `http:`, each enabled by being present.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

/// `protocols::grpc`, otelcol's `configgrpc.ServerConfig`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` to listen on; default `localhost:4317`.
    pub endpoint: String,
    /// Only `tcp` is served; otelcol also takes `unix`, which `validate` refuses with a clear message.
    pub transport: String,
    /// Largest request message accepted, in MiB (after decompression); 0 means the default, 4.
    pub max_recv_msg_size_mib: u64,
    /// Most memory one request may take once decoded, in MiB, estimated before decoding; 0 means
    /// the default (see [`DEFAULT_MAX_DECODED_MIB`]). Not an otelcol key.
    pub max_decoded_size_mib: u64,
    /// HTTP/2 streams allowed per connection; 0 means the default, 100.
    pub max_concurrent_streams: u32,
    /// Open connections allowed; at the cap the longest-idle one is closed to make room. 0 means
    /// the default: 1024, or a quarter of the open-file limit if lower. Not an otelcol key.
    pub max_connections: usize,
    /// Accepted for otelcol compatibility; hyper sizes its buffers itself.
    pub read_buffer_size: Option<u64>,
    /// Accepted for otelcol compatibility; hyper sizes its buffers itself.
    pub write_buffer_size: Option<u64>,
    pub keepalive: Option<KeepaliveConfig>,
    /// Pass the request's headers (gRPC metadata) down the pipeline with its data, as otelcol's
    /// `client.Info.Metadata`: for `batch`'s `metadata_keys` and `headers_setter`'s `from_context`.
    pub include_metadata: bool,
    /// otelcol's `configtls` server keys; see [`crate::tls`].
    pub tls: Option<TlsServerSettings>,
    /// `auth: {authenticator: <extension id>}`: every call must pass that extension's check.
    pub auth: Option<AuthConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: "localhost:4317".into(),
            transport: "tcp".into(),
            max_recv_msg_size_mib: DEFAULT_GRPC_MAX_RECV_MIB,
            max_decoded_size_mib: 0,
            max_concurrent_streams: 0,
            max_connections: 0,
            read_buffer_size: None,
            write_buffer_size: None,
            keepalive: None,
            include_metadata: false,
            tls: None,
            auth: None,
        }
    }
}

impl GrpcConfig {
    /// The decoding limit in bytes.
    pub fn max_recv_bytes(&self) -> usize {
        let mib = if self.max_recv_msg_size_mib == 0 {
            DEFAULT_GRPC_MAX_RECV_MIB
        } else {
            self.max_recv_msg_size_mib
        };
        usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
    }

    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> usize {
        decoded_bytes(self.max_decoded_size_mib)
    }

    /// The listener's limits. gRPC has no header timeout key, so it takes the HTTP default; its
    /// idle timeout is `keepalive::server_parameters::max_connection_idle`.
    pub fn serve_options(&self) -> ServeOptions {
        let sp = self
            .keepalive
            .as_ref()
            .and_then(|k| k.server_parameters.as_ref());
        let mut o = ServeOptions {
            http2_only: true,
            // `validate` built it once already, so this cannot fail on a loaded config.
            tls: self.tls.as_ref().and_then(|t| t.server(GRPC_ALPN).ok()),
            ..ServeOptions::default()
        };
        if self.max_concurrent_streams > 0 {
            o.max_concurrent_streams = self.max_concurrent_streams;
        }
        if self.max_connections > 0 {
            o.max_connections = self.max_connections;
        }
        if let Some(sp) = sp {
            if let Some(idle) = sp.max_connection_idle.filter(|d| !d.is_zero()) {
                o.idle_timeout = idle;
            }
            if let Some(time) = sp.time.filter(|d| !d.is_zero()) {
                o.keepalive = Some((time, sp.timeout.unwrap_or(Duration::from_secs(20))));
            }
            o.max_connection_age = sp.max_connection_age.filter(|d| !d.is_zero());
            o.max_connection_age_grace = sp.max_connection_age_grace;
        }
        o
    }
}

fn decoded_bytes(mib: u64) -> usize {
    let mib = if mib == 0 {
        DEFAULT_MAX_DECODED_MIB
    } else {
        mib
    };
    usize::try_from(mib.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// `protocols::grpc::keepalive`, as otelcol spells it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveConfig {
    pub server_parameters: Option<KeepaliveServerParameters>,
    pub enforcement_policy: Option<KeepaliveEnforcementPolicy>,
}

/// `keepalive::server_parameters`. `time` and `timeout` drive HTTP/2 pings, `max_connection_age`
/// and `max_connection_age_grace` recycle connections, and `max_connection_idle` (default 1 minute
/// here, unlimited in grpc-go) closes a connection with no call in flight.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveServerParameters {
    #[serde(with = "vigil_core::config::opt_duration")]
    pub max_connection_idle: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub max_connection_age: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub max_connection_age_grace: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub time: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub timeout: Option<Duration>,
}

/// `keepalive::enforcement_policy`: accepted for compatibility. Client ping rates are not policed,
/// which only makes the server more permissive than grpc-go, never less.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeepaliveEnforcementPolicy {
    #[serde(with = "vigil_core::config::opt_duration")]
    pub min_time: Option<Duration>,
    pub permit_without_stream: bool,
}

/// `protocols::http`, otelcol's `confighttp.ServerConfig` plus the OTLP URL paths.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// `host:port` to listen on; default `localhost:4318`.
    pub endpoint: String,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    pub cors: Option<CorsConfig>,
    /// Largest body accepted, in bytes, both as sent and after decompression; 0 means the default,
    /// 20 MiB (see [`DEFAULT_HTTP_MAX_BODY`]).
    pub max_request_body_size: u64,
    /// Most memory one request may take once decoded, in MiB, estimated before decoding; 0 means
    /// the default (see [`DEFAULT_MAX_DECODED_MIB`]). Not an otelcol key.
    pub max_decoded_size_mib: u64,
    /// How long a new connection has to send its first request's headers (and, on HTTP/1, each
    /// later request its headers); default 1 minute, as otelcol. Zero means the default.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_header_timeout: Option<Duration>,
    /// How long a connection may stay open with no request in flight; default 1 minute, as
    /// otelcol. Zero means the default.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Open connections allowed; see [`GrpcConfig::max_connections`]. Not an otelcol key.
    pub max_connections: usize,
    /// Pass the request's headers (gRPC metadata) down the pipeline with its data, as otelcol's
    /// `client.Info.Metadata`: for `batch`'s `metadata_keys` and `headers_setter`'s `from_context`.
    pub include_metadata: bool,
    /// otelcol's `configtls` server keys; see [`crate::tls`].
    pub tls: Option<TlsServerSettings>,
    /// `auth: {authenticator: <extension id>}`: every request must pass that extension's check.
    pub auth: Option<AuthConfig>,
    /// Headers added to every answer, refusals included.
    pub response_headers: std::collections::BTreeMap<String, String>,
    /// The `Content-Encoding`s a request may use (`""` is none); unset allows every one vigil
    /// decodes. A request with another is answered 400, as otelcol does.
    pub compression_algorithms: Option<Vec<String>>,
    /// How long reading one request's body may take (0: no limit, the default); a slower upload
    /// is answered 408.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_timeout: Option<Duration>,
    /// Go's bound on writing an answer (default 30s). vigil's answers are one small buffered
    /// write that the connection's own limits already bound; read for compatibility.
    #[serde(with = "vigil_core::config::opt_duration")]
    pub write_timeout: Option<Duration>,
    /// `false` closes each HTTP/1.1 connection after its answer (`Connection: close`), as Go's
    /// `SetKeepAlivesEnabled(false)` does. Default true.
    pub keep_alives_enabled: bool,
}

/// The `Content-Encoding` names otelcol's `compression_algorithms` takes.
pub const COMPRESSION_ALGORITHMS: &[&str] = &[
    "",
    "gzip",
    "zstd",
    "zlib",
    "snappy",
    "deflate",
    "lz4",
    "x-snappy-framed",
];

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "localhost:4318".into(),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            cors: None,
            max_request_body_size: 0,
            max_decoded_size_mib: 0,
            read_header_timeout: None,
            idle_timeout: None,
            max_connections: 0,
            include_metadata: false,
            tls: None,
            auth: None,
            response_headers: std::collections::BTreeMap::new(),
            compression_algorithms: None,
            read_timeout: None,
            write_timeout: None,
            keep_alives_enabled: true,
        }
    }
}

impl HttpConfig {
    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        let n = if self.max_request_body_size == 0 {
            DEFAULT_HTTP_MAX_BODY
        } else {
            self.max_request_body_size
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The decoded-size limit in bytes.
    pub fn max_decoded_bytes(&self) -> usize {
        decoded_bytes(self.max_decoded_size_mib)
    }

    /// The listener's limits.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions::http(
            self.tls.as_ref().and_then(|t| t.server(HTTP_ALPN).ok()),
            self.read_header_timeout,
            self.idle_timeout,
            self.max_connections,
        )
    }
}

/// `protocols::http::cors`, for browser SDKs.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Origins allowed to send data: exact (`https://app.example.com`), one `*` wildcard
    /// (`https://*.example.com`), or `*` for any. Empty turns CORS off.
    pub allowed_origins: Vec<String>,
    /// Request headers allowed beyond the ones an OTLP exporter always sends.
    pub allowed_headers: Vec<String>,
    /// How long, in seconds, a browser may cache a preflight answer.
    pub max_age: u64,
}

/// Decodes and validates the receiver's section.
pub fn load(id: &ComponentId, value: &Value) -> Result<OtlpConfig, ConfigError> {
    let cfg: OtlpConfig = decode(ComponentKind::Receiver, id, value)?;
    validate(id, &cfg)?;
    Ok(cfg)
}

fn err(id: &ComponentId, path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, message)
}

/// Checks what serde cannot: at least one protocol, well-formed endpoints and URL paths, and the
/// options we accept for compatibility but cannot honour safely.
pub fn validate(id: &ComponentId, cfg: &OtlpConfig) -> Result<(), ConfigError> {
    let p = &cfg.protocols;
    if p.grpc.is_none() && p.http.is_none() {
        return Err(err(
            id,
            "protocols",
            "must specify at least one protocol (grpc or http) when using the OTLP receiver",
        ));
    }
    if let Some(g) = &p.grpc {
        // The transport first: a unix socket path would otherwise be reported as a bad host:port.
        if g.transport != "tcp" {
            return Err(err(
                id,
                "protocols::grpc::transport",
                format!("transport {:?} is not supported; use \"tcp\"", g.transport),
            ));
        }
        check_endpoint(&g.endpoint).map_err(|e| err(id, "protocols::grpc::endpoint", e))?;
        check_decoded(id, "protocols::grpc", g.max_decoded_size_mib)?;
        if g.max_concurrent_streams > MAX_STREAMS_CAP {
            return Err(err(
                id,
                "protocols::grpc::max_concurrent_streams",
                format!(
                    "must be at most {MAX_STREAMS_CAP}, got {}",
                    g.max_concurrent_streams
                ),
            ));
        }
        let mtls = g.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        check_auth(id, "protocols::grpc::auth", g.auth.as_ref(), mtls)?;
        if let Some(t) = &g.tls {
            t.server_config(GRPC_ALPN)
                .map_err(|e| err(id, &format!("protocols::grpc::tls::{}", e.key), e.message))?;
        }
    }
    if let Some(h) = &p.http {
        check_endpoint(&h.endpoint).map_err(|e| err(id, "protocols::http::endpoint", e))?;
        check_decoded(id, "protocols::http", h.max_decoded_size_mib)?;
        let paths = [
            ("traces_url_path", &h.traces_url_path),
            ("metrics_url_path", &h.metrics_url_path),
            ("logs_url_path", &h.logs_url_path),
        ];
        for (key, path) in paths {
            if !path.starts_with('/') {
                return Err(err(
                    id,
                    &format!("protocols::http::{key}"),
                    format!("URL path {path:?} must start with '/'"),
                ));
            }
            // axum treats `{…}` and `*` as route parameters; a literal one would match other paths.
            if path.contains(['{', '}', '*']) {
                return Err(err(
                    id,
                    &format!("protocols::http::{key}"),
                    format!("URL path {path:?} may not contain '{{', '}}' or '*'"),
                ));
            }
        }
        for (i, (a, pa)) in paths.iter().enumerate() {
            if let Some((b, _)) = paths[i + 1..].iter().find(|(_, pb)| pa == pb) {
                return Err(err(
                    id,
                    &format!("protocols::http::{b}"),
                    format!("URL path {pa:?} is already used by {a}"),
                ));
            }
        }
        if let Some(cors) = &h.cors {
            for (i, o) in cors.allowed_origins.iter().enumerate() {
                if o != "*" && o.matches('*').count() > 1 {
                    return Err(err(
                        id,
                        &format!("protocols::http::cors::allowed_origins::{i}"),
                        format!("origin {o:?} may hold at most one '*' wildcard"),
                    ));
                }
                if http::HeaderValue::from_str(o).is_err() {
                    return Err(err(
                        id,
                        &format!("protocols::http::cors::allowed_origins::{i}"),
                        format!("origin {o:?} is not a valid header value"),
                    ));
                }
            }
            for (i, h) in cors.allowed_headers.iter().enumerate() {
                if h != "*" && http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(err(
                        id,
                        &format!("protocols::http::cors::allowed_headers::{i}"),
                        format!("{h:?} is not a valid header name"),
                    ));
                }
            }
        }
        for (k, v) in &h.response_headers {
            if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                || http::HeaderValue::from_str(v).is_err()
            {
                return Err(err(
                    id,
                    &format!("protocols::http::response_headers::{k}"),
                    "is not a valid header name and value",
                ));
            }
        }
        for (i, a) in h.compression_algorithms.iter().flatten().enumerate() {
            if !COMPRESSION_ALGORITHMS.contains(&a.as_str()) {
                return Err(err(
                    id,
                    &format!("protocols::http::compression_algorithms::{i}"),
                    format!(
                        "unknown compression {a:?}; expected one of {:?}",
                        COMPRESSION_ALGORITHMS
                    ),
                ));
            }
        }
        let mtls = h.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        check_auth(id, "protocols::http::auth", h.auth.as_ref(), mtls)?;
        if let Some(t) = &h.tls {
            t.server_config(HTTP_ALPN)
                .map_err(|e| err(id, &format!("protocols::http::tls::{}", e.key), e.message))?;
        }
    }
    Ok(())
}

fn check_decoded(id: &ComponentId, at: &str, mib: u64) -> Result<(), ConfigError> {
    if mib > MAX_DECODED_MIB_CAP {
        return Err(err(
            id,
            &format!("{at}::max_decoded_size_mib"),
            format!("must be at most {MAX_DECODED_MIB_CAP} (MiB), got {mib}"),
        ));
    }
    Ok(())
}

/// Checks an `auth:` block whose key path is `at` (`protocols::grpc::auth`, or `auth`); `mtls`
/// says whether the listener asks for client certificates. Shared with `prometheusremotewrite`.
pub(crate) fn check_auth(
    id: &ComponentId,
    at: &str,
    auth: Option<&AuthConfig>,
    mtls: bool,
) -> Result<(), ConfigError> {
    if let Some(a) = auth {
        match &a.authenticator {
            Some(name) => {
                ComponentId::parse(name)
                    .map_err(|e| err(id, &format!("{at}::authenticator"), e))?;
            }
            // Without an authenticator, the client certificate's subject names the client.
            None if a.roles.is_some() && mtls => {}
            None => {
                return Err(err(
                    id,
                    &format!("{at}::authenticator"),
                    "is required (or, to name clients by their certificate's subject, roles with tls::client_ca_file)",
                ))
            }
        }
        super::roles::Roles::load(id, at, &a.tenant_attribute, a.roles.as_deref())?;
    }
    Ok(())
}

/// `auth:` on a server, as otelcol's `configauth.Config`, with vigil's roles (see `roles.rs`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The id of the authenticator extension, which must be in `service::extensions`. It may be
    /// left out with `roles` under mutual TLS: the client certificate's subject is the principal.
    #[serde(default)]
    pub authenticator: Option<String>,
    /// The resource attribute that roles stamp with their tenant.
    #[serde(default = "super::roles::default_attribute")]
    pub tenant_attribute: String,
    /// What each principal may send; without it, any authenticated client may send anything.
    #[serde(default)]
    pub roles: Option<Vec<super::roles::RoleConfig>>,
}
