//! `ack`: otelcol-contrib's acknowledgement extension. It keeps, per partition (a client's channel),
//! the ids a receiver handed out and whether the data behind each was taken, so that a client can
//! ask later (the `splunk_hec` receiver's `/services/collector/ack`). Receivers reach the store
//! through `Host::ack_store`; the store itself is `vigil_core::ack::InMemoryAcks`.
//!
//! Keys as contrib: `max_number_of_partition` and `max_number_of_pending_acks_per_partition`
//! (1,000,000 each), least recently used evicted first at either bound and counted
//! (`vigil_ack_partitions_evicted`, `vigil_ack_ids_evicted`). `storage` names a storage extension
//! for a disk-backed store, which contrib has not built either: unset (or empty) is the in-memory
//! store, anything else is refused.

use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::ack::{
    AckStore, InMemoryAcks, DEFAULT_MAX_PARTITIONS, DEFAULT_MAX_PENDING_PER_PARTITION,
};
use vigil_core::{Component, ComponentId, ConfigError, Extension};

/// `extensions::ack`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AckConfig {
    /// A storage extension id; only unset (the in-memory store) is built.
    pub storage: Option<String>,
    /// Partitions kept at once; default 1,000,000.
    pub max_number_of_partition: u64,
    /// Ids kept per partition, pending or acknowledged but not yet queried; default 1,000,000.
    pub max_number_of_pending_acks_per_partition: u64,
}

impl Default for AckConfig {
    fn default() -> Self {
        AckConfig {
            storage: None,
            max_number_of_partition: DEFAULT_MAX_PARTITIONS,
            max_number_of_pending_acks_per_partition: DEFAULT_MAX_PENDING_PER_PARTITION,
        }
    }
}

fn check(cfg: &AckConfig) -> Result<(), ConfigError> {
    if let Some(s) = cfg.storage.as_deref().filter(|s| !s.trim().is_empty()) {
        return Err(ConfigError::at(
            "storage",
            format!(
                "a storage extension for acks ({s:?}) is not built: leave storage unset for the \
                 in-memory store"
            ),
        ));
    }
    // contrib builds its LRU caches with these sizes, and golang-lru refuses a size of 0.
    for (key, v) in [
        ("max_number_of_partition", cfg.max_number_of_partition),
        (
            "max_number_of_pending_acks_per_partition",
            cfg.max_number_of_pending_acks_per_partition,
        ),
    ] {
        if v == 0 {
            return Err(ConfigError::at(key, format!("must be at least 1, got {v}")));
        }
    }
    Ok(())
}

struct Factory;

/// The `ack` extension factory, for the registry.
pub fn factory() -> Arc<dyn vigil_core::factory::DynExtensionFactory> {
    vigil_core::factory::extension(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = AckConfig;

    fn type_name(&self) -> &'static str {
        "ack"
    }

    fn validate(&self, _id: &ComponentId, cfg: &AckConfig) -> Result<(), ConfigError> {
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
        cfg: AckConfig,
    ) -> Result<Arc<dyn Extension>, ConfigError> {
        check(&cfg)?;
        Ok(Arc::new(Ack {
            store: Arc::new(InMemoryAcks::new(
                &set.id.to_string(),
                cfg.max_number_of_partition,
                cfg.max_number_of_pending_acks_per_partition,
            )),
        }))
    }
}

/// The running extension: nothing to start or stop, only the store to lend.
struct Ack {
    store: Arc<InMemoryAcks>,
}

impl Component for Ack {}

impl Extension for Ack {
    fn ack_store(&self) -> Option<Arc<dyn AckStore>> {
        Some(self.store.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(v: serde_json::Value) -> Result<Arc<dyn Extension>, String> {
        factory()
            .create(&ComponentId::new("ack", None), &v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn lends_a_store_with_contribs_protocol() {
        let ext = load(json!({"max_number_of_partition": 2})).expect("create");
        let store = ext.ack_store().expect("an ack store");
        let id = store.process_event("CHANNEL");
        store.ack("CHANNEL", id);
        assert!(store.query_acks("CHANNEL", &[id])[&id]);
    }

    #[test]
    fn refuses_a_storage_and_zero_bounds() {
        let e = load(json!({"storage": "file_storage"}))
            .err()
            .expect("refused");
        assert!(e.contains("storage") && e.contains("not built"), "{e}");
        assert!(load(json!({"storage": null})).is_ok());
        let e = load(json!({"max_number_of_pending_acks_per_partition": 0}))
            .err()
            .expect("refused");
        assert!(
            e.contains("max_number_of_pending_acks_per_partition"),
            "{e}"
        );
        let e = load(json!({"max_partitions": 3})).err().expect("refused");
        assert!(e.contains("max_partitions"), "{e}");
    }
}
