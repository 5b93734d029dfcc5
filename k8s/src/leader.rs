//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does it
//! for otelcol's `k8s_leader_elector`: a candidate reads the Lease, takes it when it is free or its
//! holder has not renewed it for `leaseDurationSeconds` (measured on this candidate's own clock from
//! when it last saw the record change, so clock skew between nodes does not matter), and writes it
//! back with the resource version it read, so of two candidates only one write succeeds. The leader
//! renews every `retry_period`; when no renewal succeeds within `renew_deadline` it steps down.
//!
//! Hand-written rather than taken from a crate: `kube-lease-manager` (kube 5) locks with
//! server-side apply and whole-second "duration/grace" parameters, which are not otelcol's
//! `lease_duration`/`renew_deadline`/`retry_period`; the algorithm below is client-go's, so a
//! mixed otelcol/vigil deployment contends for one Lease under the same rules.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Which Lease, who this candidate is, and the timings (otelcol's keys).
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This candidate's holder identity (unique per process).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// client-go's jitter factor: waits between attempts are `retry_period * [1, 1.2)`, and
/// `renew_deadline` must exceed `1.2 * retry_period`.
const JITTER: f64 = 1.2;

/// Checks the timings as client-go's `NewLeaderElector` does; the message names the keys.
pub fn check_timings(
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
) -> Result<(), String> {
    if retry_period.is_zero() {
        return Err("retry_period must be greater than zero".into());
    }
    if lease_duration <= renew_deadline {
        return Err(format!(
            "lease_duration ({lease_duration:?}) must be greater than renew_deadline ({renew_deadline:?})"
        ));
    }
    if renew_deadline.as_secs_f64() <= JITTER * retry_period.as_secs_f64() {
        return Err(format!(
            "renew_deadline ({renew_deadline:?}) must be greater than 1.2 × retry_period ({retry_period:?})"
        ));
    }
    Ok(())
}

/// What this candidate last saw of the Lease, and when (its own clock).
struct Observed {
    spec: Option<LeaseSpec>,
    at: Instant,
}

/// The result of one attempt.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// This candidate holds the Lease now.
    Held,
    /// Another holder's Lease is still valid, or another candidate wrote first.
    Refused,
    /// The API server could not be asked or refused the request.
    Failed(String),
}

fn seconds(d: Duration) -> i32 {
    // The Lease stores whole seconds; round up so that a sub-second test duration is not 0.
    d.as_secs_f64().ceil().clamp(1.0, i32::MAX as f64) as i32
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

struct Candidate {
    api: Api<Lease>,
    e: Election,
    observed: Observed,
    counters: Counters,
}

struct Counters {
    acquired: metrics::Counter,
    lost: metrics::Counter,
    errors: metrics::Counter,
}

impl Candidate {
    async fn try_acquire_or_renew(&mut self) -> Attempt {
        let now = now_micro();
        let secs = seconds(self.e.lease_duration);
        let current = match self.api.get_opt(&self.e.name).await {
            Ok(l) => l,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.e.name.clone()),
                    namespace: Some(self.e.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.e.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observe(l.spec);
                    Attempt::Held
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Attempt::Refused,
                Err(e) => Attempt::Failed(e.to_string()),
            };
        };
        let old = lease.spec.clone().unwrap_or_default();
        if self.observed.spec.as_ref() != Some(&old) {
            self.observe(Some(old.clone()));
        }
        let holder = old.holder_identity.clone().unwrap_or_default();
        let me = holder == self.e.identity;
        let valid_for = Duration::from_secs(old.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        if !holder.is_empty() && !me && self.observed.at + valid_for > Instant::now() {
            return Attempt::Refused;
        }
        let transitions = old.lease_transitions.unwrap_or(0);
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.e.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: if me {
                old.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(if me { transitions } else { transitions + 1 }),
            ..old
        });
        // `replace` sends the resource version read above: a write by anyone since is a 409.
        match self
            .api
            .replace(&self.e.name, &PostParams::default(), &lease)
            .await
        {
            Ok(l) => {
                self.observe(l.spec);
                Attempt::Held
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Attempt::Refused,
            Err(e) => Attempt::Failed(e.to_string()),
        }
    }

    fn observe(&mut self, spec: Option<LeaseSpec>) {
        self.observed = Observed {
            spec,
            at: Instant::now(),
        };
    }

    fn jittered(&self) -> Duration {
        let f = 1.0 + rand_fraction() * (JITTER - 1.0);
        self.e.retry_period.mul_f64(f)
    }

    /// Tries until the Lease is held.
    async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Attempt::Held => return,
                Attempt::Refused => {}
                Attempt::Failed(err) => {
                    self.counters.errors.increment(1);
                    tracing::warn!(lease = %self.e.name, error = %err, "leader election: cannot reach the lease");
                }
            }
            tokio::time::sleep(self.jittered()).await;
        }
    }

    /// Renews every `retry_period` until one round fails to renew within `renew_deadline`.
    async fn hold(&mut self) {
        loop {
            let deadline = Instant::now() + self.e.renew_deadline;
            let renewed = loop {
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Attempt::Held) => break true,
                    Ok(Attempt::Refused) => {}
                    Ok(Attempt::Failed(err)) => {
                        self.counters.errors.increment(1);
                        tracing::warn!(lease = %self.e.name, error = %err, "leader election: renewal failed");
                    }
                    Err(_) => break false,
                }
                if Instant::now() + self.e.retry_period >= deadline {
                    break false;
                }
                tokio::time::sleep(self.e.retry_period).await;
            };
            if !renewed {
                return;
            }
            tokio::time::sleep(self.e.retry_period).await;
        }
    }
}

/// A fraction in [0, 1) from the clock's nanoseconds: jitter only has to differ between
/// candidates, not be unpredictable.
fn rand_fraction() -> f64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (n % 1000) as f64 / 1000.0
}

/// Takes part in the election for as long as the returned future runs, publishing on `leading`
/// whether this candidate holds the Lease: `true` once acquired, `false` when a renewal round
/// fails, after which it tries to acquire again (as otelcol's extension re-runs client-go's
/// elector). Dropping the future stops renewing; [`release`] gives the Lease up at once.
pub async fn run(client: kube::Client, e: Election, leading: watch::Sender<bool>) {
    let labels = [("lease", format!("{}/{}", e.namespace, e.name))];
    let mut c = Candidate {
        api: Api::namespaced(client, &e.namespace),
        counters: Counters {
            acquired: metrics::counter!("vigil_k8s_leader_acquired", &labels),
            lost: metrics::counter!("vigil_k8s_leader_lost", &labels),
            errors: metrics::counter!("vigil_k8s_leader_errors", &labels),
        },
        e,
        observed: Observed {
            spec: None,
            at: Instant::now(),
        },
    };
    loop {
        c.acquire().await;
        c.counters.acquired.increment(1);
        tracing::info!(lease = %c.e.name, identity = %c.e.identity, "became the leader");
        leading.send_replace(true);
        c.hold().await;
        c.counters.lost.increment(1);
        tracing::warn!(lease = %c.e.name, identity = %c.e.identity, "lost the lease; standing by");
        leading.send_replace(false);
    }
}

/// Gives the Lease up if `identity` holds it (client-go's release: no holder, a one-second
/// duration), so that another candidate takes over without waiting for it to expire.
pub async fn release(client: kube::Client, e: &Election) -> Result<(), String> {
    let api: Api<Lease> = Api::namespaced(client, &e.namespace);
    let Some(mut lease) = api.get_opt(&e.name).await.map_err(|x| x.to_string())? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(e.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    api.replace(&e.name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
        .map_err(|x| x.to_string())
}

/// Runs `work` while `leading` is `true`: starts it when leadership is gained, drops it (which
/// cancels it) when leadership is lost, and starts it afresh on the next gain. Returns when the
/// elector goes away. A receiver that names a `k8s_leader_elector` runs its loops through this.
pub async fn while_leading<F, Fut>(mut leading: watch::Receiver<bool>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        let job = work();
        // `Some(alive)` when leadership was lost (`alive`: the elector is still there), `None`
        // when the work ended by itself.
        let lost = tokio::select! {
            _ = job => None,
            r = leading.wait_for(|l| !*l) => Some(r.map(|_| ()).is_ok()),
        };
        match lost {
            Some(true) => {}
            Some(false) => return,
            // Start the work again only after a new term.
            None => {
                if leading.wait_for(|l| !*l).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// [`while_leading`] when the receiver names a `k8s_leader_elector` (`leading` is `Some`); without
/// one, `work` runs once, at once, on every replica.
pub async fn while_leading_or_always<F, Fut>(leading: Option<watch::Receiver<bool>>, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    match leading {
        Some(l) => while_leading(l, work).await,
        None => work().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_are_checked_as_client_go_checks_them() {
        let s = Duration::from_secs;
        assert!(check_timings(s(15), s(10), s(2)).is_ok());
        let e = check_timings(s(10), s(10), s(2)).unwrap_err();
        assert!(e.contains("lease_duration"), "{e}");
        let e = check_timings(s(15), s(2), s(2)).unwrap_err();
        assert!(e.contains("1.2 × retry_period"), "{e}");
        assert!(check_timings(s(15), s(10), s(0)).is_err());
    }

    #[test]
    fn lease_seconds_round_up() {
        assert_eq!(seconds(Duration::from_millis(1500)), 2);
        assert_eq!(seconds(Duration::from_millis(100)), 1);
        assert_eq!(seconds(Duration::from_secs(15)), 15);
    }

    #[tokio::test]
    async fn work_runs_only_while_leading() {
        let (tx, rx) = watch::channel(false);
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (r2, run2) = (runs.clone(), running.clone());
        let task = tokio::spawn(while_leading(rx, move || {
            let (r, run) = (r2.clone(), run2.clone());
            async move {
                r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                run.store(true, std::sync::atomic::Ordering::SeqCst);
                struct Off(std::sync::Arc<std::sync::atomic::AtomicBool>);
                impl Drop for Off {
                    fn drop(&mut self) {
                        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                }
                let _off = Off(run);
                std::future::pending::<()>().await
            }
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(20));
        settle().await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 0);
        tx.send_replace(true);
        settle().await;
        assert!(running.load(std::sync::atomic::Ordering::SeqCst));
        tx.send_replace(false);
        settle().await;
        assert!(!running.load(std::sync::atomic::Ordering::SeqCst));
        tx.send_replace(true);
        settle().await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
        drop(tx);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("ends with the elector")
            .expect("no panic");
    }
}
