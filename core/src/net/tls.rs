//! Server TLS for every listener, with otelcol's `configtls` server keys: `cert_file`/`key_file` (or
//! `cert_pem`/`key_pem`), `client_ca_file` (mutual TLS: a client without a certificate the CA signed
//! is refused at the handshake), `min_version`/`max_version`, `cipher_suites` (Go's names) and
//! `reload_interval` (the files are re-read on that interval, so a rotated certificate is served
//! without a restart). Every key is checked when the config is validated; the files are read when the
//! component is created for a run, as otelcol's `configtls` loads them at start: `vigil validate` on
//! a machine without the certificates passes, and a missing file, or a key that does not match its
//! certificate, fails the start with the key path and the file.
//!
//! X.509 v1 certificates: Go's crypto/tls accepts a v1 client certificate, rustls (webpki) refuses
//! it at the handshake. A `client_ca_file` that holds a v1 certificate is the mark of a CA that
//! issues v1 certificates (`openssl x509 -req` without extensions), so it is refused at `validate`
//! with a message that says so, instead of every client being refused later.

use arc_swap::ArcSwap;
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CipherSuite, RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion,
};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the client CA is re-read when only `client_ca_file_reload` is set (otelcol watches the
/// file; polling at this interval gives the same result without a watcher per listener).
pub const DEFAULT_CA_RELOAD_POLL: Duration = Duration::from_secs(10);
/// The shortest `reload_interval` accepted: every reload reads the files and, when they changed,
/// rebuilds the configuration, so a tiny interval would spin on the disk for nothing.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// `tls:` on a server, as otelcol's `configtls.ServerConfig`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsServerSettings {
    pub cert_file: Option<String>,
    pub cert_pem: Option<String>,
    pub key_file: Option<String>,
    pub key_pem: Option<String>,
    /// CA bundle that client certificates must chain to; setting it turns on mutual TLS.
    pub client_ca_file: Option<String>,
    /// `"1.2"` (default) or `"1.3"`; otelcol also takes `1.0` and `1.1`, which are refused here.
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    /// Go's suite names. TLS 1.2 suites listed restrict TLS 1.2; TLS 1.3 suites listed restrict
    /// TLS 1.3, which otherwise keeps all of its (Go does not let TLS 1.3 suites be configured).
    pub cipher_suites: Vec<String>,
    /// Re-read `cert_file`, `key_file` and `client_ca_file` this often; a change is served to new
    /// connections, a broken file keeps the previous configuration (logged and counted).
    #[serde(with = "crate::config::opt_duration")]
    pub reload_interval: Option<Duration>,
    /// Re-read `client_ca_file` when it changes (polled every `reload_interval`, or every 10s).
    pub client_ca_file_reload: bool,
    /// Not supported on servers: refused rather than silently ignored.
    pub ca_file: Option<String>,
    pub ca_pem: Option<String>,
    pub include_system_ca_certs_pool: bool,
    pub curve_preferences: Vec<String>,
}

/// A setting that cannot be served, with the key it is under (relative to `tls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tls::{}: {}", self.key, self.message)
    }
}

fn e(key: &'static str, message: impl Into<String>) -> TlsError {
    TlsError {
        key,
        message: message.into(),
    }
}

fn version(key: &'static str, v: &str) -> Result<u8, TlsError> {
    match v {
        "1.2" => Ok(2),
        "1.3" => Ok(3),
        "1.0" | "1.1" => Err(e(
            key,
            format!("TLS {v} is not supported (it is deprecated); use \"1.2\" or \"1.3\""),
        )),
        _ => Err(e(
            key,
            format!("unknown TLS version {v:?}; use \"1.2\" or \"1.3\""),
        )),
    }
}

/// `min_version` and `max_version` of a client or server, as TLS minor versions (2 or 3); the
/// defaults are 1.2 and 1.3.
pub fn version_range(min: Option<&str>, max: Option<&str>) -> Result<(u8, u8), TlsError> {
    let min = version("min_version", min.unwrap_or("1.2"))?;
    let max = version("max_version", max.unwrap_or("1.3"))?;
    if min > max {
        return Err(e("max_version", "is lower than min_version"));
    }
    Ok((min, max))
}

/// The rustls protocol versions from `min` to `max` (TLS minor versions, as [`version_range`]
/// returns them).
pub fn versions(min: u8, max: u8) -> Vec<&'static SupportedProtocolVersion> {
    [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect()
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|err| e(key, format!("cannot read {path:?}: {err}")))
}

/// As [`read`], except in `vigil validate`, where it reads nothing and gives no bytes: otelcol's
/// `configtls` loads its files when the component starts, not when the config is validated.
fn read_at_start(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    if crate::config::host_files_deferred() {
        return Ok(Vec::new());
    }
    read(key, path)
}

/// True when `file` is set and was not read (see [`read_at_start`]).
fn deferred(file: &Option<String>, bytes: &[u8]) -> bool {
    file.is_some() && bytes.is_empty() && crate::config::host_files_deferred()
}

/// The certificate source of a server config built by `vigil validate` without its files. It is
/// never served: validate drops the graph without starting it.
#[derive(Debug)]
struct NotLoaded;

impl rustls::server::ResolvesServerCert for NotLoaded {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// Go's name for each suite rustls offers (with Go's older aliases for the ChaCha20 ones).
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_AES_128_GCM_SHA256,
    ),
    (
        "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_256_GCM_SHA384,
    ),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Suites Go knows (some only as insecure) that rustls does not implement: named in the error so
/// that a config written for otelcol says why it is refused.
const GO_ONLY_SUITES: &[&str] = &[
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The suites `names` select from the provider's, following Go's rule for TLS 1.3 (see
/// [`TlsServerSettings::cipher_suites`]); servers and clients read `cipher_suites` alike.
pub fn select_suites(
    names: &[String],
    all: &[SupportedCipherSuite],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    if names.is_empty() {
        return Ok(all.to_vec());
    }
    let mut picked: Vec<SupportedCipherSuite> = Vec::new();
    for name in names {
        let Some((_, id)) = SUITES.iter().find(|(n, _)| n == name) else {
            let why = if GO_ONLY_SUITES.contains(&name.as_str()) {
                "is a suite without forward secrecy or with CBC/RC4/3DES, which vigil (rustls) does \
                 not offer"
            } else {
                "is not a known cipher suite"
            };
            let offered: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
            return Err(e(
                "cipher_suites",
                format!("{name:?} {why}; use one of {}", offered.join(", ")),
            ));
        };
        if let Some(s) = all.iter().find(|s| s.suite() == *id) {
            if !picked.iter().any(|p| p.suite() == *id) {
                picked.push(*s);
            }
        }
    }
    let is13 = |s: &SupportedCipherSuite| matches!(s, SupportedCipherSuite::Tls13(_));
    if !picked.iter().any(is13) {
        picked.extend(all.iter().filter(|s| is13(s)).copied());
    }
    if versions.contains(&&rustls::version::TLS12) && !picked.iter().any(|s| !is13(s)) {
        return Err(e(
            "cipher_suites",
            "lists no TLS 1.2 suite while TLS 1.2 is allowed: add one, or set min_version: \"1.3\"",
        ));
    }
    Ok(picked)
}

/// The bytes a configuration is built from, kept to tell whether a reload changed anything.
#[derive(Clone, PartialEq, Eq)]
struct Inputs {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsServerSettings {
    /// Checks every key and builds the configuration once, offering `alpn`: what `validate` runs.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
        Ok(Arc::new(self.build(&self.inputs()?, alpn)?))
    }

    /// The server TLS of a listener, whose configuration [`ServerTls::reload`] can replace.
    pub fn server(&self, alpn: &[&[u8]]) -> Result<Arc<ServerTls>, TlsError> {
        let inputs = self.inputs()?;
        let config = self.build(&inputs, alpn)?;
        Ok(Arc::new(ServerTls {
            settings: self.clone(),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            current: ArcSwap::from_pointee(config),
            inputs: Mutex::new(inputs),
        }))
    }

    /// How often the files are re-read, if at all.
    pub fn reload_period(&self) -> Option<Duration> {
        match self.reload_interval.filter(|d| !d.is_zero()) {
            Some(d) => Some(d),
            None if self.client_ca_file_reload && self.client_ca_file.is_some() => {
                Some(DEFAULT_CA_RELOAD_POLL)
            }
            None => None,
        }
    }

    fn inputs(&self) -> Result<Inputs, TlsError> {
        let unsupported: [(&'static str, bool); 4] = [
            ("ca_file", self.ca_file.is_some()),
            ("ca_pem", self.ca_pem.is_some()),
            (
                "include_system_ca_certs_pool",
                self.include_system_ca_certs_pool,
            ),
            ("curve_preferences", !self.curve_preferences.is_empty()),
        ];
        if let Some((key, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(e(key, "not supported yet on servers"));
        }
        if let Some(d) = self.reload_interval.filter(|d| !d.is_zero()) {
            if d < MIN_RELOAD_INTERVAL {
                return Err(e(
                    "reload_interval",
                    format!("must be at least 1s (or 0 for never), got {d:?}"),
                ));
            }
        }
        if self.client_ca_file_reload && self.client_ca_file.is_none() {
            return Err(e("client_ca_file_reload", "needs client_ca_file"));
        }
        let cert = match (&self.cert_file, &self.cert_pem) {
            (Some(_), Some(_)) => return Err(e("cert_pem", "set cert_file or cert_pem, not both")),
            (Some(path), None) => read_at_start("cert_file", path)?,
            (None, Some(pem)) => pem.as_bytes().to_vec(),
            (None, None) => return Err(e("cert_file", "required: a server needs a certificate")),
        };
        let key = match (&self.key_file, &self.key_pem) {
            (Some(_), Some(_)) => return Err(e("key_pem", "set key_file or key_pem, not both")),
            (Some(path), None) => read_at_start("key_file", path)?,
            (None, Some(pem)) => pem.as_bytes().to_vec(),
            (None, None) => return Err(e("key_file", "required with a certificate")),
        };
        let client_ca = match &self.client_ca_file {
            Some(path) => Some(read_at_start("client_ca_file", path)?),
            None => None,
        };
        Ok(Inputs {
            cert,
            key,
            client_ca,
        })
    }

    fn build(&self, inputs: &Inputs, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
        let cert_key = if self.cert_file.is_some() {
            "cert_file"
        } else {
            "cert_pem"
        };
        let key_key = if self.key_file.is_some() {
            "key_file"
        } else {
            "key_pem"
        };
        let unread =
            deferred(&self.cert_file, &inputs.cert) || deferred(&self.key_file, &inputs.key);
        let cert_and_key = if unread {
            None
        } else {
            Some((
                pem_certs(cert_key, &inputs.cert)?,
                pem_key(key_key, &inputs.key)?,
            ))
        };
        let (min, max) = version_range(self.min_version.as_deref(), self.max_version.as_deref())?;
        let versions = versions(min, max);
        // An explicit provider: with more than one compiled in, rustls has no process default.
        let base = aws_lc_rs::default_provider();
        let provider = Arc::new(CryptoProvider {
            cipher_suites: select_suites(&self.cipher_suites, &base.cipher_suites, &versions)?,
            ..base
        });
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .map_err(|err| e("min_version", err.to_string()))?;
        let builder = match (&self.client_ca_file, &inputs.client_ca) {
            (Some(path), Some(pem)) if !pem.is_empty() || !crate::config::host_files_deferred() => {
                let mut roots = RootCertStore::empty();
                for cert in pem_certs("client_ca_file", pem)? {
                    if is_x509_v1(&cert) {
                        return Err(e(
                            "client_ca_file",
                            format!(
                                "{path:?} holds an X.509 v1 certificate. vigil checks client \
                                 certificates with rustls, which accepts only v3 certificates \
                                 (Go also accepts v1), and a CA made as v1 (openssl x509 -req \
                                 without -extfile) issues v1 client certificates, which would all \
                                 be refused at the handshake: reissue the CA and the client \
                                 certificates as v3 (with basicConstraints and keyUsage)"
                            ),
                        ));
                    }
                    roots
                        .add(cert)
                        .map_err(|err| e("client_ca_file", format!("{path:?}: {err}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|err| e("client_ca_file", format!("{path:?}: {err}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut cfg = match cert_and_key {
            Some((certs, key)) => builder
                .with_single_cert(certs, key)
                .map_err(|err| e(key_key, format!("does not fit the certificate: {err}")))?,
            None => builder.with_cert_resolver(Arc::new(NotLoaded)),
        };
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(cfg)
    }
}

/// The TLS of a running listener: the configuration new connections get, replaced by a reload.
pub struct ServerTls {
    settings: TlsServerSettings,
    alpn: Vec<Vec<u8>>,
    current: ArcSwap<ServerConfig>,
    inputs: Mutex<Inputs>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// An acceptor with the current configuration, for one new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// How often [`ServerTls::run_reloads`] re-reads the files, if at all.
    pub fn reload_period(&self) -> Option<Duration> {
        self.settings.reload_period()
    }

    /// Re-reads the files; when they changed, builds and serves the new configuration. Returns
    /// whether it changed. On an error the previous configuration stays in use.
    pub fn reload(&self) -> Result<bool, TlsError> {
        // With only `client_ca_file_reload`, the certificate and key stay as loaded at start.
        let only_ca = self.settings.reload_interval.is_none_or(|d| d.is_zero());
        let mut held = self.inputs.lock().unwrap_or_else(|p| p.into_inner());
        let next = match (&self.settings.client_ca_file, only_ca) {
            (Some(path), true) => Inputs {
                client_ca: Some(read("client_ca_file", path)?),
                ..held.clone()
            },
            _ => self.settings.inputs()?,
        };
        if next == *held {
            return Ok(false);
        }
        let cfg = self.settings.build(&next, &self.alpn_refs())?;
        self.current.store(Arc::new(cfg));
        *held = next;
        Ok(true)
    }

    fn alpn_refs(&self) -> Vec<&[u8]> {
        self.alpn.iter().map(|p| p.as_slice()).collect()
    }

    /// Reloads every [`ServerTls::reload_period`] until `stop`; returns at once when there is no
    /// period. A failed reload is logged (naming `component`) and counted in `failed`.
    pub async fn run_reloads(
        &self,
        component: &str,
        reloaded: metrics::Counter,
        failed: metrics::Counter,
        stop: CancellationToken,
    ) {
        let Some(period) = self.reload_period() else {
            return;
        };
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.reload() {
                Ok(true) => {
                    reloaded.increment(1);
                    tracing::info!(
                        component,
                        "TLS certificate files changed; new connections get them"
                    );
                }
                Ok(false) => {}
                Err(err) => {
                    failed.increment(1);
                    tracing::warn!(
                        component,
                        error = %err,
                        "TLS reload failed; the previous certificate stays in use"
                    );
                }
            }
        }
    }
}

fn pem_certs(key: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| e(key, format!("not a PEM certificate: {err}")))?;
    if certs.is_empty() {
        return Err(e(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn pem_key(key: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|err| e(key, format!("not a PEM private key: {err}")))
}

/// Reads one DER tag and length at `at`, returning where the contents start and how long they are.
fn der_header(der: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(at)?;
    let first = *der.get(at + 1)?;
    if first < 0x80 {
        return Some((tag, at + 2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *der.get(at + 2 + i)? as usize;
    }
    Some((tag, at + 2 + n, len))
}

/// Whether a certificate is X.509 v1: its TBSCertificate has no `[0] EXPLICIT version` (the v1
/// default), or the version is 0. A certificate too broken to tell is left for rustls to refuse.
pub fn is_x509_v1(cert: &[u8]) -> bool {
    let Some((0x30, tbs_at, _)) = der_header(cert, 0) else {
        return false;
    };
    let Some((0x30, first, _)) = der_header(cert, tbs_at) else {
        return false;
    };
    match der_header(cert, first) {
        Some((0xa0, inner, _)) => {
            matches!(der_header(cert, inner), Some((0x02, v, 1)) if cert.get(v) == Some(&0))
        }
        Some(_) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> (String, String) {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        (c.pem(), k.serialize_pem())
    }

    fn settings(cert: &str, key: &str) -> TlsServerSettings {
        TlsServerSettings {
            cert_pem: Some(cert.into()),
            key_pem: Some(key.into()),
            ..Default::default()
        }
    }

    #[test]
    fn cipher_suites_take_go_names_and_name_the_unknown_one() {
        let (c, k) = self_signed();
        let mut s = settings(&c, &k);
        s.cipher_suites = vec![
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_AES_128_GCM_SHA256".into(),
        ];
        let cfg = s.server_config(&[]).unwrap();
        let names: Vec<CipherSuite> = cfg
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            names,
            vec![
                CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                CipherSuite::TLS13_AES_128_GCM_SHA256
            ]
        );
        s.cipher_suites = vec!["TLS_RSA_WITH_AES_128_CBC_SHA".into()];
        let err = s.server_config(&[]).unwrap_err();
        assert_eq!(err.key, "cipher_suites");
        assert!(
            err.message.contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
            "{err}"
        );
        assert!(err.message.contains("does not offer"), "{err}");
        s.cipher_suites = vec!["TLS_NOPE".into()];
        let err = s.server_config(&[]).unwrap_err();
        assert!(err.message.contains("\"TLS_NOPE\" is not a known"), "{err}");
        // Only TLS 1.3 suites while TLS 1.2 is allowed would refuse every TLS 1.2 client.
        s.cipher_suites = vec!["TLS_AES_256_GCM_SHA384".into()];
        let err = s.server_config(&[]).unwrap_err();
        assert!(err.message.contains("no TLS 1.2 suite"), "{err}");
        s.min_version = Some("1.3".into());
        assert!(s.server_config(&[]).is_ok());
    }

    #[test]
    fn reload_interval_is_bounded_and_reload_keeps_the_old_config_on_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = self_signed();
        let (cp, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cp, &c).unwrap();
        std::fs::write(&kp, &k).unwrap();
        let mut s = TlsServerSettings {
            cert_file: Some(cp.to_string_lossy().into()),
            key_file: Some(kp.to_string_lossy().into()),
            reload_interval: Some(Duration::from_millis(10)),
            ..Default::default()
        };
        assert_eq!(s.server_config(&[]).unwrap_err().key, "reload_interval");
        s.reload_interval = Some(Duration::from_secs(1));
        let tls = s.server(&[]).unwrap();
        assert!(!tls.reload().unwrap(), "nothing changed");
        let before = tls.current.load_full();
        std::fs::write(&cp, "not a certificate").unwrap();
        assert_eq!(tls.reload().unwrap_err().key, "cert_file");
        assert!(Arc::ptr_eq(&before, &tls.current.load_full()));
        let (c2, k2) = self_signed();
        std::fs::write(&cp, &c2).unwrap();
        // The new certificate with the old key does not fit: still the old config.
        assert_eq!(tls.reload().unwrap_err().key, "key_file");
        std::fs::write(&kp, &k2).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.current.load_full()));
    }

    #[test]
    fn client_ca_file_reload_alone_rereads_only_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = self_signed();
        let (ca1, _) = self_signed();
        let (ca2, _) = self_signed();
        let p = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        std::fs::write(p("c.pem"), &c).unwrap();
        std::fs::write(p("k.pem"), &k).unwrap();
        std::fs::write(p("ca.pem"), &ca1).unwrap();
        let mut s = TlsServerSettings {
            cert_file: Some(p("c.pem")),
            key_file: Some(p("k.pem")),
            client_ca_file_reload: true,
            ..Default::default()
        };
        assert_eq!(
            s.server_config(&[]).unwrap_err().key,
            "client_ca_file_reload"
        );
        s.client_ca_file = Some(p("ca.pem"));
        assert_eq!(s.reload_period(), Some(DEFAULT_CA_RELOAD_POLL));
        let tls = s.server(&[]).unwrap();
        // A changed (or missing) certificate is not looked at without reload_interval...
        std::fs::remove_file(p("c.pem")).unwrap();
        assert!(!tls.reload().unwrap());
        // ...a changed CA is.
        std::fs::write(p("ca.pem"), &ca2).unwrap();
        let before = tls.current.load_full();
        std::fs::write(p("c.pem"), &c).unwrap();
        assert!(tls.reload().unwrap());
        assert!(!Arc::ptr_eq(&before, &tls.current.load_full()));
    }

    #[test]
    fn v1_detection() {
        let (c, _) = self_signed();
        let der = pem_certs("x", c.as_bytes()).unwrap().remove(0);
        assert!(!is_x509_v1(&der));
        // The same TBS without the version field reads as v1; garbage is not called v1.
        assert!(!is_x509_v1(b"\x30\x03\x02\x01\x00"));
        assert!(!is_x509_v1(b""));
    }
}
