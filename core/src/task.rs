//! The background tasks of one component, and the one way to stop them: every task watches the same
//! cancellation token, and [`Tasks::stop`] waits for them only until the service's shutdown deadline
//! (`--shutdown-timeout`), so no component holds the process with a grace of its own.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Locks a mutex, taking the data of a poisoned one as it is: a task that panicked while holding
/// the lock must not take every later caller down with it, and the state behind these locks stays
/// consistent between statements.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A set of tasks that stop together.
#[derive(Clone)]
pub struct Tasks {
    label: Arc<str>,
    stop: CancellationToken,
    handles: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Tasks {
    /// `label` names the owner in the log line written when a task outlives the deadline.
    pub fn new(label: impl Into<String>) -> Tasks {
        Tasks {
            label: Arc::from(label.into()),
            stop: CancellationToken::new(),
            handles: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Cancelled when the component stops; a task selects on it to finish its work and return.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Runs `fut` until it returns; it should watch [`Tasks::stopping`].
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let h = tokio::spawn(fut);
        let mut handles = lock(&self.handles);
        handles.retain(|h| !h.is_finished());
        handles.push(h);
    }

    /// Calls `tick` every `period` (the first call one period after start) until the component stops.
    /// A tick that overruns delays the next rather than bunching them.
    pub fn spawn_ticker<F, Fut>(&self, period: Duration, mut tick: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let stop = self.stopping();
        self.spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => tick().await,
                }
            }
        });
    }

    /// Waits until every task has returned on its own, or until `until`; cancels nothing. For a
    /// component that drains first (closes its input and lets its tasks finish the work) and only
    /// then calls [`Tasks::stop`]. Returns whether every task finished.
    pub async fn wait(&self, until: Instant) -> bool {
        let mut handles = std::mem::take(&mut *lock(&self.handles));
        let left = until.saturating_duration_since(Instant::now());
        // A handle leaves the list as soon as it has finished: after a timeout the rest go back to
        // the set, and a finished JoinHandle must never be polled again (it panics).
        let done = tokio::time::timeout(left, async {
            while let Some(h) = handles.last_mut() {
                let _ = h.await;
                handles.pop();
            }
        })
        .await
        .is_ok();
        lock(&self.handles).extend(handles);
        done
    }

    /// Cancels every task and waits for them until `deadline`; what is still running then is
    /// aborted. Returns whether every task finished on its own.
    pub async fn stop(&self, deadline: Instant) -> bool {
        self.stop.cancel();
        let handles = std::mem::take(&mut *lock(&self.handles));
        let left = deadline.saturating_duration_since(Instant::now());
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let all = futures::future::join_all(handles);
        if tokio::time::timeout(left, all).await.is_ok() {
            return true;
        }
        tracing::warn!(
            "{}: background tasks did not finish by the shutdown deadline; stopping them",
            self.label
        );
        for a in aborts {
            a.abort();
        }
        false
    }
}

/// Runs `work` (a component's last flush or save, after its tasks stopped) until `deadline`;
/// `None` when the deadline cut it off, for the caller to count or log what that lost.
pub async fn within<T>(deadline: Instant, work: impl Future<Output = T>) -> Option<T> {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout(left, work).await.ok()
}

/// The deadline a component stops by when the service did not set one (tests, `vigil eval`).
pub fn default_deadline() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn ticks_until_stopped_and_aborts_at_the_deadline() {
        let tasks = Tasks::new("test");
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        tasks.spawn_ticker(Duration::from_millis(1), move || {
            let n = n2.clone();
            async move {
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        let give_up = Instant::now() + Duration::from_secs(10);
        while n.load(Ordering::SeqCst) < 2 && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(n.load(Ordering::SeqCst) >= 2);
        assert!(tasks.stop(Instant::now() + Duration::from_secs(10)).await);
        let after = n.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(n.load(Ordering::SeqCst), after, "a stopped ticker ticked");

        let draining = Tasks::new("draining");
        draining.spawn(std::future::pending());
        assert!(
            !draining.wait(Instant::now()).await,
            "wait cancelled nothing"
        );
        assert!(!draining.is_stopping());
        assert!(!draining.stop(Instant::now()).await);

        let stuck = Tasks::new("stuck");
        stuck.spawn(std::future::pending());
        assert!(!stuck.stop(Instant::now()).await);
    }
}
