//! Config-layer compatibility with otelcol (issue #18's defects, issue #15's faults 4 and 5): each case
//! in `testdata/compat/` runs through `vigil validate`, which must accept what otelcol accepts and
//! refuse, with every problem named, what start would refuse.

use std::process::Command;

fn vigil(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

fn validate(file: &str) -> (Option<i32>, String) {
    let path = format!("{}/testdata/compat/{file}", env!("CARGO_MANIFEST_DIR"));
    vigil(&["validate", "--config", &path])
}

fn assert_valid(file: &str) {
    let (code, text) = validate(file);
    assert_eq!(
        code,
        Some(0),
        "{file}: validate should pass, printed:\n{text}"
    );
}

/// Exit 1 (not a panic), and the problem lines are exactly `expected`, in order.
fn assert_errors(file: &str, expected: &[&str]) {
    let (code, text) = validate(file);
    assert_eq!(
        code,
        Some(1),
        "{file}: validate should fail with 1, printed:\n{text}"
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    assert_eq!(lines.len(), expected.len(), "{file}: printed\n{text}");
    for (line, want) in lines.iter().zip(expected) {
        assert!(
            line.starts_with(want),
            "{file}: expected {want:?}, printed\n{text}"
        );
    }
}

#[test]
fn missing_file_storage_directory_fails_validate() {
    assert_errors(
        "file_storage_missing_dir.yaml",
        &["extensions::file_storage/q::directory: /nonexistent/vigil-testdata/queue does not exist"],
    );
}

#[test]
fn yaml_null_means_the_default() {
    assert_valid("null_values.yaml");
}

#[test]
fn operators_without_ids_get_stanzas_numbered_ids() {
    assert_valid("stanza_default_ids.yaml");
}

#[test]
fn unquoted_true_relabel_regex_is_text() {
    assert_valid("relabel_regex_true.yaml");
}

#[test]
fn re2_literal_braces_in_config_regexes() {
    assert_valid("re2_literal_brace.yaml");
}

#[test]
fn any_severity_mapping_key() {
    assert_valid("severity_any_key.yaml");
}

#[test]
fn every_error_in_a_block_or_list_is_reported() {
    assert_errors(
        "every_error.yaml",
        &[
            "receivers::filelog::operators::0::on_error: ",
            "receivers::filelog::operators::1::regex: the regex has no named capture groups",
            "processors::resourcedetection::detectors::1: unknown detector \"nosuchcloud\"",
            "processors::resourcedetection::detectors::2: unknown detector \"othercloud\"",
            "processors::resourcedetection::system::resource_attributes::host.also.made.up: unknown attribute",
            "processors::resourcedetection::system::resource_attributes::host.made.up: unknown attribute",
            "exporters::debug::sampling_initil: has invalid keys: sampling_initil",
            "exporters::debug::verbosty: has invalid keys: verbosty",
        ],
    );
}

#[test]
fn no_follow_on_messages() {
    let (code, text) = validate("no_follow_on_errors.yaml");
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("connectors::nosuchconnector: unknown type"),
        "{text}"
    );
    assert!(
        text.contains("service::telemetry::logs::levle: has invalid keys"),
        "{text}"
    );
    assert!(!text.contains("no pipelines are configured"), "{text}");
    assert!(!text.contains("used as an exporter"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("  ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn otelcol_snake_case_names_are_accepted_and_listed() {
    assert_valid("new_names.yaml");
    let (code, text) = vigil(&["components"]);
    assert_eq!(code, Some(0), "{text}");
    for name in [
        "- name: otlp_grpc\n    alias_of: otlp",
        "- name: otlp_http\n    alias_of: otlphttp",
        "- name: file_log\n    alias_of: filelog",
        "- name: host_metrics\n    alias_of: hostmetrics",
        "- name: resource_detection\n    alias_of: resourcedetection",
        "- name: otlp\n",
        "- name: otlphttp\n",
    ] {
        assert!(
            text.contains(name),
            "vigil components lacks {name:?}:\n{text}"
        );
    }
}

#[test]
fn yaml_11_booleans_are_strings() {
    assert_valid("yaml12_strings.yaml");
}

#[test]
fn the_same_file_prints_the_same_errors() {
    let (code, first) = validate("severity_bad_values.yaml");
    assert_eq!(code, Some(1), "{first}");
    for _ in 0..15 {
        assert_eq!(validate("severity_bad_values.yaml").1, first);
    }
}

#[test]
fn out_of_range_duration_is_an_error_not_a_panic() {
    assert_errors(
        "duration_out_of_range.yaml",
        &["processors::batch::timeout: invalid duration \"99999999999999999999999h\": out of range"],
    );
}

#[test]
fn validate_builds_the_graph() {
    assert_errors(
        "connector_cycle.yaml",
        &["service::pipelines::traces/a: connectors form a cycle"],
    );
    // otelcol's configtls loads a CA at start, not at validate (issue #18: configs are validated
    // where they do not run); start refuses it (tests/tests/host_paths.rs).
    assert_valid("otlphttp_missing_ca.yaml");
}

#[test]
fn resource_hungry_values_are_bounded() {
    assert_errors(
        "bounds.yaml",
        &[
            "receivers::hostmetrics::collection_interval: 1ns is shorter than 1ms",
            "processors::memory_limiter::check_interval: 'check_interval' must be at least 1ms",
            "exporters::otlp::sending_queue::num_consumers: 100000000 is more than 1000",
        ],
    );
}
