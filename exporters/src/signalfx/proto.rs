//! SignalFx's ingest protobuf (`com_signalfx_metrics_protobuf`, proto2): the datapoint and event
//! upload messages that `/v2/datapoint` and `/v2/event` take. Written as prost structs by hand:
//! no maintained crate publishes them, and they are a handful of small, frozen messages (the
//! format has not changed since SignalFx published it). Field numbers follow the published
//! `signal_fx_protocol_buffers.proto`.

/// `MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Gauge = 0,
    Counter = 1,
    Enum = 2,
    CumulativeCounter = 3,
}

/// `Datum`: exactly one of the values is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Datum {
    #[prost(string, optional, tag = "1")]
    pub str_value: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub double_value: Option<f64>,
    #[prost(int64, optional, tag = "3")]
    pub int_value: Option<i64>,
}

/// `Dimension`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Dimension {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

/// `DataPoint`: `metric` and `value` are proto2 `required`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataPoint {
    #[prost(string, optional, tag = "1")]
    pub source: Option<String>,
    #[prost(string, required, tag = "2")]
    pub metric: String,
    /// Milliseconds since the epoch.
    #[prost(int64, optional, tag = "3")]
    pub timestamp: Option<i64>,
    #[prost(message, required, tag = "4")]
    pub value: Datum,
    #[prost(enumeration = "MetricType", optional, tag = "5")]
    pub metric_type: Option<i32>,
    #[prost(message, repeated, tag = "6")]
    pub dimensions: Vec<Dimension>,
}

/// `DataPointUploadMessage`: the body of `POST /v2/datapoint`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DataPointUploadMessage {
    #[prost(message, repeated, tag = "1")]
    pub datapoints: Vec<DataPoint>,
}

/// `PropertyValue`: exactly one of the values is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PropertyValue {
    #[prost(string, optional, tag = "1")]
    pub str_value: Option<String>,
    #[prost(double, optional, tag = "2")]
    pub double_value: Option<f64>,
    #[prost(int64, optional, tag = "3")]
    pub int_value: Option<i64>,
    #[prost(bool, optional, tag = "4")]
    pub bool_value: Option<bool>,
}

/// `Property`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Property {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PropertyValue>,
}

/// `Event`: `eventType` is proto2 `required`; `category` is an `EventCategory` number
/// (USER_DEFINED 1000000, ALERT 100000, AUDIT 200000, JOB 300000, COLLECTD 400000,
/// SERVICE_DISCOVERY 500000, EXCEPTION 700000, AGENT 2000000).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(string, required, tag = "1")]
    pub event_type: String,
    #[prost(message, repeated, tag = "2")]
    pub dimensions: Vec<Dimension>,
    #[prost(message, repeated, tag = "3")]
    pub properties: Vec<Property>,
    #[prost(int32, optional, tag = "4")]
    pub category: Option<i32>,
    /// Milliseconds since the epoch.
    #[prost(int64, optional, tag = "5")]
    pub timestamp: Option<i64>,
}

/// `EventUploadMessage`: the body of `POST /v2/event`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventUploadMessage {
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<Event>,
}

impl Dimension {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Dimension {
            key: Some(key.into()),
            value: Some(value.into()),
        }
    }
}
