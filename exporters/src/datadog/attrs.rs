//! What the three Datadog mappings share: the host a resource is reported under, the Datadog
//! tags upstream derives from OpenTelemetry's semantic conventions, and Go's float formatting
//! (bucket bounds and quantiles become tag values, which must read as upstream writes them).

use vigil_core::attrs::{get_str, value_to_string};
use vigil_core::otlp::common::v1::{any_value::Value, KeyValue};

/// Semantic-convention attributes upstream always turns into Datadog tags, with their tag names.
const CONVENTIONS: &[(&str, &str)] = &[
    ("deployment.environment.name", "env"),
    ("deployment.environment", "env"),
    ("service.name", "service"),
    ("service.version", "version"),
    ("container.id", "container_id"),
    ("container.name", "container_name"),
    ("container.image.name", "image_name"),
    ("container.image.tag", "image_tag"),
    ("container.runtime", "runtime"),
    ("cloud.provider", "cloud_provider"),
    ("cloud.region", "region"),
    ("cloud.availability_zone", "zone"),
    ("k8s.cluster.name", "kube_cluster_name"),
    ("k8s.container.name", "kube_container_name"),
    ("k8s.namespace.name", "kube_namespace"),
    ("k8s.pod.name", "pod_name"),
    ("k8s.deployment.name", "kube_deployment"),
    ("k8s.replicaset.name", "kube_replica_set"),
    ("k8s.statefulset.name", "kube_stateful_set"),
    ("k8s.daemonset.name", "kube_daemon_set"),
    ("k8s.job.name", "kube_job"),
    ("k8s.cronjob.name", "kube_cronjob"),
];

/// `key:value`, with upstream's `n/a` for an empty value.
pub fn tag(key: &str, value: &str) -> String {
    if value.is_empty() {
        format!("{key}:n/a")
    } else {
        format!("{key}:{value}")
    }
}

/// An attribute's value as a tag value.
pub fn text(v: &Option<vigil_core::otlp::common::v1::AnyValue>) -> String {
    v.as_ref()
        .and_then(|v| v.value.as_ref())
        .map(value_to_string)
        .unwrap_or_default()
}

/// The tags of a resource: its convention attributes, and with `all` every attribute as itself.
pub fn resource_tags(attrs: &[KeyValue], all: bool) -> Vec<String> {
    let mut tags = Vec::new();
    let mut seen_env = false;
    for (key, name) in CONVENTIONS {
        if let Some(v) = get_str(attrs, key) {
            if *name == "env" {
                if seen_env {
                    continue;
                }
                seen_env = true;
            }
            tags.push(tag(name, v));
        }
    }
    if all {
        for kv in attrs {
            tags.push(tag(&kv.key, &text(&kv.value)));
        }
    }
    tags
}

fn non_empty<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    get_str(attrs, key).filter(|s| !s.is_empty())
}

/// The host a resource's telemetry is reported under, in the order Datadog's hostname semantic
/// conventions give: `datadog.host.name`, the cloud provider's instance name, the Kubernetes node
/// (with its cluster), `host.id`, `host.name`. `None` means the exporter's fallback host.
pub fn hostname(attrs: &[KeyValue]) -> Option<String> {
    if let Some(h) = non_empty(attrs, "datadog.host.name") {
        return Some(h.to_string());
    }
    match get_str(attrs, "cloud.provider") {
        Some("aws") | Some("azure") => {
            if let Some(id) = non_empty(attrs, "host.id") {
                return Some(id.to_string());
            }
        }
        Some("gcp") => {
            if let (Some(name), Some(project)) = (
                non_empty(attrs, "host.name"),
                non_empty(attrs, "cloud.account.id"),
            ) {
                return Some(format!("{name}.{project}"));
            }
        }
        _ => {}
    }
    if let Some(node) = non_empty(attrs, "k8s.node.name") {
        return Some(match non_empty(attrs, "k8s.cluster.name") {
            Some(cluster) => format!("{node}-{cluster}"),
            None => node.to_string(),
        });
    }
    non_empty(attrs, "host.id")
        .or_else(|| non_empty(attrs, "host.name"))
        .map(str::to_string)
}

/// A string attribute of a resource, if set and not empty.
pub fn resource_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    non_empty(attrs, key)
}

/// Whether a value is a number (numeric span attributes go to a Datadog span's `metrics`).
pub fn number(v: &Option<vigil_core::otlp::common::v1::AnyValue>) -> Option<f64> {
    match v.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        _ => None,
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, with `inf` / `-inf` for infinities, as upstream
/// writes bucket bounds and quantiles into tags: the shortest digits, in exponent form (`1e+06`,
/// `1e-05`) when the exponent is below -4 or at least 6.
pub fn go_float(f: f64) -> String {
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f.is_nan() {
        return "NaN".into();
    }
    if f == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, as Go's -1 precision does.
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;

    #[test]
    fn floats_read_as_go_writes_them() {
        for (f, s) in [
            (0.5, "0.5"),
            (1e6, "1e+06"),
            (100000.0, "100000"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (2.5e-7, "2.5e-07"),
            (-3.0, "-3"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.99, "0.99"),
            (1.0, "1"),
        ] {
            assert_eq!(go_float(f), s, "{f}");
        }
    }

    #[test]
    fn hostname_follows_the_conventions_order() {
        let a = |kvs: &[(&str, &str)]| kvs.iter().map(|(k, v)| kv_str(k, *v)).collect::<Vec<_>>();
        assert_eq!(hostname(&a(&[("host.name", "h")])).as_deref(), Some("h"));
        assert_eq!(
            hostname(&a(&[
                ("host.name", "h"),
                ("cloud.provider", "aws"),
                ("host.id", "i-1")
            ]))
            .as_deref(),
            Some("i-1")
        );
        assert_eq!(
            hostname(&a(&[
                ("host.name", "vm"),
                ("cloud.provider", "gcp"),
                ("cloud.account.id", "proj")
            ]))
            .as_deref(),
            Some("vm.proj")
        );
        assert_eq!(
            hostname(&a(&[
                ("k8s.node.name", "n1"),
                ("k8s.cluster.name", "c"),
                ("host.name", "x")
            ]))
            .as_deref(),
            Some("n1-c")
        );
        assert_eq!(
            hostname(&a(&[("datadog.host.name", "dd"), ("host.name", "x")])).as_deref(),
            Some("dd")
        );
        assert_eq!(hostname(&a(&[("service.name", "s")])), None);
    }
}
