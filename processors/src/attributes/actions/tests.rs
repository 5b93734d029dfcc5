use super::*;
use serde_json::json;
use vigil_core::attrs::{get, kv, kv_i64, kv_str};

fn id() -> ComponentId {
    ComponentId::parse("attributes/x").unwrap()
}

fn actions(list: Json) -> Actions {
    let cfgs: Vec<ActionConfig> = serde_json::from_value(list).unwrap();
    Actions::compile(&id(), "actions", &cfgs).unwrap()
}

fn error(list: Json) -> String {
    let cfgs: Vec<ActionConfig> = serde_json::from_value(list).unwrap();
    Actions::compile(&id(), "actions", &cfgs)
        .unwrap_err()
        .to_string()
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn keys(attrs: &[KeyValue]) -> Vec<&str> {
    attrs.iter().map(|kv| kv.key.as_str()).collect()
}

#[test]
fn insert_only_adds_missing_keys() {
    let a = actions(json!([
        {"key": "env", "value": "prod", "action": "insert"},
        {"key": "region", "value": "eu", "action": "INSERT"},
        {"key": "copy", "from_attribute": "env", "action": "insert"},
        {"key": "nothing", "from_attribute": "absent", "action": "insert"},
    ]));
    let mut attrs = vec![kv_str("region", "us")];
    a.apply(&mut attrs);
    assert_eq!(get(&attrs, "env"), Some(&s("prod")));
    assert_eq!(get(&attrs, "region"), Some(&s("us")), "insert overwrote");
    assert_eq!(get(&attrs, "copy"), Some(&s("prod")));
    assert!(get(&attrs, "nothing").is_none());
}

#[test]
fn update_only_changes_existing_keys() {
    let a = actions(json!([
        {"key": "count", "value": 7, "action": "update"},
        {"key": "absent", "value": true, "action": "update"},
        {"key": "name", "from_attribute": "other", "action": "update"},
    ]));
    let mut attrs = vec![
        kv_str("count", "x"),
        kv_str("name", "a"),
        kv_str("other", "b"),
    ];
    a.apply(&mut attrs);
    assert_eq!(get(&attrs, "count"), Some(&Value::IntValue(7)));
    assert!(get(&attrs, "absent").is_none());
    assert_eq!(get(&attrs, "name"), Some(&s("b")));
}

#[test]
fn upsert_sets_with_the_configured_type() {
    let a = actions(json!([
        {"key": "ratio", "value": 0.5, "action": "upsert"},
        {"key": "flag", "value": false, "action": "upsert"},
        {"key": "tags", "value": ["a", 1], "action": "upsert"},
    ]));
    let mut attrs = vec![kv_str("ratio", "old")];
    a.apply(&mut attrs);
    assert_eq!(get(&attrs, "ratio"), Some(&Value::DoubleValue(0.5)));
    assert_eq!(get(&attrs, "flag"), Some(&Value::BoolValue(false)));
    let Some(Value::ArrayValue(arr)) = get(&attrs, "tags") else {
        panic!("array expected")
    };
    assert_eq!(arr.values.len(), 2);
    assert_eq!(keys(&attrs), ["ratio", "flag", "tags"]);
}

#[test]
fn delete_by_key_and_by_pattern() {
    let a = actions(json!([
        {"key": "password", "action": "delete"},
        {"pattern": "^http\\.request\\.header\\.", "action": "delete"},
    ]));
    let mut attrs = vec![
        kv_str("password", "x"),
        kv_str("http.request.header.cookie", "c"),
        kv_str("http.request.header.auth", "a"),
        kv_str("http.method", "GET"),
    ];
    a.apply(&mut attrs);
    assert_eq!(keys(&attrs), ["http.method"]);
}

#[test]
fn hash_matches_otelcol_bytes() {
    let a = actions(json!([
        {"key": "user", "action": "hash"},
        {"pattern": "^n_", "action": "hash"},
    ]));
    let mut attrs = vec![
        kv_str("user", "foo"),
        kv_i64("n_int", 42),
        kv("n_bool", Value::BoolValue(true)),
        kv("n_double", Value::DoubleValue(1.5)),
        kv_str("other", "foo"),
    ];
    a.apply(&mut attrs);
    let want = [
        (
            "user",
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        ),
        (
            "n_int",
            "ed049108bc18f2c64369e8d0ea42850bdd1a7d1dd340cfde716315579702a76c",
        ),
        (
            "n_bool",
            "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a",
        ),
        (
            "n_double",
            "e163f8cb0f7067a7fc78ca859a77f849aea3214f38fb75b884e4a16be725c905",
        ),
        ("other", "foo"),
    ];
    for (k, v) in want {
        assert_eq!(get(&attrs, k), Some(&s(v)), "{k}");
    }
}

#[test]
fn extract_sets_named_groups_when_the_pattern_matches() {
    let a = actions(json!([
        {"key": "http.url", "pattern": "^/api/(?P<api.version>v\\d+)/(?P<api.resource>\\w+)", "action": "extract"},
    ]));
    let mut attrs = vec![
        kv_str("http.url", "/api/v2/users/17"),
        kv_str("api.version", "old"),
    ];
    a.apply(&mut attrs);
    assert_eq!(
        get(&attrs, "api.version"),
        Some(&s("v2")),
        "existing target is overwritten"
    );
    assert_eq!(get(&attrs, "api.resource"), Some(&s("users")));
    assert_eq!(get(&attrs, "http.url"), Some(&s("/api/v2/users/17")));

    let mut other = vec![kv_str("http.url", "/health")];
    a.apply(&mut other);
    assert_eq!(keys(&other), ["http.url"]);
    let mut not_string = vec![kv_i64("http.url", 3)];
    a.apply(&mut not_string);
    assert_eq!(keys(&not_string), ["http.url"]);
}

#[test]
fn convert_between_types() {
    let a = actions(json!([
        {"key": "a", "converted_type": "int", "action": "convert"},
        {"key": "b", "converted_type": "double", "action": "convert"},
        {"key": "c", "converted_type": "string", "action": "convert"},
        {"key": "d", "converted_type": "int", "action": "convert"},
        {"key": "e", "converted_type": "int", "action": "convert"},
        {"key": "f", "converted_type": "string", "action": "convert"},
    ]));
    let mut attrs = vec![
        kv_str("a", "123"),
        kv_i64("b", 4),
        kv("c", Value::BoolValue(true)),
        kv_str("d", "not a number"),
        kv("e", Value::DoubleValue(2.9)),
        kv("f", Value::BytesValue(vec![1, 2, 3])),
    ];
    a.apply(&mut attrs);
    assert_eq!(get(&attrs, "a"), Some(&Value::IntValue(123)));
    assert_eq!(get(&attrs, "b"), Some(&Value::DoubleValue(4.0)));
    assert_eq!(get(&attrs, "c"), Some(&s("true")));
    assert_eq!(
        get(&attrs, "d"),
        Some(&s("not a number")),
        "unparseable value must stay"
    );
    assert_eq!(get(&attrs, "e"), Some(&Value::IntValue(2)));
    assert_eq!(get(&attrs, "f"), Some(&s("AQID")));
}

#[test]
fn actions_run_in_order() {
    let a = actions(json!([
        {"key": "k", "value": "v1", "action": "insert"},
        {"key": "k", "action": "hash"},
        {"key": "k2", "from_attribute": "k", "action": "upsert"},
        {"key": "k", "action": "delete"},
    ]));
    let mut attrs = vec![];
    a.apply(&mut attrs);
    assert_eq!(keys(&attrs), ["k2"]);
    let Some(Value::StringValue(h)) = get(&attrs, "k2") else {
        panic!("hash expected")
    };
    assert_eq!(h.len(), 64);
}

#[test]
fn config_errors_name_the_action_and_field() {
    let cases = [
        (
            json!([{"key": "a", "value": 1, "action": "insert"}, {"key": "b", "action": "insert"}]),
            "processors::attributes/x::actions::1::value: missing \"value\" or \"from_attribute\" \
             for action \"insert\"",
        ),
        (
            json!([{"key": "a", "value": 1, "from_attribute": "b", "action": "upsert"}]),
            "processors::attributes/x::actions::0: both \"value\" and \"from_attribute\" are set for \
             action \"upsert\"; use one",
        ),
        (
            json!([{"value": 1, "action": "update"}]),
            "processors::attributes/x::actions::0::key: missing \"key\" for action \"update\"",
        ),
        (
            json!([{"action": "delete"}]),
            "processors::attributes/x::actions::0: missing \"key\" or \"pattern\" for action \"delete\"",
        ),
        (
            json!([{"key": "a", "value": "x", "action": "hash"}]),
            "processors::attributes/x::actions::0::value: action \"hash\" does not use \"value\"; \
             remove it",
        ),
        (
            json!([{"key": "a", "action": "rename"}]),
            "processors::attributes/x::actions::0::action: unsupported action \"rename\" (use \
             insert, update, upsert, delete, hash, extract or convert)",
        ),
        (
            json!([{"key": "a"}]),
            "processors::attributes/x::actions::0::action: missing \"action\"",
        ),
        (
            json!([{"key": "a", "action": "extract"}]),
            "processors::attributes/x::actions::0::pattern: missing \"pattern\" for action \"extract\"",
        ),
        (
            json!([{"key": "a", "pattern": "^\\w+$", "action": "extract"}]),
            "processors::attributes/x::actions::0::pattern: pattern \"^\\\\w+$\" has no named groups; \
             extract sets one attribute per (?P<name>...) group",
        ),
        (
            json!([{"key": "a", "pattern": "(?P<x>a)(b)", "action": "extract"}]),
            "processors::attributes/x::actions::0::pattern: pattern \"(?P<x>a)(b)\" has an unnamed \
             group; name every group (?P<name>...) or make it non-capturing (?:...)",
        ),
        (
            json!([{"key": "a", "converted_type": "float", "action": "convert"}]),
            "processors::attributes/x::actions::0::converted_type: invalid converted_type \"float\" \
             (use int, double or string)",
        ),
        (
            json!([{"key": "a", "action": "convert"}]),
            "processors::attributes/x::actions::0::converted_type: missing \"converted_type\" for \
             action \"convert\"",
        ),
        (
            json!([{"key": "a", "value": 1, "pattern": "x", "action": "insert"}]),
            "processors::attributes/x::actions::0::pattern: action \"insert\" does not use \
             \"pattern\"; remove it",
        ),
    ];
    for (list, want) in cases {
        assert_eq!(error(list.clone()), want, "actions {list}");
    }
    let bad = error(json!([{"pattern": "(", "action": "delete"}]));
    assert!(
        bad.starts_with("processors::attributes/x::actions::0::pattern: invalid pattern \"(\": "),
        "{bad}"
    );
}
