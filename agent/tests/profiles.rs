//! `profiles` pipelines in the config: accepted with or without otelcol's feature gate (a warning
//! without it), refused when the gate is turned off, and every component without profiles support
//! refused by name and signal.

use std::process::Command;

fn validate(file: &str, extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(extra)
        .args(["validate", "--config"])
        .arg(format!(
            "{}/testdata/profiles/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .expect("run vigil validate");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code(), text)
}

const WARNING: &str =
    "warning: service::pipelines::profiles: otelcol runs profiles pipelines only \
                       with --feature-gates=service.profilesSupport; vigil runs them without it";

#[test]
fn a_profiles_pipeline_validates_and_warns_without_the_gate() {
    let (code, text) = validate("minimal.yaml", &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(text.trim(), WARNING);
}

#[test]
fn with_the_gate_there_is_nothing_to_say() {
    for flag in [
        "--feature-gates=service.profilesSupport",
        "--feature-gates=+service.profilesSupport,-some.other.gate",
    ] {
        let (code, text) = validate("minimal.yaml", &[flag]);
        assert_eq!((code, text.as_str()), (Some(0), ""), "{flag}");
    }
}

#[test]
fn the_gate_turned_off_refuses_profiles_pipelines() {
    let (code, text) = validate(
        "minimal.yaml",
        &["--feature-gates=-service.profilesSupport"],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(
            "service::pipelines::profiles: profiles pipelines are turned off by \
             --feature-gates=-service.profilesSupport"
        ),
        "{text}"
    );
}

#[test]
fn components_without_profiles_are_named_with_the_signal() {
    let (code, text) = validate(
        "unsupported.yaml",
        &["--feature-gates=service.profilesSupport"],
    );
    assert_eq!(code, Some(1), "{text}");
    for want in [
        "service::pipelines::profiles/app::receivers: receiver \"hostmetrics\" does not support profiles (it supports metrics, logs)",
        "service::pipelines::profiles/app::processors: processor \"attributes\" does not support profiles (it supports traces, metrics, logs)",
        "service::pipelines::profiles/app::exporters: exporter \"prometheus\" does not support profiles (it supports metrics)",
    ] {
        assert!(text.contains(want), "expected {want:?} in:\n{text}");
    }
    // The ones that do take profiles are not mentioned.
    for fine in ["\"otlp\"", "\"resource\""] {
        assert!(!text.contains(fine), "{fine} refused:\n{text}");
    }
}

#[test]
fn the_demo_charts_profiles_pipeline_validates() {
    let (code, text) = validate(
        "demo_chart.yaml",
        &["--feature-gates=service.profilesSupport"],
    );
    assert_eq!((code, text.as_str()), (Some(0), ""));
}
