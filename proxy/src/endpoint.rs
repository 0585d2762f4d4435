//! Per-endpoint runtime state: health, in-flight count, traffic figures, active-check results,
//! ejection and slow-start state, and the idle connection pool. It is an `Arc` of atomics keyed
//! by endpoint identity and carried from one snapshot to the next, so a rebuild keeps health,
//! counters and pooled connections.
//!
//! The request path only reads health (one atomic load; a clock read only for an ejected or
//! ramping endpoint). Health changes are compare-and-swaps by the health checker, by passive
//! ejection and by an ejection's return, so none of them overwrites another's decision.

use crate::health::CheckState;
use crate::outlier::{self, Outlier, StackPolicy};
use crate::pool::Pool;
use crate::traffic::{ENDPOINT_HISTORY, StackStats};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use switchyard_config::Endpoint;
use tokio::time::Instant;

/// Health of an endpoint as the request path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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

/// Health that endpoints had in a previous process (restored at start, so a restart is not a
/// window without healthy endpoints), keyed by service, stack, endpoint as written and address.
#[derive(Debug, Clone, Default)]
pub struct RememberedHealth {
    entries: HashMap<(String, String, String, SocketAddr), bool>,
}

impl RememberedHealth {
    /// Remembers that the endpoint was healthy (`true`) or unhealthy (`false`).
    pub fn insert(
        &mut self,
        service: &str,
        stack: &str,
        endpoint: &str,
        address: SocketAddr,
        healthy: bool,
    ) {
        self.entries.insert(
            (service.into(), stack.into(), endpoint.into(), address),
            healthy,
        );
    }

    /// How many endpoints are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The remembered health of `key`, if any.
    pub(crate) fn get(&self, key: &EndpointKey) -> Option<Health> {
        if self.entries.is_empty() {
            return None;
        }
        let k = (
            key.service.clone(),
            key.stack.clone(),
            key.endpoint.to_string(),
            key.addr,
        );
        self.entries.get(&k).map(|healthy| {
            if *healthy {
                Health::Healthy
            } else {
                Health::Unhealthy
            }
        })
    }
}

/// Runtime state of one endpoint, shared by every snapshot that contains it.
#[derive(Debug)]
pub struct EndpointState {
    key: EndpointKey,
    health: AtomicU8,
    in_flight: AtomicU32,
    /// Traffic figures of the endpoint (requests sent to it are its `requests`).
    stats: Arc<StackStats>,
    failures_total: AtomicU64,
    consecutive_failures: AtomicU32,
    pool: Pool,
    /// Origin of the endpoint's millisecond clock (`now_ms`).
    born: Instant,
    /// Outlier and slow-start settings of the endpoint's stack.
    policy: Arc<StackPolicy>,
    /// Start of the current slow-start ramp in `now_ms` terms; 0 when not ramping.
    ramp_start: AtomicU64,
    /// Passive-health ejection state.
    pub(crate) outlier: Outlier,
    /// Active health-check results.
    pub(crate) check: CheckState,
}

impl EndpointState {
    /// New state; `health` is what it has before any check (`Healthy` takes traffic at once);
    /// `ramp` starts a slow-start ramp at once (a healthy endpoint joining a running stack);
    /// `listeners` is the number of configured listeners (for its traffic figures); the pool
    /// keeps up to `pool_capacity` idle connections for each of `workers` workers.
    pub(crate) fn new(
        key: EndpointKey,
        health: Health,
        pool_capacity: usize,
        workers: usize,
        policy: Arc<StackPolicy>,
        ramp: bool,
        listeners: usize,
    ) -> Self {
        let healthy = health == Health::Healthy;
        let state = Self {
            key,
            health: AtomicU8::new(health as u8),
            in_flight: AtomicU32::new(0),
            stats: Arc::new(StackStats::with_history(listeners, ENDPOINT_HISTORY)),
            failures_total: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            pool: Pool::new(pool_capacity, workers),
            born: Instant::now(),
            policy,
            ramp_start: AtomicU64::new(0),
            outlier: Outlier::default(),
            check: CheckState::default(),
        };
        if healthy && ramp {
            state.start_ramp();
        }
        state
    }

    /// Milliseconds since the state was created, plus one (so 0 can mean "never").
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    pub(crate) fn policy(&self) -> &StackPolicy {
        &self.policy
    }

    /// Moves health from `from` to `to`; false when it was not `from`.
    pub(crate) fn swap_health(&self, from: Health, to: Health) -> bool {
        self.health
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    pub(crate) fn reset_failures(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
    }

    /// Starts a slow-start ramp when the stack has a window.
    pub(crate) fn start_ramp(&self) {
        if self.policy.slow_start_ms() > 0 {
            self.ramp_start.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Share of its full traffic the endpoint takes now, in per mille (1000 when not ramping).
    pub fn ramp_per_mille(&self) -> u32 {
        let start = self.ramp_start.load(Ordering::Relaxed);
        let window = self.policy.slow_start_ms();
        if start == 0 || window == 0 {
            return 1000;
        }
        let elapsed = self.now_ms().saturating_sub(start);
        u32::try_from((elapsed.min(window) * 1000) / window).unwrap_or(1000)
    }

    /// Whether a ramping endpoint takes this request: always when not ramping, otherwise with
    /// probability (time since it became healthy) / (slow-start window).
    #[inline]
    pub(crate) fn admits(&self) -> bool {
        let start = self.ramp_start.load(Ordering::Relaxed);
        start == 0 || self.ramp_admits(start)
    }

    #[cold]
    fn ramp_admits(&self, start: u64) -> bool {
        let window = self.policy.slow_start_ms();
        let elapsed = self.now_ms().saturating_sub(start);
        if window == 0 || elapsed >= window {
            // The ramp is over; later requests skip the clock read.
            let _ =
                self.ramp_start
                    .compare_exchange(start, 0, Ordering::Relaxed, Ordering::Relaxed);
            return true;
        }
        crate::select::fast_random() % window < elapsed
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
        let prev = Health::from_u8(self.health.swap(h as u8, Ordering::AcqRel));
        if prev == Health::Ejected && h != Health::Ejected {
            self.policy.release();
        }
        prev
    }

    /// Whether new requests may go here. An ejected endpoint whose time is up returns here.
    #[inline]
    pub fn is_available(&self) -> bool {
        match self.health.load(Ordering::Relaxed) {
            h if h == Health::Healthy as u8 => true,
            h if h == Health::Ejected as u8 => outlier::try_return(self),
            _ => false,
        }
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Requests sent here since start.
    pub fn requests_total(&self) -> u64 {
        self.stats.requests()
    }

    /// The endpoint's traffic figures (each attempt sent to it, its answers and latencies).
    pub fn stats(&self) -> &Arc<StackStats> {
        &self.stats
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
        self.stats.record_request();
        InFlight(self)
    }

    /// Records the outcome of a request for passive health; enough failures in a row eject the
    /// endpoint.
    #[inline]
    pub(crate) fn record(&self, ok: bool) {
        if ok {
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
        } else {
            self.failures_total.fetch_add(1, Ordering::Relaxed);
            let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            let threshold = self.policy.threshold();
            if threshold != 0 && n >= threshold {
                outlier::try_eject(self, n);
            }
        }
    }
}

impl Drop for EndpointState {
    fn drop(&mut self) {
        // An endpoint that goes away while ejected gives its place under the cap back.
        if self.health() == Health::Ejected {
            self.policy.release();
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
