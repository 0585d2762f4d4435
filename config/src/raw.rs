//! Raw serde types mirroring the configuration file and the control API bodies.
//!
//! These types accept anything that is well-formed and nothing with unknown keys; they carry no
//! guarantee beyond shape. The validated model (`crate::model`) is built from them only through
//! [`crate::validate`], which checks every semantic rule and reports all problems at once. The
//! same types serve the TOML file, JSON bodies of the control API and the persisted state, so the
//! schema exists once.

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Listeners the proxy binds.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Services routed on those listeners.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Process runtime settings.
    #[serde(default)]
    pub runtime: Option<Runtime>,
    /// Global timeouts (services may override some).
    #[serde(default)]
    pub timeouts: Option<Timeouts>,
    /// Global request and connection limits.
    #[serde(default)]
    pub limits: Option<Limits>,
    /// The control API.
    #[serde(default)]
    pub control: Option<Control>,
    /// Control API tokens.
    #[serde(default)]
    pub tokens: Vec<Token>,
    /// The resolver used for DNS-discovered endpoints.
    #[serde(default)]
    pub dns: Option<DnsResolver>,
    /// Prometheus metrics.
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// The Docker Engine that container stacks run on.
    #[serde(default)]
    pub docker: Option<Docker>,
    /// Where the desired state is kept (local folder or etcd).
    #[serde(default)]
    pub store: Option<Store>,
    /// The JSON access log (one line per request); off when absent.
    #[serde(default)]
    pub access_log: Option<AccessLog>,
}

/// `[docker]`: the Docker Engine of container stacks.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Docker {
    /// The Engine's address, `unix:///var/run/docker.sock` (or `tcp://HOST:PORT`); default
    /// `DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    #[serde(default)]
    pub host: Option<String>,
}

/// `[store]`: where the desired state, the history and the deployments are kept.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// `local` (the state folder, default) or `etcd`.
    #[serde(default)]
    pub kind: Option<String>,
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    /// Key prefix of this deployment of Switchyard, e.g. `/switchyard/prod/`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// etcd user (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    /// etcd password (with `user`).
    #[serde(default)]
    pub password: Option<String>,
    /// How long a dead instance keeps its registration and deployment locks (`"5s"`).
    #[serde(default)]
    pub lease_ttl: Option<String>,
    /// TLS to etcd.
    #[serde(default)]
    pub tls: Option<StoreTls>,
}

/// `[store.tls]`: TLS to etcd.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreTls {
    /// PEM CA bundle that signed etcd's certificates.
    #[serde(default)]
    pub ca: Option<String>,
    /// PEM client certificate (with `key`).
    #[serde(default)]
    pub cert: Option<String>,
    /// PEM client key (with `cert`).
    #[serde(default)]
    pub key: Option<String>,
}

/// `[access_log]`: one JSON object per request, written off the request path.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// A file path (appended to; reopened on SIGUSR1) or `stdout`.
    #[serde(default)]
    pub path: Option<String>,
    /// Lines that may wait for the writer before new ones are dropped (and counted).
    #[serde(default)]
    pub buffer: Option<i64>,
}

/// `[metrics]`: the Prometheus endpoint and the traffic metrics behind it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// `false` leaves the figures-derived metrics (and `/metrics`) off; default `true`.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `[[listeners]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Listener name, referenced by services.
    pub name: String,
    /// Socket address to bind, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// TLS termination settings; absent for plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

/// `tls = { certs = [...] }` on a listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Certificate/key pairs; the first is the default.
    pub certs: Vec<CertPair>,
    /// What to do for a client sending no or an unknown SNI: `default` or `refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_sni: Option<String>,
}

/// One PEM certificate chain and its key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CertPair {
    /// Path to the PEM certificate chain.
    pub cert: String,
    /// Path to the PEM private key.
    pub key: String,
}

/// `[[services]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Listener names the service is reachable on.
    pub listeners: Vec<String>,
    /// Host patterns (exact or `*.suffix`); empty means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Path prefix; the longest matching prefix wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// `round_robin` (default) or `least_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<String>,
    /// Header that pins a request to a stack; `""` disables pinning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_header: Option<String>,
    /// Sticky stack selection by cookie or header value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// Send the client's Host header upstream (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_host: Option<bool>,
    /// Per-service timeout overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ServiceTimeouts>,
    /// `Upgrade` protocols tunnelled to the endpoints (default `["websocket"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrades: Option<Vec<String>>,
    /// Default active health check for the service's stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Send to every endpoint when none is healthy, instead of answering 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Default passive health (outlier detection) for the service's stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Default slow-start window for the service's stacks, e.g. `30s`; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<String>,
    /// Shadow traffic: copies of a share of the live requests go to one stack as well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    /// The deployed versions of the service.
    #[serde(default)]
    pub stacks: Vec<Stack>,
}

/// `sticky = { cookie = "NAME" }` or `{ header = "NAME" }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    /// Cookie whose value keeps a user on one stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Header whose value keeps a user on one stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// `shadow = { stack = "green", percent = 20 }`: a copy of that share of the live requests
/// (mirrored methods, bodies up to `max_body`) goes to `stack` too; its answers are discarded.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// The stack receiving the copies; one of the service's stacks.
    pub stack: String,
    /// Share of the live requests copied, 1..=100.
    pub percent: i64,
    /// Methods mirrored (default `["GET", "HEAD", "OPTIONS"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Largest request body copied, a size such as `64KiB` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
}

/// `[[services.stacks]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    /// Stack name (e.g. `blue`).
    pub name: String,
    /// Version label (e.g. `v1.3`).
    #[serde(default)]
    pub version: String,
    /// Share of the service's traffic, 0..=10000.
    #[serde(default)]
    pub weight: i64,
    /// Endpoint addresses: `host:port` or `https://host:port`.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Endpoints discovered through DNS instead of a fixed list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Dns>,
    /// Active health check overriding the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Passive health (outlier detection) overriding the service's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Slow-start window overriding the service's, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<String>,
    /// TLS settings towards `https://` endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
}

/// `dns = { name = "...", port = 9000 }` or `dns = { srv = "..." }`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// A/AAAA name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port used with `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// SRV name giving targets, ports and weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub srv: Option<String>,
}

/// Upstream TLS options for a stack.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM bundle of trusted CAs (replaces the default roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// Client certificate for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<CertPair>,
    /// Server name to send and verify instead of the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Accept any certificate. Dangerous; logged on every snapshot build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// `[services.health_check]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `http` (default), `tcp` (connect only) or `none` (no check at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Full request line, e.g. `GET /health HTTP/1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_line: Option<String>,
    /// Port to check instead of the traffic port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Host header to send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Expected status range, e.g. `200-399`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<String>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time after which a check counts as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Consecutive successes to become healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<i64>,
    /// Consecutive failures to become unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<i64>,
    /// Initial state of a new endpoint: `unknown` (default) or `healthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
}

/// `outlier_detection = { ... }` on a service or stack.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// Whether passive health ejects endpoints (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Consecutive connect failures, timeouts or 5xx responses that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<i64>,
    /// Ejection time of a first ejection; repeated ejections multiply it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection: Option<String>,
    /// Longest ejection time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection: Option<String>,
    /// Largest share of a stack's endpoints ejected at once, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<i64>,
}

/// `[dns]`: the resolver for DNS-discovered endpoints.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsResolver {
    /// Nameservers as `ip` or `ip:port`; empty means the system's `resolv.conf`.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Shortest time between two resolutions of a name (the TTL is raised to it).
    #[serde(default)]
    pub min_refresh: Option<String>,
    /// Longest time between two resolutions of a name (the TTL is lowered to it).
    #[serde(default)]
    pub max_refresh: Option<String>,
    /// Time after which one query counts as failed.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `[runtime]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Runtime {
    /// Worker threads of the async runtime; default: the machine's cores.
    #[serde(default)]
    pub worker_threads: Option<i64>,
    /// How more than one worker thread serves: `thread-per-core` or `work-stealing`.
    #[serde(default)]
    pub scheduler: Option<String>,
}

/// `[timeouts]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Upstream TCP connect.
    #[serde(default)]
    pub connect: Option<String>,
    /// Upstream response headers after the request was sent.
    #[serde(default)]
    pub upstream_response: Option<String>,
    /// Idle downstream keep-alive connection.
    #[serde(default)]
    pub idle: Option<String>,
    /// Reading a request's headers.
    #[serde(default)]
    pub request_header: Option<String>,
    /// The longest gap between two reads of a request body.
    #[serde(default)]
    pub request_body: Option<String>,
    /// Idle pooled upstream connection.
    #[serde(default)]
    pub upstream_idle: Option<String>,
    /// Draining in-flight requests on shutdown.
    #[serde(default)]
    pub drain: Option<String>,
}

/// Per-service `timeouts = { ... }`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceTimeouts {
    /// Upstream TCP connect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    /// Upstream response headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_response: Option<String>,
    /// The longest gap between two reads of a request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Total bytes of a request's header block.
    #[serde(default)]
    pub max_request_header_bytes: Option<i64>,
    /// Number of request header fields.
    #[serde(default)]
    pub max_headers: Option<i64>,
    /// HTTP/2 concurrent streams per connection.
    #[serde(default)]
    pub h2_max_concurrent_streams: Option<i64>,
    /// HTTP/2 client resets tolerated per connection (rapid reset).
    #[serde(default)]
    pub h2_max_pending_reset_streams: Option<i64>,
    /// Idle pooled connections kept per endpoint.
    #[serde(default)]
    pub upstream_idle_per_endpoint: Option<i64>,
}

/// `[control]`
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Address of the control API.
    #[serde(default)]
    pub listen: Option<String>,
    /// Directory holding the durable desired state.
    #[serde(default)]
    pub state_dir: Option<String>,
    /// Optional TLS for the control API.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Webhooks told of every deployment's transitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<Webhook>,
}

/// `[[control.webhooks]]`, or one entry of a deployment's `"webhooks"`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// `http://host:port/path` to POST to.
    pub url: String,
    /// Event patterns such as `deployment.*` (default) or `deployment.rolled_back`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// Environment variable of the Switchyard process holding the HMAC secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

/// `[[tokens]]`
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Token name (shown in the audit history).
    pub name: String,
    /// `read`, `operate`, `deploy` or `admin`.
    pub role: String,
    /// Hex SHA-256 of the secret.
    pub sha256: String,
    /// Service globs the token may touch; empty means all.
    #[serde(default)]
    pub services: Vec<String>,
}
