//! Extensions built into the agent: `health_check` (the DaemonSet's probe), `file_storage` (durable
//! state for queues and checkpoints) and the authenticators (`bearertokenauth`, `basicauth`, `oidc`,
//! `oauth2client`, `googleclientauth`, `headers_setter`, `sigv4auth`: credentials checked by receivers and sent
//! by exporters), and `cgroup_runtime` (worker threads and a soft memory limit from the cgroup),
//! `http_forwarder` (a forwarding HTTP proxy to a vendor API), `opamp` (an OpAMP client reporting
//! to a management server), `ack` (acknowledgement ids the `splunk_hec` receiver hands its clients).

pub mod ack;
mod auth_util;
pub mod awsproxy;
pub mod basicauth;
pub mod bearertokenauth;
pub mod cgroup_runtime;
pub mod file_storage;
mod forward;
pub mod googleclientauth;
pub mod headers_setter;
pub mod health_check;
pub mod http_forwarder;
pub mod k8s_leader_elector;
pub mod oauth2client;
pub mod oidc;
pub mod opamp;
pub mod pprof;
pub mod sigv4auth;
pub mod sumologic;
pub mod zpages;

use std::sync::Arc;
use vigil_core::factory::DynExtensionFactory;

pub fn factories() -> Vec<Arc<dyn DynExtensionFactory>> {
    vec![
        health_check::factory(),
        file_storage::factory(),
        bearertokenauth::factory(),
        basicauth::factory(),
        oidc::factory(),
        oauth2client::factory(),
        googleclientauth::factory(),
        headers_setter::factory(),
        sigv4auth::factory(),
        k8s_leader_elector::factory(),
        zpages::factory(),
        pprof::factory(),
        cgroup_runtime::factory(),
        http_forwarder::factory(),
        awsproxy::factory(),
        opamp::factory(),
        ack::factory(),
        sumologic::factory(),
        crate::observer::k8s::factory(),
        crate::observer::host::factory(),
    ]
}
