//! Request body compression, both ways: what a receiver reads from `Content-Encoding` and
//! decompresses under a size limit, and what an exporter's `compression` key asks it to send.

use super::decode::DecodeError;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use std::io::{Read, Write};

/// A body's compression. As an exporter's `compression` key it defaults to `gzip`, as in otelcol,
/// and takes `gzip`, `zstd` or `none` (an empty string also means none); a receiver also reads
/// `deflate` from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    /// HTTP's `deflate`, which is zlib-wrapped (RFC 9110 §8.4.1.2).
    Deflate,
    Zstd,
}

impl Compression {
    /// Reads a `Content-Encoding` value. Absent, empty and `identity` mean no compression.
    pub fn from_header(value: Option<&str>) -> Result<Compression, DecodeError> {
        let v = value.unwrap_or("").trim();
        if v.is_empty() || v.eq_ignore_ascii_case("identity") {
            Ok(Compression::None)
        } else if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            Ok(Compression::Gzip)
        } else if v.eq_ignore_ascii_case("deflate") {
            Ok(Compression::Deflate)
        } else if v.eq_ignore_ascii_case("zstd") {
            Ok(Compression::Zstd)
        } else {
            Err(DecodeError::UnsupportedCompression(v.to_string()))
        }
    }

    /// The name in messages; `identity` when uncompressed.
    pub fn name(self) -> &'static str {
        self.encoding_name().unwrap_or("identity")
    }

    /// The `Content-Encoding` / `grpc-encoding` name, or `None` when uncompressed.
    pub fn encoding_name(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Deflate => Some("deflate"),
            Compression::Zstd => Some("zstd"),
        }
    }

    /// Compresses a whole request body. Fast levels: an agent spends its CPU budget on throughput,
    /// and the ratio gained by higher levels is small on OTLP.
    pub fn compress(self, body: Vec<u8>) -> std::io::Result<Vec<u8>> {
        self.compress_level(body, 0)
    }

    /// Checks a `compression_params::level` as otelcol's configcompression does: gzip takes -1
    /// (the codec's default), -2 (Huffman only), 0 and 1..=9; zstd takes any level; no
    /// compression takes only 0.
    pub fn check_level(self, level: i32) -> Result<(), String> {
        let ok = match self {
            Compression::Gzip | Compression::Deflate => (-2..=9).contains(&level),
            Compression::Zstd => true,
            Compression::None => level == 0,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "unsupported level {level} for compression {:?}: gzip takes -2..=9, zstd any, none only 0",
                self.encoding_name().unwrap_or("none")
            ))
        }
    }

    /// [`compress`](Self::compress) at a `compression_params::level`. 0 (unset) is vigil's fast
    /// level; gzip's -1 is zlib's default (6) and -2 (Huffman only, which flate2 does not offer)
    /// is its fastest level; zstd's level is clamped to the range the library takes.
    pub fn compress_level(self, body: Vec<u8>, level: i32) -> std::io::Result<Vec<u8>> {
        let flate = match level {
            0 | -2 => flate2::Compression::fast(),
            -1 => flate2::Compression::default(),
            l => flate2::Compression::new(l.clamp(1, 9) as u32),
        };
        match self {
            Compression::None => Ok(body),
            Compression::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate);
                enc.write_all(&body)?;
                enc.finish()
            }
            Compression::Deflate => {
                let mut enc =
                    flate2::write::ZlibEncoder::new(Vec::with_capacity(body.len() / 4), flate);
                enc.write_all(&body)?;
                enc.finish()
            }
            Compression::Zstd => {
                let range = zstd::compression_level_range();
                let l = if level == 0 { 1 } else { level };
                zstd::bulk::compress(&body, l.clamp(*range.start(), *range.end()))
            }
        }
    }
}

/// The exporters' `compression` key. `deflate` is not offered there: the gRPC client does not
/// speak it, and otelcol's HTTP default is gzip.
impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "none" | "" => Ok(Compression::None),
            other => Err(serde::de::Error::custom(format!(
                "unsupported compression {other:?}: use gzip, zstd or none"
            ))),
        }
    }
}

/// Shown as the config spells it, so the reference lists `gzip`, `zstd` or `none`.
impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.encoding_name().unwrap_or("none"))
    }
}

/// Decompresses `body`, refusing output larger than `limit` bytes so that a small compressed body
/// cannot expand into an out-of-memory ("zip bomb"). An uncompressed body is returned as is.
pub fn decompress(
    body: Bytes,
    compression: Compression,
    limit: usize,
) -> Result<Bytes, DecodeError> {
    if body.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    let failed = |reason: String| DecodeError::Decompress {
        compression: compression.name(),
        reason,
    };
    let reader: Box<dyn Read + '_> = match compression {
        Compression::None => return Ok(body),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
        Compression::Deflate => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(&body[..]) {
            Ok(d) => Box::new(d),
            Err(e) => return Err(failed(e.to_string())),
        },
    };
    // Start from a guess of the expanded size, bounded by the limit, to avoid regrowing the buffer
    // several times for a typical 5-10x compression ratio.
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let read_limit = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(read_limit).read_to_end(&mut out).map_err(|e| {
        failed(match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "unexpected end of stream (truncated?)".into(),
            _ => e.to_string(),
        })
    })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_levels_are_checked_applied_and_round_trip() {
        let body: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("span-{} ", i % 97).into_bytes())
            .collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let fast = c.compress_level(body.clone(), 1).unwrap();
            let best = c.compress_level(body.clone(), 9).unwrap();
            assert!(
                best.len() < fast.len(),
                "{c:?}: {} vs {}",
                best.len(),
                fast.len()
            );
            for (level, z) in [(1, fast), (9, best)] {
                let back = decompress(Bytes::from(z), c, 1 << 20).unwrap();
                assert_eq!(back.as_ref(), &body[..], "{c:?} level {level}");
            }
        }
        assert_eq!(
            Compression::Gzip.compress_level(body.clone(), 0).unwrap(),
            Compression::Gzip.compress(body.clone()).unwrap()
        );
        assert!(Compression::Gzip.check_level(-2).is_ok());
        assert!(Compression::Gzip.check_level(10).is_err());
        assert!(Compression::Zstd.check_level(22).is_ok());
        assert!(Compression::None.check_level(1).is_err());
        assert!(Compression::None.check_level(0).is_ok());
    }

    #[test]
    fn every_compression_round_trips_under_its_limit() {
        let body = b"resource spans ".repeat(1000);
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Deflate,
            Compression::Zstd,
        ] {
            let packed = c.compress(body.clone()).unwrap();
            let back = decompress(Bytes::from(packed.clone()), c, body.len()).unwrap();
            assert_eq!(back, body, "{c:?}");
            if c != Compression::None {
                assert_eq!(
                    decompress(Bytes::from(packed), c, body.len() - 1),
                    Err(DecodeError::TooLarge {
                        limit: body.len() - 1
                    }),
                    "{c:?}"
                );
            }
        }
    }
}
