//! `resourcedetection`: otelcol's resource detection processor. At start it runs the configured
//! detectors once — `env` (`OTEL_RESOURCE_ATTRIBUTES`), `system` (`host.name`, `host.id`, `os.type`)
//! and `k8snode` (the node name from a downward-API environment variable) — and then adds what they
//! found to the resource of every batch, replacing existing values when `override` is true.

use async_trait::async_trait;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use vigil_core::attrs::{kv_str, value_to_string};
use vigil_core::config::duration;
use vigil_core::otlp::common::v1::KeyValue;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Host, Processor,
    Signal, Telemetry,
};

const DETECTORS: &[&str] = &["env", "system", "k8snode"];

/// `{ enabled: bool }` toggles of optional resource attributes.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
}

/// The `system` detector's section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// Where `host.name` comes from, first success wins: `dns` (the canonical name) or `os`
    /// (the kernel's hostname); otelcol's `cname` and `lookup` are taken as `dns`.
    #[serde(default = "default_sources")]
    pub hostname_sources: Vec<String>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            hostname_sources: default_sources(),
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn default_sources() -> Vec<String> {
    vec!["dns".into(), "os".into()]
}

/// The `k8snode` detector's section.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct K8sNodeConfig {
    /// The environment variable holding the node name (set from `spec.nodeName` by the downward API).
    #[serde(default = "default_node_env")]
    pub node_from_env_var: String,
    /// Accepted for otelcol compatibility: the node name comes from the environment, not the API.
    #[serde(default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, Toggle>,
}

impl Default for K8sNodeConfig {
    fn default() -> Self {
        K8sNodeConfig {
            node_from_env_var: default_node_env(),
            auth_type: None,
            resource_attributes: BTreeMap::new(),
        }
    }
}

fn default_node_env() -> String {
    "K8S_NODE_NAME".into()
}

/// The `resourcedetection` processor config.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDetectionConfig {
    #[serde(default = "default_detectors")]
    pub detectors: Vec<String>,
    /// Detected values replace existing ones (default true).
    #[serde(default = "yes", rename = "override")]
    pub override_: bool,
    /// The limit for all detectors together (default 5s).
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub system: SystemConfig,
    #[serde(default)]
    pub k8snode: K8sNodeConfig,
}

fn default_detectors() -> Vec<String> {
    vec!["env".into()]
}
fn yes() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

const SYSTEM_ATTRS: &[(&str, bool)] = &[
    ("host.name", true),
    ("host.id", false),
    ("os.type", true),
    ("host.arch", false),
    ("os.description", false),
];
const K8S_ATTRS: &[(&str, bool)] = &[("k8s.node.name", true)];

#[cfg(test)]
fn load(
    id: &ComponentId,
    value: &serde_json::Value,
) -> Result<ResourceDetectionConfig, ConfigError> {
    check(
        id,
        vigil_core::config::decode(ComponentKind::Processor, id, value)?,
    )
}

/// Checks a decoded section and prepares what the component runs with.
fn check(
    id: &ComponentId,
    cfg: ResourceDetectionConfig,
) -> Result<ResourceDetectionConfig, ConfigError> {
    let err = |k: String, m: String| ConfigError::component(ComponentKind::Processor, id, k, m);
    // Every problem, not only the first, so that one `validate` run lists them all.
    let mut errors = Vec::new();
    for (i, d) in cfg.detectors.iter().enumerate() {
        if !DETECTORS.contains(&d.as_str()) {
            errors.push(err(
                format!("detectors::{i}"),
                format!(
                    "unknown detector {d:?}; this build has {}",
                    DETECTORS.join(", ")
                ),
            ));
        }
    }
    for (i, s) in cfg.system.hostname_sources.iter().enumerate() {
        if !matches!(s.as_str(), "dns" | "os" | "cname" | "lookup") {
            errors.push(err(
                format!("system::hostname_sources::{i}"),
                format!("invalid hostname source {s:?}; expected dns, os, cname or lookup"),
            ));
        }
    }
    for (section, known, map) in [
        ("system", SYSTEM_ATTRS, &cfg.system.resource_attributes),
        ("k8snode", K8S_ATTRS, &cfg.k8snode.resource_attributes),
    ] {
        for k in map.keys() {
            if !known.iter().any(|(n, _)| n == k) {
                let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
                errors.push(err(
                    format!("{section}::resource_attributes::{k}"),
                    format!("unknown attribute; expected one of {}", names.join(", ")),
                ));
            }
        }
    }
    match ConfigError::join(errors) {
        Some(e) => Err(e),
        None => Ok(cfg),
    }
}

fn enabled(known: &[(&str, bool)], user: &BTreeMap<String, Toggle>, name: &str) -> bool {
    user.get(name)
        .map(|t| t.enabled)
        .or_else(|| known.iter().find(|(n, _)| *n == name).map(|(_, d)| *d))
        .unwrap_or(false)
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, percent-decoded.
pub fn parse_env_attributes(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("OTEL_RESOURCE_ATTRIBUTES: {pair:?} is not key=value"))?;
        out.push((percent_decode(k.trim()), percent_decode(v.trim())));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            // Byte-wise, so a `%` before a multi-byte character cannot split it.
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The kernel's hostname.
fn os_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let h = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!h.is_empty()).then_some(h)
}

/// The fully qualified name of this host, as the resolver's canonical name for its hostname.
fn dns_hostname() -> Option<String> {
    let host = os_hostname()?;
    let c_host = std::ffi::CString::new(host).ok()?;
    // SAFETY: a zeroed addrinfo is a valid hints struct; getaddrinfo allocates `res`, which is
    // freed below, and `ai_canonname` is read only while `res` is alive.
    unsafe {
        let mut hints: libc::addrinfo = std::mem::zeroed();
        hints.ai_flags = libc::AI_CANONNAME;
        hints.ai_family = libc::AF_UNSPEC;
        let mut res: *mut libc::addrinfo = std::ptr::null_mut();
        if libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut res) != 0
            || res.is_null()
        {
            return None;
        }
        let canon = (*res).ai_canonname;
        let name = if canon.is_null() {
            None
        } else {
            Some(
                std::ffi::CStr::from_ptr(canon)
                    .to_string_lossy()
                    .into_owned(),
            )
        };
        libc::freeaddrinfo(res);
        name.filter(|n| !n.is_empty())
    }
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn arch() -> &'static str {
    // The semantic-convention names of the CPU architectures.
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "arm" => "arm32",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        other => other,
    }
}

/// Runs the detectors in order; for the same key, the first detector that set it wins, as in otelcol.
pub fn detect(
    cfg: &ResourceDetectionConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<KeyValue>, String> {
    let mut found: Vec<(String, String)> = Vec::new();
    for d in &cfg.detectors {
        let mut attrs: Vec<(String, String)> = Vec::new();
        match d.as_str() {
            "env" => {
                if let Some(v) = env("OTEL_RESOURCE_ATTRIBUTES") {
                    attrs = parse_env_attributes(&v)?;
                }
            }
            "system" => {
                let s = &cfg.system;
                let on = |n: &str| enabled(SYSTEM_ATTRS, &s.resource_attributes, n);
                if on("host.name") {
                    let name = s
                        .hostname_sources
                        .iter()
                        .find_map(|src| match src.as_str() {
                            "os" => os_hostname(),
                            _ => dns_hostname(),
                        });
                    match name {
                        Some(n) => attrs.push(("host.name".into(), n)),
                        None => return Err("system detector: no hostname source answered".into()),
                    }
                }
                if on("host.id") {
                    if let Some(id) = machine_id() {
                        attrs.push(("host.id".into(), id));
                    }
                }
                if on("os.type") {
                    attrs.push(("os.type".into(), std::env::consts::OS.into()));
                }
                if on("host.arch") {
                    attrs.push(("host.arch".into(), arch().into()));
                }
                if on("os.description") {
                    if let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
                        attrs.push(("os.description".into(), format!("Linux {}", r.trim())));
                    }
                }
            }
            "k8snode" => {
                let k = &cfg.k8snode;
                let node = env(&k.node_from_env_var).filter(|v| !v.is_empty()).ok_or_else(|| {
                    format!(
                        "k8snode detector: environment variable {} is not set (set it from spec.nodeName with the downward API)",
                        k.node_from_env_var
                    )
                })?;
                if enabled(K8S_ATTRS, &k.resource_attributes, "k8s.node.name") {
                    attrs.push(("k8s.node.name".into(), node));
                }
            }
            _ => {}
        }
        for (k, v) in attrs {
            if !found.iter().any(|(f, _)| *f == k) {
                found.push((k, v));
            }
        }
    }
    Ok(found.into_iter().map(|(k, v)| kv_str(&k, v)).collect())
}

/// Adds `detected` to a resource: replacing existing keys when `override_`, otherwise only filling
/// the missing ones.
pub fn merge(resource: &mut Option<Resource>, detected: &[KeyValue], override_: bool) {
    if detected.is_empty() {
        return;
    }
    let r = resource.get_or_insert_with(Resource::default);
    for kv in detected {
        match r.attributes.iter_mut().find(|a| a.key == kv.key) {
            Some(existing) if override_ => existing.value = kv.value.clone(),
            Some(_) => {}
            None => r.attributes.push(kv.clone()),
        }
    }
}

struct Factory;

/// The `resourcedetection` processor factory.
pub fn factory() -> Arc<dyn vigil_core::factory::DynProcessorFactory> {
    vigil_core::factory::processor(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = ResourceDetectionConfig;

    fn type_name(&self) -> &'static str {
        "resourcedetection"
    }

    fn validate(&self, id: &ComponentId, cfg: &ResourceDetectionConfig) -> Result<(), ConfigError> {
        check(id, cfg.clone()).map(|_| ())
    }
}

impl vigil_core::factory::ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[
            (Signal::Traces, vigil_core::Stability::Beta),
            (Signal::Metrics, vigil_core::Stability::Beta),
            (Signal::Logs, vigil_core::Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: ResourceDetectionConfig,
        _signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        let id = &set.id;
        let cfg = check(id, cfg)?;
        Ok(Arc::new(ResourceDetection {
            id: id.to_string(),
            cfg,
            detected: OnceLock::new(),
            next,
        }))
    }
}

/// A running `resourcedetection` processor.
pub struct ResourceDetection {
    id: String,
    cfg: ResourceDetectionConfig,
    detected: OnceLock<Vec<KeyValue>>,
    next: Arc<dyn Consumer>,
}

#[async_trait]
impl Component for ResourceDetection {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let cfg = self.cfg.clone();
        // Detection may wait on DNS; bound it by `timeout` and keep it off the async workers.
        let run = tokio::task::spawn_blocking(move || detect(&cfg, &|k| std::env::var(k).ok()));
        let attrs = match tokio::time::timeout(self.cfg.timeout, run).await {
            Ok(Ok(Ok(a))) => a,
            Ok(Ok(Err(e))) => anyhow::bail!("processors::{}: {e}", self.id),
            Ok(Err(e)) => anyhow::bail!("processors::{}: detection failed: {e}", self.id),
            Err(_) => anyhow::bail!(
                "processors::{}: detection did not finish within timeout ({:?})",
                self.id,
                self.cfg.timeout
            ),
        };
        let shown: Vec<String> = attrs
            .iter()
            .map(|kv| {
                let v = kv
                    .value
                    .as_ref()
                    .and_then(|v| v.value.as_ref())
                    .map(value_to_string)
                    .unwrap_or_default();
                format!("{}={v}", kv.key)
            })
            .collect();
        tracing::info!(processor = %self.id, "detected resource attributes: {}", shown.join(", "));
        let _ = self.detected.set(attrs);
        Ok(())
    }
}

#[async_trait]
impl Consumer for ResourceDetection {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let detected = self.detected.get().map(Vec::as_slice).unwrap_or(&[]);
        let o = self.cfg.override_;
        match &mut data {
            Telemetry::Traces(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
            Telemetry::Metrics(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
            Telemetry::Logs(v) => v
                .iter_mut()
                .for_each(|r| merge(&mut r.resource, detected, o)),
        }
        self.next.consume(data).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::get_str;

    fn id() -> ComponentId {
        ComponentId::parse("resourcedetection").unwrap()
    }

    #[test]
    fn env_system_and_k8snode_first_detector_wins() {
        let cfg = load(
            &id(),
            &serde_json::json!({"detectors": ["env", "system", "k8snode"],
                "system": {"hostname_sources": ["os"], "resource_attributes": {"host.id": {"enabled": true}}}}),
        )
        .unwrap();
        let env = |k: &str| match k {
            "OTEL_RESOURCE_ATTRIBUTES" => {
                Some("service.name=api, team=a%2Cb,os.type=custom".to_string())
            }
            "K8S_NODE_NAME" => Some("node-7".to_string()),
            _ => None,
        };
        let attrs = detect(&cfg, &env).unwrap();
        assert_eq!(get_str(&attrs, "service.name"), Some("api"));
        assert_eq!(get_str(&attrs, "team"), Some("a,b"));
        assert_eq!(get_str(&attrs, "os.type"), Some("custom"), "env came first");
        assert_eq!(get_str(&attrs, "k8s.node.name"), Some("node-7"));
        assert_eq!(get_str(&attrs, "host.name"), os_hostname().as_deref());
        assert!(get_str(&attrs, "host.name").is_some());
        if let Some(mid) = machine_id() {
            assert_eq!(get_str(&attrs, "host.id"), Some(mid.as_str()));
        }

        let missing = detect(&cfg, &|_| None).unwrap_err();
        assert!(missing.contains("K8S_NODE_NAME"), "{missing}");
    }

    #[test]
    fn override_decides_who_wins_on_the_resource() {
        let detected = vec![
            kv_str("host.name", "detected"),
            kv_str("k8s.node.name", "n"),
        ];
        let mut r = Some(Resource {
            attributes: vec![kv_str("host.name", "mine")],
            ..Default::default()
        });
        merge(&mut r, &detected, false);
        let a = &r.as_ref().unwrap().attributes;
        assert_eq!(get_str(a, "host.name"), Some("mine"));
        assert_eq!(get_str(a, "k8s.node.name"), Some("n"));
        merge(&mut r, &detected, true);
        assert_eq!(
            get_str(&r.unwrap().attributes, "host.name"),
            Some("detected")
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        let e = load(&id(), &serde_json::json!({"detectors": ["env", "gcp"]})).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("processors::resourcedetection::detectors::1: unknown detector"),
            "{e}"
        );
        let e = load(
            &id(),
            &serde_json::json!({"system": {"hostname_sources": ["dn"]}}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("system::hostname_sources::0"), "{e}");
        let cfg = load(&id(), &serde_json::json!({"override": false})).unwrap();
        assert!(!cfg.override_);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert!(parse_env_attributes("novalue").is_err());
        assert_eq!(
            parse_env_attributes("k=%é%4").unwrap(),
            vec![("k".into(), "%é%4".into())]
        );
    }
}
