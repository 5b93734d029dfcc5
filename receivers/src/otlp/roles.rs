//! Roles (vigil's, beyond otelcol): what an authenticated principal may send through this receiver,
//! and the tenant its data belongs to. Configured under a protocol's `auth:`:
//!
//! ```yaml
//! auth:
//!   authenticator: basicauth/in
//!   tenant_attribute: tenant.id        # the resource attribute stamped; default tenant.id
//!   roles:
//!     - principals: [alice]            # names from the authenticator ("*" matches any)
//!       signals: [traces, metrics]     # default: all three
//!       tenant: team-a                 # stamped on every resource
//!     - groups: [ops]                  # oidc's groups_claim
//!       tenant: ops
//! ```
//!
//! The first role whose `principals` holds the principal's name, or whose `groups` shares one of
//! its groups, applies. A principal that matches no role is refused (HTTP 403, gRPC
//! `PERMISSION_DENIED`), as is a signal its role does not list; both are counted in
//! `vigil_receiver_requests_forbidden`. The tenant attribute is set on every resource of an accepted
//! request, replacing whatever the client sent under that key; a role without `tenant` removes the
//! key, so a client can never choose its tenant.

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vigil_core::component::Principal;
use vigil_core::{ComponentId, ComponentKind, ConfigError, Signal, Telemetry};

fn default_tenant_attribute() -> String {
    "tenant.id".into()
}

/// One entry of `roles`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    #[serde(default)]
    pub principals: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// Client certificate subjects under mutual TLS: the whole subject as RFC 4514 writes it
    /// (`CN=agent-1,O=Example`) or its common name alone (`CN=agent-1`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// `traces`, `metrics`, `logs`; all when absent.
    #[serde(default)]
    pub signals: Option<Vec<String>>,
    #[serde(default)]
    pub tenant: Option<String>,
}

pub(crate) fn default_attribute() -> String {
    default_tenant_attribute()
}

/// The roles of one listener, checked.
#[derive(Debug)]
pub(crate) struct Roles {
    attribute: Arc<str>,
    roles: Vec<Arc<Role>>,
}

#[derive(Debug)]
struct Role {
    principals: Vec<String>,
    groups: Vec<String>,
    subjects: Vec<String>,
    /// Indexed in the order of `Signal::ALL`.
    signals: [bool; 4],
    tenant: Option<String>,
}

/// What a request's principal was granted: carried from the authenticating layer to the export
/// path as a request extension.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    principal: String,
    attribute: Arc<str>,
    role: Arc<Role>,
}

fn slot(signal: Signal) -> usize {
    match signal {
        Signal::Traces => 0,
        Signal::Metrics => 1,
        Signal::Logs => 2,
        Signal::Profiles => 3,
    }
}

impl Roles {
    /// Checks `roles` at `at` (`protocols::http::auth`); `None` when there are none.
    pub(crate) fn load(
        id: &ComponentId,
        at: &str,
        attribute: &str,
        roles: Option<&[RoleConfig]>,
    ) -> Result<Option<Roles>, ConfigError> {
        let err = |key: String, msg: String| {
            ConfigError::component(ComponentKind::Receiver, id, format!("{at}::{key}"), msg)
        };
        let Some(roles) = roles else {
            return Ok(None);
        };
        if attribute.is_empty() {
            return Err(err("tenant_attribute".into(), "must not be empty".into()));
        }
        if roles.is_empty() {
            return Err(err(
                "roles".into(),
                "is empty: every request would be refused; list at least one role or remove roles"
                    .into(),
            ));
        }
        let mut out = Vec::new();
        for (i, r) in roles.iter().enumerate() {
            if r.principals.is_empty() && r.groups.is_empty() && r.subjects.is_empty() {
                return Err(err(
                    format!("roles[{i}]"),
                    "names no principals, groups or subjects (use principals: [\"*\"] for anyone)"
                        .into(),
                ));
            }
            let mut signals = [false; 4];
            match &r.signals {
                None => signals = [true; 4],
                Some(list) => {
                    for s in list {
                        let signal = match s.as_str() {
                            "traces" => Signal::Traces,
                            "metrics" => Signal::Metrics,
                            "logs" => Signal::Logs,
                            "profiles" => Signal::Profiles,
                            other => {
                                return Err(err(
                                    format!("roles[{i}]::signals"),
                                    format!(
                                        "{other:?} is not a signal: use traces, metrics, logs or profiles"
                                    ),
                                ))
                            }
                        };
                        signals[slot(signal)] = true;
                    }
                }
            }
            if r.tenant.as_deref() == Some("") {
                return Err(err(
                    format!("roles[{i}]::tenant"),
                    "must not be empty (leave it out to stamp no tenant)".into(),
                ));
            }
            out.push(Arc::new(Role {
                principals: r.principals.clone(),
                groups: r.groups.clone(),
                subjects: r.subjects.clone(),
                signals,
                tenant: r.tenant.clone(),
            }));
        }
        Ok(Some(Roles {
            attribute: attribute.into(),
            roles: out,
        }))
    }

    /// The role of `principal` (and of the client certificate's subject, under mutual TLS), if
    /// any.
    pub(crate) fn grant(&self, principal: &Principal, subject: Option<&Subject>) -> Option<Grant> {
        let role = self.roles.iter().find(|r| {
            r.principals
                .iter()
                .any(|p| p == "*" || *p == principal.name)
                || r.groups.iter().any(|g| principal.groups.contains(g))
                || subject.is_some_and(|s| r.subjects.iter().any(|want| s.matches(want)))
        })?;
        Some(Grant {
            principal: principal.name.clone(),
            attribute: self.attribute.clone(),
            role: role.clone(),
        })
    }
}

impl Grant {
    /// Why `signal` is refused, if it is.
    pub(crate) fn refuses(&self, signal: Signal) -> Option<String> {
        if self.role.signals[slot(signal)] {
            None
        } else {
            Some(format!(
                "principal {:?} may not send {signal}",
                self.principal
            ))
        }
    }

    /// Sets (or, without a tenant, removes) the tenant attribute on every resource, replacing every
    /// value the client sent under that key.
    pub(crate) fn stamp(&self, data: &mut Telemetry) {
        let apply = |resource: &mut Option<Resource>| {
            let r = resource.get_or_insert_with(Resource::default);
            stamp_attrs(
                &mut r.attributes,
                &self.attribute,
                self.role.tenant.as_deref(),
            );
        };
        match data {
            Telemetry::Traces(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            Telemetry::Metrics(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            Telemetry::Logs(v) => v.iter_mut().for_each(|r| apply(&mut r.resource)),
            Telemetry::Profiles(p) => p
                .resource_profiles
                .iter_mut()
                .for_each(|r| apply(&mut r.resource)),
        }
    }
}

/// A client certificate's subject: the whole RFC 4514 string and its common name.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) dn: String,
    cn: Option<String>,
}

impl Subject {
    /// The subject of a DER certificate; `None` when it does not parse (rustls verified it, so
    /// this does not happen in practice).
    pub(crate) fn of(der: &[u8]) -> Option<Subject> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string);
        Some(Subject {
            dn: subject.to_string(),
            cn,
        })
    }

    fn matches(&self, want: &str) -> bool {
        let compact = |s: &str| s.replace(", ", ",");
        compact(want) == compact(&self.dn)
            || want
                .strip_prefix("CN=")
                .is_some_and(|cn| self.cn.as_deref() == Some(cn))
    }
}

fn stamp_attrs(attrs: &mut Vec<KeyValue>, key: &str, tenant: Option<&str>) {
    // Every copy goes: a client could send the key twice and hope only the first is replaced.
    attrs.retain(|kv| kv.key != key);
    if let Some(t) = tenant {
        attrs.push(vigil_core::attrs::kv(
            key,
            AnyValue::StringValue(t.to_string()),
        ));
    }
}

/// Why a request was refused before it reached the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The authenticator's check failed: HTTP 401, gRPC `UNAUTHENTICATED`.
    Unauthenticated,
    /// The principal has no role: HTTP 403, gRPC `PERMISSION_DENIED`.
    Forbidden,
}

/// A listener's `auth:` at work: the authenticator's check (or, under mutual TLS without one, the
/// client certificate's subject), then the roles. Shared by every receiver that takes `auth:`
/// (`otlp`, `prometheusremotewrite`), so that they refuse, count and log alike.
pub(crate) struct Guard {
    id: String,
    check: Option<Arc<dyn vigil_core::ServerAuth>>,
    roles: Option<Arc<Roles>>,
    /// `vigil_receiver_requests_unauthenticated` of this listener.
    refused: metrics::Counter,
    /// `vigil_receiver_requests_forbidden` of this listener.
    forbidden: metrics::Counter,
}

impl Guard {
    /// The guard of `auth` (at `at` in the receiver's config): the authenticator it names is looked
    /// up in `host`; one that is missing or not a server authenticator fails start.
    pub(crate) fn new(
        host: &vigil_core::Host,
        id: &ComponentId,
        at: &str,
        auth: &super::config::AuthConfig,
        refused: metrics::Counter,
        forbidden: metrics::Counter,
    ) -> anyhow::Result<Guard> {
        let check = match &auth.authenticator {
            Some(name) => {
                let auth_id = ComponentId::parse(name)
                    .map_err(|e| anyhow::anyhow!("receivers::{id}: {e}"))?;
                Some(
                    host.server_auth(&auth_id)
                        .map_err(|e| anyhow::anyhow!("receivers::{id}: {e}"))?,
                )
            }
            None => None,
        };
        let roles = Roles::load(id, at, &auth.tenant_attribute, auth.roles.as_deref())
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map(Arc::new);
        Ok(Guard {
            id: id.to_string(),
            check,
            roles,
            refused,
            forbidden,
        })
    }

    /// `router` behind this guard. A request that passes carries the [`Principal`] (for the
    /// client metadata) and, with roles, its [`Grant`] in its extensions; one that fails is
    /// answered by `answer`, counted, and logged at debug with the reason (never the credential).
    pub(crate) fn layer<F>(self: Arc<Self>, router: axum::Router, answer: F) -> axum::Router
    where
        F: Fn(&http::HeaderMap, Refusal, String) -> axum::response::Response
            + Clone
            + Send
            + Sync
            + 'static,
    {
        router.layer(axum::middleware::from_fn(
            move |mut req: axum::extract::Request, next: axum::middleware::Next| {
                let (me, answer) = (Arc::clone(&self), answer.clone());
                async move {
                    let subject = req
                        .extensions()
                        .get::<vigil_core::net::serve::PeerCertificate>()
                        .and_then(|p| Subject::of(&p.0));
                    let verdict = match (&me.check, &subject) {
                        (Some(check), _) => check.authenticate(req.headers()).await,
                        (None, Some(s)) => Ok(Principal::named(s.dn.clone())),
                        (None, None) => Err("no client certificate".to_string()),
                    };
                    let principal = match verdict {
                        Ok(p) => p,
                        Err(reason) => {
                            me.refused.increment(1);
                            tracing::debug!(receiver = %me.id, %reason, "request refused by the authenticator");
                            return answer(req.headers(), Refusal::Unauthenticated, reason);
                        }
                    };
                    if let Some(roles) = &me.roles {
                        match roles.grant(&principal, subject.as_ref()) {
                            Some(grant) => {
                                req.extensions_mut().insert(grant);
                            }
                            None => {
                                me.forbidden.increment(1);
                                let reason = format!("principal {:?} has no role", principal.name);
                                tracing::debug!(receiver = %me.id, %reason, "request refused");
                                return answer(req.headers(), Refusal::Forbidden, reason);
                            }
                        }
                    }
                    // As otelcol's client.Info.Auth, for the client metadata.
                    req.extensions_mut().insert(principal);
                    next.run(req).await
                }
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;

    fn id() -> ComponentId {
        ComponentId::parse("otlp").unwrap()
    }

    fn roles(v: serde_json::Value) -> Result<Option<Roles>, String> {
        let list: Vec<RoleConfig> = serde_json::from_value(v).unwrap();
        Roles::load(&id(), "protocols::http::auth", "tenant.id", Some(&list))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_first_matching_role_applies_and_strangers_get_none() {
        let r = roles(serde_json::json!([
            {"principals": ["alice"], "signals": ["traces"], "tenant": "a"},
            {"groups": ["ops"], "tenant": "ops"},
        ]))
        .unwrap()
        .unwrap();
        let alice = r.grant(&Principal::named("alice"), None).unwrap();
        assert!(alice.refuses(Signal::Traces).is_none());
        assert!(alice
            .refuses(Signal::Logs)
            .unwrap()
            .contains("\"alice\" may not send logs"));
        let ops = Principal {
            name: "bob".into(),
            groups: vec!["dev".into(), "ops".into()],
        };
        assert_eq!(
            r.grant(&ops, None).unwrap().role.tenant.as_deref(),
            Some("ops")
        );
        assert!(r.grant(&Principal::named("mallory"), None).is_none());
    }

    #[test]
    fn the_tenant_is_stamped_and_a_forged_one_replaced() {
        let r = roles(serde_json::json!([{"principals": ["*"], "tenant": "a"}]))
            .unwrap()
            .unwrap();
        let forged = || {
            vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            vigil_core::attrs::kv_str("tenant.id", "victim"),
                            vigil_core::attrs::kv_str("service.name", "x"),
                            vigil_core::attrs::kv_str("tenant.id", "victim2"),
                        ],
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ResourceSpans::default(),
            ]
        };
        let mut data = Telemetry::Traces(forged());
        r.grant(&Principal::named("anyone"), None)
            .unwrap()
            .stamp(&mut data);
        let Telemetry::Traces(spans) = &data else {
            unreachable!()
        };
        for rs in spans {
            let attrs = &rs.resource.as_ref().unwrap().attributes;
            let tenants: Vec<_> = attrs.iter().filter(|kv| kv.key == "tenant.id").collect();
            assert_eq!(tenants.len(), 1);
            assert_eq!(vigil_core::attrs::get_str(attrs, "tenant.id"), Some("a"));
        }
        // A role without a tenant removes what the client sent.
        let r = roles(serde_json::json!([{"principals": ["*"]}]))
            .unwrap()
            .unwrap();
        let mut data = Telemetry::Traces(forged());
        r.grant(&Principal::named("anyone"), None)
            .unwrap()
            .stamp(&mut data);
        let Telemetry::Traces(spans) = &data else {
            unreachable!()
        };
        let attrs = &spans[0].resource.as_ref().unwrap().attributes;
        assert_eq!(vigil_core::attrs::get_str(attrs, "tenant.id"), None);
        assert_eq!(vigil_core::attrs::get_str(attrs, "service.name"), Some("x"));
    }

    #[test]
    fn bad_roles_name_the_key() {
        let e =
            roles(serde_json::json!([{"principals": ["a"], "signals": ["spans"]}])).unwrap_err();
        assert!(
            e.contains("protocols::http::auth::roles[0]::signals") && e.contains("\"spans\""),
            "{e}"
        );
        assert!(roles(serde_json::json!([{"signals": ["logs"]}]))
            .unwrap_err()
            .contains("roles[0]: names no principals, groups or subjects"));
        assert!(roles(serde_json::json!([]))
            .unwrap_err()
            .contains("roles: is empty"));
        assert!(
            roles(serde_json::json!([{"principals": ["a"], "tenant": ""}]))
                .unwrap_err()
                .contains("roles[0]::tenant")
        );
    }
}
