use super::*;
use crate::stanza::entry::Entry;
use vigil_core::attrs::get_str;

fn build(yaml: &str) -> Pipeline {
    let v: Vec<OperatorConfig> = serde_saphyr::from_str(yaml).unwrap();
    Pipeline::build(&v).unwrap()
}

fn run(p: &Pipeline, lines: &[&str]) -> Vec<Entry> {
    let mut st = PipelineState::default();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        p.process(
            Entry::text(l.to_string(), 0),
            i as u64,
            None,
            &mut st,
            &mut out,
        );
    }
    out
}

#[test]
fn regex_timestamp_severity_chain() {
    let p = build(
        r#"
- type: regex_parser
  regex: '^(?P<time>\S+) (?P<sev>[A-Z]+) (?P<msg>.*)$'
  timestamp:
    parse_from: attributes.time
    layout: '%Y-%m-%dT%H:%M:%SZ'
    location: UTC
  severity:
    parse_from: attributes.sev
- type: move
  from: attributes.msg
  to: body
- type: remove
  field: attributes.time
- type: add
  field: resource["service.name"]
  value: web
"#,
    );
    let out = run(
        &p,
        &["2024-03-01T10:00:00Z WARN disk almost full", "garbage"],
    );
    assert_eq!(out.len(), 2, "on_error send passes the bad line on");
    let e = &out[0];
    assert_eq!(e.body, Value::StringValue("disk almost full".into()));
    assert_eq!(e.timestamp, 1_709_287_200_000_000_000);
    assert_eq!((e.severity_number, e.severity_text.as_str()), (13, "WARN"));
    assert_eq!(get_str(&e.attributes, "time"), None);
    assert_eq!(get_str(&e.resource, "service.name"), Some("web"));
    assert_eq!(out[1].body, Value::StringValue("garbage".into()));
}

#[test]
fn json_parser_and_router() {
    let p = build(
        r#"
- type: json_parser
  on_error: drop
- type: router
  routes:
    - expr: 'attributes.level == "error"'
      output: errs
  default: rest
- type: add
  id: errs
  field: attributes.routed
  value: errors
  output: end
- type: add
  id: rest
  field: attributes.routed
  value: other
- type: add
  id: end
  field: attributes.done
  value: true
"#,
    );
    let out = run(
        &p,
        &[
            r#"{"level":"error","n":3}"#,
            r#"{"level":"info"}"#,
            "not json",
        ],
    );
    assert_eq!(out.len(), 2);
    assert_eq!(get_str(&out[0].attributes, "routed"), Some("errors"));
    assert_eq!(get_str(&out[1].attributes, "routed"), Some("other"));
    assert_eq!(
        vigil_core::attrs::get(&out[0].attributes, "n"),
        Some(&Value::IntValue(3))
    );
    assert_eq!(
        vigil_core::attrs::get(&out[1].attributes, "done"),
        Some(&Value::BoolValue(true))
    );
}

#[test]
fn container_joins_partials_and_holds_their_offset() {
    let p = build("- type: container\n");
    let mut st = PipelineState::default();
    let mut out = Vec::new();
    let path = Some("/var/log/pods/ns_pod_0123-ab/app/0.log");
    p.process(
        Entry::text("2024-03-01T10:00:00Z stdout P hel".into(), 0),
        10,
        path,
        &mut st,
        &mut out,
    );
    p.process(
        Entry::text("2024-03-01T10:00:00Z stderr F oops".into(), 0),
        50,
        path,
        &mut st,
        &mut out,
    );
    assert_eq!(st.held_from(), Some(10));
    p.process(
        Entry::text("2024-03-01T10:00:01Z stdout F lo".into(), 0),
        90,
        path,
        &mut st,
        &mut out,
    );
    assert_eq!(st.held_from(), None);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].body, Value::StringValue("hello".into()));
    assert_eq!(get_str(&out[1].attributes, "log.iostream"), Some("stdout"));
    assert_eq!(get_str(&out[1].resource, "k8s.pod.name"), Some("pod"));
    assert_eq!(get_str(&out[1].resource, "k8s.container.name"), Some("app"));
}

#[test]
fn build_errors_name_the_operator() {
    let v: Vec<OperatorConfig> =
        serde_saphyr::from_str("- type: move\n  from: attributes.a\n  to: nowhere.b\n").unwrap();
    let (path, msg) = Pipeline::build(&v).unwrap_err();
    assert_eq!(path, "operators::0::to");
    assert!(msg.contains("body, attributes or resource"), "{msg}");
    let r: Result<Vec<OperatorConfig>, _> = serde_saphyr::from_str("- type: teleport\n");
    assert!(r.is_err());
}

#[test]
fn operators_without_id_are_numbered_like_stanza() {
    let v: Vec<OperatorConfig> = serde_saphyr::from_str(
        r#"
- type: move
  from: attributes.a
  to: attributes.b
- type: move
  from: attributes.c
  to: attributes.d
- type: move
  id: move1
  from: attributes.e
  to: attributes.f
- type: move
  from: attributes.g
  to: attributes.h
"#,
    )
    .unwrap();
    let explicit: Vec<Option<&str>> = v.iter().map(|c| c.id()).collect();
    assert_eq!(
        default_ids(&v, &explicit),
        ["move", "move2", "move1", "move3"]
    );
    let p = Pipeline::build(&v).unwrap();
    let out = run(&p, &["x"]);
    assert_eq!(out.len(), 1);
}

#[test]
fn router_expr_with_a_go_literal_brace() {
    let p = build(
        r#"
- type: router
  routes:
    - expr: 'body matches "\"resource\":{.*?},?"'
      output: json
- type: json_parser
  id: json
"#,
    );
    let out = run(&p, &[r#"{"resource":{"a":1},"b":"c"}"#]);
    assert_eq!(out.len(), 1);
    assert_eq!(get_str(&out[0].attributes, "b"), Some("c"));
}

#[test]
fn every_operator_that_does_not_compile_is_reported() {
    let v: Vec<OperatorConfig> = serde_saphyr::from_str(
        r#"
- type: regex_parser
  regex: '(unclosed'
- type: move
  from: attributes.a
  to: attributes.b
- type: regex_parser
  regex: 'no named groups'
"#,
    )
    .unwrap();
    let errors = Pipeline::build_all(&v).err().unwrap_or_default();
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["operators::0::regex", "operators::2::regex"],
        "{errors:?}"
    );
}

/// Stanza's upstream names for the standalone parsers, as published configs write them.
#[test]
fn time_parser_and_severity_parser_are_the_upstream_names() {
    let p = build(
        r#"
- type: json_parser
- type: time_parser
  parse_from: attributes.time
  layout: '%Y-%m-%dT%H:%M:%S%z'
- type: severity_parser
  parse_from: attributes.level
"#,
    );
    let out = run(
        &p,
        &[r#"{"time":"2024-03-01T10:00:00+0000","level":"error","msg":"x"}"#],
    );
    assert_eq!(out[0].timestamp, 1_709_287_200_000_000_000);
    assert_eq!(out[0].severity_number, 17);
}

/// A parser's `body` field: the parsed field becomes the body (the attribute stays), as stanza does.
#[test]
fn parser_body_field_becomes_the_body() {
    let p = build(
        r#"
- type: json_parser
  body: attributes.formattedMessage
  timestamp:
    parse_from: attributes.timestamp
    layout_type: epoch
    layout: ms
"#,
    );
    let out = run(
        &p,
        &[
            r#"{"timestamp":1709287200000,"formattedMessage":"user logged in","level":"INFO"}"#,
            r#"{"level":"INFO"}"#,
        ],
    );
    assert_eq!(out[0].body, Value::StringValue("user logged in".into()));
    assert_eq!(
        get_str(&out[0].attributes, "formattedMessage"),
        Some("user logged in")
    );
    assert_eq!(out[0].timestamp, 1_709_287_200_000_000_000);
    // Without the field, on_error (send) passes the entry on unchanged.
    assert_eq!(out.len(), 2);
}
