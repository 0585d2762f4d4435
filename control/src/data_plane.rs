//! The narrow view control has of the data plane.
//!
//! Control never depends on the proxy crate: it declares here what it needs (apply a complete
//! desired state and learn its generation, read per-stack endpoint figures, learn the public
//! listener addresses) and the wiring in the root package implements it over the proxy's handle.
//! Unit tests use an in-memory fake.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use switchyard_config::{Config, Figures, Reading, Window};

/// A boxed, sendable future, as trait objects need.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What control needs from the data plane; the root package implements it over the proxy's
/// handle.
pub trait DataPlane: Send + Sync + 'static {
    /// Applies a complete desired state. Resolves once the proxy routes on it, with the
    /// generation of the snapshot built from it; `Err` carries why the proxy refused it, in
    /// words fit for the client that asked for the change.
    fn apply(&self, desired: Arc<Config>) -> BoxFuture<'_, Result<u64, String>>;

    /// The public listeners and their bound addresses (for post-integration checks).
    fn listeners(&self) -> Vec<PublicListener>;

    /// Runtime state of a stack's endpoints; empty when the stack is unknown to the proxy.
    fn endpoints(&self, service: &str, stack: &str) -> Vec<EndpointStatus>;

    /// The last DNS resolution of a DNS stack (time, outcome, TTL, failures in a row), as the
    /// data plane reports it; `None` for static stacks or when unknown.
    fn discovery(&self, _service: &str, _stack: &str) -> Option<serde_json::Value> {
        None
    }

    /// Live traffic figures of a stack over `window` (request and error rates, latency
    /// quantiles, counts), as the proxy measures them; `None` when the stack is unknown to it.
    fn stack_figures(&self, service: &str, stack: &str, window: Window) -> Option<Figures>;

    /// The cumulative traffic counters of a stack as of now (canary analysis takes the
    /// difference of two readings, one interval apart); `None` when the stack is unknown to it.
    fn stack_reading(&self, service: &str, stack: &str) -> Option<Reading>;

    /// The process's metrics in the Prometheus text exposition format, for `GET /metrics`;
    /// `None` when metrics are turned off (`[metrics] enabled = false`).
    fn metrics(&self) -> Option<String> {
        None
    }
}

/// A public listener as bound by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicListener {
    /// Listener name from the configuration.
    pub name: String,
    /// The address actually bound (the port is real even when the config said `:0`).
    pub address: SocketAddr,
    /// Whether the listener terminates TLS.
    pub tls: bool,
}

/// Runtime figures of one endpoint of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint as configured or discovered, e.g. `127.0.0.1:9001`.
    pub address: String,
    /// Health state.
    pub state: EndpointState,
    /// Requests currently in flight to the endpoint.
    pub in_flight: u64,
    /// Requests sent to the endpoint since it appeared.
    pub requests_total: u64,
    /// Health details as the data plane reports them: the last active check (time, outcome,
    /// status), consecutive counters, passive-health ejections; `None` when it has none.
    pub detail: Option<serde_json::Value>,
}

/// The health state of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointState {
    /// Passing its health checks.
    Healthy,
    /// Failing its health checks.
    Unhealthy,
    /// Taken out of rotation by passive failure detection.
    Ejected,
    /// Not checked yet.
    Unknown,
    /// Not checked at all (`health_check = { kind = "none" }`); takes traffic.
    Unchecked,
}

impl EndpointState {
    /// The API spelling: `healthy`, `unhealthy`, `ejected`, `unknown` or `unchecked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
            Self::Unknown => "unknown",
            Self::Unchecked => "unchecked",
        }
    }

    /// Whether the endpoint takes traffic: healthy, or not checked at all.
    pub fn takes_traffic(self) -> bool {
        matches!(self, Self::Healthy | Self::Unchecked)
    }
}
