//! The OpenTelemetry Python SDK's Zipkin exporters send traces to vigil's `zipkin` receiver: the
//! JSON exporter in v2 and v1 (SDK 1.45.1, .venv) and the protobuf exporter (.venv-legacy: it pins
//! protobuf 3, which the OTLP exporters in .venv cannot share). What vigil's `file` exporter wrote
//! is compared with what each client sent: trace and span ids, parents, names, kinds, attributes
//! (typed again by `parse_string_tags`), error status, events and service.name.

#[path = "support/traces.rs"]
mod traces;

use vigil_tests::{free_port, python, python_legacy};

#[test]
fn python_sdk_zipkin_exporters_json_v2_v1_and_protobuf() {
    let port = free_port();
    let v = traces::start(
        &format!("  zipkin:\n    endpoint: 127.0.0.1:{port}\n    parse_string_tags: true"),
        "zipkin",
    );
    for (exporter, py) in [
        ("zipkin-json-v2", python()),
        ("zipkin-json-v1", python()),
        ("zipkin-proto", python_legacy()),
    ] {
        let expect = traces::Expect {
            typed: true,
            kinds: exporter != "zipkin-json-v1",
            event: traces::EventForm::InName,
            status_message: false,
        };
        let run = format!("{exporter}-{}", std::process::id());
        let sent = traces::send(&py, exporter, port, &run);
        traces::check(&v, exporter, &sent, &run, &expect);
    }
}

#[test]
fn without_parse_string_tags_zipkin_tags_stay_strings() {
    let port = free_port();
    let v = traces::start(
        &format!("  zipkin:\n    endpoint: 127.0.0.1:{port}"),
        "zipkin",
    );
    let run = format!("strings-{}", std::process::id());
    let sent = traces::send(&python(), "zipkin-json-v2", port, &run);
    let expect = traces::Expect {
        typed: false,
        kinds: true,
        event: traces::EventForm::InName,
        status_message: false,
    };
    traces::check(&v, "zipkin-json-v2", &sent, &run, &expect);
}
