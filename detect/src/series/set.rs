//! A bounded registry of per-series state for the pipeline: a least-recently-used cap on the number of
//! series and an idle expiry, with counts of both kinds of eviction. Without it, a label with unbounded
//! values (a request id in a metric attribute) would grow memory without limit.

use std::collections::HashMap;
use std::hash::Hash;

use super::{DetectorConfig, EpisodeConfig, EpisodeTracker, SeriesDetector};

/// Limits of a [`SeriesSet`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesSetConfig {
    /// The most series kept; the least recently seen one is evicted to make room.
    pub max_series: usize,
    /// Series not seen for this many seconds are dropped by [`SeriesSet::expire`].
    pub series_ttl_secs: f64,
}

impl Default for SeriesSetConfig {
    fn default() -> Self {
        Self {
            max_series: 100_000,
            series_ttl_secs: 3600.0,
        }
    }
}

/// Counts of what a [`SeriesSet`] holds and has dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeriesSetStats {
    /// Series held now.
    pub live: usize,
    /// Series dropped because `max_series` was reached.
    pub evicted_lru: u64,
    /// Series dropped because they were idle longer than the TTL.
    pub expired: u64,
}

/// The default per-series state: a detector and its episode tracker.
#[derive(Debug, Clone)]
pub struct TrackedSeries {
    /// Scores the points.
    pub detector: SeriesDetector,
    /// Turns scores into start and end events.
    pub episodes: EpisodeTracker,
}

impl TrackedSeries {
    /// A fresh state with the given settings.
    pub fn new(detector: &DetectorConfig, episodes: EpisodeConfig) -> Self {
        Self {
            detector: SeriesDetector::new(detector),
            episodes: EpisodeTracker::new(episodes),
        }
    }
}

/// When full, a set evicts at least this share (1/64) of its cap at once.
pub const EVICT_SHARE: usize = 64;

struct Slot<V> {
    value: V,
    tick: u64,
    last_seen: f64,
}

/// Per-series state keyed by `K`, with an LRU cap and idle expiry. Each slot holds the tick of its
/// last use; there is no separate access-order index (an ordered map of 100k ticks cost about 30 B a
/// series and two tree updates per point). When the set is full, the least recently used
/// [`EVICT_SHARE`] of the cap goes at once, found by one pass over the ticks, so that a flood of new
/// series (a label with unbounded values) costs a pass per batch, not per series.
pub struct SeriesSet<K, V = TrackedSeries> {
    config: SeriesSetConfig,
    slots: HashMap<K, Slot<V>>,
    tick: u64,
    stats: SeriesSetStats,
}

impl<K: Hash + Eq + Clone, V> SeriesSet<K, V> {
    /// An empty set with the given limits.
    pub fn new(config: SeriesSetConfig) -> Self {
        Self {
            config,
            slots: HashMap::new(),
            tick: 0,
            stats: SeriesSetStats::default(),
        }
    }

    /// The state of `key`, created with `make` if absent (evicting the least recently used series when
    /// full, whose state is handed to `on_evict`, e.g. to close an open episode). `now_secs` is the
    /// caller's clock and marks the series as seen.
    pub fn get_or_insert_with(
        &mut self,
        key: &K,
        now_secs: f64,
        make: impl FnOnce() -> V,
        mut on_evict: impl FnMut(K, V),
    ) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(key) {
            slot.tick = tick;
            slot.last_seen = now_secs;
        } else {
            let cap = self.config.max_series.max(1);
            if self.slots.len() >= cap {
                self.evict_oldest(self.slots.len() + 1 - cap, &mut on_evict);
            }
            self.slots.insert(
                key.clone(),
                Slot {
                    value: make(),
                    tick,
                    last_seen: now_secs,
                },
            );
        }
        // The slot was touched or inserted just above.
        &mut self.slots.get_mut(key).expect("slot present").value
    }

    /// Drops every series idle for longer than the TTL, handing each to `on_expire`. Returns how many.
    pub fn expire(&mut self, now_secs: f64, mut on_expire: impl FnMut(K, V)) -> usize {
        let cutoff = now_secs - self.config.series_ttl_secs;
        let mut stale: Vec<(u64, K)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.last_seen < cutoff)
            .map(|(k, s)| (s.tick, k.clone()))
            .collect();
        // Oldest first, as the access order would give them.
        stale.sort_unstable_by_key(|(t, _)| *t);
        for (_, key) in &stale {
            if let Some(slot) = self.slots.remove(key) {
                self.stats.expired += 1;
                on_expire(key.clone(), slot.value);
            }
        }
        stale.len()
    }

    /// Evicts the least recently used series: at least `need`, and [`EVICT_SHARE`] of the cap.
    fn evict_oldest(&mut self, need: usize, on_evict: &mut impl FnMut(K, V)) {
        let batch = (self.config.max_series / EVICT_SHARE)
            .max(need)
            .min(self.slots.len());
        if batch == 0 {
            return;
        }
        let mut ticks: Vec<u64> = self.slots.values().map(|s| s.tick).collect();
        // Ticks are unique, so exactly `batch` slots are at or below the cut.
        let cut = *ticks.select_nth_unstable(batch - 1).1;
        let mut old: Vec<(u64, K)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.tick <= cut)
            .map(|(k, s)| (s.tick, k.clone()))
            .collect();
        old.sort_unstable_by_key(|(t, _)| *t);
        for (_, key) in old {
            if let Some(slot) = self.slots.remove(&key) {
                self.stats.evicted_lru += 1;
                on_evict(key, slot.value);
            }
        }
    }

    /// The state of `key`, if held, without marking it as seen.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.slots.get(key).map(|s| &s.value)
    }

    /// Every held state, in no particular order, without marking any as seen.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.values().map(|s| &s.value)
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no series is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Live count and eviction counters.
    pub fn stats(&self) -> SeriesSetStats {
        SeriesSetStats {
            live: self.slots.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_cap_evicts_least_recently_seen() {
        let mut set: SeriesSet<u32, u32> = SeriesSet::new(SeriesSetConfig {
            max_series: 2,
            series_ttl_secs: 100.0,
        });
        let mut evicted = Vec::new();
        set.get_or_insert_with(&1, 0.0, || 10, |k, _| evicted.push(k));
        set.get_or_insert_with(&2, 1.0, || 20, |k, _| evicted.push(k));
        set.get_or_insert_with(&1, 2.0, || 0, |k, _| evicted.push(k)); // 1 is now the most recent
        set.get_or_insert_with(&3, 3.0, || 30, |k, _| evicted.push(k));
        assert_eq!(evicted, vec![2]);
        assert_eq!(set.get(&1), Some(&10));
        assert_eq!(
            set.stats(),
            SeriesSetStats {
                live: 2,
                evicted_lru: 1,
                expired: 0
            }
        );
    }

    #[test]
    fn a_full_set_evicts_its_least_recent_share_at_once() {
        let mut set: SeriesSet<u32, ()> = SeriesSet::new(SeriesSetConfig {
            max_series: 4 * EVICT_SHARE,
            series_ttl_secs: 100.0,
        });
        let mut evicted = Vec::new();
        for k in 0..4 * EVICT_SHARE as u32 {
            set.get_or_insert_with(&k, 0.0, || (), |k, _| evicted.push(k));
        }
        // 0 and 2 are seen again: 1, 3, 4 and 5 are now the four least recently used.
        set.get_or_insert_with(&0, 1.0, || (), |k, _| evicted.push(k));
        set.get_or_insert_with(&2, 1.0, || (), |k, _| evicted.push(k));
        set.get_or_insert_with(&9999, 2.0, || (), |k, _| evicted.push(k));
        assert_eq!(evicted, vec![1, 3, 4, 5]);
        assert_eq!(set.len(), 4 * EVICT_SHARE - 3);
        assert_eq!(set.stats().evicted_lru, 4);
    }

    #[test]
    fn idle_series_expire() {
        let mut set: SeriesSet<&str, ()> = SeriesSet::new(SeriesSetConfig {
            max_series: 10,
            series_ttl_secs: 60.0,
        });
        set.get_or_insert_with(&"a", 0.0, || (), |_, _| {});
        set.get_or_insert_with(&"b", 50.0, || (), |_, _| {});
        let mut gone = Vec::new();
        assert_eq!(set.expire(100.0, |k, _| gone.push(k)), 1);
        assert_eq!(gone, vec!["a"]);
        assert_eq!(set.stats().expired, 1);
        assert_eq!(set.len(), 1);
    }
}
