//! Timestamp parsing for the `timestamp` operator and the parsers' `timestamp:` blocks: stanza's
//! `strptime` directives and Go reference layouts are both translated once, at config load, into a
//! chrono format, and `epoch` layouts read numbers in s/ms/us/ns.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

/// A compiled timestamp layout.
#[derive(Debug, Clone)]
pub enum Layout {
    /// A chrono format string, translated from strptime or Go.
    Chrono(String),
    /// Seconds, milliseconds, microseconds or nanoseconds since the epoch; `s.ms`-style fractions allowed.
    Epoch(EpochUnit),
}

#[derive(Debug, Clone, Copy)]
pub enum EpochUnit {
    S,
    Ms,
    Us,
    Ns,
}

/// A layout and the zone that zone-less timestamps are read in.
#[derive(Debug, Clone)]
pub struct TimeParser {
    pub layout: Layout,
    pub location: Option<Tz>,
}

impl TimeParser {
    /// Builds a parser from stanza's `layout_type` (strptime, gotime, epoch), `layout` and `location`.
    pub fn new(
        layout_type: &str,
        layout: &str,
        location: Option<&str>,
    ) -> Result<TimeParser, String> {
        let layout = match layout_type {
            "strptime" => Layout::Chrono(strptime_to_chrono(layout)),
            "gotime" => Layout::Chrono(go_to_chrono(layout)?),
            "epoch" => Layout::Epoch(match layout {
                "s" | "s.ms" | "s.us" | "s.ns" => EpochUnit::S,
                "ms" => EpochUnit::Ms,
                "us" => EpochUnit::Us,
                "ns" => EpochUnit::Ns,
                other => {
                    return Err(format!(
                        "unknown epoch layout {other:?}: expected s, ms, us, ns, s.ms, s.us or s.ns"
                    ))
                }
            }),
            other => {
                return Err(format!(
                    "unknown layout_type {other:?}: expected strptime, gotime or epoch"
                ))
            }
        };
        let location = match location {
            None | Some("") => None,
            Some(l) => Some(
                l.parse::<Tz>()
                    .map_err(|_| format!("unknown location {l:?}: expected an IANA zone such as \"UTC\" or \"Europe/Berlin\""))?,
            ),
        };
        Ok(TimeParser { layout, location })
    }

    /// Unix nanoseconds, or why the text does not fit the layout.
    pub fn parse(&self, s: &str) -> Result<u64, String> {
        match &self.layout {
            Layout::Epoch(unit) => {
                let x: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{s:?} is not an epoch number"))?;
                let scale = match unit {
                    EpochUnit::S => 1e9,
                    EpochUnit::Ms => 1e6,
                    EpochUnit::Us => 1e3,
                    EpochUnit::Ns => 1.0,
                };
                Ok((x * scale).max(0.0) as u64)
            }
            Layout::Chrono(fmt) => parse_chrono(s, fmt, self.location.as_ref()),
        }
    }
}

fn nanos<T: TimeZone>(t: &DateTime<T>) -> u64 {
    t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64
}

fn parse_chrono(s: &str, fmt: &str, tz: Option<&Tz>) -> Result<u64, String> {
    if let Ok(t) = DateTime::parse_from_str(s, fmt) {
        return Ok(nanos(&t));
    }
    let naive = match NaiveDateTime::parse_from_str(s, fmt) {
        Ok(n) => n,
        Err(e) => match NaiveDate::parse_from_str(s, fmt) {
            Ok(d) => d.and_hms_opt(0, 0, 0).unwrap_or_default(),
            Err(_) => {
                // Layouts without a year (RFC 3164's "Jan  2 15:04:05") take the current year.
                let year = chrono::Utc::now().format("%Y").to_string();
                NaiveDateTime::parse_from_str(&format!("{year} {s}"), &format!("%Y {fmt}"))
                    .map_err(|_| format!("{s:?} does not match layout {fmt:?}: {e}"))?
            }
        },
    };
    match tz {
        Some(tz) => tz
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| nanos(&t))
            .ok_or_else(|| format!("{s:?} does not exist in {tz}")),
        None => chrono::Local
            .from_local_datetime(&naive)
            .earliest()
            .map(|t| nanos(&t))
            .ok_or_else(|| format!("{s:?} does not exist in the local zone")),
    }
}

/// stanza's strptime is close to chrono's strftime; the differences are `%L` (milliseconds), `%f`
/// (fraction digits) and `%s`.
fn strptime_to_chrono(layout: &str) -> String {
    layout
        .replace("%L", "%3f")
        .replace("%f", "%6f")
        .replace("%N", "%9f")
}

/// Translates Go's reference-time layout ("2006-01-02T15:04:05Z07:00") into a chrono format.
pub fn go_to_chrono(layout: &str) -> Result<String, String> {
    // Longest tokens first so that "2006" is not read as "2" then "006".
    const TOKENS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("Z0700", "%z"),
        ("-0700", "%z"),
        (".000000000", "%.9f"),
        (".999999999", "%.f"),
        (".000000", "%.6f"),
        (".999999", "%.f"),
        (".000", "%.3f"),
        (".999", "%.f"),
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("-07", "%#z"),
        ("01", "%m"),
        ("02", "%d"),
        ("_2", "%e"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("1", "%-m"),
        ("2", "%-d"),
        ("3", "%-I"),
        ("4", "%-M"),
        ("5", "%-S"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, ch) in TOKENS {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(ch);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().ok_or("empty layout")?;
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strptime_go_and_epoch() {
        let p = TimeParser::new("strptime", "%Y-%m-%dT%H:%M:%S.%LZ", Some("UTC")).unwrap();
        assert_eq!(
            p.parse("2024-03-01T10:00:00.250Z").unwrap(),
            1_709_287_200_250_000_000
        );
        let g = TimeParser::new("gotime", "2006-01-02T15:04:05.000000000Z07:00", None).unwrap();
        assert_eq!(
            g.parse("2024-03-01T10:00:00.000000001+00:00").unwrap(),
            1_709_287_200_000_000_001
        );
        let g2 = TimeParser::new("gotime", "02/Jan/2006:15:04:05 -0700", None).unwrap();
        assert_eq!(
            g2.parse("01/Mar/2024:11:00:00 +0100").unwrap(),
            1_709_287_200_000_000_000
        );
        let e = TimeParser::new("epoch", "s.ms", None).unwrap();
        assert_eq!(e.parse("1709287200.5").unwrap(), 1_709_287_200_500_000_000);
        assert!(TimeParser::new("strptime", "%Y", Some("Mars/Olympus")).is_err());
        assert!(p.parse("yesterday").is_err());
    }
}
