//! Registry-wide tests: every registered component, of every kind, is created from its default
//! config, started and stopped; and every `testdata/<type>/{good,bad}_*.yaml` of every component is
//! checked under one convention.
//!
//! Where a component's testdata lives: `<crate>/testdata/<type>/`, the crate being `receivers`,
//! `processors` (processors and connectors), `exporters`, or `agent` (extensions).
//! - `minimal.yaml`, when present, holds the keys the component cannot start without (those otelcol
//!   also requires, such as an exporter's `endpoint`), and moves listening endpoints to port 0 so the
//!   test never takes a port other tests use. Without it the default config is the empty section.
//!   A first line `# start: <why not>` means the component is validated and created but not started
//!   (it needs a peer at start, such as `oidc`'s issuer; tests/ covers it against a real one).
//! - `good_*.yaml` must validate, create, start and stop.
//! - `bad_*.yaml` starts with `# error: <key path>: <start of the message>` and must fail
//!   validation with that error. The key path is inside the component's section; the
//!   `kind::id::` location may be written before it or left out.

use super::Registry;
use async_trait::async_trait;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::{
    Component, ComponentId, ComponentKind, ConsumeError, Consumer, Host, NextConsumers, Signal,
    Telemetry,
};

/// How long one start or stop may take before the test calls it stuck.
const STEP: Duration = Duration::from_secs(20);

const KINDS: [ComponentKind; 5] = [
    ComponentKind::Receiver,
    ComponentKind::Processor,
    ComponentKind::Exporter,
    ComponentKind::Connector,
    ComponentKind::Extension,
];

struct Sink;

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, _data: Telemetry) -> Result<(), ConsumeError> {
        Ok(())
    }
}

fn next_for(signals: impl IntoIterator<Item = Signal>) -> NextConsumers {
    let mut next = NextConsumers::new();
    for s in signals {
        next.insert(s, Arc::new(Sink));
    }
    next
}

pub(crate) fn testdata_dir(kind: ComponentKind, type_name: &str) -> PathBuf {
    let krate = match kind {
        ComponentKind::Receiver => "receivers",
        ComponentKind::Processor | ComponentKind::Connector => "processors",
        ComponentKind::Exporter => "exporters",
        ComponentKind::Extension => "agent",
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("testdata")
        .join(type_name)
}

fn read_yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The config the lifecycle test starts a component with: `minimal.yaml`, or the empty section.
pub(crate) fn minimal(kind: ComponentKind, type_name: &str) -> Value {
    let p = testdata_dir(kind, type_name).join("minimal.yaml");
    if p.exists() {
        read_yaml(&p)
    } else {
        Value::Null
    }
}

fn types(reg: &Registry, kind: ComponentKind) -> Vec<&'static str> {
    match kind {
        ComponentKind::Receiver => reg.receivers.keys().copied().collect(),
        ComponentKind::Processor => reg.processors.keys().copied().collect(),
        ComponentKind::Exporter => reg.exporters.keys().copied().collect(),
        ComponentKind::Connector => reg.connectors.keys().copied().collect(),
        ComponentKind::Extension => reg.extensions.keys().copied().collect(),
    }
}

/// A host offering the storage extension a config's `storage` key names, as the service would
/// (a `file_storage` in a fresh directory); otherwise no extensions.
async fn host_for(reg: &Registry, cfg: &Value) -> Result<Host, String> {
    let mut exts = std::collections::HashMap::new();
    if let Some(name) = cfg.get("storage").and_then(Value::as_str) {
        let sid = ComponentId::parse(name)?;
        let f = reg
            .extension(sid.type_name())
            .ok_or("unknown storage extension")?;
        let dir = std::env::temp_dir().join(format!("vigil-lifecycle-{}", std::process::id()));
        let ext_cfg = serde_json::json!({"directory": dir, "create_directory": true});
        let ext = f.create(&sid, &ext_cfg).map_err(|e| e.to_string())?;
        ext.start(&Host::detached())
            .await
            .map_err(|e| format!("{sid}: {e:#}"))?;
        exts.insert(sid, ext);
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    Ok(Host::new(exts, tx))
}

/// Whether `minimal.yaml` says the component cannot start without a peer.
fn needs_peer(kind: ComponentKind, type_name: &str) -> bool {
    std::fs::read_to_string(testdata_dir(kind, type_name).join("minimal.yaml"))
        .is_ok_and(|t| t.starts_with("# start: "))
}

/// Validates, creates, starts and stops one component; the error says which step failed.
async fn lifecycle(
    reg: &Registry,
    kind: ComponentKind,
    type_name: &str,
    cfg: &Value,
) -> Result<(), String> {
    let id = ComponentId::new(type_name, Some("lifecycle"));
    reg.validate(kind, &id, cfg)
        .map_err(|e| format!("validate: {e}"))?;
    let created: Vec<Arc<dyn Component>> = match kind {
        ComponentKind::Receiver => {
            let f = reg.receiver(type_name).ok_or("not registered")?;
            vec![f
                .create(&id, cfg, next_for(f.signals()))
                .map_err(|e| e.to_string())? as _]
        }
        ComponentKind::Processor => {
            // One instance per pipeline, as the service creates them.
            let f = reg.processor(type_name).ok_or("not registered")?;
            let mut v: Vec<Arc<dyn Component>> = Vec::new();
            for s in f.signals() {
                v.push(
                    f.create(&id, cfg, s, Arc::new(Sink))
                        .map_err(|e| e.to_string())? as _,
                );
            }
            v
        }
        ComponentKind::Exporter => {
            let f = reg.exporter(type_name).ok_or("not registered")?;
            vec![f.create(&id, cfg).map_err(|e| e.to_string())? as _]
        }
        ComponentKind::Connector => {
            let f = reg.connector(type_name).ok_or("not registered")?;
            let outs: Vec<Signal> = f.pairs().into_iter().map(|(_, o)| o).collect();
            let mut next = next_for(outs.iter().copied());
            // Routing connectors name their output pipelines; offer `<signal>/lifecycle`.
            for s in outs {
                next.insert_pipeline(format!("{s}/lifecycle"), Arc::new(Sink));
            }
            vec![f.create(&id, cfg, next).map_err(|e| e.to_string())? as _]
        }
        ComponentKind::Extension => {
            let f = reg.extension(type_name).ok_or("not registered")?;
            vec![f.create(&id, cfg).map_err(|e| e.to_string())? as _]
        }
    };
    if needs_peer(kind, type_name) {
        return Ok(());
    }
    let host = host_for(reg, cfg).await?;
    for c in &created {
        match tokio::time::timeout(STEP, c.start(&host)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("start: {e:#}")),
            Err(_) => return Err(format!("start took more than {STEP:?}")),
        }
    }
    let deadline = Instant::now() + STEP;
    for c in &created {
        match tokio::time::timeout(STEP + STEP, c.shutdown_by(deadline)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("shutdown: {e:#}")),
            Err(_) => return Err(format!("shutdown ignored its deadline of {STEP:?}")),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_starts_and_stops_on_its_default_config() {
    let reg = Registry::builtin();
    let mut failures = Vec::new();
    let mut n = 0;
    for kind in KINDS {
        for t in types(&reg, kind) {
            n += 1;
            if let Err(e) = lifecycle(&reg, kind, t, &minimal(kind, t)).await {
                failures.push(format!("{kind} {t}: {e}"));
            }
        }
    }
    assert!(n >= 30, "only {n} components registered");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The `section::id::` prefix of an error, so that a header may be written with or without it.
fn strip_location(s: &str) -> &str {
    for kind in KINDS {
        if let Some(rest) = s
            .strip_prefix(kind.section())
            .and_then(|r| r.strip_prefix("::"))
        {
            // The id ends at the next `::` or `: `.
            let end = rest.find("::").into_iter().chain(rest.find(": ")).min();
            if let Some(end) = end {
                let after = &rest[end..];
                return after
                    .strip_prefix("::")
                    .unwrap_or(after.trim_start_matches(": "));
            }
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_testdata_config_is_judged_as_its_name_says() {
    let reg = Registry::builtin();
    let mut failures = Vec::new();
    let mut seen = 0;
    for kind in KINDS {
        for t in types(&reg, kind) {
            let Ok(entries) = std::fs::read_dir(testdata_dir(kind, t)) else {
                continue;
            };
            let mut files: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for path in files {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !name.ends_with(".yaml") {
                    continue;
                }
                let cfg = read_yaml(&path);
                if name.starts_with("good_") {
                    seen += 1;
                    if let Err(e) = lifecycle(&reg, kind, t, &cfg).await {
                        failures.push(format!("{}: {e}", path.display()));
                    }
                } else if name.starts_with("bad_") {
                    seen += 1;
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    let first = text.lines().next().unwrap_or_default();
                    // `# expect: ` is the older spelling some files still use: its text need only
                    // appear in the error.
                    let (want, anywhere) = match (
                        first.strip_prefix("# error: "),
                        first.strip_prefix("# expect: "),
                    ) {
                        (Some(w), _) => (w, false),
                        (None, Some(w)) => (w, true),
                        (None, None) => {
                            failures.push(format!("{}: no '# error: ' first line", path.display()));
                            continue;
                        }
                    };
                    let id = ComponentId::new(t, Some("test"));
                    match reg.validate(kind, &id, &cfg) {
                        Ok(()) => failures.push(format!("{}: validated", path.display())),
                        Err(e) => {
                            let got = e.to_string();
                            let want = strip_location(want);
                            let found = if anywhere {
                                got.contains(want) || strip_location(&got).contains(want)
                            } else {
                                strip_location(&got).starts_with(want)
                            };
                            if !found {
                                failures.push(format!(
                                    "{}:\n   got: {got}\n  want: {want}",
                                    path.display()
                                ));
                            } else if e.path.is_empty() {
                                // Every bad file must point at a key, so a user knows what to fix.
                                failures.push(format!(
                                    "{}: the error names no key path: {got}",
                                    path.display()
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(seen >= 60, "only {seen} testdata files found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every key of `v` under `prefix`, as `(key path, type, default)`: nested sections are walked,
/// lists and leaves are shown as they are.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, &'static str, String)>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}::{k}")
        }
    };
    match v {
        Value::Object(m) if !m.is_empty() || prefix.is_empty() => {
            for (k, v) in m {
                flatten(&join(k), v, out);
            }
        }
        Value::Object(_) => out.push((prefix.to_string(), "map", "{}".into())),
        Value::Null => out.push((prefix.to_string(), "optional", "not set".into())),
        Value::Bool(b) => out.push((prefix.to_string(), "bool", b.to_string())),
        Value::Number(n) => out.push((prefix.to_string(), "number", n.to_string())),
        Value::String(s) if s.is_empty() => out.push((prefix.to_string(), "string", "\"\"".into())),
        Value::String(s) => out.push((prefix.to_string(), "string", format!("`{s}`"))),
        Value::Array(a) if a.is_empty() => out.push((prefix.to_string(), "list", "[]".into())),
        Value::Array(a) => out.push((
            prefix.to_string(),
            "list",
            format!("`{}`", Value::Array(a.clone())),
        )),
    }
}

/// The component reference: for every component, its stability per signal and every key of its
/// config with its type and default, read from the typed config itself (decoded from
/// `minimal.yaml` or the empty section, then shown again with every default filled in).
fn reference(reg: &Registry) -> String {
    use vigil_core::factory::DynFactory;
    let mut out = String::from(
        "# Component reference\n\n\
         Generated from the components' typed configs by `VIGIL_UPDATE_REFERENCE=1 cargo test -p vigil \
         --bin vigil reference`; CI fails when it is stale. Keys are otelcol's (`::` separates nested \
         keys); a default of \"not set\" means the key is optional and absent by default. Keys the \
         component cannot start without are shown with the example value from its \
         `testdata/<type>/minimal.yaml`, marked *(minimal.yaml)*: the keys it needs, and listeners moved to port 0 for the tests.\n",
    );
    for kind in KINDS {
        out.push_str(&format!("\n## {}\n", kind.section()));
        for t in types(reg, kind) {
            let f: &dyn DynFactory = match kind {
                ComponentKind::Receiver => &**reg.receiver(t).expect("registered"),
                ComponentKind::Processor => &**reg.processor(t).expect("registered"),
                ComponentKind::Exporter => &**reg.exporter(t).expect("registered"),
                ComponentKind::Connector => &**reg.connector(t).expect("registered"),
                ComponentKind::Extension => &**reg.extension(t).expect("registered"),
            };
            out.push_str(&format!("\n### {t}\n\n"));
            if kind == ComponentKind::Extension {
                if let Some(e) = reg.extension(t) {
                    out.push_str(&format!("Stability: {}\n\n", e.extension_stability()));
                }
            } else {
                out.push_str("| signal | stability |\n|---|---|\n");
                for (s, st) in f.signal_stability() {
                    out.push_str(&format!("| {s} | {st} |\n"));
                }
                out.push('\n');
            }
            let id = ComponentId::new(t, None);
            let min = minimal(kind, t);
            match f.resolved(&id, &min) {
                Err(e) => out.push_str(&format!("Its default config does not validate: {e}\n")),
                Ok(v) => {
                    let mut keys = Vec::new();
                    flatten("", &v, &mut keys);
                    let required: Vec<String> = {
                        let mut r = Vec::new();
                        flatten("", &min, &mut r);
                        r.into_iter().map(|k| k.0).collect()
                    };
                    if keys.is_empty() {
                        out.push_str("No keys.\n");
                    } else {
                        out.push_str("| key | type | default |\n|---|---|---|\n");
                        for (k, ty, d) in keys {
                            let req = if required
                                .iter()
                                .any(|r| r == &k || r.starts_with(&format!("{k}::")))
                            {
                                " *(minimal.yaml)*"
                            } else {
                                ""
                            };
                            out.push_str(&format!(
                                "| `{k}`{req} | {ty} | {} |\n",
                                d.replace('|', "\\|")
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn reference_is_current() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/reference/components.md");
    let want = reference(&Registry::builtin());
    if std::env::var_os("VIGIL_UPDATE_REFERENCE").is_some() {
        std::fs::create_dir_all(path.parent().expect("docs/reference")).expect("mkdir");
        std::fs::write(&path, &want).expect("write the reference");
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/reference/components.md is stale: run VIGIL_UPDATE_REFERENCE=1 cargo test -p vigil --bin vigil reference"
    );
}
