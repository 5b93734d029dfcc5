//! Config helpers shared by every component: typed decoding with the key path in the error, Go-style
//! durations (`200ms`, `1m30s`), byte sizes, and the "present but empty" rule otelcol applies to
//! sections such as `protocols: { grpc: }`.

use crate::component::{ComponentId, ComponentKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// A config mistake, with where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `receivers::otlp/in`, `service::pipelines::traces`, or empty for the whole file.
    pub location: String,
    /// The key path inside the location, `::`-separated; may be empty.
    pub path: String,
    pub message: String,
    /// Further problems found in the same section, so that one `validate` run lists them all.
    pub more: Vec<ConfigError>,
    /// The config is well formed but names a host file or directory that is absent here (see
    /// [`ConfigError::host_path`]): a template that only becomes a component on another machine
    /// (`receiver_creator`) does not fail on it until then.
    pub host_path: bool,
}

impl ConfigError {
    pub fn new(
        location: impl Into<String>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            location: location.into(),
            path: path.into(),
            message: message.into(),
            more: Vec::new(),
            host_path: false,
        }
    }

    /// Like [`ConfigError::at`], for a host file or directory the config names that cannot be
    /// found (otelcol's validate stats some: a `root_path`, a scrape job's credentials file).
    pub fn host_path(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            host_path: true,
            ..ConfigError::at(path, message)
        }
    }

    /// One error carrying several; `None` for an empty list.
    pub fn join(errors: Vec<ConfigError>) -> Option<ConfigError> {
        let mut all = errors.into_iter().flat_map(ConfigError::flatten);
        let mut first = all.next()?;
        first.more = all.collect();
        Some(first)
    }

    /// This error and every one it carries, each on its own.
    pub fn flatten(mut self) -> Vec<ConfigError> {
        let more = std::mem::take(&mut self.more);
        let mut out = vec![self];
        out.extend(more.into_iter().flat_map(ConfigError::flatten));
        out
    }

    /// An error at `path` inside whatever section is being checked; the registry adds the section
    /// and id (see [`ConfigError::in_component`]). What a typed factory's `validate` returns.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::new("", path, message)
    }

    /// Places an error (and those it carries) that has no location yet in a component's section.
    pub fn in_component(mut self, kind: ComponentKind, id: &ComponentId) -> Self {
        if self.location.is_empty() {
            self.location = format!("{}::{}", kind.section(), id);
        }
        self.more = std::mem::take(&mut self.more)
            .into_iter()
            .map(|e| e.in_component(kind, id))
            .collect();
        self
    }

    /// An error in a component's own section.
    pub fn component(
        kind: ComponentKind,
        id: &ComponentId,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError::new(format!("{}::{}", kind.section(), id), path, message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut where_ = self.location.clone();
        if !self.path.is_empty() {
            if !where_.is_empty() {
                where_.push_str("::");
            }
            where_.push_str(&self.path);
        }
        if where_.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{where_}: {}", self.message)?;
        }
        for m in &self.more {
            write!(f, "; {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Decodes a component's config section into its typed struct. Errors carry the key path, and an
/// unknown key is reported as otelcol reports it ("has invalid keys: …"). Every problem in the section
/// is reported (see [`decode_all`]), the first as the error and the rest in its `more`.
pub fn decode<T: DeserializeOwned>(
    kind: ComponentKind,
    id: &ComponentId,
    value: &Value,
) -> Result<T, ConfigError> {
    decode_all::<T>(value).map_err(|errors| {
        let errors = errors
            .into_iter()
            .map(|(path, msg)| ConfigError::component(kind, id, path, msg))
            .collect();
        ConfigError::join(errors)
            .unwrap_or_else(|| ConfigError::component(kind, id, "", "cannot be decoded"))
    })
}

/// At most this many problems are listed for one section; a config with more shows the first ones
/// and a last line saying that the list was cut.
pub const MAX_ERRORS_PER_SECTION: usize = 50;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Decodes `value` as otelcol's confmap would and returns every problem as `(key path, message)`.
///
/// Two rules make it match otelcol. A YAML null (`endpoint:` with no value, `processors:` with no list)
/// means "not set", so the field keeps its default; serde would refuse it for a non-`Option` field.
/// And serde stops at the first error, while a user wants the whole list in one run: after each error
/// the offending key (or list item) is taken out and decoding runs again, until it succeeds or
/// nothing more can be taken out. Paths in the messages are those of the user's file, not of the
/// pruned copy.
pub fn decode_all<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<(String, String)>> {
    match decode_partial(value) {
        (Some(v), errors) if errors.is_empty() => Ok(v),
        (_, errors) => Err(errors),
    }
}

/// [`decode_all`], also returning what decodes once every offending key is taken out, so that a
/// caller can go on checking the rest (a service section with one bad key still has pipelines).
pub fn decode_partial<T: DeserializeOwned>(value: &Value) -> (Option<T>, Vec<(String, String)>) {
    let mut work = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value.clone()
    };
    let mut errors: Vec<(String, String)> = Vec::new();
    // Items taken out of lists, as (list path in the user's file, index in the user's file).
    let mut removed_items: Vec<(Vec<Seg>, usize)> = Vec::new();
    // Keys taken out after an error (not nulls), in the user's file's coordinates.
    let mut pruned: Vec<Vec<Seg>> = Vec::new();
    // Each pass takes one node out of a finite tree, so this only guards against a bug here.
    for _ in 0..(4 * MAX_ERRORS_PER_SECTION + 1000) {
        let e = match serde_path_to_error::deserialize::<_, T>(&work) {
            Ok(v) => return (Some(v), errors),
            Err(e) => e,
        };
        let cur: Vec<Seg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                _ => None,
            })
            .collect();
        let msg = e.inner().to_string();
        let orig = original_path(&cur, &removed_items);
        // A key with no value means "the default" only for a key the component has: an unknown key
        // (`thrift:` under otlp's protocols) is an error whatever its value.
        let is_null =
            !msg.starts_with("unknown field") && matches!(lookup(&work, &cur), Some(Value::Null));
        if !is_null {
            if let Some(field) = missing_field(&msg) {
                let mut key = orig.clone();
                key.push(Seg::Key(field.to_string()));
                if pruned.contains(&key) {
                    // Follows from a key already reported and taken out: nothing new to say.
                    break;
                }
            }
            if errors.len() == MAX_ERRORS_PER_SECTION {
                errors.push((
                    String::new(),
                    format!("more than {MAX_ERRORS_PER_SECTION} problems; fix these and run again"),
                ));
                break;
            }
            errors.push((render_path(&orig), humanize_serde(&msg)));
        }
        if cur.is_empty() || !remove_at(&mut work, &cur) {
            break;
        }
        if let Some((Seg::Index(i), parent)) = orig.split_last() {
            removed_items.push((parent.to_vec(), *i));
        }
        if !is_null {
            pruned.push(orig);
        }
    }
    if errors.is_empty() {
        errors.push((String::new(), "cannot be decoded".into()));
    }
    (None, errors)
}

fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

/// Maps a path in the pruned copy back to the user's file, undoing the shifts of removed list items.
fn original_path(cur: &[Seg], removed: &[(Vec<Seg>, usize)]) -> Vec<Seg> {
    let mut out: Vec<Seg> = Vec::with_capacity(cur.len());
    for seg in cur {
        match seg {
            Seg::Index(i) => {
                let mut gone: Vec<usize> = removed
                    .iter()
                    .filter(|(p, _)| *p == out)
                    .map(|(_, r)| *r)
                    .collect();
                gone.sort_unstable();
                let mut o = *i;
                for r in gone {
                    if r <= o {
                        o += 1;
                    }
                }
                out.push(Seg::Index(o));
            }
            k => out.push(k.clone()),
        }
    }
    out
}

fn render_path(p: &[Seg]) -> String {
    p.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join("::")
}

fn lookup<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, s| match s {
        Seg::Key(k) => v.as_object()?.get(k),
        Seg::Index(i) => v.as_array()?.get(*i),
    })
}

fn remove_at(v: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut node = v;
    for s in parent {
        let next = match s {
            Seg::Key(k) => node.as_object_mut().and_then(|m| m.get_mut(k)),
            Seg::Index(i) => node.as_array_mut().and_then(|a| a.get_mut(*i)),
        };
        match next {
            Some(n) => node = n,
            None => return false,
        }
    }
    match (last, node) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        (Seg::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

/// Set by `vigil validate` only: the config is being checked, possibly on a machine other than the
/// one that will run it (a CI job checking a DaemonSet config whose certificates are mounted only in
/// the pod). otelcol's validate stats a few host paths (`file_storage::directory`, hostmetrics'
/// `root_path`, the prometheus receiver's client cert/key and credentials files) and reads no
/// certificate: `configtls` loads its files when a component starts. Code that reads a host file
/// while a component is created asks [`host_files_deferred`] and, when it is true, checks only
/// what does not need the file; the same code run by `vigil` (or a reload) reads the file and fails
/// the start with the component, key path and file.
static VALIDATE_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks this process as `vigil validate` (see [`host_files_deferred`]).
pub fn set_validate_only() {
    VALIDATE_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// True in `vigil validate`: files otelcol reads only at start (certificates, keys, CAs, secrets)
/// are not read.
pub fn host_files_deferred() -> bool {
    VALIDATE_ONLY.load(std::sync::atomic::Ordering::Relaxed)
}

/// Renders serde's path (`actions[1].key`) as otelcol's key path (`actions::1::key`).
pub fn key_path(serde_path: &str) -> String {
    if serde_path == "." {
        return String::new();
    }
    serde_path
        .replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("::")
}

fn humanize_serde(msg: &str) -> String {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, expected)) = rest.split_once('`') {
            let expected = expected.trim_start_matches(", ");
            return format!("has invalid keys: {key} ({expected})");
        }
    }
    msg.to_string()
}

/// Deserializes `Option<T>` so that a key that is present but empty (`grpc:`) means `Some(default)`,
/// as otelcol's confmap treats it; an absent key stays `None` through `#[serde(default)]`.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let v: Option<T> = Option::deserialize(d)?;
    Ok(Some(v.unwrap_or_default()))
}

/// `#[serde(default, deserialize_with = "vigil_core::config::opt_scalar_text")]` for an `Option<String>`
/// that must keep a plain scalar's text whatever YAML types it as: Prometheus' `regex: true` is the
/// regex `true`, not a boolean.
pub fn opt_scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a string, got {}",
            match other {
                Value::Array(_) => "a list",
                _ => "a map",
            }
        ))),
    }
}

/// Parses a Go duration: `300ms`, `1.5h`, `2h45m`, `10us`, `0`. A bare number is nanoseconds, as
/// mapstructure decodes an integer into `time.Duration`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s.starts_with('-') {
        return Err(format!(
            "invalid duration {s:?}: negative durations are not allowed"
        ));
    }
    // Summed in nanoseconds, so that `1.5h` and `300ms` are exact.
    let mut total = 0f64;
    let mut rest = s.trim_start_matches('+');
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"))?;
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {u:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    // Go's time.Duration is an int64 of nanoseconds (about 292 years), and ParseDuration refuses
    // anything longer; so do we, instead of letting Duration::from_secs_f64 panic on overflow.
    if !total.is_finite() || total > MAX_DURATION_NANOS {
        return Err(format!(
            "invalid duration {s:?}: out of range (the longest is about 292 years, 2562047h)"
        ));
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Writes a duration as a config would spell it, in the largest unit that keeps it exact: `10s`,
/// `200ms`, `1500us`; [`parse_duration`] reads it back to the same value.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    for (unit, scale) in [
        ("h", 3_600_000_000_000u128),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns.is_multiple_of(scale) {
            return format!("{}{unit}", ns / scale);
        }
    }
    format!("{ns}ns")
}

/// `i64::MAX` nanoseconds, the longest duration Go (and so otelcol) can hold.
const MAX_DURATION_NANOS: f64 = 9_223_372_036_854_775_807.0;

/// The shortest period accepted for anything that runs on a timer (`check_interval`,
/// `collection_interval`; Prometheus durations cannot go below 1ms anyway). otelcol takes any positive value, but `1ns` keeps a core
/// busy while idle; nothing a node agent does on a timer is useful more often than every millisecond.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Checks a timer's period against [`MIN_INTERVAL`]; zero gets otelcol's message.
pub fn check_interval(d: Duration) -> Result<(), String> {
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else if d < MIN_INTERVAL {
        Err(format!(
            "{d:?} is shorter than 1ms: a timer that fast keeps a core busy while idle"
        ))
    } else {
        Ok(())
    }
}

/// `#[serde(with = "vigil_core::config::duration")]` for `Duration` fields.
pub mod duration {
    use super::parse_duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Nanos(u64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration such as \"5s\" or \"200ms\"")
        })? {
            Raw::Text(s) => parse_duration(&s).map_err(serde::de::Error::custom),
            Raw::Nanos(n) if n <= i64::MAX as u64 => Ok(Duration::from_nanos(n)),
            Raw::Nanos(n) => Err(serde::de::Error::custom(format!(
                "invalid duration {n}ns: out of range (the longest is about 292 years)"
            ))),
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }
}

/// `#[serde(with = "vigil_core::config::opt_duration")]` for `Option<Duration>` fields.
pub mod opt_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    struct Wrap(#[serde(with = "super::duration")] Duration);

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// An optional string key where `""` means unset, as it does for otelcol's plain Go `string`
/// fields (`server_name_override: ""` is what a template writes when it has no name to give).
/// Use as `#[serde(default, with = "vigil_core::config::empty_as_none")]`.
pub mod empty_as_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
    }

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v),
            None => s.serialize_none(),
        }
    }
}

/// Compiles a regular expression from a config as Go's RE2 reads it: otelcol's components use Go's
/// `regexp`, so a pattern that works there must work here. See [`re2_to_rust`] for what is translated.
pub fn re2_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&re2_to_rust(pattern))
}

/// [`re2_regex`] for matching bytes.
pub fn re2_bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::Regex::new(&re2_to_rust(pattern))
}

/// Rewrites the places where Go's RE2 syntax and the `regex` crate's differ, so that the crate reads
/// the pattern as Go would:
/// - a `{` that does not start a repetition (`{2}`, `{2,}`, `{2,5}`) is a literal in Go and an error
///   in the crate, and a lone `}` is a literal in both; both are escaped;
/// - inside a class, Go takes `[` (other than `[:alpha:]`), `&` and `~` literally, while the crate
///   reads nested classes and set operations (`&&`, `~~`); they are escaped;
/// - `\Q…\E` quotes literal text in Go; the crate has no such form, so the text is escaped.
pub fn re2_to_rust(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains(['{', '}', '[', '\\']) {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if chars.get(i + 1) == Some(&'Q') => {
                let start = i + 2;
                let mut end = start;
                while end < chars.len() && !(chars[end] == '\\' && chars.get(end + 1) == Some(&'E'))
                {
                    end += 1;
                }
                let text: String = chars[start..end].iter().collect();
                out.push_str(&regex_escape(&text));
                i = (end + 2).min(chars.len());
            }
            '\\' => {
                out.push(c);
                if let Some(n) = chars.get(i + 1) {
                    out.push(*n);
                }
                i += 2;
            }
            '[' => i = copy_class(&chars, i, &mut out),
            '{' => {
                let len = repetition_len(&chars[i..]);
                if len > 0 {
                    out.extend(&chars[i..i + len]);
                    i += len;
                } else {
                    out.push_str("\\{");
                    i += 1;
                }
            }
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The length of `{n}`, `{n,}` or `{n,m}` at the start of `s`, or 0 when it is not a repetition.
fn repetition_len(s: &[char]) -> usize {
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let n = digits(1);
    if n == 0 {
        return 0;
    }
    let mut i = 1 + n;
    if s.get(i) == Some(&',') {
        i += 1;
        i += digits(i);
    }
    if s.get(i) == Some(&'}') {
        i + 1
    } else {
        0
    }
}

/// Copies the class that starts at `chars[start]` (a `[`), escaping what Go reads literally, and returns
/// the index after it. An unterminated class is copied as it is, for the crate to report.
fn copy_class(chars: &[char], start: usize, out: &mut String) -> usize {
    let mut i = start + 1;
    let mut body = String::from("[");
    if chars.get(i) == Some(&'^') {
        body.push('^');
        i += 1;
    }
    // A `]` first in the class is a literal in Go.
    if chars.get(i) == Some(&']') {
        body.push_str("\\]");
        i += 1;
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => {
                body.push(']');
                out.push_str(&body);
                return i + 1;
            }
            '\\' => {
                body.push(c);
                if let Some(n) = chars.get(i + 1) {
                    body.push(*n);
                }
                i += 2;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // `[:alpha:]`: copied up to its `:]`.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                match end {
                    Some(j) => {
                        body.extend(&chars[i..j + 2]);
                        i = j + 2;
                    }
                    None => {
                        body.push_str("\\[");
                        i += 1;
                    }
                }
            }
            '[' | '&' | '~' => {
                body.push('\\');
                body.push(c);
                i += 1;
            }
            _ => {
                body.push(c);
                i += 1;
            }
        }
    }
    out.push_str(&body);
    chars.len()
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Checks a `host:port` endpoint as otelcol's servers take it. The host may be a name (`localhost`),
/// an IPv4 or a bracketed IPv6 address, or empty for all interfaces.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let (host, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("invalid endpoint {endpoint:?}: expected host:port"))?;
    let port: u32 = port
        .parse()
        .map_err(|_| format!("invalid endpoint {endpoint:?}: port {port:?} is not a number"))?;
    if port > 65535 {
        return Err(format!(
            "invalid endpoint {endpoint:?}: port {port} is out of range (0-65535)"
        ));
    }
    if host.contains(char::is_whitespace) {
        return Err(format!("invalid endpoint {endpoint:?}: host has spaces"));
    }
    Ok(())
}

/// Resolves a `host:port` endpoint to a socket address to bind. `localhost` binds loopback, and an
/// empty host binds every interface, as Go's net.Listen does.
pub fn resolve_endpoint(endpoint: &str) -> std::io::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let fixed = if endpoint.starts_with(':') {
        format!("0.0.0.0{endpoint}")
    } else {
        endpoint.to_string()
    };
    let mut addrs: Vec<_> = fixed.to_socket_addrs()?.collect();
    // Prefer IPv4 for `localhost`, where both resolve, so that clients using 127.0.0.1 reach us.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs.into_iter().next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("endpoint {endpoint:?} resolves to no address"),
        )
    })
}

/// Binds a TCP listener, naming the component and endpoint when the port is taken.
pub async fn bind_tcp(
    kind: ComponentKind,
    id: &ComponentId,
    endpoint: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = resolve_endpoint(endpoint).map_err(|e| {
        anyhow::anyhow!(
            "{}::{}: cannot resolve endpoint {endpoint:?}: {e}",
            kind.section(),
            id
        )
    })?;
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "{}::{}: cannot listen on {endpoint} ({addr}): the port is already in use",
                kind.section(),
                id
            )
        } else {
            anyhow::anyhow!(
                "{}::{}: cannot listen on {endpoint} ({addr}): {e}",
                kind.section(),
                id
            )
        }
    })
}

/// Client TLS settings as otelcol's `configtls` spells them.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    #[serde(default, with = "empty_as_none")]
    pub ca_file: Option<String>,
    #[serde(default, with = "empty_as_none")]
    pub cert_file: Option<String>,
    #[serde(default, with = "empty_as_none")]
    pub key_file: Option<String>,
    #[serde(default, with = "empty_as_none")]
    pub server_name_override: Option<String>,
    /// `"1.2"` (default) or `"1.3"`: the lowest TLS version offered.
    #[serde(default, with = "empty_as_none")]
    pub min_version: Option<String>,
    /// `"1.2"` or `"1.3"` (default): the highest TLS version offered.
    #[serde(default, with = "empty_as_none")]
    pub max_version: Option<String>,
    /// Go's suite names, read as on servers: listed TLS 1.2 suites restrict TLS 1.2, and TLS 1.3
    /// keeps all of its suites unless some are listed. Empty: every suite rustls offers.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// With `ca_file`, trust the system's roots as well instead of only the file's.
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// configtls's period for reading the certificate files again. vigil reads them when the
    /// component starts (a restart picks up rotated files); the key is read and has no effect.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub reload_interval: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn key_paths_use_double_colons() {
        assert_eq!(key_path("actions[1].key"), "actions::1::key");
        assert_eq!(key_path("."), "");
        assert_eq!(
            key_path("protocols.grpc.endpoint"),
            "protocols::grpc::endpoint"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn durations_beyond_go_range_are_errors_not_panics() {
        for s in ["99999999999999999999999h", "2562048h", "1e300s"] {
            assert!(parse_duration(s).is_err(), "{s}");
        }
        assert_eq!(
            parse_duration("2562047h").unwrap(),
            Duration::from_secs(2562047 * 3600)
        );
        assert_eq!(parse_duration("1ns").unwrap(), Duration::from_nanos(1));
        let big = format!("{}h", "9".repeat(400));
        assert!(parse_duration(&big).is_err());
    }

    #[test]
    fn re2_literal_braces_compile_as_go_reads_them() {
        let re = re2_regex(r#""resource":{.*?},?"#).unwrap();
        assert!(re.is_match(r#"{"resource":{"a":1},"x":2}"#));
        assert!(re2_regex("a{2}").unwrap().is_match("aa"));
        assert!(!re2_regex("^a{2}$").unwrap().is_match("a{2}"));
        assert!(re2_regex("^a{,2}$").unwrap().is_match("a{,2}"));
        assert!(re2_regex("^{}$").unwrap().is_match("{}"));
        assert!(re2_regex("^x{a}$").unwrap().is_match("x{a}"));
        assert!(re2_regex("^[[]+$").unwrap().is_match("[["));
        assert!(re2_regex("^[a&&b]+$").unwrap().is_match("a&&b"));
        assert!(re2_regex("^[[:digit:]]+$").unwrap().is_match("42"));
        assert!(re2_regex(r"^\Qa.b{\E$").unwrap().is_match("a.b{"));
        assert!(re2_regex(r"^\{x\}$").unwrap().is_match("{x}"));
        assert!(re2_regex("(").is_err());
        assert_eq!(re2_to_rust("plain"), "plain");
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Leaf {
        #[serde(default = "dflt_endpoint")]
        endpoint: String,
        #[serde(default)]
        port: u16,
    }
    fn dflt_endpoint() -> String {
        "localhost:4317".into()
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Tree {
        #[serde(default)]
        leaf: Leaf,
        #[serde(default)]
        list: Vec<Leaf>,
        #[serde(default)]
        names: Vec<String>,
    }

    #[test]
    fn null_means_default() {
        let v = serde_json::json!({"leaf": {"endpoint": null}, "names": null, "list": [null]});
        let t: Tree = decode_all(&v).unwrap();
        assert_eq!(t.leaf.endpoint, "localhost:4317");
        assert!(t.names.is_empty());
        assert!(t.list.is_empty());
    }

    #[test]
    fn every_problem_is_reported_with_the_users_paths() {
        let v = serde_json::json!({
            "leaf": {"endpont": "x", "port": "high"},
            "list": [{"port": -1}, {"port": 1}, {"prot": 2}, {"port": 70000}],
            "extra": 1
        });
        let errs = decode_all::<Tree>(&v).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "extra",
                "leaf::endpont",
                "leaf::port",
                "list::0::port",
                "list::2::prot",
                "list::3::port"
            ],
            "{errs:?}"
        );
        assert!(errs[0].1.starts_with("has invalid keys: extra"), "{errs:?}");
        let id = ComponentId::parse("x").unwrap();
        let e = decode::<Tree>(ComponentKind::Receiver, &id, &v).unwrap_err();
        assert_eq!(e.flatten().len(), 6);
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        #[serde(default)]
        endpoint: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default, deserialize_with = "present")]
        grpc: Option<Inner>,
        #[serde(default, with = "duration")]
        #[allow(dead_code)]
        timeout: Duration,
    }

    #[test]
    fn decode_names_the_path() {
        let id = ComponentId::parse("otlp/in").unwrap();
        let v = serde_json::json!({"grpc": {"endpont": "x"}});
        let e = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap_err();
        assert_eq!(e.location, "receivers::otlp/in");
        assert!(e.to_string().contains("has invalid keys: endpont"), "{e}");

        let v = serde_json::json!({"grpc": null});
        let o = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap();
        assert!(o.grpc.is_some());

        let v = serde_json::json!({"timeout": "soon"});
        let e = decode::<Outer>(ComponentKind::Receiver, &id, &v).unwrap_err();
        assert!(
            e.to_string().starts_with("receivers::otlp/in::timeout: "),
            "{e}"
        );
    }
}
