//! Fuzzes the `prometheusremotewrite` receiver's decoder (snappy, the decoded-size estimate, protobuf)
//! and the OTLP translation behind it. Each input is tried both as the snappy body and as the
//! protobuf payload, so that mutations reach the protobuf and the estimate.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_receivers::prometheusremotewrite::fuzz_decode(data));
