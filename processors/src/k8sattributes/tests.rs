//! `k8sattributes` against the API-server double (vigil_tests::k8s_api): association, extraction,
//! and a watch that survives a dropped connection, a `410 Gone` re-list and deletions.

use super::*;
use crate::testdata::Keep;
use serde_json::json;
use vigil_core::attrs::get_str;
use vigil_core::otlp::logs::v1::ResourceLogs;
use vigil_tests::k8s_api::{self, K8sApi, Kind, Owner};

fn settings() -> Settings {
    Settings::new(
        vigil_core::ComponentKind::Processor,
        &ComponentId::parse("k8sattributes").unwrap(),
    )
}

fn cluster() -> K8sApi {
    let api = K8sApi::start();
    api.apply(Kind::Namespace, k8s_api::namespace("shop"));
    api.apply(Kind::Namespace, k8s_api::namespace("kube-system"));
    api.apply(Kind::Node, k8s_api::node("node-a"));
    api.apply(
        Kind::ReplicaSet,
        k8s_api::replicaset("shop", "checkout-7c9f8d6b5d", "checkout"),
    );
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            "checkout-7c9f8d6b5d-x2x9q",
            "node-a",
            "10.244.1.7",
            Owner::ReplicaSet("checkout-7c9f8d6b5d"),
        ),
    );
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            "redis-0",
            "node-a",
            "10.244.1.8",
            Owner::StatefulSet("redis"),
        ),
    );
    // Another node's pod: never watched.
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "far-away", "node-b", "10.244.2.9", Owner::None),
    );
    api
}

async fn processor(
    api: &K8sApi,
    cfg: serde_json::Value,
    grace: Duration,
) -> (Arc<K8sAttributes>, Arc<Keep>) {
    let cfg: K8sAttributesConfig = vigil_core::config::decode(
        vigil_core::ComponentKind::Processor,
        &ComponentId::parse("k8sattributes").unwrap(),
        &cfg,
    )
    .unwrap();
    let keep = Arc::new(Keep::default());
    let p = K8sAttributes::build(settings(), cfg, Signal::Logs, keep.clone(), grace).unwrap();
    p.with_client(vigil_k8s::client::client_at(&api.url()).unwrap());
    p.start(&Host::detached()).await.unwrap();
    (p, keep)
}

fn logs(attrs: Vec<KeyValue>) -> Telemetry {
    Telemetry::Logs(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: attrs,
            ..Default::default()
        }),
        ..Default::default()
    }])
}

/// The resource attributes of the last batch `keep` received.
fn last(keep: &Keep) -> Vec<KeyValue> {
    match vigil_core::lock(&keep.0).last() {
        Some(Telemetry::Logs(v)) => v[0].resource.clone().unwrap_or_default().attributes,
        _ => Vec::new(),
    }
}

async fn send(p: &K8sAttributes, from: Option<&str>, attrs: Vec<KeyValue>) {
    let data = logs(attrs);
    match from {
        Some(ip) => {
            ClientMetadata::default()
                .with_addr(ip.parse().unwrap())
                .scope(p.consume(data))
                .await
        }
        None => p.consume(data).await,
    }
    .unwrap();
}

/// Polls until `f` holds; fails after a bound (a broken watch never converges).
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

fn base_cfg() -> serde_json::Value {
    json!({
        "auth_type": "none",
        "filter": {"node": "node-a"},
        "wait_for_metadata": true,
        "pod_association": [
            {"sources": [{"from": "resource_attribute", "name": "k8s.pod.uid"}]},
            {"sources": [{"from": "resource_attribute", "name": "k8s.pod.ip"}]},
            {"sources": [{"from": "connection"}]}
        ],
        "extract": {
            "metadata": ["k8s.pod.name", "k8s.pod.uid", "k8s.namespace.name", "k8s.node.name",
                "k8s.deployment.name", "k8s.replicaset.name", "k8s.statefulset.name",
                "k8s.pod.start_time", "container.image.name", "container.image.tag",
                "k8s.cluster.uid"],
            "labels": [{"tag_name": "app", "key": "app.kubernetes.io/name", "from": "pod"},
                {"key_regex": "kubernetes.io/metadata.(.*)", "tag_name": "ns.$1", "from": "namespace"}],
            "annotations": [{"key": "kubectl.kubernetes.io/restartedAt", "from": "pod"}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associates_by_connection_ip_pod_ip_and_uid_with_owners_and_labels() {
    let api = cluster();
    let (p, keep) = processor(&api, base_cfg(), DELETE_GRACE).await;
    assert_eq!(p.pod_count(), 2, "only node-a's pods are watched");
    assert!(
        api.requests().iter().any(|r| r.starts_with("/api/v1/pods?")
            && r.contains("fieldSelector=spec.nodeName%3Dnode-a")
            || r.contains("fieldSelector=spec.nodeName=node-a")),
        "{:?}",
        api.requests()
    );

    // By the connection's IP.
    send(&p, Some("10.244.1.7"), vec![]).await;
    let a = last(&keep);
    assert_eq!(
        get_str(&a, "k8s.pod.name"),
        Some("checkout-7c9f8d6b5d-x2x9q")
    );
    assert_eq!(get_str(&a, "k8s.pod.ip"), Some("10.244.1.7"));
    assert_eq!(get_str(&a, "k8s.namespace.name"), Some("shop"));
    assert_eq!(get_str(&a, "k8s.node.name"), Some("node-a"));
    assert_eq!(get_str(&a, "k8s.deployment.name"), Some("checkout"));
    assert_eq!(
        get_str(&a, "k8s.replicaset.name"),
        Some("checkout-7c9f8d6b5d")
    );
    assert_eq!(
        get_str(&a, "k8s.pod.start_time"),
        Some("2026-11-30T08:00:02Z")
    );
    assert_eq!(get_str(&a, "app"), Some("checkout"));
    assert_eq!(
        get_str(&a, "k8s.pod.annotations.kubectl.kubernetes.io/restartedAt"),
        Some("2026-11-30T07:59:00Z")
    );
    until("namespace labels", || {
        !p.shared.namespaces.read().unwrap().is_empty()
    })
    .await;
    until("cluster uid", || p.shared.cluster_uid.get().is_some()).await;
    send(&p, Some("10.244.1.7"), vec![]).await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "ns.name"), Some("shop"));
    assert_eq!(
        get_str(&a, "k8s.cluster.uid"),
        Some(k8s_api::uid("ns/kube-system").as_str())
    );
    // No container named: no container attributes.
    assert_eq!(get_str(&a, "container.image.name"), None);

    // By k8s.pod.ip, ahead of the connection (a gateway forwarding for the pod).
    send(
        &p,
        Some("10.0.0.99"),
        vec![
            kv_str("k8s.pod.ip", "10.244.1.8"),
            kv_str("k8s.container.name", "app"),
        ],
    )
    .await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "k8s.pod.name"), Some("redis-0"));
    assert_eq!(get_str(&a, "k8s.statefulset.name"), Some("redis"));
    assert_eq!(get_str(&a, "k8s.deployment.name"), None);
    assert_eq!(
        get_str(&a, "container.image.name"),
        Some("registry.example.com/redis")
    );
    assert_eq!(get_str(&a, "container.image.tag"), Some("1.4.2"));

    // By uid; what the resource already says is kept.
    let uid = k8s_api::uid("pod/shop/redis-0");
    send(
        &p,
        None,
        vec![
            kv_str("k8s.pod.uid", &uid),
            kv_str("k8s.namespace.name", "mine"),
        ],
    )
    .await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "k8s.pod.name"), Some("redis-0"));
    assert_eq!(get_str(&a, "k8s.namespace.name"), Some("mine"));

    // Unknown IP: only the IP is recorded.
    send(&p, Some("10.9.9.9"), vec![]).await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "k8s.pod.ip"), Some("10.9.9.9"));
    assert_eq!(get_str(&a, "k8s.pod.name"), None);

    // One ReplicaSet read, for the one Deployment-owned pod: never a list of ReplicaSets.
    assert_eq!(api.count_requests(|r| r.contains("replicasets")), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_survives_drop_and_410_without_losing_or_duplicating_pods() {
    let api = cluster();
    let (p, keep) = processor(&api, base_cfg(), Duration::ZERO).await;
    assert_eq!(p.pod_count(), 2);

    // A bookmark, then a new pod arrives through the open watch.
    api.bookmark();
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "web-1", "node-a", "10.244.1.20", Owner::None),
    );
    until("web-1 via the watch", || p.pod_count() == 3).await;

    // The connection is cut mid-watch; what changes meanwhile arrives after the re-watch.
    let lists_before =
        api.count_requests(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"));
    api.drop_watches();
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "web-2", "node-a", "10.244.1.21", Owner::None),
    );
    until("web-2 after the dropped watch", || p.pod_count() == 4).await;
    assert_eq!(
        api.count_requests(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true")),
        lists_before,
        "a dropped watch resumes from its version without a re-list"
    );

    // History compacted while a pod went away unseen and another came: the re-watch gets
    // 410 Gone, the watcher re-lists, and the copy is exactly the list.
    api.delete_silently(Kind::Pod, "shop", "web-1");
    api.compact();
    api.preload(
        Kind::Pod,
        [k8s_api::pod(
            "shop",
            "web-3",
            "node-a",
            "10.244.1.22",
            Owner::None,
        )],
    );
    until("re-list after 410", || {
        let t = p.shared.pods.read().unwrap();
        t.by_name("shop", "web-3").is_some() && t.by_name("shop", "web-1").is_none()
    })
    .await;
    assert_eq!(p.pod_count(), 4, "checkout, redis, web-2, web-3");
    assert!(
        api.count_requests(|r| r.starts_with("/api/v1/pods?") && !r.contains("watch=true"))
            > lists_before,
        "410 forced a list"
    );

    // A pod deleted through the watch is gone; its IP names no pod any more.
    api.delete(Kind::Pod, "shop", "web-2");
    until("web-2 deleted", || p.pod_count() == 3).await;
    send(&p, Some("10.244.1.21"), vec![]).await;
    assert_eq!(get_str(&last(&keep), "k8s.pod.name"), None);
    // A new pod that takes an old IP is the one named by it.
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "web-4", "node-a", "10.244.1.21", Owner::None),
    );
    until("web-4", || p.pod_count() == 4).await;
    send(&p, Some("10.244.1.21"), vec![]).await;
    assert_eq!(get_str(&last(&keep), "k8s.pod.name"), Some("web-4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_stay_findable_for_the_grace_period() {
    let api = cluster();
    let (p, keep) = processor(&api, base_cfg(), Duration::from_secs(3600)).await;
    api.delete(Kind::Pod, "shop", "redis-0");
    // Events arrive in order: once the pod added after the delete is known, the delete was seen.
    api.apply(
        Kind::Pod,
        k8s_api::pod("shop", "web-9", "node-a", "10.244.1.30", Owner::None),
    );
    until("web-9, after the delete", || {
        p.shared
            .pods
            .read()
            .unwrap()
            .by_name("shop", "web-9")
            .is_some()
    })
    .await;
    // The deleted pod is kept for its late telemetry.
    send(&p, Some("10.244.1.8"), vec![]).await;
    assert_eq!(get_str(&last(&keep), "k8s.pod.name"), Some("redis-0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_only_records_the_ip_and_reads_no_api() {
    let api = cluster();
    let (p, keep) = processor(&api, json!({"passthrough": true}), DELETE_GRACE).await;
    send(&p, Some("10.244.1.7"), vec![]).await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "k8s.pod.ip"), Some("10.244.1.7"));
    assert_eq!(get_str(&a, "k8s.pod.name"), None);
    assert!(api.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_metadata_fails_start_when_the_api_does_not_answer() {
    let api = cluster();
    api.fail("/api/v1/pods");
    let cfg: K8sAttributesConfig = serde_json::from_value(json!({
        "filter": {"node": "node-a"}, "wait_for_metadata": true,
        "wait_for_metadata_timeout": "300ms"
    }))
    .unwrap();
    let p = K8sAttributes::build(
        settings(),
        cfg,
        Signal::Logs,
        Arc::new(Keep::default()),
        DELETE_GRACE,
    )
    .unwrap();
    p.with_client(vigil_k8s::client::client_at(&api.url()).unwrap());
    let e = p.start(&Host::detached()).await.unwrap_err().to_string();
    assert!(e.contains("k8sattributes::wait_for_metadata"), "{e}");
}

#[test]
fn config_errors_name_the_key() {
    let check = |v: serde_json::Value| {
        let cfg: K8sAttributesConfig = serde_json::from_value(v).unwrap();
        config::check(&cfg).unwrap_err().to_string()
    };
    let e = check(json!({"extract": {"metadata": ["k8s.pod.nam"]}}));
    assert!(
        e.starts_with("extract::metadata::0: unknown metadata"),
        "{e}"
    );
    let e = check(json!({"pod_association": [{"sources": [{"from": "header"}]}]}));
    assert!(e.contains("pod_association::0::sources::0::from"), "{e}");
    let e = check(json!({"extract": {"labels": [{"key": "a", "key_regex": "b"}]}}));
    assert!(
        e.contains("extract::labels::0::key: key and key_regex are exclusive"),
        "{e}"
    );
    let e = check(json!({"filter": {"labels": [{"key": "a", "op": "like"}]}}));
    assert!(e.contains("filter::labels::0::op"), "{e}");
    // otelcol's keys that vigil does not build are refused by name.
    let e = check(json!({"extract": {"metadata": ["k8s.cronjob.uid"]}}));
    assert!(
        e.starts_with("extract::metadata::0: not built: vigil does not fill \"k8s.cronjob.uid\""),
        "{e}"
    );
    for from in config::NOT_BUILT_FROM {
        let e = check(json!({"extract": {"annotations": [{"key": "a", "from": from}]}}));
        assert!(
            e.starts_with("extract::annotations::0::from: not built"),
            "{e}"
        );
    }
    let e = check(json!({"kube_api_burst": -5}));
    assert!(e.starts_with("kube_api_burst: must be 0 or more"), "{e}");
    let cfg: K8sAttributesConfig = serde_json::from_value(json!({
        "kube_api_qps": 20.5, "kube_api_burst": 40,
        "extract": {"labels": [{"key": "app", "from": ""}]},
    }))
    .unwrap();
    let c = config::check(&cfg).unwrap();
    assert_eq!(c.labels[0].from, config::From::Pod);
    assert_eq!((cfg.kube_api_qps, cfg.kube_api_burst), (20.5, 40));
    // otelcol's older one-source form and its defaults.
    let cfg: K8sAttributesConfig = serde_json::from_value(json!({
        "pod_association": [{"from": "resource_attribute", "name": "k8s.pod.ip"}, {"from": "connection"}]
    }))
    .unwrap();
    let c = config::check(&cfg).unwrap();
    assert_eq!(c.associations.len(), 2);
    assert_eq!(cfg.auth_type, vigil_k8s::AuthType::ServiceAccount);
    assert_eq!(cfg.extract.metadata.len(), config::DEFAULT_METADATA.len());
    assert_eq!(cfg.wait_for_metadata_timeout, Duration::from_secs(10));
    let env = |_: &str| None;
    let f = config::FilterConfig {
        node_from_env_var: "K8S_NODE_NAME".into(),
        ..Default::default()
    };
    assert!(f.node_name(&env).unwrap_err().contains("K8S_NODE_NAME"));
}

#[test]
fn testdata_configs() {
    let id = ComponentId::parse("k8sattributes/x").unwrap();
    let n = crate::testdata::bad_configs("k8sattributes", |v| {
        factory().validate(&id, v).unwrap_err().to_string()
    });
    assert!(
        n >= 4,
        "expected bad-config cases in testdata/k8sattributes"
    );
    let n = crate::testdata::good_configs("k8sattributes", |v| {
        factory().validate(&id, v).map_err(|e| e.to_string())
    });
    assert!(n >= 1, "expected good configs in testdata/k8sattributes");
}

/// A rule may name any extracted attribute, as otelcol's pod index does (a Job's pods by
/// `k8s.job.name`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associates_by_an_extracted_attribute() {
    let api = cluster();
    api.apply(
        Kind::Pod,
        k8s_api::pod(
            "shop",
            "report-29000000-abcde",
            "node-a",
            "10.244.1.40",
            Owner::Job("report-29000000"),
        ),
    );
    let (p, keep) = processor(
        &api,
        json!({"auth_type": "none", "filter": {"node": "node-a"}, "wait_for_metadata": true,
            "pod_association": [{"sources": [{"from": "resource_attribute", "name": "k8s.job.name"}]}],
            "extract": {"metadata": ["k8s.pod.name", "k8s.job.name", "k8s.cronjob.name"]}}),
        DELETE_GRACE,
    )
    .await;
    send(&p, None, vec![kv_str("k8s.job.name", "report-29000000")]).await;
    let a = last(&keep);
    assert_eq!(get_str(&a, "k8s.pod.name"), Some("report-29000000-abcde"));
    assert_eq!(get_str(&a, "k8s.cronjob.name"), Some("report"));
    send(&p, None, vec![kv_str("k8s.job.name", "other")]).await;
    assert_eq!(get_str(&last(&keep), "k8s.pod.name"), None);
}
