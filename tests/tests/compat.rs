//! `vigil validate` over the published collector configs in `../shared/compat/configs` (see its
//! README): what is left once the config layer reads a file as otelcol does is either a component
//! type vigil does not have, or a key or feature still missing inside a component it has, each of
//! which is listed below with the issue item that adds it. Anything else is a regression in the
//! config layer. The test prints how many configs validate; it is skipped where the corpus is absent.

use std::path::PathBuf;
use std::process::Command;

/// Errors that name something vigil still lacks inside a component it has (issue #18's "missing
/// keys and features" list). Remove a line when it lands, or when it no longer matches anything.
const KNOWN_GAPS: &[&str] = &[
    // Components, connectors and extensions vigil does not have.
    "unknown type",
    // resourcedetection's `k8s_api` detector needs a Kubernetes API client.
    "unknown detector \"k8s_api\"",
    // The filter processor's newer `metric_conditions` and profiles section.
    "has invalid keys: metric_conditions",
    "has invalid keys: profiles",
    // OTTL editors and argument forms the shared engine lacks, and the transform processor's profile
    // statements.
    "unsupported editor",
    "has invalid keys: profile_statements",
    // Prometheus Kubernetes service discovery (needs a Kubernetes API client).
    "Kubernetes service discovery is not supported",
    // Paths that exist on the publishers' hosts, not here: otelcol refuses them too (a host mount as
    // `root_path`, a `file_storage` directory).
    "\"/hostfs\" is not a directory",
    "does not exist or is not a directory (create it, or set create_directory: true)",
    // `profiles` pipelines, and own telemetry exported over OTLP.
    "unknown signal \"profiles\"",
    "service::telemetry::logs::processors",
    // hostmetrics entity events go to a logs pipeline.
    "receiver \"hostmetrics\" does not support logs",
    // Files (certificates, service-account CAs) that exist only on the publishers' hosts or inside
    // a Kubernetes pod.
    "No such file or directory (os error 2)",
    // Splunk's distribution-only top-level section.
    "'' has invalid keys: config_sources",
];

#[test]
fn published_configs_fail_only_on_what_vigil_lacks() {
    let root = vigil_tests::repo_root();
    let corpus = root.join("../shared/compat");
    let Ok(entries) = std::fs::read_dir(corpus.join("configs")) else {
        eprintln!("skipped: no corpus at {}", corpus.display());
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let vigil = vigil_tests::bin("vigil");
    let storage = tempfile::tempdir().expect("tempdir");
    let mut passed = 0;
    let mut unexpected = Vec::new();
    for f in &files {
        // As check.sh runs it: with the environment variables the configs reference.
        let out = Command::new("bash")
            .arg("-c")
            .arg(
                "source \"$1/env.sh\" && mkdir -p \"$VIGIL_COMPAT_STORAGE\"/edot \"$VIGIL_COMPAT_STORAGE\"/splunk \
                 && exec \"$2\" validate --config \"$3\"",
            )
            .arg("bash")
            .arg(&corpus)
            .arg(&vigil)
            .arg(f)
            .env("VIGIL_COMPAT_STORAGE", storage.path())
            .output()
            .expect("run vigil validate");
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match out.status.code() {
            Some(0) => passed += 1,
            Some(1) => {
                let text = String::from_utf8_lossy(&out.stderr);
                for line in text.lines().filter(|l| l.starts_with("  ")) {
                    if !KNOWN_GAPS.iter().any(|g| line.contains(g)) {
                        unexpected.push(format!("{name}: {}", line.trim()));
                    }
                }
            }
            other => unexpected.push(format!(
                "{name}: exit {other:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
    println!(
        "compat: {passed}/{} published configs validate unchanged",
        files.len()
    );
    assert!(
        unexpected.is_empty(),
        "errors that name no missing component type or known gap:\n{}",
        unexpected.join("\n")
    );
}

/// A running agent sent a config with a duration beyond Go's range (issue #15, fault 4): the reload is
/// refused and the agent goes on; it used to panic in validation and die.
#[test]
fn sighup_with_an_out_of_range_duration_is_refused() {
    let health = vigil_tests::free_port();
    let grpc = vigil_tests::free_port();
    let config = |timeout: &str| {
        format!(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{grpc}\n\
             processors:\n  batch:\n    timeout: {timeout}\n\
             exporters:\n  debug:\n\
             extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n\
             service:\n  extensions: [health_check]\n  pipelines:\n    traces:\n      \
             receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n"
        )
    };
    let mut agent = vigil_tests::Agent::with_config(&config("1s"));
    let url = format!("http://127.0.0.1:{health}/");
    agent.wait_http_ok(&url, std::time::Duration::from_secs(30));
    std::fs::write(agent.config_path(), config("99999999999999999999999h"))
        .expect("rewrite config");
    agent.signal(libc::SIGHUP);
    agent.wait_log("Config reload refused", std::time::Duration::from_secs(20));
    assert!(
        agent.logs().contains("out of range"),
        "the refusal names the duration; log:\n{}",
        agent.logs()
    );
    agent.wait_http_ok(&url, std::time::Duration::from_secs(5));
}
