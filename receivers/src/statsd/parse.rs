//! The StatsD line protocol with DogStatsD's extensions, as otelcol's `statsd` receiver reads it:
//! `<name>:<value>|<type>[|@<sample rate>][|#<key>:<value>,…]`. Hand-written because no maintained
//! crate parses DogStatsD tags and gauge deltas the way otelcol does, and a line is a few splits.

/// The StatsD type of a line. Sets (`s`) are refused, as in otelcol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Timer,
    Histogram,
    Distribution,
}

impl Kind {
    /// The `metric_type` attribute's value under `enable_metric_type`, otelcol's names.
    pub fn attribute(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timer => "timing",
            Kind::Histogram => "histogram",
            Kind::Distribution => "distribution",
        }
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub name: &'a str,
    pub value: f64,
    /// A gauge written `+N` or `-N` changes the gauge by N instead of setting it.
    pub delta: bool,
    pub kind: Kind,
    /// `@rate`; 1 when absent. A counter's value is divided by it, and an observed value counts
    /// 1/rate times.
    pub sample_rate: f64,
    /// Tags in the order written, sorted later into the series key.
    pub tags: Vec<(&'a str, &'a str)>,
}

/// Parses one line (without its newline). `simple_tags` accepts tags without a value (`#debug`),
/// as otelcol's `enable_simple_tags`; the error says what was wrong, for the debug log.
pub fn parse_line(line: &str, simple_tags: bool) -> Result<Line<'_>, String> {
    let mut parts = line.split('|');
    let head = parts.next().unwrap_or("");
    let (name, value) = head
        .rsplit_once(':')
        .ok_or_else(|| format!("no \"name:value\" in {line:?}"))?;
    if name.is_empty() {
        return Err(format!("empty metric name in {line:?}"));
    }
    let kind = match parts.next() {
        Some("c") => Kind::Counter,
        Some("g") => Kind::Gauge,
        Some("ms") => Kind::Timer,
        Some("h") => Kind::Histogram,
        Some("d") => Kind::Distribution,
        Some(t) => return Err(format!("unsupported metric type {t:?} in {line:?}")),
        None => return Err(format!("no metric type in {line:?}")),
    };
    let delta = kind == Kind::Gauge && (value.starts_with('+') || value.starts_with('-'));
    let value: f64 = value
        .parse()
        .map_err(|_| format!("value {value:?} is not a number in {line:?}"))?;
    if !value.is_finite() {
        return Err(format!("value {value} is not finite in {line:?}"));
    }
    let mut out = Line {
        name,
        value,
        delta,
        kind,
        sample_rate: 1.0,
        tags: Vec::new(),
    };
    for part in parts {
        if let Some(rate) = part.strip_prefix('@') {
            let r: f64 = rate
                .parse()
                .map_err(|_| format!("sample rate {rate:?} is not a number in {line:?}"))?;
            if !(r > 0.0 && r <= 1.0) {
                return Err(format!("sample rate {rate} is outside (0, 1] in {line:?}"));
            }
            out.sample_rate = r;
        } else if let Some(tags) = part.strip_prefix('#') {
            for tag in tags.split(',') {
                match tag.split_once(':') {
                    Some(("", _)) => {
                        return Err(format!("tag {tag:?} has an empty key in {line:?}"))
                    }
                    Some((k, v)) => out.tags.push((k, v)),
                    None if simple_tags && !tag.is_empty() => out.tags.push((tag, "")),
                    None => {
                        return Err(format!(
                        "tag {tag:?} is not key:value in {line:?} (enable_simple_tags accepts it)"
                    ))
                    }
                }
            }
        } else if part.starts_with("c:") || part.starts_with('T') {
            // DogStatsD 1.2's container id and 1.3's timestamp: otelcol does not read them either,
            // and the value is still good.
        } else {
            return Err(format!("unrecognized part {part:?} in {line:?}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_timers_and_tags() {
        let l = parse_line("req:3|c|@0.1|#env:prod,region:eu", false).unwrap();
        assert_eq!(
            (l.name, l.value, l.kind, l.sample_rate, l.delta),
            ("req", 3.0, Kind::Counter, 0.1, false)
        );
        assert_eq!(l.tags, [("env", "prod"), ("region", "eu")]);
        let g = parse_line("temp:-4.5|g", false).unwrap();
        assert_eq!((g.value, g.delta, g.kind), (-4.5, true, Kind::Gauge));
        let g = parse_line("temp:4.5|g", false).unwrap();
        assert!(!g.delta);
        // A counter's sign is its value, not a delta.
        assert!(!parse_line("c:-1|c", false).unwrap().delta);
        assert_eq!(parse_line("t:320|ms", false).unwrap().kind, Kind::Timer);
        assert_eq!(parse_line("h:1|h", false).unwrap().kind, Kind::Histogram);
        assert_eq!(
            parse_line("d:1|d|#a:b:c", false).unwrap().tags,
            [("a", "b:c")]
        );
        // Names may hold colons (the value is after the last one).
        assert_eq!(parse_line("a:b:1|c", false).unwrap().name, "a:b");
        assert_eq!(parse_line("x:1|c|#dbg", true).unwrap().tags, [("dbg", "")]);
        assert!(parse_line("x:1|c|c:abc|T1700000000", false).is_ok());
    }

    #[test]
    fn bad_lines_are_errors() {
        for bad in [
            "",
            "novalue",
            ":1|c",
            "x:1",
            "x:1|s",
            "x:abc|c",
            "x:NaN|g",
            "x:inf|g",
            "x:1|c|@0",
            "x:1|c|@2",
            "x:1|c|@x",
            "x:1|c|#dbg",
            "x:1|c|#:v",
            "x:1|c|zz",
        ] {
            assert!(parse_line(bad, false).is_err(), "{bad:?} was accepted");
        }
    }
}
