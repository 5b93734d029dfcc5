//! Who a series is: a 64-bit key hashed from the metric name and the sorted point and resource
//! attributes (cheap to compute for every point), and a readable identity string built only when a series
//! is first seen, for events and score gauges.

use prost::Message;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::common::v1::{any_value::Value, AnyValue, KeyValue};
use vigil_core::Signal;

/// Resource attributes shown in the identity string; the rest still key the series and travel on the
/// event's resource, but would make the string unreadable (SDK versions, instance ids).
const IDENTITY_RESOURCE_KEYS: [&str; 4] = [
    "service.name",
    "host.name",
    "k8s.pod.name",
    "container.name",
];

/// What an event or a score gauge says about its series. One is held per live series (up to
/// `max_series`, 100k by default), and only events and score gauges read it, so it is stored compactly:
/// the identity string and the series' attributes share one allocation, the attributes encoded as
/// protobuf, and are decoded when an event or gauge is built. As `KeyValue`s (each key and value a heap
/// string of its own) and a separate identity `String`, two attributes took about 330 B a series, a
/// fifth of a series' memory; packed they take about 100 B (BENCHMARKS.md, "anomalydetection
/// connector").
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesMeta {
    /// The signal the series was derived from.
    pub signal: Signal,
    /// Length of the watched metric name, which begins the identity: the name is not stored twice.
    metric_len: u32,
    /// Length of the identity (`metric{k=v,…}`), which begins `packed`.
    identity_len: u32,
    /// The identity's UTF-8, then each of the series' own attributes (point attributes, or the RED/log
    /// grouping keys), sorted by key, as a length-delimited protobuf `KeyValue`.
    packed: Box<[u8]>,
    /// The resource the data came from, shared by every series of that resource ([`Resources`]): an
    /// SDK's resource has about ten attributes, and a copy per series was most of a series' identity.
    pub resource: Arc<[KeyValue]>,
}

impl SeriesMeta {
    /// Builds the meta; attributes are sorted by key so that the identity string is stable.
    pub fn new(
        signal: Signal,
        metric: &str,
        attributes: &[KeyValue],
        resource: &[KeyValue],
    ) -> SeriesMeta {
        let mut attributes: Vec<&KeyValue> = attributes.iter().collect();
        attributes.sort_by(|a, b| a.key.cmp(&b.key));
        let mut identity = String::from(metric);
        let mut sep = '{';
        let mut part = |kv: &KeyValue| {
            identity.push(sep);
            sep = ',';
            identity.push_str(&kv.key);
            identity.push('=');
            identity.push_str(&text(kv.value.as_ref()));
        };
        for kv in &attributes {
            part(kv);
        }
        for key in IDENTITY_RESOURCE_KEYS {
            if attributes.iter().any(|kv| kv.key == key) {
                continue;
            }
            if let Some(kv) = resource.iter().find(|kv| kv.key == key) {
                part(kv);
            }
        }
        if sep == ',' {
            identity.push('}');
        }
        let encoded: usize = attributes
            .iter()
            .map(|kv| {
                let len = kv.encoded_len();
                prost::length_delimiter_len(len) + len
            })
            .sum();
        let mut packed = Vec::with_capacity(identity.len() + encoded);
        packed.extend_from_slice(identity.as_bytes());
        for kv in &attributes {
            // Writing into a Vec cannot run out of room.
            let _ = kv.encode_length_delimited(&mut packed);
        }
        SeriesMeta {
            signal,
            // Names and identities over 4 GiB cannot arrive (receivers cap a request far below).
            metric_len: u32::try_from(metric.len()).unwrap_or(u32::MAX),
            identity_len: u32::try_from(identity.len()).unwrap_or(u32::MAX),
            packed: packed.into_boxed_slice(),
            resource: resource.into(),
        }
    }

    /// `metric{k=v,…}`: the metric name, the series' attributes and the resource attributes that say
    /// where it runs (`service.name`, `host.name`, `k8s.pod.name`, `container.name`).
    pub fn identity(&self) -> &str {
        self.packed
            .get(..self.identity_len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// The watched metric name (`cpu.utilization`, `http.server.duration.p99`, `red.error_ratio`).
    pub fn metric(&self) -> &str {
        self.identity()
            .get(..self.metric_len as usize)
            .unwrap_or_default()
    }

    /// The series' own attributes, sorted by key.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut buf = self
            .packed
            .get(self.identity_len as usize..)
            .unwrap_or_default();
        let mut out = Vec::new();
        // The bytes were encoded by `new`, so they decode; a failure could only cut the list short.
        while !buf.is_empty() {
            match KeyValue::decode_length_delimited(&mut buf) {
                Ok(kv) => out.push(kv),
                Err(_) => break,
            }
        }
        out
    }

    /// The value of a series attribute as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.attributes()
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| text(kv.value.as_ref()))
    }
}

fn text(v: Option<&AnyValue>) -> String {
    v.and_then(|v| v.value.as_ref())
        .map(value_to_string)
        .unwrap_or_default()
}

/// Resource attribute lists shared between the series of one resource. Bounded: entries no series uses
/// any more are dropped whenever the table reaches twice what was in use at the last pruning (at least
/// [`Resources::MIN_PRUNE`] entries), so it holds at most about twice the resources in use.
#[derive(Debug)]
pub struct Resources {
    by_hash: HashMap<u64, Arc<[KeyValue]>>,
    prune_at: usize,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            by_hash: HashMap::new(),
            prune_at: Self::MIN_PRUNE,
        }
    }
}

impl Resources {
    /// The table is not pruned below this many entries.
    pub const MIN_PRUNE: usize = 1024;

    /// The shared copy of `attrs`, added if new. A hash collision with a different list (or the same
    /// attributes in another order) gets a copy of its own: sharing saves memory, never changes meaning.
    pub fn intern(&mut self, attrs: &Arc<[KeyValue]>) -> Arc<[KeyValue]> {
        let h = attrs_hash(attrs);
        if let Some(shared) = self.by_hash.get(&h) {
            return if **shared == **attrs {
                Arc::clone(shared)
            } else {
                Arc::clone(attrs)
            };
        }
        if self.by_hash.len() >= self.prune_at {
            self.by_hash.retain(|_, a| Arc::strong_count(a) > 1);
            self.prune_at = (2 * self.by_hash.len()).max(Self::MIN_PRUNE);
        }
        self.by_hash.insert(h, Arc::clone(attrs));
        Arc::clone(attrs)
    }

    /// Distinct resources held.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A hash of an attribute list that does not depend on its order.
pub fn attrs_hash(attrs: &[KeyValue]) -> u64 {
    let mut sorted: Vec<&KeyValue> = attrs.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut h = DefaultHasher::new();
    for kv in sorted {
        kv.key.hash(&mut h);
        hash_any(kv.value.as_ref(), &mut h);
    }
    h.finish()
}

/// The key of a series: its metric name, its attributes' hash and its resource's hash. 64 bits make a
/// collision among 100k series about a one-in-a-billion event; two colliding series would share a
/// detector, which is a wrong score, never a crash.
pub fn series_key(metric: &str, attrs_hash: u64, resource_hash: u64) -> u64 {
    let mut h = DefaultHasher::new();
    metric.hash(&mut h);
    attrs_hash.hash(&mut h);
    resource_hash.hash(&mut h);
    h.finish()
}

fn hash_any(v: Option<&AnyValue>, h: &mut DefaultHasher) {
    match v.and_then(|v| v.value.as_ref()) {
        None => 0u8.hash(h),
        Some(Value::StringValue(s)) => {
            1u8.hash(h);
            s.hash(h);
        }
        Some(Value::BoolValue(b)) => {
            2u8.hash(h);
            b.hash(h);
        }
        Some(Value::IntValue(i)) => {
            3u8.hash(h);
            i.hash(h);
        }
        Some(Value::DoubleValue(d)) => {
            4u8.hash(h);
            d.to_bits().hash(h);
        }
        Some(Value::BytesValue(b)) => {
            5u8.hash(h);
            b.hash(h);
        }
        Some(Value::ArrayValue(a)) => {
            6u8.hash(h);
            for x in &a.values {
                hash_any(Some(x), h);
            }
        }
        Some(Value::KvlistValue(l)) => {
            7u8.hash(h);
            attrs_hash(&l.values).hash(h);
        }
        Some(Value::StringValueStrindex(i)) => {
            8u8.hash(h);
            i.hash(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::kv_str;

    #[test]
    fn order_does_not_change_the_key_and_identity_is_readable() {
        let a = [kv_str("b", "2"), kv_str("a", "1")];
        let b = [kv_str("a", "1"), kv_str("b", "2")];
        assert_eq!(attrs_hash(&a), attrs_hash(&b));
        assert_ne!(attrs_hash(&a), attrs_hash(&[kv_str("a", "1")]));
        let res = [kv_str("host.name", "n1"), kv_str("telemetry.sdk.name", "x")];
        let m = SeriesMeta::new(Signal::Metrics, "cpu", &a, &res);
        assert_eq!(m.identity(), "cpu{a=1,b=2,host.name=n1}");
        assert_eq!(m.metric(), "cpu");
        assert_eq!(
            SeriesMeta::new(Signal::Metrics, "up", &[], &[]).identity(),
            "up"
        );
    }

    #[test]
    fn attributes_come_back_as_they_went_in() {
        use vigil_core::attrs::{kv, kv_f64, kv_i64};
        use vigil_core::otlp::common::v1::ArrayValue;
        let attrs = [
            kv_i64("z.int", -3),
            kv_str("a.text", "é ü"),
            kv_f64("m.nan", f64::NAN),
            kv("b.bool", Value::BoolValue(true)),
            kv(
                "c.array",
                Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::StringValue(String::new())),
                    }],
                }),
            ),
            KeyValue {
                key: "d.none".into(),
                value: None,
                ..Default::default()
            },
            kv_str("e.empty", ""),
        ];
        let m = SeriesMeta::new(Signal::Logs, "log.record.rate", &attrs, &[]);
        let mut sorted = attrs.to_vec();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        let back = m.attributes();
        assert_eq!(back.len(), sorted.len());
        // NaN is not equal to itself: compare the encodings, which are exact.
        for (a, b) in back.iter().zip(&sorted) {
            assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "{}", b.key);
        }
        assert_eq!(m.attribute("z.int").as_deref(), Some("-3"));
        assert_eq!(m.attribute("a.text").as_deref(), Some("é ü"));
        assert_eq!(m.attribute("missing"), None);
        assert_eq!(m.metric(), "log.record.rate");
        assert!(m
            .identity()
            .starts_with("log.record.rate{a.text=é ü,b.bool=true,"));
        assert!(m.identity().ends_with(",z.int=-3}"), "{}", m.identity());
    }

    #[test]
    fn series_of_one_resource_share_its_attributes_and_unused_ones_are_pruned() {
        let mut r = Resources::default();
        let res = [kv_str("host.name", "n1"), kv_str("service.name", "a")];
        let a = SeriesMeta::new(Signal::Metrics, "cpu", &[], &res);
        let b = SeriesMeta::new(Signal::Metrics, "mem", &[], &res);
        let (a, b) = (r.intern(&a.resource), r.intern(&b.resource));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, &res[..]);
        let other = r.intern(&Arc::from(vec![kv_str("host.name", "n2")]));
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(r.len(), 2);
        // Fill past the pruning point with resources no series keeps: the table stays bounded and
        // keeps the ones in use.
        for i in 0..3 * Resources::MIN_PRUNE {
            let _ = r.intern(&Arc::from(vec![kv_str("host.name", i.to_string())]));
        }
        assert!(r.len() <= Resources::MIN_PRUNE + 1, "{}", r.len());
        assert!(Arc::ptr_eq(&a, &r.intern(&Arc::from(&res[..]))));
    }
}
