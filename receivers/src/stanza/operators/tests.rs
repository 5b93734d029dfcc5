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

fn body(e: &Entry) -> &str {
    match &e.body {
        Value::StringValue(s) => s,
        _ => "",
    }
}

/// A Java stack trace, one line per entry as a file input makes them, joined by recombine with
/// is_first_entry on the timestamp that starts each record; the last record is held until the
/// input flushes it.
#[test]
fn recombine_joins_java_stack_traces() {
    let p = build(
        r#"
- type: recombine
  combine_field: body
  is_first_entry: body matches "^\\d{4}-\\d{2}-\\d{2}"
"#,
    );
    let lines = [
        "2024-03-01 10:00:00.123 ERROR [main] c.e.Api - request failed",
        "java.lang.IllegalStateException: boom",
        "\tat com.example.Foo.bar(Foo.java:42)",
        "\tat com.example.Foo.main(Foo.java:10)",
        "Caused by: java.io.IOException: disk full",
        "\tat com.example.Disk.write(Disk.java:7)",
        "\t... 2 more",
        "2024-03-01 10:00:01.000 INFO  [main] c.e.Api - next request",
    ];
    let mut st = PipelineState::default();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let mut e = Entry::text(l.to_string(), 0);
        e.attributes.push(vigil_core::attrs::kv_str(
            "log.file.path",
            "/var/log/app.log",
        ));
        p.process(e, i as u64 * 100, None, &mut st, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(body(&out[0]), lines[..7].join("\n"));
    // The oldest entry's other fields are kept (overwrite_with: oldest).
    assert_eq!(
        get_str(&out[0].attributes, "log.file.path"),
        Some("/var/log/app.log")
    );
    assert_eq!(st.held_from(), Some(700));
    p.flush(None, &mut st, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!(body(&out[1]), lines[7]);
    assert_eq!(st.held_from(), None);
}

/// CRI partial lines (`P`) closed by `F`, as the Helm charts' recombine after a regex_parser.
#[test]
fn recombine_is_last_entry_joins_cri_partials_per_source() {
    let p = build(
        r#"
- type: regex_parser
  regex: '^(?P<time>[^ ]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) ?(?P<log>.*)$'
- type: recombine
  combine_field: attributes.log
  combine_with: ""
  is_last_entry: attributes.logtag == 'F'
  source_identifier: attributes["log.file.path"]
"#,
    );
    let mut st = PipelineState::default();
    let mut out = Vec::new();
    let feed = |line: &str, path: &str, st: &mut PipelineState, out: &mut Vec<Entry>| {
        let mut e = Entry::text(line.to_string(), 0);
        e.attributes
            .push(vigil_core::attrs::kv_str("log.file.path", path));
        p.process(e, 0, None, st, out);
    };
    feed(
        "2024-03-01T10:00:00Z stdout P hel",
        "/a.log",
        &mut st,
        &mut out,
    );
    feed(
        "2024-03-01T10:00:00Z stdout P wor",
        "/b.log",
        &mut st,
        &mut out,
    );
    feed(
        "2024-03-01T10:00:00Z stdout F lo",
        "/a.log",
        &mut st,
        &mut out,
    );
    feed(
        "2024-03-01T10:00:00Z stdout F ld",
        "/b.log",
        &mut st,
        &mut out,
    );
    let logs: Vec<_> = out
        .iter()
        .map(|e| get_str(&e.attributes, "log").unwrap_or(""))
        .collect();
    assert_eq!(logs, vec!["hello", "world"]);
}

#[test]
fn recombine_limits_and_timed_flush() {
    // max_batch_size: a record goes out at 3 entries even without a match.
    let p = build(
        "- type: recombine\n  combine_field: body\n  is_last_entry: body == 'end'\n  max_batch_size: 3\n  max_unmatched_batch_size: 0\n",
    );
    let out = run(&p, &["a", "b", "c", "d", "end"]);
    let bodies: Vec<_> = out.iter().map(body).collect();
    assert_eq!(bodies, vec!["a\nb\nc", "d\nend"]);
    // max_unmatched_batch_size 1: entries before any match go out one by one.
    let p = build(
        "- type: recombine\n  combine_field: body\n  is_first_entry: body == 'start'\n  max_unmatched_batch_size: 1\n",
    );
    let out = run(&p, &["x", "y", "start", "z"]);
    let bodies: Vec<_> = out.iter().map(body).collect();
    assert_eq!(bodies, vec!["x", "y"]);
    // max_log_size: the joined text past it goes out.
    let p = build(
        "- type: recombine\n  combine_field: body\n  is_first_entry: body == 'start'\n  max_log_size: 8\n  overwrite_with: newest\n",
    );
    let out = run(&p, &["start", "12345", "x"]);
    assert_eq!(
        out.iter().map(body).collect::<Vec<_>>(),
        vec!["start\n12345"]
    );
    // force_flush_period: what an input's flush_due finds past the period goes out.
    let p = build(
        "- type: recombine\n  combine_field: body\n  is_first_entry: body == 'start'\n  force_flush_period: 1ns\n",
    );
    let mut st = PipelineState::default();
    let mut out = Vec::new();
    p.process(Entry::text("start".into(), 0), 0, None, &mut st, &mut out);
    p.process(Entry::text("more".into(), 0), 1, None, &mut st, &mut out);
    assert!(out.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(1));
    p.flush_due(None, &mut st, &mut out);
    assert_eq!(
        out.iter().map(body).collect::<Vec<_>>(),
        vec!["start\nmore"]
    );
}

#[test]
fn filter_flatten_regex_replace_noop_retain() {
    let p = build(
        r#"
- type: filter
  expr: body matches "health" or attributes.missing?.x != nil
- type: json_parser
  parse_to: body
- type: flatten
  field: body.http
- type: regex_replace
  field: body.msg
  regex_name: ansi_control_sequences
- type: regex_replace
  field: body.path
  regex: '/users/(\d+)'
  replace_with: '/users/{id=$1}'
- type: noop
- type: retain
  fields: [body.msg, body.path, body.status]
"#,
    );
    let out = run(
        &p,
        &[
            r#"GET /healthz"#,
            "{\"msg\":\"\\u001b[31mfailed\\u001b[0m\",\"http\":{\"path\":\"/users/42\",\"status\":500},\"pid\":7}",
        ],
    );
    assert_eq!(out.len(), 1, "the health check is filtered out");
    let b = &out[0].body;
    let get = |k: &str| {
        Field::parse(&format!("body.{k}"))
            .unwrap()
            .get(&out[0])
            .cloned()
    };
    assert_eq!(get("msg"), Some(Value::StringValue("failed".into())));
    assert_eq!(
        get("path"),
        Some(Value::StringValue("/users/{id=42}".into()))
    );
    assert_eq!(get("status"), Some(Value::IntValue(500)));
    assert_eq!(
        get("pid"),
        None,
        "retain removed the rest of the body: {b:?}"
    );
    assert_eq!(get("http"), None);
    // drop_ratio 0 keeps everything; an expression that cannot be evaluated drops, as stanza does.
    let p = build("- type: filter\n  expr: body == 'x'\n  drop_ratio: 0\n");
    assert_eq!(run(&p, &["x", "y"]).len(), 2);
    let p = build("- type: filter\n  expr: body + 1 > 2\n");
    assert_eq!(run(&p, &["x"]).len(), 0);
}

#[test]
fn parser_scope_name_and_trace() {
    let p = build(
        r#"
- type: json_parser
  scope_name:
    parse_from: attributes.loggerName
  trace:
    trace_id:
      parse_from: attributes.mdc.trace_id
    span_id:
      parse_from: attributes.mdc.span_id
    trace_flags:
      parse_from: attributes.mdc.trace_flags
"#,
    );
    let out = run(
        &p,
        &[
            r#"{"loggerName":"com.example.Api","mdc":{"trace_id":"0102030405060708090a0b0c0d0e0f10","span_id":"0102030405060708","trace_flags":"01"}}"#,
        ],
    );
    assert_eq!(out[0].scope_name, "com.example.Api");
    assert_eq!(out[0].trace_id.len(), 16);
    assert_eq!(out[0].span_id, vec![1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(out[0].flags, 1);
    let mut g = crate::stanza::Grouper::default();
    g.push(out[0].clone());
    let rl = g.take();
    assert_eq!(
        rl[0].scope_logs[0].scope.as_ref().map(|s| s.name.as_str()),
        Some("com.example.Api")
    );
}

#[test]
fn expr_dialect_forms_from_published_configs() {
    let p = build(
        r#"
- type: add
  field: attributes.ends
  value: "yes"
  if: body endsWith "\n"
- type: add
  field: attributes.starts
  value: "yes"
  if: body startsWith "{" and (body matches "\\{[^{}]*\\}" == true)
"#,
    );
    let out = run(&p, &["{\"a\":1}\n"]);
    assert_eq!(get_str(&out[0].attributes, "ends"), Some("yes"));
    assert_eq!(get_str(&out[0].attributes, "starts"), Some("yes"));
}

#[test]
fn new_operators_refuse_bad_config() {
    let bad = |yaml: &str, want: &str| {
        let v: Vec<OperatorConfig> = serde_saphyr::from_str(yaml).unwrap();
        let (path, msg) = Pipeline::build(&v).unwrap_err();
        let all = format!("{path}: {msg}");
        assert!(all.contains(want), "{all}");
    };
    bad(
        "- type: recombine\n  combine_field: body\n",
        "operators::0: one of is_first_entry and is_last_entry must be set",
    );
    bad(
        "- type: recombine\n  combine_field: body\n  is_first_entry: 'true'\n  is_last_entry: 'true'\n",
        "only one of is_first_entry and is_last_entry",
    );
    bad(
        "- type: recombine\n  is_first_entry: 'true'\n",
        "operators::0::combine_field: required",
    );
    bad(
        "- type: regex_replace\n  field: body\n",
        "either regex or regex_name must be set",
    );
    bad(
        "- type: regex_replace\n  field: body\n  regex_name: colours\n",
        "operators::0::regex_name: unknown regex_name",
    );
    bad(
        "- type: filter\n  expr: 'true'\n  drop_ratio: 2\n",
        "operators::0::drop_ratio",
    );
    bad(
        "- type: flatten\n  field: body\n",
        "cannot flatten body itself",
    );
}

fn attr<'a>(e: &'a Entry, k: &str) -> Option<&'a Value> {
    vigil_core::attrs::get(&e.attributes, k)
}

#[test]
fn key_value_parser_quoted_values_and_embedded_blocks() {
    let p = build(
        r#"
- type: key_value_parser
  timestamp:
    parse_from: attributes.ts
    layout_type: epoch
    layout: s
  severity:
    parse_from: attributes.level
"#,
    );
    let out = run(
        &p,
        &[
            r#"ts=1136214245 level=error msg="disk full on /var" user='app svc'"#,
            "no pairs here",
        ],
    );
    assert_eq!(out.len(), 2);
    let e = &out[0];
    assert_eq!(get_str(&e.attributes, "msg"), Some("disk full on /var"));
    assert_eq!(get_str(&e.attributes, "user"), Some("app svc"));
    assert_eq!(e.timestamp, 1_136_214_245_000_000_000);
    assert_eq!(e.severity_number, 17);
    // on_error send: the line goes on as it was.
    assert_eq!(body(&out[1]), "no pairs here");
    assert!(out[1].attributes.is_empty());
    let p = build(
        "- type: key_value_parser\n  delimiter: ':'\n  pair_delimiter: '|'\n  parse_to: body\n",
    );
    let out = run(&p, &["a:1|b: two words "]);
    let Value::KvlistValue(b) = &out[0].body else {
        panic!("{:?}", out[0].body)
    };
    assert_eq!(get_str(&b.values, "b"), Some("two words"));
}

#[test]
fn csv_parser_with_quotes_and_a_dynamic_header() {
    let p = build(
        r#"
- type: csv_parser
  header: id,user,message
  on_error: drop
"#,
    );
    let out = run(
        &p,
        &[r#"1,"Smith, John","said ""hi"" twice""#, "2,only-two"],
    );
    assert_eq!(out.len(), 1, "the short row is dropped");
    assert_eq!(get_str(&out[0].attributes, "user"), Some("Smith, John"));
    assert_eq!(
        get_str(&out[0].attributes, "message"),
        Some(r#"said "hi" twice"#)
    );
    let p = build("- type: csv_parser\n  header_attribute: fields\n  delimiter: ';'\n");
    let mut e = Entry::text("7;ok".into(), 0);
    e.attributes
        .push(vigil_core::attrs::kv_str("fields", "n;status"));
    let mut out = Vec::new();
    p.process(e, 0, None, &mut PipelineState::default(), &mut out);
    assert_eq!(get_str(&out[0].attributes, "status"), Some("ok"));
    let p = build(
        "- type: csv_parser\n  header: a|b\n  header_delimiter: '|'\n  ignore_quotes: true\n",
    );
    let out = run(&p, &[r#"x","y"#]);
    assert_eq!(get_str(&out[0].attributes, "a"), Some("x\""));
}

#[test]
fn syslog_parser_rfc5424_and_rfc3164_lines() {
    let p = build("- type: syslog_parser\n  protocol: rfc5424\n");
    let out = run(
        &p,
        &[
            r#"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 [exampleSDID@32473 iut="3"] 'su root' failed for lonvick on /dev/pts/8"#,
        ],
    );
    let e = &out[0];
    assert_eq!(e.timestamp, 1_065_910_455_003_000_000);
    assert_eq!((e.severity_number, e.severity_text.as_str()), (18, "crit"));
    assert_eq!(
        get_str(&e.attributes, "hostname"),
        Some("mymachine.example.com")
    );
    assert_eq!(get_str(&e.attributes, "msg_id"), Some("ID47"));
    assert_eq!(get_str(&e.attributes, "facility_text"), Some("auth"));
    assert_eq!(attr(e, "priority"), Some(&Value::IntValue(34)));
    assert_eq!(attr(e, "version"), Some(&Value::IntValue(1)));
    assert_eq!(
        attr(e, "timestamp"),
        None,
        "the header time is not left behind"
    );
    assert!(
        matches!(e.body, Value::StringValue(_)),
        "the body stays the raw line"
    );
    let p = build(
        "- type: syslog_parser\n  protocol: rfc3164\n  location: America/New_York\n  parse_to: body\n",
    );
    let out = run(
        &p,
        &["<13>Feb  5 17:32:18 10.0.0.99 myapp[42]: Use the BFG!"],
    );
    let Value::KvlistValue(b) = &out[0].body else {
        panic!("{:?}", out[0].body)
    };
    assert_eq!(get_str(&b.values, "appname"), Some("myapp"));
    assert_eq!(get_str(&b.values, "proc_id"), Some("42"));
    assert_eq!(get_str(&b.values, "message"), Some("Use the BFG!"));
    // 17:32:18 in New York in February is 22:32:18 UTC.
    assert_eq!(
        (out[0].timestamp / 1_000_000_000) % 86_400,
        22 * 3600 + 32 * 60 + 18
    );
    assert_eq!(out[0].severity_text, "notice");
}

#[test]
fn uri_json_array_assign_keys_copy_unquote() {
    let p = build(
        r#"
- type: regex_parser
  regex: '^(?P<method>\S+) (?P<url>\S+) (?P<arr>\[.*\]) (?P<q>.*)$'
- type: uri_parser
  parse_from: attributes.url
  parse_to: attributes.http
- type: json_array_parser
  parse_from: attributes.arr
  parse_to: attributes.list
- type: assign_keys
  field: attributes.list
  keys: [code, ok]
- type: copy
  from: attributes.method
  to: resource.method
- type: unquote
  field: attributes.q
"#,
    );
    let out = run(
        &p,
        &[r#"GET https://api.example.com:8443/v1/items?id=7&id=8 [200,true] "quoted \"text\"""#],
    );
    let e = &out[0];
    let Some(Value::KvlistValue(http)) = attr(e, "http") else {
        panic!("{:?}", e.attributes)
    };
    assert_eq!(get_str(&http.values, "host"), Some("api.example.com"));
    assert_eq!(get_str(&http.values, "port"), Some("8443"));
    assert_eq!(get_str(&http.values, "path"), Some("/v1/items"));
    let Some(Value::KvlistValue(list)) = attr(e, "list") else {
        panic!("{:?}", e.attributes)
    };
    assert_eq!(
        vigil_core::attrs::get(&list.values, "code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(get_str(&e.resource, "method"), Some("GET"));
    assert_eq!(
        get_str(&e.attributes, "method"),
        Some("GET"),
        "copy keeps the source"
    );
    assert_eq!(get_str(&e.attributes, "q"), Some(r#"quoted "text""#));
    // An array cannot become the attributes themselves: the entry goes on unparsed.
    let p = build("- type: json_array_parser\n");
    let out = run(&p, &["[1,2]"]);
    assert_eq!(body(&out[0]), "[1,2]");
    assert!(out[0].attributes.is_empty());
}

#[test]
fn trace_and_scope_name_parser_operators() {
    let p = build(
        r#"
- type: json_parser
  parse_to: body
- type: trace_parser
- type: scope_name_parser
  parse_from: body.logger
"#,
    );
    let out = run(
        &p,
        &[
            r#"{"trace_id":"0123456789abcdef0123456789abcdef","span_id":"0123456789abcdef","trace_flags":"01","logger":"com.example.Api"}"#,
        ],
    );
    let e = &out[0];
    assert_eq!(hex::encode(&e.trace_id), "0123456789abcdef0123456789abcdef");
    assert_eq!(hex::encode(&e.span_id), "0123456789abcdef");
    assert_eq!(e.flags, 1);
    assert_eq!(e.scope_name, "com.example.Api");
}

#[test]
fn output_operators_end_the_entry() {
    let p = build(
        r#"
- type: router
  routes:
    - expr: 'body matches "^debug"'
      output: sink
  default: keep
- type: drop_output
  id: sink
- type: noop
  id: keep
"#,
    );
    let out = run(&p, &["debug noise", "real line"]);
    assert_eq!(out.len(), 1);
    assert_eq!(body(&out[0]), "real line");
    let p = build("- type: stdout\n");
    assert!(run(&p, &["printed, not sent"]).is_empty());
}

fn decode_err(yaml: &str) -> String {
    let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    match vigil_core::config::decode_all::<Vec<OperatorConfig>>(&v) {
        Err(e) => e
            .into_iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(ops) => match Pipeline::build(&ops) {
            Err((p, m)) => format!("{p}: {m}"),
            Ok(_) => String::new(),
        },
    }
}

#[test]
fn unknown_keys_unbuilt_types_and_bad_values_are_refused() {
    for (yaml, want) in [
        (
            "- type: csv_parser\n  header: a,b\n  quote: x\n",
            "has invalid keys: quote",
        ),
        (
            "- type: key_value_parser\n  preserve_to: attributes.raw\n",
            "has invalid keys: preserve_to",
        ),
        (
            "- type: file_output\n  path: /tmp/x\n",
            "\"file_output\" is not built",
        ),
        ("- type: sanitize_utf8\n", "\"sanitize_utf8\" is not built"),
        ("- type: csv_parser\n", "0::header: required"),
        (
            "- type: csv_parser\n  header: a,b\n  delimiter: ';;'\n",
            "0::delimiter: invalid delimiter",
        ),
        (
            "- type: csv_parser\n  header: a\n",
            "missing field delimiter",
        ),
        (
            "- type: csv_parser\n  header: a,b\n  lazy_quotes: true\n  ignore_quotes: true\n",
            "only one of",
        ),
        ("- type: syslog_parser\n", "0::protocol: required"),
        (
            "- type: syslog_parser\n  protocol: rfc3164\n  enable_octet_counting: true\n",
            "only compatible with protocol rfc5424",
        ),
        (
            "- type: syslog_parser\n  protocol: rfc5424\n  non_transparent_framing_trailer: CR\n",
            "expected LF or NUL",
        ),
        (
            "- type: key_value_parser\n  pair_delimiter: '='\n",
            "0::pair_delimiter",
        ),
        (
            "- type: json_parser\n  parse_to: body\n  body: body.msg\n",
            "0::parse_to",
        ),
        (
            "- type: assign_keys\n  field: body\n  keys: []\n",
            "0::keys: required",
        ),
        ("- type: stdout\n  output: x\n", "has invalid keys: output"),
        ("- type: uri_parser\n  on_error: ignore\n", "0::on_error"),
    ] {
        let e = decode_err(yaml);
        assert!(e.contains(want), "{yaml}\n=> {e:?}\nwanted {want:?}");
    }
}

/// Every parser takes the keys stanza's ParserConfig gives all of them, and filelog's config
/// accepts each one with them.
#[test]
fn shared_parser_keys_on_every_parser_through_filelog() {
    let shared = r#"
  id: p
  parse_from: body
  parse_to: attributes.parsed
  on_error: drop_quiet
  if: 'body != ""'
  body: attributes.parsed.message
  timestamp:
    parse_from: attributes.parsed.time
    layout: '%Y-%m-%d'
  severity:
    parse_from: attributes.parsed.level
    preset: none
    mapping:
      error: oops
  trace:
    trace_id:
      parse_from: attributes.parsed.tid
  scope_name:
    parse_from: attributes.parsed.logger
"#;
    let own = [
        ("json_parser", ""),
        ("regex_parser", "\n  regex: '^(?P<message>.*)$'"),
        ("key_value_parser", "\n  delimiter: '='"),
        ("csv_parser", "\n  header: message,level"),
        ("syslog_parser", "\n  protocol: rfc5424"),
        ("uri_parser", ""),
        ("json_array_parser", "\n  header: message,level"),
    ];
    let id = vigil_core::ComponentId::parse("filelog").unwrap();
    for (t, extra) in own {
        let yaml = format!("- type: {t}{extra}{shared}");
        for on_error in ["send", "send_quiet", "drop", "drop_quiet"] {
            let yaml = yaml.replace("drop_quiet", on_error);
            let ops: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
            let cfg = serde_json::json!({"include": ["/tmp/none/*.log"], "operators": ops});
            if let Err(e) = crate::filelog::config::load(&id, &cfg) {
                panic!("{t} with on_error {on_error}: {e}");
            }
        }
    }
    for t in [
        "trace_parser",
        "scope_name_parser",
        "time_parser",
        "severity_parser",
    ] {
        let yaml = match t {
            "time_parser" => "- type: time_parser\n  parse_from: body.t\n  layout: '%s'\n  layout_type: strptime\n  if: 'true'\n",
            "severity_parser" => "- type: severity_parser\n  parse_from: body.s\n  on_error: send_quiet\n",
            "trace_parser" => "- type: trace_parser\n  trace_id:\n    parse_from: attributes.t\n  span_id:\n    parse_from: attributes.s\n  trace_flags:\n    parse_from: attributes.f\n  if: 'true'\n",
            _ => "- type: scope_name_parser\n  parse_from: attributes.logger\n  on_error: drop\n",
        };
        let ops: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        let cfg = serde_json::json!({"include": ["/tmp/none/*.log"], "operators": ops});
        if let Err(e) = crate::filelog::config::load(&id, &cfg) {
            panic!("{t}: {e}");
        }
    }
}
