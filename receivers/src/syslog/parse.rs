//! RFC 5424 and RFC 3164 message parsing, and RFC 6587 TCP framing (octet counting or a trailer
//! byte). Parsing fills a log entry the way otelcol's syslog parser does: the raw message as the body,
//! `hostname`, `appname`, `proc_id`, `msg_id`, `message`, `priority`, `facility`, `version` and
//! `structured_data` as attributes, the header time as the timestamp, and severity from the priority.
//! Hand-written: the syslog crates on crates.io either do not keep the fields apart or are unmaintained.

use crate::filelog::entry::Entry;
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

/// Cuts TCP frames out of `buf`: RFC 6587 octet counting when a frame starts with a digit (a syslog
/// message itself starts with '<'), otherwise a message ending at `trailer`. Returns the frames and
/// how many bytes were consumed.
pub fn frames(buf: &[u8], trailer: u8, max: usize) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let b = &buf[pos..];
        if b[0].is_ascii_digit() {
            let Some(sp) = b.iter().position(|c| *c == b' ') else {
                break;
            };
            let len: usize = match std::str::from_utf8(&b[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
            {
                Some(n) => n,
                None => {
                    // Not a length after all: drop this line as garbage.
                    match b.iter().position(|c| *c == trailer) {
                        Some(i) => {
                            pos += i + 1;
                            continue;
                        }
                        None => break,
                    }
                }
            };
            if b.len() < sp + 1 + len {
                break;
            }
            out.push(b[sp + 1..sp + 1 + len].to_vec());
            pos += sp + 1 + len;
        } else if let Some(i) = b.iter().position(|c| *c == trailer) {
            if i > 0 {
                out.push(b[..i].to_vec());
            }
            pos += i + 1;
        } else if b.len() > max {
            out.push(b[..max].to_vec());
            pos = buf.len();
        } else {
            break;
        }
    }
    (out, pos)
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
        let (f, used) = frames(buf, b'\n', 1024);
        assert_eq!(f, vec![b"<13>1 - - x".to_vec(), b"<14>hello".to_vec()]);
        assert_eq!(used, 25);
    }
}
