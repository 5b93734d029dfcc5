//! `auth::authenticator` references, checked at `validate` as start would check them: the named
//! extension must be configured and listed in `service::extensions`, and be a server authenticator
//! under a receiver or a client authenticator under an exporter. A receiver's
//! `k8s_leader_elector` is checked the same way. Without this, such a config passed
//! `validate` and then failed to start.

use serde_json::Value;
use std::collections::BTreeMap;
use vigil_core::{ComponentId, ComponentKind, ConfigError};

/// Extension types whose `server_auth` is some (a unit test checks this against the extensions).
pub(crate) const SERVER_AUTH: &[&str] = &["bearertokenauth", "basicauth", "oidc"];
/// Extension types whose `client_auth` is some.
pub(crate) const CLIENT_AUTH: &[&str] = &[
    "bearertokenauth",
    "basicauth",
    "oauth2client",
    "googleclientauth",
    "headers_setter",
    "sigv4auth",
];

/// Every `auth: {authenticator: <id>}` under `value`, as (key path, id text).
fn find(value: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = value else { return };
    for (k, v) in map {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}::{k}")
        };
        if k == "auth" {
            if let Some(Value::String(id)) = v.get("authenticator") {
                out.push((format!("{here}::authenticator"), id.clone()));
                continue;
            }
        }
        find(v, &here, out);
    }
}

/// The errors of every reference in `components` (receivers or exporters). `listed` is
/// `service::extensions`; `configured` the `extensions` section; `resolve` gives the registered
/// extension type a spelling stands for (`bearer_token_auth` is `bearertokenauth`), or `None` when
/// vigil has no such extension.
pub(crate) fn check(
    kind: ComponentKind,
    components: &BTreeMap<ComponentId, Value>,
    listed: &[ComponentId],
    configured: &BTreeMap<ComponentId, Value>,
    resolve: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<ConfigError> {
    let (wanted, role) = match kind {
        ComponentKind::Receiver => (SERVER_AUTH, "server"),
        _ => (CLIENT_AUTH, "client"),
    };
    let mut errors = Vec::new();
    for (id, cfg) in components {
        let mut refs = Vec::new();
        find(cfg, "", &mut refs);
        for (path, raw) in refs {
            // A malformed id is the component's own validate error already.
            let Ok(ext) = ComponentId::parse(&raw) else {
                continue;
            };
            let msg = if !configured.contains_key(&ext) {
                format!("references extension {raw:?} which is not configured")
            } else if !listed.contains(&ext) {
                format!("extension {raw:?} is not listed in service::extensions")
            } else if resolve(ext.type_name()).is_some_and(|t| !wanted.contains(&t)) {
                // An extension type vigil lacks is reported once, as unknown, where it is
                // configured; saying it is no authenticator as well would mislead.
                format!(
                    "extension {raw:?} is not a {role} authenticator (those are: {})",
                    wanted.join(", ")
                )
            } else {
                continue;
            };
            errors.push(ConfigError::component(kind, id, path, msg));
        }
    }
    errors
}

/// The errors of every receiver's `k8s_leader_elector: <id>`, checked as start checks it: the
/// extension must be configured, listed in `service::extensions`, and a `k8s_leader_elector`.
pub(crate) fn check_leader_electors(
    receivers: &BTreeMap<ComponentId, Value>,
    listed: &[ComponentId],
    configured: &BTreeMap<ComponentId, Value>,
    resolve: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (id, cfg) in receivers {
        let Some(Value::String(raw)) = cfg.get("k8s_leader_elector") else {
            continue;
        };
        // A malformed id is the receiver's own validate error already.
        let Ok(ext) = ComponentId::parse(raw) else {
            continue;
        };
        let msg = if !configured.contains_key(&ext) {
            format!("references extension {raw:?} which is not configured")
        } else if !listed.contains(&ext) {
            format!("extension {raw:?} is not listed in service::extensions")
        } else if resolve(ext.type_name()).is_some_and(|t| t != "k8s_leader_elector") {
            format!("extension {raw:?} is not a k8s_leader_elector")
        } else {
            continue;
        };
        errors.push(ConfigError::component(
            ComponentKind::Receiver,
            id,
            "k8s_leader_elector",
            msg,
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leader_elector_references_are_checked_like_start_checks_them() {
        let id = |s: &str| ComponentId::parse(s).unwrap();
        let receivers: BTreeMap<ComponentId, Value> = [
            (
                id("k8sobjects"),
                json!({"k8s_leader_elector": "k8s_leader_elector/a"}),
            ),
            (
                id("k8s_events"),
                json!({"k8s_leader_elector": "k8s_leader_elector/b"}),
            ),
            (
                id("k8s_cluster"),
                json!({"k8s_leader_elector": "basicauth"}),
            ),
            (id("otlp"), json!({})),
        ]
        .into_iter()
        .collect();
        let configured: BTreeMap<ComponentId, Value> = [
            (id("k8s_leader_elector/a"), json!({})),
            (id("basicauth"), json!({})),
        ]
        .into_iter()
        .collect();
        let listed = [id("basicauth")];
        let resolve = |t: &str| {
            ["k8s_leader_elector", "basicauth"]
                .into_iter()
                .find(|k| *k == t)
        };
        let errors: Vec<String> = check_leader_electors(&receivers, &listed, &configured, &resolve)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors[0].contains("receivers::k8s_cluster::k8s_leader_elector")
                && errors[0].contains("not a k8s_leader_elector"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("\"k8s_leader_elector/b\" which is not configured"),
            "{errors:?}"
        );
        assert!(
            errors[2].contains("not listed in service::extensions"),
            "{errors:?}"
        );
    }

    fn known(t: &str) -> Option<&'static str> {
        SERVER_AUTH
            .iter()
            .chain(CLIENT_AUTH)
            .chain(&["file_storage"])
            .copied()
            .find(|k| *k == t)
    }

    #[test]
    fn references_are_checked_like_start_checks_them() {
        let id = |s: &str| ComponentId::parse(s).unwrap();
        let receivers: BTreeMap<ComponentId, Value> = [(
            id("otlp"),
            json!({"protocols": {
                "grpc": {"auth": {"authenticator": "basicauth"}},
                "http": {"auth": {"authenticator": "oauth2client"}},
            }}),
        )]
        .into_iter()
        .collect();
        let configured: BTreeMap<ComponentId, Value> = [
            (id("basicauth"), json!({})),
            (id("oauth2client"), json!({})),
            (id("oidc"), json!({})),
        ]
        .into_iter()
        .collect();
        let listed = [id("oauth2client"), id("oidc")];
        let errors: Vec<String> = check(
            ComponentKind::Receiver,
            &receivers,
            &listed,
            &configured,
            &known,
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("protocols::grpc::auth::authenticator")
                && errors[0].contains("not listed in service::extensions"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("protocols::http::auth::authenticator")
                && errors[1].contains("not a server authenticator"),
            "{errors:?}"
        );
        let exporters: BTreeMap<ComponentId, Value> = [
            (id("otlp/a"), json!({"auth": {"authenticator": "oidc"}})),
            (id("otlp/b"), json!({"auth": {"authenticator": "missing"}})),
            (
                id("otlp/c"),
                json!({"auth": {"authenticator": "oauth2client"}}),
            ),
        ]
        .into_iter()
        .collect();
        let errors: Vec<String> = check(
            ComponentKind::Exporter,
            &exporters,
            &listed,
            &configured,
            &known,
        )
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("exporters::otlp/a::auth::authenticator")
                && errors[0].contains("not a client authenticator"),
            "{errors:?}"
        );
        assert!(errors[1].contains("not configured"), "{errors:?}");

        // An extension type vigil lacks is already an "unknown type" error where it is configured:
        // no second, misleading "not an authenticator" here.
        let configured: BTreeMap<ComponentId, Value> =
            [(id("asapclient"), json!({}))].into_iter().collect();
        let exporters: BTreeMap<ComponentId, Value> =
            [(id("otlp"), json!({"auth": {"authenticator": "asapclient"}}))]
                .into_iter()
                .collect();
        let errors = check(
            ComponentKind::Exporter,
            &exporters,
            &[id("asapclient")],
            &configured,
            &known,
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    /// The type lists agree with what each authenticator extension offers.
    #[test]
    fn the_lists_match_the_extensions() {
        use crate::extensions::{
            basicauth, bearertokenauth, googleclientauth, headers_setter, oauth2client, oidc,
            sigv4auth,
        };
        let configs = [
            (bearertokenauth::factory(), json!({"token": "t"})),
            (
                basicauth::factory(),
                json!({"htpasswd": {"inline": "u:p"}, "client_auth": {"username": "u", "password": "p"}}),
            ),
            (
                oidc::factory(),
                json!({"issuer_url": "https://idp", "audience": "a"}),
            ),
            (
                oauth2client::factory(),
                json!({"client_id": "a", "client_secret": "s", "token_url": "https://idp/t"}),
            ),
            (
                headers_setter::factory(),
                json!({"headers": [{"key": "k", "value": "v"}]}),
            ),
            (googleclientauth::factory(), json!({})),
            (sigv4auth::factory(), json!({"region": "us-east-1"})),
        ];
        for (f, cfg) in configs {
            let t = f.type_name();
            let ext = f.create(&ComponentId::parse(t).unwrap(), &cfg).unwrap();
            assert_eq!(ext.server_auth().is_some(), SERVER_AUTH.contains(&t), "{t}");
            assert_eq!(ext.client_auth().is_some(), CLIENT_AUTH.contains(&t), "{t}");
        }
    }
}
