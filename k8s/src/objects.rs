//! Whole objects of any resource, for the receivers that turn them into logs (`k8sobjects`,
//! `k8s_events`): discovery of the resources the cluster serves (what otelcol's
//! `ServerPreferredResources` answers), paged pulls, and a watch that reports each change with its
//! type (ADDED, MODIFIED, DELETED) and survives a dropped connection and a `410 Gone`.
//!
//! The watch is written on kube's `Api::watch` rather than on kube's watcher ([`crate::watch`]),
//! whose events do not say whether an object was added or modified. It keeps, per object, only the
//! last resource version and UID it reported (bounded, [`WatchOptions::max_tracked`]): a dropped
//! watch resumes from the last version seen, so the API server replays what was missed, and an
//! event for a version already reported is not reported again; after a `410 Gone` it lists again
//! and reports the difference with what it knew (new objects as ADDED, changed ones as MODIFIED,
//! vanished ones as DELETED with their last known identity), so no change is lost or doubled.
//! otelcol re-lists only to find a new version and reports nothing of what changed meanwhile.

use crate::watch::Counters;
use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams, WatchEvent, WatchParams};
use kube::discovery::ApiResource;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

/// One resource the API server serves, from discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovered {
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The name in paths (`pods`, `events`), what `k8sobjects`' `name` means.
    pub plural: String,
    pub namespaced: bool,
}

impl Discovered {
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: if self.group.is_empty() {
                self.version.clone()
            } else {
                format!("{}/{}", self.group, self.version)
            },
            kind: self.kind.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `group/version, Resource=plural`, as client-go prints a GroupVersionResource.
    pub fn gvr(&self) -> String {
        format!(
            "{}, Resource={}",
            self.api_resource().api_version,
            self.plural
        )
    }
}

/// The preferred version of every group's resources, the core group first (as client-go's
/// discovery orders them, so that `events` without a `group` is core/v1's). A group whose
/// resources cannot be read is skipped with a warning, as otelcol goes on with a partial answer.
pub async fn preferred_resources(client: &kube::Client) -> Result<Vec<Discovered>, kube::Error> {
    let mut out = Vec::new();
    let core = client.list_core_api_versions().await?;
    if let Some(v) = core.versions.first() {
        let list = client.list_core_api_resources(v).await?;
        push_resources(&mut out, "", v, list);
    }
    for g in client.list_api_groups().await?.groups {
        let Some(v) = g
            .preferred_version
            .clone()
            .or_else(|| g.versions.first().cloned())
        else {
            continue;
        };
        match client.list_api_group_resources(&v.group_version).await {
            Ok(list) => push_resources(&mut out, &g.name, &v.version, list),
            Err(e) => {
                tracing::warn!(group = %v.group_version, error = %e, "discovery of an API group failed; skipping it")
            }
        }
    }
    Ok(out)
}

fn push_resources(
    out: &mut Vec<Discovered>,
    group: &str,
    version: &str,
    list: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
) {
    for r in list.resources {
        // Subresources (`pods/log`) are not collections.
        if r.name.contains('/') {
            continue;
        }
        out.push(Discovered {
            group: group.to_string(),
            version: version.to_string(),
            kind: r.kind,
            plural: r.name,
            namespaced: r.namespaced,
        });
    }
}

/// The resource `name` in `group` (or, when no resource of that name is in `group`, the first of
/// that name, as otelcol picks); an unknown name is an error listing what the cluster serves.
pub fn resolve<'a>(
    all: &'a [Discovered],
    name: &str,
    group: &str,
) -> Result<&'a Discovered, String> {
    let mut named = all.iter().filter(|d| d.plural == name).peekable();
    let Some(first) = named.peek().copied() else {
        let mut names: Vec<&str> = all.iter().map(|d| d.plural.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        return Err(format!(
            "resource not found: {name}. Available resources in cluster: [{}]",
            names.join(" ")
        ));
    };
    Ok(named.find(|d| d.group == group).unwrap_or(first))
}

/// An object as JSON with its `apiVersion` and `kind` (list items come without them; otelcol's
/// dynamic client fills them in from the list).
fn to_json(mut o: DynamicObject, ar: &ApiResource) -> Value {
    if o.types.is_none() {
        o.types = Some(kube::api::TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Lists `api` page by page (`page_size` a page) with `lp`'s selectors and hands each page to
/// `emit` as it arrives, so that a large list is never held whole. Stops after `max_objects`
/// objects; the rest are counted as `vigil_k8s_watch_dropped_objects`. Returns how many were
/// handed over.
pub async fn pull<F, Fut>(
    api: &Api<DynamicObject>,
    ar: &ApiResource,
    lp: &ListParams,
    page_size: u32,
    max_objects: usize,
    component: &str,
    mut emit: F,
) -> Result<usize, kube::Error>
where
    F: FnMut(Vec<Value>) -> Fut,
    Fut: Future<Output = ()>,
{
    let c = Counters::new(component, &ar.plural);
    c.lists.increment(1);
    let mut lp = lp.clone().limit(page_size);
    let mut sent = 0;
    loop {
        let page = match api.list(&lp).await {
            Ok(p) => p,
            Err(e) => {
                c.errors.increment(1);
                return Err(e);
            }
        };
        let more = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        let room = max_objects.saturating_sub(sent);
        let n = page.items.len();
        if n > room {
            c.dropped.increment((n - room) as u64);
        }
        let items: Vec<Value> = page
            .items
            .into_iter()
            .take(room)
            .map(|o| to_json(o, ar))
            .collect();
        sent += items.len();
        if !items.is_empty() {
            emit(items).await;
        }
        match more {
            Some(token) if sent < max_objects => lp.continue_token = Some(token),
            Some(_) => {
                // The rest of the list is not read: count it as dropped only as far as known.
                tracing::warn!(component, resource = %ar.plural, max_objects, "pull stopped at its object limit");
                return Ok(sent);
            }
            None => return Ok(sent),
        }
    }
}

/// A watch event's type, as otelcol writes it into the log body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchType {
    Added,
    Modified,
    Deleted,
}

impl WatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchType::Added => "ADDED",
            WatchType::Modified => "MODIFIED",
            WatchType::Deleted => "DELETED",
        }
    }
}

/// How [`watch_objects`] watches.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Watch from this version without listing first (otelcol's `resource_version`); empty or
    /// `"0"` lists first.
    pub resource_version: Option<String>,
    /// Report the first list's objects as ADDED (otelcol's `include_initial_state`).
    pub include_initial_state: bool,
    /// Objects whose version is remembered (to drop replays and to compare after a re-list);
    /// changes of objects beyond it are still reported, counted as
    /// `vigil_k8s_watch_dropped_objects`, but cannot be compared after a `410 Gone`.
    pub max_tracked: usize,
    pub page_size: u32,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            label_selector: None,
            field_selector: None,
            resource_version: None,
            include_initial_state: false,
            max_tracked: 100_000,
            page_size: 500,
        }
    }
}

/// What the watch remembers of an object it reported.
struct Seen {
    rv: String,
    uid: String,
}

fn key(o: &DynamicObject) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or(""),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

struct Watcher<'a> {
    api: &'a Api<DynamicObject>,
    ar: &'a ApiResource,
    opts: &'a WatchOptions,
    c: Counters,
    known: HashMap<String, Seen>,
    /// Whether `known` holds a full list (so a re-list can be compared with it).
    baseline: bool,
    rv: String,
}

impl Watcher<'_> {
    fn remember(&mut self, k: String, o: &DynamicObject) {
        let seen = Seen {
            rv: o.metadata.resource_version.clone().unwrap_or_default(),
            uid: o.metadata.uid.clone().unwrap_or_default(),
        };
        if self.known.len() >= self.opts.max_tracked && !self.known.contains_key(&k) {
            self.c.dropped.increment(1);
            return;
        }
        self.known.insert(k, seen);
    }

    /// Lists everything and, unless this is the first list, reports what changed since.
    async fn relist<F, Fut>(&mut self, initial: bool, emit: &mut F) -> Result<(), kube::Error>
    where
        F: FnMut(WatchType, Value) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.c.lists.increment(1);
        let mut lp = ListParams::default().limit(self.opts.page_size);
        lp.label_selector = self.opts.label_selector.clone();
        lp.field_selector = self.opts.field_selector.clone();
        let report_all = initial && self.opts.include_initial_state;
        let compare = !initial && self.baseline;
        let mut old = std::mem::take(&mut self.known);
        let mut list_rv = String::new();
        loop {
            let page = match self.api.list(&lp).await {
                Ok(p) => p,
                Err(e) => {
                    // Keep what was known; the next attempt compares with it again.
                    self.known = old;
                    return Err(e);
                }
            };
            list_rv = page.metadata.resource_version.clone().unwrap_or(list_rv);
            let more = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            for o in page.items {
                let k = key(&o);
                let rv = o.metadata.resource_version.clone().unwrap_or_default();
                let change = match old.remove(&k) {
                    _ if report_all => Some(WatchType::Added),
                    _ if !compare => None,
                    None => Some(WatchType::Added),
                    Some(s) if s.rv != rv => Some(WatchType::Modified),
                    Some(_) => None,
                };
                self.remember(k, &o);
                if let Some(t) = change {
                    self.c.events.increment(1);
                    emit(t, to_json(o, self.ar)).await;
                }
            }
            match more {
                Some(t) => lp.continue_token = Some(t),
                None => break,
            }
        }
        if compare {
            for (k, s) in old {
                let (ns, name) = k.split_once('/').unwrap_or(("", &k));
                let mut md = json!({"name": name, "uid": s.uid, "resourceVersion": s.rv});
                if !ns.is_empty() {
                    md["namespace"] = json!(ns);
                }
                self.c.events.increment(1);
                emit(
                    WatchType::Deleted,
                    json!({"apiVersion": self.ar.api_version, "kind": self.ar.kind, "metadata": md}),
                )
                .await;
            }
        }
        self.baseline = true;
        self.rv = list_rv;
        Ok(())
    }

    /// One watch connection from `self.rv`; `Ok(true)` after a `410 Gone`, `Ok(false)` when the
    /// stream ended (timeout, dropped connection) and a watch from `self.rv` should follow.
    async fn watch_once<F, Fut>(&mut self, emit: &mut F) -> Result<bool, kube::Error>
    where
        F: FnMut(WatchType, Value) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut wp = WatchParams::default().timeout(290);
        wp.bookmarks = true;
        wp.label_selector = self.opts.label_selector.clone();
        wp.field_selector = self.opts.field_selector.clone();
        let stream = match self.api.watch(&wp, &self.rv).await {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Ok(true),
            Err(e) => return Err(e),
        };
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            let (t, o) = match ev {
                Ok(WatchEvent::Added(o)) => (WatchType::Added, o),
                Ok(WatchEvent::Modified(o)) => (WatchType::Modified, o),
                Ok(WatchEvent::Deleted(o)) => (WatchType::Deleted, o),
                Ok(WatchEvent::Bookmark(b)) => {
                    self.rv = b.metadata.resource_version;
                    continue;
                }
                Ok(WatchEvent::Error(s)) if s.code == 410 => return Ok(true),
                Ok(WatchEvent::Error(s)) => {
                    self.c.errors.increment(1);
                    tracing::warn!(resource = %self.ar.plural, code = s.code, message = %s.message, "watch error event; watching again");
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            let k = key(&o);
            let rv = o.metadata.resource_version.clone().unwrap_or_default();
            if !rv.is_empty() {
                self.rv = rv.clone();
            }
            // A replay of a version already reported (after a resumed watch) is not news.
            if t != WatchType::Deleted && self.known.get(&k).is_some_and(|s| s.rv == rv) {
                continue;
            }
            if t == WatchType::Deleted {
                self.known.remove(&k);
            } else {
                self.remember(k, &o);
            }
            self.c.events.increment(1);
            emit(t, to_json(o, self.ar)).await;
        }
        Ok(false)
    }
}

/// Watches `api` for as long as the returned future runs, awaiting `emit` with every change (the
/// watch waits while it works, so a slow pipeline slows the watch; an API server that finds the
/// watch too slow cuts it, and the watch resumes from the last version it saw). Errors are
/// logged, counted as `vigil_k8s_watch_errors{component,resource}` and retried with a backoff of
/// 100 ms doubling to 30 s. Run it in the component's task set and let its stop cancel it.
pub async fn watch_objects<F, Fut>(
    api: Api<DynamicObject>,
    ar: ApiResource,
    opts: WatchOptions,
    component: &str,
    mut emit: F,
) where
    F: FnMut(WatchType, Value) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut w = Watcher {
        api: &api,
        ar: &ar,
        opts: &opts,
        c: Counters::new(component, &ar.plural),
        known: HashMap::new(),
        baseline: false,
        rv: String::new(),
    };
    let mut backoff = Duration::from_millis(100);
    let mut need_list = match opts.resource_version.as_deref() {
        Some(v) if !v.is_empty() && v != "0" => {
            w.rv = v.to_string();
            false
        }
        _ => true,
    };
    let mut initial = true;
    loop {
        if need_list {
            match w.relist(initial, &mut emit).await {
                Ok(()) => need_list = false,
                Err(e) => {
                    w.c.errors.increment(1);
                    tracing::warn!(component, resource = %ar.plural, error = %e, "list failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        initial = false;
        match w.watch_once(&mut emit).await {
            Ok(true) => {
                tracing::info!(component, resource = %ar.plural, "resource version too old (410 Gone); listing again");
                need_list = true;
                backoff = Duration::from_millis(100);
            }
            Ok(false) => {
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                w.c.errors.increment(1);
                tracing::warn!(component, resource = %ar.plural, error = %e, "watch failed; watching again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(group: &str, plural: &str) -> Discovered {
        Discovered {
            group: group.into(),
            version: "v1".into(),
            kind: "X".into(),
            plural: plural.into(),
            namespaced: true,
        }
    }

    #[test]
    fn resolve_picks_the_group_else_the_first() {
        let all = [d("", "events"), d("events.k8s.io", "events"), d("", "pods")];
        assert_eq!(resolve(&all, "events", "").unwrap().group, "");
        assert_eq!(
            resolve(&all, "events", "events.k8s.io").unwrap().group,
            "events.k8s.io"
        );
        assert_eq!(resolve(&all, "events", "nope").unwrap().group, "");
        let e = resolve(&all, "widgets", "").unwrap_err();
        assert_eq!(
            e,
            "resource not found: widgets. Available resources in cluster: [events pods]"
        );
    }
}
