//! One list/watch loop for every component that keeps a copy of a Kubernetes resource. kube's
//! watcher speaks the protocol (list with a resource version, `?watch=true` from it, bookmarks,
//! a re-list after `410 Gone`, a new watch from the last version after a dropped connection);
//! this loop turns its events into [`Change`]s of a trimmed type the caller chooses, so that only
//! the fields a component uses are ever kept, and a re-list replaces the copy in one step: an
//! object deleted while the watch was down disappears, and none is seen twice.

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use metrics::Counter;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// What changed in the watched set, already trimmed by the caller's function.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<T> {
    /// A full (re-)list finished: this is the whole set now. Anything not in it is gone.
    Replace(Vec<T>),
    /// An object was added or modified.
    Apply(T),
    /// An object was deleted.
    Delete(T),
}

/// Bounds of one watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchLimits {
    /// Objects kept from one list; the rest are dropped and counted
    /// (`vigil_k8s_watch_dropped_objects`).
    pub max_objects: usize,
    /// Objects asked for per list page, so a large list is never one response.
    pub page_size: u32,
}

impl Default for WatchLimits {
    fn default() -> Self {
        WatchLimits {
            max_objects: 10_000,
            page_size: 500,
        }
    }
}

/// Counters of one resource's lists and watches; [`crate::objects`] counts its pulls in the same ones.
pub(crate) struct Counters {
    pub(crate) lists: Counter,
    pub(crate) errors: Counter,
    pub(crate) events: Counter,
    pub(crate) dropped: Counter,
}

impl Counters {
    pub(crate) fn new(component: &str, resource: &str) -> Counters {
        let labels = [
            ("component", component.to_string()),
            ("resource", resource.to_string()),
        ];
        Counters {
            lists: metrics::counter!("vigil_k8s_watch_lists", &labels),
            errors: metrics::counter!("vigil_k8s_watch_errors", &labels),
            events: metrics::counter!("vigil_k8s_watch_events", &labels),
            dropped: metrics::counter!("vigil_k8s_watch_dropped_objects", &labels),
        }
    }
}

/// Lists and watches `api` with `config` for as long as the returned future runs, awaiting `apply`
/// with each change of the trimmed set (the watch waits while it works, so a slow consumer slows
/// the stream instead of queueing changes). Errors (an unreachable server, a refused request, a
/// broken stream) are logged, counted as `vigil_k8s_watch_errors{component,resource}` and retried
/// with kube's default backoff; the future never ends on its own, so run it in the component's
/// task set and let its stop cancel it.
pub async fn watch<K, T, F, Fut>(
    api: kube::Api<K>,
    config: watcher::Config,
    limits: WatchLimits,
    component: &str,
    trim: impl Fn(K) -> Option<T>,
    mut apply: F,
) where
    F: FnMut(Change<T>) -> Fut,
    Fut: std::future::Future<Output = ()>,
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let resource = K::plural(&Default::default()).into_owned();
    let counters = Counters::new(component, &resource);
    let config = config.page_size(limits.page_size);
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    // Objects of a list in progress: the copy is replaced only when the list is complete.
    let mut listing: Option<Vec<T>> = None;
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => {
                counters.lists.increment(1);
                listing = Some(Vec::new());
            }
            Ok(Event::InitApply(obj)) => {
                let buf = listing.get_or_insert_with(Vec::new);
                if buf.len() >= limits.max_objects {
                    counters.dropped.increment(1);
                    continue;
                }
                if let Some(t) = trim(obj) {
                    buf.push(t);
                }
            }
            Ok(Event::InitDone) => {
                let all = listing.take().unwrap_or_default();
                tracing::debug!(component, %resource, objects = all.len(), "list complete");
                apply(Change::Replace(all)).await;
            }
            Ok(Event::Apply(obj)) => {
                counters.events.increment(1);
                if let Some(t) = trim(obj) {
                    apply(Change::Apply(t)).await;
                }
            }
            Ok(Event::Delete(obj)) => {
                counters.events.increment(1);
                if let Some(t) = trim(obj) {
                    apply(Change::Delete(t)).await;
                }
            }
            Err(e) => {
                counters.errors.increment(1);
                tracing::warn!(component, %resource, error = %e, "watch failed; retrying with backoff");
            }
        }
    }
}
