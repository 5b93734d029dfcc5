//! The `jaeger` receiver's config: otelcol's keys and defaults. Each protocol is on only when its
//! key is present, as in otelcol, and at least one must be.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::config::{check_endpoint, present};
use vigil_core::net::serve::ServeOptions;
use vigil_core::net::tls::TlsServerSettings;
use vigil_core::ConfigError;

/// What the gRPC listener offers in ALPN.
pub const GRPC_ALPN: &[&[u8]] = &[b"h2"];
/// What the HTTP listener offers in ALPN.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// grpc-go's (and so otelcol's) default receive limit, 4 MiB.
pub const DEFAULT_GRPC_MAX_RECV_MIB: u64 = 4;
/// confighttp's default body limit, 20 MiB.
pub const DEFAULT_HTTP_MAX_BODY: u64 = 20 * 1024 * 1024;
/// The default bound on what one request or packet may take once decoded, as the otlp receiver's.
pub const DEFAULT_MAX_DECODED_MIB: u64 = 128;
/// The largest `max_decoded_size_mib` accepted.
pub const MAX_DECODED_MIB_CAP: u64 = 16 * 1024;

/// otelcol's UDP server defaults (jaeger's agent had the same).
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
pub const DEFAULT_MAX_PACKET_SIZE: usize = 65_000;
pub const DEFAULT_WORKERS: usize = 10;
/// Bounds beyond which a UDP setting no longer describes a sane agent: a packet cannot exceed
/// 65 535 bytes, and each worker is a task and each queued packet up to `max_packet_size` bytes.
pub const MAX_PACKET_SIZE_CAP: usize = 65_535;
pub const MAX_WORKERS_CAP: usize = 1024;
pub const MAX_QUEUE_SIZE_CAP: usize = 1_000_000;

/// `receivers::jaeger`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JaegerConfig {
    #[serde(default, deserialize_with = "present")]
    pub protocols: Option<Protocols>,
}

/// `protocols`: each is on when present, even with no keys under it.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcServer>,
    #[serde(default, deserialize_with = "present")]
    pub thrift_http: Option<HttpServer>,
    #[serde(default, deserialize_with = "present")]
    pub thrift_compact: Option<CompactUdp>,
    #[serde(default, deserialize_with = "present")]
    pub thrift_binary: Option<BinaryUdp>,
}

/// `protocols::grpc`, the keys of otelcol's `configgrpc.ServerConfig` that apply.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcServer {
    /// Default `localhost:14250`.
    pub endpoint: String,
    /// Only `tcp`.
    pub transport: String,
    pub tls: Option<TlsServerSettings>,
    /// Largest request accepted, in MiB; 0 means the default, 4.
    pub max_recv_msg_size_mib: u64,
    /// HTTP/2 streams per connection; 0 means the default, 100.
    pub max_concurrent_streams: u32,
    /// Accepted for otelcol compatibility; hyper sizes its buffers itself.
    pub read_buffer_size: Option<u64>,
    pub write_buffer_size: Option<u64>,
    /// Each request's headers (gRPC metadata) travel down the pipeline with its spans, as
    /// otelcol's `client.Info` (read by `batch`'s `metadata_keys` and `headers_setter`).
    pub include_metadata: bool,
    /// Open connections allowed (the longest-idle is closed at the cap); 0 means the default.
    /// Not an otelcol key.
    pub max_connections: usize,
    /// Most memory one request may take once decoded, in MiB; 0 means the default, 128. Not an
    /// otelcol key.
    pub max_decoded_size_mib: u64,
}

impl Default for GrpcServer {
    fn default() -> Self {
        GrpcServer {
            endpoint: "localhost:14250".into(),
            transport: "tcp".into(),
            tls: None,
            max_recv_msg_size_mib: 0,
            max_concurrent_streams: 0,
            read_buffer_size: None,
            write_buffer_size: None,
            include_metadata: false,
            max_connections: 0,
            max_decoded_size_mib: 0,
        }
    }
}

impl GrpcServer {
    pub fn max_recv_bytes(&self) -> usize {
        mib(if self.max_recv_msg_size_mib == 0 {
            DEFAULT_GRPC_MAX_RECV_MIB
        } else {
            self.max_recv_msg_size_mib
        })
    }

    pub fn serve_options(&self) -> ServeOptions {
        let mut o = ServeOptions {
            http2_only: true,
            // validate built it once already, so this cannot fail on a loaded config.
            tls: self.tls.as_ref().and_then(|t| t.server(GRPC_ALPN).ok()),
            ..ServeOptions::default()
        };
        if self.max_concurrent_streams > 0 {
            o.max_concurrent_streams = self.max_concurrent_streams;
        }
        if self.max_connections > 0 {
            o.max_connections = self.max_connections;
        }
        o
    }
}

/// An HTTP listener: `protocols::thrift_http` here, and the zipkin receiver's top level. The keys
/// of otelcol's `confighttp.ServerConfig` that apply.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpServer {
    /// Default `localhost:14268`.
    pub endpoint: String,
    pub tls: Option<TlsServerSettings>,
    /// Largest body accepted, as sent and after decompression; 0 means the default, 20 MiB.
    pub max_request_body_size: u64,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub read_header_timeout: Option<Duration>,
    #[serde(with = "vigil_core::config::opt_duration")]
    pub idle_timeout: Option<Duration>,
    /// Each request's headers (gRPC metadata) travel down the pipeline with its spans, as
    /// otelcol's `client.Info` (read by `batch`'s `metadata_keys` and `headers_setter`).
    pub include_metadata: bool,
    /// See [`GrpcServer::max_connections`].
    pub max_connections: usize,
    /// See [`GrpcServer::max_decoded_size_mib`].
    pub max_decoded_size_mib: u64,
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer::on("localhost:14268")
    }
}

impl HttpServer {
    /// The defaults, listening on `endpoint`.
    pub fn on(endpoint: &str) -> HttpServer {
        HttpServer {
            endpoint: endpoint.into(),
            tls: None,
            max_request_body_size: 0,
            read_header_timeout: None,
            idle_timeout: None,
            include_metadata: false,
            max_connections: 0,
            max_decoded_size_mib: 0,
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        let n = if self.max_request_body_size == 0 {
            DEFAULT_HTTP_MAX_BODY
        } else {
            self.max_request_body_size
        };
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    pub fn serve_options(&self) -> ServeOptions {
        let mut o = ServeOptions {
            tls: self.tls.as_ref().and_then(|t| t.server(HTTP_ALPN).ok()),
            ..ServeOptions::default()
        };
        if let Some(d) = self.read_header_timeout.filter(|d| !d.is_zero()) {
            o.read_header_timeout = d;
        }
        if let Some(d) = self.idle_timeout.filter(|d| !d.is_zero()) {
            o.idle_timeout = d;
        }
        if self.max_connections > 0 {
            o.max_connections = self.max_connections;
        }
        o
    }

    /// Checks the keys under `path` (`protocols::thrift_http`, or empty for zipkin's top level).
    pub fn check(&self, path: &str) -> Result<(), ConfigError> {
        let at = |k: &str| {
            if path.is_empty() {
                k.to_string()
            } else {
                format!("{path}::{k}")
            }
        };
        check_endpoint(&self.endpoint).map_err(|e| ConfigError::at(at("endpoint"), e))?;
        check_decoded(self.max_decoded_size_mib)
            .map_err(|e| ConfigError::at(at("max_decoded_size_mib"), e))?;
        if let Some(t) = &self.tls {
            t.server_config(HTTP_ALPN)
                .map_err(|e| ConfigError::at(at(&format!("tls::{}", e.key)), e.message))?;
        }
        Ok(())
    }
}

/// `protocols::thrift_compact` and `protocols::thrift_binary`: otelcol's UDP server keys; the two
/// differ only in their default port (6831 compact, 6832 binary).
macro_rules! udp_server {
    ($name:ident, $port:expr) => {
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub endpoint: String,
            /// Packets waiting for a worker; one arriving when the queue is full is dropped and
            /// counted (`vigil_receiver_packets_dropped`). Default 1000.
            pub queue_size: usize,
            /// Largest datagram read; a longer one is dropped and counted. Default 65 000.
            pub max_packet_size: usize,
            /// Tasks decoding packets. Default 10.
            pub workers: usize,
            /// The socket's receive buffer (SO_RCVBUF) in bytes; 0 leaves the system's default.
            pub socket_buffer_size: usize,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    endpoint: format!("localhost:{}", $port),
                    queue_size: DEFAULT_QUEUE_SIZE,
                    max_packet_size: DEFAULT_MAX_PACKET_SIZE,
                    workers: DEFAULT_WORKERS,
                    socket_buffer_size: 0,
                }
            }
        }

        impl $name {
            /// The plain settings.
            pub fn settings(&self) -> Udp {
                Udp {
                    endpoint: self.endpoint.clone(),
                    queue_size: self.queue_size,
                    max_packet_size: self.max_packet_size,
                    workers: self.workers,
                    socket_buffer_size: self.socket_buffer_size,
                }
            }
        }
    };
}

udp_server!(CompactUdp, 6831);
udp_server!(BinaryUdp, 6832);

impl Udp {
    fn check(&self, path: &str) -> Result<(), ConfigError> {
        let at = |k: &str| format!("{path}::{k}");
        check_endpoint(&self.endpoint).map_err(|e| ConfigError::at(at("endpoint"), e))?;
        let range = |k: &str, v: usize, max: usize| {
            if v == 0 || v > max {
                Err(ConfigError::at(
                    at(k),
                    format!("must be between 1 and {max}, got {v}"),
                ))
            } else {
                Ok(())
            }
        };
        range("queue_size", self.queue_size, MAX_QUEUE_SIZE_CAP)?;
        range("max_packet_size", self.max_packet_size, MAX_PACKET_SIZE_CAP)?;
        range("workers", self.workers, MAX_WORKERS_CAP)?;
        if self.socket_buffer_size > i32::MAX as usize {
            return Err(ConfigError::at(
                at("socket_buffer_size"),
                format!("must be at most {} bytes", i32::MAX),
            ));
        }
        Ok(())
    }
}

/// A UDP listener's settings, whichever protocol.
#[derive(Debug, Clone)]
pub struct Udp {
    pub endpoint: String,
    pub queue_size: usize,
    pub max_packet_size: usize,
    pub workers: usize,
    pub socket_buffer_size: usize,
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
}

/// The decoded-size limit in bytes for a `max_decoded_size_mib` value.
pub fn decoded_bytes(n: u64) -> usize {
    mib(if n == 0 { DEFAULT_MAX_DECODED_MIB } else { n })
}

fn check_decoded(n: u64) -> Result<(), String> {
    if n > MAX_DECODED_MIB_CAP {
        return Err(format!(
            "must be at most {MAX_DECODED_MIB_CAP} MiB, got {n}"
        ));
    }
    Ok(())
}

/// What `validate` checks beyond the types.
pub fn check(cfg: &JaegerConfig) -> Result<(), ConfigError> {
    let p = cfg.protocols.clone().unwrap_or_default();
    if p.grpc.is_none()
        && p.thrift_http.is_none()
        && p.thrift_compact.is_none()
        && p.thrift_binary.is_none()
    {
        return Err(ConfigError::at(
            "protocols",
            "must specify at least one protocol when using the Jaeger receiver (grpc, thrift_http, thrift_compact or thrift_binary)",
        ));
    }
    if let Some(g) = &p.grpc {
        check_endpoint(&g.endpoint).map_err(|e| ConfigError::at("protocols::grpc::endpoint", e))?;
        if g.transport != "tcp" {
            return Err(ConfigError::at(
                "protocols::grpc::transport",
                format!("transport {:?} is not supported: only tcp", g.transport),
            ));
        }
        check_decoded(g.max_decoded_size_mib)
            .map_err(|e| ConfigError::at("protocols::grpc::max_decoded_size_mib", e))?;
        if let Some(t) = &g.tls {
            t.server_config(GRPC_ALPN).map_err(|e| {
                ConfigError::at(format!("protocols::grpc::tls::{}", e.key), e.message)
            })?;
        }
    }
    if let Some(h) = &p.thrift_http {
        h.check("protocols::thrift_http")?;
    }
    if let Some(u) = &p.thrift_compact {
        u.settings().check("protocols::thrift_compact")?;
    }
    if let Some(u) = &p.thrift_binary {
        u.settings().check("protocols::thrift_binary")?;
    }
    Ok(())
}
