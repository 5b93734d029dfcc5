//! What tests/tests/awss3.rs and loadbalancing.rs share: one OTLP/HTTP protobuf export of spans under
//! a `service.name`, as an SDK would send it.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::time::Duration;

/// POSTs `spans` of `service` to `http://127.0.0.1:{http}/v1/traces` and returns the answer's status.
pub fn post_spans(http: u16, service: &str, spans: Vec<Span>) -> reqwest::StatusCode {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(service.into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    };
    reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{http}/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .timeout(Duration::from_secs(10))
        .send()
        .expect("POST /v1/traces")
        .status()
}
