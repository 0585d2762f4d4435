//! The Switchyard data plane: listeners, TLS accept, the HTTP/1.1 server (`server`; hyper serves
//! HTTP/2), the routing snapshot, stack and endpoint selection, forwarding, the HTTP/1.1
//! upstream client (`upstream`) and its connection pools.
//!
//! The request path reads one immutable [`Snapshot`] behind an `ArcSwap` and never waits on the
//! control plane; [`ProxyHandle::apply`] builds and publishes the next one. Endpoint health
//! (active checks, passive ejection, slow start) lives in per-endpoint atomics the snapshots
//! share; DNS-discovered endpoints arrive as rebuilds from per-stack discovery tasks;
//! [`ProxyHandle::status`] shows both.

mod access_log;
mod attempt;
mod body;
mod build;
mod deadline;
mod discovery;
mod drain;
mod endpoint;
mod error;
mod forward;
mod handle;
mod headers;
mod health;
mod listener;
mod metrics;
mod outlier;
mod pool;
mod request_id;
mod select;
pub mod server;
mod shadow;
mod snapshot;
mod status;
mod traffic;
pub mod upstream;
mod worker;

pub use body::ProxyBody;
pub use build::BuildError;
pub use discovery::ResolutionOutcome;
pub use endpoint::{EndpointKey, EndpointState, Health, RememberedHealth};
pub use error::Cause;
pub use handle::{
    ApplyError, ListenerInfo, ProxyHandle, spawn_proxy, spawn_proxy_on, spawn_proxy_with,
};
pub use health::CheckOutcome;
pub use listener::BoundListener;
pub use select::{Schedule, stable_hash, sticky_pick};
pub use snapshot::{ServiceRoute, Snapshot, StackRoute};
pub use status::{
    CheckStatus, DnsStatus, EndpointStatus, ProxyStatus, ServiceStatus, ShownHealth, StackStatus,
};
pub use traffic::{SHADOW_IN_FLIGHT, ShadowCounters, StackStats};
pub use worker::Workers;
