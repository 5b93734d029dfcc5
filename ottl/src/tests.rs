//! Grammar, paths and every function, on real OTLP items through [`crate::pdata`].

use super::*;
use crate::pdata::{visit, Item};
use vigil_core::attrs::{kv_i64, kv_str};
use vigil_core::otlp::common::v1::any_value::Value as Any;
use vigil_core::otlp::common::v1::{AnyValue, InstrumentationScope};
use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use vigil_core::otlp::metrics::v1::{
    metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{
    span::Event, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use vigil_core::Telemetry;

fn log() -> LogRecord {
    LogRecord {
        severity_number: 17,
        severity_text: "ERROR".into(),
        time_unix_nano: 1_700_000_000_000_000_000,
        body: Some(AnyValue {
            value: Some(Any::StringValue("GET /health 200".into())),
        }),
        attributes: vec![
            kv_str("http.route", "/health"),
            kv_i64("http.status", 503),
            kv_str("user.email", "a@b.c"),
        ],
        ..Default::default()
    }
}

fn logs(l: LogRecord) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "web")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                ..Default::default()
            }),
            log_records: vec![l],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn the_log(t: &Telemetry) -> &LogRecord {
    let Telemetry::Logs(rl) = t else { panic!() };
    &rl[0].scope_logs[0].log_records[0]
}

/// Evaluates a condition on the sample log record.
fn on_log(src: &str) -> Result<bool, String> {
    let c = parse_condition(Context::Log, src)?;
    let mut data = logs(log());
    let mut out = None;
    visit(&mut data, Context::Log, &mut |it: &mut Item<'_>| {
        out = Some(c.eval(it));
        true
    });
    out.expect("one log record")
}

/// Runs statements on the sample log record and returns the batch.
fn run(ctx: Context, stmts: &[&str]) -> Result<Telemetry, String> {
    let parsed: Vec<Statement> = stmts
        .iter()
        .map(|s| parse_statement(ctx, s, StatementOptions::default()))
        .collect::<Result<_, _>>()?;
    let mut data = logs(log());
    let mut err = None;
    visit(&mut data, ctx, &mut |it: &mut Item<'_>| {
        for s in &parsed {
            if let Err(e) = s.execute(it) {
                err.get_or_insert(e);
            }
        }
        true
    });
    err.map_or(Ok(data), Err)
}

fn attr(t: &Telemetry, k: &str) -> Value {
    Value::from_any(
        the_log(t)
            .attributes
            .iter()
            .find(|x| x.key == k)
            .and_then(|x| x.value.as_ref()),
    )
}

/// Evaluates one converter expression on the sample log and returns its value (via `cache`).
fn conv(src: &str) -> Result<Value, String> {
    let t = run(Context::Log, &[&format!("set(attributes[\"out\"], {src})")])?;
    Ok(attr(&t, "out"))
}

fn s(x: &str) -> Value {
    Value::Str(x.into())
}

#[test]
fn conditions_grammar() {
    assert_eq!(on_log(r#"attributes["http.route"] == "/health""#), Ok(true));
    assert_eq!(on_log("severity_number >= SEVERITY_NUMBER_ERROR"), Ok(true));
    assert_eq!(on_log("severity_number < SEVERITY_NUMBER_WARN2"), Ok(false));
    assert_eq!(
        on_log(
            r#"IsMatch(body, "^GET /health") and not (resource.attributes["service.name"] != "web")"#
        ),
        Ok(true)
    );
    assert_eq!(on_log(r#"attributes["missing"] == nil or false"#), Ok(true));
    assert_eq!(on_log(r#"attributes["http.status"] > 499.5"#), Ok(true));
    assert_eq!(
        on_log(r#"severity_text == "ERROR" and attributes["http.status"] == "503""#),
        Ok(false)
    );
    assert_eq!(on_log(r#"log.severity_text == "ERROR""#), Ok(true));
    assert_eq!(on_log(r#"scope.name == "lib""#), Ok(true));
    // Math, with the usual precedence and unary minus.
    assert_eq!(
        on_log(r#"attributes["http.status"] + 2 * 3 == 509"#),
        Ok(true)
    );
    assert_eq!(
        on_log(r#"(attributes["http.status"] - 3) / 100 == 5"#),
        Ok(true)
    );
    assert_eq!(on_log("-1 * -2 == 2"), Ok(true));
    assert_eq!(on_log("1.5 * 2 == 3"), Ok(true));
    // Literals: bytes, maps, lists, nil.
    assert_eq!(on_log("0x0102 == 0x0102"), Ok(true));
    assert_eq!(
        on_log(r#"{"a": 1, "b": [1, "x"]} == {"a": 1, "b": [1, "x"]}"#),
        Ok(true)
    );
    assert_eq!(on_log("[1, 2] != [2, 1]"), Ok(true));
    assert_eq!(on_log("nil == nil"), Ok(true));
    // Indexing a converter's result and nested paths.
    assert_eq!(
        on_log(r#"ParseJSON("{\"a\":{\"b\":[5]}}")["a"]["b"][0] == 5"#),
        Ok(true)
    );
    // Time arithmetic.
    assert_eq!(
        on_log("time > Time(\"2000-01-01\", \"%Y-%m-%d\")"),
        Ok(true)
    );
    // Runtime errors are errors, not panics.
    assert!(on_log("1 / 0 == 1")
        .unwrap_err()
        .contains("division by zero"));
    assert!(on_log(r#"body"#).unwrap_err().contains("not a boolean"));
    assert!(on_log(r#"ParseJSON("{\"a\":[1]}")["a"][3] == 1"#)
        .unwrap_err()
        .contains("out of range"));
    assert!(on_log("9223372036854775807 + 1 == 0")
        .unwrap_err()
        .contains("overflow"));
}

#[test]
fn paths_for_every_context() {
    let span = Span {
        name: "GET /x".into(),
        kind: 2,
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        status: Some(Status {
            code: StatusCode::Error as i32,
            ..Default::default()
        }),
        events: vec![Event {
            name: "exception".into(),
            attributes: vec![kv_str("exception.type", "IOError")],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut traces = Telemetry::Traces(vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "web")],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: vec![span],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let check = |data: &mut Telemetry, ctx: Context, src: &str| -> bool {
        let c = parse_condition(ctx, src).unwrap();
        let mut r = Vec::new();
        visit(data, ctx, &mut |it: &mut Item<'_>| {
            r.push(c.eval(it).unwrap());
            true
        });
        r == vec![true]
    };
    assert!(check(
        &mut traces,
        Context::Span,
        "kind == SPAN_KIND_SERVER and status.code == STATUS_CODE_ERROR"
    ));
    assert!(check(
        &mut traces,
        Context::Span,
        r#"span.name != "GET /y" and trace_id == TraceID(0x01010101010101010101010101010101)"#
    ));
    assert!(check(
        &mut traces,
        Context::Span,
        r#"span_id.string == "0202020202020202" and IsRootSpan()"#
    ));
    assert!(check(
        &mut traces,
        Context::SpanEvent,
        r#"name == "exception" and span.name == "GET /x" and attributes["exception.type"] == "IOError""#
    ));
    assert!(check(
        &mut traces,
        Context::Resource,
        r#"attributes["service.name"] == "web""#
    ));
    assert!(check(&mut traces, Context::Scope, r#"name == """#));

    let gauge = |name: &str, cpus: &[&str]| Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: cpus
                .iter()
                .map(|c| NumberDataPoint {
                    attributes: vec![kv_str("cpu", *c)],
                    value: Some(
                        vigil_core::otlp::metrics::v1::number_data_point::Value::AsDouble(0.5),
                    ),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    };
    let mut metrics = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![gauge("cpu", &["0"])],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    assert!(check(
        &mut metrics,
        Context::Metric,
        r#"type == METRIC_DATA_TYPE_GAUGE and HasAttrOnDatapoint("cpu", "0") and not HasAttrKeyOnDatapoint("mem")"#
    ));
    assert!(check(
        &mut metrics,
        Context::DataPoint,
        r#"metric.name == "cpu" and value_double == 0.5 and attributes["cpu"] == "0""#
    ));

    let bad = |ctx: Context, src: &str| parse_condition(ctx, src).unwrap_err();
    assert!(bad(Context::Span, "body == nil").contains("unsupported path body in the span context"));
    assert!(bad(Context::Log, "span.name == nil").contains("not reachable from the log context"));
    assert!(bad(Context::Log, "severity_text[\"a\"] == nil").contains("does not take"));
    assert!(bad(Context::Metric, "HasAttrOnDatapoint(\"a\")").contains("takes 2 arguments"));
    assert!(bad(Context::Log, "FOO_BAR == 1").contains("unknown enum"));
    assert!(bad(Context::Log, r#"Levenshtein(body) == 1"#)
        .contains("unsupported converter \"Levenshtein\""));
    assert!(bad(Context::Metric, "name == \"x\" where").contains("where"));
    assert!(
        bad(Context::Log, "IsMatch(body, attributes[\"re\"])").contains("must be a string literal")
    );
    assert!(bad(Context::Log, "IsMatch(body, \"(\")").contains("invalid regex"));
}

#[test]
fn statements_and_editors() {
    let t = run(
        Context::Log,
        &[
            r#"set(attributes["a"], "x") where severity_number >= SEVERITY_NUMBER_ERROR"#,
            r#"set(attributes["b"], "y") where severity_number < SEVERITY_NUMBER_ERROR"#,
            r#"set(body, attributes["http.route"])"#,
            r#"set(severity_text, "FATAL")"#,
            r#"set(attributes["n"]["m"], 1)"#,
            r#"set(attributes["nil"], nil)"#,
            r#"set(cache["k"], "cached")"#,
            r#"set(attributes["from_cache"], cache["k"])"#,
            r#"set(resource.attributes["env"], "prod")"#,
        ],
    )
    .unwrap();
    assert_eq!(attr(&t, "a"), s("x"));
    assert_eq!(attr(&t, "b"), Value::Nil);
    assert_eq!(attr(&t, "nil"), Value::Nil);
    assert_eq!(attr(&t, "from_cache"), s("cached"));
    assert_eq!(Value::from_any(the_log(&t).body.as_ref()), s("/health"));
    assert_eq!(the_log(&t).severity_text, "FATAL");
    assert_eq!(
        index(attr(&t, "n"), &[Key::Str("m".into())]),
        Ok(Value::Int(1))
    );
    let Telemetry::Logs(rl) = &t else { panic!() };
    assert_eq!(
        vigil_core::attrs::get_str(&rl[0].resource.as_ref().unwrap().attributes, "env"),
        Some("prod")
    );

    let keys = |t: &Telemetry| -> Vec<String> {
        the_log(t)
            .attributes
            .iter()
            .map(|x| x.key.clone())
            .collect()
    };
    let t = run(Context::Log, &[r#"delete_key(attributes, "user.email")"#]).unwrap();
    assert_eq!(keys(&t), ["http.route", "http.status"]);
    let t = run(
        Context::Log,
        &[r#"delete_matching_keys(attributes, "^http\\.")"#],
    )
    .unwrap();
    assert_eq!(keys(&t), ["user.email"]);
    let t = run(
        Context::Log,
        &[r#"keep_keys(attributes, ["http.status", "nope"])"#],
    )
    .unwrap();
    assert_eq!(keys(&t), ["http.status"]);
    let t = run(
        Context::Log,
        &[r#"keep_matching_keys(attributes, "route|email")"#],
    )
    .unwrap();
    assert_eq!(keys(&t), ["http.route", "user.email"]);
    let t = run(Context::Log, &[r#"limit(attributes, 2, ["user.email"])"#]).unwrap();
    assert_eq!(keys(&t), ["http.route", "user.email"]);
    let t = run(Context::Log, &[r#"truncate_all(attributes, 3)"#]).unwrap();
    assert_eq!(attr(&t, "http.route"), s("/he"));
    assert_eq!(attr(&t, "http.status"), Value::Int(503));

    let t = run(
        Context::Log,
        &[r#"replace_pattern(body, "GET (/\\w+) (\\d+)", "$1=$2")"#],
    )
    .unwrap();
    assert_eq!(Value::from_any(the_log(&t).body.as_ref()), s("/health=200"));
    let t = run(
        Context::Log,
        &[r#"replace_all_patterns(attributes, "value", "@.*", "@redacted")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "user.email"), s("a@redacted"));
    let t = run(
        Context::Log,
        &[r#"replace_all_patterns(attributes, "key", "^http\\.", "h.")"#],
    )
    .unwrap();
    assert_eq!(keys(&t), ["h.route", "h.status", "user.email"]);
    let t = run(
        Context::Log,
        &[r#"replace_match(attributes["http.route"], "/he*", "/h")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "http.route"), s("/h"));
    let t = run(
        Context::Log,
        &[r#"replace_all_matches(attributes, "*@*", "[email]")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "user.email"), s("[email]"));
    assert_eq!(attr(&t, "http.route"), s("/health"));

    let t = run(
        Context::Log,
        &[r#"merge_maps(attributes, ParseJSON("{\"http.route\":\"/x\",\"new\":true}"), "insert")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "http.route"), s("/health"));
    assert_eq!(attr(&t, "new"), Value::Bool(true));
    let t = run(
        Context::Log,
        &[r#"merge_maps(attributes, {"http.route": "/x", "new": 1}, "update")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "http.route"), s("/x"));
    assert_eq!(attr(&t, "new"), Value::Nil);
    let t = run(
        Context::Log,
        &[r#"merge_maps(attributes, {"http.route": "/x", "new": 1}, "upsert")"#],
    )
    .unwrap();
    assert_eq!(attr(&t, "new"), Value::Int(1));

    let t = run(
        Context::Log,
        &[
            r#"set(attributes["doc"], ParseJSON("{\"a\":{\"b\":1,\"c\":[2,3]}}"))"#,
            r#"flatten(attributes["doc"])"#,
            r#"set(attributes["doc2"], {"a": {"b": {"c": 1}}})"#,
            r#"flatten(attributes["doc2"], "p", 1)"#,
        ],
    )
    .unwrap();
    let doc = attr(&t, "doc");
    assert_eq!(
        index(doc.clone(), &[Key::Str("a.b".into())]),
        Ok(Value::Double(1.0))
    );
    assert_eq!(
        index(doc, &[Key::Str("a.c.1".into())]),
        Ok(Value::Double(3.0))
    );
    let doc2 = attr(&t, "doc2");
    assert!(matches!(
        index(doc2, &[Key::Str("p.a.b".into())]),
        Ok(Value::Map(_))
    ));

    let t = run(
        Context::Log,
        &[
            r#"append(attributes["tags"], "a")"#,
            r#"append(attributes["tags"], "b", ["c", "d"])"#,
            r#"append(attributes["http.route"], "/x")"#,
        ],
    )
    .unwrap();
    assert_eq!(conv_list(attr(&t, "tags")), ["a", "b", "c", "d"]);
    assert_eq!(conv_list(attr(&t, "http.route")), ["/health", "/x"]);

    // Statements that fail at run time return errors; parse errors name the function.
    assert!(run(Context::Log, &[r#"delete_key(body, "x")"#])
        .unwrap_err()
        .contains("not a map"));
    assert!(run(Context::Log, &[r#"set(severity_number, "high")"#])
        .unwrap_err()
        .contains("takes an int"));
    let e =
        parse_statement(Context::Log, r#"scrub(body)"#, StatementOptions::default()).unwrap_err();
    assert!(e.contains("unsupported editor \"scrub\""), "{e}");
    let e = parse_statement(
        Context::Log,
        r#"Concat(["a"], "")"#,
        StatementOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("is a converter"), "{e}");
    let e =
        parse_statement(Context::Log, r#"set("x", 1)"#, StatementOptions::default()).unwrap_err();
    assert!(e.contains("must be a path"), "{e}");
    let e = parse_statement(Context::Log, r#"route()"#, StatementOptions::default()).unwrap_err();
    assert!(e.contains("unsupported editor"), "{e}");
    let e = parse_statement(
        Context::Log,
        r#"merge_maps(attributes, {}, "replace")"#,
        StatementOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("insert, update or upsert"), "{e}");
    let e = parse_statement(
        Context::Log,
        r#"set(attributes["a"], x = 1)"#,
        StatementOptions::default(),
    )
    .unwrap_err();
    assert!(e.contains("named arguments"), "{e}");
}

fn conv_list(v: Value) -> Vec<String> {
    match v {
        Value::List(l) => l
            .iter()
            .map(|a| Value::from_any(Some(a)).to_text())
            .collect(),
        o => panic!("not a list: {o:?}"),
    }
}

#[test]
fn converters() {
    assert_eq!(
        conv(r#"Concat([body, attributes["http.status"], 1.5], "|")"#),
        Ok(s("GET /health 200|503|1.5"))
    );
    assert_eq!(
        conv_list(conv(r#"Split(body, " ")"#).unwrap()),
        ["GET", "/health", "200"]
    );
    assert_eq!(
        conv(r#"IsMatch(attributes["http.status"], "^5\\d\\d$")"#),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        conv(r#"IsMatch(attributes["nope"], ".*")"#),
        Ok(Value::Bool(false))
    );
    assert_eq!(conv("IsString(body)"), Ok(Value::Bool(true)));
    assert_eq!(conv("IsMap(attributes)"), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"IsList(Split(body, " "))"#), Ok(Value::Bool(true)));
    assert_eq!(
        conv(r#"IsInt(attributes["http.status"])"#),
        Ok(Value::Bool(true))
    );
    assert_eq!(conv("IsDouble(1.5)"), Ok(Value::Bool(true)));
    assert_eq!(conv("IsBool(true)"), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"Int("42")"#), Ok(Value::Int(42)));
    assert_eq!(conv("Int(2.9)"), Ok(Value::Int(2)));
    assert_eq!(conv(r#"Int("x")"#), Ok(Value::Nil));
    assert_eq!(conv(r#"Double("1.25")"#), Ok(Value::Double(1.25)));
    assert_eq!(conv(r#"String(attributes["http.status"])"#), Ok(s("503")));
    assert_eq!(conv(r#"String({"a": 1})"#), Ok(s(r#"{"a":1}"#)));
    assert_eq!(conv("Len(body)"), Ok(Value::Int(15)));
    assert_eq!(conv("Len(attributes)"), Ok(Value::Int(3)));
    assert_eq!(conv("ToLowerCase(severity_text)"), Ok(s("error")));
    assert_eq!(conv(r#"ToUpperCase("abc")"#), Ok(s("ABC")));
    assert_eq!(conv("Substring(body, 4, 7)"), Ok(s("/health")));
    assert!(conv("Substring(body, 10, 70)")
        .unwrap_err()
        .contains("outside"));
    assert_eq!(
        conv("SpanID(0x0102030405060708)"),
        Ok(Value::Bytes(vec![1, 2, 3, 4, 5, 6, 7, 8]))
    );
    assert!(parse_condition(Context::Log, "SpanID(0x01) == nil")
        .unwrap_err()
        .contains("8-byte"));
    assert_eq!(
        conv("TraceID(0x0102030405060708090a0b0c0d0e0f10)"),
        Ok(Value::Bytes((1..=16).collect()))
    );
    assert_eq!(
        conv(r#"SHA256("abc")"#),
        Ok(s(
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        ))
    );
    assert_eq!(
        conv(r#"MD5("abc")"#),
        Ok(s("900150983cd24fb0d6963f7d28e17f72"))
    );
    assert_eq!(conv("Hex(0x0aff)"), Ok(s("0aff")));
    assert_eq!(
        conv(r#"UnixNano(Time("2023-11-14T22:13:20Z", "%Y-%m-%dT%H:%M:%SZ"))"#),
        Ok(Value::Int(1_700_000_000_000_000_000))
    );
    assert_eq!(
        conv(r#"UnixMilli(Time("2023-11-14 22:13:20.123 +0100", "%Y-%m-%d %H:%M:%S%.f %z"))"#),
        Ok(Value::Int(1_699_996_400_123))
    );
    assert!(conv(r#"Time("nope", "%Y")"#)
        .unwrap_err()
        .contains("does not match"));
    assert_eq!(conv("UnixSeconds(time)"), Ok(Value::Int(1_700_000_000)));
    assert_eq!(conv("UnixMicro(Unix(1, 5000))"), Ok(Value::Int(1_000_005)));
    assert_eq!(
        conv("UnixNano(Now()) > 1700000000000000000"),
        Ok(Value::Bool(true))
    );
    let m = conv(r#"ExtractPatterns(body, "^(?P<method>\\w+) (?P<path>\\S+)")"#).unwrap();
    assert_eq!(index(m.clone(), &[Key::Str("method".into())]), Ok(s("GET")));
    assert_eq!(index(m, &[Key::Str("path".into())]), Ok(s("/health")));
    assert!(
        parse_condition(Context::Log, r#"ExtractPatterns(body, "\\w+") == nil"#)
            .unwrap_err()
            .contains("named group")
    );
    assert_eq!(
        conv(r#"Format("%s took %d ms (%v)", [body, 12, true])"#),
        Ok(s("GET /health 200 took 12 ms (true)"))
    );
    assert!(conv(r#"Format("%d", ["x"])"#).unwrap_err().contains("%d"));
    let j = conv(r#"ParseJSON("{\"a\": [1, \"b\"], \"c\": null}")"#).unwrap();
    assert_eq!(j.to_json(), serde_json::json!({"a": [1.0, "b"], "c": null}));
    assert!(conv(r#"ParseJSON("{")"#).unwrap_err().contains("ParseJSON"));
}

#[test]
fn expr_dialect_shares_the_engine() {
    let c = parse_expr(r#"attributes["a"] == 'x' && (body matches "^G" || !(body contains "z"))"#)
        .unwrap();
    assert!(matches!(c.expr, Expr::And(..)));
    // OTTL-only syntax is refused in the expr dialect, and expr-only syntax in OTTL.
    assert!(parse_expr("IsMatch(body, \"x\")")
        .unwrap_err()
        .contains("unsupported function"));
    assert!(parse_expr("span.name == 'x'")
        .unwrap_err()
        .contains("a field starts with"));
    assert!(parse_condition(Context::Log, "body matches \"x\"").is_err());
    assert!(parse_condition(Context::Log, "'x' == body").is_err());
}

#[test]
fn flat_form_context_inference() {
    let all = [
        Context::Resource,
        Context::Scope,
        Context::Span,
        Context::SpanEvent,
    ];
    assert_eq!(
        infer_context(r#"set(span.name, resource.attributes["x"])"#, &all),
        Ok(Context::Span)
    );
    assert_eq!(
        infer_context(r#"set(resource.attributes["x"], "y")"#, &all),
        Ok(Context::Resource)
    );
    assert_eq!(
        infer_context(r#"set(spanevent.name, "y") where span.name == "x""#, &all),
        Ok(Context::SpanEvent)
    );
    assert!(infer_context(r#"set(log.body, "y")"#, &all)
        .unwrap_err()
        .contains("cannot be used here"));
    assert!(infer_context(r#"set(name, "y")"#, &all)
        .unwrap_err()
        .contains("cannot infer"));
}

#[test]
fn cache_is_bounded() {
    let st = parse_statement(
        Context::Log,
        r#"set(cache[String(attributes["i"])], 1)"#,
        StatementOptions::default(),
    );
    // Keys must be literals; the bound is reached with many literal keys instead.
    assert!(st.is_err());
    let stmts: Vec<Statement> = (0..=crate::pdata::MAX_CACHE_KEYS)
        .map(|i| {
            parse_statement(
                Context::Log,
                &format!("set(cache[\"k{i}\"], 1)"),
                StatementOptions::default(),
            )
            .unwrap()
        })
        .collect();
    let mut data = logs(log());
    let mut errs = Vec::new();
    visit(&mut data, Context::Log, &mut |it: &mut Item<'_>| {
        for s in &stmts {
            if let Err(e) = s.execute(it) {
                errs.push(e);
            }
        }
        true
    });
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("cache is full"), "{}", errs[0]);
}

#[test]
fn every_function_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ottl.md"))
        .expect("docs/ottl.md");
    for (name, _) in function_names() {
        assert!(
            doc.contains(&format!("`{name}`")) || doc.contains(&format!("`{name}(")),
            "docs/ottl.md does not list {name}"
        );
    }
}

/// The converters the published configs use, with otelcol's docs examples.
#[test]
fn format_time_affixes_and_contains_value() {
    assert_eq!(
        conv(r#"FormatTime(Unix(1700000000), "%Y-%m-%dT%H:%M:%SZ")"#),
        Ok(s("2023-11-14T22:13:20Z"))
    );
    assert_eq!(
        conv(r#"FormatTime(Time("02/04/2023", "%m/%d/%Y"), "%A %h %e %Y")"#),
        Ok(s("Saturday Feb  4 2023"))
    );
    assert_eq!(
        conv(r#"FormatTime(Unix(1700000000, 123456789), "%H:%M:%S.%L")"#),
        Ok(s("22:13:20.123"))
    );
    // A directive chrono does not know is refused at load, not a panic at run time.
    assert!(parse_statement(
        Context::Log,
        r#"set(attributes["x"], FormatTime(Now(), "%Q"))"#,
        StatementOptions::default()
    )
    .unwrap_err()
    .contains("invalid time format"));
    assert!(conv(r#"FormatTime("x", "%Y")"#)
        .unwrap_err()
        .contains("time"));
    assert_eq!(conv(r#"HasPrefix(body, "GET")"#), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"HasSuffix(body, "200")"#), Ok(Value::Bool(true)));
    assert_eq!(
        conv(r#"HasSuffix(attributes["http.route"], ":unknowncounter")"#),
        Ok(Value::Bool(false))
    );
    assert_eq!(
        conv(r#"HasPrefix(attributes["missing"], "x")"#),
        Ok(Value::Bool(false))
    );
    assert!(conv(r#"HasPrefix(attributes["http.status"], "5")"#).is_err());
    assert_eq!(
        conv(r#"ContainsValue(["staging", "prod"], "staging")"#),
        Ok(Value::Bool(true))
    );
    assert_eq!(conv(r#"ContainsValue([1, 2], 3)"#), Ok(Value::Bool(false)));
}

/// A scope with a histogram (two points), a summary and a gauge, for the metric editors.
fn metric_batch() -> Telemetry {
    use vigil_core::otlp::metrics::v1::{Histogram, HistogramDataPoint, Summary, SummaryDataPoint};
    let hp = |route: &str, count: u64, sum: Option<f64>| HistogramDataPoint {
        attributes: vec![kv_str("http.route", route)],
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        count,
        sum,
        ..Default::default()
    };
    Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "http.server.duration".into(),
                    description: "request time".into(),
                    unit: "ms".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: vec![hp("/a", 3, Some(12.5)), hp("/b", 2, None)],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "rpc.latency".into(),
                    unit: "s".into(),
                    data: Some(Data::Summary(Summary {
                        data_points: vec![SummaryDataPoint {
                            count: 4,
                            sum: 2.0,
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "queue.size".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            value: Some(
                                vigil_core::otlp::metrics::v1::number_data_point::Value::AsInt(7),
                            ),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn run_metric(stmts: &[&str]) -> Result<Vec<Metric>, String> {
    run_metric_on(metric_batch(), stmts)
}

/// Runs metric-context statements one after another over every metric of `data`, and returns the
/// metrics, or the first error.
fn run_metric_on(mut data: Telemetry, stmts: &[&str]) -> Result<Vec<Metric>, String> {
    let parsed: Vec<Statement> = stmts
        .iter()
        .map(|s| parse_statement(Context::Metric, s, StatementOptions::default()))
        .collect::<Result<_, _>>()?;
    for s in &parsed {
        let mut err = None;
        visit(&mut data, Context::Metric, &mut |it: &mut Item<'_>| {
            if let Err(e) = s.execute(it) {
                err.get_or_insert(e);
            }
            true
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    let Telemetry::Metrics(rms) = data else {
        unreachable!("metrics in, metrics out")
    };
    Ok(rms
        .into_iter()
        .flat_map(|rm| rm.scope_metrics)
        .flat_map(|sm| sm.metrics)
        .collect())
}

/// otelcol's docs examples for the metric-context editors of the transform processor.
#[test]
fn metric_editors() {
    use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
    // extract_count_metric(true) where name == "http.server.duration"
    let m = run_metric(&[r#"extract_count_metric(true) where name == "http.server.duration""#])
        .unwrap();
    let count = m
        .iter()
        .find(|m| m.name == "http.server.duration_count")
        .unwrap();
    assert_eq!(count.unit, "1");
    assert_eq!(count.description, "request time");
    let Some(Data::Sum(s)) = &count.data else {
        panic!("count is a sum: {count:?}")
    };
    assert!(s.is_monotonic);
    assert_eq!(s.aggregation_temporality, 2);
    let values: Vec<_> = s.data_points.iter().map(|p| p.value).collect();
    assert_eq!(values, vec![Some(N::AsInt(3)), Some(N::AsInt(2))]);
    assert_eq!(
        s.data_points[0].attributes,
        vec![kv_str("http.route", "/a")]
    );
    // extract_sum_metric with a suffix; the point without a sum adds nothing.
    let m = run_metric(&[r#"extract_sum_metric(false, "_sum") where type == METRIC_DATA_TYPE_HISTOGRAM or type == METRIC_DATA_TYPE_SUMMARY"#]).unwrap();
    let sum = m
        .iter()
        .find(|m| m.name == "http.server.duration_sum")
        .unwrap();
    assert_eq!(sum.unit, "ms");
    let Some(Data::Sum(s)) = &sum.data else {
        panic!("sum is a sum")
    };
    assert_eq!(s.data_points.len(), 1);
    assert_eq!(s.data_points[0].value, Some(N::AsDouble(12.5)));
    assert!(m.iter().any(|m| m.name == "rpc.latency_sum"));
    // On a gauge it is an error, as in otelcol (error_mode decides what that does).
    assert!(
        run_metric(&[r#"extract_count_metric(false) where name == "queue.size""#])
            .unwrap_err()
            .contains("not a histogram")
    );
    // copy_metric(name = "…") positionally; the copy goes after the scope's metrics and a later
    // statement sees it.
    let m = run_metric(&[
        r#"copy_metric(Concat([name, "unknowncounter"], ":")) where name == "queue.size" and not HasSuffix(name, ":unknowncounter")"#,
        r#"convert_gauge_to_sum("cumulative", true) where name == "queue.size:unknowncounter""#,
    ])
    .unwrap();
    let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "http.server.duration",
            "rpc.latency",
            "queue.size",
            "queue.size:unknowncounter"
        ]
    );
    assert!(matches!(m[2].data, Some(Data::Gauge(_))));
    let Some(Data::Sum(s)) = &m[3].data else {
        panic!("converted: {:?}", m[3])
    };
    assert!(s.is_monotonic && s.aggregation_temporality == 2);
    // A metric's metadata map, as the Prometheus receiver fills it (GKE's unknown-counter config).
    let m = run_metric(&[
        r#"set(metric.metadata["prometheus.type"], "unknown") where name == "queue.size""#,
        r#"copy_metric(Concat([metric.name, "unknowncounter"], ":")) where metric.metadata["prometheus.type"] == "unknown" and not HasSuffix(metric.name, ":unknowncounter")"#,
    ])
    .unwrap();
    assert_eq!(m.len(), 4);
    assert_eq!(m[3].name, "queue.size:unknowncounter");
    assert_eq!(m[3].metadata, vec![kv_str("prometheus.type", "unknown")]);
    // convert_sum_to_gauge back.
    let m = run_metric(&[
        r#"convert_gauge_to_sum("delta", false) where name == "queue.size""#,
        r#"convert_sum_to_gauge() where name == "queue.size""#,
    ])
    .unwrap();
    assert!(matches!(m[2].data, Some(Data::Gauge(_))));
    // Arguments are checked at load.
    let bad = parse_statement(
        Context::Metric,
        r#"convert_gauge_to_sum("weekly", true)"#,
        StatementOptions::default(),
    )
    .unwrap_err();
    assert!(bad.contains("cumulative"), "{bad}");
    // Outside the metric context they fail, naming why.
    assert!(run(Context::Log, &["copy_metric()"])
        .unwrap_err()
        .contains("metric context"));
}

/// otelcol's docs example `aggregate_on_attributes("sum", ["attr1"])` on a per-CPU, per-state gauge.
#[test]
fn aggregate_on_attributes_merges_points() {
    use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
    let pt = |cpu: &str, state: &str, v: f64| NumberDataPoint {
        attributes: vec![kv_str("cpu", cpu), kv_str("state", state)],
        time_unix_nano: 5,
        value: Some(N::AsDouble(v)),
        ..Default::default()
    };
    let mut m = Metric {
        name: "system.cpu.utilization".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![
                pt("0", "user", 1.0),
                pt("1", "user", 2.0),
                pt("0", "system", 4.0),
            ],
        })),
        ..Default::default()
    };
    type Points = Vec<(Vec<KeyValue>, Option<N>)>;
    let run_on = |m: &Metric, src: &str| -> Result<Points, String> {
        let st = parse_statement(Context::Metric, src, StatementOptions::default())?;
        let mut data = Telemetry::Metrics(vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![m.clone()],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let mut err = None;
        visit(&mut data, Context::Metric, &mut |it: &mut Item<'_>| {
            if let Err(e) = st.execute(it) {
                err = Some(e);
            }
            true
        });
        if let Some(e) = err {
            return Err(e);
        }
        let Telemetry::Metrics(rms) = data else {
            unreachable!("metrics in, metrics out")
        };
        let Some(Data::Gauge(g)) = rms[0].scope_metrics[0].metrics[0].data.clone() else {
            return Err("not a gauge".into());
        };
        Ok(g.data_points
            .into_iter()
            .map(|p| (p.attributes, p.value))
            .collect())
    };
    let by_state = run_on(
        &m,
        r#"aggregate_on_attributes("sum", ["state"]) where metric.name == "system.cpu.utilization""#,
    )
    .unwrap();
    assert_eq!(
        by_state,
        vec![
            (vec![kv_str("state", "user")], Some(N::AsDouble(3.0))),
            (vec![kv_str("state", "system")], Some(N::AsDouble(4.0))),
        ]
    );
    // No list keeps every attribute (aggregateutil skips its filter for a nil list), so only
    // points with the same attributes merge; an empty list merges them all.
    assert_eq!(
        run_on(&m, r#"aggregate_on_attributes("max")"#)
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        run_on(&m, r#"aggregate_on_attributes("max", [])"#).unwrap(),
        vec![(vec![], Some(N::AsDouble(4.0)))]
    );
    assert_eq!(
        run_on(&m, r#"aggregate_on_attributes("count", [])"#).unwrap(),
        vec![(vec![], Some(N::AsInt(3)))]
    );
    assert_eq!(
        run_on(&m, r#"aggregate_on_attributes("median", ["cpu"])"#).unwrap(),
        vec![
            (vec![kv_str("cpu", "0")], Some(N::AsDouble(2.5))),
            (vec![kv_str("cpu", "1")], Some(N::AsDouble(2.0))),
        ]
    );
    // Points at different times stay apart.
    if let Some(Data::Gauge(g)) = &mut m.data {
        g.data_points[1].time_unix_nano = 6;
    }
    assert_eq!(
        run_on(&m, r#"aggregate_on_attributes("sum", ["state"])"#)
            .unwrap()
            .len(),
        3
    );
    assert!(parse_statement(
        Context::Metric,
        r#"aggregate_on_attributes("avg")"#,
        StatementOptions::default()
    )
    .unwrap_err()
    .contains("expected sum, max"));
}

/// OTTL's named arguments, as otelcol's docs write them.
#[test]
fn named_arguments() {
    let m = run_metric(&[
        r#"copy_metric(name = "queue.size.copy") where name == "queue.size""#,
        r#"extract_count_metric(true, suffix = "_count") where name == "rpc.latency""#,
    ])
    .unwrap();
    let names: Vec<_> = m.iter().map(|m| m.name.as_str()).collect();
    assert!(names.contains(&"queue.size.copy"), "{names:?}");
    assert!(names.contains(&"rpc.latency_count"), "{names:?}");
    assert_eq!(
        conv(r#"UnixSeconds(Unix(seconds = 1700000000))"#),
        Ok(Value::Int(1700000000))
    );
    let err =
        |src: &str| parse_statement(Context::Metric, src, StatementOptions::default()).unwrap_err();
    assert!(err(r#"copy_metric(colour = "x")"#).contains("has no parameter \"colour\""));
    // A required parameter cannot be skipped; an optional one may be.
    assert!(err(r#"extract_count_metric(suffix = "_c")"#).contains("left out"));
    assert!(parse_statement(
        Context::Metric,
        r#"copy_metric(unit = "By")"#,
        StatementOptions::default()
    )
    .is_ok());
    assert!(parse_statement(
        Context::Log,
        r#"flatten(body, depth = 2)"#,
        StatementOptions::default()
    )
    .is_ok());
    assert!(parse_statement(
        Context::Log,
        r#"append(attributes["tags"], values = ["staging", "staging:east"])"#,
        StatementOptions::default()
    )
    .is_ok());
    assert!(err(r#"set(target = name, value = "x")"#).contains("named arguments are not supported"));
    // An unknown function is named as such, whatever its arguments.
    assert!(err(r#"no_such_editor(32, method = "limit_buckets")"#)
        .contains("unsupported editor \"no_such_editor\""));
}

#[test]
fn set_semconv_span_name_follows_the_conventions() {
    use vigil_core::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let span = |name: &str, kind: i32, attrs: &[(&str, &str)]| Span {
        name: name.into(),
        kind,
        attributes: attrs.iter().map(|(k, v)| kv_str(k, *v)).collect(),
        ..Default::default()
    };
    let mut data = Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![
                span(
                    "GET /users/123",
                    2,
                    &[
                        ("http.request.method", "GET"),
                        ("http.route", "/users/{id}"),
                    ],
                ),
                span("x", 3, &[("http.request.method", "PURGE")]),
                span(
                    "SELECT * FROM t WHERE id=1",
                    3,
                    &[
                        ("db.system.name", "postgresql"),
                        ("db.operation.name", "SELECT"),
                        ("db.collection.name", "orders"),
                    ],
                ),
                span(
                    "q",
                    3,
                    &[
                        ("db.system.name", "redis"),
                        ("db.query.summary", "GET cart"),
                    ],
                ),
                span(
                    "call",
                    3,
                    &[
                        ("rpc.system", "grpc"),
                        ("rpc.service", "shop.Cart"),
                        ("rpc.method", "Add"),
                    ],
                ),
                span(
                    "send",
                    4,
                    &[
                        ("messaging.system", "kafka"),
                        ("messaging.operation.name", "send"),
                        ("messaging.destination.name", "orders"),
                    ],
                ),
                span("mine", 1, &[("app", "x")]),
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    let st = parse_statement(
        Context::Span,
        r#"set_semconv_span_name("1.37.0", "unsanitized_span_name")"#,
        StatementOptions::default(),
    )
    .unwrap();
    visit(&mut data, Context::Span, &mut |it: &mut Item<'_>| {
        st.execute(it).unwrap();
        true
    });
    let Telemetry::Traces(rs) = &data else {
        panic!()
    };
    let spans = &rs[0].scope_spans[0].spans;
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "GET /users/{id}",
            "HTTP",
            "SELECT orders",
            "GET cart",
            "shop.Cart/Add",
            "send orders",
            "mine"
        ]
    );
    let kept = |s: &Span| {
        s.attributes
            .iter()
            .find(|a| a.key == "unsanitized_span_name")
            .map(|a| Value::from_any(a.value.as_ref()))
    };
    assert_eq!(kept(&spans[0]), Some(s("GET /users/123")));
    assert_eq!(kept(&spans[6]), None, "an unchanged name is not copied");
    let bad = parse_statement(
        Context::Span,
        "set_semconv_span_name(name)",
        StatementOptions::default(),
    )
    .unwrap_err();
    assert!(
        bad.contains("semconv_version must be a string literal"),
        "{bad}"
    );
}

fn map_of(v: Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .map(|x| (x.key, Value::from_any(x.value.as_ref())))
            .collect(),
        o => panic!("not a map: {o:?}"),
    }
}

fn get(m: &[(String, Value)], k: &str) -> Value {
    m.iter()
        .find(|x| x.0 == k)
        .map_or(Value::Nil, |x| x.1.clone())
}

/// Digests checked against reference implementations (Python's hashlib, mmh3 and xxhash, and Go's
/// hash/fnv) for "hello world", written as otelcol writes each.
#[test]
fn hash_converters_match_otelcol() {
    assert_eq!(
        conv(r#"SHA1("hello world")"#),
        Ok(s("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"))
    );
    assert!(matches!(conv(r#"SHA512("hello world")"#), Ok(Value::Str(h))
        if h.starts_with("309ecc489c12d6eb4cc40f50c902f2b4") && h.len() == 128));
    assert_eq!(
        conv(r#"FNV("hello world")"#),
        Ok(Value::Int(8618312879776256743))
    );
    assert_eq!(conv(r#"FNV("")"#), Ok(s("")));
    assert_eq!(conv(r#"Murmur3Hash("hello world")"#), Ok(s("0f8f925e")));
    assert_eq!(
        conv(r#"Murmur3Hash128("hello world")"#),
        Ok(s("0e617feb46603f53b163eb607d4697ab"))
    );
    assert_eq!(conv(r#"XXH3("hello world")"#), Ok(s("d447b1ea40e6988b")));
    assert_eq!(
        conv(r#"XXH128("hello world")"#),
        Ok(s("df8d09e93f874900a99b8775cc15b6c7"))
    );
    // A hash of a non-string is an error, as otelcol's StringGetter makes it.
    assert!(conv(r#"SHA1(attributes["http.status"])"#).is_err());
    // The Community ID specification's own TCP example, and the same flow seen the other way.
    assert_eq!(
        conv(r#"CommunityID("128.232.110.120", 34855, "66.35.250.204", 80)"#),
        Ok(s("1:LQU9qZlK+B5F3KDmev6m5PMibrg="))
    );
    assert_eq!(
        conv(r#"CommunityID("66.35.250.204", 80, "128.232.110.120", 34855, "TCP", 0)"#),
        Ok(s("1:LQU9qZlK+B5F3KDmev6m5PMibrg="))
    );
    assert!(conv(r#"CommunityID("1.2.3.4", 0, "5.6.7.8", 80)"#)
        .unwrap_err()
        .contains("port"));
    assert!(parse_statement(
        Context::Log,
        r#"set(attributes["x"], CommunityID("a", 1, "b", 2, "GRE"))"#,
        StatementOptions::default()
    )
    .unwrap_err()
    .contains("protocol"));
    let (Ok(Value::Str(a)), Ok(Value::Str(b))) = (conv("UUID()"), conv("UUIDv7()")) else {
        panic!("UUIDs are strings");
    };
    assert_eq!((a.len(), &a[14..15]), (36, "4"));
    assert_eq!((b.len(), &b[14..15]), (36, "7"));
}

/// Durations and calendar fields, with values Go's time package gives for the same input.
#[test]
fn duration_and_time_converters() {
    assert_eq!(
        conv(r#"Nanoseconds(Duration("1h30m"))"#),
        Ok(Value::Int(5_400_000_000_000))
    );
    assert_eq!(
        conv(r#"Nanoseconds(Duration("2h45m30.5s"))"#),
        Ok(Value::Int(9_930_500_000_000))
    );
    assert_eq!(
        conv(r#"Nanoseconds(Duration("-1.5h"))"#),
        Ok(Value::Int(-5_400_000_000_000))
    );
    assert_eq!(conv(r#"Hours(Duration("90m"))"#), Ok(Value::Double(1.5)));
    assert_eq!(conv(r#"Minutes(Duration("90m"))"#), Ok(Value::Double(90.0)));
    assert_eq!(
        conv(r#"Seconds(Duration("333ms"))"#),
        Ok(Value::Double(0.333))
    );
    assert_eq!(
        conv(r#"Milliseconds(Duration("90m"))"#),
        Ok(Value::Int(5_400_000))
    );
    assert_eq!(conv(r#"Microseconds(Duration("1µs"))"#), Ok(Value::Int(1)));
    // A literal that is not a duration is refused at load.
    assert!(parse_statement(
        Context::Log,
        r#"set(attributes["x"], Hours(Duration("10h 20m")))"#,
        StatementOptions::default()
    )
    .unwrap_err()
    .contains("duration"));
    // 2023-11-14T22:15:23.000000456Z, a Tuesday.
    let at = "Unix(1700000123, 456)";
    for (f, want) in [
        ("Year", 2023),
        ("Month", 11),
        ("Day", 14),
        ("Weekday", 2),
        ("Hour", 22),
        ("Minute", 15),
        ("Second", 23),
        ("Nanosecond", 456),
    ] {
        assert_eq!(conv(&format!("{f}({at})")), Ok(Value::Int(want)), "{f}");
    }
    assert_eq!(
        conv(&format!(r#"UnixNano(TruncateTime({at}, Duration("1m")))"#)),
        Ok(Value::Int(1_700_000_100_000_000_000))
    );
    // Seven hours does not divide a day: Go counts from year 1, not from 1970.
    assert_eq!(
        conv(&format!(r#"UnixNano(TruncateTime({at}, Duration("7h")))"#)),
        Ok(Value::Int(1_699_984_800_000_000_000))
    );
    // Time minus time is a duration too.
    assert_eq!(
        conv(r#"Seconds(Unix(100) - Unix(40))"#),
        Ok(Value::Double(60.0))
    );
    assert!(conv(r#"Year("2023")"#).is_err());
}

#[test]
fn text_converters() {
    let m = map_of(conv(r#"ParseKeyValue("k1=v1 k2=v2 k3=v3")"#).unwrap());
    assert_eq!(m.len(), 3);
    assert_eq!(get(&m, "k2"), s("v2"));
    let m = map_of(conv(r#"ParseKeyValue("k1!v1_k2!v2_k3!v3", "!", "_")"#).unwrap());
    assert_eq!(get(&m, "k3"), s("v3"));
    // Quotes keep a delimiter inside a value and are dropped.
    let m = map_of(conv(r#"ParseKeyValue("a=\"x y\" b=z")"#).unwrap());
    assert_eq!((get(&m, "a"), get(&m, "b")), (s("x y"), s("z")));
    assert!(conv(r#"ParseKeyValue("")"#).is_err());
    assert!(conv(r#"ParseKeyValue("novalue")"#).is_err());
    assert_eq!(
        conv(r#"ToKeyValueString({"k1": "v1", "k2": "v=2", "k3": "\"v=3\""})"#),
        Ok(s(r#"k1=v1 k2="v=2" k3="\"v=3\"""#))
    );
    assert_eq!(
        conv(r#"ToKeyValueString({"b": 2, "a": "x"}, ":", ",", true)"#),
        Ok(s("a:x,b:2"))
    );
    let m = map_of(
        conv(r#"ParseCSV("999-999-9999,Joe Smith,joe.smith@example.com", "phone,name,email")"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "name"), s("Joe Smith"));
    let m = map_of(
        conv(r#"ParseCSV("1|\"a|b\"", "x,y", delimiter="|", headerDelimiter=",")"#).unwrap(),
    );
    assert_eq!(get(&m, "y"), s("a|b"));
    let m = map_of(
        conv(r#"ParseCSV("\"555-555-5556,Joe Smith\",joe.smith@example.com", "phone,name,email", mode="ignoreQuotes")"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "phone"), s("\"555-555-5556"));
    assert!(conv(r#"ParseCSV("a,b", "x")"#)
        .unwrap_err()
        .contains("number of fields"));
    assert_eq!(
        conv(r#"ConvertCase("myMetric", "snake")"#),
        Ok(s("my_metric"))
    );
    assert_eq!(
        conv(r#"ConvertCase("my_metric", "camel")"#),
        Ok(s("MyMetric"))
    );
    assert_eq!(
        conv(r#"ConvertCase("my_metric", "upper")"#),
        Ok(s("MY_METRIC"))
    );
    assert_eq!(
        conv(r#"ToSnakeCase("MyMetricName")"#),
        Ok(s("my_metric_name"))
    );
    assert_eq!(
        conv(r#"ToCamelCase("my_metric_name")"#),
        Ok(s("MyMetricName"))
    );
    assert!(parse_statement(
        Context::Log,
        r#"set(attributes["x"], ConvertCase(body, "kebab"))"#,
        StatementOptions::default()
    )
    .unwrap_err()
    .contains("case"));
    assert_eq!(
        conv(r#"Trim(" this is a test ", " ")"#),
        Ok(s("this is a test"))
    );
    assert_eq!(
        conv(r#"Trim("!!this is a test!!", "!!")"#),
        Ok(s("this is a test"))
    );
    assert_eq!(
        conv(r#"TrimPrefix("ingest_service", "ingest_")"#),
        Ok(s("service"))
    );
    assert_eq!(
        conv(r#"TrimSuffix("ingest_service", "_service")"#),
        Ok(s("ingest"))
    );
    assert_eq!(conv(r#"TrimSuffix("ingest", "_service")"#), Ok(s("ingest")));
    for (src, want) in [
        (r#""0b1111_0000", 0"#, 240),
        (r#""-0xFF", 0"#, -255),
        (r#""-0o123", 0"#, -83),
        (r#""0755", 0"#, 493),
        (r#""AA", 16"#, 170),
        (r#""-20", 8"#, -16),
        (r#""12345", 10"#, 12345),
    ] {
        assert_eq!(
            conv(&format!("ParseInt({src})")),
            Ok(Value::Int(want)),
            "{src}"
        );
    }
    assert!(conv(r#"ParseInt("1_000", 10)"#).is_err());
    assert!(conv(r#"ParseInt("12", 37)"#).is_err());
    assert_eq!(conv(r#"Bool("True")"#), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"Bool("0")"#), Ok(Value::Bool(false)));
    assert_eq!(conv(r#"Bool(2.5)"#), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"Bool("yes")"#), Ok(Value::Nil));
    assert_eq!(conv(r#"Log(1)"#), Ok(Value::Double(0.0)));
    assert!(
        matches!(conv(r#"Log("100")"#), Ok(Value::Double(x)) if (x - 100f64.ln()).abs() < 1e-12)
    );
    assert!(conv(r#"Log(0)"#).is_err());
    assert_eq!(conv(r#"IsValidLuhn("17893729974")"#), Ok(Value::Bool(true)));
    assert_eq!(conv(r#"IsValidLuhn(17893729975)"#), Ok(Value::Bool(false)));
    assert!(conv(r#"IsValidLuhn("1234-5678")"#).is_err());
    assert_eq!(
        conv(r#"IsInCIDR("192.168.3.4", ["10.0.0.0/8", "192.168.0.0/16"])"#),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        conv(r#"IsInCIDR("172.16.0.1", ["10.0.0.0/8"])"#),
        Ok(Value::Bool(false))
    );
    assert_eq!(
        conv(r#"IsInCIDR("2001:db8::1", ["2001:db8::/32"])"#),
        Ok(Value::Bool(true))
    );
    assert_eq!(
        conv(r#"Base64Decode("aGVsbG8gd29ybGQ=")"#),
        Ok(s("hello world"))
    );
    assert_eq!(
        conv(r#"Decode("aGVsbG8gd29ybGQ=", "base64")"#),
        Ok(s("hello world"))
    );
    assert_eq!(
        conv(r#"Decode("aGVsbG8gd29ybGQ", "base64-raw")"#),
        Ok(s("hello world"))
    );
    assert_eq!(conv(r#"Decode(0xe9, "iso-8859-1")"#), Ok(s("é")));
    assert!(parse_statement(
        Context::Log,
        r#"set(attributes["x"], Decode(body, "no-such-encoding"))"#,
        StatementOptions::default()
    )
    .is_err());
    assert_eq!(
        conv(r#"Base64Encode("test string")"#),
        Ok(s("dGVzdCBzdHJpbmc="))
    );
    assert_eq!(
        conv(r#"Base64Encode("test string", "base64-raw")"#),
        Ok(s("dGVzdCBzdHJpbmc"))
    );
}

#[test]
fn url_converter_keeps_what_was_written() {
    let m = map_of(conv(r#"URL("http://www.example.com")"#).unwrap());
    assert_eq!(m.len(), 4);
    assert_eq!(get(&m, "url.domain"), s("www.example.com"));
    assert_eq!(get(&m, "url.path"), s(""));
    let m = map_of(
        conv(r#"URL("http://myusername:mypassword@www.example.com:80/foo.gif?key1=val1&key2=val2#fragment")"#)
            .unwrap(),
    );
    for (k, v) in [
        ("url.scheme", s("http")),
        ("url.domain", s("www.example.com")),
        ("url.port", Value::Int(80)),
        ("url.path", s("/foo.gif")),
        ("url.extension", s("gif")),
        ("url.query", s("key1=val1&key2=val2")),
        ("url.fragment", s("fragment")),
        ("url.user_info", s("myusername:mypassword")),
        ("url.username", s("myusername")),
        ("url.password", s("mypassword")),
    ] {
        assert_eq!(get(&m, k), v, "{k}");
    }
    assert!(conv(r#"URL("")"#).is_err());
}

#[test]
fn map_and_list_converters() {
    assert_eq!(
        conv_list(conv(r#"Keys({"k1": "v1", "k2": "v2"})"#).unwrap()),
        ["k1", "k2"]
    );
    assert_eq!(
        conv_list(conv(r#"Values({"a": "x", "b": 5})"#).unwrap()),
        ["x", "5"]
    );
    assert!(conv(r#"Keys("x")"#).is_err());
    assert_eq!(conv(r#"Index("hello world", "world")"#), Ok(Value::Int(6)));
    assert_eq!(conv(r#"Index(["a", 95, 1.5], 95)"#), Ok(Value::Int(1)));
    assert_eq!(conv(r#"Index(["a"], "b")"#), Ok(Value::Int(-1)));
    assert_eq!(
        conv_list(conv(r#"Sort([3, 1, 2])"#).unwrap()),
        ["1", "2", "3"]
    );
    assert_eq!(
        conv_list(conv(r#"Sort([2.5, 1, 3], "desc")"#).unwrap()),
        ["3", "2.5", "1"]
    );
    assert_eq!(
        conv_list(conv(r#"Sort(["b", true, 10, "a"])"#).unwrap()),
        ["10", "a", "b", "true"]
    );
    assert!(conv(r#"Sort([{"a": 1}])"#).is_err());
    let things = r#"[{"name": "foo", "value": 2}, {"name": "bar", "value": 5}]"#;
    let m = map_of(conv(&format!(r#"SliceToMap({things}, ["name"], ["value"])"#)).unwrap());
    assert_eq!(
        (get(&m, "foo"), get(&m, "bar")),
        (Value::Int(2), Value::Int(5))
    );
    let m = map_of(conv(&format!("SliceToMap({things})")).unwrap());
    assert!(matches!(get(&m, "1"), Value::Map(_)));
    assert_eq!(
        conv(r#"Coalesce([attributes["nope"], attributes["http.route"], "unknown"])"#),
        Ok(s("/health"))
    );
    assert_eq!(conv(r#"Coalesce([attributes["nope"]])"#), Ok(Value::Nil));
    for (src, want) in [
        (r#""""#, true),
        ("0", true),
        ("{}", true),
        ("[]", true),
        (r#"attributes["nope"]"#, true),
        ("body", false),
        ("[0]", false),
    ] {
        assert_eq!(
            conv(&format!("IsEmpty({src})")),
            Ok(Value::Bool(want)),
            "{src}"
        );
    }
    let mapping = r#"{"info": [{"equals": ["inf"]}, {"range": {"min": 200, "max": 299}}], "error": [{"range": "5xx"}]}"#;
    assert_eq!(
        conv(&format!(r#"ParseSeverity("inf", {mapping})"#)),
        Ok(s("info"))
    );
    assert_eq!(
        conv(&format!("ParseSeverity(204, {mapping})")),
        Ok(s("info"))
    );
    assert_eq!(
        conv(&format!(
            r#"ParseSeverity(attributes["http.status"], {mapping})"#
        )),
        Ok(s("error"))
    );
    assert!(conv(&format!("ParseSeverity(404, {mapping})")).is_err());
    assert_eq!(
        conv(r#"ProfileID("a389023abaa839283293ed323892389d")"#),
        Ok(Value::Bytes(
            hex::decode("a389023abaa839283293ed323892389d").unwrap()
        ))
    );
    assert_eq!(
        conv(r#"SpanID("0102030405060708")"#),
        Ok(Value::Bytes(vec![1, 2, 3, 4, 5, 6, 7, 8]))
    );
}

#[test]
fn delete_index_and_stringify_all() {
    let t = run(
        Context::Log,
        &[
            r#"set(attributes["tags"], ["a", "b", "c", "d", "e"])"#,
            r#"delete_index(attributes["tags"], 0)"#,
            r#"delete_index(attributes["tags"], Len(attributes["tags"]) - 1)"#,
            r#"delete_index(attributes["tags"], 0, 2)"#,
        ],
    )
    .unwrap();
    assert_eq!(conv_list(attr(&t, "tags")), ["d"]);
    assert!(run(
        Context::Log,
        &[
            r#"set(attributes["tags"], ["a"])"#,
            r#"delete_index(attributes["tags"], 3)"#
        ]
    )
    .is_err());
    let t = run(
        Context::Log,
        &[
            r#"set(attributes["m"], {"b": true, "n": 1.5, "l": [1, 2]})"#,
            "stringify_all(attributes)",
        ],
    )
    .unwrap();
    assert_eq!(attr(&t, "http.status"), s("503"));
    assert_eq!(attr(&t, "http.route"), s("/health"));
    assert_eq!(attr(&t, "m"), s(r#"{"b":true,"l":[1,2],"n":1.5}"#));
}

#[test]
fn xml_converters() {
    let doc = r#"<?xml version="1.0"?><Log><User><ID>00001</ID><Name type="first">Joe</Name></User><Text>User fired alert A</Text></Log>"#;
    let m = map_of(conv(&format!("ParseXML({doc:?})")).unwrap());
    assert_eq!(get(&m, "tag"), s("Log"));
    let Value::List(children) = get(&m, "children") else {
        panic!("children is a list")
    };
    let user = map_of(Value::from_any(Some(&children[0])));
    let Value::List(fields) = get(&user, "children") else {
        panic!("User has children")
    };
    let name = map_of(Value::from_any(Some(&fields[1])));
    assert_eq!(get(&name, "content"), s("Joe"));
    assert_eq!(
        map_of(get(&name, "attributes")),
        [("type".to_string(), s("first"))]
    );
    assert!(conv(r#"ParseXML("<a><b></a>")"#).is_err());

    let m = map_of(
        conv(r#"ParseSimplifiedXML("<a><b>1</b><c>2</c><c><![CDATA[3]]></c><d/><e>x<f>y</f></e></a>")"#)
            .unwrap(),
    );
    let a = map_of(get(&m, "a"));
    assert_eq!(get(&a, "b"), s("1"));
    assert_eq!(conv_list(get(&a, "c")), ["2", "3"]);
    assert_eq!(get(&a, "d"), Value::Nil);
    assert_eq!(map_of(get(&a, "e")), [("f".to_string(), s("y"))]);
    // An empty sibling is dropped but still makes the tag a list.
    let m = map_of(conv(r#"ParseSimplifiedXML("<a><b>1</b><b/></a>")"#).unwrap());
    assert_eq!(conv_list(get(&map_of(get(&m, "a")), "b")), ["1"]);
    let deep = format!("{}{}", "<a>".repeat(129), "</a>".repeat(129));
    assert!(conv(&format!("ParseSimplifiedXML({deep:?})"))
        .unwrap_err()
        .contains("deeper"));
}

#[test]
fn truncate_all_marker_and_substring_utf8_safe() {
    let t = run(
        Context::Log,
        &[
            r#"set(attributes["long"], "abcdefghij")"#,
            r#"truncate_all(attributes, 6, truncation_marker = "..")"#,
        ],
    )
    .unwrap();
    assert_eq!(attr(&t, "long"), s("abcd.."));
    assert_eq!(attr(&t, "http.route"), s("/hea.."));
    assert!(run(
        Context::Log,
        &[r#"truncate_all(attributes, 2, false, "(...)")"#]
    )
    .is_err());
    // 一二三 is three characters of three bytes each.
    assert_eq!(conv(r#"Substring("一二三", 0, 4, true)"#), Ok(s("一")));
    assert_eq!(conv(r#"Substring("一二三", 1, 6, true)"#), Ok(s("二")));
    assert!(conv(r#"Substring("一二三", 0, 4)"#).is_err());
    assert_eq!(conv(r#"Substring("123456789", 0, 3)"#), Ok(s("123")));
}

#[test]
fn time_with_a_location() {
    // 12:34:56 in New York in May is 16:34:56 UTC (daylight saving time).
    assert_eq!(
        conv(
            r#"UnixSeconds(Time("2023-05-26 12:34:56", "%Y-%m-%d %H:%M:%S", "America/New_York"))"#
        ),
        Ok(Value::Int(1_685_118_896))
    );
    assert_eq!(
        conv(r#"UnixSeconds(Time("2023-05-26 12:34:56", "%Y-%m-%d %H:%M:%S", "", "en"))"#),
        Ok(Value::Int(1_685_104_496))
    );
    let err = |src: &str| {
        parse_statement(
            Context::Log,
            &format!(r#"set(attributes["t"], {src})"#),
            StatementOptions::default(),
        )
        .unwrap_err()
    };
    assert!(err(r#"Time(body, "%Y", "Mars/Olympus")"#).contains("unknown location"));
    assert!(err(r#"Time(body, "%Y", "", "it")"#).contains("not built"));
}

/// otelcol's Murmur3Hash: the 32-bit hash (seed 0) as 8 hex digits of its little-endian bytes, as in
/// contrib's func_murmur3_hash_test.go.
#[test]
fn murmur3_hash_is_little_endian_hex_of_32_bits() {
    assert_eq!(conv(r#"Murmur3Hash("Hello World")"#), Ok(s("ce837619")));
    assert_eq!(conv(r#"Murmur3Hash("")"#), Ok(s("00000000")));
    assert!(conv(r#"Murmur3Hash(attributes["http.status"])"#)
        .unwrap_err()
        .contains("Murmur3Hash"));
}

/// The examples of otelcol's UserAgent docs: uap-core's names and versions, `os.*` left out when
/// empty.
#[test]
fn user_agent_parses_with_uap_core() {
    let m = map_of(conv(r#"UserAgent("curl/7.81.0")"#).unwrap());
    assert_eq!(get(&m, "user_agent.name"), s("curl"));
    assert_eq!(get(&m, "user_agent.version"), s("7.81.0"));
    assert_eq!(get(&m, "user_agent.original"), s("curl/7.81.0"));
    assert_eq!(get(&m, "os.name"), s("Other"));
    assert_eq!(get(&m, "os.version"), Value::Nil);

    let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0";
    let m = map_of(conv(&format!("UserAgent({ff:?})")).unwrap());
    assert_eq!(get(&m, "user_agent.name"), s("Firefox"));
    assert_eq!(get(&m, "user_agent.version"), s("126.0"));
    assert_eq!(get(&m, "os.name"), s("Linux"));

    let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                Chrome/91.0.4472.124 Safari/537.36 Edg/91.0.864.59";
    let m = map_of(conv(&format!("UserAgent({edge:?})")).unwrap());
    assert_eq!(get(&m, "user_agent.name"), s("Edge"));
    assert_eq!(get(&m, "user_agent.version"), s("91.0.864"));
    assert_eq!(get(&m, "os.name"), s("Windows"));
    assert_eq!(get(&m, "os.version"), s("10"));

    let e = conv(r#"UserAgent(attributes["http.status"])"#).unwrap_err();
    assert!(e.contains("UserAgent"), "{e}");
}

/// otelcol's ExtractGrokPatterns examples: plain named regex groups, default patterns, typed
/// captures, patternDefinitions, and the errors at load.
#[test]
fn extract_grok_patterns() {
    let m = map_of(
        conv(r#"ExtractGrokPatterns("GIT_SHA=abc123 rest", "GIT_SHA=(?P<git.sha>\\w+)")"#).unwrap(),
    );
    assert_eq!(m, [("git.sha".to_string(), s("abc123"))]);

    // The /etc/passwd example of the docs.
    let m = map_of(
        conv(
            r#"ExtractGrokPatterns("smith:pass123:1001:1000:J Smith,1234,(234)567-8910,(234)567-1098,email:/home/smith:/bin/sh", "%{USERNAME:user.name}:%{PASSWORD:user.password}:%{USERINFO}", true, ["PASSWORD=%{WORD}", "USERINFO=%{GREEDYDATA}"])"#,
        )
        .unwrap(),
    );
    assert_eq!(get(&m, "user.name"), s("smith"));
    assert_eq!(get(&m, "user.password"), s("pass123"));
    assert_eq!(m.len(), 2, "{m:?}");

    // A typed capture; without namedCapturesOnly the unnamed pattern is kept under its name.
    let m = map_of(
        conv(r#"ExtractGrokPatterns("pid 4242 at host", "pid %{POSINT:process.pid:int} at %{WORD}")"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "process.pid"), Value::Int(4242));
    assert_eq!(get(&m, "WORD"), s("host"));
    let m = map_of(
        conv(r#"ExtractGrokPatterns("2.5 true", "%{NUMBER:n:float} %{WORD:b:boolean}", namedCapturesOnly = true)"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "n"), Value::Double(2.5));
    assert_eq!(get(&m, "b"), Value::Bool(true));
    // The docs' postgresql example, through DATESTAMP (DATE_US, YEAR, TIME) and TZ.
    let m = map_of(
        conv(r#"ExtractGrokPatterns("12/31/2023 10:11:12 UTC postgres 1234 5678", "%{DATESTAMP:timestamp} %{TZ:event.timezone} %{DATA:user.name} %{GREEDYDATA:postgresql.log.connection_id} %{POSINT:process.pid:int}", true)"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "timestamp"), s("12/31/2023 10:11:12"));
    assert_eq!(get(&m, "event.timezone"), s("UTC"));
    assert_eq!(get(&m, "user.name"), s("postgres"));
    assert_eq!(get(&m, "postgresql.log.connection_id"), s("1234"));
    assert_eq!(get(&m, "process.pid"), Value::Int(5678));
    let m = map_of(
        conv(r#"ExtractGrokPatterns("from 10.1.2.3 said 'hi there'", "from %{IP:ip} said %{QUOTEDSTRING:q}", true)"#)
            .unwrap(),
    );
    assert_eq!(get(&m, "ip"), s("10.1.2.3"));
    assert_eq!(get(&m, "q"), s("'hi there'"));
    // No match is an empty map.
    assert_eq!(
        map_of(conv(r#"ExtractGrokPatterns("xyz", "%{INT:n}")"#).unwrap()),
        []
    );

    let e = conv(r#"ExtractGrokPatterns(body, "%{WORD}", true)"#).unwrap_err();
    assert!(
        e.contains("ExtractGrokPatterns") && e.contains("named capture"),
        "{e}"
    );
    let e = conv(r#"ExtractGrokPatterns(body, "%{X:a}", true, ["X"])"#).unwrap_err();
    assert!(e.contains("PATTERNNAME=pattern definition"), "{e}");
    let e = conv(r#"ExtractGrokPatterns(body, "%{X:a}", true, ["X:y=a"])"#).unwrap_err();
    assert!(e.contains("should not contain ':'"), "{e}");
    let e = conv(r#"ExtractGrokPatterns(body, "%{NOPE:a}")"#).unwrap_err();
    assert!(
        e.contains("ExtractGrokPatterns") && e.contains("NOPE"),
        "{e}"
    );
}

/// contrib's GetXML, InsertXML, RemoveXML, ConvertAttributesToElementsXML and
/// ConvertTextToElementsXML test tables, in xmlquery's output form.
#[test]
fn xpath_xml_family() {
    let x = |src: &str| match conv(src) {
        Ok(Value::Str(s)) => s,
        o => panic!("{src}: {o:?}"),
    };
    // GetXML
    assert_eq!(x(r#"GetXML("<a><b/></a>", "/a/b")"#), "<b></b>");
    assert_eq!(
        x(r#"GetXML("<a foo=\"bar\"><b>hello</b></a>", "/a")"#),
        r#"<a foo="bar"><b>hello</b></a>"#
    );
    assert_eq!(
        x(r#"GetXML("<a><b>hello</b><b><c>world</c></b><d/></a>", "/a/*")"#),
        "<b>hello</b><b><c>world</c></b><d></d>"
    );
    assert_eq!(
        x(
            r#"GetXML("<a><x env=\"prod\">1</x><b><x env=\"dev\">2</x></b><d><e><f><x env=\"prod\">3</x></f></e></d></a>", "/a//x[@env='prod']")"#
        ),
        r#"<x env="prod">1</x><x env="prod">3</x>"#
    );
    assert_eq!(x(r#"GetXML("", "/")"#), "");
    assert_eq!(
        x(r#"GetXML("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a></a>", "/*")"#),
        "<a></a>"
    );
    assert_eq!(
        x(r#"GetXML("<!-- comment --><a></a><!-- comment -->", "/*")"#),
        "<a></a>"
    );
    assert_eq!(x(r#"GetXML("<a foo=\"bar\"></a>", "/a/@foo")"#), "bar");
    assert_eq!(x(r#"GetXML("<a>hello</a>", "/a/text()")"#), "hello");
    assert_eq!(
        x(r#"GetXML("<a><![CDATA[hello]]></a>", "/a/text()")"#),
        "hello"
    );

    // InsertXML
    assert_eq!(x(r#"InsertXML("<a></a>", "/a", "<b/>")"#), "<a><b></b></a>");
    assert_eq!(
        x(r#"InsertXML("<a></a><z><a></a></z>", "//a", "<b/><c/>")"#),
        "<a><b></b><c></c></a><z><a><b></b><c></c></a></z>"
    );
    assert_eq!(
        x(r#"InsertXML("<a></a>", "/", "<b/><c/>")"#),
        "<a></a><b></b><c></c>"
    );
    assert_eq!(x(r#"InsertXML("", "/", "<a/>")"#), "<a></a>");
    assert_eq!(
        x(r#"InsertXML("<a></a>", "/a", "<x foo=\"bar\"><b>text</b><c><d><e>1</e></d></c></x>")"#),
        r#"<a><x foo="bar"><b>text</b><c><d><e>1</e></d></c></x></a>"#
    );
    assert_eq!(
        x(
            r#"InsertXML("<a><b>has b</b></a><a></a><a><b>also has b</b></a>", "//a[not(b)]", "<b></b>")"#
        ),
        "<a><b>has b</b></a><a><b></b></a><a><b>also has b</b></a>"
    );
    let e = conv(r#"InsertXML("<a foo=\"bar\"></a>", "/a/@foo", "<b/>")"#).unwrap_err();
    assert!(
        e.contains(r#"InsertXML XPath selected non-element: "foo""#),
        "{e}"
    );

    // RemoveXML
    assert_eq!(
        x(r#"RemoveXML("<a><b/><b><c/></b></a>", "/a/b")"#),
        "<a></a>"
    );
    assert_eq!(
        x(r#"RemoveXML("<a><b/><b/><c><b><d/></b></c></a>", "/a//b")"#),
        "<a><c></c></a>"
    );
    assert_eq!(
        x(r#"RemoveXML("<a><b foo=\"bar\"/><b foo=\"notbar\"/></a>", "/a/b[@foo='bar']")"#),
        r#"<a><b foo="notbar"></b></a>"#
    );
    assert_eq!(
        x(
            r#"RemoveXML("<a><b foo=\"bar\" hello=\"world\" keep=\"this\"/></a>", "//@*[local-name() != 'keep']")"#
        ),
        r#"<a><b keep="this"></b></a>"#
    );
    assert_eq!(
        x(
            r#"RemoveXML("<a><b><c><!-- delete this --></c><!-- this too--></b></a>", "//comment()")"#
        ),
        "<a><b><c></c></b></a>"
    );
    assert_eq!(
        x(
            r#"RemoveXML("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>delete this</a>", "//text()['*delete*']")"#
        ),
        r#"<?xml version="1.0" encoding="UTF-8"?><a></a>"#
    );

    // ConvertAttributesToElementsXML
    assert_eq!(
        x(
            r#"ConvertAttributesToElementsXML("<a hello=\"world\" foo=\"bar\">free value<b/>2<c/></a>")"#
        ),
        "<a>free value<b></b>2<c></c><hello>world</hello><foo>bar</foo></a>"
    );
    assert_eq!(
        x(
            r#"ConvertAttributesToElementsXML("<a hello=\"world\" foo=\"bar\"><b href=\"www.example.com\"></b></a>", "/a/b/@*")"#
        ),
        r#"<a hello="world" foo="bar"><b><href>www.example.com</href></b></a>"#
    );
    assert_eq!(
        x(r#"ConvertAttributesToElementsXML("<a hello=\"world\"><b href=\"x\"></b></a>", "/a/b")"#),
        r#"<a hello="world"><b href="x"></b></a>"#
    );
    assert_eq!(
        x(
            r#"ConvertAttributesToElementsXML("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a><b/></a>")"#
        ),
        r#"<?xml version="1.0" encoding="UTF-8"?><a><b></b></a>"#
    );

    // ConvertTextToElementsXML
    assert_eq!(
        x(r#"ConvertTextToElementsXML("<a>hello world</a>")"#),
        "<a>hello world</a>"
    );
    assert_eq!(
        x(
            r#"ConvertTextToElementsXML("<a>foo<b/>bar<c/>1<d>not</d>2<e><f/><f/></e></a>", elementName = "v")"#
        ),
        "<a><v>foo</v><b></b><v>bar</v><c></c><v>1</v><d>not</d><v>2</v><e><f></f><f></f></e></a>"
    );
    assert_eq!(
        x(
            r#"ConvertTextToElementsXML("<a><b><c/>foo</b><d><c/>bar</d><b><c/>baz</b></a>", "/a/b", "V")"#
        ),
        "<a><b><c></c><V>foo</V></b><d><c></c>bar</d><b><c></c><V>baz</V></b></a>"
    );

    // Text is escaped as Go's html.EscapeString does, and trimmed.
    assert_eq!(
        x(r#"GetXML("<a t=\"x&amp;y\">  1 &lt; 2 'q' </a>", "/a")"#),
        r#"<a t="x&amp;y">1 &lt; 2 &#39;q&#39;</a>"#
    );

    // Errors name the function: a bad XPath at load, bad XML when the statement runs.
    let e = conv(r#"GetXML(body, "!")"#).unwrap_err();
    assert!(e.contains("GetXML") && e.contains("xpath"), "{e}");
    let e = conv(r#"RemoveXML("<a>>>>>>>", "/")"#).unwrap_err();
    assert!(e.contains("RemoveXML"), "{e}");
    let e = conv(r#"InsertXML("<a/>", "/", "<a>>>>>>>")"#).unwrap_err();
    assert!(e.contains("InsertXML"), "{e}");
    let deep = format!("{}{}", "<a>".repeat(129), "</a>".repeat(129));
    assert!(conv(&format!("GetXML({deep:?}, \"/\")"))
        .unwrap_err()
        .contains("deeper"));
}

mod gaps;
