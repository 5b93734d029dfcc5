//! What the `kafka` exporter and receiver share: otelcol's `configkafka` client keys (`brokers`,
//! `client_id`, `protocol_version`, `auth`, `tls`, `metadata`) and their translation into librdkafka
//! properties. Core holds no Kafka client: the properties are plain key/value pairs that both
//! components hand to rdkafka, so only those two crates link librdkafka.

use crate::config::{duration, ConfigError, TlsClientConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// otelcol's default broker list.
pub fn default_brokers() -> Vec<String> {
    vec!["localhost:9092".to_string()]
}

/// otelcol's default `client_id` (and the receiver's default `group_id`).
pub fn default_client_id() -> String {
    "otel-collector".to_string()
}

/// otelcol's default `protocol_version`, the Kafka API level both components ask the broker for.
pub fn default_protocol_version() -> Option<String> {
    Some("2.1.0".to_string())
}

/// `auth::plain_text`: SASL PLAIN, as otelcol's deprecated spelling has it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlainText {
    pub username: String,
    pub password: String,
}

/// `auth::sasl`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// Sarama's handshake version (0 or 1); librdkafka always speaks v1, which every broker since
    /// Kafka 1.0 accepts, so the value is only checked.
    #[serde(default)]
    pub version: i32,
    /// AWS MSK IAM: accepted so that the error can say it is unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_msk: Option<serde_json::Value>,
    /// OIDC client credentials from a file: accepted so that the error can say it is unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_file: Option<serde_json::Value>,
}

/// `auth`: SASL credentials and (otelcol's older place for) TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain_text: Option<PlainText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<Sasl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsClientConfig>,
    /// GSSAPI: accepted so that the error can say it is unsupported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kerberos: Option<serde_json::Value>,
}

/// `metadata::retry`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataRetry {
    #[serde(default = "default_retry_max")]
    pub max: u32,
    #[serde(default = "default_retry_backoff", with = "duration")]
    pub backoff: Duration,
}

fn default_retry_max() -> u32 {
    3
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(250)
}

impl Default for MetadataRetry {
    fn default() -> Self {
        MetadataRetry {
            max: default_retry_max(),
            backoff: default_retry_backoff(),
        }
    }
}

/// `metadata`: how often the cluster layout is read again.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Whether a metadata refresh asks for every topic of the cluster (`true`, otelcol's default)
    /// or only for the topics in use: librdkafka's `topic.metadata.refresh.sparse`, inverted.
    #[serde(default = "yes")]
    pub full: bool,
    #[serde(default = "default_refresh", with = "duration")]
    pub refresh_interval: Duration,
    #[serde(default)]
    pub retry: MetadataRetry,
}

fn yes() -> bool {
    true
}

fn default_refresh() -> Duration {
    Duration::from_secs(600)
}

impl Default for Metadata {
    fn default() -> Self {
        Metadata {
            full: true,
            refresh_interval: default_refresh(),
            retry: MetadataRetry::default(),
        }
    }
}

/// The shared keys, borrowed from a component's config (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, so each component lists them itself).
pub struct Client<'a> {
    pub brokers: &'a [String],
    pub resolve_canonical_bootstrap_servers_only: bool,
    pub client_id: &'a str,
    pub protocol_version: Option<&'a str>,
    pub auth: Option<&'a Auth>,
    pub tls: Option<&'a TlsClientConfig>,
    pub metadata: &'a Metadata,
    /// `rack_id`: librdkafka's `client.rack` (rack-aware fetching from the nearest replica).
    pub rack_id: &'a str,
    /// `use_leader_epoch`: librdkafka always uses the leader epoch (KIP-320) and has no switch.
    pub use_leader_epoch: bool,
}

/// otelcol's default `use_leader_epoch`.
pub fn default_use_leader_epoch() -> bool {
    true
}

impl Client<'_> {
    /// The librdkafka properties for these keys; errors carry the key path.
    pub fn properties(&self) -> Result<Vec<(&'static str, String)>, ConfigError> {
        let mut p = Vec::new();
        if self.brokers.is_empty() || self.brokers.iter().any(|b| b.trim().is_empty()) {
            return Err(ConfigError::at(
                "brokers",
                "must list at least one broker as host:port",
            ));
        }
        for b in self.brokers {
            if b.rsplit_once(':')
                .and_then(|(_, port)| port.parse::<u16>().ok())
                .is_none()
            {
                return Err(ConfigError::at(
                    "brokers",
                    format!("invalid broker {b:?}: expected host:port"),
                ));
            }
        }
        p.push(("bootstrap.servers", self.brokers.join(",")));
        if self.resolve_canonical_bootstrap_servers_only {
            p.push((
                "client.dns.lookup",
                "resolve_canonical_bootstrap_servers_only".into(),
            ));
        }
        p.push(("client.id", self.client_id.to_string()));
        if let Some(v) = self.protocol_version {
            let ok = v.split('.').count() >= 2
                && v.split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
            if !ok {
                return Err(ConfigError::at(
                    "protocol_version",
                    format!("invalid Kafka version {v:?}: expected a version such as \"2.1.0\""),
                ));
            }
            // librdkafka asks each broker for its API versions; the version matters only for a
            // broker older than 0.10, which cannot answer (and librdkafka warns at every start
            // when the fallback is set, so it is set only then).
            if v.starts_with("0.") {
                p.push(("api.version.request", "false".into()));
                p.push(("broker.version.fallback", v.to_string()));
            }
        }
        let refresh = self.metadata.refresh_interval.as_millis().max(1);
        p.push(("topic.metadata.refresh.interval.ms", refresh.to_string()));
        p.push((
            "topic.metadata.refresh.sparse",
            (!self.metadata.full).to_string(),
        ));
        if !self.rack_id.is_empty() {
            p.push(("client.rack", self.rack_id.to_string()));
        }
        if !self.use_leader_epoch {
            return Err(ConfigError::at(
                "use_leader_epoch",
                "false is not supported by vigil's kafka client: librdkafka always validates \
                 fetch positions with the leader epoch (KIP-320) and has no setting to turn it off",
            ));
        }
        p.push((
            "retry.backoff.ms",
            self.metadata.retry.backoff.as_millis().max(1).to_string(),
        ));

        let auth = self.auth.cloned().unwrap_or_default();
        if auth.kerberos.is_some() {
            return Err(ConfigError::at(
                "auth::kerberos",
                "Kerberos (GSSAPI) is not supported by vigil's kafka client; use auth::sasl with PLAIN or SCRAM",
            ));
        }
        let sasl = match (&auth.plain_text, &auth.sasl) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at(
                    "auth",
                    "set either plain_text or sasl, not both",
                ))
            }
            (Some(pt), None) => Some(("PLAIN", pt.username.clone(), pt.password.clone())),
            (None, Some(s)) => {
                if s.oidc_file.is_some() {
                    return Err(ConfigError::at(
                        "auth::sasl::oidc_file",
                        "OIDC (OAUTHBEARER) is not supported by vigil's kafka client",
                    ));
                }
                if s.aws_msk.is_some() {
                    return Err(ConfigError::at(
                        "auth::sasl::aws_msk",
                        "AWS MSK IAM is not supported by vigil's kafka client",
                    ));
                }
                if !matches!(s.version, 0 | 1) {
                    return Err(ConfigError::at(
                        "auth::sasl::version",
                        format!("invalid version {}: expected 0 or 1", s.version),
                    ));
                }
                let mech = match s.mechanism.as_str() {
                    "PLAIN" => "PLAIN",
                    "SCRAM-SHA-256" => "SCRAM-SHA-256",
                    "SCRAM-SHA-512" => "SCRAM-SHA-512",
                    other => {
                        return Err(ConfigError::at(
                            "auth::sasl::mechanism",
                            format!(
                                "unsupported mechanism {other:?}: expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 \
                                 (AWS_MSK_IAM_OAUTHBEARER and OIDCFILE are not supported by vigil's kafka client)"
                            ),
                        ))
                    }
                };
                for (key, v) in [("username", &s.username), ("password", &s.password)] {
                    if v.is_empty() {
                        return Err(ConfigError::at(format!("auth::sasl::{key}"), "is required"));
                    }
                }
                Some((mech, s.username.clone(), s.password.clone()))
            }
            (None, None) => None,
        };
        let (tls, tls_key) =
            match (self.tls, &auth.tls) {
                (Some(_), Some(_)) => return Err(ConfigError::at(
                    "auth::tls",
                    "set tls or auth::tls, not both (auth::tls is otelcol's older place for it)",
                )),
                (Some(t), None) => (Some(t), "tls"),
                (None, Some(t)) => (Some(t), "auth::tls"),
                (None, None) => (None, "tls"),
            };
        let tls = tls.filter(|t| !t.insecure);
        if let Some(t) = tls {
            for (key, set) in [
                ("server_name_override", t.server_name_override.is_some()),
                ("min_version", t.min_version.is_some()),
                ("max_version", t.max_version.is_some()),
                // librdkafka takes OpenSSL's suite names, not Go's; a silent mismatch would
                // weaken or break the handshake.
                ("cipher_suites", !t.cipher_suites.is_empty()),
            ] {
                if set {
                    return Err(ConfigError::at(
                        format!("{tls_key}::{key}"),
                        "is not supported by vigil's kafka client (librdkafka has no such setting)",
                    ));
                }
            }
            if t.cert_file.is_some() != t.key_file.is_some() {
                return Err(ConfigError::at(
                    tls_key,
                    "cert_file and key_file must be set together",
                ));
            }
            for (key, file) in [
                ("ca_file", &t.ca_file),
                ("cert_file", &t.cert_file),
                ("key_file", &t.key_file),
            ] {
                // Not in `vigil validate`: otelcol's kafka components load these at start.
                if let Some(f) = file
                    .as_ref()
                    .filter(|_| !crate::config::host_files_deferred())
                {
                    if let Err(e) = std::fs::metadata(f) {
                        return Err(ConfigError::at(
                            format!("{tls_key}::{key}"),
                            format!("cannot read {f:?}: {e}"),
                        ));
                    }
                }
            }
            if let Some(f) = &t.ca_file {
                p.push(("ssl.ca.location", f.clone()));
            }
            if let (Some(c), Some(k)) = (&t.cert_file, &t.key_file) {
                p.push(("ssl.certificate.location", c.clone()));
                p.push(("ssl.key.location", k.clone()));
            }
            if t.insecure_skip_verify {
                p.push(("enable.ssl.certificate.verification", "false".into()));
                p.push(("ssl.endpoint.identification.algorithm", "none".into()));
            }
        }
        let protocol = match (sasl.is_some(), tls.is_some()) {
            (false, false) => "plaintext",
            (false, true) => "ssl",
            (true, false) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        p.push(("security.protocol", protocol.into()));
        if let Some((mech, user, pass)) = sasl {
            p.push(("sasl.mechanism", mech.into()));
            p.push(("sasl.username", user));
            p.push(("sasl.password", pass));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client<'a>(brokers: &'a [String], auth: Option<&'a Auth>, md: &'a Metadata) -> Client<'a> {
        Client {
            brokers,
            resolve_canonical_bootstrap_servers_only: false,
            client_id: "otel-collector",
            protocol_version: Some("2.1.0"),
            auth,
            tls: None,
            metadata: md,
            rack_id: "",
            use_leader_epoch: true,
        }
    }

    fn get(p: &[(&str, String)], k: &str) -> Option<String> {
        p.iter().find(|(key, _)| *key == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn scram_over_plaintext() {
        let auth: Auth = serde_json::from_value(serde_json::json!({
            "sasl": {"username": "u", "password": "p", "mechanism": "SCRAM-SHA-512"}
        }))
        .unwrap();
        let md = Metadata::default();
        let b = default_brokers();
        let p = client(&b, Some(&auth), &md).properties().unwrap();
        assert_eq!(
            get(&p, "security.protocol").as_deref(),
            Some("sasl_plaintext")
        );
        assert_eq!(get(&p, "sasl.mechanism").as_deref(), Some("SCRAM-SHA-512"));
        assert_eq!(
            get(&p, "bootstrap.servers").as_deref(),
            Some("localhost:9092")
        );
        assert_eq!(get(&p, "broker.version.fallback"), None);
    }

    #[test]
    fn bad_values_name_their_key() {
        let md = Metadata::default();
        let b = vec!["nohost".to_string()];
        let e = client(&b, None, &md).properties().unwrap_err();
        assert_eq!(e.path, "brokers");
        let auth: Auth = serde_json::from_value(serde_json::json!({
            "sasl": {"username": "u", "password": "p", "mechanism": "GSSAPI"}
        }))
        .unwrap();
        let b = default_brokers();
        let e = client(&b, Some(&auth), &md).properties().unwrap_err();
        assert_eq!(e.path, "auth::sasl::mechanism");
        assert!(e.message.contains("SCRAM-SHA-256"), "{e}");
    }

    #[test]
    fn sasl_needs_credentials_and_unsupported_mechanisms_are_named() {
        let md = Metadata::default();
        let b = default_brokers();
        for (sasl, path) in [
            (
                serde_json::json!({"mechanism": "SCRAM-SHA-256", "password": "p"}),
                "auth::sasl::username",
            ),
            (
                serde_json::json!({"mechanism": "PLAIN", "username": "u"}),
                "auth::sasl::password",
            ),
            (
                serde_json::json!({"mechanism": "OIDCFILE", "oidc_file": {"token_url": "x"}}),
                "auth::sasl::oidc_file",
            ),
            (
                serde_json::json!({"mechanism": "AWS_MSK_IAM_OAUTHBEARER"}),
                "auth::sasl::mechanism",
            ),
        ] {
            let auth: Auth = serde_json::from_value(serde_json::json!({ "sasl": sasl })).unwrap();
            let e = client(&b, Some(&auth), &md).properties().unwrap_err();
            assert_eq!(e.path, path, "{e}");
        }
        let mut c = client(&b, None, &md);
        c.rack_id = "rack-1";
        let p = c.properties().unwrap();
        assert_eq!(get(&p, "client.rack").as_deref(), Some("rack-1"));
        assert_eq!(
            get(&p, "topic.metadata.refresh.sparse").as_deref(),
            Some("false")
        );
        c.use_leader_epoch = false;
        assert_eq!(c.properties().unwrap_err().path, "use_leader_epoch");
    }
}
