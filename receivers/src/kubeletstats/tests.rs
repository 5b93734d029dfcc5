//! Tests against a kubelet double: no kubelet can run here, so a small HTTP(S) server in this file
//! serves `/stats/summary` and `/pods` from fixtures written from the kubelet's `stats/v1alpha1`
//! and `core/v1` types (`testdata/kubeletstats/`), and refuses requests without the expected
//! bearer token as the kubelet's webhook authenticator does.

use super::*;
use crate::hostmetrics::testing::{find, points, value};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use vigil_core::attrs::value_to_string;
use vigil_core::otlp::metrics::v1::{metric::Data, Metric, ResourceMetrics};
use vigil_core::{ConsumeError, Consumer};

const SUMMARY: &str = include_str!("../../testdata/kubeletstats/summary.json");
const PODS: &str = include_str!("../../testdata/kubeletstats/pods.json");

/// The kubelet double: plain HTTP, or HTTPS with the given server certificate (and client CA, to
/// require client certificates). With `token`, a request without `Authorization: Bearer <token>`
/// gets 401, as from a kubelet with webhook authentication.
struct KubeletDouble {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for KubeletDouble {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn kubelet_double(
    token: Option<&str>,
    tls: Option<vigil_core::net::tls::TlsServerSettings>,
) -> KubeletDouble {
    let requests = Arc::new(AtomicUsize::new(0));
    let token = token.map(|t| format!("Bearer {t}"));
    let check = {
        let requests = Arc::clone(&requests);
        move |headers: &HeaderMap| {
            requests.fetch_add(1, Ordering::SeqCst);
            match &token {
                Some(t)
                    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(t) =>
                {
                    Err((StatusCode::UNAUTHORIZED, "Unauthorized"))
                }
                _ => Ok(()),
            }
        }
    };
    let c2 = check.clone();
    let router = axum::Router::new()
        .route(
            "/stats/summary",
            get(move |h: HeaderMap| async move { check(&h).map(|_| SUMMARY) }),
        )
        .route(
            "/pods",
            get(move |h: HeaderMap| async move { c2(&h).map(|_| PODS) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let opts = vigil_core::net::serve::ServeOptions {
        tls: tls.map(|t| t.server(&[b"http/1.1"]).unwrap()),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let counters = vigil_core::net::serve::ConnCounters::new("receiver", "kubelet_double", "http");
    tokio::spawn(vigil_core::net::serve::serve(
        listener,
        router,
        opts,
        counters,
        stop.clone(),
    ));
    KubeletDouble {
        addr,
        requests,
        stop,
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .signed_by(&client_key, &ca, &ca_key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (f, pem) in [
            ("ca.crt", ca.pem()),
            ("server.pem", server.pem()),
            ("server.key", server_key.serialize_pem()),
            ("client.pem", client.pem()),
            ("client.key", client_key.serialize_pem()),
        ] {
            std::fs::write(dir.path().join(f), pem).unwrap();
        }
        Pki { dir }
    }

    fn path(&self, f: &str) -> String {
        self.dir.path().join(f).display().to_string()
    }

    fn server(&self, client_ca: bool) -> vigil_core::net::tls::TlsServerSettings {
        vigil_core::net::tls::TlsServerSettings {
            cert_file: Some(self.path("server.pem")),
            key_file: Some(self.path("server.key")),
            client_ca_file: client_ca.then(|| self.path("ca.crt")),
            ..Default::default()
        }
    }
}

fn config(v: serde_json::Value) -> KubeletStatsConfig {
    serde_json::from_value(v).unwrap()
}

async fn scrape_once(cfg: &KubeletStatsConfig) -> Result<Vec<ResourceMetrics>, String> {
    let checked = cfg.check().map_err(|e| e.to_string())?;
    let kubelet = Kubelet::build(cfg, checked.auth)?;
    scrape(&kubelet, cfg, &checked, 1).await
}

fn attrs(rm: &ResourceMetrics) -> String {
    let mut a: Vec<String> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
            format!("{}={}", kv.key, v.map(value_to_string).unwrap_or_default())
        })
        .collect();
    a.sort();
    a.join(",")
}

fn metrics_of<'a>(out: &'a [ResourceMetrics], attr: &str) -> &'a [Metric] {
    let rm = out.iter().find(|rm| attrs(rm) == attr).unwrap_or_else(|| {
        let all: Vec<String> = out.iter().map(attrs).collect();
        panic!("no resource {attr}: {all:#?}")
    });
    assert_eq!(
        rm.scope_metrics[0].scope.as_ref().unwrap().name,
        metrics::SCOPE
    );
    &rm.scope_metrics[0].metrics
}

const CHECKOUT: &str = "k8s.namespace.name=shop,k8s.pod.name=checkout-7d4b9c6f8-x2x7q,k8s.pod.uid=6f1c2d3e-1111-4a4a-9b9b-0a0b0c0d0e0f";

#[tokio::test]
async fn every_group_with_otelcol_names_values_and_attributes() {
    let k = kubelet_double(None, None).await;
    let cfg = config(serde_json::json!({
        "auth_type": "none",
        "endpoint": k.addr.to_string(),
        "metric_groups": ["node", "pod", "container", "volume"],
        "extra_metadata_labels": ["container.id", "k8s.volume.type"],
        "metrics": {"k8s.node.uptime": {"enabled": true}, "k8s.container.ephemeral_storage.usage": {"enabled": true}},
    }));
    let out = scrape_once(&cfg).await.unwrap();
    // The node, 2 pods, 3 containers and 2 volumes, in otelcol's order.
    assert_eq!(out.len(), 8);
    assert_eq!(attrs(&out[0]), "k8s.node.name=node-1");

    let node = metrics_of(&out, "k8s.node.name=node-1");
    assert_eq!(value(find(node, "k8s.node.cpu.usage"), ""), 0.4125);
    assert_eq!(value(find(node, "k8s.node.cpu.time"), ""), 120334.0);
    assert_eq!(
        value(find(node, "k8s.node.memory.working_set"), ""),
        2952790016.0
    );
    assert_eq!(
        value(find(node, "k8s.node.memory.major_page_faults"), ""),
        1312.0
    );
    assert_eq!(
        value(find(node, "k8s.node.filesystem.capacity"), ""),
        107374182400.0
    );
    // Only the default interface without collect_all_network_interfaces.
    assert_eq!(
        points(find(node, "k8s.node.network.io")),
        vec![
            (
                "direction=receive,interface=eth0".to_string(),
                91842736128.0
            ),
            (
                "direction=transmit,interface=eth0".to_string(),
                40110233600.0
            ),
        ]
    );
    assert_eq!(
        value(
            find(node, "k8s.node.network.errors"),
            "direction=receive,interface=eth0"
        ),
        3.0
    );
    let up = value(find(node, "k8s.node.uptime"), "");
    assert!(up > 300_000.0, "node up since 2026-12-01: {up}");
    let cpu_time = find(node, "k8s.node.cpu.time");
    let Some(Data::Sum(s)) = &cpu_time.data else {
        panic!("cpu.time is a sum")
    };
    assert!(s.is_monotonic);
    assert_eq!(cpu_time.unit, "s");
    // Cumulative points start when the node did.
    assert_eq!(
        s.data_points[0].start_time_unix_nano,
        1_796_112_000_000_000_000
    );
    // Off by default.
    assert!(!node.iter().any(|m| m.name == "k8s.node.pid.usage"));

    let pod = metrics_of(&out, CHECKOUT);
    assert_eq!(value(find(pod, "k8s.pod.cpu.usage"), ""), 0.13);
    assert_eq!(value(find(pod, "k8s.pod.memory.usage"), ""), 176160768.0);
    assert_eq!(value(find(pod, "k8s.pod.filesystem.usage"), ""), 3219456.0);
    assert_eq!(
        value(
            find(pod, "k8s.pod.network.io"),
            "direction=transmit,interface=eth0"
        ),
        1258291200.0
    );
    // The host-network pod has no network stats, so no network metrics.
    let proxy = metrics_of(&out, "k8s.namespace.name=kube-system,k8s.pod.name=kube-proxy-5wz8m,k8s.pod.uid=0a9b8c7d-2222-4b4b-8c8c-1a1b1c1d1e1f");
    assert!(!proxy.iter().any(|m| m.name.contains("network")));
    // No availableBytes in the fixture: no point, not a zero.
    assert!(!proxy.iter().any(|m| m.name == "k8s.pod.memory.available"));

    let container = metrics_of(&out, &format!("container.id=4c1f0e9d8b7a65432100fedcba9876543210abcdef0123456789abcdef012345,k8s.container.name=checkout,{CHECKOUT}"));
    assert_eq!(value(find(container, "container.cpu.usage"), ""), 0.125);
    assert_eq!(
        value(find(container, "container.memory.rss"), ""),
        94371840.0
    );
    assert_eq!(
        value(find(container, "container.filesystem.usage"), ""),
        49152.0
    );
    assert_eq!(
        value(
            find(container, "k8s.container.ephemeral_storage.usage"),
            "fs.type=logs"
        ),
        1048576.0
    );

    let data = metrics_of(&out, "k8s.namespace.name=shop,k8s.persistentvolumeclaim.name=checkout-data,k8s.pod.name=checkout-7d4b9c6f8-x2x7q,k8s.pod.uid=6f1c2d3e-1111-4a4a-9b9b-0a0b0c0d0e0f,k8s.volume.name=data,k8s.volume.type=persistentVolumeClaim");
    assert_eq!(value(find(data, "k8s.volume.capacity"), ""), 10737418240.0);
    assert_eq!(value(find(data, "k8s.volume.inodes.used"), ""), 60.0);
    // A projected volume has no otelcol type.
    metrics_of(
        &out,
        &format!("{CHECKOUT},k8s.volume.name=kube-api-access-9zq4t"),
    );
}

#[tokio::test]
async fn default_groups_toggles_and_all_interfaces() {
    let k = kubelet_double(None, None).await;
    let cfg = config(serde_json::json!({
        "auth_type": "none",
        "endpoint": format!("http://{}", k.addr),
        "collect_all_network_interfaces": {"node": true},
        "metrics": {"k8s.pod.cpu.usage": {"enabled": false}},
        "resource_attributes": {"k8s.pod.uid": {"enabled": false}},
    }));
    let out = scrape_once(&cfg).await.unwrap();
    // node + pod + container by default: no volumes, and no /pods request.
    assert_eq!(out.len(), 1 + 2 + 3);
    assert_eq!(k.requests.load(Ordering::SeqCst), 1);
    let node = metrics_of(&out, "k8s.node.name=node-1");
    assert_eq!(
        value(
            find(node, "k8s.node.network.io"),
            "direction=transmit,interface=cni0"
        ),
        2097152000.0
    );
    let pod = metrics_of(
        &out,
        "k8s.namespace.name=shop,k8s.pod.name=checkout-7d4b9c6f8-x2x7q",
    );
    assert!(!pod.iter().any(|m| m.name == "k8s.pod.cpu.usage"));
    assert!(pod.iter().any(|m| m.name == "k8s.pod.cpu.time"));
}

/// The `*_limit_utilization` / `*_request_utilization` ratios: usage from the summary over the pod
/// specs' quantities from `/pods`; a pod total only when every container sets the value.
#[tokio::test]
async fn limit_and_request_utilization_from_the_pod_specs() {
    let k = kubelet_double(None, None).await;
    let on = serde_json::json!({"enabled": true});
    let mut metrics = serde_json::Map::new();
    for n in metrics::RESOURCE_RATIOS {
        metrics.insert(n.to_string(), on.clone());
    }
    let cfg = config(serde_json::json!({
        "auth_type": "none",
        "endpoint": format!("http://{}", k.addr),
        "metrics": metrics,
    }));
    let out = scrape_once(&cfg).await.unwrap();
    assert_eq!(
        k.requests.load(Ordering::SeqCst),
        2,
        "the summary and /pods"
    );
    let close = |m: &[Metric], name: &str, want: f64| {
        let got = value(find(m, name), "");
        assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
    };
    let checkout = metrics_of(&out, &format!("k8s.container.name=checkout,{CHECKOUT}"));
    close(checkout, "k8s.container.cpu_limit_utilization", 0.125 / 0.5);
    close(
        checkout,
        "k8s.container.cpu_request_utilization",
        0.125 / 0.25,
    );
    close(checkout, "k8s.container.memory_limit_utilization", 0.5);
    close(checkout, "k8s.container.memory_request_utilization", 1.0);
    let envoy = metrics_of(&out, &format!("k8s.container.name=envoy,{CHECKOUT}"));
    close(envoy, "k8s.container.cpu_limit_utilization", 0.005 / 0.1);
    assert!(!envoy
        .iter()
        .any(|m| m.name == "k8s.container.memory_request_utilization"));
    let pod = metrics_of(&out, CHECKOUT);
    close(pod, "k8s.pod.cpu_limit_utilization", 0.13 / 0.6);
    close(pod, "k8s.pod.cpu_request_utilization", 0.13 / 0.3);
    close(
        pod,
        "k8s.pod.memory_limit_utilization",
        176160768.0 / (320.0 * 1048576.0),
    );
    // envoy sets no memory request: no pod total.
    assert!(!pod
        .iter()
        .any(|m| m.name == "k8s.pod.memory_request_utilization"));
    let proxy = metrics_of(
        &out,
        "k8s.namespace.name=kube-system,k8s.pod.name=kube-proxy-5wz8m,k8s.pod.uid=0a9b8c7d-2222-4b4b-8c8c-1a1b1c1d1e1f",
    );
    close(proxy, "k8s.pod.cpu_request_utilization", 0.0015 / 0.1);
    assert!(!proxy.iter().any(|m| m.name.contains("limit_utilization")));
}

#[tokio::test]
async fn service_account_token_is_sent_and_required() {
    let pki = Pki::new();
    let k = kubelet_double(Some("sa-token-1"), Some(pki.server(false))).await;
    std::fs::write(pki.dir.path().join("token"), "sa-token-1\n").unwrap();
    let sa = |dir: &str| {
        config(serde_json::json!({
            "auth_type": "serviceAccount",
            "endpoint": k.addr.to_string(),
            "service_account_dir": dir,
        }))
    };
    let out = scrape_once(&sa(&pki.path(""))).await.unwrap();
    assert_eq!(out.len(), 6);

    // A rotated token is read again at the next scrape; the kubelet refuses the stale one.
    std::fs::write(pki.dir.path().join("token"), "sa-token-2").unwrap();
    let e = scrape_once(&sa(&pki.path(""))).await.unwrap_err();
    assert!(e.contains("401"), "{e}");

    // Without a token the client is not built at all, naming the file.
    let empty = tempfile::tempdir().unwrap();
    std::fs::copy(pki.path("ca.crt"), empty.path().join("ca.crt")).unwrap();
    let e = scrape_once(&sa(&empty.path().display().to_string()))
        .await
        .unwrap_err();
    assert!(
        e.contains("service-account token") && e.contains("token\""),
        "{e}"
    );

    // Token auth never goes out in plain text to an https-less endpoint by default: the scheme is
    // https, so a plain-HTTP kubelet is a TLS error, not a leaked token.
    let plain = kubelet_double(None, None).await;
    let cfg = config(serde_json::json!({
        "auth_type": "serviceAccount",
        "endpoint": plain.addr.to_string(),
        "service_account_dir": pki.path(""),
    }));
    assert!(scrape_once(&cfg).await.is_err());
    assert_eq!(plain.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_checks_the_kubelet_against_the_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    // The kubelet asks for a client certificate from the same CA.
    let k = kubelet_double(None, Some(pki.server(true))).await;
    let tls = |p: &Pki, extra: serde_json::Value| {
        let mut v = serde_json::json!({
            "auth_type": "tls",
            "endpoint": k.addr.to_string(),
            "ca_file": p.path("ca.crt"),
            "cert_file": pki.path("client.pem"),
            "key_file": pki.path("client.key"),
        });
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config(v)
    };
    assert_eq!(
        scrape_once(&tls(&pki, serde_json::json!({})))
            .await
            .unwrap()
            .len(),
        6
    );
    // A kubelet certificate from another CA is refused...
    let e = scrape_once(&tls(&other, serde_json::json!({})))
        .await
        .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // ...unless insecure_skip_verify says to accept any.
    let ok = scrape_once(&tls(
        &other,
        serde_json::json!({"insecure_skip_verify": true}),
    ))
    .await;
    assert_eq!(ok.unwrap().len(), 6);
    // Without a client certificate, the handshake fails.
    let mut cfg = tls(&pki, serde_json::json!({}));
    cfg.auth_type = "none".into();
    cfg.endpoint = format!("https://{}", k.addr);
    assert!(scrape_once(&cfg).await.is_err());
}

#[derive(Default)]
struct Sink {
    got: Mutex<Vec<Vec<ResourceMetrics>>>,
    notify: tokio::sync::Notify,
}

#[async_trait]
impl Consumer for Sink {
    async fn consume(&self, data: Telemetry) -> Result<(), ConsumeError> {
        if let Telemetry::Metrics(m) = data {
            self.got.lock().unwrap().push(m);
        }
        self.notify.notify_one();
        Ok(())
    }
}

/// The receiver as the service runs it: started, one scrape into the pipeline, stopped.
#[tokio::test]
async fn the_receiver_scrapes_on_its_timer_and_stops() {
    let k = kubelet_double(None, None).await;
    let id = ComponentId::parse("kubelet_stats/node").unwrap();
    let set = vigil_core::Settings::new(vigil_core::ComponentKind::Receiver, &id);
    let cfg = config(serde_json::json!({
        "auth_type": "none",
        "endpoint": k.addr.to_string(),
        "initial_delay": "0s",
        "collection_interval": "1h",
    }));
    let sink = Arc::new(Sink::default());
    let mut next = NextConsumers::new();
    next.insert(Signal::Metrics, sink.clone());
    let r = KubeletStatsReceiver::new(set, cfg.clone(), cfg.check().unwrap(), next);
    r.start(&Host::detached()).await.unwrap();
    sink.notify.notified().await;
    r.shutdown().await.unwrap();
    assert_eq!(sink.got.lock().unwrap()[0].len(), 6);

    // serviceAccount without a mounted token fails at start, naming the file.
    let set = vigil_core::Settings::new(vigil_core::ComponentKind::Receiver, &id);
    let mut sa = cfg.clone();
    sa.auth_type = "serviceAccount".into();
    sa.service_account_dir = "/nonexistent/serviceaccount".into();
    let r = KubeletStatsReceiver::new(set, sa.clone(), sa.check().unwrap(), NextConsumers::new());
    let e = r.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(
        e.contains("receivers::kubelet_stats/node")
            && e.contains("/nonexistent/serviceaccount/token"),
        "{e}"
    );
}

#[test]
fn a_broken_summary_is_an_error_not_a_panic() {
    for body in [
        "",
        "{",
        r#""text""#,
        r#"{"node": 3}"#,
        r#"{"pods": [{"podRef": 1}]}"#,
    ] {
        assert!(
            serde_json::from_str::<summary::Summary>(body).is_err(),
            "{body}"
        );
    }
    // Missing sections are no metrics, not errors.
    let s: summary::Summary =
        serde_json::from_str(r#"{"node": {"nodeName": "n"}, "pods": [{}]}"#).unwrap();
    let cfg = config(serde_json::json!({"auth_type": "none"}));
    let checked = cfg.check().unwrap();
    let ctx = metrics::Ctx {
        checked: &checked,
        all_node_interfaces: false,
        all_pod_interfaces: false,
        pods: None,
        now: 2,
        started: 1,
    };
    assert!(metrics::convert(&s, &ctx).is_empty());
}

#[test]
fn endpoints_get_the_scheme_their_auth_implies() {
    let cfg = |ep: &str| config(serde_json::json!({"endpoint": ep, "auth_type": "none"}));
    assert_eq!(
        cfg("10.0.0.1:10250").base_url(config::Auth::ServiceAccount),
        "https://10.0.0.1:10250"
    );
    assert_eq!(
        cfg("10.0.0.1:10255").base_url(config::Auth::None),
        "http://10.0.0.1:10255"
    );
    assert_eq!(
        cfg("https://n:10250/").base_url(config::Auth::None),
        "https://n:10250"
    );
    assert!(cfg("")
        .base_url(config::Auth::ServiceAccount)
        .ends_with(":10250"));
    assert!(cfg("").base_url(config::Auth::None).starts_with("http://"));
}
