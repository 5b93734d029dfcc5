//! The functions, optional arguments and paths added after the first audit against
//! otelcol-contrib's pkg/ottl (the `function` and `replacementFormat` arguments of the
//! `replace_*` editors, …); expected values come from contrib's documented behaviour.

use super::*;
use vigil_core::otlp::common::v1::KeyValue;

fn keys(t: &Telemetry) -> Vec<String> {
    the_log(t)
        .attributes
        .iter()
        .map(|x| x.key.clone())
        .collect()
}

#[test]
fn replace_editors_take_a_function_and_a_format() {
    // Each match's expanded replacement goes through the function, then the format.
    let t = run(
        Context::Log,
        &[r#"replace_pattern(attributes["user.email"], "^(.*)@", "$1", SHA256, "%s@")"#],
    )
    .unwrap();
    assert_eq!(
        attr(&t, "user.email"),
        s("ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb@b.c")
    );
    // Without a format the function's output is the replacement.
    let t = run(
        Context::Log,
        &[r#"replace_all_patterns(attributes, "key", "^http\\.", "h.", MD5)"#],
    )
    .unwrap();
    assert_eq!(
        keys(&t),
        [
            "5973191655aaed58c9d52ad1805dc328route",
            "5973191655aaed58c9d52ad1805dc328status",
            "user.email"
        ]
    );
    let t = run(
        Context::Log,
        &[r#"replace_match(attributes["http.route"], "/he*", "/x", SHA1, "/h/%s")"#],
    )
    .unwrap();
    assert_eq!(
        attr(&t, "http.route"),
        s("/h/629e2b1dc0b26083ad30bab39cfc78645dd00372")
    );
    let t = run(
        Context::Log,
        &[r#"replace_all_matches(attributes, "*@*", "secret", SHA256)"#],
    )
    .unwrap();
    assert_eq!(
        attr(&t, "user.email"),
        s("2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b")
    );
    assert_eq!(attr(&t, "http.route"), s("/health"));
    // By name, in any order, with any one-string converter.
    let t = run(
        Context::Log,
        &[r#"replace_pattern(body, "GET", "get", replacementFormat = "<%s>", function = ToUpperCase)"#],
    )
    .unwrap();
    assert_eq!(
        Value::from_any(the_log(&t).body.as_ref()),
        s("<GET> /health 200")
    );
    // A format without a function is read and ignored, as upstream.
    let t = run(
        Context::Log,
        &[r#"replace_pattern(body, "GET", "PUT", replacementFormat = "<%s>")"#],
    )
    .unwrap();
    assert_eq!(
        Value::from_any(the_log(&t).body.as_ref()),
        s("PUT /health 200")
    );
}

#[test]
fn replace_function_arguments_are_checked() {
    let load = |src: &str| parse_statement(Context::Log, src, StatementOptions::default()).err();
    // A string is not a function; a converter taking two arguments cannot be one.
    assert!(load(r#"replace_pattern(body, "x", "y", "SHA256")"#)
        .unwrap()
        .contains("converter's name"));
    assert!(load(r#"replace_pattern(body, "x", "y", Concat)"#)
        .unwrap()
        .contains("takes one string"));
    assert!(load(r#"replace_pattern(body, "x", "y", SHA256, "%d")"#)
        .unwrap()
        .contains("single %s"));
    assert!(load(r#"replace_pattern(body, "x", "y", SHA256, "none")"#)
        .unwrap()
        .contains("single %s"));
    // A bare function name anywhere else is refused at load.
    assert!(load(r#"set(attributes["x"], SHA256)"#)
        .unwrap()
        .contains("without calling it"));
    // A function that does not give a string is an error when it runs, as upstream.
    let e = run(
        Context::Log,
        &[r#"replace_match(attributes["http.route"], "*", "x", FNV)"#],
    )
    .unwrap_err();
    assert!(e.contains("must be a string"), "{e}");
}

fn one_span(s: Span) -> Telemetry {
    Telemetry::Traces(vec![ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![s],
            ..Default::default()
        }],
        ..Default::default()
    }])
}

fn run_span(s: Span, stmts: &[&str]) -> Result<Span, String> {
    let parsed: Vec<Statement> = stmts
        .iter()
        .map(|x| parse_statement(Context::Span, x, StatementOptions::default()))
        .collect::<Result<_, _>>()?;
    let mut data = one_span(s);
    let mut err = None;
    visit(&mut data, Context::Span, &mut |it: &mut Item<'_>| {
        for st in &parsed {
            if let Err(e) = st.execute(it) {
                err.get_or_insert(e);
            }
        }
        true
    });
    if let Some(e) = err {
        return Err(e);
    }
    let Telemetry::Traces(rs) = data else {
        unreachable!("traces in, traces out")
    };
    Ok(rs[0].scope_spans[0].spans[0].clone())
}

#[test]
fn span_kind_strings_and_trace_state_keys() {
    let span = Span {
        kind: 2,
        trace_state: "vendor=abc,other=1".into(),
        ..Default::default()
    };
    let out = run_span(
        span.clone(),
        &[
            r#"set(attributes["k"], kind.string) where kind.deprecated_string == "SPAN_KIND_SERVER""#,
            r#"set(attributes["v"], trace_state["vendor"])"#,
            r#"set(attributes["absent"], trace_state["nope"])"#,
            r#"set(trace_state["svc"], "example")"#,
            r#"set(trace_state["other"], "2")"#,
        ],
    )
    .unwrap();
    let a = |k: &str| {
        Value::from_any(
            out.attributes
                .iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value.as_ref()),
        )
    };
    assert_eq!(a("k"), s("Server"));
    assert_eq!(a("v"), s("abc"));
    // An absent key reads as "" (otelcol's TraceState.Get), not nil.
    assert_eq!(a("absent"), s(""));
    // New entries go first; an updated one moves to the front.
    assert_eq!(out.trace_state, "other=2,svc=example,vendor=abc");

    let out = run_span(span.clone(), &[r#"set(kind.string, "Client")"#]).unwrap();
    assert_eq!(out.kind, 3);
    let out = run_span(
        span.clone(),
        &[r#"set(span.kind.deprecated_string, "SPAN_KIND_CONSUMER")"#],
    )
    .unwrap();
    assert_eq!(out.kind, 5);
    assert!(run_span(span.clone(), &[r#"set(kind.string, "Nope")"#])
        .unwrap_err()
        .contains("unknown span kind"));
    // A value W3C does not allow leaves the tracestate alone, as otelcol.
    let out = run_span(span, &[r#"set(trace_state["k"], "a,b")"#]).unwrap();
    assert_eq!(out.trace_state, "vendor=abc,other=1");
    assert!(parse_statement(
        Context::Span,
        r#"set(attributes["x"], trace_state["a"]["b"])"#,
        StatementOptions::default()
    )
    .is_err());
}

#[test]
fn log_body_string() {
    // The sample body is a string; a map body reads as JSON, an int as its digits.
    assert!(
        on_log(r#"IsMatch(body.string, "health") and log.body.string == "GET /health 200""#)
            .unwrap()
    );
    let t = run(
        Context::Log,
        &[
            r#"set(body, {"a": 1})"#,
            r#"set(attributes["j"], body.string)"#,
            r#"set(body, 42)"#,
            r#"set(attributes["n"], log.body.string)"#,
            r#"set(body.string, "text")"#,
        ],
    )
    .unwrap();
    assert_eq!(attr(&t, "j"), s(r#"{"a":1}"#));
    assert_eq!(attr(&t, "n"), s("42"));
    assert_eq!(Value::from_any(the_log(&t).body.as_ref()), s("text"));
}

fn summary_batch() -> Vec<Metric> {
    use vigil_core::otlp::metrics::v1::{
        summary_data_point::ValueAtQuantile, Summary, SummaryDataPoint,
    };
    vec![Metric {
        name: "rpc.latency".into(),
        description: "latency".into(),
        unit: "s".into(),
        data: Some(Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: vec![kv_str("route", "/a")],
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 4,
                sum: 2.5,
                quantile_values: vec![
                    ValueAtQuantile {
                        quantile: 0.5,
                        value: 0.4,
                    },
                    ValueAtQuantile {
                        quantile: 0.99,
                        value: 1.5,
                    },
                    ValueAtQuantile {
                        quantile: 1.0,
                        value: 2.0,
                    },
                ],
                ..Default::default()
            }],
        })),
        ..Default::default()
    }]
}

fn run_metrics(metrics: Vec<Metric>, stmts: &[&str]) -> Result<Vec<Metric>, String> {
    let data = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    run_metric_on(data, stmts)
}

#[test]
fn summary_conversions() {
    use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
    let out = run_metrics(
        summary_batch(),
        &[
            r#"convert_summary_count_val_to_sum("delta", true) where metric.name == "rpc.latency""#,
            r#"convert_summary_sum_val_to_sum("cumulative", false, ".total") where metric.name == "rpc.latency""#,
            r#"convert_summary_quantile_val_to_gauge() where metric.name == "rpc.latency""#,
            r#"convert_summary_quantile_val_to_gauge(suffix = "_q") where metric.name == "rpc.latency""#,
        ],
    )
    .unwrap();
    let names: Vec<&str> = out.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "rpc.latency",
            "rpc.latency_count",
            "rpc.latency.total",
            "rpc.latency.quantiles",
            "rpc.latency_q"
        ]
    );
    let Some(Data::Sum(c)) = &out[1].data else {
        panic!("a sum")
    };
    assert_eq!(c.aggregation_temporality, 1);
    assert!(c.is_monotonic);
    assert_eq!(c.data_points[0].value, Some(N::AsInt(4)));
    assert_eq!(c.data_points[0].attributes, vec![kv_str("route", "/a")]);
    assert_eq!(
        (
            c.data_points[0].start_time_unix_nano,
            c.data_points[0].time_unix_nano
        ),
        (1, 2)
    );
    assert_eq!(out[1].description, "latency");
    let Some(Data::Sum(s)) = &out[2].data else {
        panic!("a sum")
    };
    assert_eq!((s.aggregation_temporality, s.is_monotonic), (2, false));
    assert_eq!(s.data_points[0].value, Some(N::AsDouble(2.5)));
    let Some(Data::Gauge(g)) = &out[3].data else {
        panic!("a gauge")
    };
    let q: Vec<(Vec<KeyValue>, Option<N>)> = g
        .data_points
        .iter()
        .map(|p| (p.attributes.clone(), p.value))
        .collect();
    // Quantiles are written with at least two decimals, as otelcol's quantileToStringValue.
    assert_eq!(
        q,
        vec![
            (
                vec![kv_str("route", "/a"), kv_str("quantile", "0.50")],
                Some(N::AsDouble(0.4))
            ),
            (
                vec![kv_str("route", "/a"), kv_str("quantile", "0.99")],
                Some(N::AsDouble(1.5))
            ),
            (
                vec![kv_str("route", "/a"), kv_str("quantile", "1")],
                Some(N::AsDouble(2.0))
            ),
        ]
    );
    assert_eq!(out[3].unit, "s");
    // Other metric types are left alone; a bad temporality is refused at load.
    let gauge = vec![Metric {
        name: "g".into(),
        data: Some(Data::Gauge(Gauge::default())),
        ..Default::default()
    }];
    assert_eq!(
        run_metrics(
            gauge,
            &[r#"convert_summary_count_val_to_sum("delta", true)"#]
        )
        .unwrap()
        .len(),
        1
    );
    assert!(parse_statement(
        Context::Metric,
        r#"convert_summary_sum_val_to_sum("sometimes", true)"#,
        StatementOptions::default()
    )
    .is_err());
}

#[test]
fn scale_metric_and_aggregate_on_attribute_value() {
    use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
    use vigil_core::otlp::metrics::v1::{Histogram, HistogramDataPoint};
    let pt = |state: &str, v: N| NumberDataPoint {
        attributes: vec![kv_str("state", state)],
        time_unix_nano: 5,
        value: Some(v),
        ..Default::default()
    };
    let metrics = vec![
        Metric {
            name: "mem".into(),
            unit: "By".into(),
            data: Some(Data::Gauge(Gauge {
                data_points: vec![
                    pt("cached", N::AsInt(1000)),
                    pt("buffered", N::AsInt(500)),
                    pt("used", N::AsDouble(2.0)),
                ],
            })),
            ..Default::default()
        },
        Metric {
            name: "lat".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 2,
                    sum: Some(3.0),
                    max: Some(2.5),
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            })),
            ..Default::default()
        },
    ];
    let out = run_metrics(
        metrics.clone(),
        &[
            r#"scale_metric(0.001, "kBy") where metric.name == "mem""#,
            r#"scale_metric(1000) where metric.name == "lat""#,
        ],
    )
    .unwrap();
    assert_eq!(out[0].unit, "kBy");
    let Some(Data::Gauge(g)) = &out[0].data else {
        panic!("a gauge")
    };
    let vals: Vec<Option<N>> = g.data_points.iter().map(|p| p.value).collect();
    // Ints stay ints, truncated as Go's int64(float64(v) * f).
    assert_eq!(
        vals,
        vec![
            Some(N::AsInt(1)),
            Some(N::AsInt(0)),
            Some(N::AsDouble(0.002))
        ]
    );
    let Some(Data::Histogram(h)) = &out[1].data else {
        panic!("a histogram")
    };
    let p = &h.data_points[0];
    assert_eq!((p.sum, p.max, p.min), (Some(3000.0), Some(2500.0), None));
    assert_eq!(p.explicit_bounds, vec![1000.0]);
    assert_eq!(p.bucket_counts, vec![1, 1]);
    assert_eq!(out[1].unit, "");

    // otelcol's example: two values of an attribute become one point under a new value.
    let out = run_metrics(
        metrics,
        &[r#"aggregate_on_attribute_value("sum", "state", ["cached", "buffered"], "other") where metric.name == "mem""#],
    )
    .unwrap();
    let Some(Data::Gauge(g)) = &out[0].data else {
        panic!("a gauge")
    };
    let got: Vec<(Vec<KeyValue>, Option<N>)> = g
        .data_points
        .iter()
        .map(|p| (p.attributes.clone(), p.value))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![kv_str("state", "other")], Some(N::AsInt(1500))),
            (vec![kv_str("state", "used")], Some(N::AsDouble(2.0))),
        ]
    );
    assert!(parse_statement(
        Context::Metric,
        r#"aggregate_on_attribute_value("avg", "state", ["a"], "b")"#,
        StatementOptions::default()
    )
    .is_err());
}

#[test]
fn summary_to_sum_in_the_datapoint_context() {
    use vigil_core::otlp::metrics::v1::number_data_point::Value as N;
    use vigil_core::otlp::metrics::v1::SummaryDataPoint;
    let mut metrics = summary_batch();
    if let Some(Data::Summary(s)) = &mut metrics[0].data {
        s.data_points.push(SummaryDataPoint {
            attributes: vec![kv_str("route", "/b")],
            count: 9,
            ..Default::default()
        });
        s.data_points.push(SummaryDataPoint {
            attributes: vec![kv_str("route", "/skip")],
            count: 1,
            ..Default::default()
        });
    }
    let st = parse_statement(
        Context::DataPoint,
        r#"convert_summary_count_val_to_sum("cumulative", true) where attributes["route"] != "/skip""#,
        StatementOptions::default(),
    )
    .unwrap();
    let mut data = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    visit(&mut data, Context::DataPoint, &mut |it: &mut Item<'_>| {
        st.execute(it).unwrap();
        true
    });
    let Telemetry::Metrics(rms) = data else {
        unreachable!("metrics in, metrics out")
    };
    let ms = &rms[0].scope_metrics[0].metrics;
    assert_eq!(ms.len(), 2);
    assert_eq!(ms[1].name, "rpc.latency_count");
    let Some(Data::Sum(s)) = &ms[1].data else {
        panic!("a sum")
    };
    let vals: Vec<Option<N>> = s.data_points.iter().map(|p| p.value).collect();
    assert_eq!(vals, vec![Some(N::AsInt(4)), Some(N::AsInt(9))]);
}

#[test]
fn exponential_histogram_point_paths() {
    use vigil_core::otlp::metrics::v1::exponential_histogram_data_point::Buckets;
    use vigil_core::otlp::metrics::v1::{ExponentialHistogram, ExponentialHistogramDataPoint};
    let metrics = vec![Metric {
        name: "lat".into(),
        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                scale: 3,
                zero_count: 2,
                positive: Some(Buckets {
                    offset: -1,
                    bucket_counts: vec![4, 5],
                }),
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    }];
    let st: Vec<Statement> = [
        r#"set(attributes["s"], scale) where zero_count == 2 and positive.offset == -1"#,
        r#"set(attributes["b1"], positive.bucket_counts[1])"#,
        r#"set(attributes["nb"], Len(negative.bucket_counts))"#,
        r#"set(scale, 2)"#,
        r#"set(negative.offset, 7)"#,
    ]
    .iter()
    .map(|x| parse_statement(Context::DataPoint, x, StatementOptions::default()).unwrap())
    .collect();
    let mut data = Telemetry::Metrics(vec![ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }]);
    visit(&mut data, Context::DataPoint, &mut |it: &mut Item<'_>| {
        for s in &st {
            s.execute(it).unwrap();
        }
        true
    });
    let Telemetry::Metrics(rms) = data else {
        unreachable!("metrics in, metrics out")
    };
    let Some(Data::ExponentialHistogram(h)) = &rms[0].scope_metrics[0].metrics[0].data else {
        panic!("an exponential histogram")
    };
    let p = &h.data_points[0];
    let a = |k: &str| {
        Value::from_any(
            p.attributes
                .iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value.as_ref()),
        )
    };
    assert_eq!(a("s"), Value::Int(3));
    assert_eq!(a("b1"), Value::Int(5));
    assert_eq!(a("nb"), Value::Int(0));
    assert_eq!(p.scale, 2);
    assert_eq!(p.negative.as_ref().map(|b| b.offset), Some(7));
}

#[test]
fn context_from_the_function_when_no_path_names_one() {
    let metric = [
        Context::Resource,
        Context::Scope,
        Context::Metric,
        Context::DataPoint,
    ];
    assert_eq!(
        infer_context("scale_metric(1000)", &metric),
        Ok(Context::Metric)
    );
    assert_eq!(
        infer_context(r#"convert_summary_quantile_val_to_gauge("q")"#, &metric),
        Ok(Context::Metric)
    );
    assert_eq!(
        infer_context("merge_histogram_buckets(0.5)", &metric),
        Ok(Context::DataPoint)
    );
    // A path still decides when there is one.
    assert_eq!(
        infer_context(
            r#"convert_sum_to_gauge() where datapoint.attributes["a"] == nil"#,
            &metric
        ),
        Ok(Context::DataPoint)
    );
    assert!(infer_context(r#"set(attributes["a"], 1)"#, &metric).is_err());
}

#[test]
fn flatten_resolves_conflicts() {
    // The shape of otelcol's README example: nested keys that flatten onto the same name, and a list.
    let t = run(
        Context::Log,
        &[
            r#"set(attributes["doc"], {"address": {"street": {"number": "first"}, "house": "1234"}, "address.street": {"number": ["second", "third"]}, "address.street.number": "fourth", "occupants": ["user 1", "user 2"]})"#,
            r#"flatten(attributes["doc"], resolveConflicts = true)"#,
        ],
    )
    .unwrap();
    let Value::Map(m) = attr(&t, "doc") else {
        panic!("a map")
    };
    let got: Vec<(String, Value)> = m
        .into_iter()
        .map(|x| (x.key, Value::from_any(x.value.as_ref())))
        .collect();
    let want: Vec<(String, Value)> = [
        ("address.street.number", "first"),
        ("address.house", "1234"),
        ("address.street.number.0", "second"),
        ("address.street.number.1", "third"),
        ("address.street.number.2", "fourth"),
        ("occupants", "user 1"),
        ("occupants.0", "user 2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), s(v)))
    .collect();
    assert_eq!(got, want);
}
