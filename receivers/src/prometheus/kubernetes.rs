//! `kubernetes_sd_configs`: scrape targets from the Kubernetes API, with the roles `pod`, `node`,
//! `service`, `endpoints`, `endpointslice` (discovery.k8s.io/v1) and `ingress` (networking.k8s.io/v1)
//! and the `__meta_kubernetes_*` labels Prometheus gives them, so that a
//! job's `relabel_configs` written for Prometheus select and rewrite the same targets here.
//!
//! Prometheus watches the API; vigil lists it again every [`RELIST_INTERVAL`] (one GET per
//! resource kind and namespace, `resourceVersion=0` so the API server answers from its cache).
//! A DaemonSet agent that selects its own node's pods asks for little, and a list needs no
//! long-lived connection or watch bookkeeping. Each answer is bounded ([`MAX_LIST_BYTES`]); a list
//! that fails or is too large keeps the job's previous targets and counts
//! `vigil_prometheus_sd_failures{receiver,job}`, as Prometheus keeps its last state when a watch
//! breaks. Off a cluster (no `KUBERNETES_SERVICE_HOST`, no service-account files) and without
//! `api_server`, each attempt fails the same way and the job has no Kubernetes targets; otelcol
//! likewise logs that discovery cannot start and runs on.
//!
//! The API client is plain HTTPS with the pod's service-account token, read again at every list
//! since the kubelet rotates it. Tests answer as the API server does (its documented list
//! responses) from a local server: a cluster cannot run here.

use super::config::{Authorization, BasicAuth, TlsConfig};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// How often a job's Kubernetes targets are listed again.
pub const RELIST_INTERVAL: Duration = Duration::from_secs(30);
/// The largest list answer read, per request. A cluster-wide pod list of ~10k pods is ~50 MiB.
pub const MAX_LIST_BYTES: usize = 64 * 1024 * 1024;
/// How long one list request may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);
/// Where a pod finds its service account.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The roles, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Pod,
    Node,
    Service,
    Endpoints,
    EndpointSlice,
    Ingress,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "pod" => Ok(Role::Pod),
            "node" => Ok(Role::Node),
            "service" => Ok(Role::Service),
            "endpoints" => Ok(Role::Endpoints),
            "endpointslice" => Ok(Role::EndpointSlice),
            "ingress" => Ok(Role::Ingress),
            "" => Err("role missing (one of: pod, service, endpoints, endpointslice, node, ingress)".into()),
            other => Err(format!(
                "unknown Kubernetes SD role {other:?} (one of: pod, service, endpoints, endpointslice, node, ingress)"
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Node => "node",
            Role::Service => "service",
            Role::Endpoints => "endpoints",
            Role::EndpointSlice => "endpointslice",
            Role::Ingress => "ingress",
        }
    }

    /// The API path of this role's objects, in one namespace or cluster-wide. EndpointSlices and
    /// Ingresses are read at their v1 groups only (GA since Kubernetes 1.21 and 1.19); Prometheus
    /// 3 dropped the beta versions too.
    fn path(self, namespace: Option<&str>) -> String {
        let (group, plural) = match self {
            Role::Pod => ("/api/v1", "pods"),
            Role::Node => ("/api/v1", "nodes"),
            Role::Service => ("/api/v1", "services"),
            Role::Endpoints => ("/api/v1", "endpoints"),
            Role::EndpointSlice => ("/apis/discovery.k8s.io/v1", "endpointslices"),
            Role::Ingress => ("/apis/networking.k8s.io/v1", "ingresses"),
        };
        match namespace {
            Some(ns) if self != Role::Node => format!("{group}/namespaces/{ns}/{plural}"),
            _ => format!("{group}/{plural}"),
        }
    }

    /// Which selector roles a discovery role reads (Prometheus's table).
    fn selectable(self) -> &'static [Role] {
        match self {
            Role::Pod => &[Role::Pod],
            Role::Node => &[Role::Node],
            Role::Service => &[Role::Service],
            Role::Endpoints => &[Role::Pod, Role::Service, Role::Endpoints],
            Role::EndpointSlice => &[Role::Pod, Role::Service, Role::EndpointSlice],
            Role::Ingress => &[Role::Ingress],
        }
    }
}

/// One `kubernetes_sd_configs` entry as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSdRaw {
    pub role: Option<String>,
    pub api_server: Option<String>,
    pub kubeconfig_file: Option<String>,
    pub namespaces: Option<NamespacesRaw>,
    #[serde(default)]
    pub selectors: Vec<SelectorRaw>,
    pub attach_metadata: Option<AttachMetadata>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacesRaw {
    #[serde(default)]
    pub own_namespace: bool,
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SelectorRaw {
    pub role: Option<String>,
    pub label: Option<String>,
    pub field: Option<String>,
}

/// `attach_metadata`: `node` adds the pod's node labels (roles pod and endpoints); `namespace` is
/// accepted and adds nothing yet.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AttachMetadata {
    #[serde(default)]
    pub node: bool,
    #[serde(default)]
    pub namespace: bool,
}

/// One checked `kubernetes_sd_configs` entry.
#[derive(Debug, Clone)]
pub struct KubernetesSd {
    pub role: Role,
    /// `None`: in-cluster, from the pod's environment and service account.
    pub api_server: Option<String>,
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub own_namespace: bool,
    /// Label and field selectors per role, as the API takes them.
    pub selectors: BTreeMap<Role, (Option<String>, Option<String>)>,
    pub attach_node: bool,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls: TlsConfig,
}

/// Checks one entry as Prometheus's loader does; errors are `(key under the entry, message)`.
pub fn check(raw: &KubernetesSdRaw) -> Result<KubernetesSd, (String, String)> {
    let bad = |k: &str, m: String| (k.to_string(), m);
    let role = Role::parse(raw.role.as_deref().unwrap_or("")).map_err(|m| bad("role", m))?;
    if raw.kubeconfig_file.is_some() {
        if raw.api_server.is_some() {
            return Err(bad(
                "kubeconfig_file",
                "cannot use 'kubeconfig_file' and 'api_server' simultaneously".into(),
            ));
        }
        return Err(bad(
            "kubeconfig_file",
            "kubeconfig files are not read by vigil; set api_server and its tls_config and authorization, or run in the cluster".into(),
        ));
    }
    let custom_client = raw.basic_auth.is_some()
        || raw.authorization.is_some()
        || raw.bearer_token.is_some()
        || raw.bearer_token_file.is_some()
        || raw.tls_config.is_some();
    if let Some(url) = &raw.api_server {
        let u = reqwest::Url::parse(url)
            .map_err(|e| bad("api_server", format!("invalid URL {url:?}: {e}")))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad(
                "api_server",
                format!("{url:?} must be an http or https URL"),
            ));
        }
    } else if custom_client {
        return Err(bad(
            "api_server",
            "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
                .into(),
        ));
    }
    let ns = raw.namespaces.clone().unwrap_or_default();
    if ns.own_namespace && raw.api_server.is_some() {
        return Err(bad(
            "namespaces::own_namespace",
            "cannot use 'api_server' and 'namespaces.own_namespace' simultaneously".into(),
        ));
    }
    let mut selectors = BTreeMap::new();
    for (i, s) in raw.selectors.iter().enumerate() {
        let r = Role::parse(s.role.as_deref().unwrap_or(""))
            .map_err(|m| bad(&format!("selectors::{i}::role"), m))?;
        if !role.selectable().contains(&r) {
            let allowed: Vec<&str> = role.selectable().iter().map(|r| r.name()).collect();
            return Err(bad(
                &format!("selectors::{i}::role"),
                format!(
                    "{} role supports only {} selectors",
                    role.name(),
                    allowed.join(", ")
                ),
            ));
        }
        if selectors
            .insert(r, (s.label.clone(), s.field.clone()))
            .is_some()
        {
            return Err(bad(
                &format!("selectors::{i}::role"),
                format!("duplicated selector role: {}", r.name()),
            ));
        }
    }
    let mut authorization = raw.authorization.clone();
    if raw.bearer_token.is_some() || raw.bearer_token_file.is_some() {
        if authorization.is_some() || raw.basic_auth.is_some() {
            return Err(bad(
                "bearer_token_file",
                "at most one of basic_auth, authorization and bearer_token(_file) must be configured".into(),
            ));
        }
        authorization = Some(Authorization {
            kind: Some("Bearer".into()),
            credentials: raw.bearer_token.clone(),
            credentials_file: raw.bearer_token_file.clone(),
        });
    }
    let tls = raw.tls_config.clone().unwrap_or_default();
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err(bad(
            "tls_config",
            "cert_file and key_file must be set together".into(),
        ));
    }
    if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) {
        vigil_core::net::client_tls::server_name(name)
            .map_err(|m| bad("tls_config::server_name", m))?;
    }
    for (key, v) in [
        ("min_version", &tls.min_version),
        ("max_version", &tls.max_version),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            super::config::tls_version(v).map_err(|m| bad(&format!("tls_config::{key}"), m))?;
        }
    }
    Ok(KubernetesSd {
        role,
        api_server: raw.api_server.clone(),
        namespaces: ns.names,
        own_namespace: ns.own_namespace,
        selectors,
        attach_node: raw.attach_metadata.as_ref().is_some_and(|a| a.node),
        basic_auth: raw.basic_auth.clone(),
        authorization,
        tls,
    })
}

/// Where and how to reach the API server.
struct Api {
    base: String,
    client: reqwest::Client,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
}

fn read_trimmed(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read {path}: {e}"))
}

impl Api {
    fn new(sd: &KubernetesSd) -> Result<Api, String> {
        let mut tls = sd.tls.clone();
        let (base, basic_auth, authorization) = match &sd.api_server {
            Some(url) => (
                url.trim_end_matches('/').to_string(),
                sd.basic_auth.clone(),
                sd.authorization.clone(),
            ),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
                    "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined (or set api_server)".to_string()
                })?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").map_err(|_| {
                    "unable to load in-cluster configuration, KUBERNETES_SERVICE_PORT must be defined".to_string()
                })?;
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                tls.ca_file = Some(format!("{SERVICE_ACCOUNT}/ca.crt"));
                (
                    format!("https://{host}:{port}"),
                    None,
                    Some(Authorization {
                        kind: Some("Bearer".into()),
                        credentials: None,
                        credentials_file: Some(format!("{SERVICE_ACCOUNT}/token")),
                    }),
                )
            }
        };
        let b = reqwest::Client::builder()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .timeout(LIST_TIMEOUT)
            .tls_backend_preconfigured(super::scrape::tls_client_config(&tls, true)?);
        let client = b
            .build()
            .map_err(|e| format!("cannot build the API client: {e}"))?;
        Ok(Api {
            base,
            client,
            basic_auth,
            authorization,
        })
    }

    /// Lists one kind of object; returns its `items`.
    async fn list(
        &self,
        path: &str,
        selector: Option<&(Option<String>, Option<String>)>,
    ) -> Result<Vec<Value>, String> {
        let mut query: Vec<(&str, &str)> = vec![("resourceVersion", "0")];
        if let Some((label, field)) = selector {
            if let Some(l) = label.as_deref().filter(|l| !l.is_empty()) {
                query.push(("labelSelector", l));
            }
            if let Some(f) = field.as_deref().filter(|f| !f.is_empty()) {
                query.push(("fieldSelector", f));
            }
        }
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| format!("invalid API URL {}{path}: {e}", self.base))?;
        url.query_pairs_mut().extend_pairs(&query);
        let mut req = self.client.get(url.clone());
        if let Some(b) = &self.basic_auth {
            let password = match &b.password_file {
                Some(f) => Some(read_trimmed(f)?),
                None => b.password.clone(),
            };
            req = req.basic_auth(&b.username, password);
        }
        if let Some(a) = &self.authorization {
            let creds = match &a.credentials_file {
                Some(f) => read_trimmed(f)?,
                None => a.credentials.clone().unwrap_or_default(),
            };
            let kind = a.kind.as_deref().unwrap_or("Bearer");
            req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {creds}"));
        }
        let mut resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: HTTP status {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(format!(
                    "GET {url}: answer larger than {MAX_LIST_BYTES} bytes; narrow the job with namespaces or selectors"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        #[derive(Deserialize)]
        struct List {
            #[serde(default)]
            items: Vec<Value>,
        }
        let list: List =
            serde_json::from_slice(&body).map_err(|e| format!("GET {url}: not a list: {e}"))?;
        Ok(list.items)
    }
}

/// What one discovery round found: one group per target, its labels already merged (a target's
/// own labels win over its object's, as in Prometheus).
pub type Groups = Vec<super::config::TargetGroup>;

/// Lists the objects an entry's role needs and builds its targets.
pub async fn discover(sd: &KubernetesSd) -> Result<Groups, String> {
    let api = Api::new(sd)?;
    let namespaces: Vec<Option<String>> = if sd.own_namespace || !sd.namespaces.is_empty() {
        let mut ns: BTreeSet<String> = sd.namespaces.iter().cloned().collect();
        if sd.own_namespace {
            ns.insert(read_trimmed(&format!("{SERVICE_ACCOUNT}/namespace"))?);
        }
        ns.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let list_all = |role: Role| {
        let api = &api;
        let namespaces = &namespaces;
        async move {
            let mut items = Vec::new();
            if role == Role::Node {
                items.extend(api.list(&role.path(None), sd.selectors.get(&role)).await?);
            } else {
                for ns in namespaces {
                    items.extend(
                        api.list(&role.path(ns.as_deref()), sd.selectors.get(&role))
                            .await?,
                    );
                }
            }
            Ok::<_, String>(items)
        }
    };
    let nodes =
        if sd.attach_node && matches!(sd.role, Role::Pod | Role::Endpoints | Role::EndpointSlice) {
            let items = api.list(&Role::Node.path(None), None).await?;
            items
                .iter()
                .filter_map(|n| Some((str_at(n, &["metadata", "name"])?.to_string(), n.clone())))
                .collect()
        } else {
            HashMap::new()
        };
    Ok(match sd.role {
        Role::Pod => {
            let pods = list_all(Role::Pod).await?;
            pods.iter().flat_map(|p| pod_targets(p, &nodes)).collect()
        }
        Role::Node => list_all(Role::Node)
            .await?
            .iter()
            .filter_map(node_target)
            .collect(),
        Role::Service => list_all(Role::Service)
            .await?
            .iter()
            .flat_map(service_targets)
            .collect(),
        Role::Endpoints => {
            let endpoints = list_all(Role::Endpoints).await?;
            let pods = list_all(Role::Pod).await?;
            let services = list_all(Role::Service).await?;
            endpoints_targets(&endpoints, &pods, &services, &nodes)
        }
        Role::EndpointSlice => {
            let slices = list_all(Role::EndpointSlice).await?;
            let pods = list_all(Role::Pod).await?;
            let services = list_all(Role::Service).await?;
            endpointslice_targets(&slices, &pods, &services, &nodes)
        }
        Role::Ingress => list_all(Role::Ingress)
            .await?
            .iter()
            .flat_map(ingress_targets)
            .collect(),
    })
}

type Labels = BTreeMap<String, String>;

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path)?.as_str()
}

fn items<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Prometheus's `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `__meta_kubernetes_<role>_name` and the object's labels and annotations, each with its
/// `…present` twin (Prometheus's `addObjectMetaLabels`).
fn object_meta(ls: &mut Labels, obj: &Value, role: &str) {
    let prefix = format!("__meta_kubernetes_{role}_");
    ls.insert(
        format!("{prefix}name"),
        str_at(obj, &["metadata", "name"]).unwrap_or("").into(),
    );
    for (kind, present) in [
        ("label", "labelpresent"),
        ("annotation", "annotationpresent"),
    ] {
        let key = if kind == "label" {
            "labels"
        } else {
            "annotations"
        };
        if let Some(m) = at(obj, &["metadata", key]).and_then(Value::as_object) {
            for (k, v) in m {
                let n = sanitize(k);
                ls.insert(
                    format!("{prefix}{kind}_{n}"),
                    v.as_str().unwrap_or("").into(),
                );
                ls.insert(format!("{prefix}{present}_{n}"), "true".into());
            }
        }
    }
}

fn namespace_of(obj: &Value) -> String {
    str_at(obj, &["metadata", "namespace"])
        .unwrap_or("")
        .to_string()
}

fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn port_text(v: Option<&Value>) -> String {
    v.and_then(Value::as_u64)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

/// The labels of a pod itself (Prometheus's `podLabels`).
fn pod_labels(pod: &Value, nodes: &HashMap<String, Value>) -> Labels {
    let mut ls = Labels::new();
    ls.insert("__meta_kubernetes_namespace".into(), namespace_of(pod));
    ls.insert(
        "__meta_kubernetes_pod_ip".into(),
        str_at(pod, &["status", "podIP"]).unwrap_or("").into(),
    );
    let ready = items(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == Some("Ready"))
        .and_then(|c| str_at(c, &["status"]))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "unknown".into());
    ls.insert("__meta_kubernetes_pod_ready".into(), ready);
    for (label, path) in [
        ("phase", &["status", "phase"][..]),
        ("node_name", &["spec", "nodeName"]),
        ("host_ip", &["status", "hostIP"]),
        ("uid", &["metadata", "uid"]),
    ] {
        ls.insert(
            format!("__meta_kubernetes_pod_{label}"),
            str_at(pod, path).unwrap_or("").into(),
        );
    }
    object_meta(&mut ls, pod, "pod");
    if let Some(owner) = items(pod, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| at(o, &["controller"]).and_then(Value::as_bool) == Some(true))
    {
        for (label, key) in [("kind", "kind"), ("name", "name")] {
            if let Some(v) = str_at(owner, &[key]).filter(|v| !v.is_empty()) {
                ls.insert(
                    format!("__meta_kubernetes_pod_controller_{label}"),
                    v.into(),
                );
            }
        }
    }
    if let Some(node) = str_at(pod, &["spec", "nodeName"]).and_then(|n| nodes.get(n)) {
        object_meta(&mut ls, node, "node");
    }
    ls
}

/// One group per target, the object's labels under the target's own.
fn group(address: String, object: &Labels, own: Labels) -> super::config::TargetGroup {
    let mut labels = object.clone();
    labels.extend(own);
    super::config::TargetGroup {
        targets: vec![address],
        labels,
    }
}

/// The `__meta_kubernetes_pod_container_*` labels of one container (and port, when it has one).
fn container_labels(
    pod: &Value,
    c: &Value,
    init: bool,
    port: Option<&Value>,
) -> (Option<String>, Labels) {
    let name = str_at(c, &["name"]).unwrap_or("");
    let statuses = if init {
        "initContainerStatuses"
    } else {
        "containerStatuses"
    };
    let id = items(pod, &["status", statuses])
        .iter()
        .find(|s| str_at(s, &["name"]) == Some(name))
        .and_then(|s| str_at(s, &["containerID"]))
        .unwrap_or("");
    let mut ls = Labels::new();
    ls.insert("__meta_kubernetes_pod_container_name".into(), name.into());
    ls.insert("__meta_kubernetes_pod_container_id".into(), id.into());
    ls.insert(
        "__meta_kubernetes_pod_container_image".into(),
        str_at(c, &["image"]).unwrap_or("").into(),
    );
    ls.insert(
        "__meta_kubernetes_pod_container_init".into(),
        init.to_string(),
    );
    let number = port.map(|p| port_text(p.get("containerPort")));
    if let Some(p) = port {
        ls.insert(
            "__meta_kubernetes_pod_container_port_name".into(),
            str_at(p, &["name"]).unwrap_or("").into(),
        );
        ls.insert(
            "__meta_kubernetes_pod_container_port_number".into(),
            number.clone().unwrap_or_default(),
        );
        ls.insert(
            "__meta_kubernetes_pod_container_port_protocol".into(),
            str_at(p, &["protocol"]).unwrap_or("TCP").into(),
        );
    }
    (number, ls)
}

/// The containers of a pod, regular ones first, each with whether it is an init container.
fn containers(pod: &Value) -> impl Iterator<Item = (&Value, bool)> {
    items(pod, &["spec", "containers"])
        .iter()
        .map(|c| (c, false))
        .chain(
            items(pod, &["spec", "initContainers"])
                .iter()
                .map(|c| (c, true)),
        )
}

/// Role `pod`: a target per declared container port, and one per container without ports at the
/// pod's IP alone. A pod without an IP yet has no targets.
fn pod_targets(pod: &Value, nodes: &HashMap<String, Value>) -> Groups {
    let Some(ip) = str_at(pod, &["status", "podIP"]).filter(|ip| !ip.is_empty()) else {
        return Vec::new();
    };
    let object = pod_labels(pod, nodes);
    let mut out = Vec::new();
    for (c, init) in containers(pod) {
        let ports = items(c, &["ports"]);
        if ports.is_empty() {
            let (_, ls) = container_labels(pod, c, init, None);
            out.push(group(ip.to_string(), &object, ls));
        }
        for p in ports {
            let (number, ls) = container_labels(pod, c, init, Some(p));
            out.push(group(
                join_host_port(ip, &number.unwrap_or_default()),
                &object,
                ls,
            ));
        }
    }
    out
}

/// Role `node`: the kubelet's port at the node's first address by Prometheus's preference, with
/// `instance` set to the node's name.
fn node_target(node: &Value) -> Option<super::config::TargetGroup> {
    let addresses = items(node, &["status", "addresses"]);
    let mut by_type: BTreeMap<String, String> = BTreeMap::new();
    for a in addresses {
        if let (Some(t), Some(addr)) = (str_at(a, &["type"]), str_at(a, &["address"])) {
            by_type
                .entry(t.to_string())
                .or_insert_with(|| addr.to_string());
        }
    }
    let host = [
        "InternalIP",
        "InternalDNS",
        "ExternalIP",
        "ExternalDNS",
        "LegacyHostIP",
        "Hostname",
    ]
    .iter()
    .find_map(|t| by_type.get(*t))?;
    let port = port_text(at(
        node,
        &["status", "daemonEndpoints", "kubeletEndpoint", "Port"],
    ));
    let mut object = Labels::new();
    object_meta(&mut object, node, "node");
    object.insert(
        "__meta_kubernetes_node_provider_id".into(),
        str_at(node, &["spec", "providerID"]).unwrap_or("").into(),
    );
    let mut own = Labels::new();
    own.insert(
        "instance".into(),
        str_at(node, &["metadata", "name"]).unwrap_or("").into(),
    );
    for (t, a) in &by_type {
        own.insert(
            sanitize(&format!("__meta_kubernetes_node_address_{t}")),
            a.clone(),
        );
    }
    Some(group(join_host_port(host, &port), &object, own))
}

/// The labels a service gives every target built from it.
fn service_labels(svc: &Value) -> Labels {
    let mut ls = Labels::new();
    ls.insert("__meta_kubernetes_namespace".into(), namespace_of(svc));
    object_meta(&mut ls, svc, "service");
    ls
}

/// Role `service`: a target per service port at the service's cluster DNS name.
fn service_targets(svc: &Value) -> Groups {
    let object = service_labels(svc);
    let name = str_at(svc, &["metadata", "name"]).unwrap_or("");
    let host = format!("{name}.{}.svc", namespace_of(svc));
    let kind = str_at(svc, &["spec", "type"]).unwrap_or("ClusterIP");
    let mut out = Vec::new();
    for p in items(svc, &["spec", "ports"]) {
        let number = port_text(p.get("port"));
        let mut own = Labels::new();
        own.insert(
            "__meta_kubernetes_service_port_name".into(),
            str_at(p, &["name"]).unwrap_or("").into(),
        );
        own.insert(
            "__meta_kubernetes_service_port_number".into(),
            number.clone(),
        );
        own.insert(
            "__meta_kubernetes_service_port_protocol".into(),
            str_at(p, &["protocol"]).unwrap_or("TCP").into(),
        );
        if let Some(ap) = str_at(p, &["appProtocol"]) {
            own.insert(
                "__meta_kubernetes_service_port_app_protocol".into(),
                ap.into(),
            );
        }
        own.insert("__meta_kubernetes_service_type".into(), kind.into());
        if kind == "ExternalName" {
            own.insert(
                "__meta_kubernetes_service_external_name".into(),
                str_at(svc, &["spec", "externalName"]).unwrap_or("").into(),
            );
        } else {
            own.insert(
                "__meta_kubernetes_service_cluster_ip".into(),
                str_at(svc, &["spec", "clusterIP"]).unwrap_or("").into(),
            );
        }
        out.push(group(join_host_port(&host, &number), &object, own));
    }
    out
}

/// An object's namespace and name: how the endpoint roles find the pods and services they name.
fn namespaced_name(o: &Value) -> (String, String) {
    (
        namespace_of(o),
        str_at(o, &["metadata", "name"]).unwrap_or("").to_string(),
    )
}

fn by_namespace_and_name(objects: &[Value]) -> HashMap<(String, String), &Value> {
    objects.iter().map(|o| (namespaced_name(o), o)).collect()
}

/// Role `endpoints`: a target per endpoint address and port, with its service's and (when it is a
/// pod) its pod's and container's labels; then every container port of those pods that no
/// endpoint named, as Prometheus adds them.
fn endpoints_targets(
    endpoints: &[Value],
    pods: &[Value],
    services: &[Value],
    nodes: &HashMap<String, Value>,
) -> Groups {
    let pods = by_namespace_and_name(pods);
    let services = by_namespace_and_name(services);
    let mut out = Vec::new();
    for ep in endpoints {
        let (ns, name) = namespaced_name(ep);
        let mut object = Labels::new();
        object.insert("__meta_kubernetes_namespace".into(), ns.clone());
        object_meta(&mut object, ep, "endpoints");
        if let Some(svc) = services.get(&(ns.clone(), name.clone())) {
            object.extend(service_labels(svc));
        }
        // Pods seen through this object, and which of their ports an endpoint already named.
        let mut seen: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for subset in items(ep, &["subsets"]) {
            for port in items(subset, &["ports"]) {
                let number = port_text(port.get("port"));
                let protocol = str_at(port, &["protocol"]).unwrap_or("TCP").to_string();
                for (list, ready) in [("addresses", true), ("notReadyAddresses", false)] {
                    for addr in items(subset, &[list]) {
                        let ip = str_at(addr, &["ip"]).unwrap_or("");
                        let mut own = Labels::new();
                        own.insert(
                            "__meta_kubernetes_endpoint_port_name".into(),
                            str_at(port, &["name"]).unwrap_or("").into(),
                        );
                        own.insert(
                            "__meta_kubernetes_endpoint_port_protocol".into(),
                            protocol.clone(),
                        );
                        own.insert("__meta_kubernetes_endpoint_ready".into(), ready.to_string());
                        if let Some(ap) = str_at(port, &["appProtocol"]) {
                            own.insert(
                                "__meta_kubernetes_endpoint_port_app_protocol".into(),
                                ap.into(),
                            );
                        }
                        if let Some(h) = str_at(addr, &["hostname"]) {
                            own.insert("__meta_kubernetes_endpoint_hostname".into(), h.into());
                        }
                        if let Some(n) = str_at(addr, &["nodeName"]) {
                            own.insert("__meta_kubernetes_endpoint_node_name".into(), n.into());
                        }
                        let target = at(addr, &["targetRef"]);
                        if let Some(t) = target {
                            own.insert(
                                "__meta_kubernetes_endpoint_address_target_kind".into(),
                                str_at(t, &["kind"]).unwrap_or("").into(),
                            );
                            own.insert(
                                "__meta_kubernetes_endpoint_address_target_name".into(),
                                str_at(t, &["name"]).unwrap_or("").into(),
                            );
                        }
                        let pod = target
                            .filter(|t| str_at(t, &["kind"]) == Some("Pod"))
                            .and_then(|t| {
                                let pns = str_at(t, &["namespace"]).unwrap_or(&ns).to_string();
                                let pname = str_at(t, &["name"]).unwrap_or("").to_string();
                                pods.get(&(pns, pname))
                            });
                        if let Some(pod) = pod {
                            own.extend(pod_labels(pod, nodes));
                            let pname = str_at(pod, &["metadata", "name"]).unwrap_or("");
                            seen.entry(pname.to_string()).or_default();
                            for (c, init) in containers(pod) {
                                for p in items(c, &["ports"]) {
                                    if port_text(p.get("containerPort")) == number
                                        && str_at(p, &["protocol"]).unwrap_or("TCP") == protocol
                                    {
                                        own.extend(container_labels(pod, c, init, Some(p)).1);
                                        seen.entry(pname.to_string())
                                            .or_default()
                                            .insert((number.clone(), protocol.clone()));
                                    }
                                }
                            }
                        }
                        out.push(group(join_host_port(ip, &number), &object, own));
                    }
                }
            }
        }
        for (pname, ports) in seen {
            let Some(pod) = pods.get(&(ns.clone(), pname)) else {
                continue;
            };
            let Some(ip) = str_at(pod, &["status", "podIP"]).filter(|ip| !ip.is_empty()) else {
                continue;
            };
            let plabels = pod_labels(pod, nodes);
            for (c, init) in containers(pod) {
                for p in items(c, &["ports"]) {
                    let number = port_text(p.get("containerPort"));
                    let protocol = str_at(p, &["protocol"]).unwrap_or("TCP").to_string();
                    if ports.contains(&(number.clone(), protocol)) {
                        continue;
                    }
                    let mut own = plabels.clone();
                    own.extend(container_labels(pod, c, init, Some(p)).1);
                    out.push(group(join_host_port(ip, &number), &object, own));
                }
            }
        }
    }
    out
}

/// Role `endpointslice`: as `endpoints`, from discovery.k8s.io/v1 EndpointSlices. A target per
/// endpoint address and slice port, with the slice's service (named by its
/// `kubernetes.io/service-name` label) and, for a pod endpoint, the pod's labels and those of the
/// container that declares the port; then every container port of those pods that no slice port
/// named. As in Prometheus, ports match by number alone and only regular containers are read.
fn endpointslice_targets(
    slices: &[Value],
    pods: &[Value],
    services: &[Value],
    nodes: &HashMap<String, Value>,
) -> Groups {
    let pods = by_namespace_and_name(pods);
    let services = by_namespace_and_name(services);
    let prefix = "__meta_kubernetes_endpointslice_";
    let mut out = Vec::new();
    for es in slices {
        let ns = namespace_of(es);
        let mut object = Labels::new();
        object.insert("__meta_kubernetes_namespace".into(), ns.clone());
        object.insert(
            format!("{prefix}address_type"),
            str_at(es, &["addressType"]).unwrap_or("").into(),
        );
        object_meta(&mut object, es, "endpointslice");
        if let Some(svc) = at(es, &["metadata", "labels", "kubernetes.io/service-name"])
            .and_then(Value::as_str)
            .and_then(|name| services.get(&(ns.clone(), name.to_string())))
        {
            object.extend(service_labels(svc));
        }
        // Pods seen through this slice, and the port numbers a slice port already named.
        let mut seen: BTreeMap<(String, String), BTreeSet<u64>> = BTreeMap::new();
        for ep in items(es, &["endpoints"]) {
            for port in items(es, &["ports"]) {
                let number = port.get("port").and_then(Value::as_u64);
                for addr in items(ep, &["addresses"]).iter().filter_map(Value::as_str) {
                    let mut own = Labels::new();
                    for (label, field) in [
                        ("port_name", "name"),
                        ("port_protocol", "protocol"),
                        ("port_app_protocol", "appProtocol"),
                    ] {
                        if let Some(v) = str_at(port, &[field]) {
                            own.insert(format!("{prefix}{label}"), v.into());
                        }
                    }
                    if let Some(n) = number {
                        own.insert(format!("{prefix}port"), n.to_string());
                    }
                    for c in ["ready", "serving", "terminating"] {
                        if let Some(b) = at(ep, &["conditions", c]).and_then(Value::as_bool) {
                            own.insert(format!("{prefix}endpoint_conditions_{c}"), b.to_string());
                        }
                    }
                    for (label, field) in [
                        ("endpoint_hostname", "hostname"),
                        ("endpoint_node_name", "nodeName"),
                        ("endpoint_zone", "zone"),
                    ] {
                        if let Some(v) = str_at(ep, &[field]) {
                            own.insert(format!("{prefix}{label}"), v.into());
                        }
                    }
                    let target = at(ep, &["targetRef"]);
                    if let Some(t) = target {
                        own.insert(
                            format!("{prefix}address_target_kind"),
                            str_at(t, &["kind"]).unwrap_or("").into(),
                        );
                        own.insert(
                            format!("{prefix}address_target_name"),
                            str_at(t, &["name"]).unwrap_or("").into(),
                        );
                    }
                    if let Some(topology) =
                        at(ep, &["deprecatedTopology"]).and_then(Value::as_object)
                    {
                        for (k, v) in topology {
                            let n = sanitize(k);
                            own.insert(
                                format!("{prefix}endpoint_topology_{n}"),
                                v.as_str().unwrap_or("").into(),
                            );
                            own.insert(
                                format!("{prefix}endpoint_topology_present_{n}"),
                                "true".into(),
                            );
                        }
                    }
                    // attach_metadata.node: the node a Node target names, else the endpoint's.
                    let node_name = match target {
                        Some(t) if str_at(t, &["kind"]) == Some("Node") => str_at(t, &["name"]),
                        _ => str_at(ep, &["nodeName"]),
                    };
                    if let Some(node) = node_name.and_then(|n| nodes.get(n)) {
                        object_meta(&mut own, node, "node");
                    }
                    let pod_key = target
                        .filter(|t| str_at(t, &["kind"]) == Some("Pod"))
                        .map(|t| {
                            (
                                str_at(t, &["namespace"]).unwrap_or(&ns).to_string(),
                                str_at(t, &["name"]).unwrap_or("").to_string(),
                            )
                        });
                    if let Some((k, pod)) = pod_key.and_then(|k| pods.get(&k).map(|p| (k, *p))) {
                        own.extend(pod_labels(pod, nodes));
                        let ports = seen.entry(k).or_default();
                        if let Some(n) = number {
                            for c in items(pod, &["spec", "containers"]) {
                                if let Some(p) = items(c, &["ports"]).iter().find(|p| {
                                    p.get("containerPort").and_then(Value::as_u64) == Some(n)
                                }) {
                                    own.extend(container_labels(pod, c, false, Some(p)).1);
                                }
                            }
                            ports.insert(n);
                        }
                    }
                    let address = match number {
                        Some(n) => join_host_port(addr, &n.to_string()),
                        None => addr.to_string(),
                    };
                    out.push(group(address, &object, own));
                }
            }
        }
        for (k, ports) in seen {
            let Some(pod) = pods.get(&k) else {
                continue;
            };
            let Some(ip) = str_at(pod, &["status", "podIP"]).filter(|ip| !ip.is_empty()) else {
                continue;
            };
            let plabels = pod_labels(pod, nodes);
            for c in items(pod, &["spec", "containers"]) {
                for p in items(c, &["ports"]) {
                    let Some(n) = p.get("containerPort").and_then(Value::as_u64) else {
                        continue;
                    };
                    if ports.contains(&n) {
                        continue;
                    }
                    let mut own = plabels.clone();
                    own.extend(container_labels(pod, c, false, Some(p)).1);
                    out.push(group(join_host_port(ip, &n.to_string()), &object, own));
                }
            }
        }
    }
    out
}

/// Role `ingress`: a target per rule and path at the rule's host (no port: relabelling sets it),
/// `https` when one of the ingress's TLS hosts covers the host.
fn ingress_targets(ing: &Value) -> Groups {
    let mut object = Labels::new();
    object.insert("__meta_kubernetes_namespace".into(), namespace_of(ing));
    object_meta(&mut object, ing, "ingress");
    if let Some(class) = str_at(ing, &["spec", "ingressClassName"]) {
        object.insert("__meta_kubernetes_ingress_class_name".into(), class.into());
    }
    let tls_hosts: Vec<&str> = items(ing, &["spec", "tls"])
        .iter()
        .flat_map(|t| items(t, &["hosts"]))
        .filter_map(Value::as_str)
        .collect();
    let mut out = Vec::new();
    for rule in items(ing, &["spec", "rules"]) {
        let host = str_at(rule, &["host"]).unwrap_or("");
        let scheme = if tls_hosts.iter().any(|p| host_matches(p, host)) {
            "https"
        } else {
            "http"
        };
        // A rule without `http` stands for every path.
        let paths: Vec<&str> = match at(rule, &["http"]) {
            None => vec!["/"],
            Some(http) => items(http, &["paths"])
                .iter()
                .map(|p| {
                    str_at(p, &["path"])
                        .filter(|p| !p.is_empty())
                        .unwrap_or("/")
                })
                .collect(),
        };
        for path in paths {
            let mut own = Labels::new();
            own.insert("__meta_kubernetes_ingress_scheme".into(), scheme.into());
            own.insert("__meta_kubernetes_ingress_host".into(), host.into());
            own.insert("__meta_kubernetes_ingress_path".into(), path.into());
            out.push(group(host.to_string(), &object, own));
        }
    }
    out
}

/// Whether a TLS host pattern covers a host: equal, or `*.` standing for exactly one leading label.
fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p[0] == "*" && p.len() == h.len() && p[1..] == h[1..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels_of(g: &super::super::config::TargetGroup) -> &Labels {
        &g.labels
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u-1",
                "labels": {"app.kubernetes.io/name": "web"},
                "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d", "controller": true}]},
            "spec": {"nodeName": "node-1",
                "containers": [
                    {"name": "app", "image": "web:1", "ports": [
                        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                        {"name": "metrics", "containerPort": 9100}]},
                    {"name": "sidecar", "image": "envoy:1"}],
                "initContainers": [{"name": "init", "image": "busybox"}]},
            "status": {"podIP": "10.0.0.7", "hostIP": "192.168.1.2", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "app", "containerID": "containerd://abc"}]}
        })
    }

    #[test]
    fn pod_role_labels_every_container_port() {
        let groups = pod_targets(&pod(), &HashMap::new());
        let addrs: Vec<&str> = groups.iter().map(|g| g.targets[0].as_str()).collect();
        assert_eq!(
            addrs,
            ["10.0.0.7:8080", "10.0.0.7:9100", "10.0.0.7", "10.0.0.7"]
        );
        let l = labels_of(&groups[0]);
        assert_eq!(l["__meta_kubernetes_namespace"], "shop");
        assert_eq!(l["__meta_kubernetes_pod_name"], "web-1");
        assert_eq!(
            l["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "web"
        );
        assert_eq!(
            l["__meta_kubernetes_pod_labelpresent_app_kubernetes_io_name"],
            "true"
        );
        assert_eq!(
            l["__meta_kubernetes_pod_annotation_prometheus_io_port"],
            "9100"
        );
        assert_eq!(l["__meta_kubernetes_pod_ready"], "true");
        assert_eq!(l["__meta_kubernetes_pod_phase"], "Running");
        assert_eq!(l["__meta_kubernetes_pod_node_name"], "node-1");
        assert_eq!(l["__meta_kubernetes_pod_host_ip"], "192.168.1.2");
        assert_eq!(l["__meta_kubernetes_pod_controller_kind"], "ReplicaSet");
        assert_eq!(l["__meta_kubernetes_pod_container_port_name"], "http");
        assert_eq!(l["__meta_kubernetes_pod_container_port_protocol"], "TCP");
        assert_eq!(l["__meta_kubernetes_pod_container_id"], "containerd://abc");
        assert_eq!(l["__meta_kubernetes_pod_container_init"], "false");
        let init = labels_of(&groups[3]);
        assert_eq!(init["__meta_kubernetes_pod_container_init"], "true");
        assert!(!init.contains_key("__meta_kubernetes_pod_container_port_number"));
        // A pod without an IP yet is not a target.
        let mut pending = pod();
        pending["status"]["podIP"] = json!("");
        assert!(pod_targets(&pending, &HashMap::new()).is_empty());
    }

    #[test]
    fn node_role_prefers_the_internal_ip_and_names_the_instance() {
        let node = json!({
            "metadata": {"name": "node-1", "labels": {"kubernetes.io/os": "linux"}},
            "spec": {"providerID": "aws:///eu-west-1a/i-1"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "ip-192-168-1-2"},
                {"type": "InternalIP", "address": "192.168.1.2"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        });
        let g = node_target(&node).unwrap();
        assert_eq!(g.targets, ["192.168.1.2:10250"]);
        assert_eq!(g.labels["instance"], "node-1");
        assert_eq!(
            g.labels["__meta_kubernetes_node_label_kubernetes_io_os"],
            "linux"
        );
        assert_eq!(
            g.labels["__meta_kubernetes_node_address_InternalIP"],
            "192.168.1.2"
        );
        assert_eq!(
            g.labels["__meta_kubernetes_node_provider_id"],
            "aws:///eu-west-1a/i-1"
        );
    }

    #[test]
    fn endpoints_role_joins_services_pods_and_unnamed_ports() {
        let ep = json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "subsets": [{
                "addresses": [{"ip": "10.0.0.7", "nodeName": "node-1",
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop"}}],
                "notReadyAddresses": [{"ip": "10.0.0.8"}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]
        });
        let svc = json!({"metadata": {"name": "web", "namespace": "shop",
            "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        let groups =
            endpoints_targets(&[ep], &[pod()], std::slice::from_ref(&svc), &HashMap::new());
        let addrs: Vec<&str> = groups.iter().map(|g| g.targets[0].as_str()).collect();
        // The endpoint's two addresses, then the pod's other port (9100) that no endpoint named.
        assert_eq!(addrs, ["10.0.0.7:8080", "10.0.0.8:8080", "10.0.0.7:9100"]);
        let l = &groups[0].labels;
        assert_eq!(l["__meta_kubernetes_endpoints_name"], "web");
        assert_eq!(l["__meta_kubernetes_service_name"], "web");
        assert_eq!(
            l["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
            "true"
        );
        assert_eq!(l["__meta_kubernetes_endpoint_ready"], "true");
        assert_eq!(l["__meta_kubernetes_endpoint_address_target_kind"], "Pod");
        assert_eq!(l["__meta_kubernetes_pod_name"], "web-1");
        assert_eq!(l["__meta_kubernetes_pod_container_name"], "app");
        assert_eq!(
            groups[1].labels["__meta_kubernetes_endpoint_ready"],
            "false"
        );
        assert!(!groups[1].labels.contains_key("__meta_kubernetes_pod_name"));
        assert!(!groups[2]
            .labels
            .contains_key("__meta_kubernetes_endpoint_port_name"));
        // Service role: the cluster DNS name.
        let s = service_targets(&svc);
        assert_eq!(s[0].targets, ["web.shop.svc:80"]);
        assert_eq!(
            s[0].labels["__meta_kubernetes_service_cluster_ip"],
            "10.96.0.10"
        );
    }

    #[test]
    fn entries_are_checked_as_prometheus_loads_them() {
        let raw = |y: &str| -> KubernetesSdRaw { serde_saphyr::from_str(y).unwrap() };
        assert!(check(&raw(
            "role: pod\nselectors:\n- role: pod\n  field: spec.nodeName=n1\n"
        ))
        .is_ok());
        let e = check(&raw("role: pod\nselectors:\n- role: service\n")).unwrap_err();
        assert_eq!(e.0, "selectors::0::role");
        assert!(
            e.1.contains("pod role supports only pod selectors"),
            "{e:?}"
        );
        let e = check(&raw("namespaces: {names: [a]}\n")).unwrap_err();
        assert_eq!(e.0, "role");
        let e = check(&raw("role: pod\nbearer_token_file: /t\n")).unwrap_err();
        assert!(e.1.contains("provide the 'api_server' URL"), "{e:?}");
        assert_eq!(
            check(&raw("role: endpointslice\n")).unwrap().role,
            Role::EndpointSlice
        );
        assert!(check(&raw(
            "role: endpointslice\nselectors:\n- role: endpointslice\n  label: a=b\n- role: service\n"
        ))
        .is_ok());
        let e = check(&raw("role: ingress\nselectors:\n- role: pod\n")).unwrap_err();
        assert!(
            e.1.contains("ingress role supports only ingress selectors"),
            "{e:?}"
        );
        let e = check(&raw("role: pods\n")).unwrap_err();
        assert!(e.1.contains("unknown Kubernetes SD role"), "{e:?}");
    }

    #[test]
    fn endpointslice_role_joins_its_service_pods_and_unnamed_ports() {
        // discovery.k8s.io/v1 as the API server serves it: `port` and `name` are optional, the
        // conditions are tri-state, the service is named by a label.
        let slice = json!({
            "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "web-abc12", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.0.7"], "conditions": {"ready": true, "serving": true,
                    "terminating": false}, "nodeName": "node-1", "zone": "eu-west-1a",
                    "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "u-1"}},
                {"addresses": ["10.0.0.8"], "conditions": {"ready": false}}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]
        });
        let svc = json!({"metadata": {"name": "web", "namespace": "shop",
            "annotations": {"prometheus.io/scrape": "true"}},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}});
        let node =
            json!({"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "a"}}});
        let nodes = HashMap::from([("node-1".to_string(), node)]);
        let groups = endpointslice_targets(&[slice], &[pod()], &[svc], &nodes);
        let addrs: Vec<&str> = groups.iter().map(|g| g.targets[0].as_str()).collect();
        // The two endpoints, then the pod's other container port (9100) no slice port named.
        assert_eq!(addrs, ["10.0.0.7:8080", "10.0.0.8:8080", "10.0.0.7:9100"]);
        let l = &groups[0].labels;
        let p = "__meta_kubernetes_endpointslice_";
        for (k, v) in [
            ("name", "web-abc12"),
            ("address_type", "IPv4"),
            ("label_kubernetes_io_service_name", "web"),
            ("port", "8080"),
            ("port_name", "http"),
            ("port_protocol", "TCP"),
            ("port_app_protocol", "http"),
            ("endpoint_conditions_ready", "true"),
            ("endpoint_conditions_serving", "true"),
            ("endpoint_conditions_terminating", "false"),
            ("endpoint_node_name", "node-1"),
            ("endpoint_zone", "eu-west-1a"),
            ("address_target_kind", "Pod"),
            ("address_target_name", "web-1"),
        ] {
            assert_eq!(l[&format!("{p}{k}")], v, "{k}");
        }
        assert_eq!(l["__meta_kubernetes_namespace"], "shop");
        assert_eq!(l["__meta_kubernetes_service_name"], "web");
        assert_eq!(
            l["__meta_kubernetes_service_annotation_prometheus_io_scrape"],
            "true"
        );
        assert_eq!(l["__meta_kubernetes_pod_name"], "web-1");
        assert_eq!(l["__meta_kubernetes_pod_container_name"], "app");
        assert_eq!(l["__meta_kubernetes_pod_container_port_name"], "http");
        // attach_metadata.node: the endpoint's node.
        assert_eq!(l["__meta_kubernetes_node_name"], "node-1");
        let not_ready = &groups[1].labels;
        assert_eq!(not_ready[&format!("{p}endpoint_conditions_ready")], "false");
        assert!(!not_ready.contains_key(&format!("{p}endpoint_conditions_serving")));
        assert!(!not_ready.contains_key("__meta_kubernetes_pod_name"));
        let extra = &groups[2].labels;
        assert!(!extra.contains_key(&format!("{p}port")));
        assert_eq!(
            extra["__meta_kubernetes_pod_container_port_name"],
            "metrics"
        );
        assert_eq!(extra[&format!("{p}name")], "web-abc12");
    }

    #[test]
    fn ingress_role_has_a_target_per_rule_and_path() {
        let ing = json!({
            "kind": "Ingress", "apiVersion": "networking.k8s.io/v1",
            "metadata": {"name": "shop", "namespace": "shop", "labels": {"team": "a"}},
            "spec": {"ingressClassName": "nginx",
                "tls": [{"hosts": ["*.example.com"], "secretName": "tls"}],
                "rules": [
                    {"host": "web.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix",
                         "backend": {"service": {"name": "web", "port": {"number": 80}}}},
                        {"path": "/api", "pathType": "Prefix",
                         "backend": {"service": {"name": "api", "port": {"name": "http"}}}}]}},
                    {"host": "a.b.example.com"},
                    {"host": "plain.test", "http": {"paths": [{"pathType": "ImplementationSpecific",
                        "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        });
        let groups = ingress_targets(&ing);
        let got: Vec<(&str, &str, &str)> = groups
            .iter()
            .map(|g| {
                (
                    g.targets[0].as_str(),
                    g.labels["__meta_kubernetes_ingress_scheme"].as_str(),
                    g.labels["__meta_kubernetes_ingress_path"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("web.example.com", "https", "/"),
                ("web.example.com", "https", "/api"),
                // `*.` covers one label only; a rule without http is every path.
                ("a.b.example.com", "http", "/"),
                ("plain.test", "http", "/"),
            ]
        );
        let l = &groups[0].labels;
        assert_eq!(l["__meta_kubernetes_ingress_name"], "shop");
        assert_eq!(l["__meta_kubernetes_ingress_class_name"], "nginx");
        assert_eq!(l["__meta_kubernetes_ingress_host"], "web.example.com");
        assert_eq!(l["__meta_kubernetes_ingress_label_team"], "a");
        assert_eq!(l["__meta_kubernetes_namespace"], "shop");
        assert_eq!(
            Role::Ingress.path(Some("shop")),
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses"
        );
        assert_eq!(
            Role::EndpointSlice.path(None),
            "/apis/discovery.k8s.io/v1/endpointslices"
        );
    }
}
