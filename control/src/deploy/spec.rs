//! The body of `POST /v1/services/{service}/deployments`, as given.
//!
//! The body is kept as given in the persisted record (so a restart re-validates it the same
//! way); `plan` turns it into what the state machine follows.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use switchyard_config::raw;
use utoipa::ToSchema;

/// A deployment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "stack": "green", "version": "v1.4",
    "source": {"process": {"command": ["./auth-server", "--port", "{port}"], "replicas": 2}},
    "strategy": {"canary": {"steps": [{"weight": 5, "pause": "60s"}, {"weight": 50, "pause": "manual"}, {"weight": 100}]}},
    "pre_integration": [{"http": {"path": "/health", "expect_status": 200}}],
    "post_integration": [{"http": {"path": "/", "expect_body_contains": "v1.4", "repeat": 20}}],
    "retire_previous": {"after": "0s", "drain_timeout": "30s"}
}))]
pub struct DeploymentSpec {
    /// Name of the new stack; must not exist in the service yet.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    pub stack: String,
    /// Version label of the new stack: not blank, at most 128 printable characters.
    #[schema(pattern = "\\S", max_length = 128)]
    pub version: String,
    /// Where the new stack's endpoints come from.
    pub source: SourceSpec,
    /// How traffic moves: `{"blue_green": {}}` (default), `{"canary": {"steps": [...]}}`, or
    /// `{"rolling": {...}}` (then `stack` names the live process or container stack to update
    /// in place).
    #[serde(default)]
    pub strategy: StrategySpec,
    /// Checks against the new stack's endpoints directly, before any user request reaches it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_integration: Vec<CheckSpec>,
    /// Checks through the proxy's public listener, pinned to the new stack, after the shift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_integration: Vec<CheckSpec>,
    /// When and how the previous stacks are removed.
    #[serde(default)]
    pub retire_previous: RetireSpec,
    /// Time for every endpoint of the new stack to become healthy (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_timeout: Option<String>,
    /// Active health check of the new stack, as in the configuration file (overrides the
    /// service's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::body::HealthCheckBody>)]
    pub health_check: Option<raw::HealthCheck>,
    /// Webhooks told of this deployment's transitions, besides `[[control.webhooks]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::openapi::body::WebhookBody>)]
    pub webhooks: Vec<raw::Webhook>,
    /// Approval gates: points where the deployment waits for a URL to answer 200.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<super::gate::GateSpec>,
}

/// The new stack's source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    /// Endpoints started elsewhere: `host:port` or `https://host:port`.
    Endpoints(Vec<String>),
    /// Endpoints discovered through DNS: `{"name": ..., "port": ...}` or `{"srv": ...}`.
    #[schema(value_type = crate::openapi::body::DnsBody)]
    Dns(raw::Dns),
    /// Replicas of a command that Switchyard starts on free loopback ports.
    Process(ProcessSpec),
    /// Containers of an image that Switchyard starts through the Docker Engine.
    Container(ContainerSpec),
}

/// A container source: replicas of an image, run by the Docker Engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"image": "auth:v1.4", "replicas": 2, "port": 8080}))]
pub struct ContainerSpec {
    /// The image, e.g. `auth:v1.4`.
    pub image: String,
    /// How many replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub replicas: Option<u32>,
    /// The port the container serves on, inside the container.
    #[schema(minimum = 1, maximum = 65535)]
    pub port: u16,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Arguments replacing the image's `CMD` (`{port}` is replaced by `port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// When the image is pulled: `never`, `if_missing` (default) or `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullPolicy>,
    /// The network the containers join (default the Engine's `bridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Extra container labels (`switchyard.*` is reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Memory and CPU limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesSpec>,
    /// Who decides a replica is healthy: `switchyard` (default: the port opens, then the
    /// stack's health check) or `docker` (the image's `HEALTHCHECK`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthSource>,
    /// `true` (default): `port` is published on 127.0.0.1 and the endpoints are those
    /// addresses; `false`: the endpoints are the containers' own addresses on `network`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<bool>,
    /// Time for a replica to open its port (and pass its `HEALTHCHECK`) (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<String>,
}

/// When a container source pulls its image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullPolicy {
    /// Never: the image must be there.
    Never,
    /// Only when the Engine does not have it.
    #[default]
    IfMissing,
    /// Before every deployment.
    Always,
}

impl PullPolicy {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Never => "never",
            Self::IfMissing => "if_missing",
            Self::Always => "always",
        }
    }
}

/// Who decides that a container replica is healthy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthSource {
    /// The port opens, then the stack's own health check.
    #[default]
    Switchyard,
    /// The image's `HEALTHCHECK`, as the Engine reports it.
    Docker,
}

/// Resource limits of each container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSpec {
    /// Memory limit: bytes, or a number with `k`, `m` or `g`, e.g. `256m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(exclusive_minimum = 0.0, maximum = 1024.0)]
    pub cpus: Option<f64>,
}

/// Bytes of a memory limit such as `256m`, `1g`, `512k` or `1048576`.
pub(crate) fn parse_memory(text: &str) -> Result<i64, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'k')) => (&t[..i], 1i64 << 10),
        Some((i, 'm')) => (&t[..i], 1 << 20),
        Some((i, 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: i64 = digits.parse().map_err(|_| {
        format!("{text:?}: expected bytes or a number with k, m or g, e.g. \"256m\"")
    })?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    // The Engine refuses less than 6 MiB.
    if bytes < 6 << 20 {
        return Err(format!("{text:?} is below the Engine's minimum of 6m"));
    }
    Ok(bytes)
}

/// A process source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    /// Program and arguments; `{port}` is replaced by the replica's port.
    pub command: Vec<String>,
    /// How many replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 64)]
    pub replicas: Option<u32>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (relative paths resolve against the configuration file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Time for a replica to accept connections (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<String>,
}

/// How traffic moves to the new stack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategySpec {
    /// New stack at weight 0, then one atomic cutover to 100 after the checks.
    BlueGreen {
        /// Before the cutover: a copy of a share of the live requests goes to the new stack
        /// too (its answers discarded), judged by `analysis`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shadow: Option<ShadowStepSpec>,
        /// Judges the shadow step, as a canary's analysis judges its steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<AnalysisSpec>,
    },
    /// Steps of weights with pauses.
    Canary {
        /// The steps; weights rise and the last is 100.
        steps: Vec<StepSpec>,
        /// Judge the new stack from the proxy's own figures during the steps and their pauses.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        analysis: Option<AnalysisSpec>,
    },
    /// The live process or container stack's replicas replaced batch by batch, inside the
    /// same stack.
    Rolling(super::rolling::RollingSpec),
}

impl Default for StrategySpec {
    fn default() -> Self {
        Self::BlueGreen {
            shadow: None,
            analysis: None,
        }
    }
}

/// One canary step: a weight (and a pause), or, first of all, a shadow step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Percent of the traffic on the new stack, 1..=100, above the previous step's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub weight: Option<i64>,
    /// After the step: a duration such as `60s`, or `manual` to wait for a promote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// A shadow step instead of a weight (allowed as the first step only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStepSpec>,
}

/// Shadow traffic before any user request reaches the new stack: a copy of `percent` of the
/// live requests (of `methods`, with bodies up to `max_body`) goes to the new stack as well for
/// `duration`; its answers are discarded, clients only ever get the live stack's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShadowStepSpec {
    /// Share of the live requests copied, 1..=100.
    #[schema(minimum = 1, maximum = 100)]
    pub percent: i64,
    /// How long, e.g. `30s`.
    pub duration: String,
    /// Methods mirrored (default `["GET", "HEAD", "OPTIONS"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Largest request body copied, e.g. `64KiB` (the default; at most `1MiB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
}

/// Canary analysis: every `interval` while shifting, the new stack's error rate and p99 over
/// that interval are judged against thresholds and against the previous stacks' over the same
/// interval (the baseline). A step advances once its pause is over and a window at its weights
/// passed; too few requests is inconclusive, never a pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"interval": "10s", "min_requests": 50, "max_error_rate": 0.01, "max_p99": "300ms",
    "baseline": {"max_error_rate_increase": 0.005, "max_p99_ratio": 1.5},
    "failure_limit": 1, "max_inconclusive": 3, "on_inconclusive": "fail", "dry_run": false}))]
pub struct AnalysisSpec {
    /// Length of each window (default `10s`, at least `100ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Completed requests of the new stack a window needs to be judged (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub min_requests: Option<u64>,
    /// Highest error rate (5xx answers and proxy errors over completed requests), 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub max_error_rate: Option<f64>,
    /// Highest p99 latency, e.g. `300ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99: Option<String>,
    /// Bounds relative to the previous stacks over the same window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineSpec>,
    /// Failing windows that roll back (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub failure_limit: Option<u32>,
    /// Inconclusive windows in a row before `on_inconclusive` decides (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_inconclusive: Option<u32>,
    /// `fail` (default: roll back) or `pass` after `max_inconclusive` inconclusive windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(fail|pass)$")]
    pub on_inconclusive: Option<String>,
    /// Judge, log and record every window but never hold a step or roll back.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// Analysis bounds relative to the previous stacks (judged only when they had `min_requests`
/// in the window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineSpec {
    /// Most the new stack's error rate may exceed the baseline's, 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub max_error_rate_increase: Option<f64>,
    /// Most the new stack's p99 may be as a multiple of the baseline's (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_p99_ratio: Option<f64>,
}

/// An integration check: exactly one of `http` and `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// An HTTP request and what its answer must be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheckSpec>,
    /// A program and arguments; exit status 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Timeout of a command check (default `60s`); http checks take theirs inside `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// An HTTP check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheckSpec {
    /// Method (default `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Expected status (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 599)]
    pub expect_status: Option<u16>,
    /// A substring the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_body_contains: Option<String>,
    /// A JSON pointer into the body and the value it must equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_json: Option<JsonExpectation>,
    /// Per-request timeout (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How many times to send it (default 1); every answer must pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10000)]
    pub repeat: Option<u32>,
}

/// JSON pointer equality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonExpectation {
    /// RFC 6901 pointer, e.g. `/version`.
    pub pointer: String,
    /// The value found there must equal this: any JSON value.
    #[schema(value_type = Value)]
    pub equals: serde_json::Value,
}

/// When and how the previous stacks are retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetireSpec {
    /// How long the previous stacks stay at weight 0 after a success, with their replicas
    /// running, so `POST /v1/services/{service}/rollback` switches back at once (default
    /// `10m`; `0s` retires them as part of the deployment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Time between SIGTERM and SIGKILL for their processes, and for their requests in flight
    /// to finish (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<String>,
}
