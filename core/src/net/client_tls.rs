//! Client TLS built with rustls from otelcol's `configtls` client keys ([`TlsClientConfig`]):
//! `ca_file` (which replaces the system roots, as Go's `RootCAs` does), `cert_file`/`key_file`,
//! `min_version`/`max_version`, `cipher_suites` (Go's names, read as on servers),
//! `server_name_override` and `insecure_skip_verify`. The exporters (`helper::tls`, with the `otlp`
//! exporter's connector) and the scraping receivers (`postgresql`, `redis`, `nginx`) build their
//! clients here, so every client reads the keys and words its errors alike.

use crate::config::TlsClientConfig;
use crate::net::tls::{select_suites, version_range, versions};
use crate::ConfigError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// The rustls client configuration for `tls`, offering `alpn`. Reads the certificate files, so a
/// missing or unreadable one is an error naming its key; nothing connects. In `vigil validate`
/// the files are not read (otelcol's `configtls` loads them at start) and the configuration
/// built, which never connects, trusts nothing it would have read.
///
/// `err(key, message)` makes the caller's error at `key`, the path below the component: `tls::`
/// and the key (`tls::ca_file`), or `tls` for the section as a whole.
pub fn client_config(
    tls: &TlsClientConfig,
    alpn: &[&[u8]],
    err: impl Fn(&str, String) -> ConfigError,
) -> Result<Arc<ClientConfig>, ConfigError> {
    let at = |key: &str, msg: String| err(&format!("tls::{key}"), msg);
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| at(key, format!("cannot read {path:?}: {e}")))
    };
    let (min, max) = version_range(tls.min_version.as_deref(), tls.max_version.as_deref())
        .map_err(|e| at(e.key, e.message))?;
    let versions = versions(min, max);
    let base = aws_lc_rs::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: select_suites(&tls.cipher_suites, &base.cipher_suites, &versions)
            .map_err(|e| at(e.key, e.message))?,
        ..base
    });
    let deferred = crate::config::host_files_deferred();
    let skip_verify = tls.insecure_skip_verify || (deferred && tls.ca_file.is_some());
    let verifier: Arc<dyn ServerCertVerifier> = if skip_verify {
        Arc::new(AnyServerCert {
            algorithms: provider.signature_verification_algorithms,
        })
    } else {
        let mut roots = RootCertStore::empty();
        match &tls.ca_file {
            Some(ca) => {
                for cert in CertificateDer::pem_slice_iter(&read("ca_file", ca)?) {
                    let cert = cert.map_err(|e| at("ca_file", format!("{ca:?}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| at("ca_file", format!("{ca:?}: {e}")))?;
                }
                if tls.include_system_ca_certs_pool {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                }
            }
            // The system store (a certificate it cannot parse is skipped, as Go does).
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| match &tls.ca_file {
            Some(ca) => at(
                "ca_file",
                format!("{ca:?} holds no usable root certificate: {e}"),
            ),
            None => err(
                "tls",
                format!(
                    "no usable root certificate in the system trust store ({e}); set \
                     tls::ca_file, or tls::insecure: true for a plaintext backend"
                ),
            ),
        })?;
        match &tls.server_name_override {
            Some(name) => Arc::new(NameOverride {
                inner: webpki,
                name: server_name(name).map_err(|m| at("server_name_override", m))?,
            }),
            None => webpki,
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| at("min_version", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match (&tls.cert_file, &tls.key_file) {
        (Some(_), Some(_)) if deferred => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_slice_iter(&read("cert_file", cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| at("cert_file", format!("{cert:?}: {e}")))?;
            if certs.is_empty() {
                return Err(at(
                    "cert_file",
                    format!("{cert:?} holds no PEM certificate"),
                ));
            }
            let key_der = PrivateKeyDer::from_pem_slice(&read("key_file", key)?)
                .map_err(|e| at("key_file", format!("{key:?}: {e}")))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| at("key_file", format!("does not fit cert_file: {e}")))?
        }
        (Some(_), None) => return Err(at("key_file", "cert_file needs key_file".into())),
        (None, Some(_)) => return Err(at("cert_file", "key_file needs cert_file".into())),
        (None, None) => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// `name` as a TLS server name (a DNS name or an IP address, brackets allowed around IPv6); the
/// error is the message for the key it came from.
pub fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|e| format!("{name:?} is not a DNS name or IP address: {e}"))
}

/// Verifies the server's certificate for a fixed name, whatever host the connection was made to
/// (reqwest verifies against the URL's host, which `server_name_override` replaces).
#[derive(Debug)]
struct NameOverride {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip_verify`: accepts any server certificate and name, while still checking that the
/// handshake is signed by the key in that certificate, so the connection stays encrypted to
/// whoever presented it. For test setups and self-signed gateways only, as in otelcol.
#[derive(Debug)]
struct AnyServerCert {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(v: serde_json::Value) -> TlsClientConfig {
        serde_json::from_value(v).unwrap()
    }

    fn config(t: &TlsClientConfig, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, ConfigError> {
        client_config(t, alpn, |k, m| ConfigError::at(k, m))
    }

    #[test]
    fn versions_and_suites_narrow_the_offer_and_errors_name_the_key() {
        let only13 = tls(serde_json::json!({"insecure_skip_verify": true, "min_version": "1.3"}));
        // What each range offers is shown against real servers in the `otlp` exporter's tests.
        let cfg = config(&only13, &[b"h2"]).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec()]);
        let suites = tls(serde_json::json!({
            "insecure_skip_verify": true,
            "cipher_suites": ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"],
        }));
        let cfg = config(&suites, &[]).unwrap();
        let tls12: Vec<_> = cfg
            .crypto_provider()
            .cipher_suites
            .iter()
            .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls12(_)))
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            vec![rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
        );
        let bad = tls(serde_json::json!({"cipher_suites": ["TLS_RSA_WITH_RC4_128_SHA"]}));
        let e = config(&bad, &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("tls::cipher_suites: \"TLS_RSA_WITH_RC4_128_SHA\""),
            "{e}"
        );
        let e = config(&tls(serde_json::json!({"max_version": "1.1"})), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls::max_version: TLS 1.1 is not supported"),
            "{e}"
        );
        let e = config(&tls(serde_json::json!({"cert_file": "c.pem"})), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls::key_file: cert_file needs key_file"), "{e}");
        assert!(server_name("[::1]").is_ok());
    }

    #[test]
    fn server_name_override_is_checked_against_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let k = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        let named = |n: &str| tls(serde_json::json!({"ca_file": path, "server_name_override": n}));
        assert!(config(&named("localhost"), &[]).is_ok());
        let e = config(&named("not a name!"), &[]).unwrap_err().to_string();
        assert!(
            e.starts_with("tls::server_name_override: \"not a name!\" is not a DNS name"),
            "{e}"
        );
    }

    /// configtls's keys are Go strings, so `server_name_override: ""` (as awsxray's
    /// `proxy_server::tls` templates write it) is no override, and no other key is a path or
    /// version when empty.
    #[test]
    fn empty_strings_are_unset_keys() {
        let dir = tempfile::tempdir().unwrap();
        let k = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.pem()).unwrap();
        let t = tls(serde_json::json!({
            "ca_file": path, "server_name_override": "", "cert_file": "", "key_file": "",
            "min_version": "", "max_version": "",
        }));
        assert_eq!(t.server_name_override, None);
        assert_eq!((t.cert_file, t.key_file), (None, None));
        assert_eq!((t.min_version, t.max_version), (None, None));
        let t = tls(serde_json::json!({"ca_file": path, "server_name_override": ""}));
        assert!(config(&t, &[]).is_ok());
        assert_eq!(tls(serde_json::json!({"ca_file": ""})).ca_file, None);
        let named = tls(serde_json::json!({"server_name_override": "localhost"}));
        assert_eq!(named.server_name_override.as_deref(), Some("localhost"));
    }

    #[test]
    fn include_system_ca_certs_pool_adds_the_system_roots_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        // An empty file alone leaves no root; with the system pool there are the system's.
        assert!(config(&tls(serde_json::json!({"ca_file": empty})), &[]).is_err());
        let with_system = tls(serde_json::json!({
            "ca_file": empty, "include_system_ca_certs_pool": true, "reload_interval": "1h",
        }));
        assert_eq!(
            with_system.reload_interval,
            Some(std::time::Duration::from_secs(3600))
        );
        if !rustls_native_certs::load_native_certs().certs.is_empty() {
            assert!(config(&with_system, &[]).is_ok());
        }
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        for (path, want) in [
            (&missing, "cannot read"),
            (&empty, "holds no usable root certificate"),
        ] {
            let t = tls(serde_json::json!({"ca_file": path}));
            let e = config(&t, &[]).unwrap_err().to_string();
            assert!(e.starts_with("tls::ca_file: "), "{e}");
            assert!(e.contains(want), "{e}");
        }
    }
}
