//! Building the next [`Snapshot`] from a validated configuration, off the hot path.
//!
//! The [`Registry`] remembers runtime state by identity (endpoint state and pools, stack
//! traffic figures, upstream TLS configs) so that a rebuild carries it over: an endpoint that is
//! in both the old and the new configuration keeps its health, counters and idle connections.
//! A DNS stack's endpoints are the addresses its discovery task found last (`Discovered`), keyed
//! the same way, so a re-resolution that keeps an address keeps that endpoint's state.

use crate::discovery::{Discovered, copies};
use crate::endpoint::{EndpointKey, EndpointState, Health, RememberedHealth};
use crate::outlier::StackPolicy;
use crate::pool::UpstreamTls;
use crate::select::Schedule;
use crate::snapshot::{
    ListenerRoutes, RouteList, ServiceRoute, ShadowRoute, Snapshot, StackRoute, StickyKey,
};
use crate::traffic::{ShadowCounters, StackStats};
use http::HeaderName;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use switchyard_config::{
    Config, DnsSource, Endpoint, HostPattern, Scheme, ServiceSpec, StackSpec, Sticky,
    UpstreamTlsSpec,
};
use tracing::warn;

/// Why a snapshot could not be built (the previous one stays in service).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Upstream TLS settings of a stack could not be loaded.
    #[error("upstream tls of stack {stack} of service {service}")]
    UpstreamTls {
        /// Service name.
        service: String,
        /// Stack name.
        stack: String,
        /// Cause.
        #[source]
        source: Box<switchyard_certs::TlsConfigError>,
    },
    /// An endpoint's host name did not resolve.
    #[error("endpoint {endpoint} of stack {stack} of service {service} did not resolve")]
    Unresolved {
        /// Service name.
        service: String,
        /// Stack name.
        stack: String,
        /// The endpoint.
        endpoint: String,
    },
}

/// Runtime state kept across snapshots.
#[derive(Default)]
pub(crate) struct Registry {
    pub(crate) endpoints: HashMap<EndpointKey, Arc<EndpointState>>,
    /// Health saved by the previous process, used for the endpoints of the first build only
    /// (a later endpoint is new and starts as its check says).
    pub(crate) remembered: RememberedHealth,
    /// Serving workers (`crate::worker`), each with its own idle connections per endpoint; 0
    /// and 1 both mean one.
    pub(crate) workers: usize,
    stacks: HashMap<(String, String), Arc<StackStats>>,
    /// Shadow copy counters by service.
    shadows: HashMap<String, Arc<ShadowCounters>>,
    policies: HashMap<(String, String), Arc<StackPolicy>>,
}

/// Addresses of endpoint host names that are not IP literals, looked up before building.
pub(crate) type Resolved = HashMap<(String, u16), SocketAddr>;

/// Whether a stack's endpoints start healthy: yes without an active check (`kind = "none"`),
/// under the default TCP check, or when the check says `initial = "healthy"`.
pub(crate) fn starts_healthy(service: &ServiceSpec, stack: &StackSpec) -> bool {
    service
        .active_check_of(stack)
        .is_none_or(|h| h.initially_healthy)
}

/// The TLS server name of a DNS stack without `tls.sni`: the A/AAAA name, or the SRV name
/// without its leading `_service._proto` labels.
fn dns_server_name(src: &DnsSource) -> &str {
    let name = match src {
        DnsSource::Address { name, .. } => name.as_str(),
        DnsSource::Srv { name } => {
            let mut n = name.as_str();
            while let Some(rest) = n.strip_prefix('_').and_then(|r| r.split_once('.')) {
                n = rest.1;
            }
            n
        }
    };
    name.strip_suffix('.').unwrap_or(name)
}

fn upstream_tls(svc: &ServiceSpec, st: &StackSpec, host: &str) -> Result<UpstreamTls, BuildError> {
    let spec = st.tls().cloned().unwrap_or_else(UpstreamTlsSpec::default);
    if spec.insecure_skip_verify {
        warn!(service = %svc.name(), stack = %st.name(), "upstream certificate verification is disabled (insecure_skip_verify)");
    }
    let opts = switchyard_certs::UpstreamTls {
        ca: spec.ca.clone(),
        client_cert: spec
            .client_cert
            .as_ref()
            .map(|c| switchyard_certs::CertSource {
                cert: c.cert.clone(),
                key: c.key.clone(),
            }),
        insecure_skip_verify: spec.insecure_skip_verify,
    };
    let config = switchyard_certs::upstream_client_config(&opts).map_err(|source| {
        BuildError::UpstreamTls {
            service: svc.name().to_string(),
            stack: st.name().to_string(),
            source: Box::new(source),
        }
    })?;
    let name = spec.sni.as_deref().unwrap_or(host).to_owned();
    let server_name =
        rustls::pki_types::ServerName::try_from(name).map_err(|_| BuildError::Unresolved {
            service: svc.name().to_string(),
            stack: st.name().to_string(),
            endpoint: host.to_owned(),
        })?;
    Ok(UpstreamTls {
        config,
        server_name,
    })
}

impl Registry {
    /// Takes the per-second sample of every stack's and every endpoint's traffic figures.
    pub(crate) fn tick_stats(&self, now: tokio::time::Instant) {
        for stats in self.stacks.values() {
            stats.tick(now);
        }
        for ep in self.endpoints.values() {
            ep.stats().tick(now);
        }
    }

    /// Builds generation `generation` of the snapshot and forgets state no longer referenced.
    pub(crate) fn build(
        &mut self,
        config: &Config,
        generation: u64,
        resolved: &Resolved,
        discovered: &Discovered,
    ) -> Result<Snapshot, BuildError> {
        let pool_capacity = config.limits().upstream_idle_per_endpoint;
        let timeouts = config.timeouts();
        let mut live_eps = HashSet::new();
        let mut live_stacks = HashSet::new();
        let mut services = Vec::new();
        let mut policy_updates = Vec::new();
        for svc in config.services() {
            let mut stacks = Vec::new();
            for st in svc.stacks() {
                let skey = (svc.name().to_string(), st.name().to_string());
                let stack_existed = self.stacks.contains_key(&skey);
                let policy = self.policies.entry(skey.clone()).or_default().clone();
                let mut targets: Vec<(Endpoint, SocketAddr, usize)> = Vec::new();
                let mut tls = None;
                let mut dns = None;
                if let Some(src) = st.dns() {
                    let scheme = if st.tls().is_some() {
                        Scheme::Https
                    } else {
                        Scheme::Http
                    };
                    let set = discovered.get(&skey).filter(|s| &s.source == src);
                    if let Some(set) = set {
                        for (f, n) in set.endpoints.iter().zip(copies(&set.endpoints)) {
                            targets.push((Endpoint::from_socket_addr(scheme, f.addr), f.addr, n));
                        }
                    }
                    if scheme == Scheme::Https {
                        tls = Some(upstream_tls(svc, st, dns_server_name(src))?);
                    }
                    dns = Some((
                        src.clone(),
                        set.map(|s| s.state.clone()).unwrap_or_default(),
                    ));
                }
                for ep in st.endpoints() {
                    let addr = match ep.socket_addr() {
                        Some(a) => a,
                        None => *resolved
                            .get(&(ep.host().to_owned(), ep.port()))
                            .ok_or_else(|| BuildError::Unresolved {
                                service: svc.name().to_string(),
                                stack: st.name().to_string(),
                                endpoint: ep.to_string(),
                            })?,
                    };
                    if ep.scheme() == Scheme::Https && tls.is_none() {
                        tls = Some(upstream_tls(svc, st, ep.host())?);
                    }
                    targets.push((ep.clone(), addr, 1));
                }
                let mut endpoints = Vec::with_capacity(targets.len());
                for (endpoint, addr, n) in targets {
                    let key = EndpointKey {
                        service: svc.name().to_string(),
                        stack: st.name().to_string(),
                        endpoint,
                        addr,
                    };
                    let remembered = &self.remembered;
                    let state = self
                        .endpoints
                        .entry(key.clone())
                        .or_insert_with(|| {
                            let initial = match remembered.get(&key) {
                                Some(h) => h,
                                None if starts_healthy(svc, st) => Health::Healthy,
                                None => Health::Unknown,
                            };
                            Arc::new(EndpointState::new(
                                key.clone(),
                                initial,
                                pool_capacity,
                                self.workers,
                                policy.clone(),
                                stack_existed,
                                config.listeners().len(),
                            ))
                        })
                        .clone();
                    live_eps.insert(key);
                    // SRV weights: an endpoint appears once per share (see `copies`).
                    for _ in 1..n {
                        endpoints.push(state.clone());
                    }
                    endpoints.push(state);
                }
                let distinct = endpoints
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| *i == 0 || !Arc::ptr_eq(&endpoints[i - 1], e))
                    .count();
                // Applied once the whole build succeeded: a refused state changes nothing.
                policy_updates.push((
                    policy.clone(),
                    *svc.outlier_detection_of(st),
                    svc.slow_start_of(st),
                    distinct,
                ));
                let stats = self
                    .stacks
                    .entry(skey.clone())
                    .or_insert_with(|| Arc::new(StackStats::new(config.listeners().len())))
                    .clone();
                live_stacks.insert(skey);
                stacks.push(StackRoute {
                    name: st.name().clone(),
                    version: st.version().to_owned(),
                    weight: st.weight().get(),
                    sticky_seed: crate::select::stable_hash(st.name().as_str().as_bytes()),
                    endpoints,
                    cursor: AtomicUsize::new(0),
                    tls,
                    stats,
                    health_check: svc.active_check_of(st).map(Arc::new),
                    policy,
                    dns,
                });
            }
            let weights: Vec<u32> = stacks.iter().map(|s| s.weight).collect();
            let sticky = svc.sticky().map(|s| match s {
                Sticky::Cookie(c) => StickyKey::Cookie(c.as_str().into()),
                Sticky::Header(h) => StickyKey::Header(
                    HeaderName::from_bytes(h.as_bytes()).expect("validated header name"),
                ),
            });
            let shadow = svc.shadow().and_then(|sh| {
                // Validation ties the shadow stack to the service's stacks.
                let stack = stacks.iter().position(|s| s.name == *sh.stack())?;
                let counters = self
                    .shadows
                    .entry(svc.name().to_string())
                    .or_default()
                    .clone();
                Some(ShadowRoute {
                    stack,
                    percent: sh.percent(),
                    methods: sh
                        .methods()
                        .iter()
                        .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                        .collect(),
                    max_body: sh.max_body(),
                    counters,
                })
            });
            services.push(Arc::new(ServiceRoute {
                name: svc.name().clone(),
                schedule: Schedule::new(&weights),
                stacks,
                pin_header: svc
                    .pin_header()
                    .map(|h| HeaderName::from_bytes(h.as_bytes()).expect("validated header name")),
                sticky,
                load_balancing: svc.load_balancing(),
                preserve_host: svc.preserve_host(),
                fail_open: svc.fail_open(),
                connect_timeout: svc.connect_timeout().unwrap_or(timeouts.connect),
                response_timeout: svc
                    .upstream_response_timeout()
                    .unwrap_or(timeouts.upstream_response),
                request_body_timeout: svc.request_body_timeout().unwrap_or(timeouts.request_body),
                upgrades: svc.upgrades().iter().map(|u| u.as_str().into()).collect(),
                shadow,
            }));
        }
        self.endpoints.retain(|k, _| live_eps.contains(k));
        self.stacks.retain(|k, _| live_stacks.contains(k));
        self.policies.retain(|k, _| live_stacks.contains(k));
        self.shadows.retain(|k, _| {
            config
                .services()
                .iter()
                .any(|s| s.name().as_str() == k.as_str())
        });
        for (policy, outlier, slow_start, distinct) in policy_updates {
            policy.update(&outlier, slow_start, distinct);
        }

        let listeners = config
            .listeners()
            .iter()
            .map(|l| {
                let mut routes = ListenerRoutes::default();
                let mut wild: HashMap<Box<str>, RouteList> = HashMap::new();
                for (spec, route) in config.services().iter().zip(&services) {
                    if !spec.listeners().contains(l.name()) {
                        continue;
                    }
                    let entry = (Box::<str>::from(spec.path_prefix()), route.clone());
                    if spec.hosts().is_empty() {
                        routes.any.0.push(entry.clone());
                    }
                    for h in spec.hosts() {
                        match h {
                            HostPattern::Exact(name) => routes
                                .exact
                                .entry(name.as_str().into())
                                .or_default()
                                .0
                                .push(entry.clone()),
                            HostPattern::Wildcard(suffix) => wild
                                .entry(suffix.as_str().into())
                                .or_default()
                                .0
                                .push(entry.clone()),
                        }
                    }
                }
                routes.wildcard = wild.into_iter().collect();
                routes
                    .wildcard
                    .sort_by_key(|w| std::cmp::Reverse(w.0.len()));
                let sort = |l: &mut RouteList| l.0.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
                sort(&mut routes.any);
                routes.exact.values_mut().for_each(sort);
                routes.wildcard.iter_mut().for_each(|(_, l)| sort(l));
                routes
            })
            .collect();
        Ok(Snapshot {
            generation,
            listeners,
            services,
        })
    }
}
