//! receiver_creator against a real Prometheus endpoint (an HTTP server in the test) and an observer
//! fed by the test: receivers start when an endpoint appears and matches, stop when it leaves, and a
//! repeated set (a re-list) starts nothing twice. The k8s_observer path end to end, against the API
//! double, is in tests/tests/receiver_creator.rs.

use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use vigil_core::{ComponentKind, Extension};

fn validate(yaml: &str) -> Result<(), String> {
    let cfg: Value = serde_saphyr::from_str(yaml).unwrap();
    registry()
        .validate(
            ComponentKind::Receiver,
            &ComponentId::new("receiver_creator", None),
            &cfg,
        )
        .map_err(|e| e.to_string())
}

#[test]
fn templates_are_checked_at_validate_with_their_key_paths() {
    let ok = "watch_observers: [k8s_observer]
receivers:
  prometheus/coredns:
    rule: type == \"pod\" && labels[\"k8s-app\"] == \"kube-dns\"
    config:
      config:
        scrape_configs:
          - job_name: coredns
            static_configs: [{targets: ['`endpoint`:9153']}]
  prometheus_simple:
    rule: type == \"port\" && pod.annotations[\"prometheus.io/scrape\"] == \"true\"
    config: {metrics_path: '`\"/metrics\"`'}
  redis:
    rule: type == \"port\" && port == 6379
";
    validate(ok).unwrap();
    for (yaml, want) in [
        ("{}", "receivers::receiver_creator::watch_observers: must name at least one"),
        (
            "watch_observers: [o]\nreceivers: {prometheus: {config: {}}}",
            "receivers::receiver_creator::receivers::prometheus::rule: rule cannot be empty",
        ),
        (
            "watch_observers: [o]\nreceivers: {prometheus: {rule: 'port == 1'}}",
            "receivers::prometheus::rule: rule must specify type",
        ),
        (
            "watch_observers: [o]\nreceivers: {prometheus: {rule: 'type == \"port\" && len(name) > 1'}}",
            "receivers::prometheus::rule: function call len() at column 19 is not supported",
        ),
        (
            "watch_observers: [o]\nreceivers: {prometheus: {rule: 'type == \"port\"', config: {x: '`port * 2`'}}}",
            "receivers::prometheus::config::x: in `port * 2`: '*' at column 6 is not supported",
        ),
        (
            "watch_observers: [o]\nreceivers: {prometheus: {rule: 'type == \"port\"', resource_attributes: {a: 1}}}",
            "receivers::prometheus::resource_attributes::a: unsupported value 1",
        ),
        (
            "watch_observers: [o]\nresource_attributes: {pods: {a: b}}",
            "resource_attributes::pods: resource attributes for unsupported endpoint type",
        ),
        (
            // The receiver's own validate, run on a sample endpoint, finds the bad key.
            "watch_observers: [o]\nreceivers: {prometheus: {rule: 'type == \"port\"', config: {config: {scrape_configs: [{job_name: a, scrape_interval: often}]}}}}",
            "receivers::prometheus::config: ",
        ),
        (
            "watch_observers: [o]\nreceivers: {receiver_creator/x: {rule: 'type == \"port\"'}}",
            "cannot start another receiver_creator",
        ),
    ] {
        let e = validate(yaml).unwrap_err();
        assert!(e.contains(want), "{yaml}\n  got: {e}\n  want: {want}");
    }
}

/// A host file a template names is checked when an endpoint matches, as otelcol checks the whole
/// template only then: validate passes on a machine without the service account token, and the
/// receiver for a matching endpoint fails (start_one logs it and counts a failed receiver).
#[test]
fn host_files_in_templates_are_checked_when_an_endpoint_matches() {
    let yaml = "watch_observers: [k8s_observer]
receivers:
  prometheus/apiserver:
    rule: type == \"port\" && port == 6443
    config:
      config:
        scrape_configs:
          - job_name: apiserver
            authorization: {credentials_file: /nonexistent/vigil-test/token}
            static_configs: [{targets: ['`endpoint`']}]
  hostmetrics:
    rule: type == \"k8s.node\"
    config: {root_path: /nonexistent/vigil-test/hostfs, scrapers: {cpu: {}}}
";
    validate(yaml).unwrap();
    let cfg: Config = serde_saphyr::from_str(yaml).unwrap();
    let templates = check(&ComponentId::new("receiver_creator", None), &cfg).unwrap();
    for t in &templates {
        let ep = sample_endpoint(rule_type(&cfg.receivers[&t.key].rule).unwrap());
        let e = resolve_config(t, &ep, &t.id).unwrap_err();
        assert!(e.host_path, "{}: {e}", t.key);
        assert!(e.message.contains("/nonexistent/vigil-test/"), "{e}");
    }
    // A syntax mistake next to the missing file still fails validate.
    let bad = yaml.replace(
        "job_name: apiserver",
        "job_name: apiserver\n            scrape_interval: often",
    );
    let e = validate(&bad).unwrap_err();
    assert!(
        e.contains("receivers::prometheus/apiserver::config: "),
        "{e}"
    );
}

/// Records every batch.
#[derive(Default)]
struct Sink(Mutex<Vec<Telemetry>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        self.0.lock().unwrap().push(data);
        Ok(())
    }
}

struct TestObserver(Feed);

#[async_trait]
impl Component for TestObserver {}

impl Extension for TestObserver {
    fn observer(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.0.clone()))
    }
}

/// A Prometheus text endpoint on a free port; returns the port and the scrape count.
async fn metrics_server() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = Arc::clone(&h);
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                "# TYPE demo_requests_total counter\ndemo_requests_total 42\n"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (port, hits)
}

fn hostport(port: u16) -> Endpoint {
    Endpoint {
        id: format!("(host_observer)127.0.0.1-{port}-TCP-1"),
        target: format!("127.0.0.1:{port}"),
        kind: "hostport",
        details: json!({"process_name": "demo", "command": "demo --serve", "port": port,
            "transport": "TCP", "is_ipv6": false})
        .as_object()
        .cloned()
        .unwrap(),
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The resource attributes of every batch that holds the test's metric.
fn metric_resources(sink: &Sink) -> Vec<Vec<vigil_core::otlp::common::v1::KeyValue>> {
    sink.0
        .lock()
        .unwrap()
        .iter()
        .filter_map(|t| match t {
            Telemetry::Metrics(rm) => Some(rm.clone()),
            _ => None,
        })
        .flatten()
        .filter(|rm| {
            rm.scope_metrics
                .iter()
                .flat_map(|s| &s.metrics)
                .any(|m| m.name == "demo_requests_total")
        })
        .map(|rm| rm.resource.unwrap_or_default().attributes)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_endpoint_starts_a_scrape_and_its_leaving_stops_it() {
    let (port, hits) = metrics_server().await;
    let (other_port, other_hits) = metrics_server().await;
    let feed = Feed::default();
    let mut exts: HashMap<ComponentId, Arc<dyn Extension>> = HashMap::new();
    exts.insert(
        ComponentId::new("host_observer", None),
        Arc::new(TestObserver(feed.clone())),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = Host::new(exts, tx);
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone() as Arc<dyn Consumer>);
    let cfg: Config = serde_saphyr::from_str(&format!(
        "watch_observers: [host_observer]
receivers:
  prometheus/demo:
    rule: type == \"hostport\" && process_name == \"demo\" && port == {port}
    resource_attributes:
      service.name: '`process_name`'
    config:
      config:
        scrape_configs:
          - job_name: demo
            scrape_interval: 200ms
            static_configs: [{{targets: ['`endpoint`']}}]
"
    ))
    .unwrap();
    let id = ComponentId::new("receiver_creator", None);
    let rc = build(
        vigil_core::Settings::new(ComponentKind::Receiver, &id),
        cfg,
        next,
    )
    .unwrap();
    rc.start(&host).await.unwrap();

    // Two endpoints; only one matches the rule.
    let set = |eps: &[Endpoint]| eps.iter().map(|e| (e.id.clone(), e.clone())).collect();
    feed.publish(set(&[hostport(port), hostport(other_port)]));
    wait_for("scraped metrics", || !metric_resources(&sink).is_empty()).await;
    assert_eq!(rc.running().await, 1);
    let attrs = &metric_resources(&sink)[0];
    assert_eq!(
        vigil_core::attrs::get_str(attrs, "service.name"),
        Some("demo"),
        "{attrs:?}"
    );
    assert_eq!(other_hits.load(Ordering::SeqCst), 0);

    // The same set again (a re-list) starts nothing more.
    feed.publish(set(&[hostport(other_port), hostport(port)]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rc.running().await, 1);

    // The endpoint leaves: its scrape stops.
    feed.publish(set(&[hostport(other_port)]));
    let inner = Arc::clone(&rc.inner);
    let until = Instant::now() + Duration::from_secs(10);
    while inner.running.lock().await.count != 0 {
        assert!(Instant::now() < until, "the receiver did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        hits.load(Ordering::SeqCst) <= after + 1,
        "scrapes went on after the endpoint left"
    );
    rc.shutdown().await.unwrap();
}

#[tokio::test]
async fn max_receivers_refuses_the_rest() {
    let feed = Feed::default();
    let mut exts: HashMap<ComponentId, Arc<dyn Extension>> = HashMap::new();
    exts.insert(
        ComponentId::new("host_observer", None),
        Arc::new(TestObserver(feed.clone())),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let host = Host::new(exts, tx);
    let mut next = NextConsumers::new();
    next.insert(
        Signal::Metrics,
        Arc::new(Sink::default()) as Arc<dyn Consumer>,
    );
    let cfg: Config = serde_saphyr::from_str(
        "watch_observers: [host_observer]
max_receivers: 2
receivers:
  prometheus:
    rule: type == \"hostport\"
    config:
      config:
        scrape_configs:
          - job_name: x
            scrape_interval: 1h
            static_configs: [{targets: ['`endpoint`']}]
",
    )
    .unwrap();
    let id = ComponentId::new("receiver_creator", Some("bounded"));
    let rc = build(
        vigil_core::Settings::new(ComponentKind::Receiver, &id),
        cfg,
        next,
    )
    .unwrap();
    rc.start(&host).await.unwrap();
    feed.publish((1..=5).map(hostport).map(|e| (e.id.clone(), e)).collect());
    let until = Instant::now() + Duration::from_secs(10);
    while rc.inner.running.lock().await.by_endpoint.len() < 5 {
        assert!(Instant::now() < until, "the endpoints were not all seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rc.running().await, 2);
    rc.shutdown().await.unwrap();
    assert_eq!(rc.running().await, 0);
}

#[test]
fn discovery_annotations_make_metrics_and_logs_templates() {
    let pod = json!({"name": "web-1", "uid": "u1", "namespace": "shop", "labels": {},
        "annotations": {"io.opentelemetry.discovery.metrics/enabled": "true",
            "io.opentelemetry.discovery.metrics/scraper": "prometheus",
            "io.opentelemetry.discovery.metrics.9090/config":
                "config:\n  scrape_configs: [{job_name: web, static_configs: [{targets: ['`endpoint`']}]}]\n",
            "io.opentelemetry.discovery.logs.sidecar/enabled": "false"}});
    let port = Endpoint {
        id: "k8s_observer/u1/(9090)".into(),
        target: "10.0.0.9:9090".into(),
        kind: "port",
        details: json!({"name": "", "port": 9090, "transport": "TCP", "pod": pod})
            .as_object()
            .cloned()
            .unwrap(),
    };
    let container = |name: &str| Endpoint {
        id: format!("k8s_observer/u1/{name}"),
        target: "10.0.0.9".into(),
        kind: "pod.container",
        details: json!({"name": name, "container_name": name, "pod": pod})
            .as_object()
            .cloned()
            .unwrap(),
    };
    let mut d = Discovery {
        enabled: true,
        ..Default::default()
    };
    let t = hints::template(&d, &port).unwrap().unwrap();
    assert_eq!(t.key, "prometheus/u1_9090");
    assert_eq!(t.signals, Some(Signal::Metrics));
    // The config validates for the real prometheus receiver once `endpoint` is dropped.
    let cfg = resolve_config(&t, &port, &t.id).unwrap();
    assert!(cfg.get("endpoint").is_none(), "{cfg}");
    assert_eq!(
        cfg["config"]["scrape_configs"][0]["static_configs"][0]["targets"][0],
        "10.0.0.9:9090"
    );
    // Logs: off without the annotation; on through default_annotations; off where the pod says so.
    assert!(hints::template(&d, &container("app")).unwrap().is_none());
    d.default_annotations.insert(
        "io.opentelemetry.discovery.logs/enabled".into(),
        "true".into(),
    );
    let t = hints::template(&d, &container("app")).unwrap().unwrap();
    assert_eq!(t.key, "filelog/u1_app");
    assert_eq!(
        t.config["include"][0],
        "/var/log/pods/shop_web-1_u1/app/*.log"
    );
    assert!(hints::template(&d, &container("sidecar"))
        .unwrap()
        .is_none());
    d.ignore_receivers.push("filelog".into());
    assert!(hints::template(&d, &container("app")).unwrap().is_none());
}
