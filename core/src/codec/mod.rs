//! The OTLP codec both sides use: request bodies decoded (receivers) and encoded (exporters, the
//! durable sending queue), their compression, and the decoded-size bound checked before a body is
//! decoded. One copy, below the component crates.

pub mod compression;
pub mod decode;
pub mod decoded;
pub mod encode;
pub mod profiles_json;

pub use compression::{decompress, Compression};
