//! What every listener of the agent shares, whichever crate it lives in (receivers, the `prometheus`
//! exporter, the HTTP extensions): the server TLS settings with certificate reloading (`tls`) and the
//! HTTP server loop with its timeouts and connection cap (`serve`); and the client TLS every
//! exporter and scraping receiver builds from its `tls` keys (`client_tls`).

pub mod client_tls;
pub mod serve;
pub mod tls;

pub use serve::PeerAddr;
