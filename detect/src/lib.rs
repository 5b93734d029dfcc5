//! Detection algorithms as plain Rust over numbers, timestamps and strings: no tokio, no OTLP types.
//! The pipeline components in `vigil-processors` and `vigil eval` call the same code, so what is
//! scored on public benchmarks is what runs on a node.

pub mod forecast;
pub mod incident;
pub mod loghub;
pub mod nab;
pub mod series;
pub mod template;
