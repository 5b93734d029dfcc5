//! The kubelet's Summary API (`GET /stats/summary`, `k8s.io/kubelet/pkg/apis/stats/v1alpha1`) and
//! the part of `GET /pods` (a `v1.PodList`) that `extra_metadata_labels` reads, as serde types.
//!
//! Every field is optional, as in the Go types (pointers and `omitempty`): a kubelet leaves out what
//! its runtime does not report (no `rssBytes` under some runtimes, no network for host-network
//! pods), and a missing value is a missing data point, never a zero. Unknown fields are ignored so
//! that a newer kubelet (PSI, swap, accelerators) still parses.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStats {
    pub node_name: String,
    pub system_containers: Vec<ContainerStats>,
    pub start_time: Option<String>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub network: Option<NetworkStats>,
    pub fs: Option<FsStats>,
    pub runtime: Option<RuntimeStats>,
    pub rlimit: Option<RlimitStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RuntimeStats {
    pub image_fs: Option<FsStats>,
    pub container_fs: Option<FsStats>,
}

/// Process limits of the node (`rlimit` in the JSON).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RlimitStats {
    pub maxpid: Option<i64>,
    pub curproc: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: Option<String>,
    pub containers: Vec<ContainerStats>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub network: Option<NetworkStats>,
    #[serde(rename = "volume")]
    pub volumes: Vec<VolumeStats>,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: Option<FsStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Option<String>,
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub rootfs: Option<FsStats>,
    pub logs: Option<FsStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CpuStats {
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemoryStats {
    pub available_bytes: Option<u64>,
    pub usage_bytes: Option<u64>,
    pub working_set_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// One interface's counters. The Summary API inlines the default interface's into `network` and
/// lists every interface under `interfaces`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: Option<u64>,
    pub rx_errors: Option<u64>,
    pub tx_bytes: Option<u64>,
    pub tx_errors: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkStats {
    #[serde(flatten)]
    pub default: InterfaceStats,
    pub interfaces: Vec<InterfaceStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FsStats {
    pub available_bytes: Option<u64>,
    pub capacity_bytes: Option<u64>,
    pub used_bytes: Option<u64>,
    pub inodes_free: Option<u64>,
    pub inodes: Option<u64>,
    pub inodes_used: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    pub name: String,
    pub pvc_ref: Option<PvcReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PvcReference {
    pub name: String,
    pub namespace: String,
}

/// `GET /pods`: the kubelet's `v1.PodList`, reduced to what `extra_metadata_labels` needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodList {
    pub items: Vec<Pod>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    pub status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ObjectMeta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodSpec {
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
}

/// A container of the spec: only its limits and requests are read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub resources: ResourceRequirements,
}

/// Quantities by resource name (`cpu`, `memory`, …), as the API writes them (`500m`, `128Mi`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResourceRequirements {
    pub limits: std::collections::BTreeMap<String, String>,
    pub requests: std::collections::BTreeMap<String, String>,
}

/// A pod volume: its name and which source it has. Only the source's presence matters (it names
/// `k8s.volume.type`), except for a claim, whose name is `k8s.persistentvolumeclaim.name`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    pub config_map: Option<serde_json::Value>,
    #[serde(rename = "downwardAPI")]
    pub downward_api: Option<serde_json::Value>,
    pub empty_dir: Option<serde_json::Value>,
    pub secret: Option<serde_json::Value>,
    pub persistent_volume_claim: Option<ClaimSource>,
    pub host_path: Option<serde_json::Value>,
    #[serde(rename = "awsElasticBlockStore")]
    pub aws_elastic_block_store: Option<serde_json::Value>,
    #[serde(rename = "gcePersistentDisk")]
    pub gce_persistent_disk: Option<serde_json::Value>,
    pub glusterfs: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClaimSource {
    pub claim_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    pub container_statuses: Vec<ContainerStatus>,
    pub init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
}

impl Volume {
    /// otelcol's `k8s.volume.type` value for this volume's source, if it knows the source.
    pub fn type_name(&self) -> Option<&'static str> {
        Some(if self.config_map.is_some() {
            "configMap"
        } else if self.downward_api.is_some() {
            "downwardAPI"
        } else if self.empty_dir.is_some() {
            "emptyDir"
        } else if self.secret.is_some() {
            "secret"
        } else if self.persistent_volume_claim.is_some() {
            "persistentVolumeClaim"
        } else if self.host_path.is_some() {
            "hostPath"
        } else if self.aws_elastic_block_store.is_some() {
            "awsElasticBlockStore"
        } else if self.gce_persistent_disk.is_some() {
            "gcePersistentDisk"
        } else if self.glusterfs.is_some() {
            "glusterfs"
        } else {
            return None;
        })
    }
}
