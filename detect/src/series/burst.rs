//! What a rise is worth on a count series: a bounded ring of the largest rise above the expected value on
//! each of the last [`DAYS`] days. On NAB's tweet volumes and request counts most false alarms were
//! bursts of a size the series shows on most days: after a quiet day or two they beat the decaying
//! memories (half-life 500 points), yet a week of such days makes them the series' ordinary traffic
//! (cross-validation steps 166 to 175 in BENCHMARKS.md). The memories alone cannot say that: a longer
//! half-life or a quantile of one memory costs the corpora whose labels mark every repeated spike.
//!
//! Days are 86,400 s of timestamps from the first point, so the ring spans a week at any sampling
//! interval; a day with no point is skipped, not counted as a quiet day. 40 bytes, no heap.

/// Days remembered.
pub(crate) const DAYS: usize = 7;

#[derive(Debug, Clone)]
pub(crate) struct BurstDays {
    // Timestamp (seconds) at which the open day started; NaN before the first point.
    start: f64,
    // The largest rise of each closed day (a ring) and of the open one, in the series' units.
    closed: [f32; DAYS],
    open: f32,
    // Closed days held (at most DAYS) and the next slot of the ring.
    filled: u8,
    at: u8,
}

impl BurstDays {
    pub fn new() -> Self {
        Self {
            start: f64::NAN,
            closed: [0.0; DAYS],
            open: 0.0,
            filled: 0,
            at: 0,
        }
    }

    /// How many of the closed days rose at least `share` times as far as `rise` (the residual of the
    /// point at `ts`, positive above the expected value); then the point joins its day. A timestamp that
    /// repeats or steps back stays in the open day; a non-finite one is not counted.
    pub fn push(&mut self, ts: f64, rise: f64, share: f64) -> usize {
        if !ts.is_finite() {
            return 0;
        }
        if !self.start.is_finite() {
            self.start = ts;
        }
        if ts >= self.start + DAY_SECS {
            self.closed[usize::from(self.at)] = self.open;
            self.at = ((usize::from(self.at) + 1) % DAYS) as u8;
            self.filled = (self.filled + 1).min(DAYS as u8);
            self.open = 0.0;
            self.start += DAY_SECS * ((ts - self.start) / DAY_SECS).floor();
        }
        let matched = if rise > 0.0 {
            self.closed[..usize::from(self.filled)]
                .iter()
                .filter(|&&m| f64::from(m) >= share * rise)
                .count()
        } else {
            0
        };
        self.open = self.open.max(rise.max(0.0) as f32);
        matched
    }
}

const DAY_SECS: f64 = 86_400.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_days_whose_largest_rise_reaches_a_share_of_this_one() {
        let mut d = BurstDays::new();
        // Seven days, one point an hour, each day's largest rise 10 (day 3: 2).
        for day in 0..7u32 {
            for h in 0..24u32 {
                let rise = if h == 12 {
                    if day == 3 {
                        2.0
                    } else {
                        10.0
                    }
                } else {
                    -1.0
                };
                d.push(f64::from(day * 86_400 + h * 3_600), rise, 0.3);
            }
        }
        // On day 7, a rise of 20: six closed days reach 0.3 x 20 = 6, day 3 does not.
        assert_eq!(d.push(7.0 * 86_400.0, 20.0, 0.3), 6);
        // A rise of 40 needs 12: none; a fall is never matched.
        assert_eq!(d.push(7.0 * 86_400.0 + 1.0, 40.0, 0.3), 0);
        assert_eq!(d.push(7.0 * 86_400.0 + 2.0, -40.0, 0.3), 0);
        // A step back in time stays in the open day; the ring never holds more than seven days.
        assert_eq!(d.push(3.0, 20.0, 0.3), 6);
        for day in 8..30u32 {
            d.push(f64::from(day * 86_400), 1.0, 0.3);
        }
        assert_eq!(d.push(30.0 * 86_400.0, 3.0, 0.3), 7);
        assert_eq!(d.push(30.0 * 86_400.0 + 1.0, 4.0, 0.3), 0);
    }
}
