//! Acknowledgement ids that a receiver hands its clients, as otelcol-contrib's `ackextension`
//! defines them: a client sends on a partition (HEC calls it a channel), gets an id back, and later
//! asks which of its ids the collector has taken. The `ack` extension owns the store; receivers
//! reach it through [`crate::Host::ack_store`].
//!
//! [`InMemoryAcks`] is the store `ack` builds: bounded twice (partitions, and pending ids in each),
//! least recently used first out, with a counter for each kind of eviction.

use crate::task::lock;
use lru::LruCache;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a receiver calls, as contrib's `AckExtension` interface.
pub trait AckStore: Send + Sync {
    /// A new id for an event on `partition`, pending (not yet acknowledged). Ids count up from 1
    /// within a partition.
    fn process_event(&self, partition: &str) -> u64;
    /// Marks `id` on `partition` as taken. An id the store no longer holds is ignored.
    fn ack(&self, partition: &str, id: u64);
    /// Whether each of `ids` has been acknowledged. An acknowledged id is answered `true` once and
    /// then forgotten; unknown, evicted and still pending ids are `false`.
    fn query_acks(&self, partition: &str, ids: &[u64]) -> BTreeMap<u64, bool>;
}

/// contrib's defaults for both bounds.
pub const DEFAULT_MAX_PARTITIONS: u64 = 1_000_000;
pub const DEFAULT_MAX_PENDING_PER_PARTITION: u64 = 1_000_000;

struct Partition {
    last_id: u64,
    /// id -> acknowledged. Unbounded by the cache itself: the cap is checked on insert, so that a
    /// large cap allocates nothing up front (`LruCache::new` would reserve the whole cap).
    acks: LruCache<u64, bool>,
}

/// The in-memory store: an LRU of partitions, each an LRU of pending ids. When a bound is reached
/// the least recently used partition (all its ids) or id is dropped and counted in
/// `vigil_ack_partitions_evicted` / `vigil_ack_ids_evicted` (contrib drops them silently).
pub struct InMemoryAcks {
    max_partitions: usize,
    max_pending: usize,
    partitions: Mutex<LruCache<String, Partition>>,
    partitions_evicted: metrics::Counter,
    ids_evicted: metrics::Counter,
}

impl InMemoryAcks {
    /// A store with the given bounds (0 is taken as 1), its counters labelled `extension = owner`.
    pub fn new(owner: &str, max_partitions: u64, max_pending: u64) -> InMemoryAcks {
        let cap = |n: u64| usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        InMemoryAcks {
            max_partitions: cap(max_partitions),
            max_pending: cap(max_pending),
            partitions: Mutex::new(LruCache::unbounded()),
            partitions_evicted: metrics::counter!(
                "vigil_ack_partitions_evicted",
                "extension" => owner.to_string()
            ),
            ids_evicted: metrics::counter!("vigil_ack_ids_evicted", "extension" => owner.to_string()),
        }
    }
}

impl AckStore for InMemoryAcks {
    fn process_event(&self, partition: &str) -> u64 {
        let mut parts = lock(&self.partitions);
        if !parts.contains(partition) {
            parts.push(
                partition.to_string(),
                Partition {
                    last_id: 0,
                    acks: LruCache::unbounded(),
                },
            );
            while parts.len() > self.max_partitions {
                if parts.pop_lru().is_none() {
                    break;
                }
                self.partitions_evicted.increment(1);
            }
        }
        let Some(p) = parts.get_mut(partition) else {
            // Just inserted and the cap is at least 1, so it is there; 0 is never a valid id.
            return 0;
        };
        p.last_id += 1;
        let id = p.last_id;
        p.acks.push(id, false);
        while p.acks.len() > self.max_pending {
            if p.acks.pop_lru().is_none() {
                break;
            }
            self.ids_evicted.increment(1);
        }
        id
    }

    fn ack(&self, partition: &str, id: u64) {
        let mut parts = lock(&self.partitions);
        if let Some(p) = parts.get_mut(partition) {
            if let Some(v) = p.acks.get_mut(&id) {
                *v = true;
            }
        }
    }

    fn query_acks(&self, partition: &str, ids: &[u64]) -> BTreeMap<u64, bool> {
        let mut parts = lock(&self.partitions);
        let mut out = BTreeMap::new();
        let mut part = parts.get_mut(partition);
        for &id in ids {
            let done = match part.as_mut() {
                Some(p) if p.acks.peek(&id) == Some(&true) => {
                    p.acks.pop(&id);
                    true
                }
                _ => false,
            };
            out.insert(id, done);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn ids_count_up_per_partition_and_answer_once() {
        let s = InMemoryAcks::new("ack", 10, 10);
        assert_eq!(s.process_event("a"), 1);
        assert_eq!(s.process_event("a"), 2);
        assert_eq!(s.process_event("b"), 1);
        s.ack("a", 2);
        s.ack("a", 99);
        let q = s.query_acks("a", &[1, 2, 99]);
        assert_eq!(q, BTreeMap::from([(1, false), (2, true), (99, false)]));
        // Answered true once, then forgotten, as contrib.
        assert_eq!(s.query_acks("a", &[2]), BTreeMap::from([(2, false)]));
        assert_eq!(s.query_acks("nope", &[1]), BTreeMap::from([(1, false)]));
    }

    #[test]
    fn bounds_evict_least_recently_used_and_count() {
        let rec = DebuggingRecorder::new();
        let snap = rec.snapshotter();
        // Counters are registered when the store is built, so it is built under the recorder.
        let s = metrics::with_local_recorder(&rec, || InMemoryAcks::new("ack/bounded", 2, 2));
        for _ in 0..3 {
            s.process_event("a");
        }
        s.ack("a", 1);
        // Id 1 was evicted by id 3, so its ack is lost.
        assert_eq!(s.query_acks("a", &[1]), BTreeMap::from([(1, false)]));
        s.process_event("b");
        s.process_event("c");
        // "a" was least recently used when "c" came.
        s.ack("a", 3);
        assert_eq!(s.query_acks("a", &[3]), BTreeMap::from([(3, false)]));
        let labels = [("extension", "ack/bounded")];
        let c = crate::testing::Counters::take(&snap);
        assert_eq!(c.sum("vigil_ack_ids_evicted", &labels), 1);
        assert_eq!(c.sum("vigil_ack_partitions_evicted", &labels), 1);
    }
}
