//! The hashing and identifier converters: `SHA1`, `SHA512`, `FNV`, `Murmur3Hash`, `Murmur3Hash128`,
//! `XXH3`, `XXH128`, `CommunityID`, `UUID` and `UUIDv7`. Each writes its digest the way otelcol's
//! converter does (hex case, byte order, integer or string), so a hash vigil computes matches the
//! one an otelcol collector next to it computes for the same input.

use super::{arg, want_str, Func};
use crate::{Call, Target, Value};
use base64::Engine as _;
use sha2::Digest as _;
use std::hash::Hasher as _;

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    let text = || want_str(f, arg(c, 0, t)?);
    Some(match f {
        Func::Sha1 => text().map(|s| Value::Str(hex::encode(sha1::Sha1::digest(s.as_bytes())))),
        Func::Sha512 => text().map(|s| Value::Str(hex::encode(sha2::Sha512::digest(s.as_bytes())))),
        // otelcol returns the empty string unhashed, and the 64-bit FNV-1a sum as a signed int.
        Func::Fnv => text().map(|s| {
            if s.is_empty() {
                return Value::Str(s);
            }
            let mut h = fnv::FnvHasher::default();
            h.write(s.as_bytes());
            Value::Int(h.finish() as i64)
        }),
        Func::Murmur3Hash => text().and_then(|s| {
            let h = murmur3::murmur3_32(&mut s.as_bytes(), 0)
                .map_err(|e| format!("Murmur3Hash: {e}"))?;
            Ok(Value::Str(hex::encode(h.to_le_bytes())))
        }),
        // The two 64-bit halves, each little-endian, low half first, as otelcol writes them.
        Func::Murmur3Hash128 => text().and_then(|s| {
            let h = murmur3::murmur3_x64_128(&mut s.as_bytes(), 0)
                .map_err(|e| format!("Murmur3Hash128: {e}"))?;
            let mut b = Vec::with_capacity(16);
            b.extend_from_slice(&(h as u64).to_le_bytes());
            b.extend_from_slice(&((h >> 64) as u64).to_le_bytes());
            Ok(Value::Str(hex::encode(b)))
        }),
        Func::Xxh3 => {
            text().map(|s| Value::Str(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(s.as_bytes()))))
        }
        Func::Xxh128 => text().map(|s| {
            Value::Str(format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(s.as_bytes())
            ))
        }),
        Func::Uuid => Ok(Value::Str(uuid::Uuid::new_v4().to_string())),
        Func::UuidV7 => Ok(Value::Str(uuid::Uuid::now_v7().to_string())),
        Func::CommunityId => community_id(c, t),
        _ => return None,
    })
}

/// The protocols `CommunityID` names, with their IP protocol numbers.
pub(super) fn protocol(name: &str) -> Option<u8> {
    Some(match name {
        "ICMP" => 1,
        "TCP" => 6,
        "UDP" => 17,
        "RSVP" => 46,
        "ICMP6" => 58,
        "SCTP" => 132,
        _ => return None,
    })
}

fn ip_bytes(what: &str, s: &str) -> Result<Vec<u8>, String> {
    match s.trim().parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(a)) => Ok(a.octets().to_vec()),
        // An IPv4-mapped IPv6 address hashes as the IPv4 address, as Go's To4 makes it.
        Ok(std::net::IpAddr::V6(a)) => Ok(match a.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => a.octets().to_vec(),
        }),
        Err(_) => Err(format!("CommunityID: invalid {what} IP {s:?}")),
    }
}

fn port(what: &str, v: Value) -> Result<u16, String> {
    match v {
        Value::Int(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Value::Int(p) => Err(format!(
            "CommunityID: {what} port must be between 1 and 65535, got {p}"
        )),
        o => Err(format!(
            "CommunityID: {what} port must be an int, got a {}",
            o.kind()
        )),
    }
}

/// Community ID v1: `1:` and the base64 SHA-1 of seed, the lower endpoint's address, the other's,
/// the protocol, a zero byte and the two ports, so both directions of a flow get one ID.
fn community_id(c: &Call, t: &dyn Target) -> Result<Value, String> {
    let f = Func::CommunityId;
    let src = ip_bytes("source", &want_str(f, arg(c, 0, t)?)?)?;
    let sport = port("source", arg(c, 1, t)?)?;
    let dst = ip_bytes("destination", &want_str(f, arg(c, 2, t)?)?)?;
    let dport = port("destination", arg(c, 3, t)?)?;
    let proto = match arg(c, 4, t)? {
        Value::Nil => 6,
        Value::Str(p) => {
            protocol(&p).ok_or_else(|| format!("CommunityID: unsupported protocol {p:?}"))?
        }
        o => {
            return Err(format!(
                "CommunityID: protocol must be a string, got a {}",
                o.kind()
            ))
        }
    };
    let seed = match arg(c, 5, t)? {
        Value::Nil => 0u16,
        Value::Int(s) if (0..=65535).contains(&s) => s as u16,
        o => {
            return Err(format!(
                "CommunityID: seed must be an int between 0 and 65535, got {}",
                o.to_text()
            ))
        }
    };
    let swap = if src.len() != dst.len() {
        src.len() > dst.len()
    } else {
        (&src, sport) > (&dst, dport)
    };
    let ((a, ap), (b, bp)) = if swap {
        ((dst, dport), (src, sport))
    } else {
        ((src, sport), (dst, dport))
    };
    let mut tuple = Vec::with_capacity(2 + a.len() + b.len() + 6);
    tuple.extend_from_slice(&seed.to_be_bytes());
    tuple.extend_from_slice(&a);
    tuple.extend_from_slice(&b);
    tuple.extend_from_slice(&[proto, 0]);
    tuple.extend_from_slice(&ap.to_be_bytes());
    tuple.extend_from_slice(&bp.to_be_bytes());
    let digest = sha1::Sha1::digest(&tuple);
    Ok(Value::Str(format!(
        "1:{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )))
}
