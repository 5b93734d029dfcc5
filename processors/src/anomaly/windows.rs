//! Per-`interval` aggregation of spans (RED: requests, errors, latency) and log records (counts) into
//! the values the detectors watch. Windows follow the items' own timestamps, so a replay or a sender
//! with a skewed clock still gives the right rates; each group keeps its own clock (its newest item plus
//! the wall time since it arrived), and a window is flushed one `interval` after it ends so that
//! stragglers still land in it. A window with no items is a rate of 0: traffic that stops is news.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use vigil_core::otlp::common::v1::KeyValue;

/// Windows kept open per group; items for windows beyond this are dropped as out of range.
const MAX_OPEN_WINDOWS: usize = 64;
/// The most empty windows filled in at once after a long silence; older ones are skipped.
const MAX_FILL: i64 = 360;
/// Items stamped further than this into the future (by the wall clock) are dropped: one bad clock
/// must not fast-forward a group and make every honest item late.
const MAX_FUTURE_SECS: f64 = 300.0;
/// Relative accuracy of the latency sketch: bucket `i` holds `(γ^(i-1), γ^i]` milliseconds.
const SKETCH_GAMMA: f64 = 1.02;

/// What a group aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    /// Spans of one service, span name and kind.
    Red,
    /// The same spans' self time: duration minus their client children's, where the children came in
    /// the same batch.
    SelfTime,
    /// Log records of one service and severity.
    LogRate,
    /// Log records of one service and `log.pattern.id`.
    PatternRate,
}

/// Who a group is.
#[derive(Debug, Clone, PartialEq)]
pub struct AggMeta {
    pub kind: AggKind,
    /// The group key (hash of kind and attributes).
    pub key: u64,
    /// The grouping attributes (`service.name`, `span.name`, …).
    pub attributes: Vec<KeyValue>,
    /// The resource of the first item seen.
    pub resource: Vec<KeyValue>,
}

/// A sparse log-bucket sketch of latencies: bounded (about 1,100 buckets between 1 µs and an hour) and
/// mergeable, with 1% relative error, where a sorted sample would grow with traffic.
#[derive(Debug, Clone, Default)]
pub struct LatencySketch {
    buckets: BTreeMap<i32, u64>,
    zero: u64,
}

impl LatencySketch {
    pub fn add(&mut self, ms: f64) {
        if !ms.is_finite() || ms <= 0.0 {
            self.zero += 1;
            return;
        }
        let i = (ms.ln() / SKETCH_GAMMA.ln()).ceil().clamp(-2000.0, 2000.0) as i32;
        *self.buckets.entry(i).or_insert(0) += 1;
    }

    /// The `q` quantile, or `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.zero + self.buckets.values().sum::<u64>();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        if rank <= self.zero {
            return Some(0.0);
        }
        let mut cum = self.zero;
        for (&i, &c) in &self.buckets {
            cum += c;
            if cum >= rank {
                // The bucket's geometric middle, so the error is symmetric.
                return Some(SKETCH_GAMMA.powf(f64::from(i) - 0.5));
            }
        }
        self.buckets
            .keys()
            .next_back()
            .map(|&i| SKETCH_GAMMA.powi(i))
    }
}

/// One window's totals.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    pub count: u64,
    pub errors: u64,
    /// Errors passed on from a callee: failed spans with a failed CLIENT child.
    pub passed_on: u64,
    pub latency: LatencySketch,
}

/// One flushed window of one group.
#[derive(Debug, Clone)]
pub struct Flushed {
    pub meta: Arc<AggMeta>,
    /// The window's end (seconds): the timestamp its values are observed at.
    pub t: f64,
    pub bucket: Bucket,
}

struct Agg {
    meta: Arc<AggMeta>,
    buckets: BTreeMap<i64, Bucket>,
    last_flushed: Option<i64>,
    max_t: f64,
    wall_at_max: f64,
    last_seen_wall: f64,
}

/// The open windows of every group, bounded by `max_groups` and an idle expiry.
pub struct Windows {
    interval: f64,
    max_groups: usize,
    ttl_secs: f64,
    groups: HashMap<u64, Agg>,
    /// Items dropped because their window was already flushed or out of range.
    pub dropped: u64,
    /// Groups dropped to stay under `max_groups`.
    pub evicted: u64,
    /// Groups dropped after `ttl_secs` without items.
    pub expired: u64,
}

impl Windows {
    pub fn new(interval_secs: f64, max_groups: usize, ttl_secs: f64) -> Windows {
        Windows {
            interval: interval_secs,
            max_groups: max_groups.max(1),
            ttl_secs,
            groups: HashMap::new(),
            dropped: 0,
            evicted: 0,
            expired: 0,
        }
    }

    /// Groups held now.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Counts one item at `t` (seconds) into its group's window; `make` builds the group's meta when it
    /// is new. `latency_ms` is given for spans.
    pub fn add(
        &mut self,
        key: u64,
        make: impl FnOnce() -> AggMeta,
        t: f64,
        wall: f64,
        error: bool,
        latency_ms: Option<f64>,
    ) {
        self.add_outcome(key, make, t, wall, error, false, latency_ms);
    }

    /// [`Windows::add`] for a span whose error may have been passed on from a callee (`passed_on`).
    #[allow(clippy::too_many_arguments)]
    pub fn add_outcome(
        &mut self,
        key: u64,
        make: impl FnOnce() -> AggMeta,
        t: f64,
        wall: f64,
        error: bool,
        passed_on: bool,
        latency_ms: Option<f64>,
    ) {
        if !t.is_finite() || t > wall + MAX_FUTURE_SECS {
            self.dropped += 1;
            return;
        }
        if !self.groups.contains_key(&key) && self.groups.len() >= self.max_groups {
            self.evict_oldest();
        }
        let agg = self.groups.entry(key).or_insert_with(|| Agg {
            meta: Arc::new(make()),
            buckets: BTreeMap::new(),
            last_flushed: None,
            max_t: t,
            wall_at_max: wall,
            last_seen_wall: wall,
        });
        agg.last_seen_wall = wall;
        let idx = (t / self.interval).floor() as i64;
        let late = agg.last_flushed.is_some_and(|l| idx <= l);
        if late || (!agg.buckets.contains_key(&idx) && agg.buckets.len() >= MAX_OPEN_WINDOWS) {
            self.dropped += 1;
            return;
        }
        let b = agg.buckets.entry(idx).or_default();
        b.count += 1;
        if error {
            b.errors += 1;
            if passed_on {
                b.passed_on += 1;
            }
        }
        if let Some(ms) = latency_ms {
            b.latency.add(ms);
        }
        if t > agg.max_t {
            agg.max_t = t;
            agg.wall_at_max = wall;
        }
    }

    // When full, drop the least recently seen 1% (at least one) in one pass, so that a stream of new
    // groups costs amortised O(100) each instead of a scan per insert.
    fn evict_oldest(&mut self) {
        let n = (self.groups.len() / 100).max(1);
        let mut seen: Vec<(f64, u64)> = self
            .groups
            .iter()
            .map(|(k, a)| (a.last_seen_wall, *k))
            .collect();
        seen.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        for (_, k) in seen.into_iter().take(n) {
            self.groups.remove(&k);
            self.evicted += 1;
        }
    }

    /// Flushes every complete window, in time order per group, filling empty windows since the last
    /// flush; `final_flush` (at shutdown) also flushes windows that just ended. Groups idle for longer
    /// than the TTL are dropped afterwards.
    pub fn flush(&mut self, wall: f64, final_flush: bool) -> Vec<Flushed> {
        let mut out = Vec::new();
        let grace = if final_flush { 0.0 } else { self.interval };
        let interval = self.interval;
        for agg in self.groups.values_mut() {
            let est_now = agg.max_t + (wall - agg.wall_at_max).max(0.0);
            // Window `idx` covers [idx·I, (idx+1)·I) and is complete once (idx+1)·I + grace ≤ now.
            let last_complete = ((est_now - grace) / interval).floor() as i64 - 1;
            let first = match (agg.last_flushed, agg.buckets.keys().next()) {
                (Some(l), _) => l + 1,
                (None, Some(&b)) => b,
                (None, None) => continue,
            };
            if first > last_complete {
                continue;
            }
            let first = first.max(last_complete - MAX_FILL);
            for idx in first..=last_complete {
                let bucket = agg.buckets.remove(&idx).unwrap_or_default();
                out.push(Flushed {
                    meta: Arc::clone(&agg.meta),
                    t: (idx + 1) as f64 * interval,
                    bucket,
                });
            }
            // Whatever is left below the flushed range was skipped over by MAX_FILL.
            agg.buckets = agg.buckets.split_off(&(last_complete + 1));
            agg.last_flushed = Some(last_complete);
        }
        let ttl = self.ttl_secs;
        let before = self.groups.len();
        self.groups.retain(|_, a| wall - a.last_seen_wall <= ttl);
        self.expired += (before - self.groups.len()) as u64;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: u64) -> AggMeta {
        AggMeta {
            kind: AggKind::Red,
            key,
            attributes: Vec::new(),
            resource: Vec::new(),
        }
    }

    #[test]
    fn sketch_quantiles_are_within_two_percent() {
        let mut s = LatencySketch::default();
        for ms in 1..=1000 {
            s.add(ms as f64);
        }
        let p50 = s.quantile(0.5).unwrap();
        let p99 = s.quantile(0.99).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.02, "{p50}");
        assert!((p99 - 990.0).abs() / 990.0 < 0.02, "{p99}");
        assert_eq!(LatencySketch::default().quantile(0.5), None);
    }

    #[test]
    fn windows_flush_in_order_with_empty_ones_filled() {
        let mut w = Windows::new(10.0, 100, 3600.0);
        // Window [0,10): 3 items, one error; window [10,20): none; window [20,30): 1.
        for (t, err) in [(1.0, false), (2.0, true), (9.0, false), (25.0, false)] {
            w.add(7, || meta(7), t, 1000.0, err, Some(5.0));
        }
        // The group's clock is at 25 s: only [0,10) has ended a grace interval ago.
        let f = w.flush(1000.0, false);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].t, f[0].bucket.count, f[0].bucket.errors),
            (10.0, 3, 1)
        );
        // 20 s of wall time later the clock is at 45 s: [10,20) (empty) and [20,30) are complete.
        let f = w.flush(1020.0, false);
        let got: Vec<(f64, u64)> = f.iter().map(|x| (x.t, x.bucket.count)).collect();
        assert_eq!(got, vec![(20.0, 0), (30.0, 1)]);
        // A straggler for a flushed window is dropped, not counted twice.
        w.add(7, || meta(7), 5.0, 1020.0, false, None);
        assert_eq!(w.dropped, 1);
        // Shutdown flushes what has ended, without the grace.
        let f = w.flush(1020.0, true);
        assert_eq!(f.iter().map(|x| x.t).collect::<Vec<_>>(), vec![40.0]);
    }

    #[test]
    fn groups_are_bounded_and_expire() {
        let mut w = Windows::new(10.0, 2, 60.0);
        w.add(1, || meta(1), 1.0, 100.0, false, None);
        w.add(2, || meta(2), 1.0, 101.0, false, None);
        w.add(3, || meta(3), 1.0, 102.0, false, None);
        assert_eq!((w.len(), w.evicted), (2, 1));
        w.flush(200.0, false);
        assert_eq!((w.len(), w.expired), (0, 2));
    }
}
