//! The routing snapshot: one immutable value holding everything the request path needs.
//!
//! Listeners → services (exact host table, wildcard suffixes, any-host; each a list of path
//! prefixes, longest first) → stacks with a precomputed weighted schedule → endpoints with
//! their shared runtime state. It is built off the hot path (`crate::build`) and published with
//! one `ArcSwap` store; a request loads it once and routes entirely on it. Nothing here locks.

use crate::discovery::DnsState;
use crate::endpoint::EndpointState;
use crate::outlier::StackPolicy;
use crate::pool::UpstreamTls;
use crate::select::Schedule;
use crate::traffic::{ShadowCounters, StackStats};
use http::{HeaderMap, HeaderName};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;
use switchyard_config::{DnsSource, HealthCheckSpec, LoadBalancing, Name};

/// One generation of the routing table.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) generation: u64,
    pub(crate) listeners: Vec<ListenerRoutes>,
    pub(crate) services: Vec<Arc<ServiceRoute>>,
}

/// Routes of one listener.
#[derive(Debug, Default)]
pub(crate) struct ListenerRoutes {
    pub(crate) exact: HashMap<Box<str>, RouteList>,
    /// `(".suffix", routes)`, longest suffix first.
    pub(crate) wildcard: Vec<(Box<str>, RouteList)>,
    pub(crate) any: RouteList,
}

/// Services by path prefix, longest prefix first.
#[derive(Debug, Default)]
pub(crate) struct RouteList(pub(crate) Vec<(Box<str>, Arc<ServiceRoute>)>);

impl RouteList {
    #[inline]
    fn find(&self, path: &str) -> Option<&Arc<ServiceRoute>> {
        self.0
            .iter()
            .find(|(p, _)| prefix_matches(p, path))
            .map(|(_, s)| s)
    }
}

/// `/api` matches `/api`, `/api/x` and `/api?q`, not `/apix`; `/api/` and `/` match by bytes.
#[inline]
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if !path.starts_with(prefix) {
        return false;
    }
    if prefix.ends_with('/') || path.len() == prefix.len() {
        return true;
    }
    matches!(path.as_bytes()[prefix.len()], b'/' | b'?')
}

/// Sticky key source, resolved at build time.
#[derive(Debug)]
pub(crate) enum StickyKey {
    Cookie(Box<str>),
    Header(HeaderName),
}

/// A service's shadow setting as the request path sees it (see `crate::shadow`).
#[derive(Debug)]
pub(crate) struct ShadowRoute {
    /// Index of the shadow stack in the service's stacks.
    pub(crate) stack: usize,
    /// Share of requests copied, 1..=100.
    pub(crate) percent: u8,
    /// Methods mirrored.
    pub(crate) methods: Box<[http::Method]>,
    /// Largest body copied, in bytes.
    pub(crate) max_body: u64,
    /// Copies in flight and dropped, carried across snapshots.
    pub(crate) counters: Arc<ShadowCounters>,
}

/// A service as the request path sees it.
#[derive(Debug)]
pub struct ServiceRoute {
    pub(crate) name: Name,
    pub(crate) stacks: Vec<StackRoute>,
    pub(crate) schedule: Option<Schedule>,
    pub(crate) pin_header: Option<HeaderName>,
    pub(crate) sticky: Option<StickyKey>,
    pub(crate) load_balancing: LoadBalancing,
    pub(crate) preserve_host: bool,
    pub(crate) fail_open: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) request_body_timeout: Duration,
    /// `Upgrade` protocol names tunnelled to the endpoints, lowercase.
    pub(crate) upgrades: Box<[Box<str>]>,
    /// Shadow traffic; `None` (the common case) costs the request path one branch.
    pub(crate) shadow: Option<ShadowRoute>,
}

impl ServiceRoute {
    /// Service name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Stacks.
    pub fn stacks(&self) -> &[StackRoute] {
        &self.stacks
    }

    /// The shadow stack and its counters, when the service mirrors traffic.
    pub fn shadow(&self) -> Option<(&StackRoute, &Arc<ShadowCounters>)> {
        let sh = self.shadow.as_ref()?;
        Some((&self.stacks[sh.stack], &sh.counters))
    }

    /// Whether every protocol an `Upgrade` header in `h` names is one the service tunnels
    /// (`false` without an `Upgrade` header). Protocol names compare case-insensitively and
    /// without their `/version`; the common single-token header is compared without copying.
    pub(crate) fn allows_upgrade(&self, h: &HeaderMap) -> bool {
        let mut any = false;
        for v in h.get_all(http::header::UPGRADE) {
            for token in v.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.is_empty() {
                    continue;
                }
                let name = token.split(|&b| b == b'/').next().unwrap_or(token);
                if !self
                    .upgrades
                    .iter()
                    .any(|u| u.as_bytes().eq_ignore_ascii_case(name))
                {
                    return false;
                }
                any = true;
            }
        }
        any
    }
}

/// A stack as the request path sees it.
#[derive(Debug)]
pub struct StackRoute {
    pub(crate) name: Name,
    pub(crate) version: String,
    pub(crate) weight: u32,
    /// `select::stable_hash` of the name: the stack's side of sticky rendezvous scores.
    pub(crate) sticky_seed: u64,
    pub(crate) endpoints: Vec<Arc<EndpointState>>,
    pub(crate) cursor: AtomicUsize,
    pub(crate) tls: Option<UpstreamTls>,
    pub(crate) stats: Arc<StackStats>,
    /// The active health check of the stack's endpoints (its own or the service's).
    pub(crate) health_check: Option<Arc<HealthCheckSpec>>,
    /// Outlier and slow-start settings shared with the stack's endpoints.
    pub(crate) policy: Arc<StackPolicy>,
    /// Where a DNS stack's endpoints come from, and its last resolution.
    pub(crate) dns: Option<(DnsSource, Arc<DnsState>)>,
}

impl StackRoute {
    /// Stack name.
    pub fn name(&self) -> &Name {
        &self.name
    }
    /// Version label.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Weight in this snapshot.
    pub fn weight(&self) -> u32 {
        self.weight
    }
    /// Endpoints with their runtime state.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }
    /// Traffic figures.
    pub fn stats(&self) -> &Arc<StackStats> {
        &self.stats
    }
}

impl Snapshot {
    /// The generation this snapshot was published as.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Every service.
    pub fn services(&self) -> &[Arc<ServiceRoute>] {
        &self.services
    }

    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&Arc<ServiceRoute>> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// A stack of a service by names.
    pub fn stack(&self, service: &str, stack: &str) -> Option<&StackRoute> {
        self.service(service)?
            .stacks
            .iter()
            .find(|s| s.name.as_str() == stack)
    }

    /// The service for a request on listener `listener` (its index in the configuration), by
    /// Host (case-insensitive, port ignored; exact names before wildcards before any-host) and
    /// the longest matching path prefix.
    #[inline]
    pub fn route(
        &self,
        listener: usize,
        host: Option<&[u8]>,
        path: &str,
    ) -> Option<&Arc<ServiceRoute>> {
        let routes = self.listeners.get(listener)?;
        if let Some(host) = host.map(strip_port) {
            let mut buf = [0u8; 256];
            let lower: &str = if host.len() <= buf.len() {
                let b = &mut buf[..host.len()];
                b.copy_from_slice(host);
                b.make_ascii_lowercase();
                std::str::from_utf8(b).unwrap_or("")
            } else {
                ""
            };
            if !lower.is_empty() {
                if let Some(s) = routes.exact.get(lower).and_then(|l| l.find(path)) {
                    return Some(s);
                }
                for (suffix, list) in &routes.wildcard {
                    // `*.example.test` needs at least one more label before the suffix.
                    if lower.len() > suffix.len() && lower.ends_with(&**suffix) {
                        if let Some(s) = list.find(path) {
                            return Some(s);
                        }
                    }
                }
            }
        }
        routes.any.find(path)
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`.
#[inline]
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&c| c == b']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.iter().rposition(|&c| c == b':') {
        Some(i) => &host[..i],
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(prefix_matches("/api", "/api?x=1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port(b"a.test:8080"), b"a.test");
        assert_eq!(strip_port(b"a.test"), b"a.test");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
    }
}
