//! What the `splunk_hec` receiver and exporter share: otelcol's `hec_metadata_to_otel_attrs`, the
//! attributes HEC's event metadata maps to. Both components read the same key with the same
//! defaults, so a config that sets it on one means the same on the other.

use serde::{Deserialize, Serialize};

/// `hec_metadata_to_otel_attrs`: the attributes that hold HEC's metadata.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HecToOtelAttrs {
    pub source: String,
    pub sourcetype: String,
    pub index: String,
    pub host: String,
}

impl Default for HecToOtelAttrs {
    fn default() -> Self {
        HecToOtelAttrs {
            source: "com.splunk.source".into(),
            sourcetype: "com.splunk.sourcetype".into(),
            index: "com.splunk.index".into(),
            host: "host.name".into(),
        }
    }
}
