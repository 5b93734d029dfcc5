//! `awsxray` (`aws_xray`): otelcol-contrib's AWS X-Ray receiver, standing in for the X-Ray daemon.
//! Applications instrumented with an X-Ray SDK send segment documents over UDP (`endpoint`,
//! default `localhost:2000`, the daemon's port), one a datagram after the header line
//! `{"format":"json","version":1}`; they become OTLP spans ([`translate`]). On the same port over
//! TCP, `proxy_server` answers the SDKs' sampling calls (`/GetSamplingRules`, `/SamplingTargets`)
//! by signing them and passing them to X-Ray: that is the `awsproxy` extension's proxy
//! (`crate::extensions::awsproxy`), which is why this receiver lives in the agent crate and not in
//! `vigil-receivers`.
//!
//! Bounded: a datagram is read whole into a buffer of [`MAX_DATAGRAM`] bytes (UDP's largest
//! payload fits); one task reads the socket and hands datagrams to the task that converts and
//! pushes them through a queue of [`QUEUE_DATAGRAMS`]. A datagram that finds the queue full is
//! dropped and counted, in `vigil_awsxray_queue_full_dropped{receiver}` and as one refused span
//! (otelcol counts an unreadable datagram as one). Spans are counted in otelcol's
//! `otelcol_receiver_{accepted,refused}_spans{receiver,transport="udp"}`; a document refused by
//! the translation counts its (sub)segments refused.

pub mod translate;

use crate::extensions::awsproxy::{self, AwsProxyConfig, Owner};
use async_trait::async_trait;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use vigil_core::config::{check_endpoint, duration, resolve_endpoint};
use vigil_core::obs::ReceiverObs;
use vigil_core::{
    Component, ComponentId, ComponentKind, ConfigError, Consumer, Host, NextConsumers, Receiver,
    Signal, Telemetry,
};
use vigil_exporters::helper::aws::CredentialSource;

/// The read buffer: UDP's largest payload (65,507 bytes) fits, so no datagram is cut.
pub const MAX_DATAGRAM: usize = 64 * 1024;
/// Datagrams waiting between the socket and the pipeline (at most 4 MiB of them).
pub const QUEUE_DATAGRAMS: usize = 64;

fn default_endpoint() -> String {
    "localhost:2000".into()
}
fn default_transport() -> String {
    "udp".into()
}

/// otelcol's `confignet.AddrConfig` `dialer`: for clients; accepted and unused, as otelcol's
/// receiver leaves it unused.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dialer {
    #[serde(default, with = "duration")]
    pub timeout: Duration,
}

/// The `awsxray` receiver config (otelcol's keys and defaults).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsXrayReceiverConfig {
    /// Where segments arrive over UDP.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// `udp`, the only transport X-Ray SDKs send segments over.
    #[serde(default = "default_transport")]
    pub transport: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialer: Option<Dialer>,
    /// The sampling proxy: the `awsproxy` extension's keys and defaults.
    #[serde(default)]
    pub proxy_server: AwsProxyConfig,
}

fn owner(id: &ComponentId) -> Owner<'_> {
    Owner {
        kind: ComponentKind::Receiver,
        id,
        prefix: "proxy_server::",
    }
}

fn check(id: &ComponentId, cfg: &AwsXrayReceiverConfig) -> Result<(), ConfigError> {
    let err =
        |path: &str, msg: String| ConfigError::component(ComponentKind::Receiver, id, path, msg);
    if cfg.transport != "udp" {
        return Err(err(
            "transport",
            format!(
                "X-Ray SDKs send segments over udp only; got {:?}",
                cfg.transport
            ),
        ));
    }
    check_endpoint(&cfg.endpoint).map_err(|e| err("endpoint", e.to_string()))?;
    awsproxy::check(owner(id), &cfg.proxy_server)
}

struct Factory;

/// The `awsxray` receiver factory (`aws_xray` is accepted too).
pub fn factory() -> Arc<dyn vigil_core::factory::DynReceiverFactory> {
    vigil_core::factory::receiver(Factory)
}

impl vigil_core::factory::FactoryBase for Factory {
    type Config = AwsXrayReceiverConfig;

    fn type_name(&self) -> &'static str {
        "awsxray"
    }

    fn validate(&self, id: &ComponentId, cfg: &AwsXrayReceiverConfig) -> Result<(), ConfigError> {
        check(id, cfg)
    }
}

impl vigil_core::factory::ReceiverFactory for Factory {
    fn stability(&self) -> &'static [(Signal, vigil_core::Stability)] {
        &[(Signal::Traces, vigil_core::Stability::Beta)]
    }

    fn create(
        &self,
        set: vigil_core::Settings,
        cfg: AwsXrayReceiverConfig,
        next: NextConsumers,
    ) -> Result<Arc<dyn Receiver>, ConfigError> {
        check(&set.id, &cfg)?;
        let l = [("receiver", set.id.to_string())];
        Ok(Arc::new(AwsXrayReceiver {
            id: set.id.clone(),
            queue_dropped: metrics::counter!("vigil_awsxray_queue_full_dropped", &l),
            cfg,
            next,
            credentials: CredentialSource::from_env(),
            set,
        }))
    }
}

/// The `awsxray` receiver.
pub struct AwsXrayReceiver {
    id: ComponentId,
    cfg: AwsXrayReceiverConfig,
    next: NextConsumers,
    set: vigil_core::Settings,
    credentials: CredentialSource,
    queue_dropped: metrics::Counter,
}

/// Converts one datagram and pushes its spans, counting them.
async fn process(id: &ComponentId, data: &[u8], next: &dyn Consumer, obs: &ReceiverObs) {
    let doc = match translate::split_datagram(data) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(receiver = %id, "datagram dropped: {e}");
            obs.refused(Signal::Traces, 1);
            return;
        }
    };
    let t = translate::to_resource_spans(doc);
    let rs: ResourceSpans = match t.result {
        Ok(rs) => rs,
        Err(e) => {
            tracing::warn!(receiver = %id, "segment document dropped: {e}");
            obs.refused(Signal::Traces, t.spans);
            return;
        }
    };
    let r = next.consume(Telemetry::Traces(vec![rs])).await;
    obs.end_op(Signal::Traces, t.spans, &r);
}

#[async_trait]
impl Component for AwsXrayReceiver {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        let Some(next) = self.next.get(Signal::Traces).cloned() else {
            anyhow::bail!(
                "receivers::{}: no traces pipeline uses this receiver",
                self.id
            );
        };
        let addr = resolve_endpoint(&self.cfg.endpoint)
            .map_err(|e| anyhow::anyhow!("receivers::{}::endpoint: {e}", self.id))?;
        let sock = UdpSocket::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "receivers::{}: cannot listen on udp {}: {e}",
                self.id,
                self.cfg.endpoint
            )
        })?;
        awsproxy::serve(
            owner(&self.id),
            &self.set.tasks,
            &self.cfg.proxy_server,
            self.credentials.clone(),
        )
        .await?;
        let tasks = &self.set.tasks;
        let stop = tasks.stopping();
        // A reader that never waits on the pipeline, so the socket's buffer drains while a
        // document is converted and pushed; what the queue cannot take is dropped and counted.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(QUEUE_DATAGRAMS);
        let obs = self.set.receiver_obs("udp");
        {
            let (stop, dropped, obs) = (stop.clone(), self.queue_dropped.clone(), obs.clone());
            tasks.spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                loop {
                    let n = tokio::select! {
                        _ = stop.cancelled() => break,
                        r = sock.recv_from(&mut buf) => match r {
                            Ok((n, _)) => n,
                            Err(_) => continue,
                        },
                    };
                    if tx.try_send(buf[..n].to_vec()).is_err() {
                        dropped.increment(1);
                        obs.refused(Signal::Traces, 1);
                    }
                }
            });
        }
        let id = self.id.clone();
        tasks.spawn(async move {
            loop {
                let data = tokio::select! {
                    _ = stop.cancelled() => break,
                    d = rx.recv() => d,
                };
                let Some(data) = data else { break };
                process(&id, &data, next.as_ref(), &obs).await;
            }
        });
        Ok(())
    }

    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        self.set.tasks.stop(deadline).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
