//! The dependency graph rebuilt from `servicegraph` metrics instead of spans, for a gateway that
//! correlates across a fleet. Each agent pairs the spans of its own node and exports its edges as
//! `traces_service_graph_request_total{client, server, connection_type}`; the gateway receives them
//! (over OTLP or Kafka) and `correlation`, placed in that metrics pipeline, records every edge whose
//! call count grew into the shared [`DependencyGraph`], the one the `correlation` of the logs pipeline
//! ranks on. A call between nodes reaches its client's agent as an edge to a virtual node named by
//! `peer.service`, which on the gateway is the callee's own name, so the global graph joins up.

use super::graph::DependencyGraph;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use vigil_core::attrs::value_to_string;
use vigil_core::lock;
use vigil_core::otlp::metrics::v1::{metric, number_data_point, ResourceMetrics};
use vigil_core::{Component, ConsumeError, Consumer, Host, Signal, Telemetry};

/// The edge series: one point per client → server pair and agent.
pub const REQUEST_TOTAL: &str = "traces_service_graph_request_total";

/// Series whose last count is remembered; beyond it the memory is cleared and counted
/// (`vigil_correlation_graph_series_evicted`), which costs only one extra refresh of each edge.
/// An agent exports one series per edge, so this is a hundred thousand edges over the fleet.
pub const MAX_SERIES: usize = 100_000;

/// How long an edge no agent reports calls on stays in the graph: the same hour the
/// `servicegraph` connector keeps edges it pairs itself.
pub const EDGE_TTL: Duration = Duration::from_secs(3600);

/// Turns edge series into graph edges, remembering each series' last count so that an edge is
/// refreshed only while calls happen on it (an agent keeps exporting a cumulative count long
/// after the calls stopped).
#[derive(Default)]
pub struct EdgeFeed {
    last: Mutex<HashMap<String, f64>>,
    evicted: std::sync::atomic::AtomicU64,
}

impl EdgeFeed {
    /// Records the edges of `batch` whose calls grew since their last point; returns how many.
    ///
    /// The `user` client (calls from outside the instrumented services) is left out: on a fleet it
    /// mostly stands for a caller on another node whose span that agent never saw, and a node that
    /// calls every entry point would make every service two hops from every other.
    pub fn ingest(&self, graph: &DependencyGraph, batch: &[ResourceMetrics]) -> usize {
        let mut recorded = 0;
        let mut last = lock(&self.last);
        for rm in batch {
            let res = rm
                .resource
                .as_ref()
                .map(|r| attrs_key(&r.attributes))
                .unwrap_or_default();
            for sm in &rm.scope_metrics {
                for m in sm.metrics.iter().filter(|m| m.name == REQUEST_TOTAL) {
                    let Some(metric::Data::Sum(sum)) = &m.data else {
                        continue;
                    };
                    let cumulative = sum.aggregation_temporality
                        == vigil_core::otlp::metrics::v1::AggregationTemporality::Cumulative as i32;
                    for p in &sum.data_points {
                        let (Some(client), Some(server)) =
                            (attr(&p.attributes, "client"), attr(&p.attributes, "server"))
                        else {
                            continue;
                        };
                        if client == "user" || client == server {
                            continue;
                        }
                        let value = match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => continue,
                        };
                        let grew = if cumulative {
                            // The start time tells two agents' series (and an agent's restart) apart.
                            let key = format!(
                                "{res}|{}|{}",
                                p.start_time_unix_nano,
                                attrs_key(&p.attributes)
                            );
                            if last.len() >= MAX_SERIES && !last.contains_key(&key) {
                                self.evicted.fetch_add(
                                    last.len() as u64,
                                    std::sync::atomic::Ordering::Relaxed,
                                );
                                last.clear();
                            }
                            let before = last.insert(key, value);
                            value > before.unwrap_or(0.0)
                        } else {
                            value > 0.0
                        };
                        if grew {
                            graph.record(&client, &server);
                            recorded += 1;
                        }
                    }
                }
            }
        }
        recorded
    }

    /// Series forgotten because [`MAX_SERIES`] was reached, so far.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn attr(attrs: &[vigil_core::otlp::common::v1::KeyValue], key: &str) -> Option<String> {
    vigil_core::attrs::get(attrs, key)
        .map(value_to_string)
        .filter(|s| !s.is_empty())
}

/// The attributes as one sorted `k=v,…` string: the identity of a series.
fn attrs_key(attrs: &[vigil_core::otlp::common::v1::KeyValue]) -> String {
    let mut kv: Vec<String> = attrs
        .iter()
        .map(|kv| {
            let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
            format!("{}={}", kv.key, v.map(value_to_string).unwrap_or_default())
        })
        .collect();
    kv.sort();
    kv.join(",")
}

/// `correlation` in a metrics pipeline: feeds the host's dependency graph from the edge series
/// that pass, and passes every metric on unchanged.
pub struct GraphFeed {
    label: String,
    obs: vigil_core::ProcessorObs,
    next: Arc<dyn Consumer>,
    feed: EdgeFeed,
    graph: OnceLock<Arc<DependencyGraph>>,
    evicted_reported: std::sync::atomic::AtomicU64,
    tasks: vigil_core::Tasks,
}

impl GraphFeed {
    /// Builds the feed; it reaches the graph at `start`.
    pub fn new(set: vigil_core::Settings, next: Arc<dyn Consumer>) -> Self {
        GraphFeed {
            label: set.id.to_string(),
            obs: set.processor_obs(Signal::Metrics),
            next,
            feed: EdgeFeed::default(),
            graph: OnceLock::new(),
            evicted_reported: Default::default(),
            tasks: set.tasks,
        }
    }
}

#[async_trait]
impl Component for GraphFeed {
    async fn start(&self, host: &Host) -> anyhow::Result<()> {
        let graph = host
            .service(&super::KEY)
            .map_err(|e| anyhow::anyhow!("processors::{}: {e}", self.label))?;
        let _ = self.graph.set(Arc::clone(&graph));
        // With no `servicegraph` connector in this process nothing else ages the graph's edges.
        self.tasks.spawn_ticker(Duration::from_secs(60), move || {
            graph.expire(EDGE_TTL);
            std::future::ready(())
        });
        Ok(())
    }

    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}

#[async_trait]
impl Consumer for GraphFeed {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        if let (Telemetry::Metrics(batch), Some(graph)) = (&data, self.graph.get()) {
            let recorded = self.feed.ingest(graph, batch);
            if recorded > 0 {
                metrics::counter!("vigil_correlation_graph_edges_recorded", "processor" => self.label.clone())
                    .increment(recorded as u64);
            }
            let evicted = self.feed.evicted();
            let before = self
                .evicted_reported
                .swap(evicted, std::sync::atomic::Ordering::Relaxed);
            if evicted > before {
                metrics::counter!("vigil_correlation_graph_series_evicted", "processor" => self.label.clone())
                    .increment(evicted - before);
            }
        }
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;
    use vigil_core::otlp::metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ScopeMetrics, Sum,
    };
    use vigil_detect::incident::Topology;

    fn edges(points: &[(&str, &str, &str, i64, u64)]) -> Vec<ResourceMetrics> {
        let data_points = points
            .iter()
            .map(|(c, s, ct, v, start)| {
                let mut attributes = vec![kv_str("client", *c), kv_str("server", *s)];
                if !ct.is_empty() {
                    attributes.push(kv_str("connection_type", *ct));
                }
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano: *start,
                    time_unix_nano: start + 1,
                    value: Some(number_data_point::Value::AsInt(*v)),
                    ..Default::default()
                }
            })
            .collect();
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: REQUEST_TOTAL.into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    #[test]
    fn three_agents_edges_join_into_one_graph_and_user_is_no_hub() {
        let g = DependencyGraph::default();
        let feed = EdgeFeed::default();
        // Node A: frontend's calls to svc-1 left unpaired there, named by peer.service.
        feed.ingest(&g, &edges(&[("frontend", "svc-1", "virtual_node", 5, 1)]));
        // Node B: svc-1's servers called from "user" (frontend is on A), and its call to svc-4.
        feed.ingest(
            &g,
            &edges(&[
                ("user", "svc-1", "virtual_node", 5, 2),
                ("svc-1", "svc-4", "virtual_node", 3, 2),
            ]),
        );
        // Node C: svc-4 calls svc-5 on the same node.
        feed.ingest(&g, &edges(&[("svc-4", "svc-5", "", 2, 3)]));
        assert_eq!(g.callers("svc-1"), vec!["frontend".to_string()]);
        assert_eq!(g.callees("svc-1"), vec!["svc-4".to_string()]);
        assert_eq!(g.callees("svc-4"), vec!["svc-5".to_string()]);
        assert!(g.callees("user").is_empty());
    }

    #[test]
    fn an_edge_whose_count_stands_still_is_not_refreshed() {
        let g = DependencyGraph::default();
        let feed = EdgeFeed::default();
        assert_eq!(feed.ingest(&g, &edges(&[("a", "b", "", 4, 1)])), 1);
        assert_eq!(feed.ingest(&g, &edges(&[("a", "b", "", 4, 1)])), 0);
        assert_eq!(feed.ingest(&g, &edges(&[("a", "b", "", 6, 1)])), 1);
        // Another agent's series of the same edge (another start time) is its own.
        assert_eq!(feed.ingest(&g, &edges(&[("a", "b", "", 1, 9)])), 1);
        // A count of zero is an edge with no calls yet.
        assert_eq!(feed.ingest(&g, &edges(&[("c", "d", "", 0, 1)])), 0);
        assert_eq!(g.edges(), vec![("a".to_string(), "b".to_string())]);
    }
}
