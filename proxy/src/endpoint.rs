//! Per-endpoint runtime state: health, in-flight count, traffic figures and the idle
//! connection pool. It is an `Arc` of atomics keyed by endpoint identity and carried from one
//! snapshot to the next, so a rebuild keeps health, counters and pooled connections.

use crate::pool::Pool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use switchyard_config::Endpoint;

/// Health of an endpoint as the request path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Not checked yet; takes no traffic when the stack has an active health check.
    Unknown = 0,
    /// Takes traffic.
    Healthy = 1,
    /// Failed its active checks; takes no traffic.
    Unhealthy = 2,
    /// Ejected by passive outlier detection; takes no traffic until it returns.
    Ejected = 3,
}

impl Health {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            3 => Self::Ejected,
            _ => Self::Unknown,
        }
    }

    /// Lowercase name used by the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Ejected => "ejected",
        }
    }
}

/// Identity of an endpoint inside the proxy: its service, stack and address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// Service name.
    pub service: String,
    /// Stack name.
    pub stack: String,
    /// The configured endpoint.
    pub endpoint: Endpoint,
    /// The address connected to.
    pub addr: SocketAddr,
}

/// Runtime state of one endpoint, shared by every snapshot that contains it.
#[derive(Debug)]
pub struct EndpointState {
    key: EndpointKey,
    health: AtomicU8,
    in_flight: AtomicU32,
    requests_total: AtomicU64,
    failures_total: AtomicU64,
    consecutive_failures: AtomicU32,
    pool: Pool,
}

impl EndpointState {
    /// New state; `healthy` says whether it takes traffic before any check.
    pub(crate) fn new(key: EndpointKey, healthy: bool, pool_capacity: usize) -> Self {
        let health = if healthy {
            Health::Healthy
        } else {
            Health::Unknown
        };
        Self {
            key,
            health: AtomicU8::new(health as u8),
            in_flight: AtomicU32::new(0),
            requests_total: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            pool: Pool::new(pool_capacity),
        }
    }

    /// Identity.
    pub fn key(&self) -> &EndpointKey {
        &self.key
    }

    /// The address connected to.
    pub fn addr(&self) -> SocketAddr {
        self.key.addr
    }

    /// Current health.
    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Sets health; returns the previous value.
    pub fn set_health(&self, h: Health) -> Health {
        Health::from_u8(self.health.swap(h as u8, Ordering::Relaxed))
    }

    /// Whether new requests may go here.
    #[inline]
    pub fn is_available(&self) -> bool {
        self.health.load(Ordering::Relaxed) == Health::Healthy as u8
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent here since start.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(Ordering::Relaxed)
    }

    /// Failed requests (connect failures, timeouts, 5xx) since start.
    pub fn failures_total(&self) -> u64 {
        self.failures_total.load(Ordering::Relaxed)
    }

    /// Consecutive failures since the last success (passive health input).
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Marks the start of a request; the guard ends it.
    #[inline]
    pub(crate) fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Records the outcome of a request for passive health.
    #[inline]
    pub(crate) fn record(&self, ok: bool) {
        if ok {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
        } else {
            self.failures_total.fetch_add(1, Ordering::Relaxed);
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decrements the in-flight count when dropped.
pub(crate) struct InFlight<'a>(&'a EndpointState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
