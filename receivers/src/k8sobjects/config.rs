//! `k8sobjects`' keys and defaults, as otelcol's `k8sobjectsreceiver.Config`.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::{ComponentId, ConfigError};
use vigil_k8s::AuthType;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sObjectsConfig {
    #[serde(default)]
    pub auth_type: AuthType,
    /// The kubeconfig context with `auth_type: kubeConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(default)]
    pub objects: Vec<ObjectConfig>,
    /// What an object whose resource the cluster does not serve does at start: `propagate` fails
    /// the start, `ignore` logs it and goes on, `silent` goes on.
    #[serde(default)]
    pub error_mode: ErrorMode,
    /// Watch mode only: report the objects that exist at start as ADDED before the changes.
    #[serde(default)]
    pub include_initial_state: bool,
    /// A `k8s_leader_elector` extension: the receiver runs only while this instance leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_leader_elector: Option<String>,
    /// otelcol's resource-version persistence; not built in vigil (refused at validate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    #[default]
    Propagate,
    Ignore,
    Silent,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Pull,
    Watch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum WatchEventType {
    #[serde(rename = "ADDED")]
    Added,
    #[serde(rename = "MODIFIED")]
    Modified,
    #[serde(rename = "DELETED")]
    Deleted,
    /// Bookmarks and errors are never reported as records in vigil; excluding them is accepted.
    #[serde(rename = "BOOKMARK")]
    Bookmark,
    #[serde(rename = "ERROR")]
    Error,
}

/// otelcol's `filter.Config`: a namespace matched exactly (`strict`) or by a regular expression.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectConfig {
    /// The resource's plural name, as in the API's paths (`pods`, `events`).
    pub name: String,
    /// The API group when the name is served by several (`events.k8s.io`); empty takes the first.
    #[serde(default)]
    pub group: String,
    /// Namespaces to read; empty reads all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_namespaces: Vec<NamespaceFilter>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub label_selector: String,
    #[serde(default)]
    pub field_selector: String,
    /// Pull mode: how often to list (otelcol's default, 1h).
    #[serde(default = "default_interval", with = "vigil_core::config::duration")]
    pub interval: Duration,
    /// Watch mode: watch from this version instead of listing first.
    #[serde(default)]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_watch_type: Vec<WatchEventType>,
    /// otelcol's resource-version checkpointing; not built in vigil (refused at validate).
    #[serde(default)]
    pub persist_resource_version: bool,
}

fn default_interval() -> Duration {
    Duration::from_secs(3600)
}

/// The checks of the API connection keys shared by `k8sobjects` and `k8s_events`: `context` only
/// with `auth_type: kubeConfig`, and `k8s_leader_elector` a component id.
pub(crate) fn check_api_keys(
    auth_type: AuthType,
    context: Option<&str>,
    k8s_leader_elector: Option<&str>,
    errs: &mut Vec<ConfigError>,
) {
    if auth_type != AuthType::KubeConfig && context.is_some() {
        errs.push(ConfigError::at(
            "context",
            "context is read only with auth_type kubeConfig",
        ));
    }
    if let Some(id) = k8s_leader_elector {
        if let Err(e) = ComponentId::parse(id) {
            errs.push(ConfigError::at("k8s_leader_elector", e));
        }
    }
}

/// The checks otelcol's `Validate` makes, plus what vigil does not build.
pub fn check(cfg: &K8sObjectsConfig) -> Result<(), ConfigError> {
    let mut errs = Vec::new();
    check_api_keys(
        cfg.auth_type,
        cfg.context.as_deref(),
        cfg.k8s_leader_elector.as_deref(),
        &mut errs,
    );
    if cfg.storage.is_some() {
        errs.push(ConfigError::at(
            "storage",
            "resource-version persistence is not built in vigil; remove storage (a restart lists again)",
        ));
    }
    for (i, o) in cfg.objects.iter().enumerate() {
        let at = |k: &str| format!("objects::{i}::{k}");
        if o.name.is_empty() {
            errs.push(ConfigError::at(
                at("name"),
                "must be set: the resource's plural name",
            ));
        }
        if o.mode == Mode::Pull && !o.exclude_watch_type.is_empty() {
            errs.push(ConfigError::at(
                at("exclude_watch_type"),
                "the Exclude config can only be used with watch mode",
            ));
        }
        if o.mode == Mode::Pull && cfg.include_initial_state {
            errs.push(ConfigError::at(
                "include_initial_state",
                format!(
                    "include_initial_state can only be used with watch mode (objects::{i} pulls)"
                ),
            ));
        }
        if o.mode == Mode::Pull && o.interval.is_zero() {
            errs.push(ConfigError::at(at("interval"), "must be greater than zero"));
        }
        if !o.namespaces.is_empty() && !o.exclude_namespaces.is_empty() {
            errs.push(ConfigError::at(
                at("exclude_namespaces"),
                "namespaces and exclude_namespaces cannot both be set at the same time",
            ));
        }
        for (j, f) in o.exclude_namespaces.iter().enumerate() {
            match (&f.strict, &f.regexp) {
                (Some(_), None) => {}
                (None, Some(r)) => {
                    if let Err(e) = vigil_core::config::re2_regex(r) {
                        errs.push(ConfigError::at(
                            format!("objects::{i}::exclude_namespaces::{j}::regexp"),
                            e.to_string(),
                        ));
                    }
                }
                _ => errs.push(ConfigError::at(
                    format!("objects::{i}::exclude_namespaces::{j}"),
                    "set exactly one of strict and regexp",
                )),
            }
        }
        if o.persist_resource_version {
            errs.push(ConfigError::at(
                at("persist_resource_version"),
                "resource-version persistence is not built in vigil",
            ));
        }
    }
    ConfigError::join(errs).map_or(Ok(()), Err)
}

/// The namespaces an object's `exclude_namespaces` leaves out, compiled.
pub struct Excluded {
    strict: Vec<String>,
    regexps: Vec<regex::Regex>,
}

impl Excluded {
    pub fn new(filters: &[NamespaceFilter]) -> Excluded {
        Excluded {
            strict: filters.iter().filter_map(|f| f.strict.clone()).collect(),
            regexps: filters
                .iter()
                .filter_map(|f| f.regexp.as_deref())
                .filter_map(|r| vigil_core::config::re2_regex(r).ok())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.strict.is_empty() && self.regexps.is_empty()
    }

    pub fn excludes(&self, ns: &str) -> bool {
        self.strict.iter().any(|s| s == ns) || self.regexps.iter().any(|r| r.is_match(ns))
    }
}
