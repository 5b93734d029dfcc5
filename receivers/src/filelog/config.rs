//! The `filelog` receiver's config: otelcol's keys and defaults (`include`, `exclude`, `start_at`,
//! `poll_interval` 200ms, `fingerprint_size` 1kb, `max_log_size` 1MiB, …), decoded with the key path in
//! every error and checked before start, so that a mistake is reported by `vigil validate`.

use crate::stanza::operators::{OperatorConfig, Pipeline};
pub use crate::stanza::{parse_size, ByteSize};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use vigil_core::config::decode;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// `receivers::filelog` as written.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilelogConfig {
    /// Globs of files to read (`**` allowed).
    pub include: Vec<String>,
    /// Globs of files to leave alone, matched against the paths `include` found.
    pub exclude: Vec<String>,
    /// `end` (default) or `beginning`: where to start in files found at the first poll.
    pub start_at: String,
    #[serde(with = "vigil_core::config::duration")]
    pub poll_interval: Duration,
    /// Files held open at once; further files are reopened by path at the next poll.
    pub max_concurrent_files: usize,
    /// Accepted for otelcol compatibility; files are read one after another.
    pub max_batches: usize,
    /// Longer records are cut at this size and flagged with `log.truncated`.
    pub max_log_size: ByteSize,
    pub encoding: String,
    pub include_file_name: bool,
    pub include_file_path: bool,
    pub include_file_name_resolved: bool,
    pub include_file_path_resolved: bool,
    /// How many leading bytes identify a file.
    pub fingerprint_size: ByteSize,
    pub delete_after_read: bool,
    /// How long an unterminated last line waits for its end before it is sent as it is.
    #[serde(with = "vigil_core::config::duration")]
    pub force_flush_period: Duration,
    pub multiline: Option<MultilineConfig>,
    /// A storage extension id (`file_storage/x`) for offsets that survive a restart.
    pub storage: Option<String>,
    pub operators: Vec<OperatorConfig>,
    /// Attributes and resource attributes added to every record, as stanza's input operators take them.
    pub attributes: HashMap<String, Value>,
    pub resource: HashMap<String, Value>,
    /// What the reader does when the pipeline refuses a batch: with `enabled`, it waits and sends
    /// the same batch again, backing off, for up to `max_elapsed_time`. Whether enabled or not,
    /// a batch still refused is never dropped: the reader keeps its checkpoint and reads it
    /// again at the next poll.
    pub retry_on_failure: RetryOnFailure,
    /// Files last modified longer ago than this are not read (0: no limit), as fileconsumer's
    /// matcher leaves them out.
    #[serde(with = "vigil_core::config::duration")]
    pub exclude_older_than: Duration,
    /// `log.file.owner.name` / `log.file.owner.group.name`: the file's owner and group, looked up
    /// in the host's `/etc/passwd` and `/etc/group` (what Go's os/user reads without cgo).
    pub include_file_owner_name: bool,
    pub include_file_owner_group_name: bool,
    /// `log.file.record_number`: the record's place in its file, from 1 (checkpointed with the
    /// offset, so a restart continues the count).
    pub include_file_record_number: bool,
    /// `log.file.record_offset`: the byte offset where the record starts in its file.
    pub include_file_record_offset: bool,
    /// stanza's trim: by default leading and trailing whitespace is cut from every record and an
    /// empty record is not sent; these keep it.
    pub preserve_leading_whitespaces: bool,
    pub preserve_trailing_whitespaces: bool,
    /// fileconsumer's archive of fingerprints from earlier polls (default 0). vigil's tracker
    /// keeps every known file for several polls on its own, so the key changes nothing here.
    pub polls_to_archive: usize,
    /// fileconsumer's advisory lock before reading; only `false` (the default) is built.
    pub acquire_fs_lock: bool,
    /// `""` (plain files, the default); `gzip`/`auto` are not built.
    pub compression: String,
    /// Keys otelcol has whose feature vigil does not build: refused when set (see `check`).
    pub header: Option<Value>,
    pub ordering_criteria: Option<Value>,
}

/// `retry_on_failure`, with otelcol's (consumerretry's) keys and defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryOnFailure {
    pub enabled: bool,
    /// The first wait; later waits grow by half each time, up to `max_interval`.
    #[serde(with = "vigil_core::config::duration")]
    pub initial_interval: Duration,
    #[serde(with = "vigil_core::config::duration")]
    pub max_interval: Duration,
    /// How long one batch is retried at most; 0 means until it is accepted or the receiver stops.
    #[serde(with = "vigil_core::config::duration")]
    pub max_elapsed_time: Duration,
}

impl Default for RetryOnFailure {
    fn default() -> Self {
        RetryOnFailure {
            enabled: false,
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

impl Default for FilelogConfig {
    fn default() -> Self {
        FilelogConfig {
            include: Vec::new(),
            exclude: Vec::new(),
            start_at: "end".into(),
            poll_interval: Duration::from_millis(200),
            max_concurrent_files: 1024,
            max_batches: 0,
            max_log_size: ByteSize(1024 * 1024),
            encoding: "utf-8".into(),
            include_file_name: true,
            include_file_path: false,
            include_file_name_resolved: false,
            include_file_path_resolved: false,
            fingerprint_size: ByteSize(1000),
            delete_after_read: false,
            force_flush_period: Duration::from_millis(500),
            multiline: None,
            storage: None,
            operators: Vec::new(),
            attributes: HashMap::new(),
            resource: HashMap::new(),
            retry_on_failure: RetryOnFailure::default(),
            exclude_older_than: Duration::ZERO,
            include_file_owner_name: false,
            include_file_owner_group_name: false,
            include_file_record_number: false,
            include_file_record_offset: false,
            preserve_leading_whitespaces: false,
            preserve_trailing_whitespaces: false,
            polls_to_archive: 0,
            acquire_fs_lock: false,
            compression: String::new(),
            header: None,
            ordering_criteria: None,
        }
    }
}

/// `multiline`: exactly one of the two patterns.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    pub line_start_pattern: Option<String>,
    pub line_end_pattern: Option<String>,
    #[serde(default)]
    pub omit_pattern: bool,
}

// `tcplog` and `udplog` take these keys (and `operators`, `attributes`, `resource`, `encoding`,
// `preserve_*_whitespaces`) as `filelog` does, but each config struct lists its fields again rather
// than `#[serde(flatten)]`-ing a shared one: serde cannot combine `flatten` with
// `deny_unknown_fields`, and a misspelt key must stay an error. What is shared is the checking:
// [`MultilineConfig::split`], [`RetryOnFailure::check_intervals`] and [`build_operators`].

impl MultilineConfig {
    /// The split the two patterns ask for; exactly one must be given, and it must compile as RE2.
    /// `omit_pattern` is the caller's to refuse.
    pub fn split(&self, id: &ComponentId) -> Result<Split, ConfigError> {
        let re = |key: &str, s: &str| {
            vigil_core::config::re2_bytes_regex(s).map_err(|e| {
                err(
                    id,
                    &format!("multiline::{key}"),
                    format!("invalid regex: {e}"),
                )
            })
        };
        match (&self.line_start_pattern, &self.line_end_pattern) {
            (Some(s), None) => Ok(Split::Start(re("line_start_pattern", s)?)),
            (None, Some(s)) => Ok(Split::End(re("line_end_pattern", s)?)),
            (Some(_), Some(_)) => Err(err(
                id,
                "multiline",
                "only one of line_start_pattern and line_end_pattern may be set",
            )),
            (None, None) => Err(err(
                id,
                "multiline",
                "one of line_start_pattern or line_end_pattern is required",
            )),
        }
    }
}

impl RetryOnFailure {
    /// With `enabled`, `initial_interval` must be above zero (zero would retry without waiting) and
    /// `max_interval` may not be shorter than it.
    pub fn check_intervals(&self, id: &ComponentId) -> Result<(), ConfigError> {
        if self.enabled && self.initial_interval.is_zero() {
            return Err(err(
                id,
                "retry_on_failure::initial_interval",
                "must be greater than 0 when retry_on_failure is enabled",
            ));
        }
        if self.enabled && self.max_interval < self.initial_interval {
            return Err(err(
                id,
                "retry_on_failure::max_interval",
                format!(
                    "{:?} is less than initial_interval ({:?})",
                    self.max_interval, self.initial_interval
                ),
            ));
        }
        Ok(())
    }
}

/// The stanza `operators`, built; every operator's error is reported, each with its key path.
pub fn build_operators(id: &ComponentId, ops: &[OperatorConfig]) -> Result<Pipeline, ConfigError> {
    Pipeline::build_all(ops).map_err(|errors| {
        let all = errors.into_iter().map(|(p, m)| err(id, &p, m)).collect();
        ConfigError::join(all).unwrap_or_else(|| err(id, "operators", "cannot be built"))
    })
}

/// How records are split out of the byte stream.
#[derive(Debug, Clone)]
pub enum Split {
    Lines,
    Start(regex::bytes::Regex),
    End(regex::bytes::Regex),
}

/// The text encoding of files.
#[derive(Debug, Clone, Copy)]
pub enum Encoding {
    Utf8,
    /// Bytes as they are: the body is a bytes value.
    Nop,
    /// A single-byte encoding decoded through encoding_rs.
    Other(&'static encoding_rs::Encoding),
}

/// The config after checking: everything the receiver needs, compiled.
#[derive(Debug, Clone)]
pub struct Checked {
    pub raw: FilelogConfig,
    pub include: Vec<glob::Pattern>,
    pub exclude: Vec<glob::Pattern>,
    pub start_at_beginning: bool,
    pub split: Split,
    pub encoding: Encoding,
    pub pipeline: Pipeline,
    pub storage: Option<ComponentId>,
}

fn err(id: &ComponentId, path: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::component(ComponentKind::Receiver, id, path, msg)
}

/// Decodes and checks `receivers::filelog`.
pub fn load(id: &ComponentId, value: &Value) -> Result<Checked, ConfigError> {
    check(id, decode(ComponentKind::Receiver, id, value)?)
}

/// Checks a decoded section and prepares what the component runs with.
pub fn check(id: &ComponentId, raw: FilelogConfig) -> Result<Checked, ConfigError> {
    if raw.include.is_empty() {
        return Err(err(
            id,
            "include",
            "required: at least one glob of files to read",
        ));
    }
    let globs = |key: &str, list: &[String]| -> Result<Vec<glob::Pattern>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, g)| {
                glob::Pattern::new(g).map_err(|e| {
                    err(
                        id,
                        &format!("{key}::{i}"),
                        format!("invalid glob {g:?}: {e}"),
                    )
                })
            })
            .collect()
    };
    let include = globs("include", &raw.include)?;
    let exclude = globs("exclude", &raw.exclude)?;
    let start_at_beginning = match raw.start_at.as_str() {
        "end" => false,
        "beginning" => true,
        o => {
            return Err(err(
                id,
                "start_at",
                format!("invalid value {o:?}: expected end or beginning"),
            ))
        }
    };
    if raw.delete_after_read && !start_at_beginning {
        return Err(err(id, "delete_after_read", "requires start_at: beginning, or lines written before the first poll would be deleted unread"));
    }
    if raw.fingerprint_size.0 < 16 {
        return Err(err(
            id,
            "fingerprint_size",
            format!(
                "{} bytes is too small: at least 16 are needed to tell files apart",
                raw.fingerprint_size.0
            ),
        ));
    }
    if raw.max_log_size.0 == 0 {
        return Err(err(id, "max_log_size", "must be greater than 0"));
    }
    if raw.poll_interval.is_zero() {
        return Err(err(id, "poll_interval", "must be greater than 0"));
    }
    // Keys otelcol has but vigil does not act on yet are refused, never silently ignored.
    if raw.max_batches != 0 {
        return Err(err(
            id,
            "max_batches",
            "not supported yet: leave it unset (0)",
        ));
    }
    if raw.acquire_fs_lock {
        return Err(err(
            id,
            "acquire_fs_lock",
            "true is not built in vigil: files are read without an advisory lock; remove the key",
        ));
    }
    if !raw.compression.is_empty() {
        return Err(err(
            id,
            "compression",
            format!(
                "{:?} is not built in vigil: only plain files are read (leave compression unset)",
                raw.compression
            ),
        ));
    }
    if raw.header.as_ref().is_some_and(|v| !v.is_null()) {
        // otelcol also needs the filelog.allowHeaderMetadataParsing feature gate for it.
        return Err(err(
            id,
            "header",
            "header metadata parsing is not built in vigil; remove the section",
        ));
    }
    if raw.ordering_criteria.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(err(
            id,
            "ordering_criteria",
            "not built in vigil: every matching file is read; remove the section, or narrow \
             include/exclude (exclude_older_than) instead",
        ));
    }
    raw.retry_on_failure.check_intervals(id)?;
    if raw.multiline.as_ref().is_some_and(|m| m.omit_pattern) {
        return Err(err(id, "multiline::omit_pattern", "not supported yet"));
    }
    let split = match &raw.multiline {
        None => Split::Lines,
        Some(m) => m.split(id)?,
    };
    let encoding = match raw.encoding.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "" => Encoding::Utf8,
        "nop" => Encoding::Nop,
        other => match encoding_rs::Encoding::for_label(other.as_bytes()) {
            Some(e) if e.is_single_byte() || e == encoding_rs::UTF_8 => {
                if e == encoding_rs::UTF_8 { Encoding::Utf8 } else { Encoding::Other(e) }
            }
            Some(_) => return Err(err(id, "encoding", format!("encoding {other:?} is not supported: only UTF-8, nop, ASCII and single-byte encodings (latin1, windows-1252, …) are"))),
            None => return Err(err(id, "encoding", format!("unknown encoding {other:?}"))),
        },
    };
    let pipeline = build_operators(id, &raw.operators)?;
    let storage = raw
        .storage
        .as_deref()
        .map(|s| ComponentId::parse(s).map_err(|e| err(id, "storage", e)))
        .transpose()?;
    Ok(Checked {
        raw,
        include,
        exclude,
        start_at_beginning,
        split,
        encoding,
        pipeline,
        storage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ComponentId {
        ComponentId::parse("filelog/x").unwrap()
    }

    fn yaml(s: &str) -> Value {
        serde_saphyr::from_str(s).unwrap()
    }

    #[test]
    fn defaults_match_otelcol() {
        let c = load(&id(), &yaml("include: [/var/log/*.log]")).unwrap();
        assert_eq!(c.raw.poll_interval, Duration::from_millis(200));
        assert_eq!(c.raw.fingerprint_size, ByteSize(1000));
        assert_eq!(c.raw.max_log_size, ByteSize(1 << 20));
        assert!(!c.start_at_beginning);
        assert!(c.raw.include_file_name && !c.raw.include_file_path);
        assert_eq!(parse_size("1KiB").unwrap(), 1024);
    }

    #[test]
    fn fileconsumer_keys_are_read_and_unbuilt_ones_refused() {
        let c = load(
            &id(),
            &yaml(
                "include: [/var/log/*.log]\nexclude_older_than: 24h\ninclude_file_owner_name: true\n\
                 include_file_owner_group_name: true\ninclude_file_record_number: true\n\
                 include_file_record_offset: true\npreserve_leading_whitespaces: true\n\
                 preserve_trailing_whitespaces: true\npolls_to_archive: 3\nacquire_fs_lock: false\n\
                 compression: \"\"\n",
            ),
        )
        .unwrap();
        assert_eq!(c.raw.exclude_older_than, Duration::from_secs(86400));
        assert!(c.raw.include_file_record_number && c.raw.include_file_owner_group_name);
        for (text, key) in [
            ("acquire_fs_lock: true", "acquire_fs_lock"),
            ("compression: gzip", "compression"),
            ("header: {pattern: '^#'}", "header"),
            ("ordering_criteria: {top_n: 1}", "ordering_criteria"),
        ] {
            let e = load(&id(), &yaml(&format!("include: [/x]\n{text}")))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains("not built"), "{e}");
        }
    }
}
