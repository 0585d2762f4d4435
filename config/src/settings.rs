//! Process-wide settings with their defaults, and the whole validated [`Config`].
//!
//! Every default lives here, once; the README lists them.

use crate::model::{CertPaths, ListenerSpec, ListenerTls, Name};
use crate::service::ServiceSpec;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Timeouts, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Upstream TCP connect (default 5s).
    pub connect: Duration,
    /// Upstream response headers after the request was sent (default 60s).
    pub upstream_response: Duration,
    /// Idle downstream keep-alive connection (default 60s).
    pub idle: Duration,
    /// Reading a request's header block (default 10s).
    pub request_header: Duration,
    /// The longest gap between two reads of a request body (default 30s).
    pub request_body: Duration,
    /// Idle pooled upstream connection (default 30s).
    pub upstream_idle: Duration,
    /// Draining in-flight requests at shutdown (default 30s).
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            upstream_response: Duration::from_secs(60),
            idle: Duration::from_secs(60),
            request_header: Duration::from_secs(10),
            request_body: Duration::from_secs(30),
            upstream_idle: Duration::from_secs(30),
            drain: Duration::from_secs(30),
        }
    }
}

/// Limits, with their defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in a request's header block (default 65536; larger gets 431).
    pub max_request_header_bytes: usize,
    /// Request header fields (default 100, at most 256; more gets 431).
    pub max_headers: usize,
    /// HTTP/2 concurrent streams per connection (default 100).
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 resets tolerated per connection before it is closed (default 100).
    pub h2_max_pending_reset_streams: usize,
    /// Idle pooled connections kept per endpoint (default 64).
    pub upstream_idle_per_endpoint: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_header_bytes: 64 * 1024,
            max_headers: 100,
            h2_max_concurrent_streams: 100,
            h2_max_pending_reset_streams: 100,
            upstream_idle_per_endpoint: 64,
        }
    }
}

/// The resolver of DNS-discovered endpoints (`[dns]`), with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    /// Nameservers to ask; empty (the default) means the system's `resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// Shortest time between two resolutions of a name; a lower TTL is raised to it
    /// (default 1s).
    pub min_refresh: Duration,
    /// Longest time between two resolutions of a name; a higher TTL is lowered to it
    /// (default 300s).
    pub max_refresh: Duration,
    /// Time after which one query counts as failed (default 2s).
    pub timeout: Duration,
}

impl Default for DnsSpec {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Where the access log goes (`[access_log] path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// The process's standard output (`path = "stdout"`).
    Stdout,
    /// A file, appended to, created when missing and reopened on SIGUSR1 (log rotation).
    File(PathBuf),
}

/// The JSON access log (`[access_log]`), off unless configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// Lines that may wait for the writer; a line finding the buffer full is dropped and
    /// counted (default [`AccessLogSpec::DEFAULT_BUFFER`]).
    pub buffer: usize,
}

impl AccessLogSpec {
    /// Default of `[access_log] buffer`.
    pub const DEFAULT_BUFFER: usize = 16_384;
    /// Largest `[access_log] buffer`.
    pub const MAX_BUFFER: i64 = 1_048_576;
}

/// Runtime settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Runtime {
    /// Worker threads; `None` means one per core.
    pub worker_threads: Option<usize>,
    /// How more than one worker thread serves connections.
    pub scheduler: Scheduler,
}

/// `[runtime] scheduler`: how more than one worker thread serves (one worker is always a
/// single-threaded runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheduler {
    /// Each worker thread runs a runtime of its own that accepts on its own `SO_REUSEPORT`
    /// sockets and keeps its own upstream connections: a request never changes thread.
    #[default]
    ThreadPerCore,
    /// One multi-threaded runtime whose workers steal each other's tasks (tokio's default).
    WorkStealing,
}

/// Control API settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSpec {
    /// Address of the control API (default `127.0.0.1:9090`).
    pub listen: SocketAddr,
    /// Directory of the durable desired state (default `switchyard-state`, next to the config).
    pub state_dir: PathBuf,
    /// Optional TLS for the control API.
    pub tls: Option<ListenerTls>,
    /// Webhooks told of every deployment's transitions.
    pub webhooks: Vec<crate::WebhookSpec>,
}

/// Where the desired state is kept (`[store]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreSpec {
    /// The state folder (`[control] state_dir`), one instance.
    #[default]
    Local,
    /// An etcd cluster shared by several instances.
    Etcd(EtcdSpec),
}

/// `[store] kind = "etcd"`: the etcd cluster and this deployment's key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    /// Client URLs (`http://` or `https://`), at least one.
    pub endpoints: Vec<String>,
    /// Key prefix, starting and ending with `/`.
    pub prefix: String,
    /// User and password, when etcd authentication is on.
    pub auth: Option<(String, String)>,
    /// How long a dead instance keeps its registration and deployment locks.
    pub lease_ttl: Duration,
    /// TLS to etcd (when the endpoints are `https://`).
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: the CA to trust and an optional client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM CA bundle of the only CAs to trust (`None`: the webpki roots).
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<CertPaths>,
}

/// A control API role, from least to most powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// GETs only.
    Read,
    /// Weights and deployment pause/resume/promote/abort.
    Operate,
    /// Stacks and deployments.
    Deploy,
    /// Services and everything else.
    Admin,
}

impl Role {
    /// Parses `read`, `operate`, `deploy` or `admin`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "operate" => Ok(Self::Operate),
            "deploy" => Ok(Self::Deploy),
            "admin" => Ok(Self::Admin),
            _ => Err(format!(
                "unknown role {s:?}: expected read, operate, deploy or admin"
            )),
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Operate => "operate",
            Self::Deploy => "deploy",
            Self::Admin => "admin",
        }
    }
}

/// A control API token (its secret's hash, never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Token name.
    pub name: Name,
    /// Role.
    pub role: Role,
    /// SHA-256 of the secret.
    pub sha256: [u8; 32],
    /// Service globs the token is limited to; empty means all.
    pub services: Vec<String>,
}

/// The whole validated configuration (or desired state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) listeners: Vec<ListenerSpec>,
    pub(crate) services: Vec<ServiceSpec>,
    pub(crate) runtime: Runtime,
    pub(crate) timeouts: Timeouts,
    pub(crate) limits: Limits,
    pub(crate) control: ControlSpec,
    pub(crate) tokens: Vec<TokenSpec>,
    pub(crate) dns: DnsSpec,
    pub(crate) metrics: bool,
    pub(crate) docker_host: Option<String>,
    pub(crate) store: StoreSpec,
    pub(crate) access_log: Option<AccessLogSpec>,
}

impl Config {
    /// The Docker Engine of container stacks (`[docker] host`), when the file sets it.
    pub fn docker_host(&self) -> Option<&str> {
        self.docker_host.as_deref()
    }

    /// Whether `GET /metrics` serves Prometheus metrics (`[metrics] enabled`, default true).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics
    }

    /// The access log, when `[access_log]` is configured (it is off by default).
    pub fn access_log(&self) -> Option<&AccessLogSpec> {
        self.access_log.as_ref()
    }

    /// Listeners in configuration order.
    pub fn listeners(&self) -> &[ListenerSpec] {
        &self.listeners
    }
    /// A listener by name.
    pub fn listener(&self, name: &str) -> Option<&ListenerSpec> {
        self.listeners.iter().find(|l| l.name.as_str() == name)
    }
    /// Services in configuration order.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }
    /// A service by name.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
    /// Runtime settings.
    pub fn runtime(&self) -> Runtime {
        self.runtime
    }
    /// Timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }
    /// Limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// Control API settings.
    pub fn control(&self) -> &ControlSpec {
        &self.control
    }
    /// Where the desired state is kept.
    pub fn store(&self) -> &StoreSpec {
        &self.store
    }
    /// The resolver settings of DNS-discovered endpoints.
    pub fn dns(&self) -> &DnsSpec {
        &self.dns
    }
    /// Tokens.
    pub fn tokens(&self) -> &[TokenSpec] {
        &self.tokens
    }
    /// A token by name.
    pub fn token(&self, name: &Name) -> Option<&TokenSpec> {
        self.tokens.iter().find(|t| &t.name == name)
    }

    /// The same configuration with `services` replacing its services, checked as a whole
    /// (listener references, unique names, no two services claiming the same route).
    pub fn with_services(&self, services: Vec<ServiceSpec>) -> Result<Self, Vec<crate::Problem>> {
        let mut problems = crate::error::Problems::default();
        crate::validate::check_services(&self.listeners, &services, &mut problems);
        if !problems.is_empty() {
            return Err(crate::validate::unlocated(problems));
        }
        // Field by field, so the services being replaced are not copied only to be dropped.
        let Self {
            listeners,
            services: _,
            runtime,
            timeouts,
            limits,
            control,
            tokens,
            dns,
            metrics,
            docker_host,
            store,
            access_log,
        } = self;
        Ok(Self {
            listeners: listeners.clone(),
            services,
            runtime: *runtime,
            timeouts: *timeouts,
            limits: *limits,
            control: control.clone(),
            tokens: tokens.clone(),
            dns: dns.clone(),
            metrics: *metrics,
            docker_host: docker_host.clone(),
            store: store.clone(),
            access_log: access_log.clone(),
        })
    }
}
