//! The Switchyard data plane: listeners, TLS accept, the routing snapshot, stack and endpoint
//! selection, forwarding and upstream connection pools.
//!
//! The request path reads one immutable [`Snapshot`] behind an `ArcSwap` and never waits on the
//! control plane; [`ProxyHandle::apply`] builds and publishes the next one.

mod body;
mod build;
mod endpoint;
mod error;
mod forward;
mod handle;
mod headers;
mod listener;
mod pool;
mod select;
mod snapshot;

pub use body::ProxyBody;
pub use build::BuildError;
pub use endpoint::{EndpointKey, EndpointState, Health};
pub use error::Cause;
pub use handle::{ApplyError, ListenerInfo, ProxyHandle, spawn_proxy};
pub use listener::BoundListener;
pub use select::Schedule;
pub use snapshot::{ServiceRoute, Snapshot, StackRoute, StackStats};
