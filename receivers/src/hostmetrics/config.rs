//! `hostmetrics` config as otelcol spells it: `collection_interval`, `initial_delay`, `root_path` and a
//! `scrapers` map whose keys pick the scrapers. Each scraper section carries its own filters and a
//! `metrics` map of `{ <name>: { enabled: bool } }` toggles, checked against the metrics it can emit.

use super::filter::{FilterConfig, NameFilter};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::config::{decode, duration};
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// The receiver's top-level keys.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostMetricsConfig {
    /// Time between two collections (otelcol's default: 1m).
    #[serde(default = "default_interval", with = "duration")]
    pub collection_interval: Duration,
    /// Wait before the first collection (otelcol's default: 1s).
    #[serde(default = "default_initial_delay", with = "duration")]
    pub initial_delay: Duration,
    /// scraperhelper's bound on one collection (otelcol's default 0: none). A collection that
    /// outlasts it is given up and logged; while it still runs, later ticks are skipped, so slow
    /// reads never pile up.
    #[serde(default, with = "duration")]
    pub timeout: Duration,
    /// Where the host's root file system is mounted (`/hostfs` in a container); empty means `/`.
    #[serde(default)]
    pub root_path: String,
    /// Scraper name → its section (null for defaults).
    #[serde(default)]
    pub scrapers: BTreeMap<String, Value>,
    /// In a logs pipeline: how often the host entity event is sent again (otelcol's default: 5m;
    /// 0 sends it once, at start).
    #[serde(default = "default_metadata_interval", with = "duration")]
    pub metadata_collection_interval: Duration,
}

fn default_metadata_interval() -> Duration {
    Duration::from_secs(300)
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_initial_delay() -> Duration {
    Duration::from_secs(1)
}

/// `metrics: { system.cpu.utilization: { enabled: true } }`, as the other scraping receivers
/// read it ([`Toggles::build`]).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricToggle {
    pub enabled: bool,
}

/// A hostmetrics scraper's metric section, all of mdatagen's keys: a missing `enabled` (or a null
/// section) keeps the default, as in otelcol ([`Toggles::build_with`]).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScraperMetric {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// mdatagen's re-aggregation of a metric's points over fewer attributes; not built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_strategy: Option<Value>,
    /// The attributes kept when re-aggregating; not built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
}

/// A scraper's `metrics` map (a null entry is a section left at its defaults).
pub type MetricToggles = BTreeMap<String, Option<ScraperMetric>>;

/// `resource_attributes: { process.cgroup: { enabled: true } }`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceToggle {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// mdatagen's experimental filters on the attribute's values; not built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_include: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_exclude: Option<Value>,
}

/// A scraper's `resource_attributes` map.
pub type ResourceToggles = BTreeMap<String, Option<ResourceToggle>>;

/// The scrapers otelcol's hostmetrics receiver has, in the order they are collected.
pub const SCRAPERS: &[&str] = &[
    "cpu",
    "memory",
    "load",
    "disk",
    "filesystem",
    "network",
    "paging",
    "processes",
    "process",
    "system",
];

/// Which of a scraper's metrics are emitted: otelcol's defaults, overridden by the `metrics` toggles.
#[derive(Debug, Clone, Default)]
pub struct Toggles {
    enabled: BTreeMap<&'static str, bool>,
}

impl Toggles {
    /// Starts from `known` (name, enabled by default) and applies the user's toggles; a name the
    /// scraper does not emit is an error naming the key.
    pub fn build(
        known: &[(&'static str, bool)],
        user: &BTreeMap<String, MetricToggle>,
        err: impl Fn(String, String) -> ConfigError,
    ) -> Result<Toggles, ConfigError> {
        let user: MetricToggles = user
            .iter()
            .map(|(k, t)| {
                let t = ScraperMetric {
                    enabled: Some(t.enabled),
                    ..Default::default()
                };
                (k.clone(), Some(t))
            })
            .collect();
        Toggles::build_with(known, &[], &user, err)
    }

    /// [`Toggles::build`] for a hostmetrics scraper, which may lack some of otelcol's metrics
    /// (`not_built`, all off by default there): `enabled: false` for one of them is accepted (it
    /// changes nothing), and `enabled: true` is refused by name.
    pub fn build_with(
        known: &[(&'static str, bool)],
        not_built: &[&str],
        user: &MetricToggles,
        err: impl Fn(String, String) -> ConfigError,
    ) -> Result<Toggles, ConfigError> {
        let mut enabled: BTreeMap<&'static str, bool> = known.iter().copied().collect();
        for (name, t) in user {
            let t = t.clone().unwrap_or_default();
            for (key, set) in [
                ("aggregation_strategy", t.aggregation_strategy.is_some()),
                ("attributes", t.attributes.is_some()),
            ] {
                if set {
                    return Err(err(
                        format!("metrics::{name}::{key}"),
                        "not built: vigil emits every attribute of a metric's points, as \
                         otelcol does by default"
                            .into(),
                    ));
                }
            }
            match known.iter().find(|(k, _)| k == name) {
                Some((k, _)) => {
                    if let Some(on) = t.enabled {
                        enabled.insert(k, on);
                    }
                }
                None if not_built.contains(&name.as_str()) => {
                    if t.enabled == Some(true) {
                        return Err(err(
                            format!("metrics::{name}"),
                            "not built: vigil does not emit this metric (otelcol's default is \
                             off; set enabled: false or remove the key)"
                                .into(),
                        ));
                    }
                }
                None => {
                    let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                    return Err(err(
                        format!("metrics::{name}"),
                        format!("unknown metric; this scraper emits {}", names.join(", ")),
                    ));
                }
            }
        }
        Ok(Toggles { enabled })
    }

    /// A scraper's `resource_attributes` over `known` (name, enabled by default); an unknown name
    /// is an error naming the key, as is a value filter (not built).
    pub fn resource(
        known: &[(&'static str, bool)],
        user: &ResourceToggles,
        err: impl Fn(String, String) -> ConfigError,
    ) -> Result<Toggles, ConfigError> {
        let mut enabled: BTreeMap<&'static str, bool> = known.iter().copied().collect();
        for (name, t) in user {
            let t = t.clone().unwrap_or_default();
            for (key, set) in [
                ("metrics_include", t.metrics_include.is_some()),
                ("metrics_exclude", t.metrics_exclude.is_some()),
            ] {
                if set {
                    return Err(err(
                        format!("resource_attributes::{name}::{key}"),
                        "not built: filter the resources after the receiver (filter processor)"
                            .into(),
                    ));
                }
            }
            match known.iter().find(|(k, _)| k == name) {
                Some((k, _)) => {
                    if let Some(on) = t.enabled {
                        enabled.insert(k, on);
                    }
                }
                None => {
                    let names: Vec<&str> = known.iter().map(|(k, _)| *k).collect();
                    return Err(err(
                        format!("resource_attributes::{name}"),
                        format!(
                            "unknown resource attribute; this scraper sets {}",
                            names.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Toggles { enabled })
    }

    /// All of `known` at their defaults.
    pub fn defaults(known: &[(&'static str, bool)]) -> Toggles {
        Toggles {
            enabled: known.iter().copied().collect(),
        }
    }

    pub fn on(&self, name: &str) -> bool {
        self.enabled.get(name).copied().unwrap_or(false)
    }
}

/// The keys shared by the scrapers that only take metric toggles.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlainScraper {
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// `load`: `cpu_average` divides the averages by the number of CPUs.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoadScraper {
    #[serde(default)]
    pub cpu_average: bool,
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// `disk`: `include`/`exclude` by `devices`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskScraper {
    #[serde(default)]
    pub include: Option<FilterConfig>,
    #[serde(default)]
    pub exclude: Option<FilterConfig>,
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// `network`: `include`/`exclude` by `interfaces`.
pub type NetworkScraper = DiskScraper;

/// `filesystem`: filters by device, file system type and mount point, and whether virtual file
/// systems (those `/proc/filesystems` marks `nodev`) are reported.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemScraper {
    #[serde(default)]
    pub include_devices: Option<FilterConfig>,
    #[serde(default)]
    pub exclude_devices: Option<FilterConfig>,
    #[serde(default)]
    pub include_fs_types: Option<FilterConfig>,
    #[serde(default)]
    pub exclude_fs_types: Option<FilterConfig>,
    #[serde(default)]
    pub include_mount_points: Option<FilterConfig>,
    #[serde(default)]
    pub exclude_mount_points: Option<FilterConfig>,
    #[serde(default)]
    pub include_virtual_filesystems: bool,
    #[serde(default)]
    pub metrics: MetricToggles,
}

/// `process`: `include`/`exclude` by executable `names`, and otelcol's `mute_process_*_error` flags.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessScraper {
    #[serde(default)]
    pub include: Option<FilterConfig>,
    #[serde(default)]
    pub exclude: Option<FilterConfig>,
    #[serde(default)]
    pub mute_process_name_error: bool,
    #[serde(default)]
    pub mute_process_exe_error: bool,
    #[serde(default)]
    pub mute_process_io_error: bool,
    #[serde(default)]
    pub mute_process_user_error: bool,
    #[serde(default)]
    pub mute_process_cgroup_error: bool,
    #[serde(default)]
    pub mute_process_all_errors: bool,
    /// Processes younger than this are skipped (otelcol's `scrape_process_delay`).
    #[serde(default, with = "duration")]
    pub scrape_process_delay: Duration,
    #[serde(default)]
    pub metrics: MetricToggles,
    /// Which resource attributes each process carries (`process.cgroup` is off by default).
    #[serde(default)]
    pub resource_attributes: ResourceToggles,
}

/// Decodes the receiver's section and each scraper's own section, with key paths in the errors.
pub fn load(id: &ComponentId, value: &Value) -> Result<HostMetricsConfig, ConfigError> {
    check(id, decode(ComponentKind::Receiver, id, value)?)
}

/// Checks a decoded section and prepares what the component runs with.
pub fn check(id: &ComponentId, cfg: HostMetricsConfig) -> Result<HostMetricsConfig, ConfigError> {
    let err =
        |path: String, msg: String| ConfigError::component(ComponentKind::Receiver, id, path, msg);
    if let Err(m) = vigil_core::config::check_interval(cfg.collection_interval) {
        return Err(err("collection_interval".into(), m));
    }
    if cfg.scrapers.is_empty() {
        return Err(err(
            "scrapers".into(),
            format!(
                "must specify at least one scraper ({})",
                SCRAPERS.join(", ")
            ),
        ));
    }
    for name in cfg.scrapers.keys() {
        if !SCRAPERS.contains(&name.as_str()) {
            return Err(err(
                format!("scrapers::{name}"),
                format!(
                    "invalid scraper key; expected one of {}",
                    SCRAPERS.join(", ")
                ),
            ));
        }
    }
    if !cfg.root_path.is_empty() && !std::path::Path::new(&cfg.root_path).is_dir() {
        return Err(ConfigError {
            host_path: true,
            ..err(
                "root_path".into(),
                format!("{:?} is not a directory", cfg.root_path),
            )
        });
    }
    Ok(cfg)
}

/// Decodes one scraper section (`scrapers::<name>`), prefixing the key path.
pub fn scraper<T: serde::de::DeserializeOwned + Default>(
    id: &ComponentId,
    name: &str,
    value: &Value,
) -> Result<T, ConfigError> {
    if value.is_null() {
        return Ok(T::default());
    }
    decode::<T>(ComponentKind::Receiver, id, value).map_err(|mut e| {
        e.path = if e.path.is_empty() {
            format!("scrapers::{name}")
        } else {
            format!("scrapers::{name}::{}", e.path)
        };
        e
    })
}

/// Compiles an optional filter section, naming it in errors.
pub fn compile_filter(
    id: &ComponentId,
    path: &str,
    key: &str,
    f: &Option<FilterConfig>,
) -> Result<Option<NameFilter>, ConfigError> {
    match f {
        None => Ok(None),
        Some(f) => NameFilter::compile(f, key).map(Some).map_err(|(sub, msg)| {
            ConfigError::component(ComponentKind::Receiver, id, format!("{path}::{sub}"), msg)
        }),
    }
}
