//! How one delivery attempt ended, and the OTLP specification's rules for telling a failure worth
//! retrying from one that no retry can fix: HTTP status codes with `Retry-After`, and gRPC codes with
//! `google.rpc.RetryInfo`. Exporters map their transport's answer through here so that every
//! exporter retries the same things.

use std::fmt;
use std::time::{Duration, SystemTime};

/// A failed attempt to deliver one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The backend is down, overloaded or throttling: the same request may succeed later.
    Retryable {
        reason: String,
        /// How long the backend asked us to wait (`Retry-After`, gRPC `RetryInfo`).
        retry_after: Option<Duration>,
    },
    /// The backend refused the data itself; sending it again would fail again.
    Permanent { reason: String },
}

impl SendError {
    /// A retryable failure with no delay requested by the backend.
    pub fn retryable(reason: impl Into<String>) -> Self {
        SendError::Retryable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A failure that must not be retried.
    pub fn permanent(reason: impl Into<String>) -> Self {
        SendError::Permanent {
            reason: reason.into(),
        }
    }

    /// The human-readable cause.
    pub fn reason(&self) -> &str {
        match self {
            SendError::Retryable { reason, .. } | SendError::Permanent { reason } => reason,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, SendError::Retryable { .. })
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SendError {}

/// A backend took the request. `rejected` items of it were refused anyway (OTLP partial success), with
/// the backend's `message`; such a refusal is final and never retried.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub rejected: u64,
    pub message: String,
}

/// HTTP statuses the OTLP specification calls retryable: 429, 502, 503 and 504.
pub fn http_status_is_retryable(status: http::StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Parses a `Retry-After` value: delay seconds (`"2"`) or an HTTP-date, which is turned into the time
/// left from `now` (zero if the date has passed). Anything else is ignored, as a malformed hint must
/// not turn a retryable answer into an error.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads `Retry-After` from response headers.
pub fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(v, SystemTime::now())
}

/// The canonical upper-case name of a gRPC code, as the specification and logs spell it.
pub fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Classifies a failed gRPC call whose answer may not have come from a gRPC server at all.
/// `from_server` says whether the answer carried a `grpc-status` (in its headers or trailers).
///
/// tonic reports a reset connection, a broken HTTP/2 stream or an HTTP/1.1 answer as UNKNOWN or
/// INTERNAL, the same codes a server uses for its own bugs. Without a `grpc-status` no server gave
/// that verdict: the call failed on the way, which is retryable as any failed connection is (grpc-go
/// reports such failures as UNAVAILABLE). A server's own UNKNOWN or INTERNAL stays permanent.
pub fn classify_grpc_call(status: &tonic::Status, from_server: bool) -> SendError {
    let transport =
        !from_server && matches!(status.code(), tonic::Code::Unknown | tonic::Code::Internal);
    if !transport {
        return classify_grpc(status);
    }
    let mut reason = format!(
        "gRPC {} without a grpc-status (a transport failure)",
        grpc_code_name(status.code())
    );
    if !status.message().is_empty() {
        reason.push_str(": ");
        reason.push_str(status.message());
    }
    // tonic's message is often just "transport error"; the cause is further down the chain.
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        reason.push_str(": ");
        reason.push_str(&e.to_string());
        source = e.source();
    }
    SendError::retryable(reason)
}

/// Classifies a gRPC status a server sent. CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE and
/// DATA_LOSS are retryable; RESOURCE_EXHAUSTED is retryable only when the server attached a
/// `google.rpc.RetryInfo` (a server that is out of quota for good sends none); everything else is
/// permanent.
pub fn classify_grpc(status: &tonic::Status) -> SendError {
    use tonic::Code;
    let code = status.code();
    let reason = if status.message().is_empty() {
        format!("gRPC {}", grpc_code_name(code))
    } else {
        format!("gRPC {}: {}", grpc_code_name(code), status.message())
    };
    let retry_info = rpc::retry_delay(status.details());
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => SendError::Retryable {
            reason,
            retry_after: retry_info.flatten(),
        },
        Code::ResourceExhausted => match retry_info {
            Some(delay) => SendError::Retryable {
                reason,
                retry_after: delay,
            },
            None => SendError::Permanent { reason },
        },
        _ => SendError::Permanent { reason },
    }
}

/// The message of a `google.rpc.Status` error body, which OTLP/HTTP servers send with a non-2xx
/// answer, in protobuf or JSON to match the request. Falls back to the start of the body as text.
pub fn http_error_message(body: &[u8], json: bool) -> String {
    if body.is_empty() {
        return String::new();
    }
    let parsed = if json {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
    } else {
        <rpc::Status as prost::Message>::decode(body)
            .ok()
            .map(|s| s.message)
    };
    match parsed {
        Some(m) if !m.is_empty() => m,
        _ => {
            // A proxy's HTML page or a plain-text answer: keep a short, printable prefix.
            let text = String::from_utf8_lossy(&body[..body.len().min(256)]);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        }
    }
}

/// The few `google.rpc` messages needed to read error details, declared here rather than pulling in a
/// crate of well-known types for four fields.
pub mod rpc {
    use bytes::Bytes;
    use std::time::Duration;

    /// The `type_url` suffix of `google.rpc.RetryInfo`.
    pub const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

    /// `google.rpc.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
        #[prost(message, repeated, tag = "3")]
        pub details: Vec<Any>,
    }

    /// `google.protobuf.Any`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// `google.rpc.RetryInfo`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        pub retry_delay: Option<ProtoDuration>,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// Looks for a `RetryInfo` in the encoded `google.rpc.Status` of a gRPC error. The outer `None`
    /// means there is none; `Some(None)` means there is one without a usable delay.
    pub fn retry_delay(details: &[u8]) -> Option<Option<Duration>> {
        if details.is_empty() {
            return None;
        }
        let status = <Status as prost::Message>::decode(details).ok()?;
        let any = status
            .details
            .iter()
            .find(|a| a.type_url.ends_with("google.rpc.RetryInfo"))?;
        let info = <RetryInfo as prost::Message>::decode(any.value.as_slice()).ok();
        Some(info.and_then(|i| i.retry_delay).and_then(|d| {
            if d.seconds < 0 || d.nanos < 0 {
                return None;
            }
            Some(Duration::new(d.seconds as u64, d.nanos as u32))
        }))
    }

    /// Encodes a `google.rpc.Status` carrying a `RetryInfo`, as a throttling server sends it. Used by
    /// tests and by in-process servers that want to ask clients to slow down.
    pub fn status_with_retry_info(code: i32, message: &str, delay: Duration) -> Bytes {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: delay.as_secs() as i64,
                nanos: delay.subsec_nanos() as i32,
            }),
        };
        let status = Status {
            code,
            message: message.to_string(),
            details: vec![Any {
                type_url: RETRY_INFO_TYPE.to_string(),
                value: prost::Message::encode_to_vec(&info),
            }],
        };
        Bytes::from(prost::Message::encode_to_vec(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn http_codes_follow_the_spec() {
        for c in [429, 502, 503, 504] {
            assert!(http_status_is_retryable(
                http::StatusCode::from_u16(c).unwrap()
            ));
        }
        for c in [400, 401, 403, 404, 413, 500, 501] {
            assert!(
                !http_status_is_retryable(http::StatusCode::from_u16(c).unwrap()),
                "{c}"
            );
        }
    }

    #[test]
    fn grpc_codes_follow_the_spec() {
        use tonic::{Code, Status};
        for code in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(
                classify_grpc(&Status::new(code, "x")).is_retryable(),
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unknown,
            Code::Internal,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::ResourceExhausted,
        ] {
            assert!(
                !classify_grpc(&Status::new(code, "x")).is_retryable(),
                "{code:?}"
            );
        }
        let details = rpc::status_with_retry_info(8, "slow down", Duration::from_millis(1500));
        let s = Status::with_details(Code::ResourceExhausted, "slow down", details);
        assert_eq!(
            classify_grpc(&s),
            SendError::Retryable {
                reason: "gRPC RESOURCE_EXHAUSTED: slow down".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
    }

    #[test]
    fn unknown_and_internal_without_a_server_status_are_transport_failures() {
        use tonic::{Code, Status};
        for code in [Code::Unknown, Code::Internal] {
            let s = Status::new(code, "h2 protocol error");
            assert!(classify_grpc_call(&s, false).is_retryable(), "{code:?}");
            assert!(!classify_grpc_call(&s, true).is_retryable(), "{code:?}");
        }
        // Codes tonic derives from an HTTP answer (401, 403, 404) keep their meaning.
        for code in [
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(!classify_grpc_call(&Status::new(code, "x"), false).is_retryable());
        }
        assert!(classify_grpc_call(&Status::unavailable("x"), true).is_retryable());
    }

    #[test]
    fn error_bodies() {
        let status = rpc::Status {
            code: 3,
            message: "bad span".into(),
            details: vec![],
        };
        let proto = prost::Message::encode_to_vec(&status);
        assert_eq!(http_error_message(&proto, false), "bad span");
        assert_eq!(
            http_error_message(br#"{"code":3,"message":"bad json"}"#, true),
            "bad json"
        );
        assert_eq!(
            http_error_message(b"<html> oops\n</html>", true),
            "<html> oops </html>"
        );
    }
}
