//! Exporters, one module per component, named as in config. Network exporters share `helper`.

use std::sync::Arc;
use vigil_core::factory::{legacy, DynExporterFactory};

pub mod alertmanager;
pub mod debug;
pub mod file;
pub mod helper;
pub mod otlp;
pub mod otlphttp;
pub mod prometheus;
pub mod prometheusremotewrite;
pub mod webhook;

/// Every exporter type this crate provides.
pub fn factories() -> Vec<Arc<dyn DynExporterFactory>> {
    vec![
        debug::factory(),
        file::factory(),
        legacy::exporter(otlp::factory()),
        legacy::exporter(otlphttp::factory()),
        prometheus::factory(),
        legacy::exporter(prometheusremotewrite::factory()),
        legacy::exporter(alertmanager::factory()),
        legacy::exporter(webhook::factory()),
    ]
}

#[cfg(test)]
mod tests {
    use super::factories;
    use serde_json::Value;
    use vigil_core::ComponentId;

    /// Each `testdata/<type>/bad_*.yaml` starts with `# error: <the start of the message>`; each
    /// `good_*.yaml` must validate.
    #[test]
    fn testdata_configs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut seen = 0;
        for f in factories() {
            let dir = root.join(f.type_name());
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let id = ComponentId::new(f.type_name(), Some("test"));
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let value: Value = serde_saphyr::from_str(&text).unwrap();
                let got = f.validate(&id, &value);
                if name.starts_with("bad_") {
                    let want = text
                        .lines()
                        .next()
                        .and_then(|l| l.strip_prefix("# error: "))
                        .unwrap_or_else(|| panic!("{name} has no '# error: ' first line"));
                    let err = got.expect_err(&name).to_string();
                    assert!(err.starts_with(want), "{name}:\n got: {err}\nwant: {want}");
                } else {
                    got.unwrap_or_else(|e| panic!("{}/{name}: {e}", f.type_name()));
                }
                seen += 1;
            }
        }
        assert!(seen >= 20, "only {seen} testdata files");
    }
}
