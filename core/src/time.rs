//! Wall-clock time as OTLP carries it: nanoseconds since the Unix epoch. One place so that every
//! component stamps records the same way, including the clock-before-1970 case.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` in nanoseconds since the Unix epoch; 0 for a time before it (a clock set wrong), which OTLP
/// reads as "unset" rather than as a wrapped value far in the future.
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The current wall-clock time in nanoseconds since the Unix epoch (see [`unix_nanos`]).
pub fn now_nanos() -> u64 {
    unix_nanos(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn before_the_epoch_is_zero() {
        assert_eq!(unix_nanos(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(unix_nanos(UNIX_EPOCH + Duration::from_nanos(1_500)), 1_500);
    }
}
