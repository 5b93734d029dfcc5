//! RFC 5424 and RFC 3164 message parsing, and RFC 6587 TCP framing (octet counting or a trailer
//! byte). Parsing fills a log entry the way otelcol's syslog parser does: the raw message as the body,
//! `hostname`, `appname`, `proc_id`, `msg_id`, `message`, `priority`, `facility`, `version` and
//! `structured_data` as attributes, the header time as the timestamp, and severity from the priority.
//! Hand-written: the syslog crates on crates.io either do not keep the fields apart or are unmaintained.

use crate::stanza::entry::Entry;
use chrono::{DateTime, Datelike, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use vigil_core::attrs::{kv, kv_i64, kv_str};
use vigil_core::otlp::common::v1::any_value::Value;
use vigil_core::otlp::common::v1::{AnyValue, KeyValue, KeyValueList};

/// Which RFC the messages follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rfc5424,
    Rfc3164,
}

/// OTel severity number and stanza's text for a syslog severity (0 emerg … 7 debug).
pub fn severity(sev: u8) -> (i32, &'static str) {
    match sev {
        0 => (21, "emerg"),
        1 => (19, "alert"),
        2 => (18, "crit"),
        3 => (17, "err"),
        4 => (13, "warning"),
        5 => (10, "notice"),
        6 => (9, "info"),
        _ => (5, "debug"),
    }
}

fn pri(s: &str) -> Result<(u8, &str), String> {
    let rest = s.strip_prefix('<').ok_or("expected <PRI> at the start")?;
    let end = rest.find('>').ok_or("unterminated <PRI>")?;
    let p: u8 = rest[..end]
        .parse()
        .ok()
        .filter(|p| *p <= 191)
        .ok_or_else(|| format!("invalid priority {:?}", &rest[..end]))?;
    Ok((p, &rest[end + 1..]))
}

fn word(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn nanos<T: TimeZone>(t: &DateTime<T>) -> u64 {
    t.timestamp_nanos_opt().unwrap_or(0).max(0) as u64
}

/// Parses one message into an entry; `observed` is the receive time, `tz` the zone of RFC 3164 times.
pub fn parse(protocol: Protocol, raw: &str, tz: Tz, observed: u64) -> Result<Entry, String> {
    let raw = raw.trim_end_matches(['\n', '\r', '\0']);
    let (p, rest) = pri(raw)?;
    let mut e = Entry::text(raw.to_string(), observed);
    let (facility, sev) = (p / 8, p % 8);
    let (num, text) = severity(sev);
    e.severity_number = num;
    e.severity_text = text.to_string();
    let mut attrs = vec![
        kv_i64("priority", p as i64),
        kv_i64("facility", facility as i64),
    ];
    let opt = |s: &str| (s != "-" && !s.is_empty()).then(|| s.to_string());
    match protocol {
        Protocol::Rfc5424 => {
            let (version, rest) = word(rest);
            let version: i64 = version
                .parse()
                .map_err(|_| format!("invalid RFC 5424 version {version:?}"))?;
            let (ts, rest) = word(rest);
            let (host, rest) = word(rest);
            let (app, rest) = word(rest);
            let (procid, rest) = word(rest);
            let (msgid, rest) = word(rest);
            if ts != "-" {
                let t = DateTime::parse_from_rfc3339(ts)
                    .map_err(|x| format!("invalid RFC 5424 timestamp {ts:?}: {x}"))?;
                e.timestamp = nanos(&t);
            }
            let (sd, msg) = structured_data(rest)?;
            attrs.push(kv_i64("version", version));
            for (k, v) in [
                ("hostname", host),
                ("appname", app),
                ("proc_id", procid),
                ("msg_id", msgid),
            ] {
                if let Some(v) = opt(v) {
                    attrs.push(kv_str(k, v));
                }
            }
            if !sd.is_empty() {
                attrs.push(kv(
                    "structured_data",
                    Value::KvlistValue(KeyValueList { values: sd }),
                ));
            }
            let msg = msg.strip_prefix('\u{feff}').unwrap_or(msg);
            if !msg.is_empty() {
                attrs.push(kv_str("message", msg));
            }
        }
        Protocol::Rfc3164 => {
            // "Mmm dd hh:mm:ss" is 15 bytes; the day is space-padded.
            let ts = rest
                .get(..15)
                .ok_or("message too short for an RFC 3164 timestamp")?;
            let year = chrono::Utc::now().with_timezone(&tz).year();
            let naive = NaiveDateTime::parse_from_str(&format!("{year} {ts}"), "%Y %b %e %H:%M:%S")
                .map_err(|x| format!("invalid RFC 3164 timestamp {ts:?}: {x}"))?;
            if let Some(t) = tz.from_local_datetime(&naive).earliest() {
                e.timestamp = nanos(&t);
            }
            let rest = rest[15..].trim_start_matches(' ');
            let (host, rest) = word(rest);
            if let Some(h) = opt(host) {
                attrs.push(kv_str("hostname", h));
            }
            // TAG is letters up to '[' or ':'; "app[123]: msg".
            let tag_end = rest.find([':', '[', ' ']).unwrap_or(rest.len());
            let (app, mut msg) = rest.split_at(tag_end);
            if !app.is_empty() {
                attrs.push(kv_str("appname", app));
            }
            if let Some(r) = msg.strip_prefix('[') {
                if let Some(end) = r.find(']') {
                    attrs.push(kv_str("proc_id", &r[..end]));
                    msg = &r[end + 1..];
                }
            }
            let msg = msg.strip_prefix(':').unwrap_or(msg).trim_start_matches(' ');
            if !msg.is_empty() {
                attrs.push(kv_str("message", msg));
            }
        }
    }
    e.attributes = attrs;
    Ok(e)
}

/// `-` or one or more `[id k="v" …]` elements, then the message.
fn structured_data(s: &str) -> Result<(Vec<KeyValue>, &str), String> {
    if let Some(r) = s.strip_prefix('-') {
        return Ok((Vec::new(), r.strip_prefix(' ').unwrap_or(r)));
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(r) = rest.strip_prefix('[') {
        let id_end = r.find([' ', ']']).ok_or("unterminated structured data")?;
        let id = &r[..id_end];
        let mut r = &r[id_end..];
        let mut params = Vec::new();
        loop {
            r = r.trim_start_matches(' ');
            if let Some(x) = r.strip_prefix(']') {
                r = x;
                break;
            }
            let eq = r.find('=').ok_or("structured data parameter without '='")?;
            let name = &r[..eq];
            let v = r[eq + 1..]
                .strip_prefix('"')
                .ok_or("structured data value must be quoted")?;
            let mut val = String::new();
            let mut chars = v.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => val.push(c),
                }
            }
            let end = end.ok_or("unterminated structured data value")?;
            params.push(kv_str(name, val));
            r = &v[end + 1..];
        }
        out.push(KeyValue {
            key: id.to_string(),
            value: Some(AnyValue {
                value: Some(Value::KvlistValue(KeyValueList { values: params })),
            }),
            ..Default::default()
        });
        rest = r;
    }
    Ok((out, rest.strip_prefix(' ').unwrap_or(rest)))
}

/// Why a TCP stream's framing cannot go on. After one, the reader has lost its place in the
/// stream, so the connection is closed rather than resynchronised on a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// An octet count longer than any count `max_octets` allows, or with no space after it.
    BadOctetCount(String),
    /// An octet-counted frame larger than `max_octets`.
    TooLarge { len: u64, max: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadOctetCount(s) => write!(f, "bad octet count {s:?}"),
            FrameError::TooLarge { len, max } => {
                write!(
                    f,
                    "octet-counted frame of {len} bytes exceeds max_octets ({max})"
                )
            }
        }
    }
}

/// Splits `buf` into frames: RFC 6587 octet counting (`<len> <msg>`) where a frame starts with a
/// digit, else non-transparent framing ended by `trailer`. Returns the frames, how many bytes they
/// used, and the error that stopped framing, if any. Every frame is at most `max` bytes: an
/// octet-counted one over it is an error, a non-transparent one is cut at `max`. The octet count is
/// read from at most as many digits as `max` has, so a stream of digits with no space is refused as
/// soon as it is longer than that, instead of being rescanned on every read.
pub fn frames(buf: &[u8], trailer: u8, max: usize) -> (Vec<Vec<u8>>, usize, Option<FrameError>) {
    let max = max.max(1);
    let count_digits = max.to_string().len();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let b = &buf[pos..];
        if b[0].is_ascii_digit() {
            let head = &b[..b.len().min(count_digits + 1)];
            let Some(sp) = head.iter().position(|c| !c.is_ascii_digit()) else {
                if head.len() > count_digits {
                    let shown = String::from_utf8_lossy(head).into_owned();
                    return (out, pos, Some(FrameError::BadOctetCount(shown)));
                }
                break;
            };
            if head[sp] != b' ' {
                let shown = String::from_utf8_lossy(&head[..=sp]).into_owned();
                return (out, pos, Some(FrameError::BadOctetCount(shown)));
            }
            // At most `count_digits` ASCII digits, so this parses and cannot overflow.
            let len: u64 = std::str::from_utf8(&head[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX);
            let Some((len, end)) = usize::try_from(len)
                .ok()
                .filter(|n| *n <= max)
                .and_then(|n| Some((n, n.checked_add(sp + 1)?)))
            else {
                return (out, pos, Some(FrameError::TooLarge { len, max }));
            };
            if b.len() < end {
                break;
            }
            if len > 0 {
                out.push(b[sp + 1..end].to_vec());
            }
            pos += end;
        } else if let Some(i) = b[..b.len().min(max.saturating_add(1))]
            .iter()
            .position(|c| *c == trailer)
        {
            if i > 0 {
                out.push(b[..i].to_vec());
            }
            pos += i + 1;
        } else if b.len() > max {
            // Too long: keep the first `max` bytes and skip to the end of the message, if it is here.
            out.push(b[..max].to_vec());
            pos = match b[max..].iter().position(|c| *c == trailer) {
                Some(j) => pos + max + j + 1,
                None => buf.len(),
            };
        } else {
            break;
        }
    }
    (out, pos, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::attrs::{get, get_str};

    #[test]
    fn rfc5424_with_structured_data() {
        let m = r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 [exampleSDID@32473 iut="3" eventID="10\"11"] An application event"#;
        let e = parse(Protocol::Rfc5424, m, Tz::UTC, 0).unwrap();
        assert_eq!(
            (e.severity_number, e.severity_text.as_str()),
            (10, "notice")
        );
        assert_eq!(e.timestamp, 1_065_910_455_003_000_000);
        assert_eq!(
            get_str(&e.attributes, "hostname"),
            Some("mymachine.example.com")
        );
        assert_eq!(get_str(&e.attributes, "appname"), Some("evntslog"));
        assert_eq!(get_str(&e.attributes, "proc_id"), Some("42"));
        assert_eq!(get_str(&e.attributes, "msg_id"), Some("ID47"));
        assert_eq!(
            get_str(&e.attributes, "message"),
            Some("An application event")
        );
        assert_eq!(get(&e.attributes, "facility"), Some(&Value::IntValue(20)));
        let Some(Value::KvlistValue(sd)) = get(&e.attributes, "structured_data") else {
            panic!()
        };
        let Some(Value::KvlistValue(p)) = get(&sd.values, "exampleSDID@32473") else {
            panic!()
        };
        assert_eq!(get_str(&p.values, "eventID"), Some("10\"11"));
        assert!(parse(Protocol::Rfc5424, "<999>1 - - - - - -", Tz::UTC, 0).is_err());
        assert!(parse(Protocol::Rfc5424, "no pri", Tz::UTC, 0).is_err());
    }

    #[test]
    fn rfc3164_in_a_zone() {
        let m = "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8";
        let e = parse(Protocol::Rfc3164, m, "Europe/Berlin".parse().unwrap(), 0).unwrap();
        assert_eq!((e.severity_number, e.severity_text.as_str()), (18, "crit"));
        assert_eq!(get_str(&e.attributes, "hostname"), Some("mymachine"));
        assert_eq!(get_str(&e.attributes, "appname"), Some("su"));
        assert_eq!(get_str(&e.attributes, "proc_id"), Some("230"));
        assert_eq!(
            get_str(&e.attributes, "message"),
            Some("'su root' failed for lonvick on /dev/pts/8")
        );
        // 22:14:15 in Berlin (CEST in October) is 20:14:15 UTC.
        let secs = (e.timestamp / 1_000_000_000) % 86_400;
        assert_eq!(secs, 20 * 3600 + 14 * 60 + 15);
    }

    #[test]
    fn tcp_framing_both_ways() {
        let buf = b"11 <13>1 - - x\n<14>hello\n5 <1>a";
        let (f, used, e) = frames(buf, b'\n', 1024);
        assert_eq!(f, vec![b"<13>1 - - x".to_vec(), b"<14>hello".to_vec()]);
        assert_eq!(used, 25);
        assert_eq!(e, None);
    }

    // Each of these three panicked or let the buffer grow without bound before framing was bounded.
    #[test]
    fn an_octet_count_at_u64_max_is_an_error_not_a_panic() {
        let (f, used, e) = frames(b"18446744073709551615 abc", b'\n', 8192);
        assert!(f.is_empty());
        assert_eq!(used, 0);
        assert!(matches!(e, Some(FrameError::BadOctetCount(_))), "{e:?}");
        // The same count where max allows 20 digits: still refused, now as too large.
        let (_, _, e) = frames(b"18446744073709551615 abc", b'\n', usize::MAX);
        assert_eq!(
            e,
            Some(FrameError::TooLarge {
                len: u64::MAX,
                max: usize::MAX
            })
        );
    }

    #[test]
    fn octet_counted_frames_obey_max_octets() {
        let mut b = b"3 <1>9000 ".to_vec();
        b.extend(std::iter::repeat_n(b'a', 9000));
        let (f, used, e) = frames(&b, b'\n', 8192);
        assert_eq!(
            f,
            vec![b"<1>".to_vec()],
            "the frame before the bad one is kept"
        );
        assert_eq!(used, 5);
        assert_eq!(
            e,
            Some(FrameError::TooLarge {
                len: 9000,
                max: 8192
            })
        );
        // Exactly max is fine.
        let mut b = b"8192 ".to_vec();
        b.extend(std::iter::repeat_n(b'a', 8192));
        let (f, _, e) = frames(&b, b'\n', 8192);
        assert_eq!((f.len(), f[0].len(), e), (1, 8192, None));
    }

    #[test]
    fn digits_without_a_space_are_cut_at_the_width_of_max() {
        // Four digits may still be a count of up to 8192 that has not got its space yet.
        let (f, used, e) = frames(b"1234", b'\n', 8192);
        assert_eq!((f.len(), used, e), (0, 0, None));
        let b = vec![b'7'; 100_000];
        let (f, used, e) = frames(&b, b'\n', 8192);
        assert_eq!((f.len(), used), (0, 0));
        assert_eq!(e, Some(FrameError::BadOctetCount("77777".into())));
        let (_, _, e) = frames(b"12x <1>a", b'\n', 8192);
        assert_eq!(e, Some(FrameError::BadOctetCount("12x".into())));
    }

    #[test]
    fn a_long_unframed_message_is_cut_and_the_next_one_kept() {
        let mut b = vec![b'<'; 20];
        b.extend_from_slice(b"\n<2>next\n");
        let (f, used, e) = frames(&b, b'\n', 8);
        assert_eq!(f, vec![vec![b'<'; 8], b"<2>next".to_vec()]);
        assert_eq!((used, e), (b.len(), None));
    }
}

/// One fuzz input through TCP framing as a connection reads it: the first byte picks `max_octets`
/// and the trailer, the rest arrives in chunks whose sizes the input also picks. Panics if framing
/// panics or breaks an invariant: no frame over `max`, never more bytes used than held, and the
/// buffer a connection keeps never beyond what one frame and one read can hold. Shared by the
/// `syslog_framing` fuzz target and the randomised test.
pub fn fuzz_framing(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let max = 1 + (usize::from(sel) * 37) % 300;
    let trailer = if sel & 1 == 0 { b'\n' } else { 0 };
    let mut buf: Vec<u8> = Vec::new();
    let mut input = rest;
    while !input.is_empty() {
        let take = 1 + usize::from(input[0]) % 64;
        let (chunk, tail) = input.split_at(take.min(input.len()));
        input = tail;
        buf.extend_from_slice(chunk);
        let (frames, used, err) = frames(&buf, trailer, max);
        assert!(used <= buf.len());
        assert!(frames.iter().all(|f| f.len() <= max), "a frame over max");
        if err.is_some() {
            return;
        }
        buf.drain(..used);
        // What is left is one incomplete frame: its count, a space and at most `max` bytes.
        assert!(
            buf.len() <= max + 1 + max.to_string().len() + 64,
            "{} bytes held",
            buf.len()
        );
    }
}

#[cfg(test)]
mod fuzz_tests {
    /// Random streams through framing, from a fixed seed; `VIGIL_FUZZ_ITERS` runs it longer.
    #[test]
    fn random_streams_never_break_framing() {
        let iters: u64 = std::env::var("VIGIL_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"0123456789 <>\n\0abc18446744073709551615";
        for _ in 0..iters {
            let len = (next() % 600) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        alphabet[(r as usize >> 8) % alphabet.len()]
                    }
                })
                .collect();
            super::fuzz_framing(&data);
        }
    }
}
