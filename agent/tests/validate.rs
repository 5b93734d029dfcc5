//! `vigil validate` on every bad-config case in `testdata/`: each must exit 1 and name the component,
//! the key path and what was expected.

use std::process::Command;

fn validate(file: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["validate", "--config"])
        .arg(format!("{}/testdata/{file}", env!("CARGO_MANIFEST_DIR")))
        .env_remove("VIGIL_TESTDATA_SURELY_UNSET")
        .output()
        .expect("run vigil validate");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

fn assert_error(file: &str, expected: &[&str]) {
    let (ok, text) = validate(file);
    assert!(!ok, "{file}: validate should fail, printed:\n{text}");
    for e in expected {
        assert!(text.contains(e), "{file}: expected {e:?} in:\n{text}");
    }
}

#[test]
fn unknown_component_type_lists_known_types() {
    assert_error(
        "unknown_type.yaml",
        &[
            "receivers::otlpp: unknown type \"otlpp\" for receiver (known receivers: ",
            "otlp",
        ],
    );
}

#[test]
fn unknown_key_is_named() {
    assert_error(
        "unknown_key.yaml",
        &["exporters::debug::verbosty: has invalid keys: verbosty"],
    );
}

#[test]
fn wrong_type_names_path() {
    assert_error("wrong_type.yaml", &["exporters::debug::verbosity: "]);
}

#[test]
fn undefined_component_in_pipeline() {
    assert_error(
        "undefined_component.yaml",
        &["service::pipelines::traces::processors: references processor \"batch/missing\" which is not configured"],
    );
}

#[test]
fn connector_signal_pair_unsupported() {
    assert_error(
        "unsupported_signal.yaml",
        &["connectors::forward: used as an exporter in a traces pipeline"],
    );
}

#[test]
fn pipeline_without_receivers_or_exporters() {
    assert_error(
        "no_receivers.yaml",
        &["service::pipelines::logs::receivers: must have at least one receiver"],
    );
    assert_error(
        "no_exporters.yaml",
        &["service::pipelines::logs::exporters: must have at least one exporter"],
    );
}

#[test]
fn bad_endpoint_names_port() {
    assert_error(
        "bad_endpoint.yaml",
        &["extensions::health_check::endpoint: invalid endpoint \"0.0.0.0:99999\": port 99999 is out of range"],
    );
}

#[test]
fn unknown_extension_and_signal() {
    assert_error(
        "unknown_extension_ref.yaml",
        &["service::extensions: references extension \"health_check/missing\" which is not configured"],
    );
    assert_error(
        "bad_pipeline_signal_unknown.yaml",
        &["service::pipelines::spans: unknown signal \"spans\" in pipeline id"],
    );
}

#[test]
fn yaml_syntax_error_names_file() {
    assert_error("yaml_syntax.yaml", &["yaml_syntax.yaml: invalid YAML"]);
}

#[test]
fn unset_env_warns_and_expands_empty() {
    let (ok, text) = validate("unset_env.yaml");
    assert!(ok, "{text}");
    assert!(
        text.contains("environment variable VIGIL_TESTDATA_SURELY_UNSET is not set"),
        "{text}"
    );
    assert!(!text.contains("VIGIL_TESTDATA_UNSET_VERBOSITY"), "{text}");
}

#[test]
fn every_config_example_validates() {
    let dir = format!("{}/../config-examples", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("config-examples exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
                .args(["validate", "--config"])
                .arg(&path)
                .output()
                .expect("run vigil validate");
            assert!(
                out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 1, "no config examples found in {dir}");
}

#[test]
fn good_config_validates_silently() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "validate",
            "--config=yaml:exporters::debug::verbosity: basic",
            "--config=yaml:receivers::otlp::protocols::grpc::endpoint: 127.0.0.1:4317",
            "--set=service::pipelines::traces::receivers=[otlp]",
            "--set=service::pipelines::traces::exporters=[debug]",
        ])
        .output()
        .expect("run vigil validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn components_lists_kinds_and_signals() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("components")
        .output()
        .expect("run vigil components");
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "receivers:",
        "exporters:",
        "- name: debug",
        "connectors:",
        "- name: forward",
        "traces_to_traces",
        "extensions:",
        "- name: health_check",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
