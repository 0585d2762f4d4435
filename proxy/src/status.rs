//! The status view: every endpoint's health, check results, ejections and traffic figures, and
//! each DNS stack's last resolution, read from the current snapshot's atomics.
//!
//! It is built on demand for the CLI and the control API (serde-serializable, timestamps as
//! Unix milliseconds); building it allocates and is never done on the request path. Reading it
//! also returns any ejected endpoint whose time is up, so it never shows an expired ejection.

use crate::discovery::ResolutionOutcome;
use crate::endpoint::{EndpointState, Health};
use crate::health::CheckOutcome;
use crate::snapshot::{Snapshot, StackRoute};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_config::{DnsSource, Figures, Window};

/// The whole data plane's endpoint view.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyStatus {
    /// Generation of the snapshot read.
    pub generation: u64,
    /// Services in configuration order.
    pub services: Vec<ServiceStatus>,
}

/// One service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Stacks in configuration order.
    pub stacks: Vec<StackStatus>,
}

/// One stack.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// Stack name.
    pub name: String,
    /// Weight in the snapshot.
    pub weight: u32,
    /// Endpoints taking traffic now (healthy or unchecked).
    pub healthy_endpoints: usize,
    /// Endpoints ejected by outlier detection now.
    pub ejected_endpoints: u32,
    /// For a DNS stack: its source and last resolution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsStatus>,
    /// Endpoints (each once, also when SRV weights repeat it in the rotation).
    pub endpoints: Vec<EndpointStatus>,
}

/// A DNS stack's discovery.
#[derive(Debug, Clone, Serialize)]
pub struct DnsStatus {
    /// `name:port` for A/AAAA, or the SRV name.
    pub source: String,
    /// `a` (A/AAAA) or `srv`.
    pub kind: &'static str,
    /// When the name was last resolved (Unix milliseconds), if ever.
    pub last_resolution_unix_ms: Option<u64>,
    /// What the last resolution gave.
    pub last_outcome: Option<ResolutionOutcome>,
    /// TTL of the last answer with records, in seconds.
    pub ttl_secs: Option<u32>,
    /// Failed resolutions in a row.
    pub consecutive_failures: u32,
}

/// An endpoint's health as the views show it: the request path's [`Health`], except that an
/// endpoint of a stack without an active check (`kind = "none"`) is `unchecked`, never
/// `healthy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShownHealth {
    /// Passing its checks; takes traffic.
    Healthy,
    /// Failing its checks; takes no traffic.
    Unhealthy,
    /// Ejected by passive outlier detection.
    Ejected,
    /// Not decided yet; takes no traffic.
    Unknown,
    /// Not checked at all (`kind = "none"`); takes traffic.
    Unchecked,
}

impl ShownHealth {
    fn of(health: Health, checked: bool) -> Self {
        match health {
            Health::Healthy if !checked => Self::Unchecked,
            Health::Healthy => Self::Healthy,
            Health::Unhealthy => Self::Unhealthy,
            Health::Ejected => Self::Ejected,
            Health::Unknown => Self::Unknown,
        }
    }

    /// Whether the endpoint takes new requests (healthy or unchecked).
    pub fn takes_traffic(self) -> bool {
        matches!(self, Self::Healthy | Self::Unchecked)
    }
}

/// One endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    /// The endpoint as configured or discovered.
    pub endpoint: String,
    /// The address connected to.
    pub address: SocketAddr,
    /// `healthy`, `unhealthy`, `ejected`, `unknown` or `unchecked`.
    pub state: ShownHealth,
    /// SRV weight share: how often it appears in the stack's rotation.
    pub shares: usize,
    /// Requests in flight now.
    pub in_flight: u32,
    /// Requests sent since the endpoint appeared.
    pub requests_total: u64,
    /// Failed requests (connect failures, timeouts, 5xx) since it appeared.
    pub failures_total: u64,
    /// Failed requests in a row (passive health).
    pub consecutive_failures: u32,
    /// Ejections since it appeared.
    pub ejections_total: u64,
    /// Time left in the current ejection, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ejected_remaining_ms: Option<u64>,
    /// Slow start: share of full traffic taken now, per mille (1000 when not ramping).
    pub slow_start_per_mille: u32,
    /// Active checks, when the stack has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckStatus>,
    /// Traffic figures of the endpoint over the last minute: each attempt sent to it, its
    /// responses by class, proxy errors by cause and latencies (body bytes are counted per
    /// stack only).
    pub figures: Figures,
}

/// Active-check results of one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStatus {
    /// When the last check ended (Unix milliseconds), if one has.
    pub last_check_unix_ms: Option<u64>,
    /// What it gave.
    pub last_outcome: Option<CheckOutcome>,
    /// The status it saw, if any.
    pub last_status: Option<u16>,
    /// Checks passed in a row.
    pub consecutive_successes: u32,
    /// Checks failed in a row.
    pub consecutive_failures: u32,
    /// Checks done since the endpoint appeared.
    pub checks_total: u64,
}

fn endpoint(ep: &Arc<EndpointState>, shares: usize, checked: bool) -> EndpointStatus {
    // Returns an endpoint whose ejection is over before reading its state.
    ep.is_available();
    let state = ep.health();
    let check = checked.then(|| {
        let last = ep.check.last();
        let (consecutive_successes, consecutive_failures) = ep.check.streaks();
        CheckStatus {
            last_check_unix_ms: last.map(|l| l.0),
            last_outcome: last.map(|l| l.1),
            last_status: last.and_then(|l| l.2),
            consecutive_successes,
            consecutive_failures,
            checks_total: ep.check.total(),
        }
    });
    EndpointStatus {
        endpoint: ep.key().endpoint.to_string(),
        address: ep.addr(),
        state: ShownHealth::of(state, checked),
        shares,
        in_flight: ep.in_flight(),
        requests_total: ep.requests_total(),
        failures_total: ep.failures_total(),
        consecutive_failures: ep.consecutive_failures(),
        ejections_total: ep.outlier.total(),
        ejected_remaining_ms: (state == Health::Ejected)
            .then(|| ep.outlier.remaining_ms(ep.now_ms())),
        slow_start_per_mille: ep.ramp_per_mille(),
        check,
        figures: ep
            .stats()
            .figures(Window::Last1m, tokio::time::Instant::now()),
    }
}

pub(crate) fn stack(st: &StackRoute) -> StackStatus {
    let mut endpoints: Vec<EndpointStatus> = Vec::new();
    let mut last: Option<&Arc<EndpointState>> = None;
    for ep in st.endpoints() {
        match (last, endpoints.last_mut()) {
            (Some(prev), Some(s)) if Arc::ptr_eq(prev, ep) => s.shares += 1,
            _ => endpoints.push(endpoint(ep, 1, st.health_check.is_some())),
        }
        last = Some(ep);
    }
    let dns = st.dns.as_ref().map(|(src, state)| {
        let last = state.last();
        let (source, kind) = match src {
            DnsSource::Address { name, port } => (format!("{name}:{port}"), "a"),
            DnsSource::Srv { name } => (name.clone(), "srv"),
        };
        DnsStatus {
            source,
            kind,
            last_resolution_unix_ms: last.map(|l| l.0),
            last_outcome: last.map(|l| l.1),
            ttl_secs: last.map(|l| l.2),
            consecutive_failures: last.map_or(0, |l| l.3),
        }
    });
    StackStatus {
        name: st.name().to_string(),
        weight: st.weight(),
        healthy_endpoints: endpoints.iter().filter(|e| e.state.takes_traffic()).count(),
        ejected_endpoints: st.policy.ejected(),
        dns,
        endpoints,
    }
}

impl ProxyStatus {
    /// Reads the status of `snap` now.
    pub(crate) fn of(snap: &Snapshot) -> Self {
        Self {
            generation: snap.generation(),
            services: snap
                .services()
                .iter()
                .map(|svc| ServiceStatus {
                    name: svc.name().to_string(),
                    stacks: svc.stacks().iter().map(stack).collect(),
                })
                .collect(),
        }
    }

    /// A stack's status by service and stack name.
    pub fn stack(&self, service: &str, stack: &str) -> Option<&StackStatus> {
        self.services
            .iter()
            .find(|s| s.name == service)?
            .stacks
            .iter()
            .find(|s| s.name == stack)
    }
}
