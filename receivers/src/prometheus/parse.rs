//! A streaming parser for the Prometheus text exposition format 0.0.4 and OpenMetrics 1.0. It walks
//! the body once, line by line, and hands out entries that borrow from it: names and label values
//! are slices of the input unless they hold escapes, so a scrape costs one pass and a `Vec` of labels
//! per sample.
//!
//! Hand-written because the crates.io parsers (`prometheus-parse`, `openmetrics-parser`) are small,
//! rarely maintained, allocate per token and do not cover both formats with exemplars. This one is
//! property-tested below, fuzzed (`fuzz/fuzz_targets/prometheus_text.rs`) and benchmarked
//! (`receivers/examples/bench_prom_parse.rs`, BENCHMARKS.md "Prometheus scrape parsing").

use std::borrow::Cow;
use std::fmt;

/// Which exposition format a body is in; picked from the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: integer millisecond timestamps, no `# EOF`.
    Text,
    /// `application/openmetrics-text; version=1.0.0`: float second timestamps, `# UNIT`, and a
    /// mandatory `# EOF` line at the end.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces; anything that is not OpenMetrics is read as
    /// text 0.0.4, as Prometheus does for an unknown or missing type.
    pub fn from_content_type(content_type: &str) -> Format {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// A metric family's declared type (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `untyped` (text) or `unknown` (OpenMetrics).
    Unknown,
}

impl MetricType {
    fn parse(s: &str) -> Option<MetricType> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// Whether a sample named `<family><suffix>` belongs to a family of this type.
    pub fn accepts_suffix(self, suffix: &str) -> bool {
        match self {
            MetricType::Counter => matches!(suffix, "_total" | "_created"),
            MetricType::Histogram => {
                matches!(suffix, "_bucket" | "_count" | "_sum" | "_created")
            }
            MetricType::GaugeHistogram => matches!(suffix, "_bucket" | "_gcount" | "_gsum"),
            MetricType::Summary => matches!(suffix, "_count" | "_sum" | "_created"),
            MetricType::Info => suffix == "_info",
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => false,
        }
    }
}

/// One `name="value"` pair. The value is borrowed unless it held escapes.
#[derive(Debug, Clone, PartialEq)]
pub struct Label<'a> {
    pub name: &'a str,
    pub value: Cow<'a, str>,
}

/// An exemplar after a sample: `# {trace_id="…"} 0.67 1600000000.1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar<'a> {
    pub labels: Vec<Label<'a>>,
    pub value: f64,
    /// Unix time in milliseconds, when given.
    pub timestamp_ms: Option<i64>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The sample's own name, with any `_total`/`_bucket`/… suffix.
    pub name: &'a str,
    pub labels: Vec<Label<'a>>,
    pub value: f64,
    /// Unix time in milliseconds, when the exposition gave one.
    pub timestamp_ms: Option<i64>,
    pub exemplar: Option<Exemplar<'a>>,
}

impl<'a> Sample<'a> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_ref())
    }
}

/// What one line of an exposition says.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry<'a> {
    Help { family: &'a str, text: Cow<'a, str> },
    Type { family: &'a str, kind: MetricType },
    Unit { family: &'a str, unit: &'a str },
    Sample(Sample<'a>),
}

/// Why a body could not be parsed, with the 1-based line it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Iterates over the entries of one exposition. After the first error it yields nothing more: a
/// scrape with a broken line is a failed scrape, as in Prometheus.
pub struct Parser<'a> {
    src: &'a str,
    pos: usize,
    format: Format,
    eof_seen: bool,
    done: bool,
}

impl<'a> Parser<'a> {
    pub fn new(src: &'a str, format: Format) -> Parser<'a> {
        Parser {
            src,
            pos: 0,
            format,
            eof_seen: false,
            done: false,
        }
    }

    fn fail(
        &mut self,
        at: usize,
        message: impl Into<String>,
    ) -> Option<Result<Entry<'a>, ParseError>> {
        self.done = true;
        let line = 1 + self.src.as_bytes()[..at.min(self.src.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        Some(Err(ParseError {
            line,
            message: message.into(),
        }))
    }

    fn line(&mut self, start: usize, line: &'a str) -> Option<Result<Entry<'a>, ParseError>> {
        let om = self.format == Format::OpenMetrics;
        if let Some(rest) = line.strip_prefix('#') {
            return match parse_comment(rest, om) {
                Ok(Comment::Entry(e)) => Some(Ok(e)),
                Ok(Comment::Eof) if om => {
                    self.eof_seen = true;
                    None
                }
                Ok(Comment::Eof) | Ok(Comment::Other) => None,
                Err(m) => self.fail(start, m),
            };
        }
        match parse_sample(line, om) {
            Ok(s) => Some(Ok(Entry::Sample(s))),
            Err(m) => self.fail(start, m),
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Result<Entry<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.pos >= self.src.len() {
                self.done = true;
                if self.format == Format::OpenMetrics && !self.eof_seen {
                    let at = self.src.len();
                    return self.fail(at, "OpenMetrics body does not end with \"# EOF\"");
                }
                return None;
            }
            let start = self.pos;
            let rest = &self.src[start..];
            let (raw, advance) = match rest.find('\n') {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            self.pos = start + advance;
            if self.eof_seen {
                return self.fail(start, "content after \"# EOF\"");
            }
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if self.format == Format::Text {
                let t = line.trim_matches(is_space);
                if t.is_empty() {
                    continue;
                }
                if let Some(e) = self.line(start, t) {
                    return Some(e);
                }
            } else {
                if line.is_empty() {
                    // OpenMetrics forbids blank lines; we skip them rather than fail a whole scrape.
                    continue;
                }
                if let Some(e) = self.line(start, line) {
                    return Some(e);
                }
            }
        }
        None
    }
}

/// Parses a whole body into entries, stopping at the first error.
pub fn parse(src: &str, format: Format) -> Result<Vec<Entry<'_>>, ParseError> {
    Parser::new(src, format).collect()
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

enum Comment<'a> {
    Entry(Entry<'a>),
    Eof,
    Other,
}

fn parse_comment(rest: &str, om: bool) -> Result<Comment<'_>, String> {
    let rest = rest.trim_start_matches(is_space);
    if rest.trim_end_matches(is_space) == "EOF" {
        return Ok(Comment::Eof);
    }
    let (keyword, tail) = split_word(rest);
    match keyword {
        "HELP" | "TYPE" | "UNIT" => {}
        // Other comments are free text in 0.0.4; OpenMetrics has none, but one is harmless.
        _ => return Ok(Comment::Other),
    }
    let tail = tail.trim_start_matches(is_space);
    let (family, tail) = split_word(tail);
    if family.is_empty() {
        return Err(format!("# {keyword} without a metric name"));
    }
    if !is_metric_name(family) {
        return Err(format!("invalid metric name {family:?} in # {keyword}"));
    }
    let tail = tail.strip_prefix(is_space).unwrap_or(tail);
    match keyword {
        "HELP" => Ok(Comment::Entry(Entry::Help {
            family,
            text: unescape(tail, om),
        })),
        "TYPE" => {
            let t = tail.trim_matches(is_space);
            match MetricType::parse(t) {
                Some(kind) => Ok(Comment::Entry(Entry::Type { family, kind })),
                None => Err(format!("unknown metric type {t:?} for {family}")),
            }
        }
        _ => Ok(Comment::Entry(Entry::Unit {
            family,
            unit: tail.trim_matches(is_space),
        })),
    }
}

fn split_word(s: &str) -> (&str, &str) {
    match s.find(is_space) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

fn is_metric_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// The length of the metric name at the start of `b`.
#[inline]
fn metric_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {}
        _ => return 0,
    }
    1 + b[1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b':'))
        .unwrap_or(b.len() - 1)
}

/// The length of the label name at the start of `b`.
#[inline]
fn label_name_len(b: &[u8]) -> usize {
    match b.first() {
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {}
        _ => return 0,
    }
    1 + b[1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .unwrap_or(b.len() - 1)
}

/// Resolves `\\`, `\n` and `\"` (the last only in OpenMetrics HELP and in label values); an unknown
/// escape is kept as written, as Prometheus does.
fn unescape(s: &str, quote: bool) -> Cow<'_, str> {
    if !s.contains('\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quote => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

/// A cursor over one line's bytes. All positions it stops at are ASCII, so slicing the `&str` there
/// is always on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    #[inline]
    fn skip_space(&mut self) {
        let b = self.s.as_bytes();
        while self.i < b.len() && (b[self.i] == b' ' || b[self.i] == b'\t') {
            self.i += 1;
        }
    }

    /// A space-delimited token (a value or a timestamp).
    #[inline]
    fn token(&mut self) -> &'a str {
        let b = self.s.as_bytes();
        let start = self.i;
        while self.i < b.len() && b[self.i] != b' ' && b[self.i] != b'\t' {
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// `{name="value",…}`; the cursor is on `{`.
    fn labels(&mut self) -> Result<Vec<Label<'a>>, String> {
        self.i += 1;
        let mut labels = Vec::with_capacity(4);
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(labels);
                }
                None => return Err("unterminated label set".into()),
                _ => {}
            }
            let n = label_name_len(&self.s.as_bytes()[self.i..]);
            if n == 0 {
                return Err(format!(
                    "invalid label name at {:?}",
                    excerpt(&self.s[self.i..])
                ));
            }
            let name = &self.s[self.i..self.i + n];
            self.i += n;
            self.skip_space();
            if self.peek() != Some(b'=') {
                return Err(format!("expected '=' after label name {name:?}"));
            }
            self.i += 1;
            self.skip_space();
            if self.peek() != Some(b'"') {
                return Err(format!("expected '\"' to open the value of label {name:?}"));
            }
            self.i += 1;
            let value = self.quoted(name)?;
            if labels.iter().any(|l: &Label<'_>| l.name == name) {
                return Err(format!("duplicate label name {name:?}"));
            }
            labels.push(Label { name, value });
            self.skip_space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected ',' or '}}' after label {name:?}")),
            }
        }
    }

    /// The rest of a quoted label value; the cursor is just past the opening quote.
    fn quoted(&mut self, name: &str) -> Result<Cow<'a, str>, String> {
        let b = self.s.as_bytes();
        let start = self.i;
        let mut escaped = false;
        while self.i < b.len() {
            match b[self.i] {
                b'"' => {
                    let raw = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(if escaped {
                        unescape(raw, true)
                    } else {
                        Cow::Borrowed(raw)
                    });
                }
                b'\\' => {
                    escaped = true;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
        Err(format!("unterminated value of label {name:?}"))
    }
}

fn excerpt(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A float as both formats write it: Go's `ParseFloat` forms, including `NaN`, `+Inf` and `-Inf`.
#[inline]
fn parse_value(t: &str) -> Result<f64, String> {
    t.parse::<f64>()
        .map_err(|_| format!("invalid value {:?}", excerpt(t)))
}

/// A timestamp: integer milliseconds in 0.0.4, float seconds in OpenMetrics.
fn parse_timestamp(t: &str, om: bool) -> Result<i64, String> {
    if om {
        let secs = t
            .parse::<f64>()
            .map_err(|_| format!("invalid timestamp {:?}", excerpt(t)))?;
        if !secs.is_finite() {
            return Err(format!("invalid timestamp {:?}", excerpt(t)));
        }
        Ok((secs * 1000.0).round() as i64)
    } else {
        t.parse::<i64>()
            .map_err(|_| format!("invalid timestamp {:?}", excerpt(t)))
    }
}

fn parse_sample(line: &str, om: bool) -> Result<Sample<'_>, String> {
    let n = metric_name_len(line.as_bytes());
    if n == 0 {
        return Err(format!("invalid metric name at {:?}", excerpt(line)));
    }
    let mut c = Cursor { s: line, i: n };
    let name = &line[..n];
    c.skip_space();
    let spaced = c.i > n;
    let labels = if c.peek() == Some(b'{') {
        let l = c.labels()?;
        c.skip_space();
        l
    } else {
        if !spaced && c.i < line.len() {
            return Err(format!("expected a space before the value of {name}"));
        }
        Vec::new()
    };
    let value = parse_value(c.token())?;
    c.skip_space();
    let mut timestamp_ms = None;
    let mut exemplar = None;
    if c.i < line.len() && c.peek() != Some(b'#') {
        timestamp_ms = Some(parse_timestamp(c.token(), om)?);
        c.skip_space();
    }
    if c.peek() == Some(b'#') {
        c.i += 1;
        c.skip_space();
        if c.peek() != Some(b'{') {
            return Err(format!("expected '{{' to open the exemplar of {name}"));
        }
        let ex_labels = c.labels()?;
        c.skip_space();
        let ex_value = parse_value(c.token())?;
        c.skip_space();
        let ex_ts = if c.i < line.len() {
            // Exemplar timestamps are float seconds in both formats.
            Some(parse_timestamp(c.token(), true)?)
        } else {
            None
        };
        c.skip_space();
        exemplar = Some(Exemplar {
            labels: ex_labels,
            value: ex_value,
            timestamp_ms: ex_ts,
        });
    }
    if c.i < line.len() {
        return Err(format!(
            "unexpected {:?} after the sample of {name}",
            excerpt(&line[c.i..])
        ));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
        exemplar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples(src: &str, f: Format) -> Vec<Sample<'_>> {
        parse(src, f)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Sample(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn text_counter_gauge_untyped_with_help_and_escapes() {
        let src = "# HELP http_requests_total The total \\\\ number\\n of requests.\n\
                   # TYPE http_requests_total counter\n\
                   http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                   http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                   \n\
                   # a free comment\n\
                   msdos_file_access_time_seconds{path=\"C:\\\\DIR\\\\FILE.TXT\",error=\"Cannot find file:\\n\\\"FILE.TXT\\\"\"} 1.458255915e9\n\
                   metric_without_timestamp_and_labels 12.47\n\
                   # TYPE temp gauge\n\
                   temp{loc=\"a\",} -Inf\n\
                   temp{loc=\"b\"} NaN\n\
                   temp\t+Inf\n";
        let entries = parse(src, Format::Text).unwrap();
        assert_eq!(
            entries[0],
            Entry::Help {
                family: "http_requests_total",
                text: Cow::Owned("The total \\ number\n of requests.".into())
            }
        );
        assert_eq!(
            entries[1],
            Entry::Type {
                family: "http_requests_total",
                kind: MetricType::Counter
            }
        );
        let s = samples(src, Format::Text);
        assert_eq!(s.len(), 7);
        assert_eq!(s[0].name, "http_requests_total");
        assert_eq!(s[0].label("method"), Some("post"));
        assert_eq!(s[0].value, 1027.0);
        assert_eq!(s[0].timestamp_ms, Some(1395066363000));
        assert_eq!(s[1].value, 3.0);
        assert_eq!(s[2].label("path"), Some("C:\\DIR\\FILE.TXT"));
        assert_eq!(s[2].label("error"), Some("Cannot find file:\n\"FILE.TXT\""));
        assert_eq!(s[3].labels, vec![]);
        assert_eq!(s[3].timestamp_ms, None);
        assert_eq!(s[4].value, f64::NEG_INFINITY);
        assert!(s[5].value.is_nan());
        assert_eq!(s[6].value, f64::INFINITY);
    }

    #[test]
    fn text_histogram_and_summary() {
        let src = "# TYPE rpc histogram\n\
                   rpc_bucket{le=\"0.05\"} 24054\n\
                   rpc_bucket{le=\"0.1\"} 33444\n\
                   rpc_bucket{le=\"+Inf\"} 144320\n\
                   rpc_sum 53423\n\
                   rpc_count 144320\n\
                   # TYPE lat summary\n\
                   lat{quantile=\"0.5\"} 4773\n\
                   lat{quantile=\"0.99\"} 76656\n\
                   lat_sum 1.7560473e+07\n\
                   lat_count 2693\n";
        let s = samples(src, Format::Text);
        assert_eq!(s.len(), 9);
        assert_eq!(s[2].label("le"), Some("+Inf"));
        assert_eq!(s[5].label("quantile"), Some("0.5"));
        assert_eq!(s[7].value, 1.7560473e7);
        assert!(MetricType::Histogram.accepts_suffix("_bucket"));
        assert!(!MetricType::Gauge.accepts_suffix("_bucket"));
    }

    #[test]
    fn openmetrics_with_unit_created_exemplars_and_eof() {
        let src = "# TYPE acme_http_router_request_seconds histogram\n\
                   # UNIT acme_http_router_request_seconds seconds\n\
                   # HELP acme_http_router_request_seconds Latency \\\"quoted\\\".\n\
                   acme_http_router_request_seconds_bucket{le=\"0.1\"} 5 # {trace_id=\"KOO5S4vxi0o\"} 0.067 1585000000.1\n\
                   acme_http_router_request_seconds_bucket{le=\"+Inf\"} 9 # {trace_id=\"oHg5SJYRHA0\"} 9.8\n\
                   acme_http_router_request_seconds_sum 21.1 1520879607.789\n\
                   acme_http_router_request_seconds_count 9\n\
                   acme_http_router_request_seconds_created 1520430000.123\n\
                   # TYPE foo counter\n\
                   foo_total 17.0 1520879607.789 # {trace_id=\"abc\"} 1\n\
                   foo_created 1520430000\n\
                   # EOF\n";
        let entries = parse(src, Format::OpenMetrics).unwrap();
        assert!(entries.contains(&Entry::Unit {
            family: "acme_http_router_request_seconds",
            unit: "seconds"
        }));
        assert!(entries.contains(&Entry::Help {
            family: "acme_http_router_request_seconds",
            text: Cow::Owned("Latency \"quoted\".".into())
        }));
        let s = samples(src, Format::OpenMetrics);
        assert_eq!(s.len(), 7);
        let ex = s[0].exemplar.as_ref().unwrap();
        assert_eq!(ex.labels[0].value, "KOO5S4vxi0o");
        assert_eq!(ex.value, 0.067);
        assert_eq!(ex.timestamp_ms, Some(1585000000100));
        assert_eq!(s[1].exemplar.as_ref().unwrap().timestamp_ms, None);
        assert_eq!(s[2].timestamp_ms, Some(1520879607789));
        assert_eq!(s[4].name, "acme_http_router_request_seconds_created");
        assert_eq!(s[5].timestamp_ms, Some(1520879607789));
        assert_eq!(s[5].exemplar.as_ref().unwrap().value, 1.0);
    }

    #[test]
    fn openmetrics_requires_eof_and_nothing_after_it() {
        let e = parse("foo 1\n", Format::OpenMetrics).unwrap_err();
        assert!(e.message.contains("# EOF"), "{e}");
        let e = parse("foo 1\n# EOF\nbar 2\n", Format::OpenMetrics).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse("foo 1\n# EOF", Format::OpenMetrics).is_ok());
        assert!(parse("foo 1\n# EOF\n", Format::OpenMetrics).is_ok());
        // The text format has no EOF marker and needs none.
        assert!(parse("foo 1", Format::Text).is_ok());
    }

    #[test]
    fn errors_name_the_line() {
        for (src, want) in [
            ("ok 1\nbad{ 1\n", "invalid label name"),
            ("ok 1\nbad{a=\"x} 1\n", "unterminated"),
            ("ok 1\nbad{a=\"x\" b=\"y\"} 1\n", "expected ','"),
            ("ok 1\nbad abc\n", "invalid value"),
            ("ok 1\nbad 1 2 3\n", "unexpected"),
            ("ok 1\nbad 1 1.5\n", "invalid timestamp"),
            ("ok 1\n# TYPE bad flurb\n", "unknown metric type"),
            ("ok 1\n{a=\"b\"} 1\n", "invalid metric name"),
            ("ok 1\nbad{a=\"1\",a=\"2\"} 1\n", "duplicate label"),
            ("ok 1\nbad\n", "invalid value"),
        ] {
            let e = parse(src, Format::Text).unwrap_err();
            assert_eq!(e.line, 2, "{src:?}: {e}");
            assert!(e.message.contains(want), "{src:?}: {e}");
        }
    }

    #[test]
    fn content_type_negotiation() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Text
        );
        assert_eq!(Format::from_content_type(""), Format::Text);
    }

    type RawSample = (String, Vec<(String, String)>, f64, Option<i64>);

    /// Writes samples the way an exporter would, for the round-trip property.
    fn render(samples: &[RawSample]) -> String {
        let mut out = String::new();
        for (name, labels, v, ts) in samples {
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (k, val)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let esc = val
                        .replace('\\', "\\\\")
                        .replace('\n', "\\n")
                        .replace('"', "\\\"");
                    out.push_str(&format!("{k}=\"{esc}\""));
                }
                out.push('}');
            }
            out.push_str(&format!(" {v:?}"));
            if let Some(ts) = ts {
                out.push_str(&format!(" {ts}"));
            }
            out.push('\n');
        }
        out
    }

    fn arb_sample() -> impl Strategy<Value = RawSample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}", 0..5),
            proptest::num::f64::NORMAL | proptest::num::f64::ZERO,
            proptest::option::of(any::<i64>()),
        )
            .prop_map(|(n, l, v, t)| (n, l.into_iter().collect(), v, t))
    }

    proptest! {
        #[test]
        fn round_trips_what_an_exporter_writes(
            input in proptest::collection::vec(arb_sample(), 0..20)
        ) {
            let text = render(&input);
            let got = samples(&text, Format::Text);
            prop_assert_eq!(got.len(), input.len());
            for (g, (name, labels, v, ts)) in got.iter().zip(&input) {
                prop_assert_eq!(g.name, name.as_str());
                prop_assert_eq!(g.value, *v);
                prop_assert_eq!(g.timestamp_ms, *ts);
                let gl: Vec<(String, String)> =
                    g.labels.iter().map(|l| (l.name.to_string(), l.value.to_string())).collect();
                prop_assert_eq!(&gl, labels);
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
            let _ = parse(&s, Format::Text);
            let _ = parse(&s, Format::OpenMetrics);
        }

        #[test]
        fn never_panics_on_near_valid_lines(
            s in "[a-z_{}=\",# \\\\.0-9\n+\\-Ie]{0,120}"
        ) {
            let _ = parse(&s, Format::Text);
            let _ = parse(&s, Format::OpenMetrics);
        }
    }
}
