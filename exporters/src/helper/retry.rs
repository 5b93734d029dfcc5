//! `retry_on_failure`: exponential backoff with jitter around a delivery attempt, with otelcol's keys
//! and defaults. A backend's own `Retry-After` or `RetryInfo` stretches the wait, a permanent error is
//! never retried, and the clock is injectable so tests check the delays without waiting for them.

use super::classify::SendError;
use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use vigil_core::config::duration;

/// `retry_on_failure`, as otelcol's exporterhelper spells it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub enabled: bool,
    /// The wait after the first failure.
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    /// Each wait is picked in `interval × [1 - f, 1 + f]`, so that many agents do not retry in step.
    pub randomization_factor: f64,
    pub multiplier: f64,
    /// The interval stops growing here.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Give up once this much time has passed since the first attempt; zero retries forever.
    #[serde(with = "duration")]
    pub max_elapsed_time: Duration,
    /// Give up after this many retries as well. Not an exporterhelper key: exporters whose own
    /// retry section counts retries (`elasticsearch`'s `retry::max_retries`) set it.
    #[serde(skip)]
    pub max_retries: Option<u32>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            randomization_factor: 0.5,
            multiplier: 1.5,
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            max_retries: None,
        }
    }
}

impl RetryConfig {
    /// Checks the values otelcol rejects. Returns the offending key and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.enabled {
            return Ok(());
        }
        if self.initial_interval.is_zero() {
            return Err(("initial_interval", "must be greater than zero".into()));
        }
        if !(0.0..=1.0).contains(&self.randomization_factor) {
            return Err((
                "randomization_factor",
                format!("{} is not between 0 and 1", self.randomization_factor),
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier > 0.0) {
            return Err((
                "multiplier",
                format!("{} must be greater than zero", self.multiplier),
            ));
        }
        if self.max_interval < self.initial_interval {
            return Err((
                "max_interval",
                format!(
                    "{:?} is shorter than initial_interval ({:?})",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        Ok(())
    }
}

/// The growing, jittered wait between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    interval: Duration,
    factor: f64,
    multiplier: f64,
    max_interval: Duration,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig) -> Self {
        Backoff {
            interval: cfg.initial_interval,
            factor: cfg.randomization_factor,
            multiplier: cfg.multiplier,
            max_interval: cfg.max_interval,
        }
    }

    /// The next wait, then grows the interval.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.interval.as_secs_f64();
        let spread = base * self.factor;
        let delay = if spread > 0.0 {
            rand::rng().random_range(base - spread..=base + spread)
        } else {
            base
        };
        let grown = Duration::from_secs_f64((base * self.multiplier).min(f64::MAX / 2.0));
        self.interval = grown.min(self.max_interval);
        Duration::from_secs_f64(delay.max(0.0))
    }
}

/// Time as the retry loop sees it. Tests inject a clock that records waits and returns at once.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Instant;
    async fn sleep(&self, d: Duration);
}

/// The real clock, on tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

#[async_trait]
impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// Runs attempts under a `RetryConfig` until one succeeds, one fails permanently, time runs out, or
/// the exporter is shutting down.
#[derive(Clone)]
pub struct Retry {
    cfg: RetryConfig,
    clock: Arc<dyn Clock>,
}

impl Retry {
    pub fn new(cfg: RetryConfig, clock: Arc<dyn Clock>) -> Self {
        Retry { cfg, clock }
    }

    /// Calls `attempt` until it succeeds or retrying is over; returns the last error otherwise. The wait
    /// before the next attempt is the backoff delay, or the backend's requested delay if that is
    /// longer. `cancel` cuts a wait short and ends the loop with the last error.
    pub async fn run<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        mut attempt: F,
    ) -> Result<T, SendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SendError>>,
    {
        let start = self.clock.now();
        let mut backoff = Backoff::new(&self.cfg);
        let mut retries = 0u32;
        loop {
            let err = match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let SendError::Retryable {
                reason,
                retry_after,
            } = &err
            else {
                return Err(err);
            };
            if !self.cfg.enabled || cancel.is_cancelled() {
                return Err(err);
            }
            if self.cfg.max_retries.is_some_and(|max| retries >= max) {
                return Err(SendError::Retryable {
                    reason: format!("{reason} (giving up after {retries} retries)"),
                    retry_after: *retry_after,
                });
            }
            retries += 1;
            let delay = backoff.next_delay().max(retry_after.unwrap_or_default());
            let elapsed = self.clock.now().saturating_duration_since(start);
            if !self.cfg.max_elapsed_time.is_zero() && elapsed + delay > self.cfg.max_elapsed_time {
                return Err(SendError::Retryable {
                    reason: format!(
                        "{reason} (giving up: retry_on_failure::max_elapsed_time {:?} is reached)",
                        self.cfg.max_elapsed_time
                    ),
                    retry_after: *retry_after,
                });
            }
            tracing::debug!(%reason, ?delay, "send failed, will retry");
            tokio::select! {
                _ = self.clock.sleep(delay) => {}
                _ = cancel.cancelled() => return Err(err),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A clock that advances only when slept on, and remembers each wait.
    pub struct ManualClock {
        start: Instant,
        offset: Mutex<Duration>,
        pub sleeps: Mutex<Vec<Duration>>,
    }

    impl ManualClock {
        pub fn new() -> Arc<Self> {
            Arc::new(ManualClock {
                start: Instant::now(),
                offset: Mutex::new(Duration::ZERO),
                sleeps: Mutex::new(Vec::new()),
            })
        }

        pub fn sleeps(&self) -> Vec<Duration> {
            self.sleeps.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
        async fn sleep(&self, d: Duration) {
            *self.offset.lock().unwrap() += d;
            self.sleeps.lock().unwrap().push(d);
            tokio::task::yield_now().await;
        }
    }

    fn cfg() -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(100),
            randomization_factor: 0.0,
            multiplier: 2.0,
            max_interval: Duration::from_millis(300),
            max_elapsed_time: Duration::from_secs(2),
            ..RetryConfig::default()
        }
    }

    #[test]
    fn defaults_are_otelcols() {
        let c: RetryConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(c, RetryConfig::default());
        assert_eq!(c.initial_interval, Duration::from_secs(5));
        assert_eq!(c.max_elapsed_time, Duration::from_secs(300));
        assert!(c.validate().is_ok());
        let bad = RetryConfig {
            randomization_factor: 1.5,
            ..RetryConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "randomization_factor");
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let mut b = Backoff::new(&cfg());
        let d: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![100, 200, 300, 300]);
        let mut j = Backoff::new(&RetryConfig::default());
        for _ in 0..50 {
            let d = j.next_delay();
            assert!(d >= Duration::from_millis(2500), "{d:?}");
        }
        let mut j = Backoff::new(&RetryConfig::default());
        let first = j.next_delay();
        assert!(first >= Duration::from_millis(2500) && first <= Duration::from_millis(7500));
    }

    #[tokio::test]
    async fn retry_after_stretches_the_wait_and_permanent_stops() {
        let clock = ManualClock::new();
        let retry = Retry::new(cfg(), clock.clone());
        let mut calls = 0;
        let r: Result<(), _> = retry
            .run(&CancellationToken::new(), || {
                calls += 1;
                let n = calls;
                async move {
                    match n {
                        1 => Err(SendError::Retryable {
                            reason: "503".into(),
                            retry_after: Some(Duration::from_secs(1)),
                        }),
                        2 => Err(SendError::retryable("reset")),
                        _ => Err(SendError::permanent("400")),
                    }
                }
            })
            .await;
        assert_eq!(r, Err(SendError::permanent("400")));
        assert_eq!(calls, 3);
        // The backend asked for 1s, longer than the 100ms backoff; then the backoff (200ms) applies.
        assert_eq!(
            clock.sleeps(),
            vec![Duration::from_secs(1), Duration::from_millis(200)]
        );
    }

    #[tokio::test]
    async fn gives_up_at_max_elapsed_time() {
        let clock = ManualClock::new();
        let retry = Retry::new(cfg(), clock.clone());
        let mut calls = 0u32;
        let r: Result<(), _> = retry
            .run(&CancellationToken::new(), || {
                calls += 1;
                async { Err(SendError::retryable("down")) }
            })
            .await;
        let e = r.unwrap_err();
        assert!(e.is_retryable());
        assert!(e.reason().contains("max_elapsed_time"), "{e}");
        let total: Duration = clock.sleeps().iter().sum();
        assert!(total <= Duration::from_secs(2), "{total:?}");
        assert!(calls >= 7, "{calls}");
    }

    #[tokio::test]
    async fn max_retries_counts_retries() {
        let retry = Retry::new(
            RetryConfig {
                max_retries: Some(2),
                max_elapsed_time: Duration::ZERO,
                ..cfg()
            },
            ManualClock::new(),
        );
        let mut calls = 0;
        let r: Result<(), _> = retry
            .run(&CancellationToken::new(), || {
                calls += 1;
                async { Err(SendError::retryable("down")) }
            })
            .await;
        let e = r.unwrap_err();
        assert!(
            e.is_retryable() && e.reason().contains("after 2 retries"),
            "{e}"
        );
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn disabled_means_one_attempt() {
        let retry = Retry::new(
            RetryConfig {
                enabled: false,
                ..cfg()
            },
            ManualClock::new(),
        );
        let mut calls = 0;
        let r: Result<(), _> = retry
            .run(&CancellationToken::new(), || {
                calls += 1;
                async { Err(SendError::retryable("down")) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
