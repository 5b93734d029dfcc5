//! Time and duration converters: `Duration`, `Hours` … `Nanoseconds`, the calendar fields of a time
//! (`Year` … `Nanosecond`, `Weekday`) and `TruncateTime`.
//!
//! vigil has no duration type of its own: a duration is an int of nanoseconds, which is what time
//! minus time already gives (docs/ottl.md), so `Hours(end_time - start_time)` works as in otelcol.
//! Calendar fields are read in UTC, the zone otelcol's paths give times in.

use super::{arg, name, want_str, want_time, Func};
use crate::{Call, Target, Value};
use chrono::{Datelike, Timelike};

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    let f = c.func;
    Some(match f {
        Func::Duration => arg(c, 0, t)
            .and_then(|v| want_str(f, v))
            .and_then(|s| parse_duration(&s).map(Value::Int)),
        Func::Hours | Func::Minutes | Func::Seconds => duration(c, t).map(|d| {
            let unit: i64 = match f {
                Func::Hours => 3_600_000_000_000,
                Func::Minutes => 60_000_000_000,
                _ => 1_000_000_000,
            };
            // Whole units and the remainder apart, as Go does, so long durations keep precision.
            Value::Double((d / unit) as f64 + (d % unit) as f64 / unit as f64)
        }),
        Func::Milliseconds => duration(c, t).map(|d| Value::Int(d / 1_000_000)),
        Func::Microseconds => duration(c, t).map(|d| Value::Int(d / 1_000)),
        Func::Nanoseconds => duration(c, t).map(Value::Int),
        Func::Year
        | Func::Month
        | Func::Day
        | Func::Hour
        | Func::Minute
        | Func::Second
        | Func::Nanosecond
        | Func::Weekday => arg(c, 0, t).and_then(|v| want_time(f, v)).map(|n| {
            let at = chrono::DateTime::from_timestamp_nanos(n);
            Value::Int(match f {
                Func::Year => i64::from(at.year()),
                Func::Month => i64::from(at.month()),
                Func::Day => i64::from(at.day()),
                Func::Hour => i64::from(at.hour()),
                Func::Minute => i64::from(at.minute()),
                Func::Second => i64::from(at.second()),
                Func::Nanosecond => i64::from(at.nanosecond()),
                _ => i64::from(at.weekday().num_days_from_sunday()),
            })
        }),
        Func::TruncateTime => (|| {
            let at = want_time(f, arg(c, 0, t)?)?;
            Ok(Value::Time(truncate(at, duration(c, t)?)))
        })(),
        _ => return None,
    })
}

/// The duration argument: an int of nanoseconds (`Duration("1h")`, or time minus time). For
/// `TruncateTime` it is the second argument.
fn duration(c: &Call, t: &dyn Target) -> Result<i64, String> {
    let i = usize::from(c.func == Func::TruncateTime);
    match arg(c, i, t)? {
        Value::Int(d) => Ok(d),
        o => Err(format!(
            "{}: expected a duration (an int of nanoseconds, as Duration gives), got a {}",
            name(c.func),
            o.kind()
        )),
    }
}

/// Go's `time.Time.Truncate`: rounds down to a multiple of `d` counted from Go's zero time (year 1),
/// which for durations that divide a day is the same as from the Unix epoch. `d <= 0` changes nothing.
fn truncate(at: i64, d: i64) -> i64 {
    if d <= 0 {
        return at;
    }
    // Seconds from 0001-01-01 to 1970-01-01.
    const ZERO_TO_UNIX: i128 = 62_135_596_800 * 1_000_000_000;
    let r = (i128::from(at) + ZERO_TO_UNIX).rem_euclid(i128::from(d));
    at - r as i64
}

/// Go's `time.ParseDuration`: an optional sign and one or more decimal numbers with a unit
/// (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`), such as `1h30m` or `-1.5h`; `0` alone is allowed.
pub(super) fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("Duration: invalid duration {s:?}");
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(bad());
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, ch)| *ch == '.' || ch.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("Duration: missing unit in duration {s:?}")),
            u => return Err(format!("Duration: unknown unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| bad())?
        };
        // Digits past the 18th cannot change a nanosecond count of any unit here.
        let digits = &frac_part[..frac_part.len().min(18)];
        let frac = if digits.is_empty() {
            0
        } else {
            let n: u128 = digits.parse().map_err(|_| bad())?;
            n * unit / 10u128.pow(digits.len() as u32)
        };
        total = whole
            .checked_mul(unit)
            .and_then(|w| w.checked_add(frac))
            .and_then(|w| w.checked_add(total))
            .ok_or_else(bad)?;
    }
    let max = if neg { 1u128 << 63 } else { (1u128 << 63) - 1 };
    if total > max {
        return Err(bad());
    }
    Ok(if neg {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    })
}
