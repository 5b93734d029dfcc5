//! OTTL's editors and converters: resolution at parse time (the name, the number of arguments, and the
//! arguments that must be literals, such as patterns, which are compiled once here), and their run
//! time. An unknown function is an error naming it; docs/ottl.md lists the ones below.

use crate::eval::eval;
use crate::histogram;

mod clock;
mod collect;
mod digest;
pub(crate) mod grok;
mod text;
mod useragent;
mod xml;
mod xpath;
use crate::{kv, Call, Expr, Path, Target, Value};
use regex::Regex;
use sha2::Digest;
use vigil_core::otlp::common::v1::{AnyValue, KeyValue};

/// Whether a function edits a path (lowercase names) or computes a value (capitalised names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FuncKind {
    Editor,
    Converter,
}

macro_rules! funcs {
    ($($v:ident = $name:literal, $kind:ident, $min:literal ..= $max:literal;)*) => {
        /// A supported function.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Func { $($v,)* }

        const TABLE: &[(Func, &str, FuncKind, usize, usize)] = &[
            $((Func::$v, $name, FuncKind::$kind, $min, $max),)*
        ];
    };
}

funcs! {
    Set = "set", Editor, 2..=2;
    DeleteKey = "delete_key", Editor, 2..=2;
    DeleteMatchingKeys = "delete_matching_keys", Editor, 2..=2;
    KeepKeys = "keep_keys", Editor, 2..=2;
    KeepMatchingKeys = "keep_matching_keys", Editor, 2..=2;
    ReplacePattern = "replace_pattern", Editor, 3..=5;
    ReplaceAllPatterns = "replace_all_patterns", Editor, 4..=6;
    ReplaceMatch = "replace_match", Editor, 3..=5;
    ReplaceAllMatches = "replace_all_matches", Editor, 3..=5;
    MergeMaps = "merge_maps", Editor, 3..=3;
    Limit = "limit", Editor, 2..=3;
    TruncateAll = "truncate_all", Editor, 2..=4;
    Flatten = "flatten", Editor, 1..=4;
    Append = "append", Editor, 1..=3;
    Route = "route", Editor, 0..=0;
    ConvertGaugeToSum = "convert_gauge_to_sum", Editor, 2..=2;
    ConvertSumToGauge = "convert_sum_to_gauge", Editor, 0..=0;
    CopyMetric = "copy_metric", Editor, 0..=3;
    ExtractCountMetric = "extract_count_metric", Editor, 1..=2;
    ExtractSumMetric = "extract_sum_metric", Editor, 1..=2;
    AggregateOnAttributes = "aggregate_on_attributes", Editor, 1..=2;
    SetSemconvSpanName = "set_semconv_span_name", Editor, 1..=2;
    MergeHistogramBuckets = "merge_histogram_buckets", Editor, 1..=2;
    ScaleMetric = "scale_metric", Editor, 1..=2;
    ConvertSummaryCountValToSum = "convert_summary_count_val_to_sum", Editor, 2..=3;
    ConvertSummarySumValToSum = "convert_summary_sum_val_to_sum", Editor, 2..=3;
    ConvertSummaryQuantileValToGauge = "convert_summary_quantile_val_to_gauge", Editor, 0..=2;
    AggregateOnAttributeValue = "aggregate_on_attribute_value", Editor, 4..=4;
    ParseJson = "ParseJSON", Converter, 1..=1;
    Concat = "Concat", Converter, 2..=2;
    Split = "Split", Converter, 2..=2;
    IsMatch = "IsMatch", Converter, 2..=2;
    IsString = "IsString", Converter, 1..=1;
    IsMap = "IsMap", Converter, 1..=1;
    IsList = "IsList", Converter, 1..=1;
    IsInt = "IsInt", Converter, 1..=1;
    IsDouble = "IsDouble", Converter, 1..=1;
    IsBool = "IsBool", Converter, 1..=1;
    Int = "Int", Converter, 1..=1;
    Double = "Double", Converter, 1..=1;
    String = "String", Converter, 1..=1;
    Len = "Len", Converter, 1..=1;
    ToLowerCase = "ToLowerCase", Converter, 1..=1;
    ToUpperCase = "ToUpperCase", Converter, 1..=1;
    Substring = "Substring", Converter, 3..=4;
    SpanId = "SpanID", Converter, 1..=1;
    TraceId = "TraceID", Converter, 1..=1;
    Sha256 = "SHA256", Converter, 1..=1;
    Md5 = "MD5", Converter, 1..=1;
    Hex = "Hex", Converter, 1..=1;
    Time = "Time", Converter, 2..=4;
    Now = "Now", Converter, 0..=0;
    Unix = "Unix", Converter, 1..=2;
    UnixNano = "UnixNano", Converter, 1..=1;
    UnixMicro = "UnixMicro", Converter, 1..=1;
    UnixMilli = "UnixMilli", Converter, 1..=1;
    UnixSeconds = "UnixSeconds", Converter, 1..=1;
    ExtractPatterns = "ExtractPatterns", Converter, 2..=2;
    Format = "Format", Converter, 2..=2;
    HasAttrOnDatapoint = "HasAttrOnDatapoint", Converter, 2..=2;
    HasAttrKeyOnDatapoint = "HasAttrKeyOnDatapoint", Converter, 1..=1;
    IsRootSpan = "IsRootSpan", Converter, 0..=0;
    FormatTime = "FormatTime", Converter, 2..=2;
    HasPrefix = "HasPrefix", Converter, 2..=2;
    HasSuffix = "HasSuffix", Converter, 2..=2;
    ContainsValue = "ContainsValue", Converter, 2..=2;
    DeleteIndex = "delete_index", Editor, 2..=3;
    StringifyAll = "stringify_all", Editor, 1..=1;
    Sha1 = "SHA1", Converter, 1..=1;
    Sha512 = "SHA512", Converter, 1..=1;
    Fnv = "FNV", Converter, 1..=1;
    Murmur3Hash = "Murmur3Hash", Converter, 1..=1;
    Murmur3Hash128 = "Murmur3Hash128", Converter, 1..=1;
    Xxh3 = "XXH3", Converter, 1..=1;
    Xxh128 = "XXH128", Converter, 1..=1;
    CommunityId = "CommunityID", Converter, 4..=6;
    Uuid = "UUID", Converter, 0..=0;
    UuidV7 = "UUIDv7", Converter, 0..=0;
    ProfileId = "ProfileID", Converter, 1..=1;
    Duration = "Duration", Converter, 1..=1;
    Hours = "Hours", Converter, 1..=1;
    Minutes = "Minutes", Converter, 1..=1;
    Seconds = "Seconds", Converter, 1..=1;
    Milliseconds = "Milliseconds", Converter, 1..=1;
    Microseconds = "Microseconds", Converter, 1..=1;
    Nanoseconds = "Nanoseconds", Converter, 1..=1;
    Year = "Year", Converter, 1..=1;
    Month = "Month", Converter, 1..=1;
    Day = "Day", Converter, 1..=1;
    Weekday = "Weekday", Converter, 1..=1;
    Hour = "Hour", Converter, 1..=1;
    Minute = "Minute", Converter, 1..=1;
    Second = "Second", Converter, 1..=1;
    Nanosecond = "Nanosecond", Converter, 1..=1;
    TruncateTime = "TruncateTime", Converter, 2..=2;
    ParseKeyValue = "ParseKeyValue", Converter, 1..=3;
    ToKeyValueString = "ToKeyValueString", Converter, 1..=4;
    ParseCsv = "ParseCSV", Converter, 2..=5;
    ConvertCase = "ConvertCase", Converter, 2..=2;
    ToSnakeCase = "ToSnakeCase", Converter, 1..=1;
    ToCamelCase = "ToCamelCase", Converter, 1..=1;
    Trim = "Trim", Converter, 1..=2;
    TrimPrefix = "TrimPrefix", Converter, 2..=2;
    TrimSuffix = "TrimSuffix", Converter, 2..=2;
    ParseInt = "ParseInt", Converter, 2..=2;
    Bool = "Bool", Converter, 1..=1;
    Log = "Log", Converter, 1..=1;
    IsValidLuhn = "IsValidLuhn", Converter, 1..=1;
    IsInCidr = "IsInCIDR", Converter, 2..=2;
    Base64Decode = "Base64Decode", Converter, 1..=1;
    Base64Encode = "Base64Encode", Converter, 1..=2;
    Decode = "Decode", Converter, 2..=2;
    Url = "URL", Converter, 1..=1;
    Keys = "Keys", Converter, 1..=1;
    Values = "Values", Converter, 1..=1;
    Index = "Index", Converter, 2..=2;
    Sort = "Sort", Converter, 1..=2;
    SliceToMap = "SliceToMap", Converter, 1..=3;
    Coalesce = "Coalesce", Converter, 1..=1;
    IsEmpty = "IsEmpty", Converter, 1..=1;
    ParseSeverity = "ParseSeverity", Converter, 2..=2;
    ParseXml = "ParseXML", Converter, 1..=1;
    ParseSimplifiedXml = "ParseSimplifiedXML", Converter, 1..=1;
    GetXml = "GetXML", Converter, 2..=2;
    InsertXml = "InsertXML", Converter, 3..=3;
    RemoveXml = "RemoveXML", Converter, 2..=2;
    ConvertAttributesToElementsXml = "ConvertAttributesToElementsXML", Converter, 1..=2;
    ConvertTextToElementsXml = "ConvertTextToElementsXML", Converter, 1..=3;
    ExtractGrokPatterns = "ExtractGrokPatterns", Converter, 2..=4;
    UserAgent = "UserAgent", Converter, 1..=1;
}

/// Every supported function's name and kind (docs/ottl.md is checked against this list).
pub fn function_names() -> Vec<(&'static str, FuncKind)> {
    TABLE
        .iter()
        .filter(|t| t.0 != Func::Route)
        .map(|t| (t.1, t.2))
        .collect()
}

/// The parameter names of functions that take optional arguments, in order, for OTTL's named
/// arguments (`copy_metric(name = "x")`).
fn params(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "copy_metric" => &["name", "description", "unit"],
        "scale_metric" => &["factor", "unit"],
        "convert_summary_count_val_to_sum" | "convert_summary_sum_val_to_sum" => {
            &["aggregation_temporality", "is_monotonic", "suffix"]
        }
        "convert_summary_quantile_val_to_gauge" => &["attributeKey", "suffix"],
        "replace_pattern" => &[
            "target",
            "regex",
            "replacement",
            "function",
            "replacementFormat",
        ],
        "replace_all_patterns" => &[
            "target",
            "mode",
            "regex",
            "replacement",
            "function",
            "replacementFormat",
        ],
        "replace_match" | "replace_all_matches" => &[
            "target",
            "pattern",
            "replacement",
            "function",
            "replacementFormat",
        ],
        "extract_count_metric" | "extract_sum_metric" => &["monotonic", "suffix"],
        "aggregate_on_attributes" => &["function", "attributes"],
        "convert_gauge_to_sum" => &["aggregation_temporality", "monotonic"],
        "limit" => &["target", "limit", "priority_keys"],
        "flatten" => &["target", "prefix", "depth", "resolveConflicts"],
        "append" => &["target", "value", "values"],
        "Unix" => &["seconds", "nanoseconds"],
        "set_semconv_span_name" => &["semconv_version", "original_span_name_attribute"],
        "merge_histogram_buckets" => &["target_value", "method"],
        "delete_index" => &["target", "startIndex", "endIndex"],
        "truncate_all" => &["target", "limit", "utf8_safe", "truncation_marker"],
        "Substring" => &["target", "start", "length", "utf8_safe"],
        "Time" => &["target", "format", "location", "locale"],
        "ParseKeyValue" => &["target", "delimiter", "pair_delimiter"],
        "ToKeyValueString" => &["target", "delimiter", "pair_delimiter", "sort_output"],
        "ParseCSV" => &["target", "headers", "delimiter", "headerDelimiter", "mode"],
        "Trim" => &["target", "replacement"],
        "Base64Encode" => &["value", "variant"],
        "Sort" => &["target", "order"],
        "SliceToMap" => &["target", "keyPath", "valuePath"],
        "ExtractGrokPatterns" => &[
            "target",
            "pattern",
            "namedCapturesOnly",
            "patternDefinitions",
        ],
        "GetXML" | "RemoveXML" => &["target", "xPath"],
        "InsertXML" => &["target", "xPath", "subDocument"],
        "ConvertAttributesToElementsXML" => &["target", "xPath"],
        "ConvertTextToElementsXML" => &["target", "xPath", "elementName"],
        "CommunityID" => &[
            "sourceIP",
            "sourcePort",
            "destinationIP",
            "destinationPort",
            "protocol",
            "seed",
        ],
        _ => return None,
    })
}

/// Functions whose left-out optional parameters read as nil, so a named argument may skip them
/// (`flatten(body, depth=2)`, `ParseCSV(body, "a,b", mode="ignoreQuotes")`), as OTTL allows.
fn skips_as_nil(name: &str) -> bool {
    matches!(
        name,
        "flatten"
            | "append"
            | "copy_metric"
            | "delete_index"
            | "truncate_all"
            | "Substring"
            | "Time"
            | "ParseKeyValue"
            | "ToKeyValueString"
            | "ParseCSV"
            | "Trim"
            | "Base64Encode"
            | "Sort"
            | "SliceToMap"
            | "CommunityID"
            | "ExtractGrokPatterns"
            | "ConvertAttributesToElementsXML"
            | "ConvertTextToElementsXML"
            | "replace_pattern"
            | "replace_all_patterns"
            | "replace_match"
            | "replace_all_matches"
            | "convert_summary_quantile_val_to_gauge"
    )
}

/// The one context an editor runs in, for inferring a statement's context from its function when
/// no path names one (`scale_metric(1000)`).
pub(crate) fn home_context(name: &str) -> Option<crate::Context> {
    let f = TABLE
        .iter()
        .find(|t| t.1 == name && t.2 == FuncKind::Editor)?
        .0;
    match f {
        Func::Route => None,
        Func::MergeHistogramBuckets => Some(crate::Context::DataPoint),
        Func::SetSemconvSpanName => Some(crate::Context::Span),
        f if metric_editor(f) => Some(crate::Context::Metric),
        _ => None,
    }
}

/// A converter by name, for a bare name passed as a function argument (`SHA256`).
pub(crate) fn converter_named(name: &str) -> Option<Func> {
    TABLE
        .iter()
        .find(|t| t.1 == name && t.2 == FuncKind::Converter)
        .map(|t| t.0)
}

/// Where the `replace_*` editors take their optional `function` (then `replacementFormat`).
fn replace_fn_index(f: Func) -> Option<usize> {
    match f {
        Func::ReplacePattern | Func::ReplaceMatch | Func::ReplaceAllMatches => Some(3),
        Func::ReplaceAllPatterns => Some(4),
        _ => None,
    }
}

/// Checks a `replace_*` editor's `function` argument: a converter that takes one string, resolved
/// once here so that its own load-time checks run; and a literal `replacementFormat`.
fn check_replace_fn(name: &str, func: Func, args: &[Expr]) -> Result<(), String> {
    let Some(i) = replace_fn_index(func) else {
        return Ok(());
    };
    match args.get(i) {
        None | Some(Expr::Lit(Value::Nil)) => {}
        Some(Expr::Func(g)) => {
            let gname = func_name(*g);
            let takes_one = TABLE.iter().any(|t| t.0 == *g && t.3 <= 1 && 1 <= t.4);
            if !takes_one {
                return Err(format!(
                    "{name}: the function {gname} must be a converter that takes one string, such as SHA256"
                ));
            }
            resolve(
                gname,
                FuncKind::Converter,
                vec![Expr::Lit(Value::Str(String::new()))],
                false,
            )
            .map_err(|e| format!("{name}: the function {gname} cannot be used here: {e}"))?;
        }
        Some(_) => {
            return Err(format!(
                "{name}: argument {} (function) must be a converter's name without arguments, such as SHA256",
                i + 1
            ))
        }
    }
    if let Some(Expr::Lit(Value::Str(f))) = args.get(i + 1) {
        replacement_format(name, f, "")?;
    }
    Ok(())
}

/// Go's `fmt.Sprintf(format, value)` for the `replacementFormat` of the `replace_*` editors, which
/// otelcol accepts only with `%s` and no other verb.
fn replacement_format(name: &str, format: &str, value: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "{name}: replacementFormat {format:?} must be a format string with a single %s and no other format specifiers"
        )
    };
    if !format.contains("%s") {
        return Err(bad());
    }
    let mut out = String::with_capacity(format.len() + value.len());
    let mut used = false;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') if !used => {
                out.push_str(value);
                used = true;
            }
            // What Go's fmt writes for a verb without an operand, or a lone trailing %.
            Some('s') => out.push_str("%!s(MISSING)"),
            None => out.push_str("%!(NOVERB)"),
            Some(_) => return Err(bad()),
        }
    }
    Ok(out)
}

/// The replacement after a `replace_*` editor's `function` (and `replacementFormat`): the
/// converter is called on the replacement text and must give a string.
fn replace_with_fn(c: &Call, t: &dyn Target, input: String) -> Result<String, String> {
    let Some(i) = replace_fn_index(c.func) else {
        return Ok(input);
    };
    let Some(Expr::Func(g)) = c.args.get(i) else {
        return Ok(input);
    };
    let call = Call {
        func: *g,
        args: vec![Expr::Lit(Value::Str(input))],
        regex: None,
        grok: None,
    };
    let out = match call_converter(&call, t)? {
        Value::Str(s) => s,
        o => {
            return Err(format!(
                "{}: the function {} gave a {}; the replacement value must be a string",
                name(c.func),
                func_name(*g),
                o.kind()
            ))
        }
    };
    match arg(c, i + 1, t)? {
        Value::Nil => Ok(out),
        Value::Str(f) => replacement_format(name(c.func), &f, &out),
        o => Err(format!(
            "{}: replacementFormat must be a string, got a {}",
            name(c.func),
            o.kind()
        )),
    }
}

/// Whether a `replace_*` call was given a function.
fn has_replace_fn(c: &Call) -> bool {
    replace_fn_index(c.func).is_some_and(|i| matches!(c.args.get(i), Some(Expr::Func(_))))
}

/// `replace_pattern`'s rewrite with a function, as otelcol's: each match's expanded replacement
/// goes through the function, and every occurrence of the matched text is then replaced by it.
fn replace_matches_with_fn(
    c: &Call,
    t: &dyn Target,
    re: &Regex,
    s: &str,
    rep: &str,
) -> Result<String, String> {
    let mut updated = s.to_string();
    for caps in re.captures_iter(s) {
        let full = caps.get(0).map_or("", |m| m.as_str());
        let mut expanded = String::new();
        caps.expand(rep, &mut expanded);
        let r = replace_with_fn(c, t, expanded)?;
        updated = updated.replace(full, &r);
    }
    Ok(updated)
}

/// Puts named arguments where their parameters are. A function that is not supported is left for
/// `resolve` to name; a name the function lacks, or a gap before a named argument (an optional
/// parameter skipped), is an error.
pub(crate) fn by_position(
    name: &str,
    args: Vec<(Option<String>, Expr)>,
) -> Result<Vec<Expr>, String> {
    if args.iter().all(|(n, _)| n.is_none()) || !TABLE.iter().any(|t| t.1 == name) {
        return Ok(args.into_iter().map(|(_, e)| e).collect());
    }
    let Some(names) = params(name) else {
        return Err(format!(
            "{name}: named arguments are not supported for this function; pass arguments by position"
        ));
    };
    let mut slots: Vec<Option<Expr>> = vec![None; names.len().max(args.len())];
    let mut next = 0;
    for (n, e) in args {
        let i = match n {
            None if next < slots.len() => {
                next += 1;
                next - 1
            }
            None => return Err(format!("{name}: too many arguments")),
            Some(n) => names.iter().position(|x| *x == n).ok_or_else(|| {
                format!(
                    "{name} has no parameter {n:?} (it takes {})",
                    names.join(", ")
                )
            })?,
        };
        if slots[i].is_some() {
            return Err(format!(
                "{name}: argument {:?} is given twice",
                names.get(i).unwrap_or(&"?")
            ));
        }
        slots[i] = Some(e);
    }
    let given = slots.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    slots
        .into_iter()
        .take(given)
        .enumerate()
        .map(|(i, e)| {
            let required = TABLE.iter().find(|t| t.1 == name).map_or(0, |t| t.3);
            if e.is_none() && i >= required && skips_as_nil(name) {
                return Ok(Expr::Lit(Value::Nil));
            }
            e.ok_or_else(|| {
                format!(
                    "{name}: {:?} is left out before a later argument; vigil needs the arguments before a named one",
                    names.get(i).unwrap_or(&"?")
                )
            })
        })
        .collect()
}

/// The most keys `flatten` descends through when no depth is given, so a deep document is bounded.
pub const FLATTEN_MAX_DEPTH: i64 = 100;

fn lit_str<'a>(name: &str, args: &'a [Expr], i: usize, what: &str) -> Result<&'a str, String> {
    match args.get(i) {
        Some(Expr::Lit(Value::Str(s))) => Ok(s),
        _ => Err(format!(
            "{name}: argument {} ({what}) must be a string literal",
            i + 1
        )),
    }
}

fn lit_bool(name: &str, args: &[Expr], i: usize, what: &str) -> Result<bool, String> {
    match args.get(i) {
        Some(Expr::Lit(Value::Bool(b))) => Ok(*b),
        _ => Err(format!(
            "{name}: argument {} ({what}) must be true or false",
            i + 1
        )),
    }
}

/// Editors that act on the metric in context rather than on a path (`route` too takes none).
fn metric_editor(f: Func) -> bool {
    matches!(
        f,
        Func::Route
            | Func::ConvertGaugeToSum
            | Func::ConvertSumToGauge
            | Func::CopyMetric
            | Func::ExtractCountMetric
            | Func::ExtractSumMetric
            | Func::AggregateOnAttributes
            | Func::ScaleMetric
            | Func::ConvertSummaryCountValToSum
            | Func::ConvertSummarySumValToSum
            | Func::ConvertSummaryQuantileValToGauge
            | Func::AggregateOnAttributeValue
    )
}

fn lit_int(name: &str, args: &[Expr], i: usize, what: &str) -> Result<i64, String> {
    match args.get(i) {
        Some(Expr::Lit(Value::Int(n))) => Ok(*n),
        _ => Err(format!(
            "{name}: argument {} ({what}) must be an integer literal",
            i + 1
        )),
    }
}

fn regex(name: &str, pattern: &str) -> Result<Regex, String> {
    vigil_core::config::re2_regex(pattern)
        .map_err(|e| format!("{name}: invalid regex {pattern:?}: {e}"))
}

/// A glob (`*`, `?`, `[…]`, `{a,b}`) as an anchored regex, as OTTL's `replace_match` reads one.
fn glob(name: &str, pattern: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut in_class = false;
    let mut in_alt = false;
    for c in pattern.chars() {
        match c {
            '*' if !in_class => re.push_str(".*"),
            '?' if !in_class => re.push('.'),
            '[' if !in_class => {
                in_class = true;
                re.push('[')
            }
            ']' if in_class => {
                in_class = false;
                re.push(']')
            }
            '!' if in_class && re.ends_with('[') => re.push('^'),
            '{' if !in_class => {
                in_alt = true;
                re.push_str("(?:")
            }
            '}' if in_alt => {
                in_alt = false;
                re.push(')')
            }
            ',' if in_alt => re.push('|'),
            c if in_class => re.push(c),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|e| format!("{name}: invalid glob {pattern:?}: {e}"))
}

/// Finds a function and checks its arguments; the error names an unknown function.
pub(crate) fn resolve(
    name: &str,
    kind: FuncKind,
    mut args: Vec<Expr>,
    allow_route: bool,
) -> Result<Call, String> {
    let Some(&(func, _, fkind, min, max)) = TABLE
        .iter()
        .find(|t| t.1 == name && (t.0 != Func::Route || allow_route))
    else {
        let what = match kind {
            FuncKind::Editor => "editor",
            FuncKind::Converter => "converter",
        };
        return Err(format!(
            "unsupported {what} {name:?} (docs/ottl.md lists the supported functions)"
        ));
    };
    if fkind != kind {
        return Err(match kind {
            FuncKind::Editor => {
                format!("{name} is a converter; a statement starts with an editor such as set")
            }
            FuncKind::Converter => {
                format!("{name} is an editor; only converters can be used in an expression")
            }
        });
    }
    if args.len() < min || args.len() > max {
        let want = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(format!("{name} takes {want} arguments, got {}", args.len()));
    }
    if func == Func::SetSemconvSpanName {
        for (i, what) in ["semconv_version", "original_span_name_attribute"]
            .iter()
            .enumerate()
            .take(args.len())
        {
            if !matches!(args[i], Expr::Lit(Value::Str(_))) {
                return Err(format!("{name}: {what} must be a string literal"));
            }
        }
    } else if kind == FuncKind::Editor
        && !metric_editor(func)
        && func != Func::MergeHistogramBuckets
        && !matches!(args[0], Expr::Path(_))
    {
        return Err(format!("{name}: the first argument must be a path to edit"));
    }
    // A bare converter name is an argument only where a function is taken.
    for (i, a) in args.iter().enumerate() {
        if let Expr::Func(g) = a {
            if replace_fn_index(func) != Some(i) {
                return Err(format!(
                    "{name}: argument {} names the function {} without calling it; only the function argument of the replace_* editors takes one",
                    i + 1,
                    func_name(*g)
                ));
            }
        }
    }
    let mut grok = None;
    let re = match func {
        Func::ExtractGrokPatterns => {
            grok = Some(grok::prepare(&args)?);
            None
        }
        Func::UserAgent => {
            useragent::prepare()?;
            None
        }
        Func::GetXml
        | Func::InsertXml
        | Func::RemoveXml
        | Func::ConvertAttributesToElementsXml
        | Func::ConvertTextToElementsXml => {
            xpath::check(func, &args)?;
            None
        }
        Func::ConvertGaugeToSum => {
            let t = lit_str(name, &args, 0, "aggregation temporality")?;
            if !matches!(t, "cumulative" | "delta") {
                return Err(format!(
                    "{name}: aggregation temporality {t:?} must be \"cumulative\" or \"delta\""
                ));
            }
            lit_bool(name, &args, 1, "is_monotonic")?;
            None
        }
        Func::MergeHistogramBuckets => {
            let method = match args.get(1) {
                Some(_) => histogram::Method::parse(lit_str(name, &args, 1, "method")?)?,
                None => histogram::Method::RemoveExplicitBound,
            };
            // A literal target is checked now, as upstream checks it when the statement is built.
            if let Expr::Lit(v) = &args[0] {
                let target = float_like(v)?;
                if method == histogram::Method::LimitBuckets {
                    histogram::max_buckets(target)?;
                }
            }
            None
        }
        Func::AggregateOnAttributes => {
            let f = lit_str(name, &args, 0, "aggregation function")?;
            if !matches!(f, "sum" | "max" | "min" | "mean" | "median" | "count") {
                return Err(format!(
                    "{name}: unknown aggregation function {f:?}: expected sum, max, min, mean, median or count"
                ));
            }
            None
        }
        Func::ScaleMetric => {
            if !matches!(args[0], Expr::Lit(Value::Int(_) | Value::Double(_))) {
                return Err(format!("{name}: the factor must be a number literal"));
            }
            None
        }
        Func::ConvertSummaryCountValToSum | Func::ConvertSummarySumValToSum => {
            let t = lit_str(name, &args, 0, "aggregation temporality")?;
            crate::metricfns::temporality(name, &Value::Str(t.into()))?;
            lit_bool(name, &args, 1, "is_monotonic")?;
            if args.len() > 2 {
                lit_str(name, &args, 2, "suffix")?;
            }
            None
        }
        Func::ConvertSummaryQuantileValToGauge => {
            for (i, what) in ["attributeKey", "suffix"].iter().enumerate() {
                if !matches!(args.get(i), None | Some(Expr::Lit(Value::Nil))) {
                    lit_str(name, &args, i, what)?;
                }
            }
            None
        }
        Func::AggregateOnAttributeValue => {
            let f = lit_str(name, &args, 0, "aggregation function")?;
            if !matches!(f, "sum" | "max" | "min" | "mean" | "median" | "count") {
                return Err(format!(
                    "{name}: unknown aggregation function {f:?}: expected sum, max, min, mean, median or count"
                ));
            }
            lit_str(name, &args, 1, "attribute")?;
            match &args[2] {
                Expr::ListLit(l) if l.iter().all(|x| matches!(x, Expr::Lit(Value::Str(_)))) => {}
                _ => {
                    return Err(format!(
                        "{name}: argument 3 (values) must be a list of string literals"
                    ))
                }
            }
            lit_str(name, &args, 3, "newValue")?;
            None
        }
        Func::ExtractCountMetric | Func::ExtractSumMetric => {
            lit_bool(name, &args, 0, "is_monotonic")?;
            if args.len() > 1 {
                lit_str(name, &args, 1, "suffix")?;
            }
            None
        }
        Func::DeleteMatchingKeys | Func::KeepMatchingKeys => {
            Some(regex(name, lit_str(name, &args, 1, "pattern")?)?)
        }
        Func::ReplacePattern => {
            check_replace_fn(name, func, &args)?;
            Some(regex(name, lit_str(name, &args, 1, "regex")?)?)
        }
        Func::ReplaceAllPatterns => {
            check_replace_fn(name, func, &args)?;
            let mode = lit_str(name, &args, 1, "mode")?;
            if mode != "key" && mode != "value" {
                return Err(format!(
                    "{name}: mode must be \"key\" or \"value\", got {mode:?}"
                ));
            }
            Some(regex(name, lit_str(name, &args, 2, "regex")?)?)
        }
        Func::ReplaceMatch | Func::ReplaceAllMatches => {
            check_replace_fn(name, func, &args)?;
            Some(glob(name, lit_str(name, &args, 1, "pattern")?)?)
        }
        Func::IsMatch => Some(regex(name, lit_str(name, &args, 1, "pattern")?)?),
        Func::ExtractPatterns => {
            let re = regex(name, lit_str(name, &args, 1, "pattern")?)?;
            if re.capture_names().flatten().next().is_none() {
                return Err(format!(
                    "{name}: the pattern needs at least one named group, as in (?P<name>…)"
                ));
            }
            Some(re)
        }
        Func::MergeMaps => {
            let s = lit_str(name, &args, 2, "strategy")?;
            if !matches!(s, "insert" | "update" | "upsert") {
                return Err(format!(
                    "{name}: strategy must be insert, update or upsert, got {s:?}"
                ));
            }
            None
        }
        Func::Limit | Func::TruncateAll => {
            if lit_int(name, &args, 1, "limit")? < 1 {
                return Err(format!("{name}: the limit must be at least 1"));
            }
            None
        }
        Func::SpanId | Func::TraceId | Func::ProfileId => {
            let want = if func == Func::SpanId { 8 } else { 16 };
            // A hex string literal is turned into the bytes once, here.
            if let Expr::Lit(Value::Str(h)) = &args[0] {
                if let Ok(b) = hex::decode(h) {
                    args[0] = Expr::Lit(Value::Bytes(b));
                }
            }
            match &args[0] {
                Expr::Lit(Value::Bytes(b)) if b.len() == want => None,
                _ => {
                    return Err(format!(
                    "{name} takes a {want}-byte literal such as 0x{} or a string of {} hex digits",
                    "00".repeat(want),
                    2 * want
                ))
                }
            }
        }
        Func::Time => {
            lit_str(name, &args, 1, "format")?;
            if let Some(Expr::Lit(Value::Str(loc))) = args.get(2) {
                time_zone(loc)?;
            }
            // Month and day names are read in English only.
            if let Some(Expr::Lit(Value::Str(locale))) = args.get(3) {
                let lang = locale.split(['-', '_']).next().unwrap_or_default();
                if !(locale.is_empty() || lang.eq_ignore_ascii_case("en")) {
                    return Err(format!(
                        "{name}: locale {locale:?} is not built: vigil reads English names only"
                    ));
                }
            }
            None
        }
        Func::FormatTime => {
            if let Some(Expr::Lit(Value::Str(fmt))) = args.get(1) {
                check_time_format(name, fmt)?;
            }
            None
        }
        _ => {
            check_literals(func, name, &args)?;
            None
        }
    };
    Ok(Call {
        func,
        args,
        regex: re,
        grok,
    })
}

/// Literal arguments of the newer converters that otelcol checks when the statement is built (a
/// case, mode, encoding, order, protocol, duration or delimiter), checked here at load the same way.
fn check_literals(func: Func, name: &str, args: &[Expr]) -> Result<(), String> {
    let lit = |i: usize| match args.get(i) {
        Some(Expr::Lit(Value::Str(s))) => Some(s.as_str()),
        _ => None,
    };
    let refuse = |i: usize, what: &str| -> Result<(), String> {
        Err(format!(
            "{name}: argument {} {:?} is not {what}",
            i + 1,
            lit(i).unwrap_or_default()
        ))
    };
    match func {
        Func::ConvertCase if lit(1).is_some_and(|c| !text::known_case(c)) => {
            refuse(1, "a case (lower, upper, snake or camel)")
        }
        Func::ParseCsv if lit(4).is_some_and(|m| !text::known_csv_mode(m)) => {
            refuse(4, "a mode (strict, lazyQuotes or ignoreQuotes)")
        }
        Func::Decode if lit(1).is_some_and(|e| !text::known_encoding(e)) => refuse(
            1,
            "a known encoding (base64, base64-raw, base64-url, base64-raw-url or an IANA name)",
        ),
        Func::Base64Encode if lit(1).is_some_and(|v| text::base64_engine(v).is_none()) => refuse(
            1,
            "a base64 variant (base64, base64-raw, base64-url or base64-raw-url)",
        ),
        Func::Sort if lit(1).is_some_and(|o| o != "asc" && o != "desc") => {
            refuse(1, "an order (asc or desc)")
        }
        Func::CommunityId if lit(4).is_some_and(|p| digest::protocol(p).is_none()) => {
            refuse(4, "a protocol (ICMP, TCP, UDP, RSVP, ICMP6 or SCTP)")
        }
        Func::Duration => match lit(0) {
            Some(d) => clock::parse_duration(d).map(|_| ()),
            None => Ok(()),
        },
        Func::ParseKeyValue | Func::ToKeyValueString => {
            let delim = lit(1).filter(|d| !d.is_empty()).unwrap_or("=");
            let pair = lit(2).filter(|d| !d.is_empty()).unwrap_or(" ");
            if func == Func::ToKeyValueString && (lit(1) == Some("") || lit(2) == Some("")) {
                return Err(format!("{name}: a delimiter cannot be an empty string"));
            }
            if delim == pair {
                return Err(format!(
                    "{name}: pair delimiter {pair:?} cannot be equal to delimiter {delim:?}"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A number as OTTL's `FloatLikeGetter` reads one: a double, an int, a numeric string or a bool.
fn float_like(v: &Value) -> Result<f64, String> {
    match v {
        Value::Double(d) => Ok(*d),
        Value::Int(i) => Ok(*i as f64),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        Value::Str(s) => s
            .parse()
            .map_err(|_| format!("merge_histogram_buckets: target_value {s:?} is not a number")),
        Value::Nil => Err("merge_histogram_buckets: target_value must not be nil".into()),
        o => Err(format!(
            "merge_histogram_buckets: target_value must be a number, got a {}",
            o.kind()
        )),
    }
}

fn arg(c: &Call, i: usize, t: &dyn Target) -> Result<Value, String> {
    match c.args.get(i) {
        Some(e) => eval(e, t),
        None => Ok(Value::Nil),
    }
}

pub(crate) fn func_name(f: Func) -> &'static str {
    name(f)
}

fn name(f: Func) -> &'static str {
    TABLE.iter().find(|x| x.0 == f).map_or("?", |x| x.1)
}

fn want_str(f: Func, v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        o => Err(format!(
            "{}: expected a string, got a {}",
            name(f),
            o.kind()
        )),
    }
}

fn want_time(f: Func, v: Value) -> Result<i64, String> {
    match v {
        Value::Time(t) => Ok(t),
        o => Err(format!("{}: expected a time, got a {}", name(f), o.kind())),
    }
}

/// Runs a converter.
pub(crate) fn call_converter(c: &Call, t: &dyn Target) -> Result<Value, String> {
    use Value as V;
    let f = c.func;
    let re = || {
        c.regex
            .as_ref()
            .ok_or("internal: the pattern was not compiled")
    };
    for more in [
        digest::call,
        clock::call,
        text::call,
        collect::call,
        xml::call,
        xpath::call,
        grok::call,
        useragent::call,
    ] {
        if let Some(r) = more(c, t) {
            return r;
        }
    }
    Ok(match f {
        Func::ParseJson => {
            let s = match arg(c, 0, t)? {
                V::Str(s) => s,
                V::Bytes(b) => {
                    String::from_utf8(b).map_err(|_| "ParseJSON: bytes are not UTF-8")?
                }
                o => return Err(format!("ParseJSON: expected a string, got a {}", o.kind())),
            };
            let j: serde_json::Value =
                serde_json::from_str(&s).map_err(|e| format!("ParseJSON: {e}"))?;
            if !(j.is_object() || j.is_array()) {
                return Err("ParseJSON: the document is neither an object nor an array".into());
            }
            V::from_json(j)
        }
        Func::Concat => {
            let items = match arg(c, 0, t)? {
                V::List(l) => l,
                o => return Err(format!("Concat: expected a list, got a {}", o.kind())),
            };
            let delim = want_str(f, arg(c, 1, t)?)?;
            let parts: Vec<String> = items
                .iter()
                .map(|a| V::from_any(Some(a)).to_text())
                .collect();
            V::Str(parts.join(&delim))
        }
        Func::Split => match arg(c, 0, t)? {
            V::Nil => V::Nil,
            v => {
                let s = want_str(f, v)?;
                let d = want_str(f, arg(c, 1, t)?)?;
                V::List(
                    s.split(d.as_str())
                        .map(|p| V::Str(p.to_string()).into_any())
                        .collect(),
                )
            }
        },
        Func::IsMatch => match arg(c, 0, t)? {
            V::Nil => V::Bool(false),
            V::Map(_) | V::List(_) => {
                return Err("IsMatch: the target is a map or list, not a string".into())
            }
            v => V::Bool(re()?.is_match(&v.to_text())),
        },
        Func::IsString => V::Bool(matches!(arg(c, 0, t)?, V::Str(_))),
        Func::IsMap => V::Bool(matches!(arg(c, 0, t)?, V::Map(_))),
        Func::IsList => V::Bool(matches!(arg(c, 0, t)?, V::List(_))),
        Func::IsInt => V::Bool(matches!(arg(c, 0, t)?, V::Int(_))),
        Func::IsDouble => V::Bool(matches!(arg(c, 0, t)?, V::Double(_))),
        Func::IsBool => V::Bool(matches!(arg(c, 0, t)?, V::Bool(_))),
        Func::Int => match arg(c, 0, t)? {
            V::Int(i) => V::Int(i),
            V::Double(d) if d.is_finite() => V::Int(d.trunc() as i64),
            V::Bool(b) => V::Int(i64::from(b)),
            V::Str(s) => s.trim().parse::<i64>().map_or(V::Nil, V::Int),
            _ => V::Nil,
        },
        Func::Double => match arg(c, 0, t)? {
            V::Int(i) => V::Double(i as f64),
            V::Double(d) => V::Double(d),
            V::Bool(b) => V::Double(if b { 1.0 } else { 0.0 }),
            V::Str(s) => s.trim().parse::<f64>().map_or(V::Nil, V::Double),
            _ => V::Nil,
        },
        Func::String => match arg(c, 0, t)? {
            V::Nil => V::Nil,
            v => V::Str(v.to_text()),
        },
        Func::Len => V::Int(match arg(c, 0, t)? {
            V::Str(s) => s.chars().count() as i64,
            V::Bytes(b) => b.len() as i64,
            V::Map(m) => m.len() as i64,
            V::List(l) => l.len() as i64,
            o => return Err(format!("Len: a {} has no length", o.kind())),
        }),
        Func::ToLowerCase => V::Str(want_str(f, arg(c, 0, t)?)?.to_lowercase()),
        Func::ToUpperCase => V::Str(want_str(f, arg(c, 0, t)?)?.to_uppercase()),
        Func::Substring => {
            let s = want_str(f, arg(c, 0, t)?)?;
            let (V::Int(start), V::Int(len)) = (arg(c, 1, t)?, arg(c, 2, t)?) else {
                return Err("Substring: start and length must be integers".into());
            };
            let end = start.checked_add(len).unwrap_or(i64::MAX);
            if start < 0 || len < 0 || end as u64 > s.len() as u64 {
                return Err(format!(
                    "Substring: start {start} and length {len} are outside a string of {} bytes",
                    s.len()
                ));
            }
            let (mut a, mut b) = (start as usize, end as usize);
            // utf8_safe: a start inside a character moves to the next one, an end back to the
            // previous one, so nothing is split (the result may be shorter than asked).
            if arg(c, 3, t)? == V::Bool(true) {
                while !s.is_char_boundary(a) {
                    a += 1;
                }
                while !s.is_char_boundary(b) {
                    b -= 1;
                }
                b = b.max(a);
            }
            match s.get(a..b) {
                Some(x) => V::Str(x.to_string()),
                None => return Err("Substring: the range splits a character".into()),
            }
        }
        Func::SpanId | Func::TraceId | Func::ProfileId => arg(c, 0, t)?,
        Func::Sha256 => V::Str(hex::encode(sha2::Sha256::digest(
            want_str(f, arg(c, 0, t)?)?.as_bytes(),
        ))),
        Func::Md5 => V::Str(hex::encode(md5::Md5::digest(
            want_str(f, arg(c, 0, t)?)?.as_bytes(),
        ))),
        Func::Hex => match arg(c, 0, t)? {
            V::Bytes(b) => V::Str(hex::encode(b)),
            V::Str(s) => V::Str(hex::encode(s.as_bytes())),
            V::Int(i) => V::Str(hex::encode(i.to_be_bytes())),
            o => return Err(format!("Hex: cannot encode a {}", o.kind())),
        },
        Func::Time => {
            let s = want_str(f, arg(c, 0, t)?)?;
            let fmt = want_str(f, arg(c, 1, t)?)?;
            let zone = match arg(c, 2, t)? {
                V::Str(loc) => time_zone(&loc)?,
                _ => None,
            };
            V::Time(parse_time(&s, &fmt, zone)?)
        }
        Func::Now => V::Time(
            chrono::Utc::now()
                .timestamp_nanos_opt()
                .ok_or("Now: the clock is outside the representable range")?,
        ),
        Func::Unix => {
            let (V::Int(secs), nanos) = (arg(c, 0, t)?, arg(c, 1, t)?) else {
                return Err("Unix: seconds must be an integer".into());
            };
            let nanos = match nanos {
                V::Nil => 0,
                V::Int(n) => n,
                o => {
                    return Err(format!(
                        "Unix: nanoseconds must be an integer, got a {}",
                        o.kind()
                    ))
                }
            };
            V::Time(
                secs.checked_mul(1_000_000_000)
                    .and_then(|s| s.checked_add(nanos))
                    .ok_or("Unix: time out of range")?,
            )
        }
        Func::UnixNano => V::Int(want_time(f, arg(c, 0, t)?)?),
        Func::UnixMicro => V::Int(want_time(f, arg(c, 0, t)?)?.div_euclid(1_000)),
        Func::UnixMilli => V::Int(want_time(f, arg(c, 0, t)?)?.div_euclid(1_000_000)),
        Func::UnixSeconds => V::Int(want_time(f, arg(c, 0, t)?)?.div_euclid(1_000_000_000)),
        Func::ExtractPatterns => {
            let s = want_str(f, arg(c, 0, t)?)?;
            let re = re()?;
            let mut out = Vec::new();
            if let Some(caps) = re.captures(&s) {
                for n in re.capture_names().flatten() {
                    if let Some(m) = caps.name(n) {
                        out.push(kv(n, V::Str(m.as_str().to_string())));
                    }
                }
            }
            V::Map(out)
        }
        Func::Format => {
            let fmt = want_str(f, arg(c, 0, t)?)?;
            let items = match arg(c, 1, t)? {
                V::List(l) => l,
                o => return Err(format!("Format: expected a list, got a {}", o.kind())),
            };
            V::Str(sprintf(&fmt, &items)?)
        }
        Func::HasAttrOnDatapoint => {
            let k = want_str(f, arg(c, 0, t)?)?;
            let v = arg(c, 1, t)?;
            V::Bool(t.datapoint_attributes()?.iter().any(|attrs| {
                attrs
                    .iter()
                    .any(|x| x.key == k && V::from_any(x.value.as_ref()) == v)
            }))
        }
        Func::HasAttrKeyOnDatapoint => {
            let k = want_str(f, arg(c, 0, t)?)?;
            V::Bool(
                t.datapoint_attributes()?
                    .iter()
                    .any(|attrs| attrs.iter().any(|x| x.key == k)),
            )
        }
        Func::FormatTime => {
            let at = want_time(f, arg(c, 0, t)?)?;
            let fmt = want_str(f, arg(c, 1, t)?)?;
            V::Str(format_time(at, &fmt)?)
        }
        Func::HasPrefix | Func::HasSuffix => {
            let target = match arg(c, 0, t)? {
                V::Str(s) => s,
                V::Nil => return Ok(V::Bool(false)),
                o => {
                    return Err(format!(
                        "{}: the target is a {}, not a string",
                        name(f),
                        o.kind()
                    ))
                }
            };
            let affix = want_str(f, arg(c, 1, t)?)?;
            V::Bool(if f == Func::HasPrefix {
                target.starts_with(&affix)
            } else {
                target.ends_with(&affix)
            })
        }
        Func::ContainsValue => {
            let item = arg(c, 1, t)?;
            match arg(c, 0, t)? {
                V::List(items) => V::Bool(items.iter().any(|x| V::from_any(Some(x)) == item)),
                V::Nil => V::Bool(false),
                o => {
                    return Err(format!(
                        "ContainsValue: the target is a {}, not a list",
                        o.kind()
                    ))
                }
            }
        }
        Func::IsRootSpan => {
            let p = Path {
                level: crate::Context::Span,
                field: crate::Field::ParentSpanId,
                keys: Vec::new(),
                text: "span.parent_span_id".into(),
            };
            match t.get(&p)? {
                V::Bytes(b) => V::Bool(b.iter().all(|x| *x == 0)),
                _ => V::Bool(true),
            }
        }
        _ => return Err(format!("{} is an editor, not a converter", name(f))),
    })
}

/// `Time`'s location: an IANA zone name; empty (or `UTC`) is UTC.
fn time_zone(loc: &str) -> Result<Option<chrono_tz::Tz>, String> {
    if loc.is_empty() || loc == "UTC" {
        return Ok(None);
    }
    loc.parse::<chrono_tz::Tz>().map(Some).map_err(|_| {
        format!("Time: unknown location {loc:?} (expected an IANA zone such as America/New_York)")
    })
}

/// Parses a time with a strptime-style format (`%Y-%m-%dT%H:%M:%S%z`, …); `%L` is milliseconds. A
/// time without an offset is in `zone` (UTC when none); a local time a clock change skips or
/// repeats takes its earlier reading.
fn parse_time(s: &str, fmt: &str, zone: Option<chrono_tz::Tz>) -> Result<i64, String> {
    use chrono::TimeZone;
    let fmt = fmt.replace("%L", "%3f");
    let local = |t: chrono::NaiveDateTime| match zone {
        None => t.and_utc().timestamp_nanos_opt(),
        Some(z) => z
            .from_local_datetime(&t)
            .earliest()
            .and_then(|t| t.timestamp_nanos_opt()),
    };
    let nanos = if let Ok(t) = chrono::DateTime::parse_from_str(s, &fmt) {
        t.timestamp_nanos_opt()
    } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, &fmt) {
        local(t)
    } else {
        let d = chrono::NaiveDate::parse_from_str(s, &fmt)
            .map_err(|e| format!("Time: {s:?} does not match {fmt:?}: {e}"))?;
        d.and_hms_opt(0, 0, 0).and_then(local)
    };
    nanos.ok_or_else(|| format!("Time: {s:?} is outside the representable range"))
}

/// OTTL's time directives (`%Y`, `%m`, `%d`, `%H`, `%M`, `%S`, `%L` milliseconds, `%f`
/// microseconds, `%z`, `%Z`, …) in chrono's spelling; a directive chrono does not know is an error,
/// never a panic.
fn chrono_format(name: &str, fmt: &str) -> Result<String, String> {
    let f = fmt.replace("%L", "%3f").replace("%f", "%6f");
    let items = chrono::format::StrftimeItems::new(&f);
    if items
        .clone()
        .any(|i| matches!(i, chrono::format::Item::Error))
    {
        return Err(format!("{name}: invalid time format {fmt:?}"));
    }
    Ok(f)
}

fn check_time_format(name: &str, fmt: &str) -> Result<(), String> {
    chrono_format(name, fmt).map(|_| ())
}

/// `FormatTime`: a time in UTC, written with OTTL's directives.
fn format_time(nanos: i64, fmt: &str) -> Result<String, String> {
    use std::fmt::Write;
    let f = chrono_format("FormatTime", fmt)?;
    let at = chrono::DateTime::from_timestamp_nanos(nanos);
    let mut out = String::new();
    write!(out, "{}", at.format(&f))
        .map_err(|_| format!("FormatTime: cannot write the time with {fmt:?}"))?;
    Ok(out)
}

/// Go's `fmt.Sprintf` for the verbs OTTL's `Format` examples use: `%s`, `%v`, `%d`, `%f`, `%%`.
fn sprintf(fmt: &str, items: &[AnyValue]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = items.iter();
    let mut chars = fmt.chars();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(v @ ('s' | 'v' | 'd' | 'f')) => {
                let item = Value::from_any(it.next());
                match (v, &item) {
                    ('d', Value::Int(i)) => out.push_str(&i.to_string()),
                    ('f', Value::Double(d)) => out.push_str(&format!("{d:.6}")),
                    ('f', Value::Int(i)) => out.push_str(&format!("{:.6}", *i as f64)),
                    ('d' | 'f', o) => return Err(format!("Format: %{v} given a {}", o.kind())),
                    _ => out.push_str(&item.to_text()),
                }
            }
            Some(o) => return Err(format!("Format: unsupported verb %{o}")),
            None => return Err("Format: the format ends with %".into()),
        }
    }
    Ok(out)
}

fn target_path(c: &Call) -> Result<&Path, String> {
    match c.args.first() {
        Some(Expr::Path(p)) => Ok(p),
        _ => Err("internal: an editor without a target path".into()),
    }
}

/// Reads the editor's target as a map; nil (absent) is `None`.
fn target_map(c: &Call, t: &dyn Target) -> Result<Option<Vec<KeyValue>>, String> {
    let p = target_path(c)?;
    match t.get(p)? {
        Value::Map(m) => Ok(Some(m)),
        Value::Nil => Ok(None),
        o => Err(format!(
            "{}: {} is a {}, not a map",
            name(c.func),
            p.text,
            o.kind()
        )),
    }
}

/// Runs an editor on its target.
pub(crate) fn run_editor(c: &Call, t: &mut dyn Target) -> Result<(), String> {
    use Value as V;
    let f = c.func;
    let re = || {
        c.regex
            .as_ref()
            .ok_or("internal: the pattern was not compiled")
    };
    let p = || target_path(c);
    if let Some(r) = collect::edit(c, t) {
        return r;
    }
    match f {
        Func::Route => Ok(()),
        Func::SetSemconvSpanName => semconv::set_span_name(c, t),
        Func::MergeHistogramBuckets => {
            let target = float_like(&arg(c, 0, t)?)?;
            let max = match arg(c, 1, t)? {
                V::Str(m) if histogram::Method::parse(&m)? == histogram::Method::LimitBuckets => {
                    Some(histogram::max_buckets(target)?)
                }
                _ => None,
            };
            t.edit_histogram_point(&mut |p| match max {
                Some(max) => histogram::limit(p, max),
                None => histogram::remove_bound(p, target),
            })
        }
        Func::ConvertGaugeToSum
        | Func::ConvertSumToGauge
        | Func::CopyMetric
        | Func::ExtractCountMetric
        | Func::ExtractSumMetric
        | Func::AggregateOnAttributes
        | Func::ScaleMetric
        | Func::ConvertSummaryQuantileValToGauge
        | Func::AggregateOnAttributeValue => metric_edit(c, t),
        Func::ConvertSummaryCountValToSum | Func::ConvertSummarySumValToSum => {
            summary_point_edit(c, t)
        }
        Func::Set => match arg(c, 1, t)? {
            // OTTL's set leaves the target alone when the value is nil.
            V::Nil => Ok(()),
            v => t.set(p()?, v),
        },
        Func::DeleteKey => {
            let k = want_str(f, arg(c, 1, t)?)?;
            edit_map(c, t, |m| m.retain(|x| x.key != k))
        }
        Func::DeleteMatchingKeys => {
            let re = re()?.clone();
            edit_map(c, t, |m| m.retain(|x| !re.is_match(&x.key)))
        }
        Func::KeepKeys => {
            let keys: Vec<String> = match arg(c, 1, t)? {
                V::List(l) => l.iter().map(|a| V::from_any(Some(a)).to_text()).collect(),
                V::Str(s) => vec![s],
                o => {
                    return Err(format!(
                        "keep_keys: expected a list of keys, got a {}",
                        o.kind()
                    ))
                }
            };
            edit_map(c, t, |m| m.retain(|x| keys.contains(&x.key)))
        }
        Func::KeepMatchingKeys => {
            let re = re()?.clone();
            edit_map(c, t, |m| m.retain(|x| re.is_match(&x.key)))
        }
        Func::ReplacePattern => {
            let rep = want_str(f, arg(c, 2, t)?)?;
            match t.get(p()?)? {
                V::Str(s) if has_replace_fn(c) => {
                    if re()?.is_match(&s) {
                        let new = replace_matches_with_fn(c, t, re()?, &s, &rep)?;
                        t.set(p()?, V::Str(new))?;
                    }
                    Ok(())
                }
                V::Str(s) => {
                    let new = re()?.replace_all(&s, rep.as_str()).into_owned();
                    if new != s {
                        t.set(p()?, V::Str(new))?;
                    }
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        Func::ReplaceAllPatterns if has_replace_fn(c) => {
            let by_key = matches!(c.args.get(1), Some(Expr::Lit(V::Str(m))) if m == "key");
            let rep = want_str(f, arg(c, 3, t)?)?;
            let re = re()?;
            let Some(mut m) = target_map(c, t)? else {
                return Ok(());
            };
            for x in m.iter_mut() {
                if by_key {
                    if re.is_match(&x.key) {
                        x.key = replace_matches_with_fn(c, t, re, &x.key, &rep)?;
                    }
                } else if let V::Str(s) = V::from_any(x.value.as_ref()) {
                    if re.is_match(&s) {
                        let new = replace_matches_with_fn(c, t, re, &s, &rep)?;
                        x.value = Some(V::Str(new).into_any());
                    }
                }
            }
            t.set(p()?, V::Map(m))
        }
        Func::ReplaceAllPatterns => {
            let by_key = matches!(c.args.get(1), Some(Expr::Lit(V::Str(m))) if m == "key");
            let rep = want_str(f, arg(c, 3, t)?)?;
            let re = re()?.clone();
            edit_map(c, t, |m| {
                for x in m.iter_mut() {
                    if by_key {
                        x.key = re.replace_all(&x.key, rep.as_str()).into_owned();
                    } else if let V::Str(s) = V::from_any(x.value.as_ref()) {
                        x.value =
                            Some(V::Str(re.replace_all(&s, rep.as_str()).into_owned()).into_any());
                    }
                }
            })
        }
        Func::ReplaceMatch => {
            let rep = want_str(f, arg(c, 2, t)?)?;
            match t.get(p()?)? {
                V::Str(s) if re()?.is_match(&s) => {
                    let rep = replace_with_fn(c, t, rep)?;
                    t.set(p()?, V::Str(rep))
                }
                _ => Ok(()),
            }
        }
        Func::ReplaceAllMatches => {
            let rep = want_str(f, arg(c, 2, t)?)?;
            // The function runs once, on the replacement, and only when some value matches.
            let rep = if has_replace_fn(c) {
                let matched = target_map(c, t)?.is_some_and(|m| {
                    m.iter().any(|x| {
                        matches!(V::from_any(x.value.as_ref()), V::Str(s) if re().is_ok_and(|r| r.is_match(&s)))
                    })
                });
                if !matched {
                    return Ok(());
                }
                replace_with_fn(c, t, rep)?
            } else {
                rep
            };
            let re = re()?.clone();
            edit_map(c, t, |m| {
                for x in m.iter_mut() {
                    if let V::Str(s) = V::from_any(x.value.as_ref()) {
                        if re.is_match(&s) {
                            x.value = Some(V::Str(rep.clone()).into_any());
                        }
                    }
                }
            })
        }
        Func::MergeMaps => {
            let src = match arg(c, 1, t)? {
                V::Map(m) => m,
                V::Nil => return Ok(()),
                o => {
                    return Err(format!(
                        "merge_maps: the source is a {}, not a map",
                        o.kind()
                    ))
                }
            };
            let strategy = match c.args.get(2) {
                Some(Expr::Lit(V::Str(s))) => s.clone(),
                _ => "upsert".into(),
            };
            let mut m = target_map(c, t)?.unwrap_or_default();
            for x in src {
                match m.iter_mut().find(|y| y.key == x.key) {
                    Some(y) if strategy != "insert" => y.value = x.value,
                    Some(_) => {}
                    None if strategy != "update" => m.push(x),
                    None => {}
                }
            }
            t.set(p()?, V::Map(m))
        }
        Func::Limit => {
            let n = match c.args.get(1) {
                Some(Expr::Lit(V::Int(n))) => *n as usize,
                _ => return Err("limit: the limit must be an integer literal".into()),
            };
            let prio: Vec<String> = match arg(c, 2, t)? {
                V::List(l) => l.iter().map(|a| V::from_any(Some(a)).to_text()).collect(),
                V::Nil => Vec::new(),
                o => {
                    return Err(format!(
                        "limit: priority keys must be a list, got a {}",
                        o.kind()
                    ))
                }
            };
            edit_map(c, t, |m| {
                if m.len() <= n {
                    return;
                }
                let mut keep = vec![false; m.len()];
                let mut left = n;
                for (i, x) in m.iter().enumerate() {
                    if left > 0 && prio.contains(&x.key) {
                        keep[i] = true;
                        left -= 1;
                    }
                }
                for k in keep.iter_mut() {
                    if left > 0 && !*k {
                        *k = true;
                        left -= 1;
                    }
                }
                let mut i = 0;
                m.retain(|_| {
                    i += 1;
                    keep[i - 1]
                });
            })
        }
        Func::TruncateAll => {
            let n = match c.args.get(1) {
                Some(Expr::Lit(V::Int(n))) => *n as usize,
                _ => return Err("truncate_all: the limit must be an integer literal".into()),
            };
            // utf8_safe (argument 3) is read but every cut is on a character boundary: strings
            // here are UTF-8, so otelcol's byte cut (utf8_safe = false) cannot be represented.
            let marker = match arg(c, 3, t)? {
                V::Nil => String::new(),
                V::Str(m) => m,
                o => {
                    return Err(format!(
                        "truncate_all: truncation_marker must be a string, got a {}",
                        o.kind()
                    ))
                }
            };
            if marker.len() > n {
                return Err(format!(
                    "truncate_all: the truncation marker {marker:?} is longer than the limit {n}"
                ));
            }
            edit_map(c, t, |m| {
                for x in m.iter_mut() {
                    if let V::Str(s) = V::from_any(x.value.as_ref()) {
                        if s.len() > n {
                            let mut end = n - marker.len();
                            while !s.is_char_boundary(end) {
                                end -= 1;
                            }
                            x.value = Some(V::Str(format!("{}{marker}", &s[..end])).into_any());
                        }
                    }
                }
            })
        }
        Func::Flatten => {
            let prefix = match arg(c, 1, t)? {
                V::Nil => String::new(),
                V::Str(s) => s,
                o => {
                    return Err(format!(
                        "flatten: the prefix must be a string, got a {}",
                        o.kind()
                    ))
                }
            };
            let depth = match arg(c, 2, t)? {
                V::Nil => FLATTEN_MAX_DEPTH,
                V::Int(d) if d >= 0 => d.min(FLATTEN_MAX_DEPTH),
                o => {
                    return Err(format!(
                        "flatten: depth must be a non-negative integer, got {}",
                        o.to_text()
                    ))
                }
            };
            let resolve = match arg(c, 3, t)? {
                V::Nil => false,
                V::Bool(b) => b,
                o => {
                    return Err(format!(
                        "flatten: resolveConflicts must be true or false, got a {}",
                        o.kind()
                    ))
                }
            };
            edit_map(c, t, |m| {
                let mut out = Vec::with_capacity(m.len());
                if resolve {
                    let mut seen = std::collections::HashMap::new();
                    flatten_resolving(std::mem::take(m), &prefix, depth, &mut out, &mut seen);
                } else {
                    flatten(std::mem::take(m), &prefix, depth, &mut out);
                }
                *m = out;
            })
        }
        Func::Append => {
            let mut add: Vec<AnyValue> = Vec::new();
            match arg(c, 1, t)? {
                V::Nil => {}
                v => add.push(v.into_any()),
            }
            match arg(c, 2, t)? {
                V::Nil => {}
                V::List(l) => add.extend(l),
                o => return Err(format!("append: values must be a list, got a {}", o.kind())),
            }
            let list = match t.get(p()?)? {
                V::Nil => add,
                V::List(mut l) => {
                    l.extend(add);
                    l
                }
                v => {
                    let mut l = vec![v.into_any()];
                    l.extend(add);
                    l
                }
            };
            t.set(p()?, V::List(list))
        }
        _ => Err(format!("{} is a converter, not an editor", name(f))),
    }
}

/// The metric-context editors of the transform processor, with otelcol's semantics.
/// `convert_summary_{count,sum}_val_to_sum` in the data point context (where otelcol defines
/// them): each summary point that meets the condition adds its point to one new sum per metric.
/// Outside a data point (the metric context) the whole metric converts at once.
fn summary_point_edit(c: &Call, t: &mut dyn Target) -> Result<(), String> {
    let count = c.func == Func::ConvertSummaryCountValToSum;
    let temporality = crate::metricfns::temporality(name(c.func), &arg(c, 0, t)?)?;
    let monotonic = matches!(arg(c, 1, t)?, Value::Bool(true));
    let suffix = match arg(c, 2, t)? {
        Value::Str(s) => Some(s),
        _ => None,
    };
    let r = t.with_summary_point(&mut |m, p, added| {
        let new = crate::metricfns::summary_to_sum(
            m,
            std::iter::once(p),
            count,
            temporality,
            monotonic,
            suffix.clone(),
        );
        let existing = added.iter_mut().rev().find(|x| {
            x.name == new.name
                && matches!(
                    x.data,
                    Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(_))
                )
        });
        match (existing, new.data) {
            (Some(x), Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(mut s))) => {
                if let Some(vigil_core::otlp::metrics::v1::metric::Data::Sum(to)) = &mut x.data {
                    to.data_points.append(&mut s.data_points);
                }
            }
            (_, data) => added.push(vigil_core::otlp::metrics::v1::Metric { data, ..new }),
        }
    });
    match r {
        Ok(()) => Ok(()),
        Err(_) => metric_edit(c, t),
    }
}

fn metric_edit(c: &Call, t: &mut dyn Target) -> Result<(), String> {
    use vigil_core::otlp::metrics::v1::{
        metric::Data, number_data_point, AggregationTemporality, Gauge, NumberDataPoint, Sum,
    };
    let f = c.func;
    let mut strs = Vec::new();
    for i in 0..c.args.len() {
        strs.push(arg(c, i, t)?);
    }
    let text = |i: usize| -> Option<String> {
        match strs.get(i) {
            Some(Value::Str(s)) => Some(s.clone()),
            _ => None,
        }
    };
    let flag = |i: usize| matches!(strs.get(i), Some(Value::Bool(true)));
    t.edit_metric(&mut |m, added| {
        match f {
            // A gauge becomes a sum with the given temporality; other types are left alone.
            Func::ConvertGaugeToSum => {
                if let Some(Data::Gauge(g)) = &mut m.data {
                    let temporality = if text(0).as_deref() == Some("delta") {
                        AggregationTemporality::Delta
                    } else {
                        AggregationTemporality::Cumulative
                    };
                    m.data = Some(Data::Sum(Sum {
                        data_points: std::mem::take(&mut g.data_points),
                        aggregation_temporality: temporality as i32,
                        is_monotonic: flag(1),
                    }));
                }
            }
            Func::ConvertSumToGauge => {
                if let Some(Data::Sum(s)) = &mut m.data {
                    m.data = Some(Data::Gauge(Gauge {
                        data_points: std::mem::take(&mut s.data_points),
                    }));
                }
            }
            // A copy goes after the metrics of its scope, with the name, description and unit
            // given (in that order) instead of the original's.
            Func::CopyMetric => {
                let mut copy = m.clone();
                if let Some(n) = text(0) {
                    copy.name = n;
                }
                if let Some(d) = text(1) {
                    copy.description = d;
                }
                if let Some(u) = text(2) {
                    copy.unit = u;
                }
                added.push(copy);
            }
            // A monotonic-or-not sum of each point's count (unit "1") or sum (the metric's
            // unit), named with the suffix ("_count" / "_sum"); histograms, exponential
            // histograms and summaries only.
            Func::ExtractCountMetric | Func::ExtractSumMetric => {
                let count = f == Func::ExtractCountMetric;
                let name = if count {
                    "extract_count_metric"
                } else {
                    "extract_sum_metric"
                };
                // otelcol's README: `_count` / `_sum` by default, kept for backward compatibility.
                let suffix =
                    text(1).unwrap_or_else(|| if count { "_count" } else { "_sum" }.into());
                // (attributes, start, time, count, sum)
                type P<'x> = (
                    &'x [vigil_core::otlp::common::v1::KeyValue],
                    u64,
                    u64,
                    u64,
                    Option<f64>,
                );
                let (temporality, points): (i32, Vec<P<'_>>) = match &m.data {
                    Some(Data::Histogram(h)) => (
                        h.aggregation_temporality,
                        h.data_points
                            .iter()
                            .map(|p| {
                                (
                                    &p.attributes[..],
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    p.count,
                                    p.sum,
                                )
                            })
                            .collect(),
                    ),
                    Some(Data::ExponentialHistogram(h)) => (
                        h.aggregation_temporality,
                        h.data_points
                            .iter()
                            .map(|p| {
                                (
                                    &p.attributes[..],
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    p.count,
                                    p.sum,
                                )
                            })
                            .collect(),
                    ),
                    Some(Data::Summary(s)) => (
                        AggregationTemporality::Cumulative as i32,
                        s.data_points
                            .iter()
                            .map(|p| {
                                (
                                    &p.attributes[..],
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    p.count,
                                    Some(p.sum),
                                )
                            })
                            .collect(),
                    ),
                    _ => {
                        return Err(format!(
                        "{name}: metric {:?} is not a histogram, exponential histogram or summary",
                        m.name
                    ))
                    }
                };
                let data_points: Vec<NumberDataPoint> = points
                    .into_iter()
                    .filter_map(|(attrs, start, time, n, sum)| {
                        let value = if count {
                            number_data_point::Value::AsInt(n as i64)
                        } else {
                            // A histogram point without a sum adds nothing, as in otelcol.
                            number_data_point::Value::AsDouble(sum?)
                        };
                        Some(NumberDataPoint {
                            attributes: attrs.to_vec(),
                            start_time_unix_nano: start,
                            time_unix_nano: time,
                            value: Some(value),
                            ..Default::default()
                        })
                    })
                    .collect();
                if !data_points.is_empty() {
                    added.push(vigil_core::otlp::metrics::v1::Metric {
                        name: format!("{}{suffix}", m.name),
                        description: m.description.clone(),
                        unit: if count { "1".into() } else { m.unit.clone() },
                        data: Some(Data::Sum(Sum {
                            data_points,
                            aggregation_temporality: temporality,
                            is_monotonic: flag(0),
                        })),
                        ..Default::default()
                    });
                }
            }
            Func::AggregateOnAttributes => {
                let func = text(0).unwrap_or_default();
                let keep: Option<Vec<String>> = match strs.get(1) {
                    Some(Value::List(l)) => Some(
                        l.iter()
                            .map(|x| Value::from_any(Some(x)).to_text())
                            .collect(),
                    ),
                    _ => None,
                };
                crate::aggregate::on_attributes(m, &func, keep.as_deref())?;
            }
            Func::ScaleMetric => {
                let none = Value::Nil;
                crate::metricfns::scale(m, &strs[0], strs.get(1).unwrap_or(&none))?;
            }
            // A summary gives a sum of its points' counts or sums; other types are left alone.
            Func::ConvertSummaryCountValToSum | Func::ConvertSummarySumValToSum => {
                if let Some(Data::Summary(s)) = &m.data {
                    let fname = name(f);
                    let temporality = crate::metricfns::temporality(fname, &strs[0])?;
                    added.push(crate::metricfns::summary_to_sum(
                        m,
                        s.data_points.iter(),
                        f == Func::ConvertSummaryCountValToSum,
                        temporality,
                        flag(1),
                        text(2),
                    ));
                }
            }
            Func::ConvertSummaryQuantileValToGauge => {
                if let Some(g) = crate::metricfns::summary_quantiles(m, text(0), text(1)) {
                    added.push(g);
                }
            }
            Func::AggregateOnAttributeValue => {
                let values: Vec<String> = match strs.get(2) {
                    Some(Value::List(l)) => l
                        .iter()
                        .map(|x| Value::from_any(Some(x)).to_text())
                        .collect(),
                    _ => Vec::new(),
                };
                crate::metricfns::on_attribute_value(
                    m,
                    &text(0).unwrap_or_default(),
                    &text(1).unwrap_or_default(),
                    &values,
                    &text(3).unwrap_or_default(),
                )?;
            }
            _ => {}
        }
        Ok(())
    })
}

fn edit_map(
    c: &Call,
    t: &mut dyn Target,
    f: impl FnOnce(&mut Vec<KeyValue>),
) -> Result<(), String> {
    let Some(mut m) = target_map(c, t)? else {
        return Ok(());
    };
    f(&mut m);
    t.set(target_path(c)?, Value::Map(m))
}

fn flatten(m: Vec<KeyValue>, prefix: &str, depth: i64, out: &mut Vec<KeyValue>) {
    for x in m {
        let key = if prefix.is_empty() {
            x.key
        } else {
            format!("{prefix}.{}", x.key)
        };
        match Value::from_any(x.value.as_ref()) {
            Value::Map(inner) if depth > 0 => flatten(inner, &key, depth - 1, out),
            Value::List(items) if depth > 0 => {
                let inner = items
                    .into_iter()
                    .enumerate()
                    .map(|(i, a)| KeyValue {
                        key: i.to_string(),
                        value: Some(a),
                        ..Default::default()
                    })
                    .collect();
                flatten(inner, &key, depth - 1, out)
            }
            v => out.push(kv(key, v)),
        }
    }
}

/// `flatten(…, resolveConflicts = true)`: a key met again gets `.0`, `.1`, … appended in the order
/// met, and a list's items go under the list's own key (so the first keeps it), as otelcol's
/// README shows; a generated key that exists already is overwritten, as pdata's PutEmpty does.
fn flatten_resolving(
    m: Vec<KeyValue>,
    prefix: &str,
    depth: i64,
    out: &mut Vec<KeyValue>,
    seen: &mut std::collections::HashMap<String, usize>,
) {
    fn put(
        out: &mut Vec<KeyValue>,
        seen: &mut std::collections::HashMap<String, usize>,
        key: String,
        v: Value,
    ) {
        let key = match seen.get_mut(&key) {
            Some(n) => {
                *n += 1;
                format!("{key}.{}", *n - 1)
            }
            None => {
                seen.insert(key.clone(), 0);
                key
            }
        };
        match out.iter_mut().find(|x| x.key == key) {
            Some(x) => x.value = Some(v.into_any()),
            None => out.push(kv(key, v)),
        }
    }
    for x in m {
        let key = if prefix.is_empty() {
            x.key
        } else {
            format!("{prefix}.{}", x.key)
        };
        match Value::from_any(x.value.as_ref()) {
            Value::Map(inner) if depth > 0 => flatten_resolving(inner, &key, depth - 1, out, seen),
            Value::List(items) if depth > 0 => {
                for a in items {
                    match Value::from_any(Some(&a)) {
                        Value::Map(inner) if depth > 1 => {
                            flatten_resolving(inner, &key, depth - 2, out, seen)
                        }
                        v => put(out, seen, key.clone(), v),
                    }
                }
            }
            v => put(out, seen, key, v),
        }
    }
}

/// `set_semconv_span_name(semconv_version, Optional[original_span_name_attribute])`: the span's
/// name as the semantic conventions build it for HTTP, database, RPC and messaging spans, from the
/// span's own attributes (so that names carrying ids, such as `GET /users/123`, become low
/// cardinality). Other spans keep their name. When the name changes and an attribute is named, the
/// old name is kept there. The current attribute names are read, then the pre-1.26 ones.
mod semconv {
    use super::*;
    use crate::{Context, Field, Key};

    fn path(field: Field, keys: Vec<Key>) -> Path {
        Path {
            level: Context::Span,
            field,
            keys,
            text: "span".into(),
        }
    }

    /// The first of `keys` the span has as a non-empty string or an int.
    fn first(attrs: &[KeyValue], keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|k| {
            match Value::from_any(attrs.iter().find(|a| a.key == *k)?.value.as_ref()) {
                Value::Str(s) if !s.is_empty() => Some(s),
                Value::Int(i) => Some(i.to_string()),
                _ => None,
            }
        })
    }

    fn truthy(attrs: &[KeyValue], key: &str) -> bool {
        attrs
            .iter()
            .any(|a| a.key == key && Value::from_any(a.value.as_ref()) == Value::Bool(true))
    }

    fn address(attrs: &[KeyValue]) -> Option<String> {
        let host = first(attrs, &["server.address", "net.peer.name"])?;
        Some(match first(attrs, &["server.port", "net.peer.port"]) {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    }

    fn join(a: Option<String>, b: Option<String>) -> Option<String> {
        match (a, b) {
            (Some(a), Some(b)) => Some(format!("{a} {b}")),
            (a, b) => a.or(b),
        }
    }

    /// The conventional name, or `None` for a span no convention names.
    pub(super) fn name_for(attrs: &[KeyValue], kind: i64) -> Option<String> {
        const SERVER: i64 = 2;
        if let Some(method) = first(attrs, &["http.request.method", "http.method"]) {
            // Methods outside the HTTP registry are named "HTTP", as the convention says.
            let known = [
                "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
                "QUERY",
            ];
            let method = if known.contains(&method.as_str()) {
                method
            } else {
                "HTTP".into()
            };
            let target = if kind == SERVER {
                first(attrs, &["http.route"])
            } else {
                first(attrs, &["url.template"])
            };
            return join(Some(method), target);
        }
        if first(attrs, &["db.system.name", "db.system"]).is_some() {
            if let Some(summary) = first(attrs, &["db.query.summary"]) {
                return Some(summary);
            }
            let op = first(attrs, &["db.operation.name", "db.operation"]);
            let target = first(
                attrs,
                &[
                    "db.collection.name",
                    "db.stored_procedure.name",
                    "db.namespace",
                    "db.sql.table",
                    "db.name",
                ],
            )
            .or_else(|| address(attrs));
            return join(op, target).or_else(|| first(attrs, &["db.system.name", "db.system"]));
        }
        if first(attrs, &["rpc.system"]).is_some() {
            let service = first(attrs, &["rpc.service"]);
            let method = first(attrs, &["rpc.method"]);
            return match (service, method) {
                (Some(s), Some(m)) => Some(format!("{s}/{m}")),
                _ => None,
            };
        }
        if first(attrs, &["messaging.system"]).is_some() {
            let op = first(attrs, &["messaging.operation.name", "messaging.operation"]);
            let dest = if truthy(attrs, "messaging.destination.temporary") {
                Some("(temporary)".to_string())
            } else if truthy(attrs, "messaging.destination.anonymous") {
                Some("(anonymous)".to_string())
            } else {
                first(
                    attrs,
                    &[
                        "messaging.destination.template",
                        "messaging.destination.name",
                    ],
                )
                .or_else(|| address(attrs))
            };
            return join(op, dest);
        }
        None
    }

    pub(super) fn set_span_name(c: &Call, t: &mut dyn Target) -> Result<(), String> {
        let attrs = match t.get(&path(Field::Attributes, Vec::new()))? {
            Value::Map(m) => m,
            _ => Vec::new(),
        };
        let kind = match t.get(&path(Field::Kind, Vec::new()))? {
            Value::Int(k) => k,
            _ => 0,
        };
        let Some(name) = name_for(&attrs, kind) else {
            return Ok(());
        };
        let old = match t.get(&path(Field::Name, Vec::new()))? {
            Value::Str(s) => s,
            _ => String::new(),
        };
        if name == old {
            return Ok(());
        }
        if let Some(Expr::Lit(Value::Str(key))) = c.args.get(1) {
            if !key.is_empty() {
                t.set(
                    &path(Field::Attributes, vec![Key::Str(key.clone())]),
                    Value::Str(old),
                )?;
            }
        }
        t.set(&path(Field::Name, Vec::new()), Value::Str(name))
    }
}
