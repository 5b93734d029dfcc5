use super::config::{ConnectorConfig, ProcessorConfig};
use super::connector::Inner;
use super::processor::{representative_count, Enricher};
use super::*;
use crate::testdata::Keep;
use vigil_core::attrs::{get, get_str, kv_i64, kv_str};
use vigil_core::otlp::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use vigil_core::otlp::metrics::v1::{metric, number_data_point};
use vigil_core::otlp::resource::v1::Resource;
use vigil_core::otlp::trace::v1::{
    span::{Event, SpanKind},
    status::StatusCode,
    ResourceSpans, ScopeSpans, Span, Status,
};
use vigil_core::{ComponentKind, Telemetry};

fn id(kind: &str) -> ComponentId {
    ComponentId::new(kind, None)
}

fn proc_cfg(yaml: &str) -> Result<ProcessorConfig, String> {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    let cfg: ProcessorConfig =
        vigil_core::config::decode(ComponentKind::Processor, &id("elasticapm"), &value)
            .map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn conn_cfg(yaml: &str) -> Result<ConnectorConfig, String> {
    let value: serde_json::Value = serde_saphyr::from_str(yaml).expect("yaml");
    let cfg: ConnectorConfig =
        vigil_core::config::decode(ComponentKind::Connector, &id("elasticapm"), &value)
            .map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn span(name: &str, kind: SpanKind, parent: &[u8], us: u64, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![7; 16],
        span_id: vec![0xab; 8],
        parent_span_id: parent.to_vec(),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_000_000_000 + us * 1000,
        attributes: attrs,
        ..Default::default()
    }
}

fn resource() -> Vec<KeyValue> {
    vec![
        kv_str("service.name", "checkout"),
        kv_str("telemetry.sdk.name", "opentelemetry"),
        kv_str("telemetry.sdk.language", "python"),
        kv_str("telemetry.sdk.version", "1.30.0"),
        kv_str("deployment.environment.name", "prod"),
        kv_str("host.name", "h1"),
        kv_str("process.runtime.name", "cpython"),
    ]
}

fn batch(spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: resource(),
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "flask".into(),
                version: "3.0".into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn enrich(spans: Vec<Span>) -> Vec<ResourceSpans> {
    let p = processor::ElasticApmProcessor {
        enricher: Enricher::new(ProcessorConfig::default()),
        next: Arc::new(Keep::default()),
        obs: vigil_core::ProcessorObs::new(&id("elasticapm"), Signal::Traces),
    };
    let mut data = Telemetry::Traces(batch(spans));
    p.process(&mut data);
    let Telemetry::Traces(rs) = data else {
        unreachable!()
    };
    rs
}

fn s<'a>(attrs: &'a [KeyValue], key: &str) -> &'a str {
    get_str(attrs, key).unwrap_or_else(|| panic!("{key} missing in {attrs:?}"))
}

/// A server root span, its client database child, and a consumer whose parent is remote.
fn three_spans() -> Vec<Span> {
    let mut root = span(
        "GET /cart",
        SpanKind::Server,
        &[],
        25_000,
        vec![
            kv_str("http.request.method", "GET"),
            kv_i64("http.response.status_code", 200),
        ],
    );
    root.events.push(Event {
        name: "exception".into(),
        time_unix_nano: 1_700_000_000_001_000_000,
        attributes: vec![
            kv_str("exception.type", "ValueError"),
            kv_str("exception.message", "bad cart"),
        ],
        ..Default::default()
    });
    let db = span(
        "SELECT carts",
        SpanKind::Client,
        &[0xab; 8],
        4_000,
        vec![kv_str("db.system", "postgresql"), kv_str("db.name", "shop")],
    );
    let mut consumer = span(
        "orders process",
        SpanKind::Consumer,
        &[0xcd; 8],
        1_000,
        vec![
            kv_str("messaging.system", "kafka"),
            kv_str("messaging.destination.name", "orders"),
            kv_str("messaging.operation", "process"),
        ],
    );
    consumer.flags = 0x100 | 0x200;
    consumer.status = Some(Status {
        code: StatusCode::Error as i32,
        ..Default::default()
    });
    vec![root, db, consumer]
}

#[test]
fn transactions_spans_resources_and_scopes_get_the_elastic_attributes() {
    let rs = enrich(three_spans());
    let res = &rs[0].resource.as_ref().unwrap().attributes;
    assert_eq!(s(res, "agent.name"), "opentelemetry/python");
    assert_eq!(s(res, "agent.version"), "1.30.0");
    assert_eq!(s(res, "deployment.environment"), "prod");
    assert_eq!(s(res, "service.instance.id"), "h1");
    let scope = rs[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(s(&scope.attributes, "service.framework.name"), "flask");
    assert_eq!(s(&scope.attributes, "service.framework.version"), "3.0");

    let spans = &rs[0].scope_spans[0].spans;
    let root = &spans[0].attributes;
    assert_eq!(s(root, "processor.event"), "transaction");
    assert_eq!(s(root, "transaction.name"), "GET /cart");
    assert_eq!(s(root, "transaction.type"), "request");
    assert_eq!(s(root, "transaction.result"), "HTTP 2xx");
    assert_eq!(s(root, "event.outcome"), "success");
    assert_eq!(s(root, "transaction.id"), "abababababababab");
    assert_eq!(get(root, "transaction.root"), Some(&Value::BoolValue(true)));
    assert_eq!(
        get(root, "transaction.duration.us"),
        Some(&Value::IntValue(25_000))
    );
    assert_eq!(
        get(root, "transaction.representative_count"),
        Some(&Value::DoubleValue(1.0))
    );
    assert!(
        get(root, "span.type").is_none(),
        "a transaction is not a span"
    );
    let ev = &spans[0].events[0].attributes;
    assert_eq!(s(ev, "processor.event"), "error");
    assert_eq!(s(ev, "transaction.type"), "request");
    assert_eq!(s(ev, "error.grouping_name"), "bad cart");
    assert_eq!(s(ev, "error.id").len(), 32);
    assert_eq!(
        get(ev, "error.exception.handled"),
        Some(&Value::BoolValue(true))
    );

    let db = &spans[1].attributes;
    assert_eq!(s(db, "processor.event"), "span");
    assert_eq!(s(db, "span.type"), "db");
    assert_eq!(s(db, "span.subtype"), "postgresql");
    assert_eq!(s(db, "span.name"), "SELECT carts");
    assert_eq!(s(db, "service.target.type"), "postgresql");
    assert_eq!(s(db, "service.target.name"), "shop");
    assert_eq!(s(db, "span.destination.service.resource"), "postgresql");
    assert_eq!(get(db, "span.duration.us"), Some(&Value::IntValue(4_000)));
    assert!(get(db, "transaction.name").is_none());

    let c = &spans[2].attributes;
    assert_eq!(s(c, "processor.event"), "transaction", "remote parent");
    assert_eq!(s(c, "transaction.type"), "messaging");
    assert_eq!(s(c, "event.outcome"), "failure");
    assert_eq!(s(c, "transaction.result"), "Error");
    assert_eq!(s(c, "transaction.message.queue.name"), "orders");
    assert!(get(c, "messaging.system").is_none(), "remove_messaging");
}

#[test]
fn the_grouping_key_is_the_md5_of_the_exception_type() {
    use md5::{Digest, Md5};
    let rs = enrich(three_spans());
    let ev = &rs[0].scope_spans[0].spans[0].events[0].attributes;
    assert_eq!(
        s(ev, "error.grouping_key"),
        hex::encode(Md5::digest(b"ValueError"))
    );
}

#[test]
fn present_attributes_are_kept_and_switches_turn_enrichments_off() {
    let mut sp = span(
        "x",
        SpanKind::Internal,
        &[1; 8],
        10,
        vec![kv_str("span.type", "custom")],
    );
    sp.flags = 0x100;
    let rs = enrich(vec![sp.clone()]);
    let a = &rs[0].scope_spans[0].spans[0].attributes;
    assert_eq!(s(a, "span.type"), "custom");
    assert_eq!(s(a, "span.subtype"), "internal");

    let cfg = proc_cfg(
        "elastic_span: {type_subtype: {enabled: false}}\nresource: {agent_name: {enabled: false}}",
    )
    .unwrap();
    let e = Enricher::new(cfg);
    let mut sp2 = sp;
    sp2.attributes.clear();
    e.span(&mut sp2);
    assert!(get(&sp2.attributes, "span.type").is_none());
    assert_eq!(s(&sp2.attributes, "processor.event"), "span");
    let mut r = Some(Resource::default());
    e.resource(&mut r);
    assert!(get(&r.unwrap().attributes, "agent.name").is_none());
}

#[test]
fn the_representative_count_comes_from_the_tracestate() {
    assert_eq!(representative_count(""), 1.0);
    assert_eq!(representative_count("ot=th:8"), 2.0);
    assert_eq!(representative_count("vendor=x,ot=th:c;rv:1234"), 4.0);
    assert_eq!(representative_count("ot=th:0"), 1.0);
    assert_eq!(representative_count("ot=p:3"), 8.0);
    assert_eq!(representative_count("ot=p:63"), 0.0);
    assert_eq!(representative_count("ot=th:zz"), 1.0);
}

#[test]
fn processor_keys_are_checked_and_unbuilt_ones_refused_by_name() {
    assert!(proc_cfg("{}").is_ok());
    assert!(proc_cfg("elastic_transaction: {user_agent: {enabled: false}}").is_ok());
    let e = proc_cfg("elastic_transaction: {user_agent: {enabled: true}}").unwrap_err();
    assert!(
        e.contains("elastic_transaction::user_agent::enabled") && e.contains("not built"),
        "{e}"
    );
    let e = proc_cfg("elastic_span: {typo: {enabled: true}}").unwrap_err();
    assert!(
        e.contains("elastic_span::typo") && e.contains("type_subtype"),
        "{e}"
    );
    let e = proc_cfg("service_name_in_datastream_dataset: true").unwrap_err();
    assert!(e.contains("not built"), "{e}");
    assert!(proc_cfg("nope: 1").unwrap_err().contains("nope"));
}

#[test]
fn connector_keys_are_checked_and_unbuilt_ones_refused_by_name() {
    assert!(conn_cfg("{}").is_ok());
    let c = conn_cfg(
        "aggregation: {intervals: [1s, 1m], limits: {resource: {max_cardinality: 5}}}\ncustom_resource_attributes: [k8s.namespace.name, {key: team}]\ncustom_span_attributes: [tenant]",
    )
    .unwrap();
    assert_eq!(c.aggregation.limits.resource.max_cardinality, 5);
    assert_eq!(c.aggregation.limits.datapoint.max_cardinality, 4000);
    assert_eq!(c.custom_resource_attributes[1].key, "team");
    // Earlier releases spelled it `limit`.
    assert!(conn_cfg("aggregation: {limit: {metric: {max_cardinality: 2}}}").is_ok());
    let e = conn_cfg("aggregation: {directory: /var/lib/x}").unwrap_err();
    assert!(
        e.contains("aggregation::directory") && e.contains("not built"),
        "{e}"
    );
    let e = conn_cfg("aggregation: {metadata_keys: [a]}").unwrap_err();
    assert!(e.contains("not built"), "{e}");
    let e = conn_cfg("custom_resource_attributes: [{keys_expression: 'x'}]").unwrap_err();
    assert!(
        e.contains("keys_expression") && e.contains("not built"),
        "{e}"
    );
    let e = conn_cfg("aggregation: {intervals: [1m, 90s]}").unwrap_err();
    assert!(e.contains("aggregation::intervals::1"), "{e}");
    let e = conn_cfg("aggregation: {limits: {datapoint: {max_cardinality: 0}}}").unwrap_err();
    assert!(e.contains("datapoint::max_cardinality"), "{e}");
    assert!(conn_cfg("error_mode: loud")
        .unwrap_err()
        .contains("error_mode"));
}

fn connector(yaml: &str) -> (Inner, Arc<Keep>) {
    let keep = Arc::new(Keep::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, keep.clone());
    let set = Settings::new(ComponentKind::Connector, &id("elasticapm"));
    let inner = Inner::new(
        "elasticapm".into(),
        &conn_cfg(yaml).unwrap(),
        next,
        set.connector_obs(),
    );
    (inner, keep)
}

fn rows(keep: &Keep) -> Vec<(String, vigil_core::otlp::metrics::v1::Metric, Vec<KeyValue>)> {
    let mut out = Vec::new();
    for t in vigil_core::lock(&keep.0).iter() {
        let Telemetry::Metrics(rm) = t else { continue };
        for r in rm {
            let svc = r
                .resource
                .as_ref()
                .and_then(|r| get_str(&r.attributes, "service.name"))
                .unwrap_or("")
                .to_string();
            for sm in &r.scope_metrics {
                for m in &sm.metrics {
                    out.push((
                        svc.clone(),
                        m.clone(),
                        r.resource.clone().unwrap_or_default().attributes,
                    ));
                }
            }
        }
    }
    out
}

fn sum_points(m: &vigil_core::otlp::metrics::v1::Metric) -> Vec<(Vec<KeyValue>, f64)> {
    match &m.data {
        Some(metric::Data::Sum(s)) => s
            .data_points
            .iter()
            .map(|p| {
                let v = match p.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => f64::NAN,
                };
                (p.attributes.clone(), v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn enriched_spans_become_the_apm_metrics_at_each_interval() {
    let (c, keep) = connector("custom_span_attributes: [tenant]");
    let mut spans = three_spans();
    spans[0].attributes.push(kv_str("tenant", "t1"));
    let mut second = spans[0].clone();
    second.end_time_unix_nano = second.start_time_unix_nano + 75_000 * 1000;
    second.trace_state = "ot=th:8".into();
    spans.push(second);
    let rs = enrich(spans);
    c.aggregate_spans(&rs);
    c.flush(true).await;
    let rows = rows(&keep);
    let by = |name: &str, interval: &str| -> Vec<_> {
        rows.iter()
            .filter(|(_, m, _)| m.name == name)
            .filter(|(_, m, _)| {
                let pts: Vec<Vec<KeyValue>> = match &m.data {
                    Some(metric::Data::Sum(s)) => {
                        s.data_points.iter().map(|p| p.attributes.clone()).collect()
                    }
                    Some(metric::Data::Histogram(h)) => {
                        h.data_points.iter().map(|p| p.attributes.clone()).collect()
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        h.data_points.iter().map(|p| p.attributes.clone()).collect()
                    }
                    _ => Vec::new(),
                };
                pts.iter()
                    .all(|a| get_str(a, "metricset.interval") == Some(interval))
            })
            .cloned()
            .collect()
    };
    for interval in ["1m", "10m", "60m"] {
        let summary = by("service_summary", interval);
        assert_eq!(summary.len(), 1, "{interval}: {rows:?}");
        let (svc, m, res) = &summary[0];
        assert_eq!(svc, "checkout");
        assert_eq!(get_str(res, "agent.name"), Some("opentelemetry/python"));
        assert!(
            get(res, "host.name").is_none(),
            "summary resources are coarse"
        );
        let pts = sum_points(m);
        // 1 + 1 + 1 + 2 (the th:8 span stands for two).
        assert_eq!(pts[0].1, 5.0);
        assert_eq!(
            get_str(&pts[0].0, "data_stream.dataset"),
            Some(&*format!("service_summary.{interval}"))
        );
        assert_eq!(get_str(&pts[0].0, "processor.event"), Some("metric"));
    }
    let hist = by("transaction.duration.histogram", "1m");
    // service_transaction and transaction, in their own resources (the transaction one is finer).
    assert_eq!(hist.len(), 2, "{hist:?}");
    let tx = hist
        .iter()
        .find(|(_, m, _)| m.description.starts_with("APM transaction"))
        .expect("transaction histogram");
    assert_eq!(get_str(&tx.2, "host.name"), Some("h1"));
    let Some(metric::Data::ExponentialHistogram(h)) = &tx.1.data else {
        panic!("exponential")
    };
    // GET /cart (2 sampled spans, 3 represented) and the consumer.
    let cart = h
        .data_points
        .iter()
        .find(|p| get_str(&p.attributes, "transaction.name") == Some("GET /cart"))
        .expect("GET /cart");
    assert_eq!(cart.count, 3);
    assert_eq!(cart.sum, Some(25_000.0 + 2.0 * 75_000.0));
    assert_eq!(
        get_str(&cart.attributes, "transaction.result"),
        Some("HTTP 2xx")
    );
    assert_eq!(
        get_str(&cart.attributes, "tenant"),
        Some("t1"),
        "custom span attribute"
    );
    assert_eq!(tx.1.unit, "us");

    let success = by("event.success_count", "1m");
    let svc_tx = success
        .iter()
        .find(|(_, m, _)| m.description.ends_with("service transaction"))
        .expect("service transaction success count");
    let Some(metric::Data::Histogram(h)) = &svc_tx.1.data else {
        panic!("histogram")
    };
    let req = h
        .data_points
        .iter()
        .find(|p| get_str(&p.attributes, "transaction.type") == Some("request"))
        .unwrap();
    assert_eq!((req.count, req.sum), (3, Some(3.0)));
    let msg = h
        .data_points
        .iter()
        .find(|p| get_str(&p.attributes, "transaction.type") == Some("messaging"))
        .unwrap();
    assert_eq!(
        (msg.count, msg.sum),
        (1, Some(0.0)),
        "a failure counts, never succeeds"
    );

    let dest = by("span.destination.service.response_time.sum.us", "1m");
    assert_eq!(dest.len(), 1);
    let pts = sum_points(&dest[0].1);
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].1, 4_000.0);
    assert_eq!(
        get_str(&pts[0].0, "span.destination.service.resource"),
        Some("postgresql")
    );
    assert_eq!(
        get_str(&pts[0].0, "metricset.name"),
        Some("service_destination")
    );
    let count = by("span.destination.service.response_time.count", "1m");
    assert_eq!(sum_points(&count[0].1)[0].1, 1.0);

    // Everything left with the flush.
    let before = rows.len();
    c.flush(true).await;
    assert_eq!(self::rows(&keep).len(), before);
}

#[tokio::test]
async fn each_interval_leaves_when_it_ends() {
    let (c, keep) = connector("aggregation: {intervals: [1s, 2s]}");
    c.aggregate_spans(&enrich(three_spans()));
    c.flush(false).await; // 1 s: only the 1 s table.
    let names: Vec<String> = rows(&keep)
        .iter()
        .filter(|(_, m, _)| m.name == "service_summary")
        .flat_map(|(_, m, _)| sum_points(m))
        .map(|(a, _)| s(&a, "data_stream.dataset").to_string())
        .collect();
    // int(1s in minutes) is 0, as the original writes it.
    assert_eq!(names, vec!["service_summary.0m"]);
    c.flush(false).await; // 2 s: the 2 s table (the 1 s one is empty).
    assert_eq!(
        rows(&keep)
            .iter()
            .filter(|(_, m, _)| m.name == "service_summary")
            .count(),
        2
    );
}

#[tokio::test]
async fn limits_send_overflow_into_one_bucket_and_count_it() {
    let (c, keep) = connector(
        "aggregation: {intervals: [1m], limits: {resource: {max_cardinality: 2}, datapoint: {max_cardinality: 1}}}",
    );
    let mut rs = enrich(vec![
        span("a", SpanKind::Server, &[], 1_000, vec![]),
        span("b", SpanKind::Server, &[], 2_000, vec![]),
        span("c", SpanKind::Server, &[], 3_000, vec![]),
    ]);
    // checkout takes the two resources allowed (the coarse one, and the transaction one with
    // host.name); a second service is over the limit with both of its own.
    let mut other = rs[0].clone();
    other.resource.as_mut().unwrap().attributes[0] = kv_str("service.name", "payments");
    rs.push(other);
    c.aggregate_spans(&rs);
    c.flush(true).await;
    let rows = rows(&keep);
    let services: std::collections::BTreeSet<&str> =
        rows.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(services, ["_other", "checkout"].into_iter().collect());
    let overflow_res = rows
        .iter()
        .find(|(s, m, _)| s == "_other" && m.name == "_overflow_resource")
        .expect("resource overflow counted");
    assert_eq!(sum_points(&overflow_res.1)[0].1, 2.0);
    let (_, m, res) = rows
        .iter()
        .find(|(s, m, _)| s == "_other" && m.name == "service_summary")
        .unwrap();
    assert_eq!(get_str(res, "overflow"), Some("resource"));
    assert_eq!(
        sum_points(m)[0].1,
        3.0,
        "the overflowed service's spans still counted"
    );
    // Three transaction names, one data point allowed: two go to the overflow point.
    let tx = rows
        .iter()
        .find(|(s, m, _)| {
            s == "checkout"
                && m.name == "transaction.duration.summary"
                && m.description.starts_with("APM transaction")
        })
        .unwrap();
    let Some(metric::Data::Histogram(h)) = &tx.1.data else {
        panic!("histogram")
    };
    assert_eq!(h.data_points.len(), 2);
    let over = h
        .data_points
        .iter()
        .find(|p| get_str(&p.attributes, "overflow") == Some("datapoint"))
        .expect("overflow point");
    assert_eq!(over.count, 2);
    let dp = rows
        .iter()
        .find(|(s, m, _)| s == "checkout" && m.name == "_overflow_datapoint")
        .expect("data point overflow counted");
    // Two names over the limit in each of the three transaction-level metrics.
    assert_eq!(sum_points(&dp.1)[0].1, 6.0);
}

#[tokio::test]
async fn logs_and_metric_points_count_in_service_summary() {
    use vigil_core::otlp::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let (c, keep) = connector("{}");
    let logs = Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![kv_str("service.name", "worker")],
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            log_records: vec![LogRecord::default(), LogRecord::default()],
            ..Default::default()
        }],
        ..Default::default()
    }]);
    c.aggregate_other(&logs);
    c.flush(true).await;
    let rows = rows(&keep);
    let (_, m, res) = rows
        .iter()
        .find(|(s, m, _)| s == "worker" && m.name == "service_summary")
        .unwrap();
    assert_eq!(get_str(res, "agent.name"), Some("unknown"));
    assert_eq!(sum_points(m)[0].1, 2.0);
}
