//! `UserAgent`: a User-Agent header as otelcol's converter returns it, parsed with uap-core's
//! regexes (the ua-parser project's Rust port, as otelcol uses its Go port). The regexes are
//! compiled once per process, the first time a statement names the converter.

use super::{arg, want_str, Func};
use crate::{kv, Call, Target, Value};
use std::sync::OnceLock;

/// uap-core 0.18.0's regexes.yaml (Apache-2.0; ottl/data/uap-core/LICENSE).
const REGEXES: &str = include_str!("../../data/uap-core/regexes.yaml");

type Extractors = (
    ua_parser::user_agent::Extractor<'static>,
    ua_parser::os::Extractor<'static>,
);

fn extractors() -> Result<&'static Extractors, String> {
    static CELL: OnceLock<Result<Extractors, String>> = OnceLock::new();
    CELL.get_or_init(|| {
        let r: ua_parser::Regexes<'static> = serde_saphyr::from_str(REGEXES)
            .map_err(|e| format!("UserAgent: uap-core's regexes.yaml does not load: {e}"))?;
        let ua = r
            .user_agent_parsers
            .into_iter()
            .try_fold(ua_parser::user_agent::Builder::new(), |b, p| b.push(p))
            .map_err(|e| format!("UserAgent: uap-core's user agent regexes: {e:?}"))?
            .build()
            .map_err(|e| format!("UserAgent: uap-core's user agent regexes: {e:?}"))?;
        let os = r
            .os_parsers
            .into_iter()
            .try_fold(ua_parser::os::Builder::new(), |b, p| b.push(p))
            .map_err(|e| format!("UserAgent: uap-core's os regexes: {e:?}"))?
            .build()
            .map_err(|e| format!("UserAgent: uap-core's os regexes: {e:?}"))?;
        Ok((ua, os))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Compiles the regexes when a statement names `UserAgent`, so a broken build fails at load.
pub(super) fn prepare() -> Result<(), String> {
    extractors().map(|_| ())
}

/// uap-go's `ToVersionString`: the first part, then each later non-empty part after a dot.
fn version(parts: &[Option<&str>]) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        match p {
            Some(p) if !p.is_empty() => {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(p);
            }
            _ => {}
        }
    }
    out
}

pub(super) fn call(c: &Call, t: &dyn Target) -> Option<Result<Value, String>> {
    if c.func != Func::UserAgent {
        return None;
    }
    Some((|| {
        let s = want_str(c.func, arg(c, 0, t)?)?;
        let (ua, os) = extractors()?;
        // uap-go names what no regex matches "Other".
        let (name, ver) = match ua.extract(&s) {
            Some(v) => (v.family.to_string(), version(&[v.major, v.minor, v.patch])),
            None => ("Other".to_string(), String::new()),
        };
        let (os_name, os_ver) = match os.extract(&s) {
            Some(v) => (
                v.os.to_string(),
                version(&[
                    v.major.as_deref(),
                    v.minor.as_deref(),
                    v.patch.as_deref(),
                    v.patch_minor.as_deref(),
                ]),
            ),
            None => ("Other".to_string(), String::new()),
        };
        let mut m = vec![
            kv("user_agent.name", Value::Str(name)),
            kv("user_agent.version", Value::Str(ver)),
            kv("user_agent.original", Value::Str(s)),
        ];
        // otelcol leaves out an empty os.name or os.version.
        if !os_name.is_empty() {
            m.push(kv("os.name", Value::Str(os_name)));
        }
        if !os_ver.is_empty() {
            m.push(kv("os.version", Value::Str(os_ver)));
        }
        Ok(Value::Map(m))
    })())
}
