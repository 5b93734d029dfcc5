//! ECS cannot run here, so these tests use a double of the task metadata endpoint v4: a local HTTP
//! server answering `/task` and `/task/stats` with documents shaped as AWS documents them (an EC2
//! task with the CNI pause container, a running `curl` container with two interfaces, and an
//! exited one-shot container whose stats are `null`).

use super::*;
use crate::test_servers::{attr_of, points};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use vigil_core::otlp::metrics::v1::{metric::Data, number_data_point, ResourceMetrics};
use vigil_core::{ConsumeError, Consumer, Host, Telemetry};

/// Collects what the receiver sends.
#[derive(Default)]
struct Sink(std::sync::Mutex<Vec<Vec<ResourceMetrics>>>);

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Telemetry::Metrics(m) = data {
            vigil_core::lock(&self.0).push(m);
        }
        Ok(())
    }
}

const ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c";
const PAUSE: &str = "598cba581fe3f939459eaba1e071d5c93bb2c49b7d1ba7db6bb19deeb70d8e38";
const CURL: &str = "ee08638adaaf009d78c248913f629e38299471d45fe7dc944d1039077e3424ca";
const INIT: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";

fn task() -> Value {
    json!({
        "Cluster": "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        "TaskARN": ARN,
        "Family": "curltest",
        "ServiceName": "MyService",
        "Revision": "26",
        "DesiredStatus": "RUNNING",
        "KnownStatus": "RUNNING",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "PullStartedAt": "2020-10-02T00:43:06.202617438Z",
        "PullStoppedAt": "2020-10-02T00:43:06.31288465Z",
        "AvailabilityZone": "us-west-2d",
        "VPCID": "vpc-1234567890abcdef0",
        "LaunchType": "EC2",
        "Containers": [
            {
                "DockerId": PAUSE,
                "Name": "~internal~ecs~pause",
                "DockerName": "ecs-curltest-26-internalecspause-e292d586b6f9dade4a00",
                "Image": "amazon/amazon-ecs-pause:0.1.0",
                "ImageID": "",
                "Labels": {"com.amazonaws.ecs.cluster": "default", "com.amazonaws.ecs.container-name": "~internal~ecs~pause"},
                "DesiredStatus": "RESOURCES_PROVISIONED",
                "KnownStatus": "RESOURCES_PROVISIONED",
                "Limits": {"CPU": 0, "Memory": 0},
                "CreatedAt": "2020-10-02T00:43:05.602352471Z",
                "StartedAt": "2020-10-02T00:43:06.076707576Z",
                "Type": "CNI_PAUSE",
                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.61"]}]
            },
            {
                "DockerId": CURL,
                "Name": "curl",
                "DockerName": "ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00",
                "Image": "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest",
                "ImageID": "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553",
                "Labels": {"com.amazonaws.ecs.cluster": "default", "com.amazonaws.ecs.container-name": "curl"},
                "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING",
                "Limits": {"CPU": 10, "Memory": 128},
                "CreatedAt": "2020-10-02T00:43:06.326590752Z",
                "StartedAt": "2020-10-02T00:43:06.767535449Z",
                "Type": "NORMAL",
                "LogDriver": "awslogs",
                "ContainerARN": "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9",
                "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.2.61"]}]
            },
            {
                "DockerId": INIT,
                "Name": "init",
                "DockerName": "ecs-curltest-26-init-c8a9e7f2b1d3e4f5a600",
                "Image": "public.ecr.aws/docker/library/busybox",
                "ImageID": "sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741",
                "Labels": {},
                "DesiredStatus": "STOPPED",
                "KnownStatus": "STOPPED",
                "ExitCode": 0,
                "Limits": {"CPU": 2, "Memory": 16},
                "CreatedAt": "2020-10-02T00:43:05.9Z",
                "StartedAt": "2020-10-02T00:43:06Z",
                "FinishedAt": "2020-10-02T00:43:08.5Z",
                "Type": "NORMAL",
                "Networks": []
            }
        ]
    })
}

fn cpu(total: u64) -> Value {
    json!({
        "cpu_usage": {"total_usage": total, "percpu_usage": [total / 3 * 2, total - total / 3 * 2],
                      "usage_in_kernelmode": 30000000, "usage_in_usermode": 100000000},
        "system_cpu_usage": 4000000000000u64,
        "online_cpus": 2,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}
    })
}

fn net(rx: u64, tx: u64) -> Value {
    json!({"rx_bytes": rx, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 1,
           "tx_bytes": tx, "tx_packets": 12, "tx_errors": 0, "tx_dropped": 2})
}

fn stats() -> Value {
    let blk = |op: &str, v: u64| json!({"major": 202, "minor": 26368, "op": op, "value": v});
    json!({
        PAUSE: null,
        INIT: null,
        CURL: {
            "read": "2020-10-02T00:51:13.5Z",
            "preread": "2020-10-02T00:51:12.5Z",
            "pids_stats": {"current": 3},
            "blkio_stats": {
                "io_service_bytes_recursive": [blk("Read", 4096), blk("Write", 8192), blk("Sync", 12288), blk("Async", 0), blk("Total", 12288)],
                "io_serviced_recursive": [], "io_queue_recursive": [], "io_service_time_recursive": [],
                "io_wait_time_recursive": [], "io_merged_recursive": [], "io_time_recursive": [], "sectors_recursive": []
            },
            "num_procs": 0,
            "storage_stats": {},
            "cpu_stats": cpu(150000000),
            "precpu_stats": cpu(100000000),
            "memory_stats": {
                "usage": 10485760, "max_usage": 12582912, "limit": 134217728,
                "stats": {"cache": 2097152, "rss": 8388608, "total_cache": 2097152}
            },
            "name": "/ecs-curltest-26-curl-a0e7dba5aca6d8cb2e00",
            "id": CURL,
            "networks": {"eth0": net(1500, 2500), "eth1": net(500, 500)},
            "network_rate_stats": {"rx_bytes_per_sec": 43.5, "tx_bytes_per_sec": 21.25}
        }
    })
}

/// The double: `failing` answers `/task/stats` with 500.
async fn serve(failing: Arc<AtomicBool>) -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/task", get(|| async { axum::Json(task()) }))
        .route(
            "/task/stats",
            get(move || {
                let failing = failing.clone();
                async move {
                    if failing.load(Ordering::Relaxed) {
                        return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
                    }
                    Ok(axum::Json(stats()))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    // As ECS sets it: the container's base, without a trailing path.
    format!("http://{addr}")
}

fn id() -> ComponentId {
    ComponentId::parse("awsecscontainermetrics").unwrap()
}

fn load(v: Value) -> Result<AwsEcsContainerMetricsConfig, ConfigError> {
    let c: AwsEcsContainerMetricsConfig =
        vigil_core::config::decode(ComponentKind::Receiver, &id(), &v)?;
    check(&id(), &c)?;
    Ok(c)
}

fn resource<'a>(rms: &'a [ResourceMetrics], key: &str, value: &str) -> &'a ResourceMetrics {
    rms.iter()
        .find(|r| {
            r.resource
                .as_ref()
                .is_some_and(|res| vigil_core::attrs::get_str(&res.attributes, key) == Some(value))
        })
        .unwrap_or_else(|| panic!("no resource with {key}={value}"))
}

fn rattr<'a>(r: &'a ResourceMetrics, key: &str) -> Option<&'a str> {
    vigil_core::attrs::get_str(&r.resource.as_ref().unwrap().attributes, key)
}

fn num(rm: &ResourceMetrics, name: &str) -> f64 {
    let ps = points(std::slice::from_ref(rm), name);
    assert_eq!(ps.len(), 1, "{name}");
    match ps[0].value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => panic!("{name}: no value"),
    }
}

/// One scrape of the double: a resource for `curl` (its metrics), one for the exited `init` (its
/// run time), none for the pause container (no stats, not finished), and the task's; otelcol's
/// arithmetic, units, types and resource attributes.
#[tokio::test]
async fn scrapes_the_task_metadata_endpoint_double() {
    let base = serve(Arc::new(AtomicBool::new(false))).await;
    let s = build(&id(), &load(json!({})).unwrap(), &format!("{base}/")).unwrap();
    let got = s.scrape().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let rms = got.metrics;
    assert_eq!(rms.len(), 3, "curl, init and the task");

    let c = resource(&rms, "container.name", "curl");
    for (k, v) in [
        ("container.id", CURL),
        (
            "container.image.name",
            "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest",
        ),
        ("aws.ecs.container.know_status", "RUNNING"),
        ("aws.ecs.task.arn", ARN),
        ("aws.ecs.cluster.name", "default"),
        ("aws.ecs.task.family", "curltest"),
        ("aws.ecs.task.revision", "26"),
        ("aws.ecs.task.id", "158d1c8083dd49d6b527399fd6414f5c"),
        ("aws.ecs.launchtype", "ec2"),
        ("aws.ecs.task.launch_type", "EC2"),
        ("cloud.region", "us-west-2"),
        ("cloud.account.id", "111122223333"),
        ("cloud.availability_zone", "us-west-2d"),
        ("aws.ecs.service.name", "MyService"),
    ] {
        assert_eq!(rattr(c, k), Some(v), "{k}");
    }
    assert_eq!(num(c, "container.memory.usage"), 10485760.0);
    assert_eq!(
        num(c, "container.memory.utilized"),
        8.0,
        "(usage - cache) in MiB"
    );
    assert_eq!(num(c, "container.memory.reserved"), 128.0);
    assert_eq!(
        num(c, "container.cpu.usage.vcpu"),
        0.05,
        "50ms of CPU in 1s"
    );
    assert_eq!(
        num(c, "container.cpu.utilized"),
        0.5,
        "5% over 10 CPU units"
    );
    assert_eq!(num(c, "container.cpu.cores"), 2.0);
    assert_eq!(
        num(c, "container.network.io.usage.rx_bytes"),
        2000.0,
        "eth0 + eth1"
    );
    assert_eq!(num(c, "container.network.io.usage.tx_dropped"), 4.0);
    assert_eq!(num(c, "container.network.rate.rx"), 43.5);
    assert_eq!(num(c, "container.storage.read_bytes"), 4096.0);
    assert_eq!(num(c, "container.storage.write_bytes"), 8192.0);
    let m = c.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == "container.cpu.usage.total")
        .unwrap();
    assert_eq!(m.unit, "Nanoseconds");
    assert!(matches!(&m.data, Some(Data::Sum(s)) if !s.is_monotonic));
    assert_eq!(c.scope_metrics[0].metrics.len(), 26);

    let init = resource(&rms, "container.name", "init");
    assert_eq!(num(init, "container.duration"), 2.5);
    assert_eq!(
        rattr(init, "container.image.tag"),
        None,
        "the v0 name is gone"
    );
    let tags = init
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .find(|kv| kv.key == "container.image.tags")
        .and_then(|kv| kv.value.as_ref())
        .map(|v| vigil_core::attrs::value_to_string(v.value.as_ref().unwrap()));
    assert_eq!(tags.as_deref(), Some("[latest]"));
    assert_eq!(
        rattr(init, "aws.ecs.container.finished_at"),
        Some("2020-10-02T00:43:08.5Z")
    );
    assert_eq!(init.scope_metrics[0].metrics.len(), 1);

    let t = rms.last().unwrap();
    assert_eq!(rattr(t, "container.name"), None);
    assert_eq!(rattr(t, "aws.ecs.task.arn"), Some(ARN));
    assert_eq!(
        num(t, "ecs.task.memory.reserved"),
        512.0,
        "the task's limit"
    );
    assert_eq!(num(t, "ecs.task.memory.utilized"), 8.0);
    assert_eq!(
        num(t, "ecs.task.cpu.reserved"),
        256.0,
        "0.25 vCPU in CPU units"
    );
    assert!((num(t, "ecs.task.cpu.utilized") - 51.2).abs() < 1e-9);
    assert_eq!(num(t, "ecs.task.network.io.usage.tx_bytes"), 3000.0);
    assert!(points(&rms, "ecs.task.cpu.usage.total")
        .iter()
        .all(|p| attr_of(p, "x").is_none()));
}

/// An endpoint answering 500 fails the scrape with the URL and status, and sends nothing.
#[tokio::test]
async fn a_failing_endpoint_fails_the_scrape() {
    let failing = Arc::new(AtomicBool::new(true));
    let base = serve(failing).await;
    let got = build(&id(), &load(json!({})).unwrap(), &base)
        .unwrap()
        .scrape()
        .await;
    assert!(got.metrics.is_empty());
    assert!(
        got.errors[0].contains("/task/stats") && got.errors[0].contains("500"),
        "{:?}",
        got.errors
    );
}

/// otelcol's key and default; unknown keys and a zero interval are refused; without the
/// variable the config validates and the receiver is created, and start fails naming it.
#[tokio::test]
async fn config_and_missing_endpoint() {
    assert_eq!(
        load(json!({})).unwrap().collection_interval,
        Duration::from_secs(20)
    );
    let e = load(json!({"endpoint": "http://x"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("endpoint"), "{e}");
    let e = load(json!({"collection_interval": "0s"}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("collection_interval"), "{e}");

    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, Arc::new(Sink::default()));
    let r = create(
        vigil_core::Settings::new(ComponentKind::Receiver, &id()),
        &load(json!({})).unwrap(),
        None,
        next,
    )
    .expect("created without the variable");
    let e = r.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(
        e.contains(ENDPOINT_ENV) && e.contains("awsecscontainermetrics"),
        "{e}"
    );
    r.shutdown().await.unwrap();
}

/// The receiver's loop: started against the double, it sends a batch after one interval.
#[tokio::test]
async fn the_receiver_sends_what_it_scrapes() {
    let base = serve(Arc::new(AtomicBool::new(false))).await;
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let r = create(
        vigil_core::Settings::new(ComponentKind::Receiver, &id()),
        &load(json!({"collection_interval": "100ms"})).unwrap(),
        Some(base),
        next,
    )
    .unwrap();
    r.start(&Host::detached()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while vigil_core::lock(&sink.0).is_empty() {
        assert!(Instant::now() < deadline, "no batch in 10s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.shutdown().await.unwrap();
    let got = vigil_core::lock(&sink.0).concat();
    assert_eq!(got.len(), 3);
}

#[test]
fn image_names() {
    assert_eq!(image_name("nginx"), ("nginx", "latest"));
    assert_eq!(image_name("host:5000/app:1.2"), ("host:5000/app", "1.2"));
    assert_eq!(image_name("host:5000/app"), ("host:5000/app", "latest"));
    assert_eq!(image_name("app:3@sha256:abc"), ("app", "3"));
}
