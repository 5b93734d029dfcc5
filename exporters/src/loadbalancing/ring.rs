//! The consistent hashing ring that maps a routing key to a backend. It places points exactly as
//! otelcol's loadbalancing exporter does (100 points per endpoint, CRC-32 of the endpoint followed by
//! the point's number, modulo 36 000 positions; a key goes to the first point at or after its own
//! CRC-32 position), so a fleet that mixes otelcol and vigil agents in front of the same backends
//! sends the spans of one trace to one backend. A backend joining or leaving moves only the keys
//! whose next point changes: about 1/n of them.

/// Positions on the ring: 360 degrees with two decimals, as otelcol.
const MAX_POSITIONS: u32 = 36_000;
/// Points per endpoint, as otelcol's `defaultWeight`.
pub const POINTS_PER_ENDPOINT: usize = 100;

/// An immutable ring over a sorted, deduplicated list of endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashRing {
    endpoints: Vec<String>,
    /// (position, index into `endpoints`), sorted by position; a taken position keeps its first
    /// owner, in endpoint order, as otelcol does.
    points: Vec<(u32, usize)>,
}

impl HashRing {
    /// A ring over `endpoints`; they are sorted and deduplicated first, so every agent given the
    /// same set builds the same ring whatever order its resolver returned.
    pub fn new(mut endpoints: Vec<String>) -> HashRing {
        endpoints.sort();
        endpoints.dedup();
        let mut taken = std::collections::HashSet::new();
        let mut points = Vec::with_capacity(endpoints.len() * POINTS_PER_ENDPOINT);
        for (idx, e) in endpoints.iter().enumerate() {
            for i in 0..POINTS_PER_ENDPOINT {
                let mut h = crc32fast::Hasher::new();
                h.update(e.as_bytes());
                // otelcol writes the point number as one byte.
                h.update(&[i as u8]);
                let pos = h.finalize() % MAX_POSITIONS;
                if taken.insert(pos) {
                    points.push((pos, idx));
                }
            }
        }
        points.sort_unstable();
        HashRing { endpoints, points }
    }

    /// The endpoints, sorted; `endpoint_index` answers an index into this list.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The index of the endpoint that owns `key`; `None` on an empty ring.
    pub fn endpoint_index(&self, key: &[u8]) -> Option<usize> {
        if self.endpoints.len() == 1 {
            return Some(0);
        }
        let pos = crc32fast::hash(key) % MAX_POSITIONS;
        let at = self.points.partition_point(|(p, _)| *p < pos);
        let (_, idx) = self.points.get(at).or_else(|| self.points.first())?;
        Some(*idx)
    }

    /// The endpoint that owns `key`.
    pub fn endpoint_for(&self, key: &[u8]) -> Option<&str> {
        self.endpoint_index(key)
            .and_then(|i| self.endpoints.get(i))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> HashRing {
        HashRing::new((0..n).map(|i| format!("10.0.0.{i}:4317")).collect())
    }

    fn keys() -> Vec<[u8; 16]> {
        // Trace ids spread like random ones: a multiplicative sequence through all 16 bytes.
        (0u128..20_000)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)).to_be_bytes())
            .collect()
    }

    fn moved(a: &HashRing, b: &HashRing) -> f64 {
        let keys = keys();
        let n = keys
            .iter()
            .filter(|k| a.endpoint_for(&k[..]) != b.endpoint_for(&k[..]))
            .count();
        n as f64 / keys.len() as f64
    }

    #[test]
    fn a_joining_backend_takes_about_its_share_and_nothing_else_moves() {
        for n in [3usize, 5, 10] {
            let before = ring(n);
            let after = ring(n + 1);
            let share = moved(&before, &after);
            let ideal = 1.0 / (n + 1) as f64;
            assert!(
                share > ideal * 0.5 && share < ideal * 1.6,
                "{n}→{}: {share:.3} of keys moved, ideal {ideal:.3}",
                n + 1
            );
            // Every key that moved went to the new backend: no reshuffle between old ones.
            let new = format!("10.0.0.{n}:4317");
            for k in keys() {
                let (a, b) = (before.endpoint_for(&k[..]), after.endpoint_for(&k[..]));
                if a != b {
                    assert_eq!(b, Some(new.as_str()));
                }
            }
        }
    }

    #[test]
    fn a_leaving_backend_gives_up_only_its_own_keys() {
        let before = ring(4);
        let gone = "10.0.0.2:4317";
        let after = HashRing::new(
            before
                .endpoints()
                .iter()
                .filter(|e| *e != gone)
                .cloned()
                .collect(),
        );
        let share = moved(&before, &after);
        assert!(share > 0.125 && share < 0.4, "{share:.3} moved, ideal 0.25");
        for k in keys() {
            let (a, b) = (before.endpoint_for(&k[..]), after.endpoint_for(&k[..]));
            if a != b {
                assert_eq!(a, Some(gone), "only the leaving backend's keys move");
            }
        }
    }

    #[test]
    fn load_is_spread_and_order_does_not_matter() {
        let r = ring(4);
        let mut count = std::collections::HashMap::new();
        for k in keys() {
            *count
                .entry(r.endpoint_for(&k[..]).unwrap())
                .or_insert(0usize) += 1;
        }
        for (e, c) in &count {
            let share = *c as f64 / keys().len() as f64;
            assert!(share > 0.15 && share < 0.35, "{e} got {share:.3}");
        }
        let mut reversed: Vec<String> = r.endpoints().to_vec();
        reversed.reverse();
        assert_eq!(HashRing::new(reversed), r);
    }

    #[test]
    fn empty_and_single() {
        assert_eq!(HashRing::new(vec![]).endpoint_for(b"x"), None);
        let one = HashRing::new(vec!["a:1".into()]);
        assert_eq!(one.endpoint_for(b"anything"), Some("a:1"));
    }
}
