//! Pod discovery end to end: `k8s_observer` watches this node's pods on the Kubernetes API-server
//! double (no cluster can run here; vigil_tests::k8s_api speaks the list/watch protocol) and
//! `receiver_creator` starts a `prometheus` scrape of each pod annotated `prometheus.io/scrape`,
//! against real HTTP metrics endpoints the test serves on the pods' (loopback) IPs. The scrape's
//! metrics come out with the pod's resource attributes; a pod on another node is never scraped; a
//! dropped watch and a `410 Gone` re-list start no second receiver; a pod deleted (even while the
//! watch was down, seen only by the re-list) stops its scrape.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vigil_tests::k8s_api::{self, K8sApi, Kind, Owner};
use vigil_tests::{eventually, free_port, metric_sum, otlp_attr, read_json_lines, Agent};

/// A Prometheus text endpoint on `ip`, counting its scrapes.
struct Target {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn serve_metrics(ip: &str, value: u32) -> Target {
    let l = TcpListener::bind((ip, 0)).expect("bind the metrics endpoint");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            if !req.starts_with(b"GET /metrics ") {
                let _ = c.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                continue;
            }
            h.fetch_add(1, Ordering::SeqCst);
            let body = format!("# TYPE demo_requests_total counter\ndemo_requests_total {value}\n");
            let _ = c.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    Target { port, hits }
}

/// A pod as the API server returns it, annotated for scraping on `target`'s port.
fn scraped_pod(name: &str, node: &str, ip: &str, target: &Target) -> serde_json::Value {
    let mut p = k8s_api::pod("shop", name, node, ip, Owner::None);
    let ann = &mut p["metadata"]["annotations"];
    ann["prometheus.io/scrape"] = "true".into();
    ann["prometheus.io/port"] = target.port.to_string().into();
    ann["prometheus.io/path"] = "/metrics".into();
    p["spec"]["containers"][0]["ports"][0]["containerPort"] = target.port.into();
    p
}

fn hits_over(t: &Target, window: Duration) -> usize {
    let before = t.hits.load(Ordering::SeqCst);
    std::thread::sleep(window);
    t.hits.load(Ordering::SeqCst) - before
}

#[test]
fn annotated_pods_on_this_node_are_scraped_while_they_exist() {
    let api = K8sApi::start();
    api.apply(Kind::Node, k8s_api::node("node-a"));
    let web = serve_metrics("127.0.0.9", 42);
    let other_node = serve_metrics("127.0.0.10", 7);
    let cart = serve_metrics("127.0.0.11", 9);
    api.apply(Kind::Pod, scraped_pod("web-1", "node-a", "127.0.0.9", &web));
    api.apply(
        Kind::Pod,
        scraped_pod("elsewhere", "node-b", "127.0.0.10", &other_node),
    );
    // On this node but not annotated: not scraped.
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "plain", "node-a", "127.0.0.12", Owner::None),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let (health, metrics) = (free_port(), free_port());
    let out = dir.path().join("out.json");
    let cfg = format!(
        r#"extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  k8sobserver:
    auth_type: kubeConfig
    node: ${{env:K8S_NODE_NAME}}
receivers:
  receivercreator:
    watch_observers: [k8sobserver]
    receivers:
      prometheus/pods:
        rule: type == "pod" && annotations["prometheus.io/scrape"] == "true"
        config:
          config:
            scrape_configs:
              - job_name: pods
                scrape_interval: 1s
                metrics_path: '`annotations["prometheus.io/path"]`'
                static_configs:
                  - targets: ['`endpoint`:`annotations["prometheus.io/port"]`']
exporters:
  file:
    path: {out}
service:
  extensions: [health_check, k8sobserver]
  pipelines:
    metrics:
      receivers: [receivercreator]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#,
        out = out.display(),
    );
    let path = vigil_tests::write_config(dir.path(), "vigil.yaml", &cfg);
    let run = tempfile::tempdir().expect("run dir");
    let mut agent = Agent::start_env(
        run,
        &["--config".into(), path.display().to_string()],
        &[
            ("KUBECONFIG", kubeconfig.display().to_string()),
            ("K8S_NODE_NAME", "node-a".to_string()),
        ],
    );
    agent.wait_healthy(health, Duration::from_secs(60));
    assert!(
        api.requests()
            .iter()
            .any(|r| r.contains("spec.nodeName%3Dnode-a") || r.contains("spec.nodeName=node-a")),
        "the pod watch is node-scoped: {:?}",
        api.requests()
    );

    // The scrape's metrics come out with the pod's resource attributes.
    let attrs = eventually(
        Duration::from_secs(30),
        "the pod's scraped metric in the output",
        || {
            read_json_lines(&out)
                .iter()
                .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
                .find(|rm| rm.to_string().contains("demo_requests_total"))
                .map(|rm| rm["resource"]["attributes"].clone())
        },
    );
    let attr =
        |k: &str| otlp_attr(&attrs, k).and_then(|v| v["stringValue"].as_str().map(str::to_string));
    assert_eq!(attr("k8s.pod.name").as_deref(), Some("web-1"), "{attrs}");
    assert_eq!(attr("k8s.namespace.name").as_deref(), Some("shop"));
    assert_eq!(attr("k8s.pod.uid"), Some(k8s_api::uid("pod/shop/web-1")));
    let running = || metric_sum(metrics, "vigil_receiver_creator_running_receivers", "");
    assert_eq!(running(), Some(1.0), "{}", agent.logs());

    // A second annotated pod appears; then the watch drops, and the history is compacted (the
    // watch from the last version gets 410 Gone and re-lists): still one receiver per pod.
    api.apply(
        Kind::Pod,
        scraped_pod("cart-1", "node-a", "127.0.0.11", &cart),
    );
    eventually(Duration::from_secs(20), "the second pod's scrape", || {
        (cart.hits.load(Ordering::SeqCst) > 0).then_some(())
    });
    api.drop_watches();
    std::thread::sleep(Duration::from_millis(1500));
    api.compact();
    eventually(Duration::from_secs(20), "a re-list after 410 Gone", || {
        (api.count_requests(|r| r.contains("/pods?") && !r.contains("watch=")) >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(running(), Some(2.0), "{}", agent.logs());
    // One receiver scrapes every 1s: a doubled one would scrape about 8 times in 4s.
    let n = hits_over(&web, Duration::from_secs(4));
    assert!((2..=6).contains(&n), "{n} scrapes of web-1 in 4s");

    // Deleted while the watch is down and compacted away: only the re-list finds it gone.
    api.delete_silently(Kind::Pod, "shop", "cart-1");
    api.compact();
    eventually(Duration::from_secs(30), "cart-1's receiver stopped", || {
        (running() == Some(1.0)).then_some(())
    });
    assert!(
        hits_over(&cart, Duration::from_secs(3)) <= 1,
        "cart-1 still scraped"
    );

    // Deleted with an event: its scrape stops too.
    api.delete(Kind::Pod, "shop", "web-1");
    eventually(Duration::from_secs(30), "web-1's receiver stopped", || {
        (running() == Some(0.0)).then_some(())
    });
    assert!(
        hits_over(&web, Duration::from_secs(3)) <= 1,
        "web-1 still scraped"
    );
    assert_eq!(
        other_node.hits.load(Ordering::SeqCst),
        0,
        "a pod on another node was scraped"
    );
    agent.stop_ok(Duration::from_secs(20));
}

/// Discovery by annotations (`discovery::enabled`, as the Helm chart's annotationDiscovery preset
/// sets it): a port annotated `io.opentelemetry.discovery.metrics/enabled` with `scraper:
/// prometheus` and a `config` hint holding the scrape config is scraped, with no template in the
/// config; the same pod without `enabled` is not.
#[test]
fn discovery_annotations_start_the_scraper_they_name() {
    let api = K8sApi::start();
    let hinted = serve_metrics("127.0.0.13", 5);
    let unhinted = serve_metrics("127.0.0.14", 6);
    let hint_pod = |name: &str, ip: &str, t: &Target, enabled: bool| {
        let mut p = k8s_api::pod("shop", name, "node-a", ip, Owner::None);
        let ann = &mut p["metadata"]["annotations"];
        if enabled {
            ann["io.opentelemetry.discovery.metrics/enabled"] = "true".into();
        }
        ann["io.opentelemetry.discovery.metrics/scraper"] = "prometheus".into();
        ann[format!("io.opentelemetry.discovery.metrics.{}/config", t.port)] =
            "config:\n  scrape_configs:\n    - job_name: hinted\n      scrape_interval: 1s\n      static_configs: [{targets: ['`endpoint`']}]\n".into();
        p["spec"]["containers"][0]["ports"][0]["containerPort"] = t.port.into();
        p
    };
    api.apply(Kind::Pod, hint_pod("hinted", "127.0.0.13", &hinted, true));
    api.apply(
        Kind::Pod,
        hint_pod("unhinted", "127.0.0.14", &unhinted, false),
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    let health = free_port();
    let out = dir.path().join("out.json");
    let cfg = format!(
        r#"extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
  k8s_observer:
    auth_type: kubeConfig
    node: node-a
receivers:
  receiver_creator/metrics:
    watch_observers: [k8s_observer]
    discovery:
      enabled: true
exporters:
  file:
    path: {out}
service:
  extensions: [health_check, k8s_observer]
  pipelines:
    metrics:
      receivers: [receiver_creator/metrics]
      exporters: [file]
"#,
        out = out.display(),
    );
    let path = vigil_tests::write_config(dir.path(), "vigil.yaml", &cfg);
    let run = tempfile::tempdir().expect("run dir");
    let mut agent = Agent::start_env(
        run,
        &["--config".into(), path.display().to_string()],
        &[("KUBECONFIG", kubeconfig.display().to_string())],
    );
    agent.wait_healthy(health, Duration::from_secs(60));
    let attrs = eventually(
        Duration::from_secs(30),
        "the hinted pod's scraped metric in the output",
        || {
            read_json_lines(&out)
                .iter()
                .flat_map(|l| l["resourceMetrics"].as_array().cloned().unwrap_or_default())
                .find(|rm| rm.to_string().contains("demo_requests_total"))
                .map(|rm| rm["resource"]["attributes"].clone())
        },
    );
    assert_eq!(
        otlp_attr(&attrs, "k8s.pod.name").and_then(|v| v["stringValue"].as_str()),
        Some("hinted"),
        "{attrs}"
    );
    assert!(hinted.hits.load(Ordering::SeqCst) > 0);
    assert_eq!(
        unhinted.hits.load(Ordering::SeqCst),
        0,
        "a pod without the enabled hint was scraped"
    );
    agent.stop_ok(Duration::from_secs(20));
}
