//! `exclude_metrics` / `include_metrics`: which SignalFx datapoints are not sent. A filter names
//! metrics (`metric_name`, `metric_names`) and optionally dimension values; each string is a
//! literal, a `/regex/` (RE2), or a glob (`*`, `?`, `[...]`), and a leading `!` negates it. A
//! string list matches when one of its positive items matches (or it has none) and none of its
//! negated items does, as SignalFx's filter sets do. A point is dropped when an exclude filter
//! matches and no include filter does. Unless `exclude_metrics` is set to `[]`, upstream's
//! default excludes (the custom-metric cost guard) are added.

use super::proto::DataPoint;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One or many strings, as the YAML may write a dimension's values either way.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A metric filter, with upstream's keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_names: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, OneOrMany>,
}

enum Pattern {
    Literal(String),
    Regex(regex::Regex),
}

impl Pattern {
    fn matches(&self, s: &str) -> bool {
        match self {
            Pattern::Literal(l) => l == s,
            Pattern::Regex(r) => r.is_match(s),
        }
    }
}

/// Positive and negated patterns of one string list.
#[derive(Default)]
struct StringFilter {
    positive: Vec<Pattern>,
    negated: Vec<Pattern>,
}

/// A glob as an anchored regex: `*` any run, `?` one character, `[...]` a class.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    let mut in_class = false;
    for c in glob.chars() {
        match c {
            '*' if !in_class => out.push_str(".*"),
            '?' if !in_class => out.push('.'),
            '[' if !in_class => {
                in_class = true;
                out.push('[');
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '!' if in_class && out.ends_with('[') => out.push('^'),
            c if in_class => out.push(c),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

impl StringFilter {
    fn new(items: &[String]) -> Result<Self, String> {
        let mut f = StringFilter::default();
        for item in items {
            let (neg, raw) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item.as_str()),
            };
            let pattern = if raw.len() >= 2 && raw.starts_with('/') && raw.ends_with('/') {
                let re = &raw[1..raw.len() - 1];
                Pattern::Regex(
                    vigil_core::config::re2_regex(re)
                        .map_err(|e| format!("invalid regex {re:?}: {e}"))?,
                )
            } else if raw.contains(['*', '?', '[']) {
                Pattern::Regex(
                    regex::Regex::new(&glob_regex(raw))
                        .map_err(|e| format!("invalid glob {raw:?}: {e}"))?,
                )
            } else {
                Pattern::Literal(raw.to_string())
            };
            if neg {
                f.negated.push(pattern);
            } else {
                f.positive.push(pattern);
            }
        }
        Ok(f)
    }

    fn matches(&self, s: &str) -> bool {
        (self.positive.is_empty() || self.positive.iter().any(|p| p.matches(s)))
            && !self.negated.iter().any(|p| p.matches(s))
    }
}

/// A compiled [`MetricFilter`].
pub struct Compiled {
    names: Option<StringFilter>,
    dims: Vec<(String, StringFilter)>,
}

impl Compiled {
    pub fn new(f: &MetricFilter) -> Result<Self, String> {
        let mut names: Vec<String> = f.metric_names.clone();
        names.extend(f.metric_name.clone());
        let names = if names.is_empty() {
            None
        } else {
            Some(StringFilter::new(&names)?)
        };
        let dims = f
            .dimensions
            .iter()
            .map(|(k, v)| Ok((k.clone(), StringFilter::new(&v.items())?)))
            .collect::<Result<_, String>>()?;
        if names.is_none() && f.dimensions.is_empty() {
            return Err("expected metric_name, metric_names or dimensions".into());
        }
        Ok(Compiled { names, dims })
    }

    pub fn matches(&self, p: &DataPoint) -> bool {
        if let Some(n) = &self.names {
            if !n.matches(&p.metric) {
                return false;
            }
        }
        self.dims.iter().all(|(k, f)| {
            p.dimensions
                .iter()
                .find(|d| d.key() == k)
                .is_some_and(|d| f.matches(d.value()))
        })
    }
}

/// The exclude and include filters of one exporter.
pub struct Filters {
    exclude: Vec<Compiled>,
    include: Vec<Compiled>,
}

impl Filters {
    /// `exclude: None` (the key unset) means the defaults; `Some([])` means none at all; a
    /// non-empty list is used with the defaults added, as upstream.
    pub fn new(
        exclude: Option<&[MetricFilter]>,
        include: &[MetricFilter],
    ) -> Result<Self, (String, String)> {
        let mut ex: Vec<MetricFilter> = exclude.map(<[_]>::to_vec).unwrap_or_default();
        if exclude.is_none_or(|e| !e.is_empty()) {
            ex.extend(default_excludes());
        }
        let compile = |key: &str, list: &[MetricFilter]| {
            list.iter()
                .enumerate()
                .map(|(i, f)| Compiled::new(f).map_err(|e| (format!("{key}::{i}"), e)))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Filters {
            exclude: compile("exclude_metrics", &ex)?,
            include: compile("include_metrics", include)?,
        })
    }

    pub fn keep(&self, p: &DataPoint) -> bool {
        !self.exclude.iter().any(|f| f.matches(p)) || self.include.iter().any(|f| f.matches(p))
    }
}

fn names(list: &[&str]) -> MetricFilter {
    MetricFilter {
        metric_names: list.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn with_dim(name: &str, dim: &str, values: &[&str]) -> MetricFilter {
    MetricFilter {
        metric_name: Some(name.into()),
        dimensions: BTreeMap::from([(
            dim.to_string(),
            OneOrMany::Many(values.iter().map(|s| s.to_string()).collect()),
        )]),
        ..Default::default()
    }
}

/// otelcol-contrib's default exclusions (its `default_metrics.yaml`): per-state and per-device
/// host series and kubelet/k8s series that Splunk Observability would bill as custom metrics.
pub fn default_excludes() -> Vec<MetricFilter> {
    vec![
        // Per-core CPU series in SignalFx naming, pending disk ops and memory paging.
        names(&[
            "cpu.interrupt",
            "cpu.nice",
            "cpu.softirq",
            "cpu.steal",
            "cpu.system",
            "cpu.user",
            "cpu.wait",
            "disk_ops.pending",
            "vmpage_io.memory.in",
            "vmpage_io.memory.out",
        ]),
        with_dim(
            "system.cpu.time",
            "state",
            &[
                "idle",
                "interrupt",
                "nice",
                "softirq",
                "steal",
                "system",
                "user",
                "wait",
            ],
        ),
        with_dim("system.memory.usage", "state", &["inactive"]),
        with_dim("system.filesystem.usage", "state", &["reserved"]),
        names(&["system.filesystem.inodes.usage"]),
        names(&[
            "system.disk.merged",
            "system.disk.io",
            "system.disk.time",
            "system.disk.io_time",
            "system.disk.operation_time",
            "system.disk.pending_operations",
            "system.disk.weighted_io_time",
        ]),
        names(&[
            "system.network.packets",
            "system.network.dropped",
            "system.network.tcp_connections",
            "system.network.connections",
        ]),
        names(&["system.processes.count", "system.processes.created"]),
        names(&["system.paging.faults", "system.paging.usage"]),
        with_dim("system.paging.operations", "type", &["minor"]),
        names(&[
            r"/^k8s\.container\..+_limit$/",
            "!k8s.container.memory_limit",
            "!k8s.container.cpu_limit",
            r"/^k8s\.container\..+_request$/",
            "!k8s.container.memory_request",
            "!k8s.container.cpu_request",
            r"/^k8s\.node\.condition_.+$/",
            "!k8s.node.condition_ready",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.memory\.available$/",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.memory\.major_page_faults$/",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.memory\.page_faults$/",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.memory\.rss$/",
            r"/^(?i:(k8s\.node)|(k8s\.pod))\.memory\.usage$/",
            r"/^(?i:(k8s\.node)|(k8s\.pod))\.memory\.working_set$/",
            r"/^k8s\.(?i:(node)|(pod))\.filesystem\.available$/",
            r"/^k8s\.(?i:(node)|(pod))\.filesystem\.capacity$/",
            r"/^k8s\.(?i:(node)|(pod))\.filesystem\.usage$/",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.cpu\.time$/",
            r"/^(?i:(container)|(k8s\.node)|(k8s\.pod))\.cpu\.utilization$/",
            r"/^k8s\.node\.network\.(?:(io)|(errors))$/",
            r"/^k8s\.volume\.inodes(\.free|\.used)*$/",
        ]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signalfx::proto::{Datum, Dimension};

    fn dp(name: &str, dims: &[(&str, &str)]) -> DataPoint {
        DataPoint {
            source: None,
            metric: name.into(),
            timestamp: None,
            value: Datum::default(),
            metric_type: None,
            dimensions: dims.iter().map(|(k, v)| Dimension::new(*k, *v)).collect(),
        }
    }

    #[test]
    fn defaults_drop_custom_series_and_keep_the_rest() {
        let f = Filters::new(None, &[]).unwrap();
        assert!(!f.keep(&dp("system.cpu.time", &[("state", "user")])));
        assert!(f.keep(&dp("system.cpu.time", &[("cpu", "0")])));
        assert!(!f.keep(&dp("k8s.container.ephemeralstorage_limit", &[])));
        assert!(f.keep(&dp("k8s.container.cpu_limit", &[])));
        assert!(!f.keep(&dp("k8s.pod.memory.rss", &[])));
        assert!(!f.keep(&dp("k8s.volume.inodes.used", &[])));
        assert!(f.keep(&dp("memory.utilization", &[])));
        // `[]` turns the defaults off; include wins over exclude.
        let none = Filters::new(Some(&[]), &[]).unwrap();
        assert!(none.keep(&dp("system.disk.io", &[])));
        let inc = Filters::new(
            None,
            &[MetricFilter {
                metric_name: Some("system.cpu.time".into()),
                dimensions: BTreeMap::from([(
                    "state".into(),
                    OneOrMany::Many(vec!["user".into(), "system".into()]),
                )]),
                ..Default::default()
            }],
        )
        .unwrap();
        assert!(inc.keep(&dp("system.cpu.time", &[("state", "user")])));
        assert!(!inc.keep(&dp("system.cpu.time", &[("state", "idle")])));
    }

    #[test]
    fn globs_and_negation() {
        let f = Compiled::new(&MetricFilter {
            metric_names: vec!["cpu.*".into(), "!cpu.idle".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(f.matches(&dp("cpu.user", &[])));
        assert!(!f.matches(&dp("cpu.idle", &[])));
        assert!(!f.matches(&dp("memory.used", &[])));
        assert!(Compiled::new(&MetricFilter::default()).is_err());
        assert!(Compiled::new(&MetricFilter {
            metric_name: Some("/(/".into()),
            ..Default::default()
        })
        .is_err());
    }
}
