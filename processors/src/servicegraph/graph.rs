//! The live service dependency graph the `servicegraph` connector builds from paired spans. It is a
//! typed host service under [`KEY`] so that `correlation` can ask which services are related,
//! without a global and without the two components knowing each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vigil_core::lock;
use vigil_detect::incident::Topology;

/// The host service that holds the graph: whichever of `servicegraph` and `correlation` starts
/// first creates it, and the other gets the same one.
pub const KEY: vigil_core::ServiceKey<DependencyGraph> =
    vigil_core::ServiceKey::new("vigil.servicegraph");

/// Edges kept at most; beyond it the least recently seen edge is dropped. A graph this big is
/// a misconfiguration (span names as services), and the cap keeps it from growing without bound.
const MAX_EDGES: usize = 100_000;

/// Client → server edges with the time each was last seen.
#[derive(Debug, Default)]
pub struct DependencyGraph {
    edges: Mutex<BTreeMap<(String, String), Instant>>,
}

impl DependencyGraph {
    /// Records that `client` called `server` just now.
    pub fn record(&self, client: &str, server: &str) {
        let mut e = lock(&self.edges);
        e.insert((client.to_string(), server.to_string()), Instant::now());
        if e.len() > MAX_EDGES {
            if let Some(oldest) = e.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                e.remove(&oldest);
            }
        }
    }

    /// Forgets edges not seen for `ttl`.
    pub fn expire(&self, ttl: Duration) {
        let mut e = lock(&self.edges);
        e.retain(|_, t| t.elapsed() < ttl);
    }

    /// Every edge as (client, server), sorted.
    pub fn edges(&self) -> Vec<(String, String)> {
        let e = lock(&self.edges);
        e.keys().cloned().collect()
    }
}

impl Topology for DependencyGraph {
    fn callees(&self, service: &str) -> Vec<String> {
        let e = lock(&self.edges);
        let out: BTreeSet<String> = e
            .keys()
            .filter(|(c, _)| c == service)
            .map(|(_, s)| s.clone())
            .collect();
        out.into_iter().collect()
    }

    fn callers(&self, service: &str) -> Vec<String> {
        let e = lock(&self.edges);
        let out: BTreeSet<String> = e
            .keys()
            .filter(|(_, s)| s == service)
            .map(|(c, _)| c.clone())
            .collect();
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_answer_both_directions() {
        let g = DependencyGraph::default();
        g.record("web", "api");
        g.record("api", "db");
        g.record("web", "api");
        assert_eq!(g.callees("web"), vec!["api".to_string()]);
        assert_eq!(g.callers("db"), vec!["api".to_string()]);
        assert_eq!(g.edges().len(), 2);
        g.expire(Duration::ZERO);
        assert!(g.edges().is_empty());
    }
}
