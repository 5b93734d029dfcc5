//! `k8s_leader_elector`: otelcol's leader elector extension. Several vigil (or otelcol) instances of
//! a gateway contend for one `coordination.k8s.io/v1` Lease (`lease_namespace`/`lease_name`); the
//! holder leads, and the receivers whose `k8s_leader_elector` names this extension (`k8sobjects`,
//! `k8s_events`, `k8s_cluster`) run only while it does, so a cluster-level receiver runs once
//! however many replicas there are. The election is client-go's (`vigil_k8s::leader`):
//! `lease_duration` (15s), `renew_deadline` (10s), `retry_period` (2s).
//!
//! Deviation: on a graceful stop the leader gives the Lease up (client-go's `ReleaseOnCancel`), so
//! a rolling update hands over at once; otelcol leaves it to expire. A killed leader is replaced
//! within `lease_duration` plus a `retry_period`.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use vigil_core::{Component, ComponentId, ConfigError, Extension, Host};
use vigil_k8s::leader::{self, Election};
use vigil_k8s::AuthType;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LeaderElectorConfig {
    #[serde(default)]
    auth_type: AuthType,
    /// The kubeconfig context with `auth_type: kubeConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    /// The Lease's name (required).
    #[serde(default)]
    lease_name: String,
    /// The Lease's namespace (required).
    #[serde(default)]
    lease_namespace: String,
    #[serde(
        default = "default_lease_duration",
        with = "vigil_core::config::duration"
    )]
    lease_duration: Duration,
    #[serde(
        default = "default_renew_deadline",
        with = "vigil_core::config::duration"
    )]
    renew_deadline: Duration,
    #[serde(
        default = "default_retry_period",
        with = "vigil_core::config::duration"
    )]
    retry_period: Duration,
}

fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}
fn default_renew_deadline() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_period() -> Duration {
    Duration::from_secs(2)
}

fn check(cfg: &LeaderElectorConfig) -> Result<(), ConfigError> {
    let mut errs = Vec::new();
    if cfg.lease_name.is_empty() {
        errs.push(ConfigError::at(
            "lease_name",
            "must be set: the name of the Lease the instances contend for",
        ));
    }
    if cfg.lease_namespace.is_empty() {
        errs.push(ConfigError::at(
            "lease_namespace",
            "must be set: the namespace of the Lease",
        ));
    }
    if let Err(e) = leader::check_timings(cfg.lease_duration, cfg.renew_deadline, cfg.retry_period)
    {
        let key = if e.starts_with("retry_period") {
            "retry_period"
        } else if e.starts_with("lease_duration") {
            "lease_duration"
        } else {
            "renew_deadline"
        };
        errs.push(ConfigError::at(key, e));
    }
    if cfg.auth_type != AuthType::KubeConfig && cfg.context.is_some() {
        errs.push(ConfigError::at(
            "context",
            "context is read only with auth_type kubeConfig",
        ));
    }
    ConfigError::join(errs).map_or(Ok(()), Err)
}

struct Factory;

/// The `k8s_leader_elector` extension factory (`k8sleaderelector` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = LeaderElectorConfig;

    fn type_name(&self) -> &'static str {
        "k8s_leader_elector"
    }

    fn validate(&self, _id: &ComponentId, cfg: &LeaderElectorConfig) -> Result<(), ConfigError> {
        check(cfg)
    }
}

impl vigil_core::factory::ExtensionFactory for Factory {
    fn stability(&self) -> vigil_core::Stability {
        vigil_core::Stability::Alpha
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: LeaderElectorConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        check(&cfg)?;
        let election = Election {
            namespace: cfg.lease_namespace.clone(),
            name: cfg.lease_name.clone(),
            identity: identity(),
            lease_duration: cfg.lease_duration,
            renew_deadline: cfg.renew_deadline,
            retry_period: cfg.retry_period,
        };
        Ok(Arc::new(LeaderElector {
            id: set.id.clone(),
            api: vigil_k8s::ApiConfig {
                auth_type: cfg.auth_type,
                context: cfg.context,
            },
            election,
            leading: watch::channel(false).0,
            client: Mutex::new(None),
            tasks: set.tasks,
        }))
    }
}

/// A holder identity shaped as otelcol's (a random v4 UUID), from the standard library's
/// per-process random hash keys: unique per process, which is all the election needs.
fn identity() -> String {
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.finish()
    };
    let (a, b) = (word(1), word(2));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

struct LeaderElector {
    id: ComponentId,
    api: vigil_k8s::ApiConfig,
    election: Election,
    leading: watch::Sender<bool>,
    client: Mutex<Option<vigil_k8s::kube::Client>>,
    tasks: vigil_core::Tasks,
}

#[async_trait]
impl Component for LeaderElector {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let client = vigil_k8s::connect(&self.api)
            .await
            .map_err(|e| anyhow::anyhow!("extensions::{}::auth_type: {e}", self.id))?;
        *vigil_core::lock(&self.client) = Some(client.clone());
        tracing::info!(
            identity = %self.election.identity,
            lease = %format!("{}/{}", self.election.namespace, self.election.name),
            "k8s leader elector started"
        );
        let (e, tx, stop) = (
            self.election.clone(),
            self.leading.clone(),
            self.tasks.stopping(),
        );
        self.tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = leader::run(client, e, tx) => {}
            }
        });
        Ok(())
    }

    async fn shutdown_by(&self, deadline: Instant) -> anyhow::Result<()> {
        self.tasks.stop(deadline).await;
        let was_leading = self.leading.send_replace(false);
        let client = vigil_core::lock(&self.client).take();
        if let (true, Some(client)) = (was_leading, client) {
            match vigil_core::task::within(deadline, leader::release(client, &self.election)).await
            {
                Some(Ok(())) => tracing::info!("released the lease"),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "could not release the lease; it expires after lease_duration")
                }
                None => tracing::warn!(
                    "the shutdown deadline cut the lease release; it expires after lease_duration"
                ),
            }
        }
        Ok(())
    }
}

impl Extension for LeaderElector {
    fn leadership(&self) -> Option<watch::Receiver<bool>> {
        Some(self.leading.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(y: serde_json::Value) -> LeaderElectorConfig {
        serde_json::from_value(y).unwrap()
    }

    #[test]
    fn defaults_are_otelcols() {
        let c = decode(serde_json::json!({"lease_name": "l", "lease_namespace": "default"}));
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.auth_type, AuthType::ServiceAccount);
        assert!(check(&c).is_ok());
    }

    #[test]
    fn names_are_required_and_timings_checked() {
        let e = check(&decode(serde_json::json!({}))).unwrap_err().flatten();
        let paths: Vec<_> = e.iter().map(|e| e.path.clone()).collect();
        assert_eq!(paths, ["lease_name", "lease_namespace"]);
        let e = check(&decode(
            serde_json::json!({"lease_name": "l", "lease_namespace": "d",
            "lease_duration": "5s", "renew_deadline": "10s"}),
        ))
        .unwrap_err();
        assert_eq!(e.path, "lease_duration");
    }

    #[test]
    fn identities_differ_and_look_like_uuids() {
        let (a, b) = (identity(), identity());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
