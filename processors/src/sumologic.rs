//! `sumologic`: otelcol-contrib's Sumo Logic schema processor, which shapes metadata the way Sumo
//! Logic's apps expect, in upstream's order: `add_cloud_namespace` (`cloud.namespace` from
//! `cloud.platform`: `aws/ec2`, `ecs`, `ElasticBeanstalk`), `translate_attributes` (resource
//! attributes of logs and metrics renamed to Sumo's names, `k8s.pod.name` → `pod`, ..., never over
//! an existing one), `translate_telegraf_attributes` (Telegraf metric names to Sumo's,
//! `cpu_usage_active` → `CPU_Total`, ...), `nest_attributes` (off by default: dotted keys turned
//! into nested maps, `kubernetes.pod.name` → `kubernetes: {pod: {name}}`, optionally squashing
//! one-entry maps back into dotted keys), `aggregate_attributes` (attributes with a prefix moved
//! under one map attribute, prefix trimmed), `field_attributes` (a log record's severity, span
//! and trace ids copied into attributes: `loglevel`, `severitytext`, `spanid`, `traceid`) and
//! `translate_docker_metrics` (off by default: `docker_stats` metric names and container
//! resource attributes renamed to Sumo's, `container.cpu.percent` → `cpu_percentage`,
//! `container.name` → `container.Name`). Nothing is buffered: each batch is changed in place and
//! passed on.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::factory::{self, DynProcessorFactory, FactoryBase, ProcessorFactory};
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue, KeyValueList};
use vigil_core::otlp::metrics::v1::Metric;
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, ConsumeError, Consumer, Processor,
    Settings, Signal, Stability, Telemetry,
};

fn yes() -> bool {
    true
}
fn dot() -> String {
    ".".into()
}

/// `nest_attributes`: keys split at `separator` become nested maps; `include`/`exclude` are key
/// prefixes (an empty `include` takes every key); `squash_single_values` then joins chains of
/// one-entry maps back into one key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NestConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "dot")]
    separator: String,
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    squash_single_values: bool,
}

impl Default for NestConfig {
    fn default() -> Self {
        NestConfig {
            enabled: false,
            separator: dot(),
            include: Vec::new(),
            exclude: Vec::new(),
            squash_single_values: false,
        }
    }
}

/// One `aggregate_attributes` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    attribute: String,
    #[serde(default)]
    prefixes: Vec<String>,
}

/// One `field_attributes` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldAttribute {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    name: String,
}

fn field(name: &str) -> FieldAttribute {
    FieldAttribute {
        enabled: false,
        name: name.into(),
    }
}

/// `field_attributes`, each off by default under upstream's attribute name.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldAttributes {
    #[serde(default = "severity_number")]
    severity_number: FieldAttribute,
    #[serde(default = "severity_text")]
    severity_text: FieldAttribute,
    #[serde(default = "span_id")]
    span_id: FieldAttribute,
    #[serde(default = "trace_id")]
    trace_id: FieldAttribute,
}

fn severity_number() -> FieldAttribute {
    field("loglevel")
}
fn severity_text() -> FieldAttribute {
    field("severitytext")
}
fn span_id() -> FieldAttribute {
    field("spanid")
}
fn trace_id() -> FieldAttribute {
    field("traceid")
}

impl Default for FieldAttributes {
    fn default() -> Self {
        FieldAttributes {
            severity_number: severity_number(),
            severity_text: severity_text(),
            span_id: span_id(),
            trace_id: trace_id(),
        }
    }
}

/// The `sumologic` processor config, with otelcol-contrib's keys and defaults.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SumologicConfig {
    #[serde(default = "yes")]
    add_cloud_namespace: bool,
    #[serde(default = "yes")]
    translate_attributes: bool,
    #[serde(default = "yes")]
    translate_telegraf_attributes: bool,
    #[serde(default)]
    nest_attributes: NestConfig,
    #[serde(default)]
    aggregate_attributes: Vec<Aggregation>,
    #[serde(default)]
    field_attributes: FieldAttributes,
    #[serde(default)]
    translate_docker_metrics: bool,
}

impl Default for SumologicConfig {
    fn default() -> Self {
        SumologicConfig {
            add_cloud_namespace: true,
            translate_attributes: true,
            translate_telegraf_attributes: true,
            nest_attributes: NestConfig::default(),
            aggregate_attributes: Vec::new(),
            field_attributes: FieldAttributes::default(),
            translate_docker_metrics: false,
        }
    }
}

impl SumologicConfig {
    fn check(&self, id: &ComponentId) -> Result<(), ConfigError> {
        let err = |key: &str, msg: &str| {
            Err(ConfigError::component(
                ComponentKind::Processor,
                id,
                key,
                msg,
            ))
        };
        for (i, a) in self.aggregate_attributes.iter().enumerate() {
            if a.attribute.is_empty() {
                return err(
                    &format!("aggregate_attributes[{i}]::attribute"),
                    "requires a non-empty attribute name",
                );
            }
        }
        Ok(())
    }
}

/// OpenTelemetry resource attribute names and the names Sumo Logic's apps use.
const ATTRIBUTE_TRANSLATIONS: &[(&str, &str)] = &[
    ("cloud.account.id", "AccountId"),
    ("cloud.availability_zone", "AvailabilityZone"),
    ("cloud.platform", "aws_service"),
    ("cloud.region", "Region"),
    ("host.id", "InstanceId"),
    ("host.name", "host"),
    ("host.type", "InstanceType"),
    ("k8s.cluster.name", "Cluster"),
    ("k8s.container.name", "container"),
    ("k8s.daemonset.name", "daemonset"),
    ("k8s.deployment.name", "deployment"),
    ("k8s.namespace.name", "namespace"),
    ("k8s.node.name", "node"),
    ("k8s.service.name", "service"),
    ("k8s.pod.hostname", "host"),
    ("k8s.pod.name", "pod"),
    ("k8s.pod.uid", "pod_id"),
    ("k8s.replicaset.name", "replicaset"),
    ("k8s.statefulset.name", "statefulset"),
    ("service.name", "service"),
    ("log.file.path_resolved", "_sourceName"),
];

/// Telegraf metric names and Sumo Logic's.
const TELEGRAF_TRANSLATIONS: &[(&str, &str)] = &[
    ("cpu_usage_active", "CPU_Total"),
    ("cpu_usage_idle", "CPU_Idle"),
    ("cpu_usage_iowait", "CPU_IOWait"),
    ("cpu_usage_irq", "CPU_Irq"),
    ("cpu_usage_nice", "CPU_Nice"),
    ("cpu_usage_softirq", "CPU_SoftIrq"),
    ("cpu_usage_steal", "CPU_Stolen"),
    ("cpu_usage_System", "CPU_Sys"),
    ("cpu_usage_user", "CPU_User"),
    ("system_load1", "CPU_LoadAvg_1min"),
    ("system_load5", "CPU_LoadAvg_5min"),
    ("system_load15", "CPU_LoadAvg_15min"),
    ("disk_used", "Disk_Used"),
    ("disk_used_percent", "Disk_UsedPercent"),
    ("disk_inodes_free", "Disk_InodesAvailable"),
    ("diskio_reads", "Disk_Reads"),
    ("diskio_read_bytes", "Disk_ReadBytes"),
    ("diskio_writes", "Disk_Writes"),
    ("diskio_write_bytes", "Disk_WriteBytes"),
    ("mem_total", "Mem_Total"),
    ("mem_free", "Mem_free"),
    ("mem_available", "Mem_ActualFree"),
    ("mem_used", "Mem_ActualUsed"),
    ("mem_used_percent", "Mem_UsedPercent"),
    ("mem_available_percent", "Mem_FreePercent"),
    ("procstat_num_threads", "Proc_Threads"),
    ("procstat_memory_vms", "Proc_VMSize"),
    ("procstat_memory_rss", "Proc_RSSize"),
    ("procstat_cpu_usage", "Proc_CPU"),
    ("procstat_major_faults", "Proc_MajorFaults"),
    ("procstat_minor_faults", "Proc_MinorFaults"),
    ("net_bytes_sent", "Net_OutBytes"),
    ("net_bytes_recv", "Net_InBytes"),
    ("net_packets_sent", "Net_OutPackets"),
    ("net_packets_recv", "Net_InPackets"),
    ("netstat_tcp_close", "TCP_Close"),
    ("netstat_tcp_close_wait", "TCP_CloseWait"),
    ("netstat_tcp_closing", "TCP_Closing"),
    ("netstat_tcp_established", "TCP_Established"),
    ("netstat_tcp_listen", "TCP_Listen"),
    ("netstat_tcp_time_wait", "TCP_TimeWait"),
];

/// `docker_stats` receiver metric names and the names Sumo Logic's Docker app uses.
const DOCKER_METRIC_TRANSLATIONS: &[(&str, &str)] = &[
    ("container.cpu.percent", "cpu_percentage"),
    ("container.cpu.usage.system", "system_cpu_usage"),
    ("container.cpu.usage.percpu", "cpu_usage.percpu_usage"),
    ("container.cpu.usage.total", "cpu_usage.total_usage"),
    (
        "container.cpu.usage.kernelmode",
        "cpu_usage.usage_in_kernelmode",
    ),
    (
        "container.cpu.usage.usermode",
        "cpu_usage.usage_in_usermode",
    ),
    (
        "container.cpu.throttling_data.periods",
        "throttling_data.periods",
    ),
    (
        "container.cpu.throttling_data.throttled_periods",
        "throttling_data.throttled_periods",
    ),
    (
        "container.cpu.throttling_data.throttled_time",
        "throttling_data.throttled_time",
    ),
    ("container.memory.usage.limit", "limit"),
    ("container.memory.usage.max", "max_usage"),
    ("container.memory.percent", "memory_percentage"),
    ("container.memory.usage.total", "usage"),
    ("container.memory.active_anon", "stats.active_anon"),
    ("container.memory.active_file", "stats.active_file"),
    ("container.memory.cache", "stats.cache"),
    (
        "container.memory.hierarchical_memory_limit",
        "stats.hierarchical_memory_limit",
    ),
    ("container.memory.inactive_anon", "stats.inactive_anon"),
    ("container.memory.inactive_file", "stats.inactive_file"),
    ("container.memory.mapped_file", "stats.mapped_file"),
    ("container.memory.pgfault", "stats.pgfault"),
    ("container.memory.pgmajfault", "stats.pgmajfault"),
    ("container.memory.pgpgin", "stats.pgpgin"),
    ("container.memory.pgpgout", "stats.pgpgout"),
    ("container.memory.rss", "stats.rss"),
    ("container.memory.rss_huge", "stats.rss_huge"),
    ("container.memory.unevictable", "stats.unevictable"),
    ("container.memory.writeback", "stats.writeback"),
    (
        "container.memory.total_active_anon",
        "stats.total_active_anon",
    ),
    (
        "container.memory.total_active_file",
        "stats.total_active_file",
    ),
    ("container.memory.total_cache", "stats.total_cache"),
    (
        "container.memory.total_inactive_anon",
        "stats.total_inactive_anon",
    ),
    (
        "container.memory.total_mapped_file",
        "stats.total_mapped_file",
    ),
    ("container.memory.total_pgfault", "stats.total_pgfault"),
    (
        "container.memory.total_pgmajfault",
        "stats.total_pgmajfault",
    ),
    ("container.memory.total_pgpgin", "stats.total_pgpgin"),
    ("container.memory.total_pgpgout", "stats.total_pgpgout"),
    ("container.memory.total_rss", "stats.total_rss"),
    ("container.memory.total_rss_huge", "stats.total_rss_huge"),
    (
        "container.memory.total_unevictable",
        "stats.total_unevictable",
    ),
    ("container.memory.total_writeback", "stats.total_writeback"),
    (
        "container.blockio.io_merged_recursive",
        "io_merged_recursive",
    ),
    (
        "container.blockio.io_queued_recursive",
        "io_queue_recursive",
    ),
    (
        "container.blockio.io_service_bytes_recursive",
        "io_service_bytes_recursive",
    ),
    (
        "container.blockio.io_service_time_recursive",
        "io_service_time_recursive",
    ),
    (
        "container.blockio.io_serviced_recursive",
        "io_serviced_recursive",
    ),
    ("container.blockio.io_time_recursive", "io_time_recursive"),
    (
        "container.blockio.io_wait_time_recursive",
        "io_wait_time_recursive",
    ),
    ("container.blockio.sectors_recursive", "sectors_recursive"),
];

/// The container resource attributes `translate_docker_metrics` renames.
const DOCKER_ATTRIBUTE_TRANSLATIONS: &[(&str, &str)] = &[
    ("container.id", "container.FullID"),
    ("container.image.name", "container.ImageName"),
    ("container.name", "container.Name"),
];

/// OTLP severity numbers 1..=24 as upstream's `loglevel` names them.
const LEVELS: [&str; 24] = [
    "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO", "INFO2",
    "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3", "ERROR4",
    "FATAL", "FATAL2", "FATAL3", "FATAL4",
];

fn str_value(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn has(attrs: &[KeyValue], key: &str) -> bool {
    attrs.iter().any(|kv| kv.key == key)
}

fn put_str(attrs: &mut Vec<KeyValue>, key: &str, v: &str) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = str_value(v),
        None => attrs.push(KeyValue {
            key: key.into(),
            value: str_value(v),
            ..Default::default()
        }),
    }
}

fn add_cloud_namespace(attrs: &mut Vec<KeyValue>) {
    let platform = attrs
        .iter()
        .find(|kv| kv.key == "cloud.platform")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            },
        );
    let ns = match platform {
        Some("aws_ec2") => "aws/ec2",
        Some("aws_ecs") => "ecs",
        Some("aws_elastic_beanstalk") => "ElasticBeanstalk",
        _ => return,
    };
    put_str(attrs, "cloud.namespace", ns);
}

/// As upstream: each attribute with a translation is renamed unless the Sumo name is already
/// there (then it keeps its own name); the first of several with the same target wins.
fn translate_attributes(attrs: &mut Vec<KeyValue>, table: &[(&str, &str)]) {
    let original: Vec<String> = attrs.iter().map(|kv| kv.key.clone()).collect();
    let mut out: Vec<KeyValue> = Vec::with_capacity(attrs.len());
    for mut kv in attrs.drain(..) {
        let target = table
            .iter()
            .find(|(ot, _)| *ot == kv.key)
            .map(|(_, sumo)| *sumo);
        let key = match target {
            Some(sumo) if !original.iter().any(|k| k == sumo) => sumo.to_string(),
            _ => kv.key.clone(),
        };
        if !has(&out, &key) {
            kv.key = key;
            out.push(kv);
        }
    }
    *attrs = out;
}

fn rename_metric(m: &mut Metric, table: &[(&str, &str)]) {
    if let Some((_, sumo)) = table.iter().find(|(t, _)| *t == m.name) {
        m.name = (*sumo).to_string();
    }
}

fn kvlist(values: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(Value::KvlistValue(KeyValueList { values })),
    }
}

/// A map put: replaces the value of an existing key in place, else appends.
fn put_value(attrs: &mut Vec<KeyValue>, key: String, v: AnyValue) {
    match attrs.iter_mut().find(|kv| kv.key == key) {
        Some(kv) => kv.value = Some(v),
        None => attrs.push(KeyValue {
            key,
            value: Some(v),
            ..Default::default()
        }),
    }
}

/// Puts `v` under the path `keys`, as upstream's nesting walk does: a value met on the way that
/// is not a map becomes a map holding it under `""`; at the end, a map there takes `v`'s entries
/// (when `v` is a map) or `v` under `""`, anything else is replaced by `v`.
fn insert_path(map: &mut Vec<KeyValue>, keys: &[String], v: AnyValue) {
    let Some((first, rest)) = keys.split_first() else {
        return;
    };
    let i = match map.iter().position(|kv| kv.key == *first) {
        Some(i) => i,
        None => {
            let init = if rest.is_empty() {
                AnyValue::default()
            } else {
                kvlist(Vec::new())
            };
            map.push(KeyValue {
                key: first.clone(),
                value: Some(init),
                ..Default::default()
            });
            map.len() - 1
        }
    };
    let slot = map[i].value.get_or_insert_with(AnyValue::default);
    if rest.is_empty() {
        if let Some(Value::KvlistValue(m)) = &mut slot.value {
            match v.value {
                Some(Value::KvlistValue(vm)) => {
                    for e in vm.values {
                        put_value(&mut m.values, e.key, e.value.unwrap_or_default());
                    }
                }
                other => put_value(&mut m.values, String::new(), AnyValue { value: other }),
            }
        } else {
            *slot = v;
        }
        return;
    }
    if !matches!(slot.value, Some(Value::KvlistValue(_))) {
        let old = std::mem::take(slot);
        *slot = kvlist(vec![KeyValue {
            key: String::new(),
            value: Some(old),
            ..Default::default()
        }]);
    }
    if let Some(Value::KvlistValue(m)) = &mut slot.value {
        insert_path(&mut m.values, rest, v);
    }
}

fn join_key(sep: &str, key: String, suffix: &str) -> String {
    if suffix.is_empty() {
        key
    } else {
        format!("{key}{sep}{suffix}")
    }
}

/// Squashes `v` when it is a one-entry map: `v` becomes that entry's (squashed) value and the
/// entry's key path is returned. A map of several entries keeps its place; its entries' keys
/// grow by what their values squashed. Anything else: `""`.
fn squash_value(sep: &str, v: &mut AnyValue) -> String {
    let Some(Value::KvlistValue(m)) = &mut v.value else {
        return String::new();
    };
    if m.values.len() == 1 {
        let Some(only) = m.values.pop() else {
            return String::new();
        };
        let mut inner = only.value.unwrap_or_default();
        let suffix = squash_value(sep, &mut inner);
        *v = inner;
        return join_key(sep, only.key, &suffix);
    }
    let mut out: Vec<KeyValue> = Vec::with_capacity(m.values.len());
    for kv in m.values.drain(..) {
        let mut inner = kv.value.unwrap_or_default();
        let suffix = squash_value(sep, &mut inner);
        put_value(&mut out, join_key(sep, kv.key, &suffix), inner);
    }
    m.values = out;
    String::new()
}

impl NestConfig {
    /// On `include`'s prefixes (all keys when empty) and off `exclude`'s.
    fn nests(&self, key: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| key.starts_with(p.as_str())))
            && !self.exclude.iter().any(|p| key.starts_with(p.as_str()))
    }

    fn split(&self, key: &str) -> Vec<String> {
        if self.separator.is_empty() {
            // Go's strings.Split with an empty separator: one part per character.
            key.chars().map(String::from).collect()
        } else {
            key.split(self.separator.as_str())
                .map(String::from)
                .collect()
        }
    }

    fn apply(&self, attrs: &mut Vec<KeyValue>) {
        if !self.enabled || attrs.is_empty() {
            return;
        }
        let mut out: Vec<KeyValue> = Vec::with_capacity(attrs.len());
        for kv in attrs.drain(..) {
            let v = kv.value.unwrap_or_default();
            let keys = self.split(&kv.key);
            if !self.nests(&kv.key) || keys.is_empty() {
                put_value(&mut out, kv.key, v);
            } else {
                insert_path(&mut out, &keys, v);
            }
        }
        if self.squash_single_values {
            let mut root = kvlist(out);
            let key = squash_value(&self.separator, &mut root);
            out = match (key.is_empty(), root.value) {
                (true, Some(Value::KvlistValue(m))) => m.values,
                // One attribute in all: it stays one attribute, under its squashed key (a
                // single plain attribute keeps its key and value).
                (_, value) => vec![KeyValue {
                    key,
                    value: Some(AnyValue { value }),
                    ..Default::default()
                }],
            };
        }
        *attrs = out;
    }
}

fn aggregate(aggs: &[Aggregation], attrs: &mut Vec<KeyValue>) {
    for a in aggs {
        let mut moved: Vec<KeyValue> = Vec::new();
        for prefix in &a.prefixes {
            let mut kept = Vec::with_capacity(attrs.len());
            for kv in attrs.drain(..) {
                match kv.key.strip_prefix(prefix.as_str()) {
                    Some(rest) => moved.push(KeyValue {
                        key: rest.to_string(),
                        value: kv.value,
                        ..Default::default()
                    }),
                    None => kept.push(kv),
                }
            }
            *attrs = kept;
        }
        if !moved.is_empty() {
            // A later key of the same trimmed name replaces an earlier one, as a map put does.
            let mut values: Vec<KeyValue> = Vec::new();
            for kv in moved {
                match values.iter_mut().find(|v| v.key == kv.key) {
                    Some(v) => v.value = kv.value,
                    None => values.push(kv),
                }
            }
            let map = Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList { values })),
            });
            match attrs.iter_mut().find(|kv| kv.key == a.attribute) {
                Some(kv) => kv.value = map,
                None => attrs.push(KeyValue {
                    key: a.attribute.clone(),
                    value: map,
                    ..Default::default()
                }),
            }
        }
    }
}

fn hex(b: &[u8]) -> String {
    if b.iter().all(|x| *x == 0) {
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A running `sumologic` processor.
pub struct SumologicProcessor {
    cfg: SumologicConfig,
    next: Arc<dyn Consumer>,
    obs: vigil_core::ProcessorObs,
}

impl SumologicProcessor {
    /// Upstream's steps before aggregation, on a resource: the namespace, the translation (not
    /// for traces) and the nesting.
    fn resource(&self, r: &mut Option<Resource>, translate: bool) {
        let r = r.get_or_insert_with(Resource::default);
        if self.cfg.add_cloud_namespace {
            add_cloud_namespace(&mut r.attributes);
        }
        if translate && self.cfg.translate_attributes {
            translate_attributes(&mut r.attributes, ATTRIBUTE_TRANSLATIONS);
        }
        self.cfg.nest_attributes.apply(&mut r.attributes);
    }

    fn fields(&self, r: &mut vigil_core::otlp::logs::v1::LogRecord) {
        let f = &self.cfg.field_attributes;
        // Upstream checks its default names for presence and writes the configured ones.
        if f.severity_number.enabled && r.severity_number != 0 && !has(&r.attributes, "loglevel") {
            let level = usize::try_from(r.severity_number - 1)
                .ok()
                .and_then(|i| LEVELS.get(i))
                .copied()
                .unwrap_or("UNSPECIFIED");
            put_str(&mut r.attributes, &f.severity_number.name, level);
        }
        if f.severity_text.enabled && !has(&r.attributes, "severitytext") {
            let t = r.severity_text.clone();
            put_str(&mut r.attributes, &f.severity_text.name, &t);
        }
        if f.span_id.enabled && !has(&r.attributes, "spanid") {
            let s = hex(&r.span_id);
            put_str(&mut r.attributes, &f.span_id.name, &s);
        }
        if f.trace_id.enabled && !has(&r.attributes, "traceid") {
            let t = hex(&r.trace_id);
            put_str(&mut r.attributes, &f.trace_id.name, &t);
        }
    }

    fn process(&self, data: &mut Telemetry) {
        let aggs = &self.cfg.aggregate_attributes;
        match data {
            Telemetry::Logs(rls) => {
                for rl in rls {
                    self.resource(&mut rl.resource, true);
                    if let Some(r) = rl.resource.as_mut() {
                        aggregate(aggs, &mut r.attributes);
                    }
                    for r in rl
                        .scope_logs
                        .iter_mut()
                        .flat_map(|s| s.log_records.iter_mut())
                    {
                        self.cfg.nest_attributes.apply(&mut r.attributes);
                        aggregate(aggs, &mut r.attributes);
                        self.fields(r);
                    }
                }
            }
            Telemetry::Metrics(rms) => {
                for rm in rms {
                    self.resource(&mut rm.resource, true);
                    if let Some(r) = rm.resource.as_mut() {
                        aggregate(aggs, &mut r.attributes);
                        // Upstream's last step, after the aggregation.
                        if self.cfg.translate_docker_metrics {
                            translate_attributes(&mut r.attributes, DOCKER_ATTRIBUTE_TRANSLATIONS);
                        }
                    }
                    let nest = &self.cfg.nest_attributes;
                    for m in rm
                        .scope_metrics
                        .iter_mut()
                        .flat_map(|s| s.metrics.iter_mut())
                    {
                        if self.cfg.translate_telegraf_attributes {
                            rename_metric(m, TELEGRAF_TRANSLATIONS);
                        }
                        if nest.enabled || !aggs.is_empty() {
                            crate::points::each_attrs(m, |a| {
                                nest.apply(a);
                                aggregate(aggs, a);
                            });
                        }
                        if self.cfg.translate_docker_metrics {
                            rename_metric(m, DOCKER_METRIC_TRANSLATIONS);
                        }
                    }
                }
            }
            Telemetry::Traces(rss) => {
                for rs in rss {
                    // Upstream never translates trace resources.
                    self.resource(&mut rs.resource, false);
                    if let Some(r) = rs.resource.as_mut() {
                        aggregate(aggs, &mut r.attributes);
                    }
                    for s in rs.scope_spans.iter_mut().flat_map(|s| s.spans.iter_mut()) {
                        self.cfg.nest_attributes.apply(&mut s.attributes);
                        aggregate(aggs, &mut s.attributes);
                    }
                }
            }
            Telemetry::Profiles(_) => {}
        }
    }
}

impl Component for SumologicProcessor {}

#[async_trait]
impl Consumer for SumologicProcessor {
    async fn consume(&self, mut data: Telemetry) -> Result<(), ConsumeError> {
        let n = data.item_count();
        self.obs.incoming(n);
        self.process(&mut data);
        self.obs.outgoing(n);
        self.next.consume(data).await
    }
}

struct Factory;

/// The `sumologic` processor factory.
pub fn factory() -> Arc<dyn DynProcessorFactory> {
    factory::processor(Factory)
}

impl FactoryBase for Factory {
    type Config = SumologicConfig;

    fn type_name(&self) -> &'static str {
        "sumologic"
    }

    fn validate(&self, id: &ComponentId, cfg: &SumologicConfig) -> Result<(), ConfigError> {
        cfg.check(id)
    }
}

impl ProcessorFactory for Factory {
    fn stability(&self) -> &'static [(Signal, Stability)] {
        &[
            (Signal::Traces, Stability::Beta),
            (Signal::Metrics, Stability::Beta),
            (Signal::Logs, Stability::Beta),
        ]
    }

    fn create(
        &self,
        set: Settings,
        cfg: SumologicConfig,
        signal: Signal,
        next: Arc<dyn Consumer>,
    ) -> Result<Arc<dyn Processor>, ConfigError> {
        cfg.check(&set.id)?;
        Ok(Arc::new(SumologicProcessor {
            cfg,
            next,
            obs: set.processor_obs(signal),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::Keep;
    use serde_json::json;
    use vigil_core::attrs::{get, kv_str};
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use vigil_core::otlp::metrics::v1::{
        metric::Data, Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    fn id() -> ComponentId {
        ComponentId::parse("sumologic").unwrap()
    }

    fn run(cfg: serde_json::Value, signal: Signal, data: Telemetry) -> Telemetry {
        let keep = Arc::new(Keep::default());
        let f = factory();
        f.validate(&id(), &cfg).unwrap();
        let p = f.create(&id(), &cfg, signal, keep.clone()).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(p.consume(data))
            .unwrap();
        let out = vigil_core::lock(&keep.0).pop().unwrap();
        out
    }

    fn s(v: Option<&Value>) -> String {
        match v {
            Some(Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn defaults_add_the_namespace_translate_resources_and_telegraf_names() {
        let logs = Telemetry::Logs(vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv_str("cloud.platform", "aws_ec2"),
                    kv_str("k8s.pod.name", "api-0"),
                    kv_str("host.name", "node-1"),
                    kv_str("k8s.pod.hostname", "api-host"),
                    kv_str("service.name", "api"),
                    kv_str("namespace", "kept"),
                    kv_str("k8s.namespace.name", "prod"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_number: 17,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let Telemetry::Logs(out) = run(serde_json::Value::Null, Signal::Logs, logs) else {
            panic!()
        };
        let a = &out[0].resource.as_ref().unwrap().attributes;
        let keys: Vec<&str> = a.iter().map(|kv| kv.key.as_str()).collect();
        // `host` comes from host.name, the first with that target; k8s.pod.hostname, whose
        // target is then taken, is dropped as upstream's translation drops it. `namespace` was
        // there already, so k8s.namespace.name keeps its name.
        assert_eq!(
            keys,
            vec![
                "aws_service",
                "pod",
                "host",
                "service",
                "namespace",
                "k8s.namespace.name",
                "cloud.namespace"
            ]
        );
        assert_eq!(s(get(a, "cloud.namespace")), "aws/ec2");
        assert_eq!(s(get(a, "host")), "node-1");
        assert_eq!(s(get(a, "namespace")), "kept");
        // field_attributes are off by default.
        assert!(out[0].scope_logs[0].log_records[0].attributes.is_empty());

        let metrics = Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "cpu_usage_active".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![kv_str("pod_labels_app", "x"), kv_str("cpu", "0")],
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let cfg = json!({"aggregate_attributes": [{"attribute": "pod_labels", "prefixes": ["pod_labels_"]}]});
        let Telemetry::Metrics(out) = run(cfg, Signal::Metrics, metrics) else {
            panic!()
        };
        let m = &out[0].scope_metrics[0].metrics[0];
        assert_eq!(m.name, "CPU_Total");
        let Some(Data::Gauge(g)) = &m.data else {
            panic!()
        };
        let p = &g.data_points[0].attributes;
        assert_eq!(s(get(p, "cpu")), "0");
        match get(p, "pod_labels") {
            Some(Value::KvlistValue(l)) => {
                assert_eq!(l.values[0].key, "app");
                assert_eq!(
                    s(l.values[0].value.as_ref().and_then(|v| v.value.as_ref())),
                    "x"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_attributes_copy_severity_and_ids() {
        let logs = Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    severity_number: 13,
                    severity_text: "warning".into(),
                    span_id: vec![0xab; 8],
                    trace_id: vec![0; 16],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let cfg = json!({"field_attributes": {
            "severity_number": {"enabled": true, "name": "loglevel"},
            "severity_text": {"enabled": true, "name": "severitytext"},
            "span_id": {"enabled": true, "name": "spanid"},
            "trace_id": {"enabled": true, "name": "traceid"},
        }});
        let Telemetry::Logs(out) = run(cfg, Signal::Logs, logs) else {
            panic!()
        };
        let a = &out[0].scope_logs[0].log_records[0].attributes;
        assert_eq!(s(get(a, "loglevel")), "WARN");
        assert_eq!(s(get(a, "severitytext")), "warning");
        assert_eq!(s(get(a, "spanid")), "abababababababab");
        assert_eq!(s(get(a, "traceid")), "");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let f = factory();
        for (cfg, key) in [
            (json!({"bogus": 1}), "bogus"),
            (
                json!({"nest_attributes": {"enabled": true, "prefix": "x"}}),
                "nest_attributes::prefix",
            ),
        ] {
            let e = f.validate(&id(), &cfg).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn testdata_configs_are_judged_as_their_names_say() {
        let f = factory();
        crate::testdata::check_all("sumologic", 1, |v| {
            f.validate(&id(), v).map_err(|e| e.to_string())
        });
    }

    /// Attributes as JSON (maps as objects), to compare nestings whatever the key order.
    fn tree(attrs: &[KeyValue]) -> serde_json::Value {
        fn val(v: Option<&AnyValue>) -> serde_json::Value {
            match v.and_then(|v| v.value.as_ref()) {
                Some(Value::KvlistValue(l)) => tree(&l.values),
                Some(Value::StringValue(s)) => json!(s),
                Some(Value::BoolValue(b)) => json!(b),
                Some(Value::IntValue(i)) => json!(i),
                other => json!(format!("{other:?}")),
            }
        }
        serde_json::Value::Object(
            attrs
                .iter()
                .map(|kv| (kv.key.clone(), val(kv.value.as_ref())))
                .collect(),
        )
    }

    fn nested(cfg: serde_json::Value, attrs: Vec<KeyValue>) -> serde_json::Value {
        let logs = Telemetry::Logs(vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    attributes: attrs,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let cfg = json!({"translate_attributes": false, "nest_attributes": cfg});
        let Telemetry::Logs(out) = run(cfg, Signal::Logs, logs) else {
            panic!()
        };
        tree(&out[0].scope_logs[0].log_records[0].attributes)
    }

    #[test]
    fn nest_attributes_nests_dotted_keys_with_include_exclude_and_squash() {
        let k8s = || {
            vec![
                kv_str("kubernetes.container_name", "xyz"),
                kv_str("kubernetes.host.name", "the host"),
                kv_str("kubernetes.host.address", "127.0.0.1"),
                kv_str("kubernetes.namespace_name", "sumologic"),
                kv_str("another_attr", "42"),
            ]
        };
        assert_eq!(
            nested(json!({"enabled": true}), k8s()),
            json!({"kubernetes": {"container_name": "xyz", "namespace_name": "sumologic",
                "host": {"name": "the host", "address": "127.0.0.1"}}, "another_attr": "42"})
        );
        // Off by default: nothing changes.
        assert_eq!(
            nested(json!({}), k8s()),
            json!({"kubernetes.container_name": "xyz", "kubernetes.host.name": "the host",
                "kubernetes.host.address": "127.0.0.1", "kubernetes.namespace_name": "sumologic",
                "another_attr": "42"})
        );
        assert_eq!(
            nested(
                json!({"enabled": true, "include": ["kubernetes.host."], "exclude": ["kubernetes.host.addr"]}),
                k8s()
            ),
            json!({"kubernetes.container_name": "xyz", "kubernetes.namespace_name": "sumologic",
                "kubernetes.host.address": "127.0.0.1", "kubernetes": {"host": {"name": "the host"}},
                "another_attr": "42"})
        );
        // A plain value meeting a map goes under "" in it, whichever comes first.
        let b = |k: &str, v: bool| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Value::BoolValue(v)),
            }),
            ..Default::default()
        };
        let want = json!({"sumo": {"": false, "logic": true}});
        assert_eq!(
            nested(
                json!({"enabled": true}),
                vec![b("sumo.logic", true), b("sumo", false)]
            ),
            want
        );
        assert_eq!(
            nested(
                json!({"enabled": true}),
                vec![b("sumo", false), b("sumo.logic", true)]
            ),
            want
        );
        // Another separator.
        assert_eq!(
            nested(
                json!({"enabled": true, "separator": "/"}),
                vec![kv_str("a/b", "1"), kv_str("a.c", "2")]
            ),
            json!({"a": {"b": "1"}, "a.c": "2"})
        );
        // squash_single_values joins chains of one-entry maps back together.
        assert_eq!(
            nested(
                json!({"enabled": true, "squash_single_values": true}),
                vec![
                    kv_str("k8s.pods.a.b.c", "A"),
                    kv_str("k8s.pods.b", "B"),
                    kv_str("sumo.logic.schema", "processor"),
                ]
            ),
            json!({"k8s.pods": {"a.b.c": "A", "b": "B"}, "sumo.logic.schema": "processor"})
        );
        assert_eq!(
            nested(
                json!({"enabled": true, "squash_single_values": true}),
                vec![kv_str("k8s.pods.a", "A"), kv_str("k8s.pods.b", "B")]
            ),
            json!({"k8s.pods": {"a": "A", "b": "B"}})
        );
        assert_eq!(
            nested(
                json!({"enabled": true, "squash_single_values": true}),
                vec![kv_str("only", "x")]
            ),
            json!({"only": "x"})
        );
    }

    #[test]
    fn translate_docker_metrics_renames_metrics_and_container_attributes() {
        let metric = |name: &str| Metric {
            name: name.into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint::default()],
            })),
            ..Default::default()
        };
        let batch = || {
            Telemetry::Metrics(vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv_str("container.id", "abc123"),
                        kv_str("container.name", "web"),
                        kv_str("container.image.name", "nginx"),
                        kv_str("container.ImageName", "kept"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        metric("container.cpu.percent"),
                        metric("container.memory.usage.total"),
                        metric("container.blockio.io_queued_recursive"),
                        metric("container.uptime"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }])
        };
        let names = |t: &Telemetry| -> (Vec<String>, Vec<String>) {
            let Telemetry::Metrics(out) = t else { panic!() };
            (
                out[0].scope_metrics[0]
                    .metrics
                    .iter()
                    .map(|m| m.name.clone())
                    .collect(),
                out[0]
                    .resource
                    .as_ref()
                    .unwrap()
                    .attributes
                    .iter()
                    .map(|kv| kv.key.clone())
                    .collect(),
            )
        };
        let (metrics, attrs) = names(&run(
            json!({"translate_docker_metrics": true}),
            Signal::Metrics,
            batch(),
        ));
        assert_eq!(
            metrics,
            [
                "cpu_percentage",
                "usage",
                "io_queue_recursive",
                "container.uptime"
            ]
        );
        // container.ImageName was there, so container.image.name keeps its name.
        assert_eq!(
            attrs,
            [
                "container.FullID",
                "container.Name",
                "container.image.name",
                "container.ImageName"
            ]
        );
        // Off by default.
        let (metrics, _) = names(&run(serde_json::Value::Null, Signal::Metrics, batch()));
        assert_eq!(metrics[0], "container.cpu.percent");
    }
}
