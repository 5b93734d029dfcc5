//! A request that goes out as several HTTP posts: the Splunk exporters cut one batch into bodies
//! by size (`splunk_hec`'s `max_content_length_*`) or by destination (`signalfx`'s datapoints,
//! OTLP histograms and events, and one group per passed-through access token). Parts already
//! accepted are remembered, so a retry after a failed part resends only what is left.

use super::queue::Persist;
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One post: where it goes (an exporter-defined route number), the token that overrides the
/// configured one, and the body as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub route: u8,
    pub token: Option<String>,
    pub body: Bytes,
}

/// The parts of one batch, sent in order, and the items dropped while preparing it (reported
/// back as rejected, so the counters say what never left).
#[derive(Debug, Default)]
pub struct Parts {
    pub parts: Vec<Part>,
    pub dropped: u64,
    /// Why items were dropped, for the log line that reports them.
    pub dropped_reason: String,
    /// How many leading parts the backend has accepted; a retry starts after them.
    done: AtomicUsize,
}

impl Parts {
    pub fn new(parts: Vec<Part>, dropped: u64, dropped_reason: String) -> Self {
        Parts {
            parts,
            dropped,
            dropped_reason,
            done: AtomicUsize::new(0),
        }
    }

    /// The parts not yet accepted, with their index.
    pub fn pending(&self) -> impl Iterator<Item = (usize, &Part)> {
        let done = self.done.load(Ordering::Acquire);
        self.parts.iter().enumerate().skip(done)
    }

    /// Records that part `i` (and every one before it) was accepted.
    pub fn accepted(&self, i: usize) {
        self.done.fetch_max(i + 1, Ordering::AcqRel);
    }
}

/// Appends `b` with its length first (8 bytes, big-endian): the framing every persisted request
/// of this crate uses, so a durable queue can hand the bytes back to any of them.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

/// Reads what `put_bytes` wrote, or `None` when the input is cut short.
pub(crate) fn take_bytes<'a>(input: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (n, rest) = input.split_first_chunk::<8>()?;
    let n = usize::try_from(u64::from_be_bytes(*n)).ok()?;
    if rest.len() < n {
        return None;
    }
    let (b, rest) = rest.split_at(n);
    *input = rest;
    Some(b)
}

/// Reads an 8-byte big-endian count, or `None` when the input is cut short.
pub(crate) fn take_u64(input: &mut &[u8]) -> Option<u64> {
    let (n, rest) = input.split_first_chunk::<8>()?;
    *input = rest;
    Some(u64::from_be_bytes(*n))
}

/// Stored as: dropped count, reason, done count, part count, then each part's route, token
/// flag and token, and body. Lengths are 8-byte big-endian.
impl Persist for Parts {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.dropped.to_be_bytes());
        put_bytes(&mut out, self.dropped_reason.as_bytes());
        out.extend_from_slice(&(self.done.load(Ordering::Acquire) as u64).to_be_bytes());
        out.extend_from_slice(&(self.parts.len() as u64).to_be_bytes());
        for p in &self.parts {
            out.push(p.route);
            match &p.token {
                Some(t) => {
                    out.push(1);
                    put_bytes(&mut out, t.as_bytes());
                }
                None => out.push(0),
            }
            put_bytes(&mut out, &p.body);
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut input = bytes;
        let (dropped, rest) = input.split_first_chunk::<8>()?;
        input = rest;
        let reason = String::from_utf8(take_bytes(&mut input)?.to_vec()).ok()?;
        let (done, rest) = input.split_first_chunk::<8>()?;
        input = rest;
        let (n, rest) = input.split_first_chunk::<8>()?;
        input = rest;
        let n = usize::try_from(u64::from_be_bytes(*n)).ok()?;
        let mut parts = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let (&[route, has_token], rest) = input.split_first_chunk::<2>()?;
            input = rest;
            let token = match has_token {
                0 => None,
                1 => Some(String::from_utf8(take_bytes(&mut input)?.to_vec()).ok()?),
                _ => return None,
            };
            let body = Bytes::copy_from_slice(take_bytes(&mut input)?);
            parts.push(Part { route, token, body });
        }
        if !input.is_empty() {
            return None;
        }
        let done = usize::try_from(u64::from_be_bytes(*done))
            .ok()?
            .min(parts.len());
        Some(Parts {
            parts,
            dropped: u64::from_be_bytes(*dropped),
            dropped_reason: reason,
            done: AtomicUsize::new(done),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_with_progress() {
        let p = Parts::new(
            vec![
                Part {
                    route: 1,
                    token: Some("t".into()),
                    body: Bytes::from_static(b"abc"),
                },
                Part {
                    route: 2,
                    token: None,
                    body: Bytes::new(),
                },
            ],
            3,
            "too big".into(),
        );
        p.accepted(0);
        let back = Parts::from_bytes(&p.to_bytes()).unwrap();
        assert_eq!(back.parts, p.parts);
        assert_eq!((back.dropped, back.dropped_reason.as_str()), (3, "too big"));
        assert_eq!(back.pending().map(|(i, _)| i).collect::<Vec<_>>(), vec![1]);
        assert!(Parts::from_bytes(&p.to_bytes()[..10]).is_none());
    }
}
