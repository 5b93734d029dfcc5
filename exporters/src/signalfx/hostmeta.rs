//! `sync_host_metadata`: once, from the first metrics batch, the host's properties (CPU, memory,
//! OS and kernel, read under `root_path` as otelcol-contrib reads them through gopsutil) are set
//! on the host's dimension through the SignalFx API: `PATCH
//! {api_url}/v2/dimension/{key}/{value}/_/sfxagent` with `customProperties`. The dimension is the
//! one upstream derives from the resource: `AWSUniqueId`, `gcp_id`, `azure_resource_id`, else
//! `host` from `host.name`. A 4xx answer other than 404 is final; anything else is tried again
//! after `dimension_client::send_delay`, at most [`ATTEMPTS`] times.

use reqwest::Url;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use vigil_core::attrs::get_str;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::Tasks;

/// How many times one update is tried.
pub const ATTEMPTS: usize = 3;

/// The dimension a resource's host is known by, as upstream's `ResourceToHostID` picks it.
pub fn host_dimension(attrs: &[KeyValue]) -> Option<(&'static str, String)> {
    let s = |k: &str| get_str(attrs, k).filter(|v| !v.is_empty());
    let account = s("cloud.account.id");
    let host_id = s("host.id");
    match s("cloud.provider") {
        Some("aws") => {
            if let (Some(h), Some(r), Some(a)) = (host_id, s("cloud.region"), account) {
                return Some(("AWSUniqueId", format!("{h}_{r}_{a}")));
            }
        }
        Some("gcp") => {
            if let (Some(a), Some(h)) = (account, host_id) {
                return Some(("gcp_id", format!("{a}_{h}")));
            }
        }
        Some("azure") => {
            if let (Some(a), Some(g), Some(vm)) =
                (account, s("azure.resourcegroup.name"), s("azure.vm.name"))
            {
                let id = format!("{a}/{g}/microsoft.compute/virtualmachines/{vm}");
                return Some(("azure_resource_id", id.to_lowercase()));
            }
        }
        _ => {}
    }
    s("host.name").map(|h| ("host", h.to_string()))
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// The value of `KEY="value"` (or unquoted) in an os-release style file.
fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

/// The host's properties, with upstream's names; `root` is `root_path` (the host's `/` seen from
/// a container). Empty when nothing could be read.
pub fn host_properties(root: &Path) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    if let Some(cpuinfo) = read(root, "proc/cpuinfo") {
        // gopsutil reports one entry per logical processor on Linux, each with one core.
        let n = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).trim())
            })
            .unwrap_or("");
        for k in ["host_physical_cpus", "host_cpu_cores", "host_logical_cpus"] {
            p.insert(k.into(), n.to_string());
        }
        p.insert("host_cpu_model".into(), model.to_string());
        p.insert("host_machine".into(), std::env::consts::ARCH.into());
        p.insert("host_processor".into(), std::env::consts::ARCH.into());
    }
    if let Some(kb) = read(root, "proc/meminfo").and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
    }) {
        p.insert("host_mem_total".into(), kb);
    }
    if let Some(rel) = read(root, "proc/sys/kernel/osrelease") {
        p.insert("host_kernel_name".into(), "linux".into());
        p.insert("host_kernel_release".into(), rel.trim().to_string());
        if let Some(v) = read(root, "proc/sys/kernel/version") {
            p.insert("host_kernel_version".into(), v.trim().to_string());
        }
    }
    let os_release = read(root, "etc/os-release");
    if let Some(id) = os_release.as_deref().and_then(|t| field(t, "ID")) {
        p.insert("host_os_name".into(), id);
    }
    let linux = read(root, "etc/lsb-release")
        .and_then(|t| field(&t, "DISTRIB_DESCRIPTION"))
        .or_else(|| os_release.as_deref().and_then(|t| field(t, "PRETTY_NAME")));
    if let Some(v) = linux {
        p.insert("host_linux_version".into(), v);
    }
    p
}

/// The one-time sync: armed at creation, fired by the first metrics batch.
pub struct HostSync {
    pub client: reqwest::Client,
    pub api: Url,
    /// Per request (`dimension_client::timeout`).
    pub timeout: Duration,
    pub token: String,
    pub root: PathBuf,
    pub send_delay: Duration,
    pub log_updates: bool,
    pub tasks: Tasks,
    /// Set by the first batch; the sync happens once.
    pub done: AtomicBool,
}

impl HostSync {
    /// Starts the update for the first resource seen; later calls do nothing, as upstream syncs
    /// once per process.
    pub fn observe(&self, resource: &[KeyValue]) {
        if self.done.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some((key, value)) = host_dimension(resource) else {
            tracing::error!("sync_host_metadata: no host attribute on the metrics (host.name, or a cloud provider's ids); host metadata is not synced. Put resourcedetection in the pipeline");
            return;
        };
        let props = host_properties(&self.root);
        if props.is_empty() {
            tracing::error!(root = %self.root.display(), "sync_host_metadata: no host property could be read; host metadata is not synced");
            return;
        }
        let mut url = self.api.clone();
        let path = format!("{}/v2/dimension", self.api.path().trim_end_matches('/'));
        url.set_path(&path);
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend([key, value.as_str(), "_", "sfxagent"]);
        }
        let body = json!({"customProperties": props, "tags": null, "tagsToRemove": null});
        let (client, token, delay, log, timeout) = (
            self.client.clone(),
            self.token.clone(),
            self.send_delay,
            self.log_updates,
            self.timeout,
        );
        let stop = self.tasks.stopping();
        self.tasks.spawn(async move {
            for attempt in 1..=ATTEMPTS {
                let sent = client
                    .patch(url.clone())
                    .header("X-SF-TOKEN", &token)
                    .timeout(timeout)
                    .json(&body)
                    .send()
                    .await;
                let retry = match sent {
                    Ok(r) if r.status().is_success() => {
                        if log {
                            tracing::info!(%url, properties = %body["customProperties"], "updated dimension");
                        }
                        tracing::info!(dimension = key, value = %value, "host metadata synchronized");
                        return;
                    }
                    Ok(r) => {
                        let s = r.status();
                        tracing::error!(%url, status = %s, attempt, "unable to update the host dimension");
                        !(s.is_client_error() && s.as_u16() != 404)
                    }
                    Err(e) => {
                        tracing::error!(%url, error = %crate::helper::http::error_chain(&e), attempt, "unable to update the host dimension");
                        true
                    }
                };
                if !retry || attempt == ATTEMPTS {
                    return;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;

    #[test]
    fn host_dimension_follows_the_cloud() {
        let aws = [
            kv_str("cloud.provider", "aws"),
            kv_str("cloud.account.id", "123"),
            kv_str("cloud.region", "us-east-1"),
            kv_str("host.id", "i-abc"),
            kv_str("host.name", "ip-10-0-0-1"),
        ];
        assert_eq!(
            host_dimension(&aws),
            Some(("AWSUniqueId", "i-abc_us-east-1_123".into()))
        );
        let gcp = [
            kv_str("cloud.provider", "gcp"),
            kv_str("cloud.account.id", "proj"),
            kv_str("host.id", "42"),
        ];
        assert_eq!(host_dimension(&gcp), Some(("gcp_id", "proj_42".into())));
        // A cloud without its ids falls back to host.name.
        let partial = [kv_str("cloud.provider", "aws"), kv_str("host.name", "n1")];
        assert_eq!(host_dimension(&partial), Some(("host", "n1".into())));
        assert_eq!(host_dimension(&[]), None);
    }
}
