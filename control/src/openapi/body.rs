//! Descriptions of the request bodies decoded as `switchyard_config::raw` types.
//!
//! `config` does not depend on utoipa, so each raw type a body can hold has a mirror here that
//! only describes it: same field names (a test compares them with the raw types'), the types and
//! bounds the validation enforces. Nothing decodes into these.
#![allow(dead_code)] // descriptions only; bodies are decoded as the raw types

use utoipa::ToSchema;

/// `POST /v1/services`: a service, as in the configuration file's `[[services]]`.
#[derive(ToSchema)]
pub(crate) struct ServiceBody {
    /// Service name.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// Listener names the service is reachable on (at least one).
    #[schema(min_items = 1)]
    listeners: Vec<String>,
    /// Host patterns (exact or `*.suffix`); empty means any host.
    #[schema(required = false)]
    hosts: Vec<String>,
    /// Path prefix; the longest matching prefix wins (default `/`).
    path_prefix: Option<String>,
    /// `round_robin` (default) or `least_request`.
    load_balancing: Option<String>,
    /// Header pinning a request to a stack; `""` disables pinning.
    pin_header: Option<String>,
    /// Sticky stack selection: exactly one of `cookie` and `header`.
    sticky: Option<StickyBody>,
    /// Send the client's Host header upstream (default true).
    preserve_host: Option<bool>,
    /// Per-service timeout overrides.
    timeouts: Option<ServiceTimeoutsBody>,
    /// `Upgrade` protocols tunnelled to the endpoints (default `["websocket"]`; `h2c` is
    /// refused): any other upgrade is stripped and the request forwarded as a plain one.
    #[schema(required = false)]
    upgrades: Vec<String>,
    /// Active health check for the stacks.
    health_check: Option<HealthCheckBody>,
    /// Send to every endpoint when none is healthy.
    fail_open: Option<bool>,
    /// Passive health for the stacks.
    outlier_detection: Option<OutlierDetectionBody>,
    /// Slow-start window for new endpoints, a duration such as `30s`.
    slow_start: Option<String>,
    /// Shadow traffic: copies of a share of the live requests go to one stack as well.
    shadow: Option<ShadowBody>,
    /// The stacks; each needs at least one endpoint or a DNS source.
    #[schema(required = false)]
    stacks: Vec<StackBody>,
}

/// `POST /v1/services/{service}/stacks`: a stack, as in `[[services.stacks]]`. It needs at
/// least one endpoint or a DNS source (422 `no_endpoints` otherwise).
#[derive(ToSchema)]
#[schema(example = json!({"name": "green", "version": "v1.4", "endpoints": ["127.0.0.1:9003"], "weight": 0}))]
pub(crate) struct StackBody {
    /// Stack name.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// Version label: at most 128 printable characters.
    #[schema(required = false, max_length = 128)]
    version: String,
    /// Weight, an integer 0..=10000 (default 0); as everywhere in the API, a number with a
    /// zero fraction such as `100.0` counts as the integer it equals.
    #[schema(required = false, minimum = 0, maximum = 10000)]
    weight: i64,
    /// `host:port` or `https://host:port`; not together with `dns`.
    #[schema(required = false)]
    endpoints: Vec<String>,
    /// Endpoints discovered through DNS instead of `endpoints`.
    dns: Option<DnsBody>,
    /// Health check overriding the service's.
    health_check: Option<HealthCheckBody>,
    /// Passive health overriding the service's.
    outlier_detection: Option<OutlierDetectionBody>,
    /// Slow-start window overriding the service's, a duration such as `30s`.
    slow_start: Option<String>,
    /// Upstream TLS towards `https://` endpoints.
    tls: Option<UpstreamTlsBody>,
}

/// A DNS source: `{"name", "port"}` (A/AAAA) or `{"srv"}`.
#[derive(ToSchema)]
pub(crate) struct DnsBody {
    /// A/AAAA name; needs `port`.
    name: Option<String>,
    /// Port used with `name`.
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<i64>,
    /// SRV name giving targets, ports and weights; alone.
    srv: Option<String>,
}

/// An active health check, as in the configuration file.
#[derive(ToSchema)]
pub(crate) struct HealthCheckBody {
    /// `http` (default), `tcp` (connect only) or `none` (no check; endpoints shown
    /// `unchecked`).
    #[schema(pattern = "^(http|tcp|none)$")]
    kind: Option<String>,
    /// Request path, e.g. `/health`.
    path: Option<String>,
    /// Full request line instead of `path` and `method`, e.g. `GET /health HTTP/1.0`.
    request_line: Option<String>,
    /// Port to check instead of the traffic port.
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<i64>,
    /// HTTP method (default `GET`).
    method: Option<String>,
    /// Host header to send.
    host: Option<String>,
    /// Expected status range, e.g. `200-399`.
    expect_status: Option<String>,
    /// Time between checks, a duration such as `2s`.
    interval: Option<String>,
    /// Time after which a check counts as failed.
    timeout: Option<String>,
    /// Consecutive successes to become healthy.
    #[schema(minimum = 1)]
    healthy_threshold: Option<i64>,
    /// Consecutive failures to become unhealthy.
    #[schema(minimum = 1)]
    unhealthy_threshold: Option<i64>,
    /// Initial state of a new endpoint: `unknown` (default) or `healthy`.
    initial: Option<String>,
}

/// Passive health (outlier detection).
#[derive(ToSchema)]
pub(crate) struct OutlierDetectionBody {
    /// Whether passive health ejects endpoints (default true).
    enabled: Option<bool>,
    /// Consecutive connect failures, timeouts or 5xx responses that eject an endpoint.
    #[schema(minimum = 1)]
    consecutive_failures: Option<i64>,
    /// Ejection time of a first ejection, a duration; repeated ejections multiply it.
    base_ejection: Option<String>,
    /// Longest ejection time, a duration.
    max_ejection: Option<String>,
    /// Largest share of a stack's endpoints ejected at once, in percent.
    #[schema(minimum = 0, maximum = 100)]
    max_ejection_percent: Option<i64>,
}

/// Upstream TLS towards `https://` endpoints.
#[derive(ToSchema)]
pub(crate) struct UpstreamTlsBody {
    /// PEM bundle of trusted CAs (replaces the default roots).
    ca: Option<String>,
    /// Client certificate for mutual TLS.
    client_cert: Option<CertPairBody>,
    /// Server name to send and verify instead of the endpoint's host.
    sni: Option<String>,
    /// Accept any certificate. Dangerous.
    insecure_skip_verify: Option<bool>,
}

/// A certificate and its key, as paths.
#[derive(ToSchema)]
pub(crate) struct CertPairBody {
    /// Path to the PEM certificate chain.
    cert: String,
    /// Path to the PEM private key.
    key: String,
}

/// Per-service timeouts, durations such as `5s`.
#[derive(ToSchema)]
pub(crate) struct ServiceTimeoutsBody {
    /// Upstream TCP connect.
    connect: Option<String>,
    /// Upstream response headers.
    upstream_response: Option<String>,
    /// The longest gap between two reads of a request body (408 on expiry).
    request_body: Option<String>,
}

/// Shadow traffic: a copy of `percent` of the live requests (methods listed, bodies up to
/// `max_body`) goes to `stack` as well; its answers are discarded.
#[derive(ToSchema)]
pub(crate) struct ShadowBody {
    /// The stack receiving the copies: one of the service's stacks.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    stack: String,
    /// Share of the live requests copied.
    #[schema(minimum = 1, maximum = 100)]
    percent: i64,
    /// Methods mirrored (default `["GET", "HEAD", "OPTIONS"]`), HTTP tokens.
    #[schema(min_items = 1)]
    methods: Option<Vec<String>>,
    /// Largest request body copied, a size such as `64KiB` (the default), at most `1MiB`.
    max_body: Option<String>,
}

/// Sticky stack selection: exactly one of `cookie` and `header`.
#[derive(ToSchema)]
pub(crate) struct StickyBody {
    /// Cookie whose value keeps a user on one stack.
    cookie: Option<String>,
    /// Header whose value keeps a user on one stack.
    header: Option<String>,
}
