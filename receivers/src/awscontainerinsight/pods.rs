//! The part of the kubelet's `GET /pods` (a `v1.PodList`) Container Insights reads: owners and
//! labels for `PodName` and the `kubernetes` attribute, requests and limits, the phase and each
//! container's state, id and restarts. Unknown fields are ignored; missing ones are defaults.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PodList {
    pub items: Vec<Pod>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    pub metadata: Meta,
    pub spec: Spec,
    pub status: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub owner_references: Vec<Owner>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Owner {
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Container {
    pub name: String,
    pub resources: crate::kubeletstats::summary::ResourceRequirements,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    pub phase: String,
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub restart_count: i32,
    pub state: State,
    pub last_state: State,
}

/// One of the three is set, as in `v1.ContainerState`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct State {
    pub running: Option<serde_json::Value>,
    pub waiting: Option<Reason>,
    pub terminated: Option<Reason>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reason {
    pub reason: String,
}
