//! A Service's backends, followed through its EndpointSlices: what the `loadbalancing` exporter's
//! `k8s` resolver routes over. The slices are watched through [`crate::watch`] (so a dropped watch
//! resumes and a `410 Gone` re-lists in one step, never emptying the set in between), each slice is
//! trimmed to its ready endpoints' addresses (or hostnames), and the caller is told the whole sorted
//! `host:port` list whenever it changes. A change to one slice moves only that slice's endpoints.

use crate::watch::{watch, Change, WatchLimits};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::time::Duration;

/// The label the EndpointSlice controller puts on every slice of a Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where a pod finds its own namespace.
const IN_CLUSTER_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A Service by name and namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    pub name: String,
    pub namespace: String,
}

impl ServiceName {
    /// `name.namespace`, split at the first dot as otelcol does; a bare `name` is in the pod's own
    /// namespace, else in `default`.
    pub fn parse(service: &str) -> ServiceName {
        let service = service.trim();
        match service.split_once('.') {
            Some((name, ns)) => ServiceName {
                name: name.to_string(),
                namespace: ns.to_string(),
            },
            None => ServiceName {
                name: service.to_string(),
                namespace: std::fs::read_to_string(IN_CLUSTER_NAMESPACE)
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "default".to_string()),
            },
        }
    }
}

/// How the backends are named and where they listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendNaming {
    /// Ports on every endpoint; none means the bare host.
    pub ports: Vec<u16>,
    /// `<hostname>.<service>.<namespace>` instead of the address (a StatefulSet behind a headless
    /// Service); an endpoint without a hostname is then left out and counted.
    pub return_hostnames: bool,
}

/// One slice, trimmed to what routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub name: String,
    /// Addresses (or hostnames) of its ready endpoints.
    pub hosts: Vec<String>,
    /// Ready endpoints left out for having no hostname (with `return_hostnames`).
    pub missing_hostnames: usize,
}

/// Trims a slice. An endpoint whose `conditions.ready` is false (a pod starting or terminating) is
/// left out, as the core/v1 Endpoints' `notReadyAddresses` were; an absent `ready` means ready, as
/// the API defines it.
pub fn trim(slice: EndpointSlice, return_hostnames: bool) -> Option<Slice> {
    let name = slice.metadata.name?;
    let mut hosts = Vec::new();
    let mut missing_hostnames = 0;
    for ep in slice.endpoints {
        if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            continue;
        }
        if return_hostnames {
            match ep.hostname.filter(|h| !h.is_empty()) {
                Some(h) => hosts.push(h),
                None => missing_hostnames += 1,
            }
        } else {
            hosts.extend(ep.addresses);
        }
    }
    Some(Slice {
        name,
        hosts,
        missing_hostnames,
    })
}

/// The current slices of a Service.
#[derive(Debug, Default)]
pub struct Backends {
    slices: BTreeMap<String, Vec<String>>,
}

impl Backends {
    /// Applies one change of the watched set.
    pub fn apply(&mut self, change: Change<Slice>) {
        match change {
            Change::Replace(all) => {
                self.slices = all.into_iter().map(|s| (s.name, s.hosts)).collect();
            }
            Change::Apply(s) => {
                self.slices.insert(s.name, s.hosts);
            }
            Change::Delete(s) => {
                self.slices.remove(&s.name);
            }
        }
    }

    /// Every backend as `host:port` (IPv6 bracketed), sorted and without duplicates: the same
    /// list otelcol's resolver builds, so a mixed fleet places keys alike.
    pub fn endpoints(&self, svc: &ServiceName, naming: &BackendNaming) -> Vec<String> {
        let mut out = Vec::new();
        for host in self.slices.values().flatten() {
            let host = if naming.return_hostnames {
                format!("{host}.{}.{}", svc.name, svc.namespace)
            } else if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            if naming.ports.is_empty() {
                out.push(host);
            } else {
                out.extend(naming.ports.iter().map(|p| format!("{host}:{p}")));
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Follows `svc`'s EndpointSlices for as long as the future runs, awaiting `on_change` with the
/// whole backend list each time it changes (the first time once the first list is complete).
/// `timeout` bounds each watch request, as otelcol's `timeout` bounds its list-watch calls.
/// Errors are retried inside [`watch`]; the backends last known stay meanwhile.
pub async fn follow<F, Fut>(
    client: kube::Client,
    svc: ServiceName,
    naming: BackendNaming,
    timeout: Duration,
    component: &str,
    mut on_change: F,
) where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let api: kube::Api<EndpointSlice> = kube::Api::namespaced(client, &svc.namespace);
    let config = watcher::Config::default()
        .labels(&format!("{SERVICE_NAME_LABEL}={}", svc.name))
        .timeout(u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX));
    let missing = metrics::counter!("vigil_k8s_endpoints_missing_hostnames", "component" => component.to_string());
    let return_hostnames = naming.return_hostnames;
    let mut backends = Backends::default();
    let mut last: Option<Vec<String>> = None;
    watch(
        api,
        config,
        WatchLimits::default(),
        component,
        |s: EndpointSlice| trim(s, return_hostnames),
        |change: Change<Slice>| {
            let skipped: usize = match &change {
                Change::Replace(all) => all.iter().map(|s| s.missing_hostnames).sum(),
                Change::Apply(s) => s.missing_hostnames,
                Change::Delete(_) => 0,
            };
            if skipped > 0 {
                missing.increment(skipped as u64);
                tracing::warn!(component, service = %svc.name, skipped, "endpoints without a hostname left out (return_hostnames needs a headless Service over a StatefulSet)");
            }
            backends.apply(change);
            let now = backends.endpoints(&svc, &naming);
            let changed = last.as_ref() != Some(&now);
            if changed {
                last = Some(now.clone());
            }
            let fut = changed.then(|| on_change(now));
            async move {
                if let Some(f) = fut {
                    f.await;
                }
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use kube::api::ObjectMeta;

    fn slice(name: &str, eps: &[(&str, Option<&str>, Option<bool>)]) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints: eps
                .iter()
                .map(|(ip, host, ready)| Endpoint {
                    addresses: vec![ip.to_string()],
                    hostname: host.map(String::from),
                    conditions: Some(EndpointConditions {
                        ready: *ready,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ports: None,
        }
    }

    fn svc() -> ServiceName {
        ServiceName::parse("gateway.observability")
    }

    #[test]
    fn service_names_split_at_the_first_dot() {
        assert_eq!(
            ServiceName::parse("gw.obs.extra"),
            ServiceName {
                name: "gw".into(),
                namespace: "obs.extra".into()
            }
        );
    }

    #[test]
    fn ready_addresses_on_every_port_and_only_the_changed_slice_moves() {
        let naming = BackendNaming {
            ports: vec![4317, 55690],
            return_hostnames: false,
        };
        let mut b = Backends::default();
        b.apply(Change::Replace(vec![
            trim(
                slice(
                    "gw-a",
                    &[("10.0.0.1", None, Some(true)), ("10.0.0.2", None, None)],
                ),
                false,
            )
            .unwrap(),
            trim(
                slice(
                    "gw-b",
                    &[
                        ("10.0.0.3", None, Some(false)),
                        ("fd00::4", None, Some(true)),
                    ],
                ),
                false,
            )
            .unwrap(),
        ]));
        assert_eq!(
            b.endpoints(&svc(), &naming),
            vec![
                "10.0.0.1:4317",
                "10.0.0.1:55690",
                "10.0.0.2:4317",
                "10.0.0.2:55690",
                "[fd00::4]:4317",
                "[fd00::4]:55690"
            ]
        );
        b.apply(Change::Delete(trim(slice("gw-a", &[]), false).unwrap()));
        assert_eq!(
            b.endpoints(&svc(), &naming),
            vec!["[fd00::4]:4317", "[fd00::4]:55690"]
        );
    }

    #[test]
    fn hostnames_are_qualified_by_service_and_namespace() {
        let naming = BackendNaming {
            ports: vec![4317],
            return_hostnames: true,
        };
        let s = trim(
            slice(
                "gw-a",
                &[
                    ("10.0.0.1", Some("gw-0"), Some(true)),
                    ("10.0.0.2", None, Some(true)),
                ],
            ),
            true,
        )
        .unwrap();
        assert_eq!(s.missing_hostnames, 1);
        let mut b = Backends::default();
        b.apply(Change::Apply(s));
        assert_eq!(
            b.endpoints(&svc(), &naming),
            vec!["gw-0.gateway.observability:4317"]
        );
    }
}
