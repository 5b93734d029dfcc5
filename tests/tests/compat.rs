//! `vigil validate` over the published collector configs in `../shared/compat/configs` (see its
//! README). Once the config layer reads a file as otelcol does, every error left must be one of:
//! - an unknown component type that `vigil components` really does not list (in either otelcol
//!   spelling), checked here against the binary's own list; or a vendor distribution's own
//!   component under a type name vigil has (Sumo Logic's `opamp`, whose keys otelcol-contrib's
//!   `opamp` refuses too), which vigil reports as `a component vigil does not have: <what it is>`
//!   only when that component's own keys are present;
//! - a host path the config names that does not exist on this machine, of the kinds otelcol's
//!   validate also stats (a `/hostfs` `root_path`, a `file_storage` directory, a prometheus scrape
//!   job's `credentials_file`/`bearer_token_file` or client cert/key), checked here with the
//!   filesystem; they say nothing about the config layer. Certificates and CAs otelcol loads at
//!   start (`configtls`, a scrape job's `ca_file`) are not read by validate at all (issue #18,
//!   docs/security.md), so they never appear here;
//! - a feature gap inside a component vigil has, listed in `KNOWN_GAPS` with what adds it. Every
//!   listed gap must still occur, so the list only shrinks.
//!
//! Anything else is a regression in the config layer. The test prints how many configs validate;
//! it is skipped where the corpus is absent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Errors that name something vigil still lacks inside a component it has. Remove a line when it
/// lands; a line that no longer matches any error fails the test.
const KNOWN_GAPS: &[&str] = &[];

/// The component types the binary has, per kind (`receivers`, ...), from `vigil components`, with
/// underscores removed as the registry's lookup ignores them.
fn known_types(vigil: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(vigil)
        .arg("components")
        .output()
        .expect("run vigil components");
    assert!(out.status.success(), "vigil components failed");
    let mut known: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut kind = String::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            kind = line.trim_end_matches(':').to_string();
        } else if let Some(name) = line.trim().strip_prefix("- name: ") {
            known
                .entry(kind.clone())
                .or_default()
                .insert(name.replace('_', ""));
        }
    }
    assert!(
        known.get("receivers").is_some_and(|r| r.contains("otlp")),
        "vigil components lists no otlp receiver: {known:?}"
    );
    known
}

/// `Some(type, kind)` for `unknown type "X" for receiver (...)`.
fn unknown_type(line: &str) -> Option<(String, String)> {
    let rest = &line[line.find("unknown type \"")? + "unknown type \"".len()..];
    let (ty, rest) = rest.split_once('"')?;
    let kind = rest.strip_prefix(" for ")?.split_whitespace().next()?;
    Some((ty.to_string(), format!("{kind}s")))
}

/// `Some(what it is)` for `<kind>s::<id>: a component vigil does not have: <what it is> (...)`:
/// a vendor distribution's own component under a type name vigil gives another component
/// (agent/src/extensions/opamp/mod.rs says so only when that component's own keys are present).
fn vendor_component(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(": a component vigil does not have: ")?;
    let what = rest.split(" (").next()?.trim();
    (!what.is_empty()).then(|| what.to_string())
}

/// The host paths an error says are missing, when it has one of the shapes a missing file or
/// directory takes: `"<path>" is not a directory`, `<path> does not exist or is not a directory`,
/// or `... "<path>": No such file or directory (os error 2)`.
fn missing_paths(line: &str) -> Option<Vec<String>> {
    let message = line.split_once(": ")?.1;
    let quoted: Vec<String> = message
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect();
    if message.ends_with("No such file or directory (os error 2)")
        || (message.starts_with('"') && message.contains("\" is not a directory"))
    {
        return (!quoted.is_empty()).then_some(quoted);
    }
    if let Some((path, _)) = message.split_once(" does not exist or is not a directory") {
        return path.starts_with('/').then(|| vec![path.to_string()]);
    }
    None
}

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
    let known = known_types(&vigil);
    let storage = tempfile::tempdir().expect("tempdir");
    let mut passed = 0;
    let mut unexpected = Vec::new();
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut gaps_seen = BTreeSet::new();
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
                let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
                if lines.is_empty() {
                    unexpected.push(format!("{name}: exit 1 with no error lines:\n{text}"));
                }
                for line in lines {
                    let line = line.trim();
                    if let Some((ty, kind)) = unknown_type(line) {
                        let has = known
                            .get(&kind)
                            .is_some_and(|k| k.contains(&ty.replace('_', "")));
                        if has {
                            unexpected.push(format!("{name}: {kind} has {ty:?}, yet: {line}"));
                        }
                        *counts.entry("unknown component type").or_default() += 1;
                    } else if vendor_component(line).is_some() {
                        *counts.entry("unknown component type").or_default() += 1;
                    } else if let Some(paths) = missing_paths(line) {
                        for p in paths.iter().filter(|p| Path::new(p).exists()) {
                            unexpected.push(format!("{name}: {p} exists here, yet: {line}"));
                        }
                        *counts.entry("host path absent here").or_default() += 1;
                    } else if let Some(g) = KNOWN_GAPS.iter().find(|g| line.contains(*g)) {
                        gaps_seen.insert(*g);
                        *counts.entry("known feature gap").or_default() += 1;
                    } else {
                        unexpected.push(format!("{name}: {line}"));
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
        "compat: {passed}/{} published configs validate unchanged; errors left: {counts:?}",
        files.len()
    );
    for g in KNOWN_GAPS.iter().filter(|g| !gaps_seen.contains(*g)) {
        unexpected.push(format!(
            "KNOWN_GAPS lists {g:?}, which no config hits any more: remove it"
        ));
    }
    assert!(
        unexpected.is_empty(),
        "errors that name no missing component type, absent host path or known gap:\n{}",
        unexpected.join("\n")
    );
}

#[test]
fn error_shapes_are_classified() {
    assert_eq!(
        unknown_type("receivers::kubeletstats: unknown type \"kubeletstats\" for receiver (known receivers: otlp)"),
        Some(("kubeletstats".into(), "receivers".into()))
    );
    assert_eq!(
        vendor_component("extensions::opamp::remote_configuration_directory: a component vigil does not have: Sumo Logic's opamp extension (their distribution's; keys endpoint, remote_configuration_directory); vigil's opamp is otelcol-contrib's, configured under server::ws or server::http"),
        Some("Sumo Logic's opamp extension".to_string())
    );
    // A key error in a component vigil has is not a missing component.
    assert_eq!(
        vendor_component(
            "extensions::opamp: has invalid keys: endpoint (expected one of server, instance_uid)"
        ),
        None
    );
    assert_eq!(
        unknown_type("extensions::opamp: has invalid keys: endpoint"),
        None
    );
    assert_eq!(
        missing_paths("receivers::hostmetrics::root_path: \"/hostfs\" is not a directory"),
        Some(vec!["/hostfs".to_string()])
    );
    assert_eq!(
        missing_paths("extensions::file_storage::directory: /var/lib/x does not exist or is not a directory (create it, or set create_directory: true)"),
        Some(vec!["/var/lib/x".to_string()])
    );
    assert_eq!(
        missing_paths("receivers::otlp::protocols::grpc::tls::cert_file: cannot read \"/etc/a.crt\": No such file or directory (os error 2)"),
        Some(vec!["/etc/a.crt".to_string()])
    );
    assert_eq!(
        missing_paths("receivers::prometheus::config::scrape_configs::2::authorization::credentials_file: error checking authorization credentials file \"/var/run/t\": No such file or directory (os error 2)"),
        Some(vec!["/var/run/t".to_string()])
    );
    // A path error of another shape, or one without a path, is not an absent host path.
    assert_eq!(
        missing_paths("receivers::x::key: \"abc\" is not a directory"),
        None
    );
    assert_eq!(missing_paths("receivers::x::key: permission denied"), None);
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
             service:\n  telemetry:\n    metrics:\n      level: none\n  extensions: [health_check]\n  \
             pipelines:\n    traces:\n      \
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
