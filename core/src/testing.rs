//! Helpers for the unit tests of every crate: reading the counters a component recorded into a
//! `metrics_util` debugging recorder. Not behind a `test-support` feature on purpose: a feature that
//! only dev-dependencies turn on would build vigil-core, and every crate above it, once for
//! `cargo build` and again for `cargo test` (the reason agent's Cargo.toml names metrics-util too).
//! Nothing in a release binary calls it, so none of it is linked there.

use metrics_util::debugging::{DebugValue, Snapshotter};
use metrics_util::CompositeKey;

/// The counters of one snapshot. A debugging recorder's snapshot resets the counters it reads, so a
/// test that checks several takes one `Counters` and looks them all up in it.
#[derive(Debug)]
pub struct Counters(Vec<(CompositeKey, u64)>);

impl Counters {
    /// Takes a snapshot (resetting the recorder's counters) and keeps its counters; gauges and
    /// histograms are left out.
    pub fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter_map(|(k, _, _, v)| match v {
                    DebugValue::Counter(n) => Some((k, n)),
                    _ => None,
                })
                .collect(),
        )
    }

    /// The sum of the counters named `name` that carry every `(key, value)` of `labels` (among
    /// others), or `None` when no counter matches: for a test that a counter was registered, even at 0.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let mut found = None;
        for (k, n) in &self.0 {
            let key = k.key();
            if key.name() == name
                && labels
                    .iter()
                    .all(|(lk, lv)| key.labels().any(|l| l.key() == *lk && l.value() == *lv))
            {
                *found.get_or_insert(0) += n;
            }
        }
        found
    }

    /// As [`Counters::find`], with 0 when no counter matches.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels).unwrap_or(0)
    }
}

/// One counter read from a fresh snapshot: `Counters::take(snapshotter).sum(name, labels)`.
pub fn counter(snapshotter: &Snapshotter, name: &str, labels: &[(&str, &str)]) -> u64 {
    Counters::take(snapshotter).sum(name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn sums_matching_counters_and_tells_absent_from_zero() {
        let rec = DebuggingRecorder::new();
        let snapshotter = rec.snapshotter();
        metrics::with_local_recorder(&rec, || {
            metrics::counter!("c", "t" => "grpc", "r" => "x").increment(2);
            metrics::counter!("c", "t" => "http", "r" => "x").increment(3);
            metrics::counter!("zero").absolute(0);
            metrics::gauge!("g").set(7.0);
        });
        let c = Counters::take(&snapshotter);
        assert_eq!(c.sum("c", &[]), 5);
        assert_eq!(c.find("c", &[("t", "http")]), Some(3));
        assert_eq!(c.find("c", &[("t", "http"), ("r", "y")]), None);
        assert_eq!(c.find("zero", &[]), Some(0));
        assert_eq!(c.find("g", &[]), None, "a gauge is not a counter");
        assert_eq!(c.find("missing", &[]), None);
    }
}
