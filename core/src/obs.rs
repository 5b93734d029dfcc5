//! Self-telemetry every component kind reports the same way, with otelcol's metric names: what a
//! receiver accepted, refused or failed, what went into and out of a processor, what an exporter
//! sent or failed to send. Handles are labelled and registered once, at creation (see
//! [`crate::factory::Settings`]), so counting on the data path only bumps atomics.

use crate::component::ComponentId;
use crate::consumer::ConsumeError;
use crate::telemetry::Signal;
use metrics::Counter;

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
        Signal::Profiles => 3,
    }
}

/// `otelcol_receiver_{accepted,refused,failed}_<items>{receiver, transport}`, as otelcol's
/// `receiverhelper.ObsReport` counts them (`vigil_receiver_…_profile_samples` for profiles, which
/// otelcol does not count).
#[derive(Clone)]
pub struct ReceiverObs {
    accepted: [Counter; 4],
    refused: [Counter; 4],
    failed: [Counter; 4],
}

impl ReceiverObs {
    pub fn new(id: &ComponentId, transport: &str) -> ReceiverObs {
        let labels = [
            ("receiver", id.to_string()),
            ("transport", transport.to_string()),
        ];
        let per = |what: &str| {
            Signal::ALL.map(|s| {
                metrics::counter!(
                    format!("{}_receiver_{what}_{}", s.metric_prefix(), s.item_name()),
                    &labels
                )
            })
        };
        ReceiverObs {
            accepted: per("accepted"),
            refused: per("refused"),
            failed: per("failed"),
        }
    }

    /// Counts one batch of `items` pushed into the pipeline, by the pipeline's answer. A permanent
    /// error that names how many it rejected is a partial success: the rest were accepted. A
    /// permanent error with no count, and a retryable one, refused the whole batch.
    pub fn end_op(&self, signal: Signal, items: usize, result: &Result<(), ConsumeError>) {
        let (accepted, refused) = match result {
            Ok(()) => (items, 0),
            Err(ConsumeError::Retryable { .. }) => (0, items),
            Err(ConsumeError::Permanent { rejected, .. }) => {
                let rejected = if *rejected == 0 {
                    items
                } else {
                    (*rejected).min(items)
                };
                (items - rejected, rejected)
            }
        };
        self.accepted(signal, accepted);
        self.refused(signal, refused);
    }

    pub fn accepted(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.accepted[slot(signal)].increment(items as u64);
        }
    }

    /// Items the pipeline did not take.
    pub fn refused(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.refused[slot(signal)].increment(items as u64);
        }
    }

    /// Pushes one batch into the pipeline and counts it by the answer ([`Self::end_op`]), which the
    /// caller still gets: the scraping receivers each did these three steps by hand.
    pub async fn push(
        &self,
        next: &crate::consumer::NextConsumers,
        data: crate::telemetry::Telemetry,
    ) -> Result<(), ConsumeError> {
        let (signal, items) = (data.signal(), data.item_count());
        let result = next.consume(data).await;
        self.end_op(signal, items, &result);
        result
    }

    /// Items the receiver itself could not turn into telemetry (otelcol's `failed`, as opposed to
    /// `refused` by what follows).
    pub fn failed(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.failed[slot(signal)].increment(items as u64);
        }
    }
}

/// `otelcol_processor_{incoming,outgoing}_items{processor, otel.signal}` and the older
/// `otelcol_processor_refused_<items>{processor}` that `memory_limiter` and `batch` report.
#[derive(Clone)]
pub struct ProcessorObs {
    incoming: Counter,
    outgoing: Counter,
    refused: Counter,
}

impl ProcessorObs {
    pub fn new(id: &ComponentId, signal: Signal) -> ProcessorObs {
        let labels = [
            ("processor", id.to_string()),
            ("otel.signal", signal.as_str().to_string()),
        ];
        ProcessorObs {
            incoming: metrics::counter!("otelcol_processor_incoming_items", &labels),
            outgoing: metrics::counter!("otelcol_processor_outgoing_items", &labels),
            refused: metrics::counter!(
                format!("{}_processor_refused_{}", signal.metric_prefix(), signal.item_name()),
                "processor" => id.to_string()
            ),
        }
    }

    pub fn incoming(&self, items: usize) {
        self.incoming.increment(items as u64);
    }

    pub fn outgoing(&self, items: usize) {
        self.outgoing.increment(items as u64);
    }

    pub fn refused(&self, items: usize) {
        self.refused.increment(items as u64);
    }
}

/// What a connector took in and sent on, per signal: otelcol's component telemetry
/// `otelcol_connector_consumed_items` / `otelcol_connector_produced_items{connector, otel.signal}`,
/// and `vigil_connector_refused_<items>{connector}` for what it refused itself. A connector's input
/// and output signals differ (metrics in, logs out), so each call names its signal.
#[derive(Clone)]
pub struct ConnectorObs {
    consumed: [Counter; 4],
    produced: [Counter; 4],
    refused: [Counter; 4],
}

impl ConnectorObs {
    pub fn new(id: &ComponentId) -> ConnectorObs {
        let per = |name: &str| {
            Signal::ALL.map(|s| {
                metrics::counter!(
                    name.to_string(),
                    "connector" => id.to_string(),
                    "otel.signal" => s.as_str().to_string()
                )
            })
        };
        ConnectorObs {
            consumed: per("otelcol_connector_consumed_items"),
            produced: per("otelcol_connector_produced_items"),
            refused: Signal::ALL.map(|s| {
                metrics::counter!(
                    format!("vigil_connector_refused_{}", s.item_name()),
                    "connector" => id.to_string()
                )
            }),
        }
    }

    /// Items given to the connector.
    pub fn consumed(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.consumed[slot(signal)].increment(items as u64);
        }
    }

    /// Items the connector sent on (for a detector, the events it emitted).
    pub fn produced(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.produced[slot(signal)].increment(items as u64);
        }
    }

    /// Items the connector itself refused (bad input, shutting down).
    pub fn refused(&self, signal: Signal, items: usize) {
        if items > 0 {
            self.refused[slot(signal)].increment(items as u64);
        }
    }
}

/// `otelcol_exporter_{sent,send_failed,enqueue_failed}_<items>{exporter}` (`vigil_exporter_…_profile_samples`
/// for profiles, which otelcol's exporterhelper does not count).
#[derive(Clone)]
pub struct ExporterObs {
    sent: [Counter; 4],
    send_failed: [Counter; 4],
    enqueue_failed: [Counter; 4],
}

impl ExporterObs {
    pub fn new(id: &ComponentId) -> ExporterObs {
        let per = |what: &str| {
            Signal::ALL.map(|s| {
                metrics::counter!(
                    format!("{}_exporter_{what}_{}", s.metric_prefix(), s.item_name()),
                    "exporter" => id.to_string()
                )
            })
        };
        ExporterObs {
            sent: per("sent"),
            send_failed: per("send_failed"),
            enqueue_failed: per("enqueue_failed"),
        }
    }

    /// Items the backend accepted.
    pub fn sent(&self, signal: Signal, items: u64) {
        self.sent[slot(signal)].increment(items);
    }

    /// Items given up on: refused by the backend, out of retries, or not sent before shutdown.
    pub fn send_failed(&self, signal: Signal, items: u64) {
        self.send_failed[slot(signal)].increment(items);
    }

    /// Items the sending queue had no room for.
    pub fn enqueue_failed(&self, signal: Signal, items: u64) {
        self.enqueue_failed[slot(signal)].increment(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Counters;
    use metrics_util::debugging::DebuggingRecorder;

    #[test]
    fn receiver_counts_partial_success_as_otelcol_does() {
        let rec = DebuggingRecorder::new();
        let snapshotter = rec.snapshotter();
        metrics::with_local_recorder(&rec, || {
            let obs = ReceiverObs::new(&ComponentId::new("otlp", None), "grpc");
            obs.end_op(Signal::Traces, 10, &Ok(()));
            obs.end_op(Signal::Traces, 10, &Err(ConsumeError::permanent("bad", 3)));
            obs.end_op(Signal::Traces, 4, &Err(ConsumeError::permanent("bad", 0)));
            obs.end_op(Signal::Traces, 5, &Err(ConsumeError::retryable("full")));
        });
        let snap = Counters::take(&snapshotter);
        assert_eq!(snap.sum("otelcol_receiver_accepted_spans", &[]), 17);
        assert_eq!(snap.sum("otelcol_receiver_refused_spans", &[]), 3 + 4 + 5);
        assert_eq!(snap.sum("otelcol_receiver_failed_spans", &[]), 0);
    }
}
