//! Validated services and stacks: what clients address and the versions behind it.

use crate::model::{Endpoint, HostPattern, LoadBalancing, Name, Sticky, Weight};
use std::path::PathBuf;
use std::time::Duration;

/// What an active health check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// One HTTP request; the status must be in the expected range (the default).
    Http,
    /// A TCP connect; the endpoint passes when it accepts the connection.
    Tcp,
    /// No check (`kind = "none"`): endpoints always take traffic and are shown `unchecked`.
    None,
}

/// An active health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// HTTP request, TCP connect, or none.
    pub kind: CheckKind,
    /// HTTP method.
    pub method: String,
    /// Request path (with query).
    pub path: String,
    /// HTTP version sent: `HTTP/1.0` or `HTTP/1.1`.
    pub http10: bool,
    /// Port to check, instead of the traffic port.
    pub port: Option<u16>,
    /// Host header to send.
    pub host: Option<String>,
    /// Inclusive range of statuses that pass.
    pub expect_status: (u16, u16),
    /// Time between checks.
    pub interval: Duration,
    /// Time after which a check fails.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures to become unhealthy.
    pub unhealthy_threshold: u32,
    /// New endpoints start healthy (instead of unknown).
    pub initially_healthy: bool,
}

impl HealthCheckSpec {
    /// The check endpoints get when neither their stack nor their service configures one: a TCP
    /// connect every 2s (1s timeout), unhealthy after 3 refusals in a row, healthy again after
    /// one accepted connection; endpoints start healthy, so traffic flows at once.
    pub fn default_tcp() -> Self {
        Self {
            kind: CheckKind::Tcp,
            method: "GET".into(),
            path: "/".into(),
            http10: false,
            port: None,
            host: None,
            expect_status: (200, 399),
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 3,
            initially_healthy: true,
        }
    }
}

/// Passive health (outlier detection): endpoints failing real requests are ejected for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierSpec {
    /// Whether endpoints are ejected at all (default true).
    pub enabled: bool,
    /// Consecutive connect failures, timeouts or 5xx responses that eject (default 5).
    pub consecutive_failures: u32,
    /// Ejection time of a first ejection; the n-th ejection in a row lasts n times as long
    /// (default 30s).
    pub base_ejection: Duration,
    /// Longest ejection time (default 300s).
    pub max_ejection: Duration,
    /// Largest share of a stack's endpoints ejected at once, in percent, rounded down: at the
    /// default 50 a stack of one endpoint never ejects it and a stack of two ejects at most one.
    pub max_ejection_percent: u32,
}

impl Default for OutlierSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 50,
        }
    }
}

/// DNS-discovered endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsSource {
    /// A/AAAA records of `name`, all on `port`.
    Address {
        /// The name.
        name: String,
        /// The port.
        port: u16,
    },
    /// SRV records of `name`.
    Srv {
        /// The SRV name.
        name: String,
    },
}

/// Upstream TLS settings of a stack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamTlsSpec {
    /// CA bundle replacing the default roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for mTLS.
    pub client_cert: Option<crate::model::CertPaths>,
    /// Server name to present and verify.
    pub sni: Option<String>,
    /// Accept any server certificate.
    pub insecure_skip_verify: bool,
}

/// One deployed version of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    pub(crate) name: Name,
    pub(crate) version: String,
    pub(crate) weight: Weight,
    pub(crate) endpoints: Vec<Endpoint>,
    pub(crate) dns: Option<DnsSource>,
    pub(crate) health_check: Option<HealthCheckSpec>,
    pub(crate) outlier_detection: Option<OutlierSpec>,
    pub(crate) slow_start: Option<Duration>,
    pub(crate) tls: Option<UpstreamTlsSpec>,
    pub(crate) raw: crate::raw::Stack,
}

impl StackSpec {
    /// Stack name.
    pub fn name(&self) -> &Name {
        &self.name
    }
    /// Version label.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Weight.
    pub fn weight(&self) -> Weight {
        self.weight
    }
    /// Static endpoints (empty for DNS stacks).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// DNS source, if endpoints are discovered.
    pub fn dns(&self) -> Option<&DnsSource> {
        self.dns.as_ref()
    }
    /// The stack's own health check, if it overrides the service's.
    pub fn health_check(&self) -> Option<&HealthCheckSpec> {
        self.health_check.as_ref()
    }
    /// The stack's own outlier detection, if it overrides the service's.
    pub fn outlier_detection(&self) -> Option<&OutlierSpec> {
        self.outlier_detection.as_ref()
    }
    /// The stack's own slow-start window, if it overrides the service's.
    pub fn slow_start(&self) -> Option<Duration> {
        self.slow_start
    }
    /// Upstream TLS settings.
    pub fn tls(&self) -> Option<&UpstreamTlsSpec> {
        self.tls.as_ref()
    }
    /// The raw form (for persistence and the API).
    pub fn to_raw(&self) -> crate::raw::Stack {
        self.raw.clone()
    }
    /// The same stack at another weight.
    pub fn with_weight(&self, weight: Weight) -> Self {
        let mut s = self.clone();
        s.weight = weight;
        s.raw.weight = i64::from(weight.get());
        s
    }
    /// The same stack with other static endpoints.
    pub fn with_endpoints(&self, endpoints: Vec<Endpoint>) -> Self {
        let mut s = self.clone();
        s.raw.endpoints = endpoints.iter().map(ToString::to_string).collect();
        s.raw.dns = None;
        s.dns = None;
        s.endpoints = endpoints;
        s
    }
}

/// A service: what clients address, and its stacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub(crate) name: Name,
    pub(crate) listeners: Vec<Name>,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) path_prefix: String,
    pub(crate) load_balancing: LoadBalancing,
    pub(crate) pin_header: Option<String>,
    pub(crate) sticky: Option<Sticky>,
    pub(crate) preserve_host: bool,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) upstream_response_timeout: Option<Duration>,
    pub(crate) request_body_timeout: Option<Duration>,
    pub(crate) upgrades: Vec<String>,
    pub(crate) health_check: Option<HealthCheckSpec>,
    pub(crate) fail_open: bool,
    pub(crate) outlier_detection: OutlierSpec,
    pub(crate) slow_start: Option<Duration>,
    pub(crate) shadow: Option<crate::shadow::ShadowSpec>,
    pub(crate) stacks: Vec<StackSpec>,
    pub(crate) raw: crate::raw::Service,
}

/// The `Upgrade` protocols a service tunnels when it names none.
pub const DEFAULT_UPGRADES: &[&str] = &["websocket"];

/// The default stack-pinning header.
pub const DEFAULT_PIN_HEADER: &str = "x-switchyard-stack";

impl ServiceSpec {
    /// Service name.
    pub fn name(&self) -> &Name {
        &self.name
    }
    /// Listener names.
    pub fn listeners(&self) -> &[Name] {
        &self.listeners
    }
    /// Host patterns; empty matches any host.
    pub fn hosts(&self) -> &[HostPattern] {
        &self.hosts
    }
    /// Path prefix (starts with `/`).
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }
    /// Endpoint choice inside a stack.
    pub fn load_balancing(&self) -> LoadBalancing {
        self.load_balancing
    }
    /// Lowercase pinning header name, or `None` when pinning is disabled.
    pub fn pin_header(&self) -> Option<&str> {
        self.pin_header.as_deref()
    }
    /// Sticky selection.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
    }
    /// Whether the client's Host header goes upstream unchanged.
    pub fn preserve_host(&self) -> bool {
        self.preserve_host
    }
    /// Connect timeout override.
    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }
    /// Upstream response-header timeout override.
    pub fn upstream_response_timeout(&self) -> Option<Duration> {
        self.upstream_response_timeout
    }
    /// Request-body gap timeout override.
    pub fn request_body_timeout(&self) -> Option<Duration> {
        self.request_body_timeout
    }
    /// `Upgrade` protocol names tunnelled to the endpoints, lowercase (default `websocket`).
    pub fn upgrades(&self) -> &[String] {
        &self.upgrades
    }
    /// Default health check for the stacks.
    pub fn health_check(&self) -> Option<&HealthCheckSpec> {
        self.health_check.as_ref()
    }
    /// Send to all endpoints when none is healthy.
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }
    /// Default outlier detection for the stacks (the defaults when not configured).
    pub fn outlier_detection(&self) -> &OutlierSpec {
        &self.outlier_detection
    }
    /// Default slow-start window for the stacks; `None` when off.
    pub fn slow_start(&self) -> Option<Duration> {
        self.slow_start
    }
    /// Shadow traffic: which stack receives copies of live requests; `None` when off.
    pub fn shadow(&self) -> Option<&crate::shadow::ShadowSpec> {
        self.shadow.as_ref()
    }
    /// The health check configured for `stack`: its own, else the service's.
    pub fn health_check_of<'a>(&'a self, stack: &'a StackSpec) -> Option<&'a HealthCheckSpec> {
        stack.health_check().or(self.health_check())
    }
    /// The check that runs for `stack`'s endpoints: the configured one, else
    /// [`HealthCheckSpec::default_tcp`]; `None` when it is configured with `kind = "none"`.
    pub fn active_check_of(&self, stack: &StackSpec) -> Option<HealthCheckSpec> {
        match self.health_check_of(stack) {
            Some(h) if h.kind == CheckKind::None => None,
            Some(h) => Some(h.clone()),
            None => Some(HealthCheckSpec::default_tcp()),
        }
    }
    /// The outlier detection that applies to `stack`: its own, else the service's.
    pub fn outlier_detection_of<'a>(&'a self, stack: &'a StackSpec) -> &'a OutlierSpec {
        stack.outlier_detection().unwrap_or(&self.outlier_detection)
    }
    /// The slow-start window that applies to `stack`: its own, else the service's; `None`
    /// when off (a window of zero turns it off).
    pub fn slow_start_of(&self, stack: &StackSpec) -> Option<Duration> {
        stack
            .slow_start()
            .or(self.slow_start)
            .filter(|d| !d.is_zero())
    }
    /// Stacks in configuration order.
    pub fn stacks(&self) -> &[StackSpec] {
        &self.stacks
    }
    /// A stack by name.
    pub fn stack(&self, name: &str) -> Option<&StackSpec> {
        self.stacks.iter().find(|s| s.name.as_str() == name)
    }
    /// The raw form (for persistence and the API).
    pub fn to_raw(&self) -> crate::raw::Service {
        let mut raw = self.raw.clone();
        raw.stacks = self.stacks.iter().map(StackSpec::to_raw).collect();
        raw
    }
    /// The same service with `stacks` replacing its stacks (names must be unique). A shadow
    /// setting whose stack is not among them is dropped: mirroring ends with its stack.
    pub fn with_stacks(&self, stacks: Vec<StackSpec>) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        for s in &stacks {
            if !seen.insert(s.name.as_str()) {
                return Err(format!("duplicate stack name {:?}", s.name.as_str()));
            }
        }
        let mut svc = self.clone();
        if svc
            .shadow
            .as_ref()
            .is_some_and(|sh| !stacks.iter().any(|s| s.name == sh.stack))
        {
            svc.shadow = None;
            svc.raw.shadow = None;
        }
        svc.stacks = stacks;
        // `raw` holds the service without its stacks (as validation builds it; `to_raw` adds
        // them), so a changed service equals the same service parsed again.
        svc.raw.stacks.clear();
        Ok(svc)
    }
    /// The same service with another shadow setting (`None` turns mirroring off), validated
    /// as in the file: the stack must be one of the service's, the percent 1..=100, the
    /// methods tokens. Problems name fields under `shadow`.
    pub fn with_shadow(
        &self,
        shadow: Option<crate::raw::Shadow>,
    ) -> Result<Self, Vec<crate::error::Problem>> {
        let mut p = crate::error::Problems::default();
        let at = crate::error::FieldPath::root().key("shadow");
        let names: Vec<&str> = self.stacks.iter().map(|s| s.name.as_str()).collect();
        let spec = shadow
            .as_ref()
            .and_then(|sh| crate::validate::shadow(sh, &names, &at, &mut p));
        if !p.is_empty() {
            return Err(crate::validate::unlocated(p));
        }
        let mut svc = self.clone();
        svc.shadow = spec;
        svc.raw.shadow = shadow;
        Ok(svc)
    }
}
