//! The client metadata a sending queue keeps with each request, so that `headers_setter`'s
//! `from_context` and `from_attribute` find it when the request is finally sent: its form in a
//! durable record, and what a merged batch (`sending_queue::batch`) may carry.
//!
//! Record form (all lengths u32 big-endian): the number of keys; per key, the key, the number of
//! values and each value; then a principal flag (0 or 1), and with 1 the principal's name, the
//! number of groups and each group. Every length is checked against what is left, so a damaged
//! record reads as damaged (`None`), never as a panic or a huge allocation. The peer address is
//! not stored: only processors read it, and they ran before the queue.

use std::sync::Arc;
use vigil_core::component::Principal;
use vigil_core::ClientMetadata;

fn put(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // A length over u32 cannot come from a request the receivers accepted (their body limits are
    // far lower); saturating keeps the writer total, and the reader then refuses the record.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

/// Appends `meta` in record form.
pub fn encode(meta: &ClientMetadata, out: &mut Vec<u8>) {
    let entries: Vec<(&str, &[String])> = meta.entries().collect();
    put_len(out, entries.len());
    for (key, values) in entries {
        put(out, key);
        put_len(out, values.len());
        for v in values {
            put(out, v);
        }
    }
    match meta.auth() {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            put(out, &p.name);
            put_len(out, p.groups.len());
            for g in &p.groups {
                put(out, g);
            }
        }
    }
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn len(&mut self) -> Option<usize> {
        let (n, rest) = self.rest.split_first_chunk::<4>()?;
        self.rest = rest;
        usize::try_from(u32::from_be_bytes(*n)).ok()
    }

    /// A count of things that each take at least 4 bytes: more than what is left is damage.
    fn count(&mut self) -> Option<usize> {
        let n = self.len()?;
        (n <= self.rest.len() / 4).then_some(n)
    }

    fn string(&mut self) -> Option<String> {
        let n = self.len()?;
        if n > self.rest.len() {
            return None;
        }
        let (s, rest) = self.rest.split_at(n);
        self.rest = rest;
        String::from_utf8(s.to_vec()).ok()
    }
}

/// Reads metadata in record form from the start of `bytes`; returns it and the bytes after it.
pub fn decode(bytes: &[u8]) -> Option<(ClientMetadata, &[u8])> {
    let mut r = Reader { rest: bytes };
    let mut pairs = Vec::new();
    for _ in 0..r.count()? {
        let key = r.string()?;
        for _ in 0..r.count()? {
            pairs.push((key.clone(), r.string()?));
        }
    }
    let mut meta = ClientMetadata::from_pairs(pairs);
    let (&flag, rest) = r.rest.split_first()?;
    r.rest = rest;
    match flag {
        0 => {}
        1 => {
            let name = r.string()?;
            let mut groups = Vec::new();
            for _ in 0..r.count()? {
                groups.push(r.string()?);
            }
            meta = meta.with_auth(Principal { name, groups });
        }
        _ => return None,
    }
    Some((meta, r.rest))
}

/// What a queued request carries into a `sending_queue::batch` merge: the values of
/// `partition::metadata_keys` and the authenticated principal. Requests are merged only when
/// this is equal, so a merged batch never goes out with another client's credentials; keys not
/// listed are dropped, as otelcol's queue batcher does.
pub fn partition(meta: Option<&ClientMetadata>, keys: &[String]) -> Option<Arc<ClientMetadata>> {
    let meta = meta?;
    let mut kept = ClientMetadata::from_pairs(
        keys.iter()
            .flat_map(|k| meta.get(k).iter().map(move |v| (k.as_str(), v.clone()))),
    );
    if let Some(p) = meta.auth() {
        kept = kept.with_auth(p.clone());
    }
    (!kept.is_empty()).then(|| Arc::new(kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_survives_its_record_form_and_damage_is_refused() {
        let meta = ClientMetadata::from_pairs([
            ("X-Tenant", "a"),
            ("x-tenant", "b"),
            ("authorization", "Bearer t"),
        ])
        .with_auth(Principal {
            name: "svc".into(),
            groups: vec!["ops".into()],
        });
        let mut out = Vec::new();
        encode(&meta, &mut out);
        out.extend_from_slice(b"tail");
        let (back, rest) = decode(&out).unwrap();
        assert_eq!(back, meta);
        assert_eq!(rest, b"tail");
        // Every cut of the record reads as damaged, never as a panic.
        let whole = out.len() - 4;
        for cut in 0..whole {
            assert!(decode(&out[..cut]).is_none(), "cut at {cut}");
        }
        // A count far beyond the record is refused before anything is allocated for it.
        assert!(decode(&[0xff, 0xff, 0xff, 0xff, 0]).is_none());
        let mut bad_flag = Vec::new();
        encode(&ClientMetadata::default(), &mut bad_flag);
        *bad_flag.last_mut().unwrap() = 7;
        assert!(decode(&bad_flag).is_none());
    }

    #[test]
    fn a_partition_keeps_the_listed_keys_and_the_principal() {
        let meta = ClientMetadata::from_pairs([("X-Tenant", "a"), ("user-agent", "sdk")])
            .with_auth(Principal::named("svc"));
        let p = partition(Some(&meta), &["x-tenant".into()]).unwrap();
        assert_eq!(p.get("x-tenant"), ["a"]);
        assert!(p.get("user-agent").is_empty());
        assert_eq!(p.auth().map(|p| p.name.as_str()), Some("svc"));
        let bare = ClientMetadata::from_pairs([("user-agent", "sdk")]);
        assert!(partition(Some(&bare), &["x-tenant".into()]).is_none());
        assert!(partition(None, &["x-tenant".into()]).is_none());
    }
}
