//! OTLP/JSON for profiles. The `serde` that `opentelemetry-proto` generates for the profiles
//! messages does not follow proto3 JSON on its own: most of its structs have no field defaults (a
//! field left out, as proto3 JSON leaves out every default, is an error), 64-bit integers are read
//! only as numbers, and the bytes of `Link` and `originalPayload` are arrays of numbers instead of
//! hex and base64. The other signals' messages carry those attributes; these do not, so this module
//! rewrites the parsed JSON by the profiles schema on the way in, and the bytes on the way out. It is
//! hand-written because no crate in the workspace maps proto3 JSON from a descriptor.

use base64::Engine;
use serde_json::{Map, Value};

/// How one field is written in OTLP/JSON.
#[derive(Clone, Copy)]
enum Kind {
    /// A nested profiles message (absent means unset).
    Msg(&'static [(&'static str, Kind)]),
    /// A repeated profiles message.
    RepMsg(&'static [(&'static str, Kind)]),
    /// A 32- or 64-bit integer, as a number or a decimal string.
    Int,
    /// A repeated integer.
    RepInt,
    Str,
    RepStr,
    /// Bytes written as hex (trace and span ids).
    Hex,
    /// Bytes written as base64 (every other bytes field).
    Base64,
    /// A message of the common schema (`resource`, `scope`, `AnyValue`), whose serde is complete.
    Common,
}

use Kind::*;

const VALUE_TYPE: &[(&str, Kind)] = &[("typeStrindex", Int), ("unitStrindex", Int)];
const SAMPLE: &[(&str, Kind)] = &[
    ("stackIndex", Int),
    ("attributeIndices", RepInt),
    ("linkIndex", Int),
    ("values", RepInt),
    ("timestampsUnixNano", RepInt),
];
const PROFILE: &[(&str, Kind)] = &[
    ("sampleType", Msg(VALUE_TYPE)),
    ("samples", RepMsg(SAMPLE)),
    ("timeUnixNano", Int),
    ("durationNano", Int),
    ("periodType", Msg(VALUE_TYPE)),
    ("period", Int),
    // Written as hex by the crate's own serde, which reads it; only its default is needed.
    ("profileId", Str),
    ("droppedAttributesCount", Int),
    ("originalPayloadFormat", Str),
    ("originalPayload", Base64),
    ("attributeIndices", RepInt),
];
const SCOPE_PROFILES: &[(&str, Kind)] = &[
    ("scope", Common),
    ("profiles", RepMsg(PROFILE)),
    ("schemaUrl", Str),
];
const RESOURCE_PROFILES: &[(&str, Kind)] = &[
    ("resource", Common),
    ("scopeProfiles", RepMsg(SCOPE_PROFILES)),
    ("schemaUrl", Str),
];
const MAPPING: &[(&str, Kind)] = &[
    ("memoryStart", Int),
    ("memoryLimit", Int),
    ("fileOffset", Int),
    ("filenameStrindex", Int),
    ("attributeIndices", RepInt),
];
const LINE: &[(&str, Kind)] = &[("functionIndex", Int), ("line", Int), ("column", Int)];
const LOCATION: &[(&str, Kind)] = &[
    ("mappingIndex", Int),
    ("address", Int),
    ("lines", RepMsg(LINE)),
    ("attributeIndices", RepInt),
];
const FUNCTION: &[(&str, Kind)] = &[
    ("nameStrindex", Int),
    ("systemNameStrindex", Int),
    ("filenameStrindex", Int),
    ("startLine", Int),
];
const LINK: &[(&str, Kind)] = &[("traceId", Hex), ("spanId", Hex)];
const STACK: &[(&str, Kind)] = &[("locationIndices", RepInt)];
const ATTRIBUTE: &[(&str, Kind)] = &[
    ("keyStrindex", Int),
    ("value", Common),
    ("unitStrindex", Int),
];
const DICTIONARY: &[(&str, Kind)] = &[
    ("mappingTable", RepMsg(MAPPING)),
    ("locationTable", RepMsg(LOCATION)),
    ("functionTable", RepMsg(FUNCTION)),
    ("linkTable", RepMsg(LINK)),
    ("stringTable", RepStr),
    ("attributeTable", RepMsg(ATTRIBUTE)),
    ("stackTable", RepMsg(STACK)),
];
const REQUEST: &[(&str, Kind)] = &[
    ("resourceProfiles", RepMsg(RESOURCE_PROFILES)),
    ("dictionary", Msg(DICTIONARY)),
];

/// Rewrites a parsed `ExportProfilesServiceRequest` so that the generated serde reads it: missing
/// fields get their proto3 defaults, integers written as strings become numbers, and hex and base64
/// bytes become arrays. A value of the wrong JSON type is left for serde to refuse with its path.
pub fn fill_defaults(value: &mut Value) {
    if let Value::Object(map) = value {
        fill(map, REQUEST);
    }
}

fn fill(map: &mut Map<String, Value>, schema: &[(&str, Kind)]) {
    for &(key, kind) in schema {
        let Some(v) = map.get_mut(key).filter(|v| !v.is_null()) else {
            if let Some(d) = default(kind) {
                map.insert(key.to_string(), d);
            } else {
                map.remove(key);
            }
            continue;
        };
        match kind {
            Msg(s) => {
                if let Value::Object(m) = v {
                    fill(m, s);
                }
            }
            RepMsg(s) => {
                if let Value::Array(items) = v {
                    for item in items {
                        if let Value::Object(m) = item {
                            fill(m, s);
                        }
                    }
                }
            }
            Int => int_in(v),
            RepInt => {
                if let Value::Array(items) = v {
                    items.iter_mut().for_each(int_in);
                }
            }
            Hex => {
                if let Some(bytes) = v.as_str().and_then(|s| hex::decode(s).ok()) {
                    *v = bytes_value(&bytes);
                }
            }
            Base64 => {
                let decoded = v
                    .as_str()
                    .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
                if let Some(bytes) = decoded {
                    *v = bytes_value(&bytes);
                }
            }
            Str | RepStr | Common => {}
        }
    }
}

fn default(kind: Kind) -> Option<Value> {
    match kind {
        Msg(_) | Common => None,
        RepMsg(_) | RepInt | RepStr | Hex | Base64 => Some(Value::Array(Vec::new())),
        Int => Some(Value::from(0)),
        Str => Some(Value::from("")),
    }
}

/// A decimal string becomes the number it holds; anything else stays for serde to judge.
fn int_in(v: &mut Value) {
    if let Some(s) = v.as_str() {
        if let Ok(n) = s.parse::<i64>() {
            *v = Value::from(n);
        } else if let Ok(n) = s.parse::<u64>() {
            *v = Value::from(n);
        }
    }
}

fn bytes_value(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|b| Value::from(*b)).collect())
}

/// Rewrites what the generated serde wrote for a `ProfilesData` into OTLP/JSON: `Link` ids as hex,
/// `originalPayload` as base64. Integers stay numbers, which proto3 JSON readers accept.
pub fn to_otlp_json(value: &mut Value) {
    if let Value::Object(map) = value {
        out(map, REQUEST);
    }
}

fn out(map: &mut Map<String, Value>, schema: &[(&str, Kind)]) {
    for &(key, kind) in schema {
        let Some(v) = map.get_mut(key) else { continue };
        match kind {
            Msg(s) => {
                if let Value::Object(m) = v {
                    out(m, s);
                }
            }
            RepMsg(s) => {
                if let Value::Array(items) = v {
                    for item in items {
                        if let Value::Object(m) = item {
                            out(m, s);
                        }
                    }
                }
            }
            Hex => {
                if let Some(bytes) = array_bytes(v) {
                    *v = Value::from(hex::encode(bytes));
                }
            }
            Base64 => {
                if let Some(bytes) = array_bytes(v) {
                    *v = Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
                }
            }
            Int | RepInt | Str | RepStr | Common => {}
        }
    }
}

fn array_bytes(v: &Value) -> Option<Vec<u8>> {
    v.as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::codec::decode::{decode_json, ExportRequest};
    use crate::codec::encode::{decode_json_request, json_request};
    use crate::otlp::collector::profiles::v1development::ExportProfilesServiceRequest;
    use crate::otlp::profiles::v1development::{
        Link, Profile, ProfilesData, ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles,
    };
    use crate::Telemetry;

    /// A request as proto3 JSON writes it: defaults left out, 64-bit integers as strings, ids in
    /// hex, payload in base64.
    #[test]
    fn proto3_json_decodes_and_round_trips() {
        let body = br#"{"resourceProfiles":[{"scopeProfiles":[{"profiles":[{
            "samples":[{"stackIndex":1,"values":["42"],"timestampsUnixNano":["1700000000000000000"]}],
            "timeUnixNano":"1700000000000000000","originalPayload":"AAE="}]}]}],
            "dictionary":{"stringTable":["","cpu"],"linkTable":[{},{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708"}]}}"#;
        let req = decode_json::<ExportProfilesServiceRequest>(body).expect("decodes");
        assert_eq!(req.item_count(), 1);
        let p = &req.resource_profiles[0].scope_profiles[0].profiles[0];
        assert_eq!(p.time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(p.samples[0].values, vec![42]);
        assert_eq!(p.original_payload, vec![0, 1]);
        let dict = req.dictionary.clone().expect("dictionary");
        assert_eq!(dict.link_table[1].span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);

        let data = req.into_telemetry();
        let json = json_request(&data).expect("encodes");
        let text = String::from_utf8(json.clone()).expect("utf-8");
        assert!(text.contains("\"0102030405060708\""), "{text}");
        assert!(text.contains("\"AAE=\""), "{text}");
        let back = decode_json_request(crate::Signal::Profiles, &json).expect("decodes again");
        assert_eq!(back, data);
    }

    #[test]
    fn empty_messages_and_full_round_trip() {
        let data = Telemetry::Profiles(ProfilesData {
            resource_profiles: vec![ResourceProfiles {
                scope_profiles: vec![ScopeProfiles {
                    profiles: vec![Profile {
                        samples: vec![Sample::default(), Sample::default()],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            dictionary: Some(ProfilesDictionary {
                link_table: vec![Link::default()],
                ..Default::default()
            }),
        });
        let json = json_request(&data).expect("encodes");
        let back = decode_json_request(crate::Signal::Profiles, &json).expect("decodes");
        assert_eq!(back, data);
        assert_eq!(back.item_count(), 2);
    }
}
