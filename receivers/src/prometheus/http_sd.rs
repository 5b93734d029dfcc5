//! Prometheus's HTTP service discovery (`http_sd_configs`), which the Target Allocator client uses
//! too: every `refresh_interval` a GET of `url` answers a JSON list of `{targets, labels}` groups,
//! each group getting the `__meta_url` label. A failed refresh (refused, not 200, not JSON, over
//! the size cap) keeps the last targets, as Prometheus's refresh discovery sends no update then.
//!
//! Bounds: a response body over [`MAX_RESPONSE_BYTES`] fails the refresh; targets past
//! [`MAX_TARGETS`] in one response are dropped. Both are counted in `vigil_prometheus_sd_dropped`
//! (`what` = `responses` / `targets`). Prometheus has neither bound.

use super::config::{
    check_target, parse_prom_duration, tls_version, Authorization, BasicAuth, TargetGroup,
    TlsConfig,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Prometheus's default `http_sd_configs.refresh_interval`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
/// vigil's cap on one discovery answer (HTTP SD and the Target Allocator's `/scrape_configs`).
pub const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;
/// vigil's cap on the targets one HTTP SD answer may list; the rest are dropped.
pub const MAX_TARGETS: usize = 10_000;

/// One `http_sd_configs` entry as written.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSdRaw {
    pub url: Option<String>,
    pub refresh_interval: Option<String>,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub tls_config: Option<TlsConfig>,
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    /// Refused as not built, named so the refusal says so.
    pub oauth2: Option<Value>,
    pub http_headers: Option<Value>,
    pub proxy_url: Option<String>,
    pub no_proxy: Option<String>,
    pub proxy_from_environment: Option<bool>,
    pub proxy_connect_header: Option<Value>,
}

/// One HTTP SD source, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSd {
    pub url: String,
    pub refresh: Duration,
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub tls: TlsConfig,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

/// Checks an entry; `url_required` is false for the Target Allocator's `http_sd_config`, whose
/// URL the receiver writes. Errors are (key under the entry, message).
pub fn check_entry(raw: &HttpSdRaw, url_required: bool) -> Result<HttpSd, (String, String)> {
    let e = |k: &str, m: String| (k.to_string(), m);
    for (key, set, what) in [
        (
            "oauth2",
            raw.oauth2.is_some(),
            "OAuth 2.0 client credentials",
        ),
        ("http_headers", raw.http_headers.is_some(), "custom headers"),
        (
            "proxy_url",
            raw.proxy_url.is_some() || raw.no_proxy.is_some() || raw.proxy_connect_header.is_some(),
            "discovery through a proxy",
        ),
        (
            "proxy_from_environment",
            raw.proxy_from_environment == Some(true),
            "discovery through a proxy",
        ),
    ] {
        if set {
            return Err(e(
                key,
                format!("{what} for HTTP service discovery is not built in vigil"),
            ));
        }
    }
    let url = match raw.url.as_deref() {
        Some(u) if !u.is_empty() => {
            let parsed =
                reqwest::Url::parse(u).map_err(|m| e("url", format!("invalid URL {u:?}: {m}")))?;
            if parsed.scheme() != "http" && parsed.scheme() != "https" {
                return Err(e(
                    "url",
                    format!("URL scheme must be http or https, got {u:?}"),
                ));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(e("url", format!("host is missing in URL {u:?}")));
            }
            u.to_string()
        }
        _ if url_required => return Err(e("url", "URL is missing".into())),
        _ => String::new(),
    };
    let refresh = match raw.refresh_interval.as_deref() {
        Some(s) => parse_prom_duration(s).map_err(|m| e("refresh_interval", m))?,
        None => DEFAULT_REFRESH,
    };
    if refresh.is_zero() {
        return Err(e("refresh_interval", "must be greater than 0".into()));
    }
    let mut authorization = raw.authorization.clone();
    if raw.bearer_token.is_some() || raw.bearer_token_file.is_some() {
        if raw.bearer_token.is_some() && raw.bearer_token_file.is_some() {
            return Err(e(
                "bearer_token_file",
                "at most one of bearer_token and bearer_token_file must be configured".into(),
            ));
        }
        if raw.authorization.is_some() || raw.basic_auth.is_some() {
            return Err(e(
                "bearer_token_file",
                "at most one of basic_auth, authorization and bearer_token(_file) must be configured"
                    .into(),
            ));
        }
        authorization = Some(Authorization {
            kind: Some("Bearer".into()),
            credentials: raw.bearer_token.clone(),
            credentials_file: raw.bearer_token_file.clone(),
        });
    }
    if raw.basic_auth.is_some() && raw.authorization.is_some() {
        return Err(e(
            "authorization",
            "at most one of basic_auth and authorization must be configured".into(),
        ));
    }
    let tls = raw.tls_config.clone().unwrap_or_default();
    check_tls(&tls).map_err(|(k, m)| e(&format!("tls_config::{k}"), m))?;
    Ok(HttpSd {
        url,
        refresh,
        basic_auth: raw.basic_auth.clone(),
        authorization,
        tls,
        follow_redirects: raw.follow_redirects.unwrap_or(true),
        enable_http2: raw.enable_http2.unwrap_or(true),
    })
}

/// Checks an `http_sd_configs` entry of a scrape job.
pub fn check(raw: &HttpSdRaw) -> Result<HttpSd, (String, String)> {
    check_entry(raw, true)
}

/// The checks Prometheus makes on a `tls_config` when it is loaded.
pub fn check_tls(tls: &TlsConfig) -> Result<(), (String, String)> {
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err((
            "cert_file".into(),
            "cert_file and key_file must be set together".into(),
        ));
    }
    for (key, v) in [
        ("min_version", &tls.min_version),
        ("max_version", &tls.max_version),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            tls_version(v).map_err(|m| (key.to_string(), m))?;
        }
    }
    Ok(())
}

/// Why a refresh failed.
#[derive(Debug)]
pub enum SdError {
    /// The answer was over [`MAX_RESPONSE_BYTES`].
    TooLarge,
    Other(String),
}

impl std::fmt::Display for SdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SdError::TooLarge => write!(
                f,
                "the answer is over vigil's cap of {MAX_RESPONSE_BYTES} bytes; the last targets are kept"
            ),
            SdError::Other(m) => f.write_str(m),
        }
    }
}

/// The HTTP client of one source: its TLS settings, redirect policy and HTTP/2 choice.
pub fn client(sd: &HttpSd) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .redirect(if sd.follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        // As Prometheus: a refresh may take at most one refresh interval.
        .timeout(sd.refresh)
        .tls_backend_preconfigured(super::scrape::tls_client_config(&sd.tls, sd.enable_http2)?);
    if !sd.enable_http2 {
        b = b.http1_only();
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Reads a body of at most [`MAX_RESPONSE_BYTES`].
pub async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, SdError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_RESPONSE_BYTES)
    {
        return Err(SdError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SdError::Other(format!("reading the answer: {e}")))?
    {
        if body.len() as u64 + chunk.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(SdError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Adds the source's credentials to a request; files are read at every refresh, as Prometheus
/// does, so that rotated secrets are picked up.
pub fn with_auth(
    mut req: reqwest::RequestBuilder,
    basic: &Option<BasicAuth>,
    authorization: &Option<Authorization>,
) -> Result<reqwest::RequestBuilder, String> {
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("cannot read credentials {path}: {e}"))
    };
    if let Some(b) = basic {
        let password = match (&b.password, &b.password_file) {
            (_, Some(f)) => Some(read(f)?),
            (p, None) => p.clone(),
        };
        req = req.basic_auth(&b.username, password);
    }
    if let Some(a) = authorization {
        let creds = match (&a.credentials, &a.credentials_file) {
            (_, Some(f)) => read(f)?,
            (c, None) => c.clone().unwrap_or_default(),
        };
        let kind = a.kind.as_deref().unwrap_or("Bearer");
        req = req.header(reqwest::header::AUTHORIZATION, format!("{kind} {creds}"));
    }
    Ok(req)
}

/// A group as an HTTP SD answer spells it; unknown fields are ignored, as Go's JSON decoder does.
#[derive(Deserialize)]
struct WireGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses an answer: a JSON list of groups, each given `__meta_url`. `dropped` counts the
/// targets past [`MAX_TARGETS`].
pub fn parse(url: &str, body: &[u8], dropped: &mut u64) -> Result<Vec<TargetGroup>, String> {
    let wire: Vec<Option<WireGroup>> =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut out = Vec::with_capacity(wire.len());
    let mut kept = 0usize;
    for (i, g) in wire.into_iter().enumerate() {
        let Some(mut g) = g else {
            return Err(format!("nil target group item found (index {i})"));
        };
        for t in &g.targets {
            check_target(t).map_err(|m| format!("group {i}: {m}"))?;
        }
        for k in g.labels.keys() {
            if !super::relabel::is_label_name(k) {
                return Err(format!("group {i}: {k:?} is not a valid label name"));
            }
        }
        let room = MAX_TARGETS - kept;
        if g.targets.len() > room {
            *dropped += (g.targets.len() - room) as u64;
            g.targets.truncate(room);
        }
        kept += g.targets.len();
        g.labels.insert("__meta_url".into(), url.to_string());
        out.push(TargetGroup {
            targets: g.targets,
            labels: g.labels,
        });
    }
    Ok(out)
}

/// One refresh of a source. `dropped` counts targets past the cap.
pub async fn discover(
    client: &reqwest::Client,
    sd: &HttpSd,
    dropped: &mut u64,
) -> Result<Vec<TargetGroup>, SdError> {
    let req = client
        .get(&sd.url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            format!("{}", sd.refresh.as_secs_f64()),
        );
    let req = with_auth(req, &sd.basic_auth, &sd.authorization).map_err(SdError::Other)?;
    let resp = req
        .send()
        .await
        .map_err(|e| SdError::Other(format!("request failed: {}", chain(&e))))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(SdError::Other(format!(
            "server returned HTTP status {}",
            resp.status()
        )));
    }
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !json_content_type(&ct) {
        return Err(SdError::Other(format!("unsupported content type {ct:?}")));
    }
    let body = read_capped(resp).await?;
    parse(&sd.url, &body, dropped).map_err(SdError::Other)
}

/// Prometheus takes `application/json`, optionally with `charset=utf-8`, case-insensitively.
fn json_content_type(ct: &str) -> bool {
    let ct = ct.trim().to_ascii_lowercase();
    let mut parts = ct.splitn(2, ';');
    if parts.next().map(str::trim) != Some("application/json") {
        return false;
    }
    match parts.next().map(str::trim) {
        None => true,
        Some(p) => matches!(p, "charset=utf-8" | "charset=\"utf-8\""),
    }
}

/// An error with its sources, which say what happened (refused, reset, …).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_meta_url_and_the_target_cap() {
        let mut dropped = 0;
        let g = parse(
            "http://sd/x",
            br#"[{"targets":["a:1","b:2"],"labels":{"env":"prod"},"extra":1},{"targets":[]}]"#,
            &mut dropped,
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].targets, vec!["a:1", "b:2"]);
        assert_eq!(g[0].labels["env"], "prod");
        assert_eq!(g[0].labels["__meta_url"], "http://sd/x");
        assert_eq!(g[1].labels["__meta_url"], "http://sd/x");
        assert_eq!(dropped, 0);
        assert!(parse("u", b"[null]", &mut dropped)
            .unwrap_err()
            .contains("nil target group"));
        assert!(parse("u", br#"[{"targets":["http://a/"]}]"#, &mut dropped).is_err());
        assert!(parse("u", br#"{"targets":[]}"#, &mut dropped).is_err());
        let many: Vec<String> = (0..MAX_TARGETS + 5).map(|i| format!("h{i}:1")).collect();
        let body = serde_json::to_vec(&serde_json::json!([{"targets": many}])).unwrap();
        let g = parse("u", &body, &mut dropped).unwrap();
        assert_eq!(g[0].targets.len(), MAX_TARGETS);
        assert_eq!(dropped, 5);
    }

    #[test]
    fn content_types_as_prometheus_takes_them() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json;charset=\"utf-8\"",
        ] {
            assert!(json_content_type(ok), "{ok}");
        }
        for bad in ["text/plain", "application/json; charset=latin1", ""] {
            assert!(!json_content_type(bad), "{bad}");
        }
    }

    #[test]
    fn entries_are_checked() {
        let raw: HttpSdRaw =
            serde_json::from_value(serde_json::json!({"url": "http://sd:8080/t"})).unwrap();
        let sd = check(&raw).unwrap();
        assert_eq!(sd.refresh, DEFAULT_REFRESH);
        assert!(sd.follow_redirects);
        for (v, key) in [
            (serde_json::json!({}), "url"),
            (serde_json::json!({"url": "unix:/x"}), "url"),
            (
                serde_json::json!({"url": "http://a/", "refresh_interval": "0s"}),
                "refresh_interval",
            ),
            (
                serde_json::json!({"url": "http://a/", "proxy_url": "http://p/"}),
                "proxy_url",
            ),
        ] {
            let raw: HttpSdRaw = serde_json::from_value(v).unwrap();
            assert_eq!(check(&raw).unwrap_err().0, key);
        }
    }
}
