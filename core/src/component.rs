//! Component ids, kinds, the lifecycle trait, and the `Host` handle each component gets at start.
//! How components are built is [`crate::factory`].

use crate::consumer::Consumer;
use crate::storage::Storage;
use crate::task::lock;
use async_trait::async_trait;
use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tonic::codegen::http;

/// `type` or `type/name`, as otelcol spells a component in config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    type_name: String,
    name: Option<String>,
}

impl ComponentId {
    /// Parses `type` or `type/name`. The type must be non-empty and made of letters, digits and `_`,
    /// as otelcol requires.
    pub fn parse(s: &str) -> Result<ComponentId, String> {
        let (t, n) = match s.split_once('/') {
            Some((t, n)) => (t.trim(), Some(n.trim())),
            None => (s.trim(), None),
        };
        if t.is_empty() {
            return Err(format!("id {s:?} has an empty type"));
        }
        if !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "id {s:?}: the type {t:?} may only hold letters, digits and '_'"
            ));
        }
        if let Some(n) = n {
            if n.is_empty() {
                return Err(format!("id {s:?} has an empty name after '/'"));
            }
        }
        Ok(ComponentId {
            type_name: t.to_string(),
            name: n.map(str::to_string),
        })
    }

    pub fn new(type_name: &str, name: Option<&str>) -> ComponentId {
        ComponentId {
            type_name: type_name.to_string(),
            name: name.map(str::to_string),
        }
    }

    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.type_name, n),
            None => f.write_str(&self.type_name),
        }
    }
}

/// The five sections of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Receiver,
    Processor,
    Exporter,
    Connector,
    Extension,
}

impl ComponentKind {
    /// The config section name: `receivers`, `processors`, …
    pub fn section(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receivers",
            ComponentKind::Processor => "processors",
            ComponentKind::Exporter => "exporters",
            ComponentKind::Connector => "connectors",
            ComponentKind::Extension => "extensions",
        }
    }

    /// The singular, as used in metric labels and messages: `receiver`, `processor`, …
    pub fn singular(self) -> &'static str {
        match self {
            ComponentKind::Receiver => "receiver",
            ComponentKind::Processor => "processor",
            ComponentKind::Exporter => "exporter",
            ComponentKind::Connector => "connector",
            ComponentKind::Extension => "extension",
        }
    }
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

/// Start and stop. `shutdown` drains what the component owns before it returns.
#[async_trait]
pub trait Component: Send + Sync {
    async fn start(&self, _host: &Host) -> anyhow::Result<()> {
        Ok(())
    }
    /// [`Component::shutdown_by`] with [`crate::task::default_deadline`], for callers that have
    /// no deadline of their own (tests, tools). Components implement `shutdown_by`, never this.
    async fn shutdown(&self) -> anyhow::Result<()> {
        self.shutdown_by(crate::task::default_deadline()).await
    }
    /// Stops by `deadline` (the service's `--shutdown-timeout`, counted from the start of the
    /// whole shutdown). What the service calls; a component that drains or waits for in-flight
    /// work bounds the wait by `deadline` rather than by a grace of its own. The default stops
    /// [`Component::tasks`] by `deadline`.
    async fn shutdown_by(&self, deadline: std::time::Instant) -> anyhow::Result<()> {
        if let Some(t) = self.tasks() {
            t.stop(deadline).await;
        }
        Ok(())
    }
    /// The component's background tasks (its `Settings::tasks`), for the default stop. A
    /// component whose stop is only "cancel the tasks and wait for them until the deadline" names
    /// them here and implements neither `shutdown` nor `shutdown_by`.
    fn tasks(&self) -> Option<&crate::task::Tasks> {
        None
    }
}

/// A receiver pushes into the `NextConsumers` it was created with.
pub trait Receiver: Component {}
impl<T: Component> Receiver for T {}

/// A processor is a consumer that wraps the next one.
pub trait Processor: Component + Consumer {}
impl<T: Component + Consumer> Processor for T {}

/// An exporter is the end of a pipeline.
pub trait Exporter: Component + Consumer {}
impl<T: Component + Consumer> Exporter for T {}

/// A connector is an exporter in one pipeline and a receiver in another: its `Consumer` side takes the
/// input signals, and it feeds the `NextConsumers` of its output signals.
pub trait Connector: Component + Consumer {}
impl<T: Component + Consumer> Connector for T {}

/// An extension offers services to other components through the `Host`.
pub trait Extension: Component {
    /// Storage extensions return a client namespaced to the component that asks.
    fn storage_client(
        &self,
        _owner: &ComponentId,
        _name: &str,
    ) -> Option<Result<Arc<dyn Storage>, crate::storage::StorageError>> {
        None
    }

    /// Client authenticators (`bearertokenauth`, ...) return what an exporter's requests carry.
    fn client_auth(&self) -> Option<Arc<dyn ClientAuth>> {
        None
    }

    /// Server authenticators return the check a receiver's `auth::authenticator` applies.
    fn server_auth(&self) -> Option<Arc<dyn ServerAuth>> {
        None
    }

    /// Observers (`k8s_observer`, `host_observer`) return the endpoints they see, as otelcol's
    /// `observer.Observable`; `receiver_creator` downcasts it to the agent's endpoint feed, whose
    /// type lives beside the observers rather than in core.
    fn observer(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        None
    }

    /// Leader electors (`k8s_leader_elector`) return whether this instance leads now, as a watch
    /// that turns `true` when it gains the lease and `false` when it loses it. Receivers whose
    /// `k8s_leader_elector` names the extension run only while it is `true`.
    fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// Acknowledgement stores (`ack`) return the store a receiver's `ack::extension` names.
    fn ack_store(&self) -> Option<Arc<dyn crate::ack::AckStore>> {
        None
    }
}

/// Who a server authenticator found a request to come from. A receiver's `auth::roles` match on it
/// to decide what the caller may send and which tenant its data belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// The user (basicauth), the `username_claim` (oidc), or the token's name (bearertokenauth).
    pub name: String,
    /// The groups the authenticator vouches for (oidc's `groups_claim`).
    pub groups: Vec<String>,
}

impl Principal {
    pub fn named(name: impl Into<String>) -> Principal {
        Principal {
            name: name.into(),
            groups: Vec::new(),
        }
    }
}

/// The check a receiver applies to each request, from the extension its `auth::authenticator`
/// names.
#[async_trait]
pub trait ServerAuth: Send + Sync {
    /// Who the request's headers (gRPC metadata) prove it comes from. The error says why they prove
    /// nothing, and never contains the credential. Async because a check may have to fetch keys
    /// (oidc's JWKS).
    async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, String>;
}

/// What an authenticator that signs whole requests (`sigv4auth`) needs besides the headers: the
/// request as it goes on the wire.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRequest<'a> {
    /// `POST`, `GET`, ...
    pub method: &'a str,
    /// The full URL, query included.
    pub url: &'a str,
    /// The body exactly as sent (after compression).
    pub body: &'a [u8],
}

/// The credentials an exporter adds to each outgoing request, from the extension its
/// `auth::authenticator` names.
#[async_trait]
pub trait ClientAuth: Send + Sync {
    /// Headers (gRPC metadata) for the next request. An error means the credential cannot be had
    /// right now (a token file being rewritten, a token endpoint down): the request fails
    /// retryably. Async because a credential may have to be fetched (oauth2client).
    async fn headers(&self) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, String>;

    /// Puts the credentials on an outgoing request whose headers so far are `headers` (the
    /// exporter's own `headers:`). The default sets each of [`ClientAuth::headers`], replacing a
    /// header of the same name; `headers_setter` overrides it for its insert/update/delete actions.
    async fn apply(&self, headers: &mut http::HeaderMap) -> Result<(), String> {
        for (name, value) in self.headers().await? {
            headers.insert(name, value);
        }
        Ok(())
    }

    /// Whether the credential depends on the whole request ([`ClientAuth::apply_request`]), so
    /// that an exporter which only passes headers must refuse it at start rather than send
    /// requests it cannot sign.
    fn needs_request(&self) -> bool {
        false
    }

    /// Puts the credentials on `request`, whose headers so far are `headers` (those the exporter
    /// sends, content type included). The default is [`ClientAuth::apply`]; `sigv4auth` signs
    /// method, URL, headers and body.
    async fn apply_request(
        &self,
        request: OutgoingRequest<'_>,
        headers: &mut http::HeaderMap,
    ) -> Result<(), String> {
        let _ = request;
        self.apply(headers).await
    }
}

/// The name and type of a service one component offers another through the [`Host`] (the service
/// dependency graph that `servicegraph` builds and `correlation` reads). The owner declares it once
/// as a constant; both sides name that constant, so the type travels with the name.
pub struct ServiceKey<T> {
    name: &'static str,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T> ServiceKey<T> {
    pub const fn new(name: &'static str) -> ServiceKey<T> {
        ServiceKey {
            name,
            _type: std::marker::PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// One service in the host's table: the value and the type it was created as.
struct Service {
    value: Arc<dyn Any + Send + Sync>,
    type_name: &'static str,
}

/// What a running component can reach: the extensions, a channel to report a fatal error, and typed
/// services shared between components (such as the service dependency graph).
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

struct HostInner {
    extensions: HashMap<ComponentId, Arc<dyn Extension>>,
    fatal: mpsc::UnboundedSender<(ComponentId, String)>,
    services: Mutex<HashMap<&'static str, Service>>,
}

impl Host {
    pub fn new(
        extensions: HashMap<ComponentId, Arc<dyn Extension>>,
        fatal: mpsc::UnboundedSender<(ComponentId, String)>,
    ) -> Host {
        Host {
            inner: Arc::new(HostInner {
                extensions,
                fatal,
                services: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A host with no extensions, for tests and `vigil eval`.
    pub fn detached() -> Host {
        let (tx, _rx) = mpsc::unbounded_channel();
        Host::new(HashMap::new(), tx)
    }

    pub fn extension(&self, id: &ComponentId) -> Option<&Arc<dyn Extension>> {
        self.inner.extensions.get(id)
    }

    /// A storage client from the storage extension `storage_id`, namespaced to `owner`.
    pub fn storage(
        &self,
        storage_id: &ComponentId,
        owner: &ComponentId,
        name: &str,
    ) -> anyhow::Result<Arc<dyn Storage>> {
        let ext = self.extension(storage_id).ok_or_else(|| {
            anyhow::anyhow!(
                "storage extension {storage_id} is not configured in service::extensions"
            )
        })?;
        match ext.storage_client(owner, name) {
            Some(r) => Ok(r?),
            None => anyhow::bail!("extension {storage_id} is not a storage extension"),
        }
    }

    /// The client authenticator `auth_id`, which an exporter's `auth::authenticator` names.
    pub fn client_auth(&self, auth_id: &ComponentId) -> anyhow::Result<Arc<dyn ClientAuth>> {
        let ext = self.extension(auth_id).ok_or_else(|| {
            anyhow::anyhow!("authenticator {auth_id} is not configured in service::extensions")
        })?;
        ext.client_auth()
            .ok_or_else(|| anyhow::anyhow!("extension {auth_id} is not a client authenticator"))
    }

    /// The server authenticator `auth_id`, which a receiver's `auth::authenticator` names.
    pub fn server_auth(&self, auth_id: &ComponentId) -> anyhow::Result<Arc<dyn ServerAuth>> {
        let ext = self.extension(auth_id).ok_or_else(|| {
            anyhow::anyhow!("authenticator {auth_id} is not configured in service::extensions")
        })?;
        ext.server_auth()
            .ok_or_else(|| anyhow::anyhow!("extension {auth_id} is not a server authenticator"))
    }

    /// The leadership of the leader elector `id`, which a receiver's `k8s_leader_elector` names.
    pub fn leadership(
        &self,
        id: &ComponentId,
    ) -> anyhow::Result<tokio::sync::watch::Receiver<bool>> {
        let ext = self.extension(id).ok_or_else(|| {
            anyhow::anyhow!("leader elector {id} is not configured in service::extensions")
        })?;
        ext.leadership()
            .ok_or_else(|| anyhow::anyhow!("extension {id} is not a leader elector"))
    }

    /// The acknowledgement store `id`, which a receiver's `ack::extension` names.
    pub fn ack_store(&self, id: &ComponentId) -> anyhow::Result<Arc<dyn crate::ack::AckStore>> {
        let ext = self.extension(id).ok_or_else(|| {
            anyhow::anyhow!("ack extension {id} is not configured in service::extensions")
        })?;
        ext.ack_store()
            .ok_or_else(|| anyhow::anyhow!("extension {id} is not an ack extension"))
    }

    /// A running component hit an error it cannot recover from; the service stops.
    pub fn report_fatal(&self, id: &ComponentId, err: impl fmt::Display) {
        let _ = self.inner.fatal.send((id.clone(), err.to_string()));
    }

    /// The service `key` names, created on first use by whichever component asks first (the
    /// order components start in does not matter). A name already holding another type is an
    /// error naming both types: it is never replaced, so no component loses what another put there.
    pub fn service<T: Any + Send + Sync + Default>(
        &self,
        key: &ServiceKey<T>,
    ) -> Result<Arc<T>, String> {
        let mut map = lock(&self.inner.services);
        let entry = map.entry(key.name).or_insert_with(|| Service {
            value: Arc::new(T::default()),
            type_name: std::any::type_name::<T>(),
        });
        let type_name = entry.type_name;
        Arc::clone(&entry.value).downcast::<T>().map_err(|_| {
            format!(
                "the shared service {:?} holds a {type_name}, not a {}",
                key.name,
                std::any::type_name::<T>()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_like_otelcol() {
        let id = ComponentId::parse("otlp/in").unwrap();
        assert_eq!((id.type_name(), id.name()), ("otlp", Some("in")));
        assert_eq!(id.to_string(), "otlp/in");
        assert!(ComponentId::parse("").is_err());
        assert!(ComponentId::parse("otlp/").is_err());
        assert!(ComponentId::parse("ot-lp").is_err());
    }

    #[test]
    fn a_service_of_another_type_is_an_error_not_a_replacement() {
        const A: ServiceKey<Vec<u8>> = ServiceKey::new("x");
        const B: ServiceKey<String> = ServiceKey::new("x");
        let host = Host::detached();
        let a = host.service(&A).unwrap();
        assert!(Arc::ptr_eq(&a, &host.service(&A).unwrap()));
        let e = host.service(&B).unwrap_err();
        assert!(e.contains("holds a alloc::vec::Vec<u8>"), "{e}");
        // The first value is still there.
        assert!(Arc::ptr_eq(&a, &host.service(&A).unwrap()));
    }
}
