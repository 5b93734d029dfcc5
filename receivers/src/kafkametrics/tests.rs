//! Tests against a real Kafka-protocol broker: tansu (the broker the kafka tests use, installed by
//! scripts/test.sh step 4), started on an ephemeral port with its SQLite storage in a temporary
//! directory. Messages are written to chosen partitions and a consumer group's offsets committed
//! with rdkafka, then the receiver's offsets and lag are checked against them.

use super::*;
use crate::test_servers::{attr_of, free_port, points, Server};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::CommitMode;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use vigil_core::otlp::metrics::v1::{number_data_point, NumberDataPoint, ResourceMetrics};

/// The tansu binary scripts/test.sh installs (`VIGIL_TEST_TANSU` overrides it).
fn tansu() -> PathBuf {
    let p = std::env::var_os("VIGIL_TEST_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("vigil/tansu-0.6.0/bin/tansu")
        });
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, whose step 4 installs the tansu Kafka broker",
        p.display()
    );
    p
}

fn start_broker(dir: &std::path::Path) -> (String, Server) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(tansu());
    cmd.arg("broker")
        .args(["--kafka-listener-url", &format!("tcp://{addr}")])
        .args(["--kafka-advertised-listener-url", &format!("tcp://{addr}")])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .env("RUST_LOG", "warn")
        .current_dir(dir);
    let server = Server::spawn(cmd, &dir.join("tansu.log"), port, libc::SIGTERM);
    (addr, server)
}

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// Creates `topic` with `partitions` and writes `counts[p]` messages to partition `p`.
async fn topic_with_messages(brokers: &str, topic: &str, counts: &[usize]) {
    let admin: AdminClient<_> = client(brokers).create().expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(
                topic,
                counts.len() as i32,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("create topic");
    assert!(created.iter().all(|r| r.is_ok()), "{created:?}");
    let producer: BaseProducer = client(brokers).create().expect("producer");
    for (p, &n) in counts.iter().enumerate() {
        for i in 0..n {
            let payload = format!("m-{p}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(p as i32)
                        .payload(&payload),
                )
                .expect("enqueue");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Commits `offsets` (partition → next offset to read) for `group` without joining it.
fn commit(brokers: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let c: BaseConsumer = client(brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .expect("offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

fn int(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        _ => panic!("not an int point: {p:?}"),
    }
}

/// The value of `name` where every `(key, value)` of `attrs` matches.
fn value(rms: &[ResourceMetrics], name: &str, attrs: &[(&str, &str)]) -> Option<i64> {
    points(rms, name)
        .into_iter()
        .find(|p| {
            attrs.iter().all(|(k, v)| match attr_of(p, k) {
                Some(s) => s == *v,
                None => p
                    .attributes
                    .iter()
                    .find(|kv| kv.key == *k)
                    .and_then(|kv| kv.value.as_ref())
                    .and_then(|v| v.value.as_ref())
                    .is_some_and(|x| {
                        matches!(x, vigil_core::otlp::common::v1::any_value::Value::IntValue(i) if i.to_string() == *v)
                    }),
            })
        })
        .map(int)
}

fn load(v: serde_json::Value) -> Result<KafkaMetricsConfig, ConfigError> {
    let id = ComponentId::parse("kafkametrics").unwrap();
    let c: KafkaMetricsConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    check(&id, &c)?;
    Ok(c)
}

fn scraper(v: serde_json::Value) -> KafkaMetricsScraper {
    build(
        &ComponentId::parse("kafkametrics").unwrap(),
        &load(v).expect("config"),
    )
    .expect("scraper")
}

/// Five messages on partition 0 of `orders` and two on partition 1; group `billing` committed 3
/// and 0 (lag 2 and 2). The brokers and topics scrapers with otelcol's attributes and units;
/// topic_match leaves out `_internal`.
///
/// tansu 0.6.0 (SQLite storage) answers ListGroups and OffsetFetch but drops the connection on
/// DescribeGroups (its stored group fails to decode), and librdkafka lists groups with both: the
/// consumers scraper's listing fails against it, which the test asserts, and the per-group part
/// (OffsetFetch, lag against the newest offsets) is run on the groups the test committed.
#[tokio::test]
async fn offsets_and_lag_from_a_real_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (brokers, _broker) = start_broker(dir.path());
    topic_with_messages(&brokers, "orders", &[5, 2]).await;
    topic_with_messages(&brokers, "_internal", &[1]).await;
    {
        let b = brokers.clone();
        tokio::task::spawn_blocking(move || {
            commit(&b, "billing", "orders", &[(0, 3), (1, 0)]);
            commit(&b, "audit", "_internal", &[(0, 1)]);
        })
        .await
        .unwrap();
    }
    let s = scraper(json!({
        "brokers": [brokers],
        "scrapers": ["brokers", "topics"],
        "resource_attributes": {"kafka.cluster.alias": {"enabled": true}},
    }))
    .scrape()
    .await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let m = &s.metrics;
    assert_eq!(value(m, "kafka.brokers", &[]), Some(1));
    assert_eq!(
        value(m, "kafka.topic.partitions", &[("topic", "orders")]),
        Some(2)
    );
    // The default topic_match leaves out topics whose name starts with `_`.
    assert_eq!(
        value(m, "kafka.topic.partitions", &[("topic", "_internal")]),
        None
    );
    for (p, newest) in [("0", 5), ("1", 2)] {
        let at = [("topic", "orders"), ("partition", p)];
        assert_eq!(
            value(m, "kafka.partition.current_offset", &at),
            Some(newest)
        );
        assert_eq!(value(m, "kafka.partition.oldest_offset", &at), Some(0));
        assert_eq!(value(m, "kafka.partition.replicas", &at), Some(1));
        assert_eq!(value(m, "kafka.partition.replicas_in_sync", &at), Some(1));
    }
    let res = m[0].resource.as_ref().unwrap();
    assert_eq!(
        vigil_core::attrs::get_str(&res.attributes, "kafka.cluster.alias"),
        Some("kafka-cluster")
    );
    let unit = |name: &str| {
        m[0].scope_metrics[0]
            .metrics
            .iter()
            .find(|x| x.name == name)
            .map(|x| x.unit.clone())
    };
    assert_eq!(unit("kafka.partition.current_offset").as_deref(), Some("1"));
    assert_eq!(unit("kafka.brokers").as_deref(), Some("{brokers}"));

    // The consumers scraper: tansu cannot describe groups, so the listing fails, named.
    let cfg = json!({"brokers": [brokers], "scrapers": ["consumers"], "topic_match": ".*"});
    let s = scraper(cfg.clone()).scrape().await;
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("cannot list the consumer groups")),
        "{:?}",
        s.errors
    );
    // The per-group part against the broker's committed offsets.
    let sc = scraper(cfg);
    let inner = Arc::clone(&sc.inner);
    let (m, errors) = tokio::task::spawn_blocking(move || {
        let topics = [
            Topic {
                name: "orders".into(),
                partitions: vec![(0, 1, 1), (1, 1, 1)],
            },
            Topic {
                name: "_internal".into(),
                partitions: vec![(0, 1, 1)],
            },
        ];
        let newest: BTreeMap<(String, i32), i64> = [
            (("orders".to_string(), 0), 5),
            (("orders".to_string(), 1), 2),
            (("_internal".to_string(), 0), 1),
        ]
        .into();
        let mut b = Builder::new(
            METRICS,
            &inner.metrics,
            &inner.resource_attrs,
            SCOPE,
            inner.start,
        );
        let mut errors = Vec::new();
        let tpl = partitions(&topics);
        for g in ["billing", "audit", "nobody"] {
            inner.scrape_group(&mut b, g, 0, &topics, &tpl, &newest, &mut errors);
        }
        (b.finish(vec![]), errors)
    })
    .await
    .unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let m = &m;
    let g = |p: &'static str| [("group", "billing"), ("topic", "orders"), ("partition", p)];
    assert_eq!(value(m, "kafka.consumer_group.offset", &g("0")), Some(3));
    assert_eq!(value(m, "kafka.consumer_group.offset", &g("1")), Some(0));
    assert_eq!(value(m, "kafka.consumer_group.lag", &g("0")), Some(2));
    assert_eq!(value(m, "kafka.consumer_group.lag", &g("1")), Some(2));
    let gt = [("group", "billing"), ("topic", "orders")];
    assert_eq!(value(m, "kafka.consumer_group.offset_sum", &gt), Some(3));
    assert_eq!(value(m, "kafka.consumer_group.lag_sum", &gt), Some(4));
    assert_eq!(
        value(m, "kafka.consumer_group.members", &[("group", "billing")]),
        Some(0)
    );
    // audit consumes only _internal, where it is caught up; it is not reported on orders.
    let at = [
        ("group", "audit"),
        ("topic", "_internal"),
        ("partition", "0"),
    ];
    assert_eq!(value(m, "kafka.consumer_group.lag", &at), Some(0));
    assert_eq!(
        value(
            m,
            "kafka.consumer_group.lag_sum",
            &[("group", "audit"), ("topic", "orders")]
        ),
        None
    );
    // A group with no committed offset has members but no offsets.
    assert!(points(m, "kafka.consumer_group.offset")
        .iter()
        .all(|p| attr_of(p, "group") != Some("nobody")));

    // The brokers scraper alone sends one metric, and kafka.cluster.alias is off by default.
    let s = scraper(json!({"brokers": [brokers], "scrapers": ["brokers"]}))
        .scrape()
        .await;
    let names: Vec<&str> = s.metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["kafka.brokers"]);
    assert!(s.metrics[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .is_empty());
}

/// Nothing listens: the receiver starts (as otelcol's, which connects on the first scrape), and
/// each scrape fails within `timeout`, naming what it could not read.
#[tokio::test]
async fn a_cluster_that_cannot_be_reached_fails_the_scrape_not_the_start() {
    let port = free_port();
    let started = std::time::Instant::now();
    let s = scraper(json!({
        "brokers": [format!("127.0.0.1:{port}")],
        "scrapers": ["brokers"],
        "timeout": "1s",
    }))
    .scrape()
    .await;
    assert!(s.metrics.is_empty());
    assert!(
        s.errors[0].contains("cannot read the cluster's metadata"),
        "{:?}",
        s.errors
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn config_errors_name_their_key() {
    let e = load(json!({})).unwrap_err();
    assert_eq!(e.path, "scrapers", "{e}");
    let e = load(json!({"scrapers": ["partitions"]})).unwrap_err();
    assert_eq!(e.path, "scrapers");
    let e = load(json!({"scrapers": ["topics"], "topic_match": "(a"})).unwrap_err();
    assert_eq!(e.path, "topic_match");
    let e = load(json!({"scrapers": ["topics"], "brokers": ["nohost"]})).unwrap_err();
    assert_eq!(e.path, "brokers");
    let e = load(json!({"scrapers": ["topics"], "metrics": {"kafka.nope": {"enabled": true}}}))
        .unwrap_err();
    assert_eq!(e.path, "metrics::kafka.nope");
    let c = load(json!({"scrapers": ["brokers", "topics", "consumers"]})).unwrap();
    assert_eq!(c.client_id, "otel-metrics-receiver");
    assert_eq!(c.collection_interval, Duration::from_secs(60));
}
