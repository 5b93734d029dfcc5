//! `add_service_as_attribute`: the Kubernetes Service whose Endpoints select a pod, for the
//! `Service` label of the pod's metrics, as otelcol's service store builds it: core/v1 Endpoints
//! of every namespace (what AWS's published Container Insights ClusterRole lets the collector
//! list: `pods`, `nodes`, `endpoints`, not EndpointSlices), each ready address whose `targetRef`
//! is a Pod naming that Endpoints' Service.
//!
//! otelcol watches the Endpoints and rebuilds its map every 10 s at most; vigil lists them (paged)
//! at most every 10 s, on a collection, so nothing runs between collections. Only pods on this
//! node are kept, so the map never holds more than the node's pods; the list itself stops at
//! [`MAX_ENDPOINTS`] objects, the rest counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_k8s::k8s_openapi::api::core::v1::Endpoints;
use vigil_k8s::kube::api::{Api, ListParams};

/// otelcol's `refreshIntervalService`.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Endpoints objects (one per Service) read in one refresh at most; a cluster past it has its
/// remaining Services unnamed until it shrinks, and the excess is counted
/// (`vigil_awscontainerinsight_dropped{what="endpoints"}`).
pub const MAX_ENDPOINTS: usize = 10_000;
/// One list page, so a large cluster is never one huge response.
const PAGE: u32 = 500;

/// `(namespace, pod name)` -> the Service named in `Service`.
pub type ServiceMap = HashMap<(String, String), String>;

/// The map of the last refresh and when it was made.
#[derive(Debug, Default)]
pub struct Services {
    pub map: Arc<ServiceMap>,
    last: Option<Instant>,
}

impl Services {
    /// Whether a refresh is due at `now` (always before the first).
    pub fn due(&self, now: Instant) -> bool {
        self.last
            .is_none_or(|t| now.saturating_duration_since(t) >= REFRESH)
    }

    /// Lists the Endpoints and rebuilds the map for the `local` pods. On an API error the last
    /// map is kept (the label is not mandatory, as in otelcol) and the next refresh waits
    /// [`REFRESH`] all the same, so a failing API server is not asked on every collection.
    /// Returns the Endpoints objects past [`MAX_ENDPOINTS`].
    pub async fn refresh(
        &mut self,
        client: &vigil_k8s::kube::Client,
        local: &HashSet<(String, String)>,
        now: Instant,
    ) -> Result<u64, vigil_k8s::kube::Error> {
        self.last = Some(now);
        let api: Api<Endpoints> = Api::all(client.clone());
        let mut lp = ListParams::default().limit(PAGE);
        let mut map = ServiceMap::new();
        let mut seen = 0usize;
        loop {
            let page = api.list(&lp).await?;
            let more = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            let n = page.items.len();
            for ep in page.items.iter().take(MAX_ENDPOINTS.saturating_sub(seen)) {
                fold(&mut map, ep, local);
            }
            seen += n;
            let over = seen.saturating_sub(MAX_ENDPOINTS) as u64;
            match more {
                Some(t) if seen < MAX_ENDPOINTS => lp = lp.continue_token(&t),
                Some(_) => {
                    // The pages not read: the API server's count of them when it gives one,
                    // else at least one.
                    let rest = page
                        .metadata
                        .remaining_item_count
                        .map_or(1, |r| r.max(1) as u64);
                    self.map = Arc::new(map);
                    return Ok(over + rest);
                }
                None => {
                    self.map = Arc::new(map);
                    return Ok(over);
                }
            }
        }
    }
}

/// Folds one Endpoints object in: each ready address (`subsets[].addresses`, not
/// `notReadyAddresses`, as otelcol) whose target is a pod in `local` is named by this Service.
/// Where several Services select a pod otelcol takes the first of an unordered set; vigil takes
/// the smallest name, so the label does not flap between collections.
pub fn fold(map: &mut ServiceMap, ep: &Endpoints, local: &HashSet<(String, String)>) {
    let Some(service) = ep.metadata.name.as_deref().filter(|n| !n.is_empty()) else {
        return;
    };
    for subset in ep.subsets.iter().flatten() {
        for a in subset.addresses.iter().flatten() {
            let Some(t) = a
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
            else {
                continue;
            };
            let (Some(ns), Some(pod)) = (t.namespace.as_deref(), t.name.as_deref()) else {
                continue;
            };
            let key = (ns.to_string(), pod.to_string());
            if !local.contains(&key) {
                continue;
            }
            match map.get_mut(&key) {
                Some(s) if s.as_str() <= service => {}
                Some(s) => *s = service.to_string(),
                None => {
                    map.insert(key, service.to_string());
                }
            }
        }
    }
}
