//! The agent's lifecycle state, read by `health_check`. It is one per process, like the process's
//! own health, so it is a process-wide value rather than something threaded through every component.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Ready,
    Stopping,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ready => "ready",
            Status::Stopping => "stopping",
        }
    }
}

static STATUS: AtomicU8 = AtomicU8::new(0);
static UP_SINCE: OnceLock<(String, Instant)> = OnceLock::new();

pub fn set(s: Status) {
    STATUS.store(s as u8, Ordering::SeqCst);
    if s == Status::Ready {
        UP_SINCE.get_or_init(|| (rfc3339_now(), Instant::now()));
    }
}

pub fn get() -> Status {
    match STATUS.load(Ordering::SeqCst) {
        1 => Status::Ready,
        2 => Status::Stopping,
        _ => Status::Starting,
    }
}

/// When the service first became ready, and how long ago.
pub fn up_since() -> (String, std::time::Duration) {
    match UP_SINCE.get() {
        Some((s, t)) => (s.clone(), t.elapsed()),
        None => (String::new(), std::time::Duration::ZERO),
    }
}

fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil-from-days conversion, so that no date crate is pulled in for one timestamp.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}
