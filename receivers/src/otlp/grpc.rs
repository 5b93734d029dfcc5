//! OTLP/gRPC: one tonic service per signal that has a pipeline, decoding protobuf straight into the
//! prost request types. Our own codec and service wrapper (instead of the generated server) exist to
//! give the status codes the OTLP spec asks for: a malformed message is `INVALID_ARGUMENT` (tonic's
//! prost codec says `INTERNAL`), and an oversize one is `RESOURCE_EXHAUSTED` as in grpc-go (tonic says
//! `OUT_OF_RANGE`, which OTLP clients would retry forever).

use super::decode::{check_decoded_size, Encoding, ExportRequest};
use super::{Outcome, Shared, Transport};
use bytes::Buf;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, Service, StdError};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};
use vigil_core::ClientMetadata;

/// Encodes the export response and decodes the export request with prost, refusing a request whose
/// decoded form would pass `max_decoded` bytes before decoding it.
struct ExportCodec<R> {
    max_decoded: usize,
    _request: PhantomData<fn() -> R>,
}

impl<R: ExportRequest> Codec for ExportCodec<R> {
    type Encode = R::Response;
    type Decode = R;
    type Encoder = ResponseEncoder<R>;
    type Decoder = RequestDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        ResponseEncoder(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder {
            max_decoded: self.max_decoded,
            _request: PhantomData,
        }
    }
}

struct ResponseEncoder<R>(PhantomData<fn() -> R>);

impl<R: ExportRequest> Encoder for ResponseEncoder<R> {
    type Item = R::Response;
    type Error = Status;

    fn encode(&mut self, item: R::Response, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst)
            .map_err(|e| Status::internal(format!("failed to encode the response: {e}")))
    }
}

struct RequestDecoder<R> {
    max_decoded: usize,
    _request: PhantomData<fn() -> R>,
}

impl<R: ExportRequest> Decoder for RequestDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        // tonic hands over the whole (decompressed) message as one contiguous chunk; should that
        // ever change, the estimate is taken over what is contiguous and prost reads the rest.
        check_decoded_size::<R>(src.chunk(), Encoding::Protobuf, self.max_decoded)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        R::decode(src).map(Some).map_err(|e| {
            Status::invalid_argument(format!(
                "failed to decode protobuf {}: {e}",
                R::MESSAGE_TYPE
            ))
        })
    }
}

/// The `Export` method of one signal's service.
pub(crate) struct ExportService<R> {
    shared: Arc<Shared>,
    max_decoding: usize,
    max_decoded: usize,
    _request: PhantomData<fn() -> R>,
}

impl<R> Clone for ExportService<R> {
    fn clone(&self) -> Self {
        ExportService {
            shared: Arc::clone(&self.shared),
            max_decoding: self.max_decoding,
            max_decoded: self.max_decoded,
            _request: PhantomData,
        }
    }
}

impl<R: ExportRequest> ExportService<R> {
    pub(crate) fn new(shared: Arc<Shared>, max_decoding: usize, max_decoded: usize) -> Self {
        ExportService {
            shared,
            max_decoding,
            max_decoded,
            _request: PhantomData,
        }
    }
}

impl<R: ExportRequest> NamedService for ExportService<R> {
    const NAME: &'static str = R::GRPC_SERVICE;
}

struct Unary<R> {
    shared: Arc<Shared>,
    _request: PhantomData<fn() -> R>,
}

impl<R: ExportRequest> UnaryService<R> for Unary<R> {
    type Response = R::Response;
    type Future = BoxFuture<tonic::Response<R::Response>, Status>;

    fn call(&mut self, request: tonic::Request<R>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let grant = request.extensions().get::<super::roles::Grant>().cloned();
            let meta = ClientMetadata::of_request(
                request.extensions().get::<ClientMetadata>(),
                request.extensions().get::<vigil_core::net::PeerAddr>(),
            );
            match shared
                .export(Transport::Grpc, request.into_inner(), grant.as_ref(), meta)
                .await
            {
                Outcome::Accepted => Ok(tonic::Response::new(R::response(None))),
                Outcome::Partial { rejected, message } => Ok(tonic::Response::new(R::response(
                    Some((i64::try_from(rejected).unwrap_or(i64::MAX), message)),
                ))),
                // UNAVAILABLE, not RESOURCE_EXHAUSTED: OTLP clients retry the latter only when it
                // carries RetryInfo, and backpressure must always be retried.
                Outcome::Retryable { message, .. } => Err(Status::unavailable(message)),
                Outcome::Rejected { message } => Err(Status::invalid_argument(message)),
                Outcome::NoPipeline { message } => Err(Status::unimplemented(message)),
                Outcome::Forbidden { message } => Err(Status::permission_denied(message)),
            }
        })
    }
}

impl<R, B> Service<http::Request<B>> for ExportService<R>
where
    R: ExportRequest,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if req.uri().path() != R::GRPC_PATH {
                return Ok(Status::unimplemented(format!(
                    "unknown method {} for service {}",
                    req.uri().path(),
                    R::GRPC_SERVICE
                ))
                .into_http());
            }
            let codec = ExportCodec::<R> {
                max_decoded: this.max_decoded,
                _request: PhantomData,
            };
            let mut grpc = tonic::server::Grpc::new(codec)
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
                .max_decoding_message_size(this.max_decoding);
            let method = Unary::<R> {
                shared: Arc::clone(&this.shared),
                _request: PhantomData,
            };
            let response = fix_transport_status(grpc.unary(method, req).await);
            // Only the size limits answer RESOURCE_EXHAUSTED: backpressure is UNAVAILABLE.
            if Status::from_header_map(response.headers())
                .is_some_and(|s| s.code() == Code::ResourceExhausted)
            {
                this.shared.too_large(Transport::Grpc);
            }
            Ok(response)
        })
    }
}

/// Rewrites the two codes tonic's request decoding gives that OTLP clients would misread. Our handler
/// never answers `OUT_OF_RANGE` or `INTERNAL`, so either one came from decoding the request. Errors
/// are trailers-only responses, so the status sits in the headers.
fn fix_transport_status(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let fixed = match status.code() {
        Code::OutOfRange => Status::resource_exhausted(status.message()),
        Code::Internal => Status::invalid_argument(status.message()),
        _ => return response,
    };
    fixed.into_http()
}
