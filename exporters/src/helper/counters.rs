//! The sending queue's fill level, as otelcol reports it (items sent, failed and refused are
//! counted by the component's `vigil_core::ExporterObs`), and a recorder tests read metrics from.
//! Handles are registered once, when the exporter is created, so the send path only bumps atomics.

use metrics::Gauge;

/// The fill level of one exporter's sending queue, in the queue's sizer unit.
#[derive(Clone)]
pub struct QueueGauges {
    pub size: Gauge,
    pub capacity: Gauge,
}

impl QueueGauges {
    /// Registers `otelcol_exporter_queue_size` and `otelcol_exporter_queue_capacity`.
    pub fn new(exporter: &str, capacity: usize) -> Self {
        let g = QueueGauges {
            size: metrics::gauge!("otelcol_exporter_queue_size", "exporter" => exporter.to_string()),
            capacity: metrics::gauge!(
                "otelcol_exporter_queue_capacity",
                "exporter" => exporter.to_string()
            ),
        };
        g.capacity.set(capacity as f64);
        g.size.set(0.0);
        g
    }
}

/// A recorder for tests: it keeps every counter and gauge by name and labels so a test can read what a
/// component reported. Install it with `metrics::with_local_recorder` around the component's creation;
/// the handles registered there keep pointing at it afterwards.
#[cfg(test)]
pub(crate) mod testing {
    use metrics::{
        Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    };
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    pub struct TestRecorder {
        counters: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
        gauges: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    }

    fn name(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl TestRecorder {
        /// A counter's value, by `name{label=value,...}`; zero if it was never registered.
        pub fn counter(&self, key: &str) -> u64 {
            self.counters
                .lock()
                .unwrap()
                .get(key)
                .map_or(0, |c| c.load(Ordering::Relaxed))
        }

        pub fn gauge(&self, key: &str) -> f64 {
            self.gauges
                .lock()
                .unwrap()
                .get(key)
                .map_or(0.0, |g| f64::from_bits(g.load(Ordering::Relaxed)))
        }
    }

    impl Recorder for TestRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let c = self
                .counters
                .lock()
                .unwrap()
                .entry(name(key))
                .or_default()
                .clone();
            Counter::from_arc(c)
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let g = self
                .gauges
                .lock()
                .unwrap()
                .entry(name(key))
                .or_default()
                .clone();
            Gauge::from_arc(g)
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}
