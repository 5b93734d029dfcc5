//! `resource`: otelcol's resource processor. It applies the same actions as `attributes` (one engine,
//! [`crate::attributes::actions`]) to the resource attributes of every batch, listed under
//! `attributes` as otelcol spells it.

use crate::attributes::actions::{ActionConfig, Actions};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ConfigError, ConsumeError, Consumer, Processor, Settings, Signal,
    Stability, Telemetry,
};

/// The `resource` processor config.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// The actions, applied in order to each resource's attributes.
    #[serde(default)]
    pub attributes: Vec<ActionConfig>,
}

#[cfg(test)]
fn compile(id: &ComponentId, config: &serde_json::Value) -> Result<Actions, ConfigError> {
    let cfg: ResourceConfig = crate::attributes::actions::decode_section(id, config)?;
    compile_cfg(id, &cfg)
}

fn compile_cfg(id: &ComponentId, cfg: &ResourceConfig) -> Result<Actions, ConfigError> {
    Actions::compile(id, "attributes", &cfg.attributes)
}

struct Factory;

/// The `resource` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = ResourceConfig;

    fn type_name(&self) -> &'static str {
        "resource"
    }

    fn validate(&self, id: &ComponentId, cfg: &ResourceConfig) -> Result<(), ConfigError> {
        compile_cfg(id, cfg).map(|_| ())
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
            (Signal::Profiles, Stability::Development),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: ResourceConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        Ok(Arc::new(ResourceProcessor {
            actions: compile_cfg(&set.id, &cfg)?,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

/// A running `resource` processor.
pub struct ResourceProcessor {
    actions: Actions,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
}

impl ResourceProcessor {
    fn apply(&self, resource: &mut Option<Resource>) {
        let was_absent = resource.is_none();
        let r = resource.get_or_insert_with(Resource::default);
        self.actions.apply(&mut r.attributes);
        // Leave an absent resource absent when the actions added nothing, so that output stays as it came.
        if was_absent && r.attributes.is_empty() {
            *resource = None;
        }
    }

    fn process(&self, data: &mut Telemetry) {
        match data {
            Telemetry::Traces(rs) => rs.iter_mut().for_each(|r| self.apply(&mut r.resource)),
            Telemetry::Metrics(rm) => rm.iter_mut().for_each(|r| self.apply(&mut r.resource)),
            Telemetry::Logs(rl) => rl.iter_mut().for_each(|r| self.apply(&mut r.resource)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|r| self.apply(&mut r.resource)),
        }
    }
}

impl Component for ResourceProcessor {}

#[async_trait]
impl Consumer for ResourceProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vigil_core::attrs::{get, kv_str};
    use vigil_core::otlp::common::v1::any_value::Value;
    use vigil_core::otlp::logs::v1::ResourceLogs;

    use crate::testdata::Keep;

    fn id() -> ComponentId {
        ComponentId::parse("resource/x").unwrap()
    }

    #[tokio::test]
    async fn applies_actions_to_resource_attributes() {
        let keep = Arc::new(Keep::default());
        let p = factory()
            .create(
                &id(),
                &json!({"attributes": [
                    {"key": "deployment.environment", "value": "prod", "action": "upsert"},
                    {"key": "host.name", "action": "delete"},
                    {"key": "cloud.zone", "from_attribute": "zone", "action": "insert"},
                ]}),
                Signal::Logs,
                keep.clone(),
            )
            .unwrap();
        let data = Telemetry::Logs(vec![
            ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv_str("host.name", "h1"), kv_str("zone", "eu-1a")],
                    ..Default::default()
                }),
                ..Default::default()
            },
            // No resource at all: upsert still creates one.
            ResourceLogs::default(),
        ]);
        p.consume(data).await.unwrap();
        let out = keep.0.lock().unwrap();
        let Telemetry::Logs(rl) = &out[0] else {
            panic!("logs expected")
        };
        let first = &rl[0].resource.as_ref().unwrap().attributes;
        assert!(get(first, "host.name").is_none());
        assert_eq!(
            get(first, "cloud.zone"),
            Some(&Value::StringValue("eu-1a".into()))
        );
        assert_eq!(
            get(first, "deployment.environment"),
            Some(&Value::StringValue("prod".into()))
        );
        let second = &rl[1].resource.as_ref().unwrap().attributes;
        assert_eq!(second.len(), 1);
    }

    #[test]
    fn resource_without_changes_stays_absent() {
        let p = ResourceProcessor {
            actions: compile(
                &id(),
                &json!({"attributes": [{"key": "a", "action": "delete"}]}),
            )
            .unwrap(),
            next: Arc::new(Keep::default()),
            obs: vigil_core::ProcessorObs::new(&id(), Signal::Logs),
        };
        let mut r = None;
        p.apply(&mut r);
        assert!(r.is_none());
    }

    #[test]
    fn config_errors_name_the_attributes_key() {
        let e = compile(
            &id(),
            &json!({"attributes": [{"key": "a", "action": "upsert"}]}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "processors::resource/x::attributes::0::value: missing \"value\" or \"from_attribute\" \
             for action \"upsert\""
        );
        let e = compile(&id(), &json!({})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "processors::resource/x::attributes: missing required field \"attributes\": at least one \
             action is needed"
        );
        let e = compile(&id(), &json!({"actions": []})).unwrap_err();
        assert!(e.to_string().contains("has invalid keys: actions"), "{e}");
    }
}
