//! Kubernetes API access shared by the components that read the cluster: how a component connects
//! (`auth_type` as otelcol's `k8sconfig.APIConfig` spells it, [`client`]) and one list/watch loop
//! that keeps a trimmed copy of a resource current across dropped connections, bookmarks and
//! `410 Gone` re-lists ([`watch`]); whole objects of any discovered resource, pulled or watched
//! with their change types ([`objects`]); a Service's backends from its EndpointSlices
//! ([`endpoints`]); and Lease leader election ([`leader`]). It sits below `processors` and `receivers` so that every
//! Kubernetes component uses the same client and the same watch semantics.

pub mod client;
pub mod endpoints;
pub mod leader;
pub mod objects;
pub mod watch;

pub use client::{connect, ApiConfig, AuthType};
pub use k8s_openapi;
pub use kube;
pub use watch::{watch, Change, WatchLimits};
