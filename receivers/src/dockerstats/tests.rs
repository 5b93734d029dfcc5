//! Tests against a double of the Docker Engine API: Docker Engine cannot run here, so an HTTP
//! server on a Unix socket in a temporary directory answers `/v1.25/containers/json`,
//! `/containers/{id}/json` and `/containers/{id}/stats?stream=false` with JSON shaped as the
//! Engine API documents it (a cgroup v2 host: no percpu usage, memory `stats` with `anon`, `file`
//! and `inactive_file`, only `io_service_bytes_recursive` in `blkio_stats`).

use super::*;
use crate::test_servers::{attr_of, points};
use axum::extract::{Path as UrlPath, RawQuery, State as Shared};
use axum::routing::get;
use serde_json::{json, Value};
use std::sync::Mutex;
use vigil_core::otlp::metrics::v1::{number_data_point, NumberDataPoint, ResourceMetrics};
use vigil_core::NextConsumers;

const WEB: &str = "4f1a0c2e9b8d7f6a5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f";
const DB: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
const TOOL: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// What the double answers, and the paths it was asked for.
struct Engine {
    /// Answer every call with 500 (a daemon in trouble).
    failing: bool,
    requests: Mutex<Vec<String>>,
}

fn listed() -> Value {
    json!([
        {"Id": WEB, "Names": ["/web"], "Image": "nginx:1.27", "ImageID": "sha256:aa11", "Command": "nginx -g 'daemon off;'",
         "Created": 1764900000, "State": "running", "Status": "Up 2 hours", "Ports": [], "Labels": {"com.example.team": "web"},
         "HostConfig": {"NetworkMode": "bridge"}, "NetworkSettings": {"Networks": {}}, "Mounts": []},
        {"Id": DB, "Names": ["/db"], "Image": "postgres:16", "ImageID": "sha256:bb22", "Command": "docker-entrypoint.sh postgres",
         "Created": 1764900000, "State": "running", "Status": "Up 2 hours", "Ports": [], "Labels": {},
         "HostConfig": {"NetworkMode": "none"}, "NetworkSettings": {"Networks": {}}, "Mounts": []},
        {"Id": TOOL, "Names": ["/tool"], "Image": "busybox:latest", "ImageID": "sha256:cc33", "Command": "sleep 3600",
         "Created": 1764900000, "State": "running", "Status": "Up 1 minute", "Ports": [], "Labels": {},
         "HostConfig": {"NetworkMode": "bridge"}, "NetworkSettings": {"Networks": {}}, "Mounts": []}
    ])
}

fn inspect(id: &str) -> Option<Value> {
    let (name, image, image_id, hostname, env, labels, host_config) = match id {
        WEB => (
            "/web",
            "nginx:1.27",
            "sha256:aa11",
            "4f1a0c2e9b8d",
            json!(["APP_VERSION=1.4.2", "PATH=/usr/local/sbin:/usr/local/bin"]),
            json!({"com.example.team": "web"}),
            json!({"NanoCpus": 1_500_000_000i64, "CpuShares": 0, "CpuQuota": 0, "CpuPeriod": 0, "CpusetCpus": ""}),
        ),
        DB => (
            "/db",
            "postgres:16",
            "sha256:bb22",
            "9e8d7c6b5a4f",
            json!(["POSTGRES_PASSWORD=x"]),
            Value::Null,
            json!({"NanoCpus": 0, "CpuShares": 512, "CpuQuota": 50000, "CpuPeriod": 100000, "CpusetCpus": ""}),
        ),
        _ => return None,
    };
    Some(json!({
        "Id": id, "Created": "2026-12-05T18:00:00.000000000Z", "Path": "docker-entrypoint.sh", "Args": [],
        "State": {"Status": "running", "Running": true, "Paused": false, "Restarting": false, "OOMKilled": false,
                  "Dead": false, "Pid": 4242, "ExitCode": 0, "Error": "",
                  "StartedAt": "2026-12-05T18:00:01.123456789Z", "FinishedAt": "0001-01-01T00:00:00Z"},
        "Image": image_id, "Name": name, "RestartCount": if id == WEB { 2 } else { 0 },
        "HostConfig": host_config,
        "Config": {"Hostname": hostname, "Domainname": "", "User": "", "Env": env,
                   "Cmd": ["postgres"], "Image": image, "Labels": labels},
        "NetworkSettings": {}
    }))
}

/// A cgroup v2 stats answer: 0.1 s of CPU over 2 s of the host's 4 CPUs (20 %), 100 MiB used of
/// which 20 MiB inactive file cache, under a 1 GiB limit.
fn stats(id: &str) -> Value {
    let cpu = |total: u64, system: u64| {
        json!({"cpu_usage": {"total_usage": total, "usage_in_kernelmode": total / 4, "usage_in_usermode": total / 4 * 3},
               "system_cpu_usage": system, "online_cpus": 4,
               "throttling_data": {"periods": 7, "throttled_periods": 1, "throttled_time": 3000}})
    };
    let mut s = json!({
        "read": "2026-12-05T20:40:01.000000000Z", "preread": "2026-12-05T20:40:00.000000000Z",
        "id": id, "name": "/web", "num_procs": 0, "storage_stats": {},
        "pids_stats": {"current": 5, "limit": 4915},
        "blkio_stats": {
            "io_service_bytes_recursive": [
                {"major": 259, "minor": 0, "op": "read", "value": 4096},
                {"major": 259, "minor": 0, "op": "write", "value": 8192}],
            "io_serviced_recursive": null, "io_queue_recursive": null, "io_service_time_recursive": null,
            "io_wait_time_recursive": null, "io_merged_recursive": null, "io_time_recursive": null,
            "sectors_recursive": null},
        "cpu_stats": cpu(400_000_000, 2_000_000_000_000),
        "precpu_stats": cpu(300_000_000, 1_998_000_000_000),
        "memory_stats": {"usage": 104_857_600u64, "limit": 1_073_741_824u64,
            "stats": {"anon": 62_914_560u64, "file": 41_943_040u64, "inactive_file": 20_971_520u64,
                      "active_file": 20_971_520u64, "active_anon": 62_914_560u64, "inactive_anon": 0,
                      "pgfault": 1200, "pgmajfault": 3, "unevictable": 0, "shmem": 0, "sock": 0}},
        "networks": {"eth0": {"rx_bytes": 1500, "rx_packets": 10, "rx_errors": 0, "rx_dropped": 1,
                              "tx_bytes": 2500, "tx_packets": 12, "tx_errors": 0, "tx_dropped": 2}}
    });
    if id == DB {
        // `--network none`: no networks key at all.
        s.as_object_mut().unwrap().remove("networks");
    }
    s
}

async fn serve(engine: Arc<Engine>, dir: &std::path::Path) -> String {
    let sock = dir.join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind the socket");
    async fn log(e: &Engine, path: String) -> Result<(), axum::http::StatusCode> {
        vigil_core::lock(&e.requests).push(path);
        if e.failing {
            return Err(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        }
        Ok(())
    }
    let app = axum::Router::new()
        .route(
            "/v1.25/containers/json",
            get(|Shared(e): Shared<Arc<Engine>>| async move {
                log(&e, "/v1.25/containers/json".into()).await?;
                Ok::<_, axum::http::StatusCode>(axum::Json(listed()))
            }),
        )
        .route(
            "/v1.25/containers/{id}/json",
            get(
                |Shared(e): Shared<Arc<Engine>>, UrlPath(id): UrlPath<String>| async move {
                    log(&e, format!("/v1.25/containers/{id}/json")).await?;
                    inspect(&id)
                        .map(axum::Json)
                        .ok_or(axum::http::StatusCode::NOT_FOUND)
                },
            ),
        )
        .route(
            "/v1.25/containers/{id}/stats",
            get(
                |Shared(e): Shared<Arc<Engine>>,
                 UrlPath(id): UrlPath<String>,
                 RawQuery(q): RawQuery| async move {
                    let q = q.unwrap_or_default();
                    log(&e, format!("/v1.25/containers/{id}/stats?{q}")).await?;
                    // Without stream=false the Engine streams a reading a second, forever.
                    if q != "stream=false" {
                        return Err(axum::http::StatusCode::BAD_REQUEST);
                    }
                    Ok(axum::Json(stats(&id)))
                },
            ),
        )
        .with_state(engine);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("unix://{}", sock.display())
}

fn engine(failing: bool) -> Arc<Engine> {
    Arc::new(Engine {
        failing,
        requests: Mutex::new(Vec::new()),
    })
}

fn load(v: Value) -> Result<DockerStatsConfig, ConfigError> {
    let id = ComponentId::parse("docker_stats").unwrap();
    let c: DockerStatsConfig = vigil_core::config::decode(ComponentKind::Receiver, &id, &v)?;
    check(&id, &c)?;
    Ok(c)
}

fn scraper(v: Value) -> DockerScraper {
    build(
        &ComponentId::parse("docker_stats").unwrap(),
        &load(v).expect("config"),
    )
    .expect("scraper")
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        Some(number_data_point::Value::AsDouble(v)) => v,
        None => panic!("no value: {p:?}"),
    }
}

/// The resource of container `name`.
fn of<'a>(rms: &'a [ResourceMetrics], name: &str) -> &'a ResourceMetrics {
    rms.iter()
        .find(|r| {
            vigil_core::attrs::get_str(&r.resource.as_ref().unwrap().attributes, "container.name")
                == Some(name)
        })
        .unwrap_or_else(|| panic!("no resource for container {name}"))
}

fn one(r: &ResourceMetrics, metric: &str) -> f64 {
    let p = points(std::slice::from_ref(r), metric);
    assert_eq!(p.len(), 1, "{metric}: {p:?}");
    value(p[0])
}

/// Two containers reported and one excluded by image; every default metric with otelcol's values
/// (the Docker CLI's CPU and memory formulas), attributes and resource attributes, and the user's
/// label and environment mappings.
#[tokio::test]
async fn scrapes_containers_through_the_engine_api_double() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(false);
    let endpoint = serve(Arc::clone(&e), dir.path()).await;
    let s = scraper(json!({
        "endpoint": endpoint,
        "excluded_images": ["busybox*"],
        "container_labels_to_metric_labels": {"com.example.team": "team"},
        "env_vars_to_metric_labels": {"APP_VERSION": "app.version"},
        "metrics": {"container.restarts": {"enabled": true}, "container.cpu.limit": {"enabled": true},
                    "container.pids.count": {"enabled": true}},
    }));
    let got = s.scrape().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    let m = &got.metrics;
    assert_eq!(m.len(), 2, "one resource per container");
    let web = of(m, "web");
    let attrs = &web.resource.as_ref().unwrap().attributes;
    for (k, v) in [
        ("container.id", WEB),
        ("container.image.name", "nginx:1.27"),
        ("container.hostname", "4f1a0c2e9b8d"),
        ("container.runtime", "docker"),
        ("team", "web"),
        ("app.version", "1.4.2"),
    ] {
        assert_eq!(vigil_core::attrs::get_str(attrs, k), Some(v), "{k}");
    }
    // Off by default.
    assert_eq!(
        vigil_core::attrs::get_str(attrs, "container.image.id"),
        None
    );
    assert_eq!(
        (one(web, "container.cpu.utilization") * 1e6).round() / 1e6,
        20.0
    );
    assert_eq!(one(web, "container.cpu.usage.total"), 400_000_000.0);
    assert_eq!(one(web, "container.cpu.usage.kernelmode"), 100_000_000.0);
    assert_eq!(one(web, "container.cpu.usage.usermode"), 300_000_000.0);
    assert_eq!(one(web, "container.memory.usage.total"), 83_886_080.0);
    assert_eq!(one(web, "container.memory.usage.limit"), 1_073_741_824.0);
    assert_eq!(one(web, "container.memory.percent"), 7.8125);
    assert_eq!(one(web, "container.memory.file"), 41_943_040.0);
    assert_eq!(one(web, "container.restarts"), 2.0);
    assert_eq!(one(web, "container.cpu.limit"), 1.5);
    assert_eq!(one(web, "container.pids.count"), 5.0);
    let blk = points(
        std::slice::from_ref(web),
        "container.blockio.io_service_bytes_recursive",
    );
    let write = blk
        .iter()
        .find(|p| attr_of(p, "operation") == Some("write"))
        .unwrap();
    assert_eq!(value(write), 8192.0);
    assert_eq!(attr_of(write, "device_major"), Some("259"));
    assert_eq!(attr_of(write, "device_minor"), Some("0"));
    let rx = points(
        std::slice::from_ref(web),
        "container.network.io.usage.rx_bytes",
    );
    assert_eq!(attr_of(rx[0], "interface"), Some("eth0"));
    assert_eq!(value(rx[0]), 1500.0);
    assert_eq!(one(web, "container.network.io.usage.tx_dropped"), 2.0);
    // Off by default, and cgroup v1 only: not reported.
    assert!(points(std::slice::from_ref(web), "container.memory.anon").is_empty());
    assert!(points(std::slice::from_ref(web), "container.memory.total_cache").is_empty());
    // Units and types as otelcol's metadata has them.
    let metric = |name: &str| {
        web.scope_metrics[0]
            .metrics
            .iter()
            .find(|x| x.name == name)
            .unwrap()
    };
    assert_eq!(metric("container.cpu.usage.total").unit, "ns");
    assert_eq!(metric("container.memory.usage.total").unit, "By");
    assert!(matches!(
        metric("container.cpu.utilization").data,
        Some(vigil_core::otlp::metrics::v1::metric::Data::Gauge(_))
    ));
    // The db container: no network, a CFS quota of half a CPU, no label mapping.
    let db = of(m, "db");
    assert!(points(
        std::slice::from_ref(db),
        "container.network.io.usage.rx_bytes"
    )
    .is_empty());
    assert_eq!(one(db, "container.cpu.limit"), 0.5);
    let db_attrs = &db.resource.as_ref().unwrap().attributes;
    assert_eq!(vigil_core::attrs::get_str(db_attrs, "team"), None);
    // What was asked: the version's prefix, stats once (stream=false), nothing of busybox's.
    let asked = vigil_core::lock(&e.requests).clone();
    assert!(asked.contains(&format!("/v1.25/containers/{WEB}/stats?stream=false")));
    assert!(!asked.iter().any(|p| p.contains(TOOL)), "{asked:?}");
}

/// Without a daemon the start fails, naming the endpoint, as otelcol's receiver fails when it
/// cannot list the containers; a daemon that answers 500 fails the scrape, with the status.
#[tokio::test]
async fn no_daemon_fails_the_start_and_a_failing_daemon_the_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("absent.sock");
    let mut next = NextConsumers::new();
    next.insert(
        Signal::Metrics,
        Arc::new(crate::test_servers::Sink::default()),
    );
    let id = ComponentId::parse("docker_stats").unwrap();
    let r = factory()
        .create(
            &id,
            &json!({"endpoint": format!("unix://{}", sock.display())}),
            next,
        )
        .expect("created");
    let e = r
        .start(&Host::detached())
        .await
        .expect_err("no daemon")
        .to_string();
    assert!(e.contains("cannot list the containers"), "{e}");
    assert!(e.contains("absent.sock"), "{e}");

    let failing = engine(true);
    let endpoint = serve(failing, dir.path()).await;
    let got = scraper(json!({"endpoint": endpoint})).scrape().await;
    assert!(got.metrics.is_empty());
    assert!(got.errors[0].contains("500"), "{:?}", got.errors);
}

/// The receiver's own loop: started against the double, it sends a batch. The double knows no
/// `tool` container when asked to inspect it (as when a container is removed between the list
/// and the inspect): that container is left out, the others are sent.
#[tokio::test]
async fn the_receiver_sends_what_it_scrapes() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = serve(engine(false), dir.path()).await;
    let got = crate::test_servers::run_receiver(
        factory(),
        "docker_stats",
        json!({"endpoint": endpoint, "collection_interval": "100ms", "initial_delay": "0s"}),
        1,
    )
    .await;
    assert_eq!(got.len(), 2, "web and db; tool is gone");
}

#[test]
fn config_errors_name_their_key() {
    let d = load(json!({})).unwrap();
    assert_eq!(d.endpoint, "unix:///var/run/docker.sock");
    assert_eq!(d.timeout, Duration::from_secs(5));
    assert_eq!(d.collection_interval, Duration::from_secs(10));
    assert_eq!(
        load(json!({"api_version": 1.4}))
            .unwrap()
            .api_version
            .text(),
        "1.40"
    );
    for (v, key) in [
        (json!({"api_version": "1.24"}), "api_version"),
        (json!({"api_version": 1.2}), "api_version"),
        (json!({"endpoint": "https://docker:2376"}), "endpoint"),
        (json!({"endpoint": ""}), "endpoint"),
        (json!({"excluded_images": ["!a", "b"]}), "excluded_images"),
        (json!({"excluded_images": ["/(a/"]}), "excluded_images"),
        (
            json!({"metrics": {"container.nope": {"enabled": true}}}),
            "metrics::container.nope",
        ),
    ] {
        let e = load(v.clone()).unwrap_err();
        assert_eq!(e.path, key, "{v}: {e}");
    }
    let ex = Excluded::new(&["!nginx*".into(), "!/^postgres:/".into()]).unwrap();
    assert!(!ex.excludes("nginx:1.27"));
    assert!(!ex.excludes("postgres:16"));
    assert!(ex.excludes("busybox:latest"));
    let ex = Excluded::new(&["redis".into(), "/^bitnami\\//".into()]).unwrap();
    assert!(ex.excludes("redis"));
    assert!(!ex.excludes("redis:7"));
    assert!(ex.excludes("bitnami/kafka:3"));
}
