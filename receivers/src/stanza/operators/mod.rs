//! stanza's operators, shared by `filelog`, `syslog`, `tcplog`, `udplog` and `journald`: the parsers
//! `json_parser`, `json_array_parser`, `regex_parser`, `key_value_parser`, `csv_parser`,
//! `syslog_parser`, `uri_parser`, `time_parser` (also `timestamp`), `severity_parser` (also
//! `severity`), `trace_parser`, `scope_name_parser` and `container`; the transformers `move`,
//! `copy`, `remove`, `add`, `flatten`, `retain`, `assign_keys`, `unquote`, `regex_replace`,
//! `recombine`, `filter` and `noop`; `router`; and the outputs `stdout` and `drop_output`. Types
//! otelcol-contrib has that vigil does not build (`file_output`, `sanitize_utf8`) are refused by
//! name. The list is compiled once at config load into a `Pipeline` (fields parsed, regexes and
//! layouts compiled, outputs resolved to indices), so that the per-line path only runs
//! already-checked steps.

pub mod container;
pub mod expr;
pub mod parsers;
pub mod recombine;
pub mod severity;
pub mod time;

use crate::stanza::entry::{json_to_value, Entry, Field, Root};
use container::{ContainerOp, ContainerState, Format};
use expr::Expr;
use recombine::{RecombineOp, RecombineState};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value as Json;
use severity::SeverityMap;
use std::collections::{BTreeMap, HashMap};
use time::TimeParser;
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{AnyValue, KeyValue, KeyValueList};

/// The ids of a list of operators, as stanza numbers them: an operator without an `id` (or with its
/// type as id) is called by its type, and the second and later ones of a type get a number (`move`,
/// `move1`, `move2`, …), skipping any id the list already uses.
fn default_ids(configs: &[OperatorConfig], explicit: &[Option<&str>]) -> Vec<String> {
    let mut next: HashMap<&str, usize> = HashMap::new();
    let mut ids: Vec<String> = Vec::with_capacity(configs.len());
    for (c, given) in configs.iter().zip(explicit) {
        let t = c.type_name();
        if given.is_some_and(|g| g != t) {
            ids.push(given.unwrap_or(t).to_string());
            continue;
        }
        let n = next.entry(t).or_insert(0);
        if *n == 0 {
            *n = 1;
            ids.push(t.to_string());
            continue;
        }
        let taken = |candidate: &str| explicit.iter().flatten().any(|e| *e == candidate);
        let mut candidate = format!("{t}{n}");
        while taken(&candidate) {
            *n += 1;
            candidate = format!("{t}{n}");
        }
        *n += 1;
        ids.push(candidate);
    }
    ids
}

/// One operator as written in config; `type` picks the variant.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OperatorConfig {
    JsonParser(ParserConfig),
    RegexParser(RegexParserConfig),
    /// Stanza's `time_parser` is the same operator under its upstream name.
    #[serde(alias = "time_parser")]
    Timestamp(TimestampOpConfig),
    /// Stanza's `severity_parser` likewise.
    #[serde(alias = "severity_parser")]
    Severity(SeverityOpConfig),
    Move(MoveConfig),
    Remove(RemoveConfig),
    Add(AddConfig),
    Router(RouterConfig),
    Container(ContainerConfig),
    Recombine(RecombineConfig),
    Filter(FilterConfig),
    Flatten(FlattenConfig),
    RegexReplace(RegexReplaceConfig),
    Noop(NoopConfig),
    Retain(RetainConfig),
    KeyValueParser(KeyValueParserConfig),
    CsvParser(CsvParserConfig),
    SyslogParser(SyslogParserConfig),
    UriParser(UriParserConfig),
    JsonArrayParser(JsonArrayParserConfig),
    TraceParser(TraceParserConfig),
    ScopeNameParser(ScopeNameParserConfig),
    Copy(CopyConfig),
    AssignKeys(AssignKeysConfig),
    Unquote(UnquoteConfig),
    Stdout(OutputOpConfig),
    DropOutput(OutputOpConfig),
    FileOutput(NotBuilt<FileOutputType>),
    #[serde(rename = "sanitize_utf8")]
    SanitizeUtf8(NotBuilt<SanitizeUtf8Type>),
}

impl OperatorConfig {
    /// The `type` as written in config, which is also the operator's default id.
    pub fn type_name(&self) -> &'static str {
        match self {
            OperatorConfig::JsonParser(_) => "json_parser",
            OperatorConfig::RegexParser(_) => "regex_parser",
            OperatorConfig::Timestamp(_) => "timestamp",
            OperatorConfig::Severity(_) => "severity",
            OperatorConfig::Move(_) => "move",
            OperatorConfig::Remove(_) => "remove",
            OperatorConfig::Add(_) => "add",
            OperatorConfig::Router(_) => "router",
            OperatorConfig::Container(_) => "container",
            OperatorConfig::Recombine(_) => "recombine",
            OperatorConfig::Filter(_) => "filter",
            OperatorConfig::Flatten(_) => "flatten",
            OperatorConfig::RegexReplace(_) => "regex_replace",
            OperatorConfig::Noop(_) => "noop",
            OperatorConfig::Retain(_) => "retain",
            OperatorConfig::KeyValueParser(_) => "key_value_parser",
            OperatorConfig::CsvParser(_) => "csv_parser",
            OperatorConfig::SyslogParser(_) => "syslog_parser",
            OperatorConfig::UriParser(_) => "uri_parser",
            OperatorConfig::JsonArrayParser(_) => "json_array_parser",
            OperatorConfig::TraceParser(_) => "trace_parser",
            OperatorConfig::ScopeNameParser(_) => "scope_name_parser",
            OperatorConfig::Copy(_) => "copy",
            OperatorConfig::AssignKeys(_) => "assign_keys",
            OperatorConfig::Unquote(_) => "unquote",
            OperatorConfig::Stdout(_) => "stdout",
            OperatorConfig::DropOutput(_) => "drop_output",
            OperatorConfig::FileOutput(_) => FileOutputType::NAME,
            OperatorConfig::SanitizeUtf8(_) => SanitizeUtf8Type::NAME,
        }
    }

    /// The `id` the config gives, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            OperatorConfig::JsonParser(c) => c.id.as_deref(),
            OperatorConfig::RegexParser(c) => c.id.as_deref(),
            OperatorConfig::Timestamp(c) => c.id.as_deref(),
            OperatorConfig::Severity(c) => c.id.as_deref(),
            OperatorConfig::Move(c) => c.id.as_deref(),
            OperatorConfig::Remove(c) => c.id.as_deref(),
            OperatorConfig::Add(c) => c.id.as_deref(),
            OperatorConfig::Router(c) => c.id.as_deref(),
            OperatorConfig::Container(c) => c.id.as_deref(),
            OperatorConfig::Recombine(c) => c.id.as_deref(),
            OperatorConfig::Filter(c) => c.id.as_deref(),
            OperatorConfig::Flatten(c) => c.id.as_deref(),
            OperatorConfig::RegexReplace(c) => c.id.as_deref(),
            OperatorConfig::Noop(c) => c.id.as_deref(),
            OperatorConfig::Retain(c) => c.id.as_deref(),
            OperatorConfig::KeyValueParser(c) => c.id.as_deref(),
            OperatorConfig::CsvParser(c) => c.id.as_deref(),
            OperatorConfig::SyslogParser(c) => c.id.as_deref(),
            OperatorConfig::UriParser(c) => c.id.as_deref(),
            OperatorConfig::JsonArrayParser(c) => c.id.as_deref(),
            OperatorConfig::TraceParser(c) => c.id.as_deref(),
            OperatorConfig::ScopeNameParser(c) => c.id.as_deref(),
            OperatorConfig::Copy(c) => c.id.as_deref(),
            OperatorConfig::AssignKeys(c) => c.id.as_deref(),
            OperatorConfig::Unquote(c) => c.id.as_deref(),
            OperatorConfig::Stdout(c) | OperatorConfig::DropOutput(c) => c.id.as_deref(),
            OperatorConfig::FileOutput(_) | OperatorConfig::SanitizeUtf8(_) => None,
        }
    }
}

/// Keys every operator has.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    /// `send` (default), `send_quiet`, `drop`, `drop_quiet`.
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: Option<String>,
    pub parse_to: Option<String>,
    pub timestamp: Option<TimestampConfig>,
    pub severity: Option<SeverityConfig>,
    /// The parsed field that becomes the body (stanza's parser `body`).
    pub body: Option<String>,
    pub trace: Option<TraceConfig>,
    pub scope_name: Option<ScopeNameConfig>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: Option<String>,
    pub parse_to: Option<String>,
    pub regex: String,
    /// Accepted for otelcol compatibility; compiled regexes need no cache.
    pub cache: Option<Json>,
    pub timestamp: Option<TimestampConfig>,
    pub severity: Option<SeverityConfig>,
    /// The parsed field that becomes the body (stanza's parser `body`).
    pub body: Option<String>,
    pub trace: Option<TraceConfig>,
    pub scope_name: Option<ScopeNameConfig>,
}

impl RegexParserConfig {
    /// The keys it shares with every parser.
    fn parser(&self) -> ParserConfig {
        ParserConfig {
            id: self.id.clone(),
            output: self.output.clone(),
            on_error: self.on_error.clone(),
            if_: self.if_.clone(),
            parse_from: self.parse_from.clone(),
            parse_to: self.parse_to.clone(),
            timestamp: self.timestamp.clone(),
            severity: self.severity.clone(),
            body: self.body.clone(),
            trace: self.trace.clone(),
            scope_name: self.scope_name.clone(),
        }
    }
}

/// A parser's `trace:` block: where the trace id, span id and flags are read from, as hex.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TraceConfig {
    pub trace_id: Option<ParseFrom>,
    pub span_id: Option<ParseFrom>,
    pub trace_flags: Option<ParseFrom>,
}

/// `{parse_from: field}`; an absent `parse_from` means the block's default field.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParseFrom {
    pub parse_from: Option<String>,
}

/// A parser's `scope_name:` block: the field that names the instrumentation scope.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeNameConfig {
    pub parse_from: String,
}

/// A parser's `timestamp:` block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    pub parse_from: String,
    #[serde(default = "strptime")]
    pub layout_type: String,
    #[serde(default)]
    pub layout: String,
    pub location: Option<String>,
}

fn strptime() -> String {
    "strptime".into()
}

/// A parser's `severity:` block.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityConfig {
    pub parse_from: String,
    #[serde(default)]
    pub mapping: BTreeMap<String, Json>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub overwrite_text: bool,
}

fn default_preset() -> String {
    "default".into()
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampOpConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: String,
    #[serde(default = "strptime")]
    pub layout_type: String,
    #[serde(default)]
    pub layout: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityOpConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: String,
    #[serde(default)]
    pub mapping: BTreeMap<String, Json>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default)]
    pub overwrite_text: bool,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MoveConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AddConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
    pub value: Json,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub id: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Where entries that match no route go; absent: they are dropped, as in stanza.
    pub default: Option<String>,
    pub on_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub expr: String,
    pub output: String,
    #[serde(default)]
    pub attributes: HashMap<String, Json>,
}

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    #[serde(default)]
    pub format: String,
    pub add_metadata_from_filepath: Option<bool>,
    /// Largest joined record in bytes; 0 means no limit.
    #[serde(default)]
    pub max_log_size: Option<Json>,
    pub parse_from: Option<String>,
}

/// `recombine`, with stanza's defaults.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RecombineConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    /// An expression true for the first entry of a record; exactly one of this and `is_last_entry`.
    pub is_first_entry: Option<String>,
    pub is_last_entry: Option<String>,
    /// The field whose text is joined; required.
    pub combine_field: Option<String>,
    #[serde(default = "newline")]
    pub combine_with: String,
    /// Entries in one record at most (0: no limit).
    #[serde(default = "thousand")]
    pub max_batch_size: usize,
    /// Entries joined before any entry matched (0: no limit).
    #[serde(default = "hundred")]
    pub max_unmatched_batch_size: usize,
    /// Sources with an open record at most.
    #[serde(default = "thousand")]
    pub max_sources: usize,
    /// `oldest` or `newest`: whose other fields the joined record keeps.
    #[serde(default = "oldest")]
    pub overwrite_with: String,
    #[serde(default = "five_seconds", with = "vigil_core::config::duration")]
    pub force_flush_period: std::time::Duration,
    #[serde(default = "file_path_field")]
    pub source_identifier: String,
    /// Bytes in one joined field at most (0: no limit).
    #[serde(default)]
    pub max_log_size: crate::stanza::ByteSize,
}

fn newline() -> String {
    "\n".into()
}
fn thousand() -> usize {
    1000
}
fn hundred() -> usize {
    100
}
fn oldest() -> String {
    "oldest".into()
}
fn five_seconds() -> std::time::Duration {
    std::time::Duration::from_secs(5)
}
fn file_path_field() -> String {
    "attributes[\"log.file.path\"]".into()
}
fn one() -> f64 {
    1.0
}

/// `filter`: drops entries for which `expr` is true, each with probability `drop_ratio`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub expr: String,
    #[serde(default = "one")]
    pub drop_ratio: f64,
}

/// `flatten`: moves a map's keys up beside it, one level.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
}

/// `regex_replace`: replaces every match of `regex` (or the named `regex_name`) in a string field.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegexReplaceConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
    #[serde(default)]
    pub regex: String,
    /// `ansi_control_sequences`.
    #[serde(default)]
    pub regex_name: String,
    /// The replacement; `$1` and `${name}` name groups.
    #[serde(default)]
    pub replace_with: String,
}

/// `noop`: passes entries on unchanged (a target for `output` and routes).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoopConfig {
    pub id: Option<String>,
    pub output: Option<String>,
}

/// `retain`: keeps the listed fields and removes the rest of the body, attributes or resource
/// they are in.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetainConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub fields: Vec<String>,
}

/// Declares a parser's config: the keys every stanza parser has (`helper.ParserConfig`: `id`,
/// `output`, `on_error`, `if`, `parse_from`, `parse_to`, `body` and the `timestamp`, `severity`,
/// `trace` and `scope_name` blocks) and its own. serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, hence a macro rather than an embedded struct.
macro_rules! parser_config {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub id: Option<String>,
            pub output: Option<String>,
            pub on_error: Option<String>,
            #[serde(rename = "if")]
            pub if_: Option<String>,
            pub parse_from: Option<String>,
            pub parse_to: Option<String>,
            pub timestamp: Option<TimestampConfig>,
            pub severity: Option<SeverityConfig>,
            pub body: Option<String>,
            pub trace: Option<TraceConfig>,
            pub scope_name: Option<ScopeNameConfig>,
            $($(#[$fm])* pub $f: $t,)*
        }

        impl $name {
            /// The keys it shares with every parser.
            fn parser(&self) -> ParserConfig {
                ParserConfig {
                    id: self.id.clone(),
                    output: self.output.clone(),
                    on_error: self.on_error.clone(),
                    if_: self.if_.clone(),
                    parse_from: self.parse_from.clone(),
                    parse_to: self.parse_to.clone(),
                    timestamp: self.timestamp.clone(),
                    severity: self.severity.clone(),
                    body: self.body.clone(),
                    trace: self.trace.clone(),
                    scope_name: self.scope_name.clone(),
                }
            }
        }
    };
}

parser_config!(
    /// `key_value_parser`: `key=value` pairs, values as strings.
    KeyValueParserConfig {
        /// Between a key and its value; default `=`.
        delimiter: Option<String>,
        /// Between pairs; default one space. Quotes (`"` or `'`) keep a delimiter inside a value.
        pair_delimiter: Option<String>,
    }
);

parser_config!(
    /// `csv_parser`: one delimited line, named by `header` (or by the attribute `header_attribute`).
    CsvParserConfig {
        header: Option<String>,
        /// Splits `header`; default the `delimiter`.
        header_delimiter: Option<String>,
        header_attribute: Option<String>,
        /// One character; default `,`.
        delimiter: Option<String>,
        #[serde(default)]
        lazy_quotes: bool,
        /// Split on the delimiter only, quotes being ordinary characters.
        #[serde(default)]
        ignore_quotes: bool,
    }
);

parser_config!(
    /// `syslog_parser`: RFC 5424 or RFC 3164 messages, with the keys of otelcol's syslog receiver.
    SyslogParserConfig {
        /// `rfc5424` or `rfc3164`; required.
        protocol: Option<String>,
        /// The zone of RFC 3164 times; default `UTC`.
        location: Option<String>,
        #[serde(default)]
        enable_octet_counting: bool,
        #[serde(default)]
        allow_skip_pri_header: bool,
        /// `LF` or `NUL` (rfc5424 only).
        non_transparent_framing_trailer: Option<String>,
        /// With octet counting, the longest message (0: no limit).
        #[serde(default)]
        max_octets: usize,
    }
);

parser_config!(
    /// `uri_parser`: an absolute URI, a request path or a `?query` string.
    UriParserConfig {}
);

parser_config!(
    /// `json_array_parser`: a JSON array as a list, or as a map with `header`. otelcol keeps it
    /// behind the `logs.jsonParserArray` feature gate; vigil builds it without one.
    JsonArrayParserConfig {
        /// Comma-separated names for the elements.
        header: Option<String>,
    }
);

/// `trace_parser`: the trace id, span id and flags from hex fields (default `body.trace_id`,
/// `body.span_id`, `body.trace_flags`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TraceParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub trace_id: Option<ParseFrom>,
    pub span_id: Option<ParseFrom>,
    pub trace_flags: Option<ParseFrom>,
}

/// `scope_name_parser`: the instrumentation scope's name from a string field (default `body`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeNameParserConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub parse_from: Option<String>,
}

/// `copy`: copies `from` to `to`, leaving `from` in place.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub from: String,
    pub to: String,
}

/// `assign_keys`: turns the list at `field` into a map whose keys are `keys`, in order.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssignKeysConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
    pub keys: Vec<String>,
}

/// `unquote`: Go's strconv.Unquote on a string field.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct UnquoteConfig {
    pub id: Option<String>,
    pub output: Option<String>,
    pub on_error: Option<String>,
    #[serde(rename = "if")]
    pub if_: Option<String>,
    pub field: String,
}

/// `stdout` and `drop_output`: output operators, whose only key is `id`. An entry that reaches
/// one leaves the pipeline there (printed as a JSON line, or dropped) and is not sent on.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputOpConfig {
    pub id: Option<String>,
}

/// An otelcol-contrib operator type vigil does not build; see [`NotBuilt`].
pub trait NotBuiltType {
    const NAME: &'static str;
    const WHY: &'static str;
}

/// Refuses an operator type by name when the config is decoded, with what to use instead.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotBuilt<T>(#[serde(skip)] std::marker::PhantomData<T>);

impl<'de, T: NotBuiltType> Deserialize<'de> for NotBuilt<T> {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(format!(
            "operator type {:?} is not built in vigil: {}",
            T::NAME,
            T::WHY
        )))
    }
}

#[derive(Debug, Clone)]
pub struct FileOutputType;
impl NotBuiltType for FileOutputType {
    const NAME: &'static str = "file_output";
    const WHY: &'static str =
        "entries go on to the collector pipeline; use the file exporter, or stdout to debug";
}

#[derive(Debug, Clone)]
pub struct SanitizeUtf8Type;
impl NotBuiltType for SanitizeUtf8Type {
    const NAME: &'static str = "sanitize_utf8";
    const WHY: &'static str =
        "remove the operator (the receivers decode input by their `encoding` key)";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnError {
    Send,
    SendQuiet,
    Drop,
    DropQuiet,
}

#[derive(Debug, Clone, Copy)]
enum Next {
    Op(usize),
    Emit,
    Drop,
}

#[derive(Debug, Clone)]
struct TsStep {
    from: Field,
    parser: TimeParser,
}

#[derive(Debug, Clone)]
struct SevStep {
    from: Field,
    map: SeverityMap,
    overwrite_text: bool,
}

#[derive(Debug, Clone)]
enum Kind {
    Json {
        from: Field,
        to: Field,
    },
    Regex {
        from: Field,
        to: Field,
        re: Regex,
    },
    Timestamp,
    Severity,
    Move {
        from: Field,
        to: Field,
    },
    Remove {
        field: Field,
    },
    Add {
        field: Field,
        value: Value,
    },
    Router {
        routes: Vec<(Expr, Vec<KeyValue>, Next)>,
        default: Next,
    },
    Container {
        from: Field,
        op: ContainerOp,
    },
    Recombine(Box<RecombineOp>),
    Filter {
        expr: Expr,
        /// Out of 1000: a matching entry is dropped when a draw below 1000 falls under it.
        cutoff: u64,
    },
    Flatten {
        field: Field,
    },
    RegexReplace {
        field: Field,
        re: Regex,
        with: String,
    },
    Noop,
    Retain {
        fields: Vec<Field>,
        body: bool,
        attributes: bool,
        resource: bool,
    },
    KeyValue {
        from: Field,
        to: Field,
        delim: String,
        pair_delim: String,
    },
    Csv {
        from: Field,
        to: Field,
        csv: Box<CsvOp>,
    },
    Syslog {
        from: Field,
        to: Field,
        op: Box<parsers::SyslogOp>,
        /// No `timestamp` block: the header's time is the entry's, as otelcol's default.
        header_time: bool,
    },
    Uri {
        from: Field,
        to: Field,
    },
    JsonArray {
        from: Field,
        to: Field,
        header: Option<Vec<String>>,
    },
    Copy {
        from: Field,
        to: Field,
    },
    AssignKeys {
        field: Field,
        keys: Vec<String>,
    },
    Unquote {
        field: Field,
    },
    /// Prints the entry as a JSON line; it goes no further.
    Stdout,
    DropOutput,
}

/// `csv_parser`, compiled.
#[derive(Debug, Clone)]
struct CsvOp {
    /// `header`, split; `None` reads the header from `header_attribute` on each entry.
    header: Option<Vec<String>>,
    header_attribute: String,
    header_delim: char,
    delim: char,
    lazy: bool,
    ignore_quotes: bool,
}

impl CsvOp {
    fn parse(&self, e: &Entry, text: &str) -> Result<Value, String> {
        let dynamic;
        let header = match &self.header {
            Some(h) => h,
            None => {
                let h = vigil_core::attrs::get_str(&e.attributes, &self.header_attribute)
                    .ok_or_else(|| {
                        format!(
                            "failed to read dynamic header attribute {:?}",
                            self.header_attribute
                        )
                    })?;
                dynamic = h
                    .split(self.header_delim)
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                &dynamic
            }
        };
        let fields = if self.ignore_quotes {
            text.split(self.delim).map(str::to_string).collect()
        } else {
            parsers::csv_row(text, self.delim, self.lazy)?
        };
        parsers::map_headers(header, fields)
    }
}

#[derive(Debug, Clone)]
struct TraceStep {
    trace_id: Field,
    span_id: Field,
    flags: Field,
}

#[derive(Debug, Clone)]
struct Op {
    id: String,
    kind: Kind,
    cond: Option<Expr>,
    on_error: OnError,
    ts: Option<TsStep>,
    sev: Option<SevStep>,
    /// A parser's `body`: the field copied into the body once parsing is done.
    body: Option<Field>,
    trace: Option<TraceStep>,
    /// A parser's `scope_name::parse_from`.
    scope: Option<Field>,
    next: Next,
}

/// The compiled operator list.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    ops: Vec<Op>,
}

/// Per-source state of stateful operators (partial container lines), kept by each file reader.
#[derive(Debug, Default)]
pub struct PipelineState {
    container: HashMap<usize, ContainerState>,
    recombine: HashMap<usize, RecombineState>,
    /// `filter`'s draws (splitmix64): sampling needs no cryptographic randomness.
    rng: u64,
}

impl PipelineState {
    /// The lowest file offset an operator still holds unfinished input from.
    pub fn held_from(&self) -> Option<u64> {
        let c = self.container.values().filter_map(|c| c.held_from());
        let r = self.recombine.values().filter_map(|r| r.held_from());
        c.chain(r).min()
    }

    /// A draw in 0..1000.
    fn draw(&mut self) -> u64 {
        if self.rng == 0 {
            self.rng = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1;
        }
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % 1000
    }
}

fn field(path: &str, key: &str, s: &str) -> Result<Field, (String, String)> {
    Field::parse(s).map_err(|e| (format!("{path}::{key}"), e))
}

fn on_error(path: &str, s: &Option<String>) -> Result<OnError, (String, String)> {
    match s.as_deref() {
        None | Some("send") => Ok(OnError::Send),
        Some("send_quiet") => Ok(OnError::SendQuiet),
        Some("drop") => Ok(OnError::Drop),
        Some("drop_quiet") => Ok(OnError::DropQuiet),
        Some(o) => Err((
            format!("{path}::on_error"),
            format!("unknown on_error {o:?}: expected send, send_quiet, drop or drop_quiet"),
        )),
    }
}

fn cond(path: &str, s: &Option<String>) -> Result<Option<Expr>, (String, String)> {
    s.as_deref()
        .map(|x| Expr::parse(x).map_err(|e| (format!("{path}::if"), e)))
        .transpose()
}

fn body_step(path: &str, b: &Option<String>) -> Result<Option<Field>, (String, String)> {
    b.as_deref().map(|s| field(path, "body", s)).transpose()
}

fn scope_step(path: &str, s: &Option<ScopeNameConfig>) -> Result<Option<Field>, (String, String)> {
    s.as_ref()
        .map(|s| field(path, "scope_name::parse_from", &s.parse_from))
        .transpose()
}

fn trace_step(path: &str, t: &Option<TraceConfig>) -> Result<Option<TraceStep>, (String, String)> {
    let Some(t) = t else { return Ok(None) };
    let one = |key: &str, c: &Option<ParseFrom>| {
        let default = format!("body.{key}");
        let from = c
            .as_ref()
            .and_then(|c| c.parse_from.as_deref())
            .unwrap_or(&default);
        field(path, &format!("trace::{key}::parse_from"), from)
    };
    Ok(Some(TraceStep {
        trace_id: one("trace_id", &t.trace_id)?,
        span_id: one("span_id", &t.span_id)?,
        flags: one("trace_flags", &t.trace_flags)?,
    }))
}

/// Reads a hex field for a parser's `trace` block; absent is fine, as in stanza.
fn hex_field(e: &Entry, f: &Field, what: &str) -> Result<Option<Vec<u8>>, String> {
    let text = match f.get(e) {
        None => return Ok(None),
        Some(Value::StringValue(s)) => s.clone(),
        Some(other) => vigil_core::attrs::value_to_string(other),
    };
    hex::decode(text.trim())
        .map(Some)
        .map_err(|x| format!("trace: {what} {text:?} is not hex: {x}"))
}

/// stanza's predefined `regex_name`s.
fn named_regex(name: &str) -> Option<&'static str> {
    match name {
        // ANSI CSI escape sequences (colours, cursor moves), as stanza defines them.
        "ansi_control_sequences" => Some(r"\x1B\[[\x30-\x3F]*[\x20-\x2F]*[\x40-\x7E]"),
        _ => None,
    }
}

fn ts_step(path: &str, t: &Option<TimestampConfig>) -> Result<Option<TsStep>, (String, String)> {
    let Some(t) = t else { return Ok(None) };
    Ok(Some(TsStep {
        from: field(path, "timestamp::parse_from", &t.parse_from)?,
        parser: TimeParser::new(&t.layout_type, &t.layout, t.location.as_deref())
            .map_err(|e| (format!("{path}::timestamp"), e))?,
    }))
}

fn sev_step(path: &str, s: &Option<SeverityConfig>) -> Result<Option<SevStep>, (String, String)> {
    let Some(s) = s else { return Ok(None) };
    Ok(Some(SevStep {
        from: field(path, "severity::parse_from", &s.parse_from)?,
        map: SeverityMap::new(&s.preset, &s.mapping)
            .map_err(|e| (format!("{path}::severity"), e))?,
        overwrite_text: s.overwrite_text,
    }))
}

/// An operator with no parser steps, its `next` set when the list is linked.
fn plain(kind: Kind, cond: Option<Expr>, on_error: OnError) -> Op {
    Op {
        id: String::new(),
        kind,
        cond,
        on_error,
        ts: None,
        sev: None,
        body: None,
        trace: None,
        scope: None,
        next: Next::Emit,
    }
}

/// A parser operator: `kind` from its `parse_from` (default `body`) and `parse_to` (default
/// `attributes`), then the steps every parser has, checked in this order.
fn parser(
    p: &str,
    c: &ParserConfig,
    kind: impl FnOnce(Field, Field) -> Kind,
) -> Result<Op, (String, String)> {
    let from = field(p, "parse_from", c.parse_from.as_deref().unwrap_or("body"))?;
    let to = field(p, "parse_to", c.parse_to.as_deref().unwrap_or("attributes"))?;
    if c.body.is_some() && to.root == Root::Body && to.keys.is_empty() {
        return Err((
            format!("{p}::parse_to"),
            "`parse_to: body` is not allowed when `body` is configured".into(),
        ));
    }
    Ok(Op {
        id: String::new(),
        kind: kind(from, to),
        cond: cond(p, &c.if_)?,
        on_error: on_error(p, &c.on_error)?,
        ts: ts_step(p, &c.timestamp)?,
        sev: sev_step(p, &c.severity)?,
        body: body_step(p, &c.body)?,
        trace: trace_step(p, &c.trace)?,
        scope: scope_step(p, &c.scope_name)?,
        next: Next::Emit,
    })
}

/// The text a parser reads, as stanza's ParseWith: a missing field fails the entry.
fn source<'a>(e: &'a Entry, from: &Field) -> Result<&'a str, String> {
    match from.get(e) {
        Some(Value::StringValue(s)) => Ok(s),
        Some(_) => Err(format!("{from} is not a string")),
        None => Err(format!(
            "entry is missing the expected parse_from field {from}"
        )),
    }
}

/// Sets a parser's result at `parse_to`; `attributes` or `resource` itself takes only a map.
fn set_parsed(e: &mut Entry, to: &Field, v: Value) -> Result<(), String> {
    if to.keys.is_empty() && to.root != Root::Body && !matches!(v, Value::KvlistValue(_)) {
        return Err(format!(
            "cannot set {to} to a value that is not a map: name a key below it"
        ));
    }
    to.set(e, v);
    Ok(())
}

/// `stdout`: one JSON line per entry, in stanza's entry layout.
fn print_entry(e: &Entry) {
    use std::io::Write;
    let time = |n: u64| {
        chrono::DateTime::from_timestamp_nanos(n as i64)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    let mut j = serde_json::Map::new();
    j.insert("observed_timestamp".into(), Json::String(time(e.observed)));
    j.insert("timestamp".into(), Json::String(time(e.timestamp)));
    j.insert("body".into(), parsers::to_json(&e.body));
    if !e.attributes.is_empty() {
        j.insert("attributes".into(), parsers::kvs_to_json(&e.attributes));
    }
    if !e.resource.is_empty() {
        j.insert("resource".into(), parsers::kvs_to_json(&e.resource));
    }
    j.insert("severity".into(), Json::from(e.severity_number));
    if !e.severity_text.is_empty() {
        j.insert(
            "severity_text".into(),
            Json::String(e.severity_text.clone()),
        );
    }
    if !e.scope_name.is_empty() {
        j.insert("scope_name".into(), Json::String(e.scope_name.clone()));
    }
    // A closed stdout is not the entry's fault: the line is lost, as a debug aid may be.
    let _ = writeln!(std::io::stdout().lock(), "{}", Json::Object(j));
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::String(s) => Value::StringValue(s.clone()),
        other => json_to_value(other.clone()),
    }
}

impl Pipeline {
    /// Compiles the `operators` list. An error is `(key path under operators, message)`.
    pub fn build(configs: &[OperatorConfig]) -> Result<Pipeline, (String, String)> {
        Pipeline::build_all(configs).map_err(|mut errors| errors.swap_remove(0))
    }

    /// [`Pipeline::build`], reporting every operator that does not compile rather than the first.
    pub fn build_all(configs: &[OperatorConfig]) -> Result<Pipeline, Vec<(String, String)>> {
        let mut ops = Vec::with_capacity(configs.len());
        let mut outputs: Vec<(Option<String>, Vec<String>, Option<String>)> = Vec::new();
        let mut errors = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let path = format!("operators::{i}");
            let p = path.as_str();
            let built = || -> Result<(Option<String>, Op), (String, String)> {
                Ok(match c {
                    OperatorConfig::JsonParser(c) => (
                        c.output.clone(),
                        parser(p, c, |from, to| Kind::Json { from, to })?,
                    ),
                    OperatorConfig::RegexParser(c) => {
                        let re = vigil_core::config::re2_regex(&c.regex)
                            .map_err(|e| (format!("{p}::regex"), format!("invalid regex: {e}")))?;
                        if re.capture_names().flatten().next().is_none() {
                            return Err((
                                format!("{p}::regex"),
                                "the regex has no named capture groups ((?P<name>...))".into(),
                            ));
                        }
                        (
                            c.output.clone(),
                            parser(p, &c.parser(), |from, to| Kind::Regex { from, to, re })?,
                        )
                    }
                    OperatorConfig::Timestamp(c) => {
                        let op =
                            plain(Kind::Timestamp, cond(p, &c.if_)?, on_error(p, &c.on_error)?);
                        let ts = TimestampConfig {
                            parse_from: c.parse_from.clone(),
                            layout_type: c.layout_type.clone(),
                            layout: c.layout.clone(),
                            location: c.location.clone(),
                        };
                        let ts = ts_step(p, &Some(ts))?;
                        (c.output.clone(), Op { ts, ..op })
                    }
                    OperatorConfig::Severity(c) => {
                        let op = plain(Kind::Severity, cond(p, &c.if_)?, on_error(p, &c.on_error)?);
                        let sev = SeverityConfig {
                            parse_from: c.parse_from.clone(),
                            mapping: c.mapping.clone(),
                            preset: c.preset.clone(),
                            overwrite_text: c.overwrite_text,
                        };
                        let sev = sev_step(p, &Some(sev))?;
                        (c.output.clone(), Op { sev, ..op })
                    }
                    OperatorConfig::Move(c) => (
                        c.output.clone(),
                        plain(
                            Kind::Move {
                                from: field(p, "from", &c.from)?,
                                to: field(p, "to", &c.to)?,
                            },
                            cond(p, &c.if_)?,
                            on_error(p, &c.on_error)?,
                        ),
                    ),
                    OperatorConfig::Remove(c) => (
                        c.output.clone(),
                        plain(
                            Kind::Remove {
                                field: field(p, "field", &c.field)?,
                            },
                            cond(p, &c.if_)?,
                            on_error(p, &c.on_error)?,
                        ),
                    ),
                    OperatorConfig::Add(c) => (
                        c.output.clone(),
                        plain(
                            Kind::Add {
                                field: field(p, "field", &c.field)?,
                                value: to_value(&c.value),
                            },
                            cond(p, &c.if_)?,
                            on_error(p, &c.on_error)?,
                        ),
                    ),
                    OperatorConfig::Router(c) => {
                        let mut routes = Vec::new();
                        for (j, r) in c.routes.iter().enumerate() {
                            let e = Expr::parse(&r.expr)
                                .map_err(|e| (format!("{p}::routes::{j}::expr"), e))?;
                            let attrs = r
                                .attributes
                                .iter()
                                .map(|(k, v)| KeyValue {
                                    key: k.clone(),
                                    value: Some(AnyValue {
                                        value: Some(to_value(v)),
                                    }),
                                    ..Default::default()
                                })
                                .collect();
                            routes.push((e, attrs, Next::Drop));
                        }
                        (
                            None,
                            plain(
                                Kind::Router {
                                    routes,
                                    default: Next::Drop,
                                },
                                None,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Container(c) => {
                        let max = match &c.max_log_size {
                            None => 0,
                            Some(Json::Number(n)) => n.as_u64().unwrap_or(0) as usize,
                            Some(Json::String(s)) => crate::stanza::parse_size(s)
                                .map_err(|e| (format!("{p}::max_log_size"), e))?,
                            Some(_) => {
                                return Err((
                                    format!("{p}::max_log_size"),
                                    "expected a size such as 1MiB".into(),
                                ))
                            }
                        };
                        (
                            c.output.clone(),
                            plain(
                                Kind::Container {
                                    from: field(
                                        p,
                                        "parse_from",
                                        c.parse_from.as_deref().unwrap_or("body"),
                                    )?,
                                    op: ContainerOp {
                                        format: Format::parse(&c.format)
                                            .map_err(|e| (format!("{p}::format"), e))?,
                                        add_metadata_from_filepath: c
                                            .add_metadata_from_filepath
                                            .unwrap_or(true),
                                        max_log_size: max,
                                    },
                                },
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Recombine(c) => {
                        let (first, src, key) = match (&c.is_first_entry, &c.is_last_entry) {
                            (Some(f), None) => (true, f, "is_first_entry"),
                            (None, Some(l)) => (false, l, "is_last_entry"),
                            (Some(_), Some(_)) => {
                                return Err((
                                    p.to_string(),
                                    "only one of is_first_entry and is_last_entry can be set"
                                        .into(),
                                ))
                            }
                            (None, None) => {
                                return Err((
                                    p.to_string(),
                                    "one of is_first_entry and is_last_entry must be set".into(),
                                ))
                            }
                        };
                        let expr = Expr::parse(src).map_err(|e| (format!("{p}::{key}"), e))?;
                        let Some(combine) = c.combine_field.as_deref() else {
                            return Err((
                                format!("{p}::combine_field"),
                                "required: the field whose text is joined, such as body".into(),
                            ));
                        };
                        let newest = match c.overwrite_with.as_str() {
                            "newest" => true,
                            "oldest" | "" => false,
                            o => {
                                return Err((
                                    format!("{p}::overwrite_with"),
                                    format!("invalid value {o:?}: expected oldest or newest"),
                                ))
                            }
                        };
                        if c.force_flush_period.is_zero() {
                            return Err((
                                format!("{p}::force_flush_period"),
                                "must be greater than 0".into(),
                            ));
                        }
                        if c.max_sources == 0 {
                            return Err((
                                format!("{p}::max_sources"),
                                "must be greater than 0".into(),
                            ));
                        }
                        let op = RecombineOp {
                            first,
                            expr,
                            combine_field: field(p, "combine_field", combine)?,
                            combine_with: c.combine_with.clone(),
                            max_batch_size: c.max_batch_size,
                            max_unmatched_batch_size: c.max_unmatched_batch_size,
                            max_sources: c.max_sources,
                            newest,
                            force_flush_period: c.force_flush_period,
                            source_identifier: field(p, "source_identifier", &c.source_identifier)?,
                            max_log_size: c.max_log_size.0,
                        };
                        (
                            c.output.clone(),
                            plain(
                                Kind::Recombine(Box::new(op)),
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Filter(c) => {
                        if !(0.0..=1.0).contains(&c.drop_ratio) {
                            return Err((
                                format!("{p}::drop_ratio"),
                                format!(
                                    "{} is out of range: expected a number from 0 to 1",
                                    c.drop_ratio
                                ),
                            ));
                        }
                        let expr = Expr::parse(&c.expr).map_err(|e| (format!("{p}::expr"), e))?;
                        (
                            c.output.clone(),
                            plain(
                                Kind::Filter {
                                    expr,
                                    cutoff: (c.drop_ratio * 1000.0).round() as u64,
                                },
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Flatten(c) => {
                        let f = field(p, "field", &c.field)?;
                        if f.keys.is_empty() {
                            return Err((
                                format!("{p}::field"),
                                format!("cannot flatten {f} itself: name a map below it, such as body.key"),
                            ));
                        }
                        (
                            c.output.clone(),
                            plain(
                                Kind::Flatten { field: f },
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::RegexReplace(c) => {
                        let src = match (c.regex.is_empty(), c.regex_name.is_empty()) {
                            (false, true) => c.regex.clone(),
                            (true, false) => named_regex(&c.regex_name)
                                .ok_or_else(|| {
                                    (
                                        format!("{p}::regex_name"),
                                        format!(
                                            "unknown regex_name {:?}: expected ansi_control_sequences",
                                            c.regex_name
                                        ),
                                    )
                                })?
                                .to_string(),
                            _ => {
                                return Err((
                                    p.to_string(),
                                    "either regex or regex_name must be set".into(),
                                ))
                            }
                        };
                        let re = vigil_core::config::re2_regex(&src)
                            .map_err(|e| (format!("{p}::regex"), format!("invalid regex: {e}")))?;
                        (
                            c.output.clone(),
                            plain(
                                Kind::RegexReplace {
                                    field: field(p, "field", &c.field)?,
                                    re,
                                    with: c.replace_with.clone(),
                                },
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Noop(c) => {
                        (c.output.clone(), plain(Kind::Noop, None, OnError::Send))
                    }
                    OperatorConfig::Retain(c) => {
                        if c.fields.is_empty() {
                            return Err((
                                format!("{p}::fields"),
                                "required: at least one field to keep".into(),
                            ));
                        }
                        let fields = c
                            .fields
                            .iter()
                            .enumerate()
                            .map(|(j, f)| field(p, &format!("fields::{j}"), f))
                            .collect::<Result<Vec<_>, _>>()?;
                        let any = |r: Root| fields.iter().any(|f| f.root == r);
                        let kind = Kind::Retain {
                            body: any(Root::Body),
                            attributes: any(Root::Attributes),
                            resource: any(Root::Resource),
                            fields,
                        };
                        (
                            c.output.clone(),
                            plain(kind, cond(p, &c.if_)?, on_error(p, &c.on_error)?),
                        )
                    }
                    OperatorConfig::KeyValueParser(c) => {
                        let delim = c.delimiter.clone().unwrap_or_else(|| "=".into());
                        if delim.is_empty() {
                            return Err((format!("{p}::delimiter"), "must not be empty".into()));
                        }
                        let pair_delim = match c.pair_delimiter.as_deref() {
                            None | Some("") => " ".to_string(),
                            Some(d) => d.to_string(),
                        };
                        if delim == pair_delim {
                            return Err((
                                format!("{p}::pair_delimiter"),
                                format!("{pair_delim:?} is also the delimiter: they must differ"),
                            ));
                        }
                        (
                            c.output.clone(),
                            parser(p, &c.parser(), |from, to| Kind::KeyValue {
                                from,
                                to,
                                delim,
                                pair_delim,
                            })?,
                        )
                    }
                    OperatorConfig::CsvParser(c) => {
                        let one_char = |key: &str, v: &str| -> Result<char, (String, String)> {
                            let mut it = v.chars();
                            match (it.next(), it.next()) {
                                (Some(ch), None) if ch != '\r' && ch != '\n' && ch != '"' => {
                                    Ok(ch)
                                }
                                _ => Err((
                                    format!("{p}::{key}"),
                                    format!("invalid {key} {v:?}: expected one character other than a quote or line break"),
                                )),
                            }
                        };
                        let delim = one_char("delimiter", c.delimiter.as_deref().unwrap_or(","))?;
                        let header_delim = match c.header_delimiter.as_deref() {
                            None | Some("") => delim,
                            Some(h) => one_char("header_delimiter", h)?,
                        };
                        if c.lazy_quotes && c.ignore_quotes {
                            return Err((
                                p.to_string(),
                                "only one of ignore_quotes and lazy_quotes can be true".into(),
                            ));
                        }
                        let header = c.header.as_deref().filter(|h| !h.is_empty());
                        let attr = c.header_attribute.as_deref().filter(|h| !h.is_empty());
                        let header = match (header, attr) {
                            (None, None) => {
                                return Err((
                                    format!("{p}::header"),
                                    "required: set header or header_attribute".into(),
                                ))
                            }
                            (Some(_), Some(_)) => {
                                return Err((
                                    p.to_string(),
                                    "only one of header and header_attribute can be set".into(),
                                ))
                            }
                            (Some(h), None) => {
                                if !h.contains(header_delim) {
                                    return Err((
                                        format!("{p}::header"),
                                        format!("missing field delimiter {header_delim:?} in header {h:?}"),
                                    ));
                                }
                                Some(h.split(header_delim).map(str::to_string).collect())
                            }
                            (None, Some(_)) => None,
                        };
                        let csv = Box::new(CsvOp {
                            header,
                            header_attribute: attr.unwrap_or_default().to_string(),
                            header_delim,
                            delim,
                            lazy: c.lazy_quotes,
                            ignore_quotes: c.ignore_quotes,
                        });
                        (
                            c.output.clone(),
                            parser(p, &c.parser(), |from, to| Kind::Csv { from, to, csv })?,
                        )
                    }
                    OperatorConfig::SyslogParser(c) => {
                        let proto = c.protocol.as_deref().unwrap_or("").to_ascii_lowercase();
                        let protocol = match proto.as_str() {
                            "rfc5424" => crate::syslog::parse::Protocol::Rfc5424,
                            "rfc3164" => crate::syslog::parse::Protocol::Rfc3164,
                            "" => {
                                return Err((
                                    format!("{p}::protocol"),
                                    "required: rfc5424 or rfc3164".into(),
                                ))
                            }
                            o => {
                                return Err((
                                    format!("{p}::protocol"),
                                    format!(
                                        "unsupported protocol {o:?}: expected rfc5424 or rfc3164"
                                    ),
                                ))
                            }
                        };
                        let framing =
                            c.enable_octet_counting || c.non_transparent_framing_trailer.is_some();
                        if framing && proto != "rfc5424" {
                            return Err((
                                p.to_string(),
                                "enable_octet_counting and non_transparent_framing_trailer are only compatible with protocol rfc5424".into(),
                            ));
                        }
                        if c.enable_octet_counting && c.non_transparent_framing_trailer.is_some() {
                            return Err((
                                p.to_string(),
                                "only one of enable_octet_counting and non_transparent_framing_trailer can be set".into(),
                            ));
                        }
                        let trailer = match c.non_transparent_framing_trailer.as_deref() {
                            None => None,
                            Some("LF") => Some('\n'),
                            Some("NUL") => Some('\0'),
                            Some(o) => {
                                return Err((
                                    format!("{p}::non_transparent_framing_trailer"),
                                    format!("invalid trailer {o:?}: expected LF or NUL"),
                                ))
                            }
                        };
                        let tz: chrono_tz::Tz = match c.location.as_deref() {
                            None | Some("") => chrono_tz::Tz::UTC,
                            Some(l) => l.parse().map_err(|_| {
                                (
                                    format!("{p}::location"),
                                    format!("unknown location {l:?}: expected an IANA zone such as \"UTC\" or \"America/New_York\""),
                                )
                            })?,
                        };
                        let op = Box::new(parsers::SyslogOp {
                            protocol,
                            tz,
                            octet_counting: c.enable_octet_counting,
                            allow_skip_pri_header: c.allow_skip_pri_header,
                            trailer,
                            max_octets: c.max_octets,
                        });
                        let header_time = c.timestamp.is_none();
                        (
                            c.output.clone(),
                            parser(p, &c.parser(), |from, to| Kind::Syslog {
                                from,
                                to,
                                op,
                                header_time,
                            })?,
                        )
                    }
                    OperatorConfig::UriParser(c) => (
                        c.output.clone(),
                        parser(p, &c.parser(), |from, to| Kind::Uri { from, to })?,
                    ),
                    OperatorConfig::JsonArrayParser(c) => {
                        let header = c
                            .header
                            .as_deref()
                            .filter(|h| !h.is_empty())
                            .map(|h| h.split(',').map(str::to_string).collect());
                        (
                            c.output.clone(),
                            parser(p, &c.parser(), |from, to| Kind::JsonArray {
                                from,
                                to,
                                header,
                            })?,
                        )
                    }
                    OperatorConfig::TraceParser(c) => {
                        let t = TraceConfig {
                            trace_id: c.trace_id.clone(),
                            span_id: c.span_id.clone(),
                            trace_flags: c.trace_flags.clone(),
                        };
                        let op = plain(Kind::Noop, cond(p, &c.if_)?, on_error(p, &c.on_error)?);
                        let trace = trace_step(p, &Some(t))?;
                        (c.output.clone(), Op { trace, ..op })
                    }
                    OperatorConfig::ScopeNameParser(c) => {
                        let op = plain(Kind::Noop, cond(p, &c.if_)?, on_error(p, &c.on_error)?);
                        let from = c.parse_from.as_deref().unwrap_or("body");
                        let scope = Some(field(p, "parse_from", from)?);
                        (c.output.clone(), Op { scope, ..op })
                    }
                    OperatorConfig::Copy(c) => (
                        c.output.clone(),
                        plain(
                            Kind::Copy {
                                from: field(p, "from", &c.from)?,
                                to: field(p, "to", &c.to)?,
                            },
                            cond(p, &c.if_)?,
                            on_error(p, &c.on_error)?,
                        ),
                    ),
                    OperatorConfig::AssignKeys(c) => {
                        if c.keys.is_empty() {
                            return Err((
                                format!("{p}::keys"),
                                "required: the keys for the list's values, in order".into(),
                            ));
                        }
                        (
                            c.output.clone(),
                            plain(
                                Kind::AssignKeys {
                                    field: field(p, "field", &c.field)?,
                                    keys: c.keys.clone(),
                                },
                                cond(p, &c.if_)?,
                                on_error(p, &c.on_error)?,
                            ),
                        )
                    }
                    OperatorConfig::Unquote(c) => (
                        c.output.clone(),
                        plain(
                            Kind::Unquote {
                                field: field(p, "field", &c.field)?,
                            },
                            cond(p, &c.if_)?,
                            on_error(p, &c.on_error)?,
                        ),
                    ),
                    OperatorConfig::Stdout(_) => (None, plain(Kind::Stdout, None, OnError::Send)),
                    OperatorConfig::DropOutput(_) => {
                        (None, plain(Kind::DropOutput, None, OnError::Send))
                    }
                    OperatorConfig::FileOutput(_) | OperatorConfig::SanitizeUtf8(_) => {
                        return Err((
                            format!("{p}::type"),
                            format!("operator type {:?} is not built in vigil", c.type_name()),
                        ))
                    }
                })
            };
            let (output, op) = match built() {
                Ok(b) => b,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let route_outputs = match c {
                OperatorConfig::Router(r) => r.routes.iter().map(|r| r.output.clone()).collect(),
                _ => Vec::new(),
            };
            let default = match c {
                OperatorConfig::Router(r) => r.default.clone(),
                _ => None,
            };
            outputs.push((output, route_outputs, default));
            ops.push(op);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let explicit: Vec<Option<&str>> = configs.iter().map(|c| c.id()).collect();
        for (op, id) in ops.iter_mut().zip(default_ids(configs, &explicit)) {
            op.id = id;
        }
        Pipeline::link(ops, outputs).map_err(|e| vec![e])
    }

    /// Points each operator at the next one: its `output`, its routes, or the one after it.
    fn link(
        mut ops: Vec<Op>,
        outputs: Vec<(Option<String>, Vec<String>, Option<String>)>,
    ) -> Result<Pipeline, (String, String)> {
        // Resolve outputs to indices. Only forward references are allowed, which rules out cycles.
        let ids: Vec<String> = ops.iter().map(|o| o.id.clone()).collect();
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err((
                    format!("operators::{i}::id"),
                    format!("duplicate operator id {id:?}"),
                ));
            }
        }
        let resolve = |i: usize, key: &str, target: &str| -> Result<Next, (String, String)> {
            match ids.iter().position(|x| x == target) {
                Some(j) if j > i => Ok(Next::Op(j)),
                Some(_) => Err((
                    format!("operators::{i}::{key}"),
                    format!("output {target:?} must name an operator later in the list"),
                )),
                None => Err((
                    format!("operators::{i}::{key}"),
                    format!("no operator has id {target:?}"),
                )),
            }
        };
        let n = ops.len();
        for (i, (output, routes, default)) in outputs.into_iter().enumerate() {
            let fallthrough = if i + 1 < n {
                Next::Op(i + 1)
            } else {
                Next::Emit
            };
            ops[i].next = match output {
                Some(o) => resolve(i, "output", &o)?,
                None => fallthrough,
            };
            if matches!(ops[i].kind, Kind::Stdout | Kind::DropOutput) {
                ops[i].next = Next::Drop;
            }
            if let Kind::Router {
                routes: rs,
                default: d,
            } = &mut ops[i].kind
            {
                for (j, target) in routes.iter().enumerate() {
                    rs[j].2 = resolve(i, &format!("routes::{j}::output"), target)?;
                }
                *d = match default {
                    Some(t) => resolve(i, "default", &t)?,
                    None => Next::Drop,
                };
            }
        }
        Ok(Pipeline { ops })
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Runs one entry through the operators; finished entries are pushed to `out`. `offset` is where
    /// the entry's line starts in its file, `path` the file it came from.
    pub fn process(
        &self,
        e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        self.run_from(0, e, offset, path, st, out);
    }

    /// Passes on every entry a stateful operator still holds (partial lines at a file's end).
    pub fn flush(&self, path: Option<&str>, st: &mut PipelineState, out: &mut Vec<Entry>) {
        self.flush_held(None, path, st, out);
    }

    /// Passes on what a `recombine` has held for its `force_flush_period`; inputs call it at each
    /// poll (filelog) or message (syslog).
    pub fn flush_due(&self, path: Option<&str>, st: &mut PipelineState, out: &mut Vec<Entry>) {
        if st.recombine.is_empty() {
            return;
        }
        self.flush_held(Some(std::time::Instant::now()), path, st, out);
    }

    /// With `due`, only recombine batches that are due; without, everything held. In operator order,
    /// so an entry one operator lets go can still be joined by a later one.
    fn flush_held(
        &self,
        due: Option<std::time::Instant>,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        let mut idx: Vec<usize> = st
            .container
            .keys()
            .chain(st.recombine.keys())
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        for i in idx {
            let mut held = Vec::new();
            if due.is_none() {
                if let Some(c) = st.container.get_mut(&i) {
                    held.extend(c.drain());
                }
            }
            if let (Some(r), Kind::Recombine(op)) = (st.recombine.get_mut(&i), &self.ops[i].kind) {
                match due {
                    Some(now) => op.flush_due(now, r, &mut held),
                    None => op.flush_all(r, &mut held),
                }
            }
            for e in held {
                self.continue_after(i, e, 0, path, st, out);
            }
        }
    }

    fn continue_after(
        &self,
        i: usize,
        e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        match self.ops[i].next {
            Next::Op(j) => self.run_from(j, e, offset, path, st, out),
            Next::Emit => out.push(e),
            Next::Drop => {}
        }
    }

    fn run_from(
        &self,
        mut i: usize,
        mut e: Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
        out: &mut Vec<Entry>,
    ) {
        loop {
            let Some(op) = self.ops.get(i) else {
                out.push(e);
                return;
            };
            let skip = op.cond.as_ref().is_some_and(|c| !c.matches(&e));
            let mut next = op.next;
            if !skip {
                match self.apply(op, i, &mut e, offset, path, st) {
                    Ok(Step::Next) => {}
                    Ok(Step::To(n)) => next = n,
                    Ok(Step::Held) => return,
                    Ok(Step::Replace(x)) => e = x,
                    Ok(Step::Emit(v)) => {
                        for x in v {
                            self.continue_after(i, x, offset, path, st, out);
                        }
                        return;
                    }
                    Err(msg) => {
                        if matches!(op.on_error, OnError::Send | OnError::Drop) {
                            tracing::debug!(operator = %op.id, error = %msg, "operator failed on an entry");
                        }
                        if matches!(op.on_error, OnError::Drop | OnError::DropQuiet) {
                            return;
                        }
                    }
                }
            }
            match next {
                Next::Op(j) => i = j,
                Next::Emit => {
                    out.push(e);
                    return;
                }
                Next::Drop => return,
            }
        }
    }

    fn apply(
        &self,
        op: &Op,
        i: usize,
        e: &mut Entry,
        offset: u64,
        path: Option<&str>,
        st: &mut PipelineState,
    ) -> Result<Step, String> {
        match &op.kind {
            Kind::Json { from, to } => {
                let text = from
                    .get_str(e)
                    .ok_or_else(|| format!("json_parser: {from} is not a string"))?;
                let j: Json =
                    serde_json::from_str(text).map_err(|x| format!("json_parser: {x}"))?;
                if !j.is_object() {
                    return Err("json_parser: the value is not a JSON object".into());
                }
                to.set(e, json_to_value(j));
            }
            Kind::Regex { from, to, re } => {
                let text = from
                    .get_str(e)
                    .ok_or_else(|| format!("regex_parser: {from} is not a string"))?;
                let caps = re
                    .captures(text)
                    .ok_or_else(|| "regex_parser: the regex does not match".to_string())?;
                let mut values = Vec::new();
                for name in re.capture_names().flatten() {
                    if let Some(m) = caps.name(name) {
                        values.push(KeyValue {
                            key: name.to_string(),
                            value: Some(AnyValue {
                                value: Some(Value::StringValue(m.as_str().to_string())),
                            }),
                            ..Default::default()
                        });
                    }
                }
                to.set(e, Value::KvlistValue(KeyValueList { values }));
            }
            Kind::Timestamp | Kind::Severity => {}
            Kind::Move { from, to } => {
                let v = from
                    .remove(e)
                    .ok_or_else(|| format!("move: {from} does not exist"))?;
                to.set(e, v);
            }
            Kind::Remove { field } => {
                field
                    .remove(e)
                    .ok_or_else(|| format!("remove: {field} does not exist"))?;
            }
            Kind::Add { field, value } => field.set(e, value.clone()),
            Kind::Router { routes, default } => {
                for (x, attrs, next) in routes {
                    if x.matches(e) {
                        for kv in attrs {
                            e.attributes.push(kv.clone());
                        }
                        return Ok(Step::To(*next));
                    }
                }
                return Ok(Step::To(*default));
            }
            Kind::Container { from, op: c } => {
                if !(from.keys.is_empty() && from.root == Root::Body) {
                    let v = from
                        .get(e)
                        .cloned()
                        .ok_or_else(|| format!("container: {from} does not exist"))?;
                    e.body = v;
                }
                let state = st.container.entry(i).or_default();
                return match c.apply(e, offset, path, state)? {
                    Some(x) => Ok(Step::Replace(x)),
                    None => Ok(Step::Held),
                };
            }
            Kind::Recombine(op) => {
                let mut out = Vec::new();
                op.apply(e, offset, st.recombine.entry(i).or_default(), &mut out)?;
                return Ok(Step::Emit(out));
            }
            Kind::Filter { expr, cutoff } => {
                // stanza drops an entry whose expression cannot be evaluated, and logs it.
                let hit = match expr.eval(e) {
                    Ok(b) => b,
                    Err(x) => {
                        tracing::debug!(operator = %op.id, error = %x, "filter: dropping an entry the expression cannot be evaluated on");
                        return Ok(Step::To(Next::Drop));
                    }
                };
                if hit && (*cutoff >= 1000 || st.draw() < *cutoff) {
                    return Ok(Step::To(Next::Drop));
                }
            }
            Kind::Flatten { field } => {
                let v = field
                    .get(e)
                    .ok_or_else(|| format!("flatten: {field} does not exist"))?;
                if !matches!(v, Value::KvlistValue(_)) {
                    return Err(format!("flatten: {field} is not a map"));
                }
                let Some(Value::KvlistValue(map)) = field.remove(e) else {
                    return Err(format!("flatten: {field} is not a map"));
                };
                let parent = Field {
                    root: field.root,
                    keys: field.keys[..field.keys.len().saturating_sub(1)].to_vec(),
                };
                for kv in map.values {
                    let mut to = parent.clone();
                    to.keys.push(kv.key);
                    let v = kv
                        .value
                        .and_then(|a| a.value)
                        .unwrap_or(Value::StringValue(String::new()));
                    to.set(e, v);
                }
            }
            Kind::RegexReplace { field, re, with } => {
                let text = field
                    .get_str(e)
                    .ok_or_else(|| format!("regex_replace: {field} is not a string"))?;
                if let std::borrow::Cow::Owned(s) = re.replace_all(text, with.as_str()) {
                    field.set(e, Value::StringValue(s));
                }
            }
            Kind::Noop => {}
            Kind::KeyValue {
                from,
                to,
                delim,
                pair_delim,
            } => {
                let v = parsers::key_values(source(e, from)?, delim, pair_delim)
                    .map_err(|x| format!("key_value_parser: {x}"))?;
                set_parsed(e, to, v)?;
            }
            Kind::Csv { from, to, csv } => {
                let v = csv
                    .parse(e, source(e, from)?)
                    .map_err(|x| format!("csv_parser: {x}"))?;
                set_parsed(e, to, v)?;
            }
            Kind::Syslog {
                from,
                to,
                op,
                header_time,
            } => {
                let s = op
                    .parse(source(e, from)?)
                    .map_err(|x| format!("syslog_parser: {x}"))?;
                set_parsed(e, to, s.fields)?;
                if *header_time && s.timestamp != 0 {
                    e.timestamp = s.timestamp;
                }
                if let Some((n, t)) = s.severity {
                    e.severity_number = n;
                    e.severity_text = t;
                }
            }
            Kind::Uri { from, to } => {
                let v = parsers::uri(source(e, from)?).map_err(|x| format!("uri_parser: {x}"))?;
                set_parsed(e, to, v)?;
            }
            Kind::JsonArray { from, to, header } => {
                let v = parsers::json_array(source(e, from)?, header.as_deref())
                    .map_err(|x| format!("json_array_parser: {x}"))?;
                set_parsed(e, to, v)?;
            }
            Kind::Copy { from, to } => {
                let v = from
                    .get(e)
                    .cloned()
                    .ok_or_else(|| format!("copy: {from} does not exist"))?;
                to.set(e, v);
            }
            Kind::AssignKeys { field, keys } => {
                let Some(Value::ArrayValue(list)) = field.get(e) else {
                    return Err(format!("assign_keys: {field} is not a list"));
                };
                if list.values.len() != keys.len() {
                    return Err(format!(
                        "assign_keys: {field} has {} values but {} keys are configured",
                        list.values.len(),
                        keys.len()
                    ));
                }
                let values = keys
                    .iter()
                    .zip(&list.values)
                    .map(|(k, v)| KeyValue {
                        key: k.clone(),
                        value: Some(v.clone()),
                        ..Default::default()
                    })
                    .collect();
                field.set(e, Value::KvlistValue(KeyValueList { values }));
            }
            Kind::Unquote { field } => {
                let text = field
                    .get_str(e)
                    .ok_or_else(|| format!("unquote: {field} is not a string"))?;
                let v = parsers::unquote(text).map_err(|x| format!("unquote: {x}"))?;
                field.set(e, Value::StringValue(v));
            }
            Kind::Stdout => {
                print_entry(e);
                return Ok(Step::To(Next::Drop));
            }
            Kind::DropOutput => return Ok(Step::To(Next::Drop)),
            Kind::Retain {
                fields,
                body,
                attributes,
                resource,
            } => {
                // As stanza: start from an entry with only the times, the groups no listed field
                // is in, and then the listed fields.
                let mut kept = Entry::text(String::new(), e.observed);
                kept.timestamp = e.timestamp;
                if !*body {
                    kept.body = e.body.clone();
                }
                if !*attributes {
                    kept.attributes = e.attributes.clone();
                }
                if !*resource {
                    kept.resource = e.resource.clone();
                }
                for f in fields {
                    if let Some(v) = f.get(e) {
                        f.set(&mut kept, v.clone());
                    }
                }
                *e = kept;
            }
        }
        // As stanza's ParseWith: the parsed `body` field first (absent, the body stays), then
        // every embedded step is tried, and the first that failed fails the entry.
        if let Some(b) = &op.body {
            if let Some(v) = b.get(e).cloned() {
                e.body = v;
            }
        }
        let mut failed: Option<String> = None;
        if let Some(t) = &op.ts {
            let raw = match t.from.get(e) {
                Some(Value::StringValue(s)) => Some(s.clone()),
                Some(Value::IntValue(i)) => Some(i.to_string()),
                Some(Value::DoubleValue(d)) => Some(d.to_string()),
                _ => None,
            };
            match raw.map(|r| t.parser.parse(&r)) {
                Some(Ok(ts)) => e.timestamp = ts,
                Some(Err(x)) => failed = Some(x),
                None => failed = Some(format!("timestamp: {} does not exist", t.from)),
            }
        }
        if let Some(s) = &op.sev {
            match s.from.get(e).cloned() {
                Some(raw) => {
                    e.severity_number = s.map.lookup(&raw).unwrap_or(0);
                    if s.overwrite_text || e.severity_text.is_empty() {
                        e.severity_text = vigil_core::attrs::value_to_string(&raw);
                    }
                }
                None => {
                    failed.get_or_insert_with(|| format!("severity: {} does not exist", s.from));
                }
            }
        }
        if let Some(t) = &op.trace {
            let trace_id = hex_field(e, &t.trace_id, "trace_id");
            let span_id = hex_field(e, &t.span_id, "span_id");
            let flags = hex_field(e, &t.flags, "trace_flags");
            match (trace_id, span_id, flags) {
                (Ok(trace_id), Ok(span_id), Ok(flags)) => {
                    if let Some(v) = trace_id {
                        e.trace_id = v;
                    }
                    if let Some(v) = span_id {
                        e.span_id = v;
                    }
                    if let Some(v) = flags {
                        e.flags = v.first().copied().map(u32::from).unwrap_or(0);
                    }
                }
                (Err(x), _, _) | (_, Err(x), _) | (_, _, Err(x)) => {
                    failed.get_or_insert(x);
                }
            }
        }
        if let Some(f) = &op.scope {
            match f.get(e) {
                Some(Value::StringValue(s)) => e.scope_name = s.clone(),
                Some(_) => {
                    failed.get_or_insert_with(|| format!("scope_name: {f} is not a string"));
                }
                None => {
                    failed.get_or_insert_with(|| format!("scope_name: {f} does not exist"));
                }
            }
        }
        if let Some(x) = failed {
            return Err(x);
        }
        Ok(Step::Next)
    }
}

enum Step {
    Next,
    To(Next),
    Held,
    Replace(Entry),
    /// The entry was taken; these (none, one or more) go on to the next operator instead.
    Emit(Vec<Entry>),
}

#[cfg(test)]
mod tests;
