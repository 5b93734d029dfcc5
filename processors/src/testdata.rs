//! What the processors' tests share: the config cases under `testdata/<type>/`, checked against the
//! component's own factory (the registry-wide test in agent/src/registry_tests.rs runs the same files
//! through the registry: each `bad_*.yaml` starts with `# error: <key path>: <message>` and its error
//! must contain that text; each `good_*.yaml` must be accepted), and [`Keep`], the next consumer
//! that keeps what it is given.

use async_trait::async_trait;
use serde_json::Value as Json;
use std::sync::Mutex;
use vigil_core::{ConsumeError, Consumer, Telemetry};

/// A next consumer that keeps every batch it is given and accepts it.
#[derive(Default)]
pub(crate) struct Keep(pub(crate) Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Keep {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        vigil_core::lock(&self.0).push(data);
        Ok(())
    }
}

impl Keep {
    /// Span names received, in order.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in vigil_core::lock(&self.0).iter() {
            if let Telemetry::Traces(rs) = t {
                for r in rs {
                    for ss in &r.scope_spans {
                        out.extend(ss.spans.iter().map(|s| s.name.clone()));
                    }
                }
            }
        }
        out
    }
}

/// Runs every `bad_*.yaml` case in `testdata/<dir>` through `error` (which returns the error message for a
/// config) and returns how many there were.
pub(crate) fn bad_configs(dir: &str, error: impl Fn(&Json) -> String) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata dir") {
        let p = entry.expect("dir entry").path();
        let bad = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("bad_") && n.ends_with(".yaml"));
        if !bad {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read case");
        let want = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{} lacks a first line `# error: …`", p.display()));
        let v: Json = serde_saphyr::from_str(&text).expect("the case is YAML");
        let e = error(&v);
        assert!(e.contains(want), "{}: {e:?} lacks {want:?}", p.display());
        n += 1;
    }
    n
}

/// Checks that every `good_*.yaml` in `testdata/<dir>` is accepted by `check`; returns how many.
pub(crate) fn good_configs(dir: &str, check: impl Fn(&Json) -> Result<(), String>) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("testdata dir") {
        let p = entry.expect("dir entry").path();
        if !p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("good_") && n.ends_with(".yaml"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read case");
        let v: Json = serde_saphyr::from_str(&text).expect("the case is YAML");
        if let Err(e) = check(&v) {
            panic!("{}: {e}", p.display());
        }
        n += 1;
    }
    n
}

/// Both kinds for one component: every bad case fails with its expected text (at least `min_bad`
/// of them), and every good case (at least one) is accepted.
pub(crate) fn check_all(dir: &str, min_bad: usize, f: impl Fn(&Json) -> Result<(), String>) {
    let bad = bad_configs(dir, |v| match f(v) {
        Ok(()) => "the config was accepted".into(),
        Err(e) => e,
    });
    assert!(
        bad >= min_bad,
        "expected {min_bad} bad configs in testdata/{dir}"
    );
    assert!(
        good_configs(dir, &f) >= 1,
        "expected good configs in testdata/{dir}"
    );
}
