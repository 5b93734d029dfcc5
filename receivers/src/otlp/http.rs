//! OTLP/HTTP: `POST` of protobuf or JSON bodies on the signal paths (the three configurable ones and
//! otelcol's fixed `/v1development/profiles`), answered in the request's
//! encoding. Errors follow the OTLP spec and otelcol: a `google.rpc.Status` in the request's encoding
//! where the encoding is known, plain text where it is not (404, 405, 415).

use super::config::{CorsConfig, HttpConfig};
use super::decode::{decode_body, Compression, DecodeError, Encoding, ExportRequest};
use super::{Outcome, Shared, Transport};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::header::{ALLOW, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    profiles::v1development::ExportProfilesServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use vigil_core::ClientMetadata;

/// `google.rpc.Status`, the body of every OTLP/HTTP error answer. `details` is never filled, so it is
/// left out; a decoder that expects it sees an empty list.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// otelcol's path for OTLP profiles, which has no config key.
pub(crate) const PROFILES_URL_PATH: &str = "/v1development/profiles";

#[derive(Clone)]
struct HttpState {
    shared: Arc<Shared>,
    limit: usize,
    max_decoded: usize,
    /// `compression_algorithms`, lower-cased; `None` allows all.
    allowed_encodings: Option<Arc<[String]>>,
    read_timeout: Option<Duration>,
}

/// The layers that wrap every answer of the endpoint, refusals by `auth` included:
/// `response_headers` and `keep_alives_enabled: false`.
pub(crate) fn answer_layers(router: Router, cfg: &HttpConfig) -> Router {
    let mut headers = http::HeaderMap::new();
    for (k, v) in &cfg.response_headers {
        // Checked by validate; a pair that does not parse is left out rather than failing start.
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    if !cfg.keep_alives_enabled {
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if headers.is_empty() {
        return router;
    }
    router.layer(axum::middleware::map_response(move |mut resp: Response| {
        let headers = headers.clone();
        async move {
            for (k, v) in &headers {
                resp.headers_mut().insert(k.clone(), v.clone());
            }
            resp
        }
    }))
}

/// The router for one receiver's HTTP endpoint.
pub(crate) fn router(shared: Arc<Shared>, cfg: &HttpConfig) -> Router {
    let state = HttpState {
        shared,
        limit: cfg.max_body_bytes(),
        max_decoded: cfg.max_decoded_bytes(),
        allowed_encodings: cfg.compression_algorithms.as_ref().map(|list| {
            list.iter()
                .map(|a| a.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .into()
        }),
        read_timeout: cfg.read_timeout.filter(|t| !t.is_zero()),
    };
    let router = Router::new()
        .route(
            &cfg.traces_url_path,
            any(handle::<ExportTraceServiceRequest>),
        )
        .route(
            &cfg.metrics_url_path,
            any(handle::<ExportMetricsServiceRequest>),
        )
        .route(&cfg.logs_url_path, any(handle::<ExportLogsServiceRequest>))
        // Not configurable in otelcol either.
        .route(
            PROFILES_URL_PATH,
            any(handle::<ExportProfilesServiceRequest>),
        )
        .fallback(not_found)
        .with_state(state);
    match cfg.cors.as_ref().and_then(cors_layer) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// 401 for a request the authenticator refused: a `google.rpc.Status` in the request's encoding
/// when it is known, plain text otherwise.
pub(crate) fn unauthorized(headers: &http::HeaderMap, reason: String) -> Response {
    refusal(headers, StatusCode::UNAUTHORIZED, reason)
}

/// 403 for a principal that has no role, in the same forms as [`unauthorized`].
pub(crate) fn forbidden(headers: &http::HeaderMap, reason: String) -> Response {
    refusal(headers, StatusCode::FORBIDDEN, reason)
}

fn refusal(headers: &http::HeaderMap, status: StatusCode, reason: String) -> Response {
    let encoding = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type);
    match encoding {
        Some(e) => status_error(e, status, reason),
        None => plain(status, reason),
    }
}

async fn not_found(req: Request) -> Response {
    plain(
        StatusCode::NOT_FOUND,
        format!("404 page not found: {}", req.uri().path()),
    )
}

fn plain(status: StatusCode, message: String) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        message,
    )
        .into_response()
}

/// An error answer as a `google.rpc.Status` in the request's encoding.
fn status_error(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let code = grpc_code_for(status);
    let body = match encoding {
        Encoding::Protobuf => RpcStatus { code, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

/// The gRPC code that goes with an HTTP status, as otelcol pairs them.
fn grpc_code_for(status: StatusCode) -> i32 {
    let code = match status {
        StatusCode::BAD_REQUEST => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::NOT_FOUND | StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::Unimplemented,
        StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    };
    code as i32
}

async fn handle<R: ExportRequest>(State(st): State<HttpState>, req: Request) -> Response {
    if req.method() != Method::POST {
        let mut resp = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "405 method not allowed: {}, supported: [POST]",
                req.method()
            ),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let Some(encoding) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type)
    else {
        let got = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| "none".into());
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "415 unsupported media type {got:?}, supported: [application/json, application/x-protobuf]"
            ),
        );
    };
    if st.shared.next.get(R::SIGNAL).is_none() {
        return status_error(
            encoding,
            StatusCode::NOT_FOUND,
            format!("receiver {} has no {} pipeline", st.shared.id, R::SIGNAL),
        );
    }
    if let Some(allowed) = &st.allowed_encodings {
        let used = req
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !allowed.contains(&used) {
            return status_error(
                encoding,
                StatusCode::BAD_REQUEST,
                format!("unsupported Content-Encoding: {used:?}"),
            );
        }
    }
    let compression = match req.headers().get(CONTENT_ENCODING) {
        None => Ok(Compression::None),
        Some(v) => match v.to_str() {
            Ok(s) => Compression::from_header(Some(s)),
            Err(_) => Err(DecodeError::UnsupportedCompression(
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )),
        },
    };
    let compression = match compression {
        Ok(c) => c,
        Err(e) => return decode_error(encoding, &e),
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.limit as u64) {
        st.shared.too_large(Transport::Http);
        return decode_error(encoding, &DecodeError::TooLarge { limit: st.limit });
    }
    let grant = req.extensions().get::<super::roles::Grant>().cloned();
    let meta = ClientMetadata::of_request(
        req.extensions().get::<ClientMetadata>(),
        req.extensions().get::<vigil_core::net::PeerAddr>(),
    );
    let reading = read_body(req.into_body(), st.limit, declared);
    let read = match st.read_timeout {
        None => reading.await,
        Some(t) => match tokio::time::timeout(t, reading).await {
            Ok(r) => r,
            Err(_) => {
                return status_error(
                    encoding,
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the request body took longer than read_timeout ({t:?})"),
                )
            }
        },
    };
    let body = match read {
        Ok(b) => b,
        Err(ReadError::TooLarge) => {
            st.shared.too_large(Transport::Http);
            return decode_error(encoding, &DecodeError::TooLarge { limit: st.limit });
        }
        Err(ReadError::Io(e)) => {
            return status_error(
                encoding,
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {e}"),
            )
        }
    };
    let request = match decode_body::<R>(body, encoding, compression, st.limit, st.max_decoded) {
        Ok(r) => r,
        Err(e) => {
            if matches!(
                e,
                DecodeError::TooLarge { .. } | DecodeError::DecodedTooLarge { .. }
            ) {
                st.shared.too_large(Transport::Http);
            }
            return decode_error(encoding, &e);
        }
    };
    match st
        .shared
        .export(Transport::Http, request, grant.as_ref(), meta)
        .await
    {
        Outcome::Accepted => success::<R>(encoding, None),
        Outcome::Partial { rejected, message } => success::<R>(encoding, Some((rejected, message))),
        Outcome::Retryable {
            message,
            retry_after,
        } => {
            let mut resp = status_error(encoding, StatusCode::SERVICE_UNAVAILABLE, message);
            resp.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(retry_after)),
            );
            resp
        }
        Outcome::Rejected { message } => status_error(encoding, StatusCode::BAD_REQUEST, message),
        Outcome::NoPipeline { message } => status_error(encoding, StatusCode::NOT_FOUND, message),
        Outcome::Forbidden { message } => status_error(encoding, StatusCode::FORBIDDEN, message),
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1. Without a hint from the pipeline we
/// still send 1s, so that clients that only back off when told to do so.
fn retry_after_secs(hint: Option<Duration>) -> u64 {
    let Some(d) = hint else { return 1 };
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

fn decode_error(encoding: Encoding, e: &DecodeError) -> Response {
    let status = match e {
        DecodeError::TooLarge { .. } | DecodeError::DecodedTooLarge { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        DecodeError::UnsupportedCompression(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        DecodeError::Decompress { .. } | DecodeError::Malformed { .. } => StatusCode::BAD_REQUEST,
    };
    status_error(encoding, status, e.to_string())
}

fn success<R: ExportRequest>(encoding: Encoding, partial: Option<(usize, String)>) -> Response {
    let body = match encoding {
        Encoding::Protobuf => {
            let partial = partial.map(|(n, m)| (i64::try_from(n).unwrap_or(i64::MAX), m));
            R::response(partial).encode_to_vec()
        }
        // Written by hand rather than through serde, to emit proto3 JSON exactly: int64 as a string,
        // and `{}` rather than `{"partialSuccess":null}` on full success.
        Encoding::Json => match partial {
            None => b"{}".to_vec(),
            Some((rejected, message)) => {
                let mut inner = serde_json::Map::new();
                inner.insert(
                    R::JSON_REJECTED_KEY.to_string(),
                    serde_json::Value::String(rejected.to_string()),
                );
                inner.insert("errorMessage".into(), serde_json::Value::String(message));
                serde_json::json!({ "partialSuccess": inner })
                    .to_string()
                    .into_bytes()
            }
        },
    };
    (
        StatusCode::OK,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}

enum ReadError {
    TooLarge,
    Io(axum::Error),
}

/// Reads the body up to `limit` bytes. A body sent in one chunk is passed on without a copy.
async fn read_body(body: Body, limit: usize, declared: Option<u64>) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(ReadError::Io)?;
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(ReadError::TooLarge);
        }
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let hint = declared
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0)
                    .min(limit);
                let mut b = BytesMut::with_capacity(hint.max(f.len() + chunk.len()));
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                first = None;
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match (first, buf) {
        (_, Some(b)) => b.freeze(),
        (Some(f), None) => f,
        (None, None) => Bytes::new(),
    })
}

/// The headers an OTLP exporter in a browser sends, always allowed once CORS is on.
const DEFAULT_CORS_HEADERS: [&str; 5] = [
    "accept",
    "content-type",
    "content-encoding",
    "x-requested-with",
    "origin",
];

fn cors_layer(cfg: &CorsConfig) -> Option<CorsLayer> {
    if cfg.allowed_origins.is_empty() {
        return None;
    }
    let origin = if cfg.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let patterns = cfg.allowed_origins.clone();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|o| patterns.iter().any(|p| origin_matches(p, o)))
        })
    };
    let headers = if cfg.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::any()
    } else {
        // `validate` has checked the configured names, so a failed parse here cannot happen; skipping
        // is still safer than a panic.
        let names = DEFAULT_CORS_HEADERS
            .iter()
            .map(|h| h.to_string())
            .chain(cfg.allowed_headers.iter().cloned())
            .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok());
        AllowHeaders::list(names)
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::POST])
        .allow_headers(headers);
    if cfg.max_age > 0 {
        layer = layer.max_age(Duration::from_secs(cfg.max_age));
    }
    Some(layer)
}

/// Matches an origin against an allowed pattern with at most one `*`, as otelcol's CORS does:
/// `https://*.example.com` takes `https://a.example.com` but not `https://example.com`.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(origin),
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin
                    .get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                && origin
                    .get(origin.len() - suffix.len()..)
                    .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_origins() {
        assert!(origin_matches("https://*.test.com", "https://www.test.com"));
        assert!(!origin_matches("https://*.test.com", "https://test.com"));
        assert!(!origin_matches("https://*.test.com", "https://wwwtest.com"));
        assert!(origin_matches("https://test.com", "https://TEST.com"));
        assert!(!origin_matches("https://*.test.com", "http://a.test.com"));
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(None), 1);
        assert_eq!(retry_after_secs(Some(Duration::from_millis(1500))), 2);
        assert_eq!(retry_after_secs(Some(Duration::ZERO)), 1);
        assert_eq!(retry_after_secs(Some(Duration::from_secs(30))), 30);
    }
}
