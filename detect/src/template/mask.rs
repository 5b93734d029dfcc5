//! Variable masking for the template miner: turns one raw log line into tokens in which the parts that
//! are almost always variables (numbers, hex ids, addresses, UUIDs, paths, `key=value` values, quoted
//! strings, host names) are replaced by `<*>`. The built-in rules are a hand-written scanner rather than
//! regexes because they run on every line of the hot path (see `examples/bench_template.rs`); extra rules
//! can still be given as regexes.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// The marker that stands for a variable part in a template.
pub const PARAM: &str = "<*>";

/// Which variable classes are masked before a line is matched to a template.
///
/// Every built-in rule is on by default; the defaults are the one configuration scored in `BENCHMARKS.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskConfig {
    /// Word segments that carry digits: integers, decimals, hex (`0x1f`, `a3f9c2d1`), IPv4/IPv6, UUIDs,
    /// dates, times and ids such as `blk_-1608`. A word of letters ending in one digit (`ssh2`, `tty1`)
    /// is kept, since such words are usually names rather than values. A unit right after a number
    /// (`18.4 KB`, `12 ms`) joins it, so that a value spans one token.
    pub digits: bool,
    /// Absolute file paths (`/etc/x/y`) and URLs (`scheme://...`).
    pub paths: bool,
    /// The value in `key=value` (the key is kept): `uid=0` becomes `uid=<*>`.
    pub key_values: bool,
    /// A `key=value` whose value is a plain word of letters (`tty=ssh`) keeps it; it becomes
    /// `key=<*>` only once templates are seen to differ there. Not a user setting: it is one of the
    /// rules chosen by the leave-one-dataset-out evaluation.
    #[doc(hidden)]
    #[serde(skip)]
    pub key_value_names: bool,
    /// Text between double quotes, or single quotes opening a token, even across spaces.
    pub quoted: bool,
    /// Host names: dotted lower-case names with a top-level-domain-like last label
    /// (`ns.example.com`), and any dotted name in front of `:port`.
    pub hosts: bool,
    /// Month and weekday names next to a number or to each other (`Sun Jul 10 03:04:05`).
    pub dates: bool,
    /// Extra regexes, applied to the whole line before the built-in rules; each match becomes `<*>`.
    pub extra: Vec<String>,
    /// How much of a value a template shows around its `<*>`s. Not a user setting: chosen by the
    /// leave-one-dataset-out evaluation.
    #[doc(hidden)]
    #[serde(skip)]
    pub parts: Parts,
}

/// How a template writes its variables. Lines are always grouped on whole values (`/10.0.0.1:50010`
/// is one `<*>` when deciding which template a line joins); these switches only decide which parts
/// of the values the template's text keeps, where every line of the template agrees on them. Not a
/// user setting: the leave-one-dataset-out evaluation (`examples/loghub_loo.rs`) chooses them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Values joined by punctuation are written part by part: `/<*>:<*>` rather than `<*>`. A run
    /// of numbers joined by `:` (a time, a MAC address) stays one `<*>`.
    pub split: bool,
    /// A name joined by `_` to a number keeps the name: `blk_<*>`, `attempt_<*>`.
    pub prefix: bool,
    /// A URL keeps its scheme: `hdfs://<*>`.
    pub schemes: bool,
}

impl Default for Parts {
    fn default() -> Self {
        // The leave-one-dataset-out choice on the worse of the two ground truths' PA
        // (`examples/loghub_loo.rs`): 7 of 8 folds choose this. `prefix` raises PA on the original
        // truth (0.631 -> 0.762) but costs more on the corrected one (0.688 -> 0.570).
        Self {
            split: true,
            prefix: false,
            schemes: true,
        }
    }
}

impl Parts {
    /// Every value written as one `<*>`, as lines are grouped.
    pub const WHOLE: Self = Self {
        split: false,
        prefix: false,
        schemes: false,
    };
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            digits: true,
            dates: true,
            paths: true,
            key_values: true,
            key_value_names: true,
            quoted: true,
            hosts: true,
            extra: Vec::new(),
            parts: Parts::default(),
        }
    }
}

/// A compiled [`MaskConfig`].
#[derive(Debug, Clone)]
pub(crate) struct Masker {
    config: MaskConfig,
    extra: Vec<Regex>,
}

/// Tokens of one masked line: their text lives in one buffer so that masking does not allocate per token.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    buf: String,
    spans: Vec<(u32, u32)>,
    /// `is_variable` of each token, computed once per line rather than once per comparison.
    vars: Vec<bool>,
    /// Scratch space for the word offsets of the line being masked.
    words: Vec<(usize, usize)>,
    /// The byte classes each of those words holds (see [`CLASS`]).
    word_flags: Vec<u16>,
    /// Each token's word in the line: `(0, 0)` for a token made of several words or none (quotes,
    /// a number and its unit, dates, saved templates), whose written form is the token itself.
    raw: Vec<(u32, u32)>,
    /// The line after `extra` rules, when they changed it: `raw` then points into this text rather
    /// than into the line given to `mask` (which is not copied otherwise).
    src: Option<String>,
}

impl Tokens {
    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }

    pub(crate) fn get(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        &self.buf[a as usize..b as usize]
    }

    /// Whether token `i` is all variable (see [`is_variable`]).
    pub(crate) fn is_var(&self, i: usize) -> bool {
        self.vars[i]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans
            .iter()
            .map(|&(a, b)| &self.buf[a as usize..b as usize])
    }

    /// Replaces the content with already masked tokens (used when rebuilding saved templates).
    pub(crate) fn set(&mut self, tokens: &[Box<str>]) {
        self.clear();
        for t in tokens {
            let start = self.start();
            self.buf.push_str(t);
            self.end_token(start, NO_WORD);
        }
    }

    /// Whether token `i`, as it appears in the line, is an instance of the written form `form`: its
    /// text fits `form` with each `<*>` standing for one or more bytes. A template that writes a
    /// variable as `form` then keeps doing so for this line, which spares masking the word again.
    pub(crate) fn fits(&self, i: usize, form: &str, line: &str) -> bool {
        let (a, b) = self.raw[i];
        let text = if a == b {
            self.get(i)
        } else {
            self.source(line).get(a as usize..b as usize).unwrap_or("")
        };
        fits(form, text)
    }

    /// The text `raw` points into: `line`, the line given to `mask`, unless `extra` rules changed it.
    fn source<'a>(&'a self, line: &'a str) -> &'a str {
        self.src.as_deref().unwrap_or(line)
    }

    /// Writes token `i` as a template shows it (see [`Parts`]) into `out`: the token itself unless it
    /// is a variable masked from one word.
    pub(crate) fn written(&self, i: usize, masker: &Masker, line: &str, out: &mut String) {
        out.clear();
        let (a, b) = self.raw[i];
        if !self.vars[i] || a == b || !masker.writes_parts() {
            out.push_str(self.get(i));
        } else {
            let word = self.source(line).get(a as usize..b as usize).unwrap_or("");
            let _ = masker.mask_word::<true>(word, out);
        }
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.vars.clear();
        self.raw.clear();
    }

    /// Starts a token at the end of the buffer; `end_token` closes it.
    fn start(&self) -> usize {
        self.buf.len()
    }

    /// Closes the token begun at `start`, masked from the line's bytes `word` (`NO_WORD` when it is
    /// not one word of the line).
    fn end_token(&mut self, start: usize, word: (usize, usize)) {
        if self.buf.len() > start {
            let var = is_variable(&self.buf[start..]);
            self.push_token(start, word, var);
        }
    }

    /// A token that is word `a..b` of the line as it is, not a variable: a span of the line's copy
    /// at the start of the buffer.
    fn push_line_word(&mut self, a: usize, b: usize) {
        self.spans.push((a as u32, b as u32));
        self.vars.push(false);
        self.raw.push((a as u32, b as u32));
    }

    /// `end_token` for a token whose `is_variable` is already known.
    fn push_token(&mut self, start: usize, word: (usize, usize), var: bool) {
        self.spans.push((start as u32, self.buf.len() as u32));
        self.vars.push(var);
        self.raw.push((word.0 as u32, word.1 as u32));
    }
}

/// Byte classes, looked up once per byte of a line as it is split into words, so that each word's
/// rules start from what the word holds instead of rescanning it (`examples/loghub_speed.rs`).
const SPACE: u16 = 1;
const DIGIT: u16 = 2;
const EQ: u16 = 4;
const SLASH: u16 = 8;
const DOT: u16 = 16;
const BACKSLASH: u16 = 32;
const COLON: u16 = 64;
/// An ASCII letter.
const ALPHA: u16 = 128;
/// `_` or `-`, which with letters, digits and `.` make up a segment (see `mask_segments`).
const JOINER: u16 = 256;
const SEGMENT: u16 = DIGIT | ALPHA | DOT | JOINER;
/// Any of these makes a word more than a plain word for `mask_word`.
const NOT_PLAIN: u16 = DIGIT | EQ | SLASH | DOT | BACKSLASH;

static CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_whitespace() {
            SPACE
        } else if b.is_ascii_digit() {
            DIGIT
        } else if b.is_ascii_alphabetic() {
            ALPHA
        } else {
            match b {
                b'=' => EQ,
                b'/' => SLASH,
                b'.' => DOT,
                b'\\' => BACKSLASH,
                b':' => COLON,
                b'_' | b'-' => JOINER,
                _ => 0,
            }
        };
        c += 1;
    }
    t
};

/// The byte classes a word holds.
fn flags_of(word: &str) -> u16 {
    word.bytes().fold(0, |f, c| f | CLASS[c as usize])
}

const NO_WORD: (usize, usize) = (0, 0);

/// A mask rule whose regex does not compile.
#[derive(Debug, thiserror::Error)]
#[error("mask rule {index} ({pattern:?}) is not a valid regex: {source}")]
pub struct MaskError {
    /// Position of the rule in `MaskConfig::extra`.
    pub index: usize,
    /// The rule as given.
    pub pattern: String,
    /// What the regex parser said.
    #[source]
    pub source: regex::Error,
}

impl Masker {
    pub(crate) fn new(config: MaskConfig) -> Result<Self, MaskError> {
        let extra = config
            .extra
            .iter()
            .enumerate()
            .map(|(index, pattern)| {
                Regex::new(pattern).map_err(|source| MaskError {
                    index,
                    pattern: pattern.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { config, extra })
    }

    /// Masks `line` into `out`, replacing its previous content. The same `line` must be given to
    /// `Tokens::written` and `Tokens::fits` afterwards.
    pub(crate) fn mask(&self, line: &str, out: &mut Tokens) {
        out.clear();
        out.src = None;
        if self.extra.is_empty() {
            self.mask_builtin(line, out);
        } else {
            let mut text = std::borrow::Cow::Borrowed(line);
            for re in &self.extra {
                if let std::borrow::Cow::Owned(s) = re.replace_all(&text, PARAM) {
                    text = std::borrow::Cow::Owned(s);
                }
            }
            self.mask_builtin(&text, out);
            if let std::borrow::Cow::Owned(s) = text {
                out.src = Some(s);
            }
        }
    }

    /// Whether templates write some values in parts (see [`Parts`]), so that a token's written form
    /// may differ from the token.
    pub(crate) fn writes_parts(&self) -> bool {
        self.config.parts != Parts::WHOLE
    }

    fn mask_builtin(&self, line: &str, out: &mut Tokens) {
        let mut words = std::mem::take(&mut out.words);
        let mut flags = std::mem::take(&mut out.word_flags);
        // Whether the line has a `key="…` at all, so that most lines skip the per-word check.
        let quoted_values = word_spans(line, &mut words, &mut flags)
            && self.config.quoted
            && self.config.key_values;
        // The line is copied once, so that a plain word's token is a span of it rather than a copy
        // of its own; masked tokens are appended after it.
        out.buf.push_str(line);
        let mut i = 0;
        while i < words.len() {
            let (a, b) = words[i];
            let word = &line[a..b];
            if quoted_values {
                if let Some((key, last, rest)) = quoted_value_run(line, &words, i) {
                    // `tag="View Lock",` is one `key=value` token, `tag=<*>,`, like `tag="Window",`.
                    let start = out.start();
                    out.buf.push_str(&word[..key]);
                    out.buf.push_str(PARAM);
                    let _ = self.mask_word::<false>(rest, &mut out.buf);
                    out.end_token(start, NO_WORD);
                    i = last + 1;
                    continue;
                }
            }
            if self.config.quoted {
                if let Some((last, rest)) = quoted_run(line, &words, i).filter(|&(last, _)| {
                    // A quoted name (`'safety'`, `'hlt'`) is a word like any other: only its digits
                    // or dots make it a value.
                    last > i || !is_name(word.trim_end_matches(&word[..1]).get(1..).unwrap_or(""))
                }) {
                    let q = &word[..1];
                    let first = &word[1..];
                    if last > i && first.len() >= 2 && first.bytes().all(|c| c.is_ascii_uppercase())
                    {
                        // `"GET /a/b HTTP/1.1"`: the verb heading a quoted request or statement is its
                        // structure, not a value; `"GET <*>"` and `"POST <*>"` are different events.
                        let start = out.start();
                        out.buf.push_str(word);
                        out.end_token(start, NO_WORD);
                    }
                    let start = out.start();
                    if last == i
                        || !(first.len() >= 2 && first.bytes().all(|c| c.is_ascii_uppercase()))
                    {
                        out.buf.push_str(q);
                    }
                    out.buf.push_str(PARAM);
                    out.buf.push_str(q);
                    let _ = self.mask_word::<false>(rest, &mut out.buf);
                    out.end_token(start, NO_WORD);
                    i = last + 1;
                    continue;
                }
            }
            let prev_variable = out.vars.last().copied().unwrap_or(false)
                && out.spans.last().is_some_and(|&(x, y)| {
                    out.buf.as_bytes()[x as usize..y as usize].contains(&b'<')
                });
            if self.config.digits && prev_variable {
                if let Some(tail) = unit_tail(word) {
                    // `18.4 KB)` is one value: the unit joins the number, keeping its trailing punctuation.
                    if let Some((x, _)) = out.spans.pop() {
                        out.vars.pop();
                        out.raw.pop();
                        out.buf.push_str(tail);
                        out.end_token(x as usize, NO_WORD);
                    }
                    i += 1;
                    continue;
                }
            }
            let start = out.start();
            let f = flags[i];
            if f & NOT_PLAIN == 0 && !(self.config.dates && is_date_word(word)) {
                // The common case, a plain word: it is its own token, a variable only when it has
                // no letter (`-`, `|`; a digit would have made it not plain).
                if f & ALPHA != 0 {
                    out.push_line_word(a, b);
                } else {
                    // Copied, as variables always are: a unit that follows (`- KB`) joins the last
                    // token by extending it at the end of the buffer.
                    out.buf.push_str(word);
                    out.push_token(start, (a, b), true);
                }
                i += 1;
                continue;
            }
            let mut from = (a, b);
            if self.config.dates
                && is_date_word(word)
                && (prev_variable || next_is_date_part(line, &words, i))
            {
                out.buf.push_str(PARAM);
                out.buf
                    .push_str(&word[word.trim_end_matches([',', '.']).len()..]);
                from = NO_WORD;
            } else if self.mask_flagged::<false>(word, f, &mut out.buf) {
                // Values and punctuation only, so a variable, which `end_token` need not scan for.
                whole_value(&mut out.buf, start);
                out.push_token(start, from, true);
                i += 1;
                continue;
            }
            out.end_token(start, from);
            i += 1;
        }
        out.words = words;
        out.word_flags = flags;
    }

    /// Masks one whitespace-free word, appending the result to `out`. True when the result is
    /// several variables or one with punctuation, and no word (`<*>:<*>`, `/<*>:<*>,`). With
    /// `WRITTEN`, values are written as a template shows them (see [`Parts`]) rather than as lines are
    /// grouped.
    fn mask_word<const WRITTEN: bool>(&self, word: &str, out: &mut String) -> bool {
        self.mask_flagged::<WRITTEN>(word, flags_of(word), out)
    }

    /// `mask_word` for a word whose byte classes `f` are known: each rule is tried only when the
    /// word holds the bytes it needs.
    fn mask_flagged<const WRITTEN: bool>(&self, word: &str, f: u16, out: &mut String) -> bool {
        // Fast path: most words of most lines are plain words.
        if f & NOT_PLAIN == 0 {
            out.push_str(word);
            return false;
        }
        if self.config.digits && f & (COLON | DIGIT) == COLON | DIGIT && is_hex_colon_run(word) {
            // `5c:50:15:36:bc:03`, `fe80::1ff:fe23`, `07:07:00`: one value even where a group has no
            // digit (`bc`), which would otherwise read as a word.
            out.push_str(PARAM);
            out.push_str(&word[word.trim_end_matches([',', ';', ')', ']', '.']).len()..]);
            return false;
        }
        if self.config.paths && f & (SLASH | BACKSLASH) != 0 && is_path_or_url(word) {
            if WRITTEN && self.config.parts.schemes {
                if let Some(p) = word.find("://") {
                    out.push_str(&word[..p + 3]);
                }
            }
            out.push_str(PARAM);
            return false;
        }
        if self.config.key_values && f & EQ != 0 {
            if let Some(eq) = key_value_split(word) {
                out.push_str(&word[..=eq]);
                let value = &word[eq + 1..];
                if self.config.key_value_names && is_name(value.trim_end_matches([',', ';'])) {
                    // `tty=ssh`, `user=root`: a name is a word like any other; the sibling rule makes
                    // it `key=<*>` once it is seen to vary.
                    out.push_str(value);
                } else if !value.is_empty() {
                    // The value keeps only trailing punctuation such as `,` or `;`.
                    let trimmed = value.trim_end_matches([',', ';', ')', ']']);
                    out.push_str(PARAM);
                    out.push_str(&value[trimmed.len()..]);
                }
                return false;
            }
        }
        let start = out.len();
        let whole = self.mask_segments::<WRITTEN>(word, out);
        if WRITTEN && whole && (!self.config.parts.split || is_clock_like(word)) {
            whole_value(out, start);
        }
        whole
    }

    /// Splits a word into segments of `[A-Za-z0-9._-]` and masks the segments that look like values.
    fn mask_segments<const WRITTEN: bool>(&self, word: &str, out: &mut String) -> bool {
        let bytes = word.as_bytes();
        let (mut values, mut names, mut punctuation) = (0usize, 0usize, false);
        let mut i = 0;
        while i < bytes.len() {
            if CLASS[bytes[i] as usize] & SEGMENT == 0 {
                // Copy the run of punctuation (and any non-ASCII text) as is.
                let mut j = i + 1;
                while j < bytes.len() && CLASS[bytes[j] as usize] & SEGMENT == 0 {
                    j += 1;
                }
                out.push_str(&word[i..j]);
                punctuation = true;
                i = j;
                continue;
            }
            // One pass over the segment counts what the rules below ask about.
            let (mut j, mut digits, mut dots, mut seen) = (i, 0usize, 0usize, 0u16);
            while j < bytes.len() {
                let c = CLASS[bytes[j] as usize];
                if c & SEGMENT == 0 {
                    break;
                }
                digits += usize::from(c == DIGIT);
                dots += usize::from(c == DOT);
                seen |= c;
                j += 1;
            }
            let alnum = seen & (DIGIT | ALPHA) != 0;
            let seg = &word[i..j];
            let before_port =
                bytes.get(j) == Some(&b':') && bytes.get(j + 1).is_some_and(u8::is_ascii_digit);
            let variable = (self.config.digits && digits > 0 && is_value_segment(seg, digits))
                || (self.config.hosts
                    && ((dots >= 2 && is_host_name(seg)) || (before_port && dots > 0)));
            if variable {
                if WRITTEN {
                    self.write_value(seg.trim_end_matches('.'), out);
                } else {
                    out.push_str(PARAM);
                }
                // A sentence's full stop after a value is not part of it (`server: host:8030.`).
                let stop = &seg[seg.trim_end_matches('.').len()..];
                out.push_str(stop);
                values += 1;
                punctuation |= !stop.is_empty();
            } else {
                out.push_str(seg);
                // `.`, `-` and `_` alone are punctuation, not a word.
                if alnum {
                    names += 1;
                } else {
                    punctuation = true;
                }
            }
            i = j;
        }
        values > 0 && names == 0 && (values > 1 || punctuation)
    }
}

impl Masker {
    /// Writes one value segment as a template shows it (see [`Parts`]).
    fn write_value(&self, seg: &str, out: &mut String) {
        if self.config.parts.prefix {
            out.push_str(&seg[..name_prefix(seg)]);
        }
        out.push_str(PARAM);
    }
}

/// The length of a name in front of a number (`blk_` in `blk_-1608`, `attempt_` in
/// `attempt_12_0003`): words of letters each followed by `_`, then a digit or a sign and a digit. 0
/// when the segment does not start that way. `-` does not join a name here: it joins the words of
/// host names (`web-07`), which are values as a whole.
fn name_prefix(seg: &str) -> usize {
    let b = seg.as_bytes();
    let (mut end, mut i) = (0, 0);
    loop {
        let j = i + b[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .count();
        if j == i || j >= b.len() || b[j] != b'_' {
            break;
        }
        end = j + 1;
        i = end;
    }
    let rest = &b[end..];
    let number = rest.first().is_some_and(u8::is_ascii_digit)
        || (rest.first() == Some(&b'-') && rest.get(1).is_some_and(u8::is_ascii_digit));
    if number {
        end
    } else {
        0
    }
}

/// `text` with each `<*>` of `pattern` standing for one or more bytes (a glob match; the middle
/// literal parts are matched leftmost, which finds a match whenever there is one). Bytes rather than
/// `str::find`: the parts are a few bytes long and this runs for each written variable of a line.
fn fits(pattern: &str, text: &str) -> bool {
    let marker = PARAM.as_bytes();
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let Some(m) = find(p, marker) else {
        return p == t;
    };
    if !t.starts_with(&p[..m]) {
        return false;
    }
    let (mut p, mut t) = (&p[m + marker.len()..], &t[m..]);
    loop {
        // `t` starts where the current `<*>` begins; it takes at least one byte.
        if t.is_empty() {
            return false;
        }
        match find(p, marker) {
            None => return t.len() > p.len() && t.ends_with(p),
            Some(m) => {
                let Some(at) = find(&t[1..], &p[..m]) else {
                    return false;
                };
                t = &t[1 + at + m..];
                p = &p[m + marker.len()..];
            }
        }
    }
}

/// The first position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = match needle.split_first() {
        Some(x) => x,
        None => return Some(0),
    };
    // The needles are a byte or two of punctuation (`:`, `_`, `<*>`): a scan for the first byte,
    // then a compare, rather than a `memcmp` call per window.
    let last = hay.len().checked_sub(needle.len())?;
    (0..=last).find(|&i| hay[i] == first && &hay[i + 1..i + needle.len()] == rest)
}

/// Groups of hex digits joined by at least two `:`, with a digit somewhere and trailing punctuation
/// allowed: a MAC or IPv6 address or a time of day.
fn is_hex_colon_run(word: &str) -> bool {
    let core = word.trim_end_matches([',', ';', ')', ']', '.']);
    let (mut colons, mut digits) = (0, false);
    // One pass that stops at the first other byte: most words fail on their first few bytes.
    for c in core.bytes() {
        match c {
            b':' => colons += 1,
            b'0'..=b'9' => digits = true,
            b'a'..=b'f' | b'A'..=b'F' => {}
            _ => return false,
        }
    }
    colons >= 2 && digits && !core.starts_with(':')
}

/// Numbers joined by `:` with no dotted part before the first `:`: a time (`07:07:00`), a MAC or
/// IPv6 address, a bus address (`0000:00:1f.0`). It is one value, unlike `10.0.0.1:80` or
/// `host-7:8030`, an address and a port.
fn is_clock_like(word: &str) -> bool {
    let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let Some(colon) = core.find(':') else {
        return false;
    };
    !core[..colon].contains('.')
        && core
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
}

/// Byte offsets of the whitespace-separated words of `line`, and the byte classes of each.
/// Also tells whether some word has a `=` followed by a quote (`msg="…`), found in the same pass so
/// that most lines skip the check for quoted `key=value` runs.
fn word_spans(line: &str, spans: &mut Vec<(usize, usize)>, flags: &mut Vec<u16>) -> bool {
    spans.clear();
    flags.clear();
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut key_quote = false;
    while i < bytes.len() {
        while i < bytes.len() && CLASS[bytes[i] as usize] == SPACE {
            i += 1;
        }
        let start = i;
        let mut f = 0;
        while i < bytes.len() {
            let c = CLASS[bytes[i] as usize];
            if c == SPACE {
                break;
            }
            f |= c;
            i += 1;
        }
        if i > start {
            if f & EQ != 0 {
                key_quote |= bytes[start..i]
                    .windows(2)
                    .any(|p| p[0] == b'=' && matches!(p[1], b'"' | b'\''));
            }
            spans.push((start, i));
            flags.push(f);
        }
    }
    key_quote
}

/// If word `i` opens a quoted string, returns the index of the word that closes it and the text after
/// the closing quote in that word.
fn quoted_run<'a>(line: &'a str, words: &[(usize, usize)], i: usize) -> Option<(usize, &'a str)> {
    let (a, b) = words[i];
    let q = *line.as_bytes().get(a)?;
    if q != b'"' && q != b'\'' {
        return None;
    }
    // The closing quote may sit in the same word (`"abc",`) or in a later one, at most 64 words on.
    let first = &line[a + 1..b];
    if let Some(p) = first.find(q as char) {
        return Some((i, &first[p + 1..]));
    }
    closing_quote(line, words, i, q)
}

/// The word after `i`, at most 64 words on, that holds the quote `q`, and the text after the quote.
fn closing_quote<'a>(
    line: &'a str,
    words: &[(usize, usize)],
    i: usize,
    q: u8,
) -> Option<(usize, &'a str)> {
    for (k, &(c, d)) in words.iter().enumerate().skip(i + 1).take(64) {
        if let Some(p) = line[c..d].find(q as char) {
            return Some((k, &line[c + p + 1..d]));
        }
    }
    None
}

/// If word `i` is `key="` opening a quoted value that closes in a later word (`msg="disk full"`),
/// the length of `key=`, the index of the closing word and the text after the closing quote.
fn quoted_value_run<'a>(
    line: &'a str,
    words: &[(usize, usize)],
    i: usize,
) -> Option<(usize, usize, &'a str)> {
    let (a, b) = words[i];
    let word = &line[a..b];
    let eq = key_value_split(word)?;
    let value = &word[eq + 1..];
    let q = *value.as_bytes().first()?;
    if (q != b'"' && q != b'\'') || value[1..].contains(q as char) {
        return None;
    }
    let (last, rest) = closing_quote(line, words, i, q)?;
    Some((eq + 1, last, rest))
}

/// A word of letters only (a name or keyword, never a value by itself).
fn is_name(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|c| c.is_ascii_alphabetic())
}

/// Makes the token begun at `start` one `<*>` when it is made of variables and punctuation only
/// (`/10.0.0.1:50010` gave `/<*>:<*>`), keeping its brackets and trailing punctuation: a variable
/// stands for the whole value a person would name, an address rather than its parts.
fn whole_value(out: &mut String, start: usize) {
    let token = &out[start..];
    let lead = token
        .bytes()
        .take_while(|c| matches!(c, b'(' | b'[' | b'{'))
        .count();
    let core_end = trim_end_len(token, b")]},;:.");
    if core_end <= lead {
        return;
    }
    let core = &token[lead..core_end];
    if core == PARAM || !is_variable(core) {
        return;
    }
    let tail_len = token.len() - core_end;
    let mut tail = [0u8; 8];
    if tail_len > tail.len() {
        return;
    }
    tail[..tail_len].copy_from_slice(&token.as_bytes()[core_end..]);
    out.truncate(start + lead);
    out.push_str(PARAM);
    // The tail is ASCII punctuation copied from the token.
    out.push_str(std::str::from_utf8(&tail[..tail_len]).unwrap_or_default());
}

/// A token that is all variable: it has no letter or digit outside its `<*>`s (`<*>:<*>`, `[<*>]`, `()`).
pub(crate) fn is_variable(token: &str) -> bool {
    // A byte scan rather than `split(PARAM)`: this runs for most tokens of every line.
    let b = token.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'<' && b.get(i + 1) == Some(&b'*') && b.get(i + 2) == Some(&b'>') {
            i += 3;
            continue;
        }
        if b[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    true
}

/// If `word` is a unit of measure (`KB`, `ms`, `sec`, with trailing punctuation), that punctuation.
fn unit_tail(word: &str) -> Option<&str> {
    const UNITS: &[&str] = &[
        "B", "KB", "MB", "GB", "TB", "PB", "KiB", "MiB", "GiB", "TiB", "kB", "Kb", "Mb", "Gb",
        "ns", "us", "µs", "ms", "s", "sec", "secs", "min", "mins", "h", "hrs", "%",
    ];
    if word.len() > 5 {
        return None;
    }
    let core = &word[..trim_end_len(word, b",;)].:")];
    UNITS.contains(&core).then(|| &word[core.len()..])
}

/// The length of `s` without its trailing bytes from `set` (ASCII): `trim_end_matches` with a
/// byte loop, since a `char` pattern decodes UTF-8 backwards and this runs for each value of a line.
fn trim_end_len(s: &str, set: &[u8]) -> usize {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > 0 && set.contains(&b[end - 1]) {
        end -= 1;
    }
    end
}

fn is_date_word(word: &str) -> bool {
    // Cheap checks first: this runs for every capitalised word of every line. A `match` on the
    // string compiles to a switch on its length, not a scan of the list.
    (3..=10).contains(&word.len())
        && word.as_bytes()[0].is_ascii_uppercase()
        && matches!(
            word.trim_end_matches([',', '.']),
            "Jan"
                | "Feb"
                | "Mar"
                | "Apr"
                | "May"
                | "Jun"
                | "Jul"
                | "Aug"
                | "Sep"
                | "Sept"
                | "Oct"
                | "Nov"
                | "Dec"
                | "Mon"
                | "Tue"
                | "Wed"
                | "Thu"
                | "Fri"
                | "Sat"
                | "Sun"
                | "January"
                | "February"
                | "March"
                | "April"
                | "June"
                | "July"
                | "August"
                | "September"
                | "October"
                | "November"
                | "December"
                | "Monday"
                | "Tuesday"
                | "Wednesday"
                | "Thursday"
                | "Friday"
                | "Saturday"
                | "Sunday"
        )
}

/// The word after `i` is a number or another month or weekday name.
fn next_is_date_part(line: &str, words: &[(usize, usize)], i: usize) -> bool {
    words.get(i + 1).is_some_and(|&(a, b)| {
        let next = &line[a..b];
        next.as_bytes()[0].is_ascii_digit() || is_date_word(next)
    })
}

/// A segment with `digits` digits (at least one) is a value, except a word of letters that ends in
/// a single digit (`ssh2`).
fn is_value_segment(seg: &str, digits: usize) -> bool {
    let bytes = seg.as_bytes();
    if digits != 1 {
        return true;
    }
    let name_with_one_digit = bytes.len() >= 3
        && bytes[..bytes.len() - 1].iter().all(u8::is_ascii_alphabetic)
        && bytes[bytes.len() - 1].is_ascii_digit();
    // `jk2_init`, `Slf4jLogger`, `log4j`: one digit inside a word of at least three letters, next to a
    // letter, is part of a name; values carry more digits or stand apart (`node-5`, `rdd_2_0`).
    let digit_in_name = bytes[0].is_ascii_alphabetic()
        && bytes.iter().filter(|c| c.is_ascii_alphabetic()).count() >= 3
        && {
            let p = bytes.iter().position(u8::is_ascii_digit).unwrap_or(0);
            bytes[p - 1].is_ascii_alphabetic()
                && bytes
                    .get(p + 1)
                    .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_')
        };
    !(name_with_one_digit || digit_in_name)
}

/// `a.b.example.com`: at least two dots, lower-case labels, and a last label of 2 to 6 letters. Java
/// class names (`org.apache.Foo`) fail on the upper case, which keeps them as constants.
fn is_host_name(seg: &str) -> bool {
    // One pass over the bytes: this runs for every dotted segment of every line.
    let (mut dots, mut label, mut letters) = (0usize, 0usize, true);
    for &c in seg.as_bytes() {
        if c == b'.' {
            if label == 0 {
                return false;
            }
            dots += 1;
            label = 0;
            letters = true;
        } else if c.is_ascii_lowercase() {
            label += 1;
        } else if c.is_ascii_digit() || c == b'-' {
            label += 1;
            letters = false;
        } else {
            return false;
        }
    }
    dots >= 2 && (2..=6).contains(&label) && letters
}

fn is_path_or_url(word: &str) -> bool {
    if let Some(p) = word.contains(':').then(|| word.find("://")).flatten() {
        return p > 0 && word[..p].bytes().all(|c| c.is_ascii_alphabetic());
    }
    // A Windows path (`C:\Windows\x.dll`) with at least two components.
    let b = word.as_bytes();
    if b.len() > 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\' {
        return word[3..]
            .trim_end_matches(['\\', ',', ';', ')', ']', '.', ':'])
            .contains('\\');
    }
    // An absolute path has at least two components; `/10.0.0.1:80` (one component) is left to the
    // segment rules so that its parts are masked one by one.
    let rest = word.strip_prefix('/').or_else(|| word.strip_prefix("~/"));
    rest.is_some_and(|r| {
        let r = r.trim_end_matches(['/', ',', ';', ')', ']', '.', ':']);
        r.contains('/') && !r.contains("//")
    })
}

/// The position of `=` in `key=value`, where the key is an identifier.
fn key_value_split(word: &str) -> Option<usize> {
    let eq = word.bytes().position(|c| c == b'=')?;
    let key = &word[..eq];
    let ok = !key.is_empty()
        && key.as_bytes()[0].is_ascii_alphabetic()
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    ok.then_some(eq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(line: &str) -> String {
        let m = Masker::new(MaskConfig::default()).expect("default masks compile");
        let mut t = Tokens::default();
        m.mask(line, &mut t);
        t.iter().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn numbers_hex_ips_and_ids() {
        assert_eq!(
            masked("took 15 times, 3.5 more"),
            "took <*> times, <*> more"
        );
        assert_eq!(masked("addr 0x7fff1a2b and a3f9c2d1"), "addr <*> and <*>");
        // An address is one value, whatever its parts.
        assert_eq!(
            masked("from 10.251.73.220:50010 to /10.10.34.11:45307,"),
            "from <*> to <*>,"
        );
        assert_eq!(
            masked("block blk_-6952295868487656571 done"),
            "block <*> done"
        );
        assert_eq!(
            masked("id 123e4567-e89b-12d3-a456-426614174000."),
            "id <*>."
        );
        assert_eq!(masked("ipv6 fe80::1ff:fe23:4567:890a"), "ipv6 <*>");
        assert_eq!(masked("CPU#1 at [173.234.31.186]"), "CPU#<*> at [<*>]");
        assert_eq!(masked("size 18.4 KB, took 12 ms"), "size <*>, took <*>");
        assert_eq!(
            masked("at Sun Jul 10 03:04:05 2005 in May"),
            "at <*> <*> <*> <*> <*> in May"
        );
    }

    #[test]
    fn names_with_one_digit_stay() {
        assert_eq!(masked("port 22 ssh2 on tty1"), "port <*> ssh2 on tty1");
        assert_eq!(
            masked("jk2_init() Found Slf4jLogger node-5 rdd_2_0"),
            "jk2_init() Found Slf4jLogger <*> <*>"
        );
    }

    #[test]
    fn quoted_names_and_request_verbs_stay() {
        assert_eq!(
            masked(r#"1.2.3.4 "GET /v2/a1/servers/detail HTTP/1.1" status: 200"#),
            r#"<*> "GET <*>" status: <*>"#
        );
        assert_eq!(
            masked("Checking 'hlt' instruction, task 'attempt_12' saved"),
            "Checking 'hlt' instruction, task '<*>' saved"
        );
        assert_eq!(masked(r#"said "hello world" twice"#), r#"said "<*>" twice"#);
    }

    #[test]
    fn paths_urls_key_values_quotes_hosts() {
        assert_eq!(masked("ok /etc/httpd/conf/workers2.properties"), "ok <*>");
        assert_eq!(
            masked(r"Core: C:\Windows\winsxs\amd64_x_6.1.7601\cbscore.dll C:\tmp"),
            r"Core: <*> C:\tmp"
        );
        assert_eq!(masked("GET https://example.com/a?b=1 done"), "GET <*> done");
        assert_eq!(
            masked("uid=0 euid=0 ruser= user=root, rhost=a-1.b.net"),
            "uid=<*> euid=<*> ruser= user=root, rhost=<*>"
        );
        assert_eq!(
            masked(r#"table "my big table" created"#),
            r#"table "<*>" created"#
        );
        assert_eq!(masked("can't find 'x y' here"), "can't find '<*>' here");
        assert_eq!(
            masked("lookup ns.marryaldkfaczcz.com failed"),
            "lookup <*> failed"
        );
        assert_eq!(masked("proxy.cse.cuhk.edu.hk:5070 open"), "<*> open");
        assert_eq!(
            masked("connect to host-41:8030. Tried"),
            "connect to <*>. Tried"
        );
        assert_eq!(
            masked("class org.apache.hadoop.MRAppMaster"),
            "class org.apache.hadoop.MRAppMaster"
        );
    }

    /// Every written-form switch on, whatever the default, so that each is exercised.
    fn written(line: &str) -> String {
        let m = Masker::new(MaskConfig {
            parts: Parts {
                split: true,
                prefix: true,
                schemes: true,
            },
            ..MaskConfig::default()
        })
        .expect("default masks compile");
        let mut t = Tokens::default();
        m.mask(line, &mut t);
        let mut out = Vec::new();
        let mut w = String::new();
        for i in 0..t.len() {
            t.written(i, &m, line, &mut w);
            out.push(w.clone());
        }
        out.join(" ")
    }

    /// logfmt-style quoted values and colon-joined hex are single values, whatever their spaces or
    /// letter-only groups.
    #[test]
    fn quoted_key_values_and_mac_addresses_are_one_value() {
        assert_eq!(
            masked(r#"wake tag="View Lock", name=ui msg="a b c" ok"#),
            "wake tag=<*>, name=ui msg=<*> ok"
        );
        assert_eq!(masked(r#"tag="Window", x"#), "tag=<*>, x");
        assert_eq!(
            masked("mac 5c:50:15:36:bc:03, at 07:07:00. ::1 and a:b:c"),
            "mac <*>, at <*>. <*> and a:b:c"
        );
    }

    #[test]
    fn written_forms_keep_names_and_separators() {
        assert_eq!(
            written("blk_-1608 from /10.1.2.3:50010, 10.1.2.4 at 07:07:00."),
            "blk_<*> from /<*>:<*>, <*> at <*>."
        );
        assert_eq!(
            written("task_12_0003_m_4 on web-07:8030 via spark://drv@10.0.0.1:7077 #3"),
            "task_<*> on <*>:<*> via spark://<*> #<*>"
        );
        // No name before the number, or a name joined by `-` (a host name): the value is whole.
        assert_eq!(
            written("id 0x1f on msra-sa-41 bus 0000:00:1f.0"),
            "id <*> on <*> bus <*>"
        );
        // Only the written form differs; the tokens lines are grouped on are whole values.
        assert_eq!(masked("blk_-1608 from /10.1.2.3:50010,"), "<*> from <*>,");
        assert!(fits("blk_<*>", "blk_-77") && fits("/<*>:<*>", "/1.2.3.4:5"));
        assert!(!fits("blk_<*>", "blk_") && !fits("/<*>:<*>", "1.2.3.4:5"));
        assert!(fits("<*>", "x") && !fits("<*>", "") && fits("a", "a") && !fits("a", "b"));
        assert!(fits("<*>:<*>:<*>", "1:2:3") && !fits("<*>:<*>:<*>", "1:2"));
    }

    #[test]
    fn rules_can_be_turned_off_and_extended() {
        let config = MaskConfig {
            digits: false,
            extra: vec![r"core\.\d+".into()],
            ..MaskConfig::default()
        };
        let m = Masker::new(config).expect("valid regex");
        let mut t = Tokens::default();
        m.mask("dump core.1234 took 15", &mut t);
        assert_eq!(t.iter().collect::<Vec<_>>(), ["dump", "<*>", "took", "15"]);
        let bad = MaskConfig {
            extra: vec!["(".into()],
            ..MaskConfig::default()
        };
        let err = Masker::new(bad).expect_err("invalid regex");
        assert!(err.to_string().contains("mask rule 0"), "{err}");
    }
}
