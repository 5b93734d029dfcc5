//! EMF translation: grouping, declarations, rollups, placeholders, deltas, config errors.

use super::*;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use vigil_core::attrs::kv_str;

fn id() -> ComponentId {
    ComponentId::parse("awsemf/test").unwrap()
}

fn decode(v: Value) -> Result<AwsEmfConfig, ConfigError> {
    let cfg: AwsEmfConfig =
        vigil_core::config::decode(vigil_core::ComponentKind::Exporter, &id(), &v)?;
    cfg.validate(&id())?;
    Ok(cfg)
}

fn point(v: f64, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv_str(k, *v)).collect(),
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn batch(cumulative: f64) -> Vec<ResourceMetrics> {
    vec![ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv_str("ClusterName", "prod"),
                kv_str("k8s.node.name", "node-1"),
                kv_str("Sources", r#"["cadvisor"]"#),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "node_cpu_utilization".into(),
                    unit: "%".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(
                            42.5,
                            &[("NodeName", "node-1"), ("InstanceId", "i-1")],
                        )],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "node_network_total_bytes".into(),
                    unit: "By".into(),
                    data: Some(Data::Sum(Sum {
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                        data_points: vec![point(
                            cumulative,
                            &[("NodeName", "node-1"), ("InstanceId", "i-1")],
                        )],
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "unselected".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![point(
                            1.0,
                            &[("NodeName", "node-1"), ("InstanceId", "i-1")],
                        )],
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    }]
}

fn translator(v: Value) -> Translator {
    Translator::new(decode(v).unwrap(), &id()).unwrap()
}

#[test]
fn container_insights_shape() {
    let t = translator(json!({
        "namespace": "ContainerInsights",
        "log_group_name": "/aws/containerinsights/{ClusterName}/performance",
        "log_stream_name": "{NodeName}",
        "resource_to_telemetry_conversion": {"enabled": true},
        "parse_json_encoded_attr_values": ["Sources"],
        "metric_declarations": [
            {"dimensions": [["NodeName", "InstanceId", "ClusterName"], ["ClusterName"]],
             "metric_name_selectors": ["^node_cpu_utilization$", "node_network_total_bytes"]},
            {"dimensions": [["ClusterName", "Missing"]], "metric_name_selectors": ["node_cpu"]}
        ]
    }));
    // The cumulative sum's first point is only a baseline.
    let first = t.translate(&batch(1000.0), 1_700_000_000_000);
    let events = &first[&(
        "/aws/containerinsights/prod/performance".to_string(),
        "node-1".to_string(),
    )];
    assert_eq!(events.len(), 1);
    let e: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(e["node_cpu_utilization"], 42.5);
    assert!(e.get("node_network_total_bytes").is_none(), "{e}");
    assert_eq!(
        e["Sources"],
        json!(["cadvisor"]),
        "JSON-encoded attribute parsed"
    );
    assert_eq!(e["ClusterName"], "prod");
    assert_eq!(e["Version"], "1");
    assert_eq!(e["_aws"]["Timestamp"], 1_700_000_000_000i64);
    let cw = &e["_aws"]["CloudWatchMetrics"];
    assert_eq!(cw.as_array().unwrap().len(), 1, "{cw}");
    assert_eq!(cw[0]["Namespace"], "ContainerInsights");
    assert_eq!(
        cw[0]["Dimensions"],
        json!([["ClusterName", "InstanceId", "NodeName"], ["ClusterName"]]),
        "sets sorted, the set with a missing label left out"
    );
    assert_eq!(
        cw[0]["Metrics"],
        json!([{"Name": "node_cpu_utilization", "Unit": "Percent"}])
    );
    assert_eq!(e["unselected"], 1.0, "an unselected metric stays a field");

    // Points of another metric type are another event, as otelcol groups them.
    let second = t.translate(&batch(1500.0), 1_700_000_060_000);
    let events = second.values().next().unwrap();
    assert_eq!(events.len(), 2);
    let sum: Value = events
        .iter()
        .map(|e| serde_json::from_str::<Value>(&e.1).unwrap())
        .find(|e| e.get("node_network_total_bytes").is_some())
        .unwrap();
    assert_eq!(
        sum["node_network_total_bytes"], 500.0,
        "the delta of the cumulative sum"
    );
    assert_eq!(
        sum["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{"Name": "node_network_total_bytes", "Unit": "Bytes"}])
    );
}

#[test]
fn defaults_rollup_and_version_zero() {
    let t = translator(
        json!({"dimension_rollup_option": "ZeroAndSingleDimensionRollup",
                              "retain_initial_value_of_delta_metric": true}),
    );
    let out = t.translate(&batch(7.0), 5);
    let ((group, stream), events) = out.iter().next().unwrap();
    assert_eq!(
        (group.as_str(), stream.as_str()),
        ("/metrics/default", "otel-stream")
    );
    let e: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(e["node_network_total_bytes"], 7.0, "initial value retained");
    assert_eq!(
        e["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["InstanceId", "NodeName"], [], ["InstanceId"], ["NodeName"]])
    );
    let t = translator(json!({"version": "0", "namespace": "ns"}));
    let out = t.translate(&batch(7.0), 5);
    let e: Value = serde_json::from_str(&out.values().next().unwrap()[0].1).unwrap();
    assert_eq!(e["Version"], "0");
    assert_eq!(e["Timestamp"], "5");
    assert!(e.get("_aws").is_none());
    assert_eq!(e["CloudWatchMetrics"][0]["Namespace"], "ns");
    assert_eq!(
        replace_placeholders("/a/{TaskId}/{Nope}", &BTreeMap::new()),
        "/a/undefined/undefined"
    );
}

#[test]
fn config_errors_name_the_key() {
    let err = |v: Value| decode(v).unwrap_err().to_string();
    assert!(err(json!({"role_arn": "arn:aws:iam::1:role/x"}))
        .contains("role_arn: assuming a role is not supported"));
    assert!(err(json!({"output_destination": "file"})).contains("output_destination"));
    assert!(err(json!({"dimension_rollup_option": "All"})).contains("dimension_rollup_option"));
    assert!(err(json!({"log_retention": 2})).contains("log_retention"));
    assert!(err(json!({"eks_fargate_container_insights_enabled": true})).contains("not built"));
    assert!(
        err(json!({"metric_declarations": [{"metric_name_selectors": ["("]}]}))
            .contains("metric_declarations::0::metric_name_selectors::0")
    );
    assert!(
        err(json!({"metric_descriptors": [{"metric_name": "a", "unit": "Parsecs"}]}))
            .contains("metric_descriptors::0::unit")
    );
    assert!(err(json!({"nope": 1})).contains("nope"));
    decode(json!({"region": "us-west-2", "endpoint": "logs.example.com", "version": "0"})).unwrap();
}
