//! Shared by both targets: the first input byte picks the body's compression, the rest is the body,
//! and the body goes through the receiver's own `decode_body` for all three signals.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::{
    logs::v1::ExportLogsServiceRequest, metrics::v1::ExportMetricsServiceRequest,
    trace::v1::ExportTraceServiceRequest,
};
use vigil_receivers::otlp::decode::{decode_body, Compression, Encoding, ExportRequest};

/// Small enough that libFuzzer's memory limit is never the thing that stops a run.
const LIMIT: usize = 1 << 20;

fn one<R: ExportRequest>(body: &Bytes, encoding: Encoding, compression: Compression) {
    if let Ok(req) = decode_body::<R>(body.clone(), encoding, compression, LIMIT, 16 * LIMIT) {
        // What the receiver does next with a decoded request must not panic either.
        let n = req.item_count();
        let data = req.into_telemetry();
        assert_eq!(data.item_count(), n);
    }
}

pub fn run(data: &[u8], encoding: Encoding) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let compression = match selector % 4 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        _ => Compression::Deflate,
    };
    let body = Bytes::copy_from_slice(body);
    one::<ExportTraceServiceRequest>(&body, encoding, compression);
    one::<ExportMetricsServiceRequest>(&body, encoding, compression);
    one::<ExportLogsServiceRequest>(&body, encoding, compression);
}
