//! Target discovery for one scrape job: the `static_configs` groups plus whatever the
//! `file_sd_configs` files list right now, each turned into a scrape target the way Prometheus does
//! (job defaults, group labels, `relabel_configs`, then `instance` from `__address__` and every
//! `__`-prefixed label removed).

use super::config::{check_target, parse_prom_duration, Job, TargetGroup};
use super::convert::TargetInfo;
use super::relabel::{self, get_label, set_label, Labels};
use std::path::Path;
use std::time::Duration;

/// A target ready to scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub url: String,
    pub info: TargetInfo,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Target {
    /// What identifies a target across discovery rounds: same URL and labels, same scrape loop.
    pub fn identity(&self) -> String {
        let mut k = self.url.clone();
        for (n, v) in &self.info.labels {
            k.push('\u{1}');
            k.push_str(n);
            k.push('=');
            k.push_str(v);
        }
        k
    }
}

/// Reads every file the job's `file_sd_configs` match. A file that cannot be read or parsed is
/// skipped with a warning, as Prometheus keeps the other files' targets.
pub fn file_groups(job: &Job, receiver: &str) -> Vec<(String, TargetGroup)> {
    let mut out = Vec::new();
    for sd in &job.file_sd {
        for pattern in &sd.files {
            let paths = match glob::glob(pattern) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(receiver, job = %job.name, pattern, error = %e, "invalid file_sd pattern");
                    continue;
                }
            };
            for path in paths.flatten() {
                match read_sd_file(&path) {
                    Ok(groups) => {
                        let name = path.display().to_string();
                        out.extend(groups.into_iter().map(|g| (name.clone(), g)));
                    }
                    Err(e) => tracing::warn!(
                        receiver, job = %job.name, file = %path.display(), error = %e,
                        "cannot read file_sd file; its targets are skipped"
                    ),
                }
            }
        }
    }
    out
}

/// Parses a file SD file: a JSON or YAML list of `{targets: [...], labels: {...}}`.
pub fn read_sd_file(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let groups: Vec<TargetGroup> = match ext.as_str() {
        "json" => serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?,
        "yml" | "yaml" => {
            if text.trim().is_empty() {
                Vec::new()
            } else {
                serde_saphyr::from_str(&text).map_err(|e| format!("invalid YAML: {e}"))?
            }
        }
        other => return Err(format!("invalid file extension {other:?}")),
    };
    for g in &groups {
        for t in &g.targets {
            check_target(t)?;
        }
    }
    Ok(groups)
}

/// Builds the targets of a job from its groups. `source` is the file a group came from, if any
/// (it becomes `__meta_filepath`).
pub fn targets(job: &Job, groups: &[(Option<String>, TargetGroup)]) -> Vec<Target> {
    let mut out: Vec<Target> = Vec::new();
    for (source, group) in groups {
        for address in &group.targets {
            if let Some(t) = populate(job, source.as_deref(), group, address) {
                if !out.iter().any(|o| o.identity() == t.identity()) {
                    out.push(t);
                }
            }
        }
    }
    out
}

fn populate(job: &Job, source: Option<&str>, group: &TargetGroup, address: &str) -> Option<Target> {
    let mut labels: Labels = Vec::new();
    set_label(&mut labels, "job", &job.name);
    set_label(
        &mut labels,
        "__scrape_interval__",
        &prom_duration(job.interval),
    );
    set_label(
        &mut labels,
        "__scrape_timeout__",
        &prom_duration(job.timeout),
    );
    set_label(&mut labels, "__metrics_path__", &job.metrics_path);
    set_label(&mut labels, "__scheme__", &job.scheme);
    for (k, v) in &job.params {
        if let Some(first) = v.first() {
            set_label(&mut labels, &format!("__param_{k}"), first);
        }
    }
    for (k, v) in &group.labels {
        set_label(&mut labels, k, v);
    }
    if let Some(s) = source {
        set_label(&mut labels, "__meta_filepath", s);
    }
    set_label(&mut labels, "__address__", address);
    if !relabel::process(&job.relabel, &mut labels) {
        return None;
    }
    let address = get_label(&labels, "__address__").to_string();
    if address.is_empty() || check_target(&address).is_err() {
        tracing::warn!(job = %job.name, address, "target has no valid __address__ after relabelling; skipped");
        return None;
    }
    let scheme = get_label(&labels, "__scheme__").to_string();
    let path = get_label(&labels, "__metrics_path__").to_string();
    let interval =
        parse_prom_duration(get_label(&labels, "__scrape_interval__")).unwrap_or(job.interval);
    let timeout = parse_prom_duration(get_label(&labels, "__scrape_timeout__"))
        .unwrap_or(job.timeout)
        .min(interval);
    if interval.is_zero() || timeout.is_zero() {
        return None;
    }
    // Query: the job's params, each first value replaced by its `__param_` label.
    let mut query = Vec::new();
    let mut names: Vec<&String> = job.params.keys().collect();
    let extra: Vec<String> = labels
        .iter()
        .filter_map(|(k, _)| k.strip_prefix("__param_").map(str::to_string))
        .filter(|k| !job.params.contains_key(k))
        .collect();
    names.extend(extra.iter());
    for name in names {
        let first = get_label(&labels, &format!("__param_{name}")).to_string();
        let values = job.params.get(name).cloned().unwrap_or_default();
        query.push((name.clone(), first.clone()));
        for v in values.iter().skip(1) {
            query.push((name.clone(), v.clone()));
        }
    }
    let mut url = format!("{scheme}://{address}{path}");
    if !query.is_empty() {
        url.push('?');
        let parts: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push_str(&parts.join("&"));
    }
    if get_label(&labels, "instance").is_empty() {
        set_label(&mut labels, "instance", &address);
    }
    labels.retain(|(k, _)| !k.starts_with("__"));
    Some(Target {
        url,
        info: TargetInfo { labels, scheme },
        interval,
        timeout,
    })
}

/// Percent-encodes a query component.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes a duration as Prometheus prints one (`15s`, `1m`, `1m30s`, `500ms`).
fn prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::config;
    use vigil_core::ComponentId;

    fn job(yaml: &str) -> Job {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let id = ComponentId::parse("prometheus").unwrap();
        config::load(&id, &v).unwrap().jobs.remove(0)
    }

    #[test]
    fn static_targets_get_job_instance_and_relabelling() {
        let j = job(
            "config:\n  scrape_configs:\n  - job_name: node\n    scrape_interval: 5s\n    params: {module: [a, b]}\n    static_configs:\n    - targets: ['h1:9100', 'h2:9100']\n      labels: {zone: eu}\n    relabel_configs:\n    - source_labels: [__address__]\n      regex: 'h2:.*'\n      action: drop\n    - source_labels: [__address__]\n      regex: '([^:]+):.*'\n      target_label: host\n",
        );
        let groups = vec![(None, j.static_groups[0].clone())];
        let t = targets(&j, &groups);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].url, "http://h1:9100/metrics?module=a&module=b");
        assert_eq!(t[0].info.job(), "node");
        assert_eq!(t[0].info.instance(), "h1:9100");
        assert_eq!(get_label(&t[0].info.labels, "zone"), "eu");
        assert_eq!(get_label(&t[0].info.labels, "host"), "h1");
        assert!(t[0].info.labels.iter().all(|(k, _)| !k.starts_with("__")));
        assert_eq!(t[0].interval, Duration::from_secs(5));
    }

    #[test]
    fn file_sd_reads_json_and_yaml() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"[{"targets":["127.0.0.1:1"],"labels":{"env":"prod"}}]"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("b.yaml"), "- targets: ['127.0.0.1:2']\n").unwrap();
        std::fs::write(dir.path().join("c.yaml"), "not: [a list").unwrap();
        let pat = format!("{}/*.json", dir.path().display());
        let pat2 = format!("{}/*.yaml", dir.path().display());
        let j = job(&format!(
            "config:\n  scrape_configs:\n  - job_name: f\n    file_sd_configs:\n    - files: ['{pat}', '{pat2}']\n      refresh_interval: 1s\n"
        ));
        let groups: Vec<_> = file_groups(&j, "prometheus")
            .into_iter()
            .map(|(f, g)| (Some(f), g))
            .collect();
        let t = targets(&j, &groups);
        let urls: Vec<&str> = t.iter().map(|t| t.url.as_str()).collect();
        assert_eq!(
            urls,
            vec!["http://127.0.0.1:1/metrics", "http://127.0.0.1:2/metrics"]
        );
        assert_eq!(get_label(&t[0].info.labels, "env"), "prod");
    }

    #[test]
    fn durations_print_like_prometheus() {
        assert_eq!(prom_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(prom_duration(Duration::from_millis(500)), "500ms");
    }
}
