//! `k8sattributes`' config, with otelcol's keys and defaults, and its check: every rule compiled
//! once, every problem reported with its key path.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use vigil_core::config::duration;
use vigil_core::ConfigError;
use vigil_k8s::AuthType;

/// The metadata otelcol extracts when `extract.metadata` is not given.
pub const DEFAULT_METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.start_time",
    "k8s.deployment.name",
    "k8s.node.name",
    "container.image.name",
    "container.image.tag",
];

/// Every name `extract.metadata` accepts.
pub const KNOWN_METADATA: &[&str] = &[
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.pod.ip",
    "k8s.pod.hostname",
    "k8s.pod.start_time",
    "k8s.node.name",
    "k8s.deployment.name",
    "k8s.deployment.uid",
    "k8s.replicaset.name",
    "k8s.replicaset.uid",
    "k8s.statefulset.name",
    "k8s.statefulset.uid",
    "k8s.daemonset.name",
    "k8s.daemonset.uid",
    "k8s.job.name",
    "k8s.job.uid",
    "k8s.cronjob.name",
    "k8s.container.name",
    "container.id",
    "container.image.name",
    "container.image.tag",
    "container.image.repo_digests",
    "k8s.cluster.uid",
    // otelcol accepts it and finds no value in the API; kept so that its configs validate.
    "k8s.cluster.name",
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
];

/// otelcol's `extract.metadata` names vigil does not fill: each needs one more kind of object
/// watched (the Job's owner for the CronJob's UID, Nodes for theirs). Refused by name.
pub const NOT_BUILT_METADATA: &[&str] = &["k8s.cronjob.uid", "k8s.node.uid"];

/// otelcol's `from` values for label and annotation rules that read a workload object (which
/// vigil does not watch). Refused by name.
pub const NOT_BUILT_FROM: &[&str] = &["deployment", "statefulset", "daemonset", "job"];

/// The `k8sattributes` processor config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sAttributesConfig {
    /// How to reach the API server: `serviceAccount` (default), `kubeConfig` or `none`.
    #[serde(default)]
    pub auth_type: AuthType,
    /// The kubeconfig context with `auth_type: kubeConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// client-go's client-side limit on requests per second (0: its default of 5). Read and
    /// checked, without effect: vigil lists and then watches each kind of object once, and
    /// reconnects with backoff, so it never nears the limit.
    #[serde(default)]
    pub kube_api_qps: f64,
    /// client-go's burst above `kube_api_qps` (0: its default of 10); read and checked, as above.
    #[serde(default)]
    pub kube_api_burst: i64,
    /// Only put the sender's IP in `k8s.pod.ip`, without reading the API: the agent in front of a
    /// gateway that does the lookup.
    #[serde(default)]
    pub passthrough: bool,
    #[serde(default)]
    pub filter: FilterConfig,
    #[serde(default)]
    pub extract: ExtractConfig,
    /// How a resource names its pod: the first rule whose sources all have a value and name a
    /// known pod wins. Empty means by connection IP alone.
    #[serde(default)]
    pub pod_association: Vec<AssociationRule>,
    #[serde(default = "default_exclude")]
    pub exclude: ExcludeConfig,
    /// Start only once the first list of pods arrived (the processor fails to start after
    /// `wait_for_metadata_timeout` otherwise).
    #[serde(default)]
    pub wait_for_metadata: bool,
    #[serde(default = "default_wait", with = "duration")]
    pub wait_for_metadata_timeout: Duration,
}

impl Default for K8sAttributesConfig {
    fn default() -> Self {
        K8sAttributesConfig {
            auth_type: AuthType::default(),
            context: None,
            kube_api_qps: 0.0,
            kube_api_burst: 0,
            passthrough: false,
            filter: FilterConfig::default(),
            extract: ExtractConfig::default(),
            pod_association: Vec::new(),
            exclude: default_exclude(),
            wait_for_metadata: false,
            wait_for_metadata_timeout: default_wait(),
        }
    }
}

fn default_wait() -> Duration {
    Duration::from_secs(10)
}

/// Which pods are watched.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Only pods on this node.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// Only pods on the node named by this environment variable (the downward API's
    /// `spec.nodeName`); what a DaemonSet agent sets.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_from_env_var: String,
    /// Only pods in this namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Field selectors: `op` is `equals` (default) or `not-equals`.
    #[serde(default)]
    pub fields: Vec<SelectorRule>,
    /// Label selectors: `op` is `equals` (default), `not-equals`, `exists` or `does-not-exist`.
    #[serde(default)]
    pub labels: Vec<SelectorRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorRule {
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default = "default_op")]
    pub op: String,
}

fn default_op() -> String {
    "equals".into()
}

/// What is added to each resource.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractConfig {
    /// otelcol's attribute names; see [`DEFAULT_METADATA`] and [`KNOWN_METADATA`].
    #[serde(default = "default_metadata")]
    pub metadata: Vec<String>,
    #[serde(default)]
    pub labels: Vec<FieldRule>,
    #[serde(default)]
    pub annotations: Vec<FieldRule>,
    /// Every pod annotation `resource.opentelemetry.io/<key>` becomes attribute `<key>`.
    #[serde(default)]
    pub otel_annotations: bool,
    /// The Deployment's name is the ReplicaSet's without its pod-template-hash suffix, so no
    /// ReplicaSet is ever read from the API.
    #[serde(default)]
    pub deployment_name_from_replicaset: bool,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            metadata: default_metadata(),
            labels: Vec::new(),
            annotations: Vec::new(),
            otel_annotations: false,
            deployment_name_from_replicaset: false,
        }
    }
}

fn default_metadata() -> Vec<String> {
    DEFAULT_METADATA.iter().map(|s| s.to_string()).collect()
}

/// One label or annotation rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The attribute name; `$1`… name `key_regex`'s groups. Default `k8s.<from>.labels.<key>`
    /// (`annotations` for annotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Every key this matches (the whole key) is extracted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_regex: Option<String>,
    /// `pod` (default), `namespace` or `node`; otelcol's workload sources (`deployment`,
    /// `statefulset`, `daemonset`, `job`) are not built.
    #[serde(default = "default_from")]
    pub from: String,
}

fn default_from() -> String {
    "pod".into()
}

/// One `pod_association` rule: its sources, or otelcol's older one-source form (`from`, `name`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationRule {
    #[serde(default)]
    pub sources: Vec<AssociationSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssociationSource {
    /// `resource_attribute` or `connection`.
    pub from: String,
    /// The resource attribute, with `resource_attribute`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Pods never looked up (by name, a regular expression).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludeConfig {
    #[serde(default)]
    pub pods: Vec<ExcludePod>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExcludePod {
    pub name: String,
}

fn default_exclude() -> ExcludeConfig {
    ExcludeConfig {
        pods: ["jaeger-agent", "jaeger-collector"]
            .iter()
            .map(|n| ExcludePod {
                name: n.to_string(),
            })
            .collect(),
    }
}

/// Where an association source takes its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The client address of the request that carried the data.
    Connection,
    /// A resource attribute.
    Attribute(String),
}

/// Resource attributes matched through an index; any other is compared with each pod's extracted
/// attributes.
pub const ASSOCIATION_ATTRIBUTES: &[&str] = &[
    "k8s.pod.ip",
    "k8s.pod.uid",
    "k8s.pod.name",
    "k8s.namespace.name",
    "container.id",
    "host.name",
];

/// A label or annotation rule, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub tag_name: Option<String>,
    pub key: Option<String>,
    pub key_regex: Option<Regex>,
    pub from: From,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum From {
    Pod,
    Namespace,
    Node,
}

/// Everything `check` compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub associations: Vec<Vec<Source>>,
    pub labels: Vec<Rule>,
    pub annotations: Vec<Rule>,
    pub exclude: Vec<Regex>,
}

fn compile_rules(rules: &[FieldRule], section: &str, errors: &mut Vec<ConfigError>) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let at = |k: &str| format!("extract::{section}::{i}::{k}");
        let from = match r.from.as_str() {
            "pod" => From::Pod,
            "namespace" => From::Namespace,
            "node" => From::Node,
            // otelcol spells the default as an empty string too.
            "" => From::Pod,
            other if NOT_BUILT_FROM.contains(&other) => {
                errors.push(ConfigError::at(
                    at("from"),
                    format!(
                        "not built: vigil reads labels and annotations from pod, namespace or \
                         node, not from the {other} (it does not watch {other} objects)"
                    ),
                ));
                continue;
            }
            other => {
                errors.push(ConfigError::at(
                    at("from"),
                    format!(
                        "unknown source {other:?}; expected pod, namespace, node, deployment, \
                         statefulset, daemonset or job"
                    ),
                ));
                continue;
            }
        };
        let key_regex = match &r.key_regex {
            Some(p) => match vigil_core::config::re2_regex(&format!("^(?:{p})$")) {
                Ok(re) => Some(re),
                Err(e) => {
                    errors.push(ConfigError::at(
                        at("key_regex"),
                        format!("invalid regular expression: {e}"),
                    ));
                    continue;
                }
            },
            None => None,
        };
        match (&r.key, &key_regex) {
            (Some(_), Some(_)) => errors.push(ConfigError::at(
                at("key"),
                "key and key_regex are exclusive; give one",
            )),
            (None, None) => errors.push(ConfigError::at(
                at("key"),
                "a key or a key_regex is required",
            )),
            _ => out.push(Rule {
                tag_name: r.tag_name.clone().filter(|t| !t.is_empty()),
                key: r.key.clone(),
                key_regex,
                from,
            }),
        }
    }
    out
}

/// Checks a decoded config and compiles its rules; every problem carries its key path.
pub fn check(cfg: &K8sAttributesConfig) -> Result<Compiled, ConfigError> {
    let mut errors = Vec::new();
    for (i, m) in cfg.extract.metadata.iter().enumerate() {
        if NOT_BUILT_METADATA.contains(&m.as_str()) {
            errors.push(ConfigError::at(
                format!("extract::metadata::{i}"),
                format!("not built: vigil does not fill {m:?} (it does not watch the object that holds it)"),
            ));
        } else if !KNOWN_METADATA.contains(&m.as_str()) {
            errors.push(ConfigError::at(
                format!("extract::metadata::{i}"),
                format!(
                    "unknown metadata {m:?}; expected one of {}",
                    KNOWN_METADATA.join(", ")
                ),
            ));
        }
    }
    let labels = compile_rules(&cfg.extract.labels, "labels", &mut errors);
    let annotations = compile_rules(&cfg.extract.annotations, "annotations", &mut errors);
    let mut associations = Vec::new();
    for (i, rule) in cfg.pod_association.iter().enumerate() {
        let mut sources: Vec<(String, AssociationSource)> = rule
            .sources
            .iter()
            .enumerate()
            .map(|(j, s)| (format!("pod_association::{i}::sources::{j}"), s.clone()))
            .collect();
        if let Some(from) = &rule.from {
            sources.push((
                format!("pod_association::{i}"),
                AssociationSource {
                    from: from.clone(),
                    name: rule.name.clone(),
                },
            ));
        }
        if sources.is_empty() {
            errors.push(ConfigError::at(
                format!("pod_association::{i}::sources"),
                "a rule needs at least one source",
            ));
            continue;
        }
        if sources.len() > 4 {
            errors.push(ConfigError::at(
                format!("pod_association::{i}::sources"),
                "a rule has at most 4 sources, as in otelcol",
            ));
            continue;
        }
        let mut compiled = Vec::new();
        for (at, s) in sources {
            match (s.from.as_str(), s.name.as_deref()) {
                ("connection", _) => compiled.push(Source::Connection),
                // Any other attribute is matched against what `extract` gives each pod, as otelcol
                // indexes pods by their extracted attributes.
                ("resource_attribute", Some(n)) if !n.is_empty() => {
                    compiled.push(Source::Attribute(n.to_string()))
                }
                ("resource_attribute", _) => errors.push(ConfigError::at(
                    format!("{at}::name"),
                    "resource_attribute needs the attribute's name",
                )),
                (other, _) => errors.push(ConfigError::at(
                    format!("{at}::from"),
                    format!("unknown source {other:?}; expected resource_attribute or connection"),
                )),
            }
        }
        associations.push(compiled);
    }
    if associations.is_empty() {
        associations.push(vec![Source::Connection]);
    }
    for (section, rules, ops) in [
        ("fields", &cfg.filter.fields, &["equals", "not-equals"][..]),
        (
            "labels",
            &cfg.filter.labels,
            &["equals", "not-equals", "exists", "does-not-exist"][..],
        ),
    ] {
        for (i, r) in rules.iter().enumerate() {
            if !ops.contains(&r.op.as_str()) {
                errors.push(ConfigError::at(
                    format!("filter::{section}::{i}::op"),
                    format!("unknown op {:?}; expected {}", r.op, ops.join(", ")),
                ));
            }
            if r.key.is_empty() {
                errors.push(ConfigError::at(
                    format!("filter::{section}::{i}::key"),
                    "a key is required",
                ));
            }
        }
    }
    let mut exclude = Vec::new();
    for (i, p) in cfg.exclude.pods.iter().enumerate() {
        match vigil_core::config::re2_regex(&p.name) {
            Ok(re) => exclude.push(re),
            Err(e) => errors.push(ConfigError::at(
                format!("exclude::pods::{i}::name"),
                format!("invalid regular expression: {e}"),
            )),
        }
    }
    if cfg.kube_api_qps < 0.0 || cfg.kube_api_qps.is_nan() {
        errors.push(ConfigError::at(
            "kube_api_qps",
            format!("must be 0 or more, not {}", cfg.kube_api_qps),
        ));
    }
    if cfg.kube_api_burst < 0 {
        errors.push(ConfigError::at(
            "kube_api_burst",
            format!("must be 0 or more, not {}", cfg.kube_api_burst),
        ));
    }
    if cfg.auth_type != AuthType::KubeConfig && cfg.context.is_some() {
        errors.push(ConfigError::at(
            "context",
            "context is read only with auth_type kubeConfig",
        ));
    }
    match ConfigError::join(errors) {
        Some(e) => Err(e),
        None => Ok(Compiled {
            associations,
            labels,
            annotations,
            exclude,
        }),
    }
}

impl FilterConfig {
    /// The node to watch: `node`, else the value of `node_from_env_var`. An empty variable is
    /// an error: without it the agent would watch every pod of the cluster.
    pub fn node_name(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, String> {
        if !self.node.is_empty() {
            return Ok(Some(self.node.clone()));
        }
        if self.node_from_env_var.is_empty() {
            return Ok(None);
        }
        match env(&self.node_from_env_var).filter(|v| !v.is_empty()) {
            Some(n) => Ok(Some(n)),
            None => Err(format!(
                "filter::node_from_env_var: environment variable {} is empty or not set (set it \
                 from spec.nodeName with the downward API)",
                self.node_from_env_var
            )),
        }
    }

    /// The pod watch's field selector (`spec.nodeName=…` first) and label selector.
    pub fn selectors(&self, node: Option<&str>) -> (String, String) {
        let mut fields: Vec<String> = node
            .map(|n| format!("spec.nodeName={n}"))
            .into_iter()
            .collect();
        for f in &self.fields {
            let op = if f.op == "not-equals" { "!=" } else { "=" };
            fields.push(format!("{}{op}{}", f.key, f.value));
        }
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| match l.op.as_str() {
                "not-equals" => format!("{}!={}", l.key, l.value),
                "exists" => l.key.clone(),
                "does-not-exist" => format!("!{}", l.key),
                _ => format!("{}={}", l.key, l.value),
            })
            .collect();
        (fields.join(","), labels.join(","))
    }
}
