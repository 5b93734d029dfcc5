//! Fuzzes the OTLP/JSON decoder (enum-name rewriting, metric oneof checks, decompression) of the
//! `otlp` receiver.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use vigil_receivers::otlp::decode::Encoding;

fuzz_target!(|data: &[u8]| common::run(data, Encoding::Json));
