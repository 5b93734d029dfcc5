//! The OpenTelemetry Python SDK's Jaeger exporters (the last release, 1.21.0, in .venv-legacy: they
//! were discontinued upstream and need the SDK of their release) send traces to vigil's `jaeger`
//! receiver on all four protocols: Thrift binary over HTTP, the agent's Thrift compact and binary
//! over UDP, and gRPC. What vigil's `file` exporter wrote is compared with what each client sent:
//! trace and span ids, parents, names, kinds, typed attributes, status, events and service.name.
//!
//! thrift_binary: the Python exporter's agent client speaks compact only; the test gives the same
//! generated Jaeger client the Thrift library's binary protocol, as Jaeger's other clients use on
//! port 6832.

#[path = "support/traces.rs"]
mod traces;

use vigil_tests::{free_port, python_legacy};

#[test]
fn python_sdk_jaeger_exporters_on_every_protocol() {
    let (grpc, http, compact, binary) = (free_port(), free_port(), free_port(), free_port());
    let v = traces::start(
        &format!(
            r#"  jaeger:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
      thrift_http:
        endpoint: 127.0.0.1:{http}
      thrift_compact:
        endpoint: 127.0.0.1:{compact}
      thrift_binary:
        endpoint: 127.0.0.1:{binary}"#
        ),
        "jaeger",
    );
    let python = python_legacy();
    let expect = traces::Expect {
        typed: true,
        kinds: true,
        event: traces::EventForm::MessageAttribute,
        status_message: true,
    };
    for (exporter, port) in [
        ("jaeger-thrift-http", http),
        ("jaeger-thrift-compact", compact),
        ("jaeger-thrift-binary", binary),
        ("jaeger-grpc", grpc),
    ] {
        let run = format!("{exporter}-{}", std::process::id());
        let sent = traces::send(&python, exporter, port, &run);
        traces::check(&v, exporter, &sent, &run, &expect);
    }
}
