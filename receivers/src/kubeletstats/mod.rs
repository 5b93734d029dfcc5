//! `kubeletstats`: otelcol's Kubelet Stats receiver. Every `collection_interval` it reads the
//! kubelet's Summary API (`GET /stats/summary` on the node's kubelet, HTTPS on 10250) and emits
//! otelcol's node, pod, container and volume metrics with their resource attributes
//! (`k8s.node.name`, `k8s.pod.uid`, `k8s.pod.name`, `k8s.namespace.name`, `k8s.container.name`,
//! `k8s.volume.name`, and with `extra_metadata_labels` `container.id` and `k8s.volume.type` from
//! the kubelet's `GET /pods`).
//!
//! Authentication is `auth_type`: `serviceAccount` sends the pod's token (re-read at every scrape,
//! since bound tokens rotate) and trusts the cluster CA; `tls` presents a client certificate; `none`
//! talks to the read-only port. The token and CA are read at start, not at `validate`, because they
//! exist only inside the pod: `vigil validate` of a DaemonSet config must pass on a laptop or in CI.
//!
//! No kubelet runs in this repository's tests: they scrape a kubelet double (test code in
//! `tests.rs`) that serves a Summary fixture written from the `stats/v1alpha1` types.

pub mod config;
pub mod metrics;
pub mod summary;
#[cfg(test)]
mod tests;

use async_trait::async_trait;
use config::{Auth, Checked, KubeletStatsConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vigil_core::{
    Component, ComponentId, ConfigError, Host, NextConsumers, Receiver, Signal, Telemetry,
};

/// The largest response read from the kubelet. A summary is about 2 KiB per pod; 64 MiB leaves
/// room for several thousand pods and bounds what a broken kubelet can make vigil hold.
pub const MAX_BODY: usize = 64 << 20;

struct Factory;

/// The `kubeletstats` receiver factory, for the registry (`kubelet_stats` resolves to it).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = KubeletStatsConfig;

    fn type_name(&self) -> &'static str {
        "kubeletstats"
    }

    fn validate(&self, _id: &ComponentId, cfg: &KubeletStatsConfig) -> Result<(), ConfigError> {
        cfg.check().map(|_| ())
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Metrics, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: KubeletStatsConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        let checked = cfg.check()?;
        Ok(Arc::new(KubeletStatsReceiver::new(set, cfg, checked, next)))
    }
}

/// A running `kubeletstats` receiver: one task that scrapes on a timer.
pub struct KubeletStatsReceiver {
    id: ComponentId,
    cfg: Arc<KubeletStatsConfig>,
    checked: Arc<Checked>,
    next: NextConsumers,
    obs: vigil_core::ReceiverObs,
    failures: ::metrics::Counter,
    tasks: vigil_core::Tasks,
}

impl KubeletStatsReceiver {
    fn new(
        set: vigil_core::Settings,
        cfg: KubeletStatsConfig,
        checked: Checked,
        next: NextConsumers,
    ) -> KubeletStatsReceiver {
        KubeletStatsReceiver {
            failures: ::metrics::counter!(
                "vigil_kubeletstats_scrape_failures",
                "receiver" => set.id.to_string()
            ),
            obs: set.receiver_obs("http"),
            id: set.id,
            cfg: Arc::new(cfg),
            checked: Arc::new(checked),
            next,
            tasks: set.tasks,
        }
    }
}

/// The HTTP client and what each request carries.
pub(crate) struct Kubelet {
    http: reqwest::Client,
    base: String,
    /// The service-account token file, read at every scrape.
    token: Option<PathBuf>,
    timeout: Duration,
}

fn read_pem(
    what: &str,
    file: &Option<String>,
    pem: &Option<String>,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(p) = pem {
        return Ok(Some(p.as_bytes().to_vec()));
    }
    match file {
        Some(f) => std::fs::read(f)
            .map(Some)
            .map_err(|e| format!("cannot read {what} {f:?}: {e}")),
        None => Ok(None),
    }
}

impl Kubelet {
    /// Builds the client: reads the CA, client certificate or token the auth type needs. Errors
    /// name the key or file.
    pub(crate) fn build(cfg: &KubeletStatsConfig, auth: Auth) -> Result<Kubelet, String> {
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .tls_danger_accept_invalid_certs(cfg.insecure_skip_verify);
        let version = |v: &Option<String>| match v.as_deref() {
            Some("1.3") => Some(reqwest::tls::Version::TLS_1_3),
            Some(_) => Some(reqwest::tls::Version::TLS_1_2),
            None => None,
        };
        if let Some(v) = version(&cfg.min_version) {
            b = b.tls_version_min(v);
        }
        if let Some(v) = version(&cfg.max_version) {
            b = b.tls_version_max(v);
        }
        let mut token = None;
        let ca = match auth {
            Auth::ServiceAccount => {
                let dir = PathBuf::from(&cfg.service_account_dir);
                let t = dir.join("token");
                // Read once here so that a pod without a mounted token fails at start, by name.
                std::fs::read_to_string(&t)
                    .map_err(|e| format!("cannot read the service-account token {t:?}: {e}"))?;
                token = Some(t);
                let ca = dir.join("ca.crt");
                let pem = std::fs::read(&ca)
                    .map_err(|e| format!("cannot read the service-account CA {ca:?}: {e}"))?;
                Some(pem)
            }
            Auth::Tls | Auth::None => read_pem("ca_file", &cfg.ca_file, &cfg.ca_pem)?,
        };
        if let Some(pem) = ca {
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("the CA holds no valid PEM certificate: {e}"))?;
            if certs.is_empty() {
                return Err("the CA holds no PEM certificate".into());
            }
            // The kubelet's certificate chains to the cluster CA (or is self-signed): trust only
            // that, unless the system's roots are asked for too.
            b = if cfg.include_system_ca_certs_pool {
                b.tls_certs_merge(certs)
            } else {
                b.tls_certs_only(certs)
            };
        }
        if auth == Auth::Tls {
            let cert = read_pem("cert_file", &cfg.cert_file, &cfg.cert_pem)?;
            let key = read_pem("key_file", &cfg.key_file, &cfg.key_pem)?;
            if let (Some(mut cert), Some(key)) = (cert, key) {
                cert.push(b'\n');
                cert.extend(key);
                let id = reqwest::Identity::from_pem(&cert)
                    .map_err(|e| format!("cert_file/key_file are not a valid PEM pair: {e}"))?;
                b = b.identity(id);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let timeout = if cfg.timeout.is_zero() {
            cfg.collection_interval
        } else {
            cfg.timeout
        };
        Ok(Kubelet {
            http,
            base: cfg.base_url(auth),
            token,
            timeout,
        })
    }

    /// `GET path`, the body bounded by [`MAX_BODY`].
    pub(crate) async fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.get(&url).timeout(self.timeout);
        if let Some(t) = &self.token {
            let tok = std::fs::read_to_string(t)
                .map_err(|e| format!("cannot read the service-account token {t:?}: {e}"))?;
            req = req.bearer_auth(tok.trim());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: reading the body: {}", error_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!(
                    "GET {url}: the body is larger than {MAX_BODY} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(format!("GET {url}: the kubelet answered {status}: {text}"));
        }
        Ok(body)
    }
}

/// reqwest's error with its causes, so a TLS failure says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One scrape: the summary, `/pods` when asked for, converted.
async fn scrape(
    kubelet: &Kubelet,
    cfg: &KubeletStatsConfig,
    checked: &Checked,
    started: u64,
) -> Result<Vec<vigil_core::otlp::metrics::v1::ResourceMetrics>, String> {
    let body = kubelet.get("/stats/summary").await?;
    let summary: summary::Summary = serde_json::from_slice(&body)
        .map_err(|e| format!("/stats/summary is not a kubelet summary: {e}"))?;
    let pods = if checked.container_id || checked.volume_type || checked.resource_ratios {
        let list = kubelet.get("/pods").await.and_then(|b| {
            serde_json::from_slice::<summary::PodList>(&b)
                .map_err(|e| format!("/pods is not a pod list: {e}"))
        })?;
        Some(metrics::PodsMeta::from_list(&list))
    } else {
        None
    };
    let ctx = metrics::Ctx {
        checked,
        all_node_interfaces: cfg.collect_all_network_interfaces.node,
        all_pod_interfaces: cfg.collect_all_network_interfaces.pod,
        pods: pods.as_ref(),
        now: unix_nanos(SystemTime::now()),
        started,
    };
    Ok(metrics::convert(&summary, &ctx))
}

#[async_trait]
impl Component for KubeletStatsReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let kubelet = Kubelet::build(&self.cfg, self.checked.auth)
            .map_err(|e| anyhow::anyhow!("receivers::{}: {e}", self.id))?;
        let id = self.id.to_string();
        let (cfg, checked) = (Arc::clone(&self.cfg), Arc::clone(&self.checked));
        let (next, obs, failures) = (self.next.clone(), self.obs.clone(), self.failures.clone());
        let cancel = self.tasks.stopping();
        let started = unix_nanos(SystemTime::now());
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(cfg.initial_delay) => {}
                _ = cancel.cancelled() => return,
            }
            let mut timer = tokio::time::interval(cfg.collection_interval);
            // A slow kubelet must not be followed by a burst of catch-up scrapes.
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => {}
                    _ = cancel.cancelled() => return,
                }
                let batch = tokio::select! {
                    r = scrape(&kubelet, &cfg, &checked, started) => r,
                    _ = cancel.cancelled() => return,
                };
                let batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        failures.increment(1);
                        tracing::warn!(receiver = %id, "kubelet scrape failed: {e}");
                        continue;
                    }
                };
                if batch.is_empty() {
                    continue;
                }
                if let Err(e) = obs.push(&next, Telemetry::Metrics(batch)).await {
                    tracing::warn!(receiver = %id, "the pipeline refused kubelet metrics: {e}");
                }
            }
        });
        Ok(())
    }

    /// Stopping cancels the loop, and a scrape in flight with it.
    fn tasks(&self) -> Option<&vigil_core::Tasks> {
        Some(&self.tasks)
    }
}
