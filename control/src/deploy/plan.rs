//! Validation of a deployment request into the [`Plan`] the state machine follows.
//!
//! Durations are parsed, canary steps checked (weights rise to 100), checks well-formed.
//! Validation reports every problem, each naming its field, and has no effect. [`split`]
//! computes a step's weights from the weights before the deployment.

use std::collections::BTreeMap;
use std::time::Duration;

use std::path::Path;

use switchyard_config::{
    FieldPath, MAX_PERIOD, MAX_TIMEOUT, Name, Segment, parse_duration_at_most, raw, stack_from_raw,
};

use super::analysis::{self, Analysis};
use super::shadow::{self, ShadowStep};
use super::source::Target;
use super::spec::{
    CheckSpec, ContainerSpec, DeploymentSpec, HttpCheckSpec, SourceSpec, StrategySpec, parse_memory,
};
use crate::change::routable;
use crate::error::ApiError;

/// Stands for a process replica's endpoint, whose port is only known once it starts.
const REPLICA_PLACEHOLDER: &str = "127.0.0.1:1";

/// Default time for every endpoint of the new stack to become healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time for a process or container replica to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default per-request timeout of an http check.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of a command check.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time the previous stacks stay at weight 0 after a success (a rollback switches back
/// to them meanwhile).
const RETIRE_AFTER: Duration = Duration::from_secs(600);
/// Default drain time of a retired stack's processes.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Most replicas one process source may start.
const MAX_REPLICAS: u32 = 64;
/// Most repetitions of one http check.
const MAX_REPEAT: u32 = 10_000;

/// A pause after a canary step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pause {
    /// Go on at once.
    None,
    /// Wait this long.
    For(Duration),
    /// Wait for a promote.
    Manual,
}

/// One validated step: percent on the new stack and the pause after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) percent: u32,
    pub(crate) pause: Pause,
}

/// A validated check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    Http {
        method: http::Method,
        path: String,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        body: String,
        status: u16,
        contains: Option<String>,
        json: Option<(String, serde_json::Value)>,
        timeout: Duration,
        repeat: u32,
    },
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
}

impl Check {
    /// A short name for results and logs.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Http { method, path, .. } => format!("http {method} {path}"),
            Self::Command { argv, .. } => format!("command {}", argv.join(" ")),
        }
    }
}

/// A validated deployment: what the state machine and the driver follow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) stack: String,
    pub(crate) steps: Vec<Step>,
    pub(crate) pre: Vec<Check>,
    pub(crate) post: Vec<Check>,
    pub(crate) retire_after: Duration,
    pub(crate) drain: Duration,
    pub(crate) healthy_timeout: Duration,
    pub(crate) start_timeout: Duration,
    /// Canary analysis, when asked for.
    pub(crate) analysis: Option<Analysis>,
    /// The shadow step before the first weight step, when asked for.
    pub(crate) shadow: Option<ShadowStep>,
    /// Whether the source starts processes (they do not survive a restart of Switchyard
    /// supervised, so an interrupted deployment rolls back).
    pub(crate) process: bool,
    /// The request's own webhooks (those of the configuration are added by the driver).
    pub(crate) webhooks: Vec<switchyard_config::WebhookSpec>,
    /// Approval gates.
    pub(crate) gates: Vec<super::gate::Gate>,
    /// A rolling update: the batches (one step each).
    pub(crate) rolling: Option<super::rolling::Rolling>,
}

fn duration(
    field: &str,
    value: Option<&String>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    // A timeout is at most an hour, any other wait (retirement) at most a day: the bound keeps
    // every deadline computed from the clock in range, and the error names it.
    let max = if field.ends_with("timeout") {
        MAX_TIMEOUT
    } else {
        MAX_PERIOD
    };
    match value.map(|v| parse_duration_at_most(v, max)) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("{field}: {e}"));
            default
        }
    }
}

/// Checks `spec` in full and builds its plan; every problem names its field.
pub(crate) fn validate(spec: &DeploymentSpec) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    if let Err(e) = Name::new(&spec.stack) {
        problems.push(format!("stack: {e}"));
    }
    if spec.version.trim().is_empty() {
        problems.push("version: expected a version label such as \"v1.4\"".to_owned());
    }
    let mut start_timeout = START_TIMEOUT;
    match &spec.source {
        // Checked with the stack they become, by `stack`.
        SourceSpec::Endpoints(_) | SourceSpec::Dns(_) => {}
        SourceSpec::Process(p) => {
            if p.command.first().is_none_or(|c| c.trim().is_empty()) {
                problems.push("source.process.command: expected a program and its arguments, e.g. [\"./server\", \"--port\", \"{port}\"]".to_owned());
            }
            let replicas = p.replicas.unwrap_or(1);
            if !(1..=MAX_REPLICAS).contains(&replicas) {
                problems.push(format!(
                    "source.process.replicas: {replicas} out of range: expected 1 to {MAX_REPLICAS}"
                ));
            }
            start_timeout = duration(
                "source.process.start_timeout",
                p.start_timeout.as_ref(),
                START_TIMEOUT,
                &mut problems,
            );
        }
        SourceSpec::Container(c) => {
            container(c, &mut problems);
            start_timeout = duration(
                "source.container.start_timeout",
                c.start_timeout.as_ref(),
                START_TIMEOUT,
                &mut problems,
            );
        }
    }
    let mut rolling = None;
    let steps = match &spec.strategy {
        StrategySpec::Rolling(r) => {
            let replicas = match &spec.source {
                SourceSpec::Process(p) => Some(p.replicas.unwrap_or(1)),
                SourceSpec::Container(c) => Some(c.replicas.unwrap_or(1)),
                _ => None,
            };
            match super::rolling::validate(r, replicas, &mut problems) {
                Some((r, steps)) => {
                    rolling = Some(r);
                    steps
                }
                None => Vec::new(),
            }
        }
        other => steps(other, &mut problems),
    };
    let analysis = match &spec.strategy {
        StrategySpec::Canary {
            analysis: Some(a), ..
        } => analysis::validate("strategy.canary.analysis", a, &mut problems),
        StrategySpec::BlueGreen {
            analysis: Some(a),
            shadow,
        } => {
            if shadow.is_none() {
                problems.push("strategy.blue_green.analysis: judges a shadow step; add \"shadow\" (or use a canary)".to_owned());
            }
            analysis::validate("strategy.blue_green.analysis", a, &mut problems)
        }
        _ => None,
    };
    let shadow = shadow::step(spec, &mut problems);
    let pre = checks("pre_integration", &spec.pre_integration, &mut problems);
    let post = checks("post_integration", &spec.post_integration, &mut problems);
    let retire_after = duration(
        "retire_previous.after",
        spec.retire_previous.after.as_ref(),
        RETIRE_AFTER,
        &mut problems,
    );
    let drain = duration(
        "retire_previous.drain_timeout",
        spec.retire_previous.drain_timeout.as_ref(),
        DRAIN_TIMEOUT,
        &mut problems,
    );
    let healthy_timeout = duration(
        "healthy_timeout",
        spec.healthy_timeout.as_ref(),
        HEALTHY_TIMEOUT,
        &mut problems,
    );
    let mut webhooks = Vec::new();
    for (i, w) in spec.webhooks.iter().enumerate() {
        match switchyard_config::webhook(w) {
            Ok(w) => webhooks.push(w),
            Err(found) => problems.extend(
                found
                    .into_iter()
                    .map(|(field, message)| format!("webhooks[{i}].{field}: {message}")),
            ),
        }
    }
    let gates = super::gate::validate(&spec.gates, steps.len(), &mut problems);
    // A rolling update has nothing left to keep as standby: the old replicas are gone.
    let retire_after = if rolling.is_some() {
        Duration::ZERO
    } else {
        retire_after
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        stack: spec.stack.clone(),
        steps,
        pre,
        post,
        retire_after,
        drain,
        healthy_timeout,
        start_timeout,
        analysis,
        shadow,
        process: matches!(
            spec.source,
            SourceSpec::Process(_) | SourceSpec::Container(_)
        ),
        webhooks,
        gates,
        rolling,
    })
}

/// The fields of a container source.
fn container(c: &ContainerSpec, problems: &mut Vec<String>) {
    let image = c.image.trim();
    if image.is_empty()
        || image
            .chars()
            .any(|ch| ch.is_whitespace() || ch.is_control())
    {
        problems.push(
            "source.container.image: expected an image reference such as \"auth:v1.4\"".to_owned(),
        );
    }
    let replicas = c.replicas.unwrap_or(1);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        problems.push(format!(
            "source.container.replicas: {replicas} out of range: expected 1 to {MAX_REPLICAS}"
        ));
    }
    if c.port == 0 {
        problems.push("source.container.port: expected a port from 1 to 65535".to_owned());
    }
    for k in c.env.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            problems.push(format!(
                "source.container.env: {k:?} is not a variable name"
            ));
        }
    }
    for k in c.labels.keys() {
        if k.is_empty() || k.starts_with("switchyard.") {
            problems.push(format!(
                "source.container.labels: {k:?}: expected a label name outside the reserved switchyard.* prefix"
            ));
        }
    }
    if c.network.as_ref().is_some_and(|n| n.trim().is_empty()) {
        problems.push("source.container.network: expected a network name".to_owned());
    }
    if c.publish == Some(false) && c.network.as_deref().is_none_or(|n| n == "host") {
        problems.push("source.container.publish: false needs a \"network\" whose container addresses Switchyard reaches (not the default bridge or host)".to_owned());
    }
    if let Some(r) = &c.resources {
        if let Some(m) = &r.memory {
            if let Err(e) = parse_memory(m) {
                problems.push(format!("source.container.resources.memory: {e}"));
            }
        }
        if let Some(cpus) = r.cpus {
            if !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0) {
                problems.push(format!(
                    "source.container.resources.cpus: {cpus} out of range: expected more than 0 and at most 1024"
                ));
            }
        }
    }
}

/// The stack the deployment will register, checked now by the rules of every stack write
/// (the configuration's stack validation, then [`routable`]), with the problems named by the
/// deployment's fields: `source.endpoints[i]`, `source.dns.port`, `health_check.interval`.
/// A process source's replicas are stood for by a placeholder endpoint.
pub(crate) fn stack(
    spec: &DeploymentSpec,
    service: &str,
    base_dir: &Path,
) -> Result<raw::Stack, ApiError> {
    let target = Target {
        service,
        deployment: 0,
        spec,
        base_dir: base_dir.to_path_buf(),
        start_timeout: START_TIMEOUT,
    };
    let stack = match &spec.source {
        SourceSpec::Endpoints(eps) => target.stack(eps.clone(), None),
        SourceSpec::Dns(dns) => target.stack(Vec::new(), Some(dns.clone())),
        SourceSpec::Process(_) | SourceSpec::Container(_) => {
            target.stack(vec![REPLICA_PLACEHOLDER.to_owned()], None)
        }
    };
    let checked = stack_from_raw(&stack, base_dir).map_err(|problems| {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", deployment_field(&p.field), p.message))
            .collect();
        ApiError::Invalid(lines.join("; "))
    })?;
    routable(&checked, "source.endpoints")?;
    Ok(stack)
}

/// A field of the registered stack as the deployment request names it.
fn deployment_field(field: &FieldPath) -> String {
    let mut out = FieldPath::root();
    for (i, seg) in field.segments().iter().enumerate() {
        out = match seg {
            Segment::Key(k) if i == 0 && k == "name" => out.key("stack"),
            Segment::Key(k) if i == 0 && (k == "endpoints" || k == "dns") => {
                out.key("source").key(k)
            }
            Segment::Key(k) => out.key(k),
            Segment::Index(n) => out.index(*n),
        };
    }
    out.to_string()
}

fn steps(strategy: &StrategySpec, problems: &mut Vec<String>) -> Vec<Step> {
    let raw = match strategy {
        StrategySpec::BlueGreen { .. } => {
            return vec![Step {
                percent: 100,
                pause: Pause::None,
            }];
        }
        StrategySpec::Canary { steps, .. } => steps,
        StrategySpec::Rolling(_) => return Vec::new(),
    };
    if raw.iter().all(|s| s.shadow.is_some()) {
        problems.push("strategy.canary.steps: expected at least one weight step".to_owned());
        return Vec::new();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut last = 0;
    for (i, s) in raw.iter().enumerate() {
        let field = format!("strategy.canary.steps[{i}]");
        // A shadow step is `shadow::step`'s; here only where it may stand.
        if s.shadow.is_some() {
            if i != 0 || s.weight.is_some() || s.pause.is_some() {
                problems.push(format!(
                    "{field}.shadow: a shadow step stands alone (no weight, no pause) before the first weight step"
                ));
            }
            continue;
        }
        let Some(weight) = s.weight else {
            problems.push(format!("{field}: expected \"weight\" or \"shadow\""));
            continue;
        };
        let percent = match u32::try_from(weight) {
            Ok(w) if (1..=100).contains(&w) && w > last => w,
            _ => {
                problems.push(format!(
                    "{field}.weight: {weight} invalid: expected a percent from 1 to 100, above the previous step's"
                ));
                last.max(1)
            }
        };
        last = percent;
        let pause = match s.pause.as_deref() {
            None => Pause::None,
            Some("manual") => Pause::Manual,
            Some(text) => match parse_duration_at_most(text, MAX_PERIOD) {
                Ok(d) if d.is_zero() => Pause::None,
                Ok(d) => Pause::For(d),
                Err(e) => {
                    problems.push(format!("{field}.pause: {e}, or \"manual\""));
                    Pause::None
                }
            },
        };
        out.push(Step { percent, pause });
    }
    if last != 100 {
        problems.push("strategy.canary.steps: the last step's weight must be 100".to_owned());
    }
    out
}

fn checks(field: &str, specs: &[CheckSpec], problems: &mut Vec<String>) -> Vec<Check> {
    let mut out = Vec::new();
    for (i, c) in specs.iter().enumerate() {
        let at = format!("{field}[{i}]");
        match (&c.http, &c.command) {
            (Some(h), None) => {
                if c.timeout.is_some() {
                    problems.push(format!(
                        "{at}.timeout: an http check takes its timeout inside \"http\""
                    ));
                }
                if let Some(check) = http_check(&format!("{at}.http"), h, problems) {
                    out.push(check);
                }
            }
            (None, Some(argv)) => {
                if argv.first().is_none_or(|a| a.trim().is_empty()) {
                    problems.push(format!(
                        "{at}.command: expected a program and its arguments"
                    ));
                }
                let timeout = duration(
                    &format!("{at}.timeout"),
                    c.timeout.as_ref(),
                    COMMAND_TIMEOUT,
                    problems,
                );
                out.push(Check::Command {
                    argv: argv.clone(),
                    timeout,
                });
            }
            _ => problems.push(format!(
                "{at}: expected exactly one of \"http\" and \"command\""
            )),
        }
    }
    out
}

fn http_check(at: &str, h: &HttpCheckSpec, problems: &mut Vec<String>) -> Option<Check> {
    let before = problems.len();
    let method = http::Method::from_bytes(h.method.as_deref().unwrap_or("GET").as_bytes())
        .map_err(|_| problems.push(format!("{at}.method: not an HTTP method")))
        .ok();
    if !h.path.starts_with('/') || h.path.parse::<http::Uri>().is_err() {
        problems.push(format!("{at}.path: expected a path such as \"/health\""));
    }
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        match (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            (Ok(k), Ok(v)) => headers.push((k, v)),
            _ => problems.push(format!("{at}.headers.{k}: not a valid header")),
        }
    }
    let status = h.expect_status.unwrap_or(200);
    if !(100..=599).contains(&status) {
        problems.push(format!(
            "{at}.expect_status: {status} is not an HTTP status"
        ));
    }
    if let Some(j) = &h.expect_json {
        if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
            problems.push(format!(
                "{at}.expect_json.pointer: expected a JSON pointer such as \"/version\""
            ));
        }
    }
    let repeat = h.repeat.unwrap_or(1);
    if !(1..=MAX_REPEAT).contains(&repeat) {
        problems.push(format!(
            "{at}.repeat: {repeat} out of range: expected 1 to {MAX_REPEAT}"
        ));
    }
    let timeout = duration(
        &format!("{at}.timeout"),
        h.timeout.as_ref(),
        HTTP_TIMEOUT,
        problems,
    );
    if problems.len() != before {
        return None;
    }
    Some(Check::Http {
        method: method?,
        path: h.path.clone(),
        headers,
        body: h.body.clone().unwrap_or_default(),
        status,
        contains: h.expect_body_contains.clone(),
        json: h
            .expect_json
            .as_ref()
            .map(|j| (j.pointer.clone(), j.equals.clone())),
        timeout,
        repeat,
    })
}

/// The weights of a step: `percent` of the traffic on `new`, the rest shared by the stacks
/// that had weight before in proportion to it (largest remainders, so the sum is exact).
/// With one previous live stack the weights are percents (`95`/`5`); with several, parts of
/// 10000. Stacks at 0 before stay at 0.
pub(crate) fn split(
    before: &BTreeMap<String, u32>,
    new: &str,
    percent: u32,
) -> BTreeMap<String, u32> {
    let mut out: BTreeMap<String, u32> = before
        .iter()
        .filter(|(n, _)| n.as_str() != new)
        .map(|(n, w)| (n.clone(), *w))
        .collect();
    let live: Vec<(String, u64)> = out
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(n, w)| (n.clone(), u64::from(*w)))
        .collect();
    if live.is_empty() {
        out.insert(new.to_owned(), percent);
        return out;
    }
    let base: u64 = if live.len() == 1 { 100 } else { 10_000 };
    let new_weight = base * u64::from(percent) / 100;
    let rest = base - new_weight;
    let total: u64 = live.iter().map(|(_, w)| w).sum();
    let mut shares: Vec<(String, u64, u64)> = live
        .iter()
        .map(|(n, w)| (n.clone(), rest * w / total, rest * w % total))
        .collect();
    let assigned: u64 = shares.iter().map(|(_, f, _)| f).sum();
    let mut left = rest - assigned;
    shares.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    for (name, floor, _) in &shares {
        let extra = u64::from(left > 0);
        left -= extra;
        out.insert(
            name.clone(),
            u32::try_from(floor + extra).expect("at most 10000"),
        );
    }
    out.insert(
        new.to_owned(),
        u32::try_from(new_weight).expect("at most 10000"),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_uses_percents_with_one_live_stack() {
        let before = BTreeMap::from([("blue".to_owned(), 100), ("old".to_owned(), 0)]);
        let w = split(&before, "green", 5);
        assert_eq!(w["blue"], 95);
        assert_eq!(w["green"], 5);
        assert_eq!(w["old"], 0);
        let w = split(&before, "green", 100);
        assert_eq!((w["blue"], w["green"]), (0, 100));
    }

    #[test]
    fn split_shares_the_rest_exactly_among_several_stacks() {
        let before = BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)]);
        let w = split(&before, "n", 25);
        assert_eq!(w["n"], 2500);
        assert_eq!(w["a"] + w["b"], 7500);
        assert_eq!(w["a"], 5000);
    }

    #[test]
    fn a_container_source_is_checked_field_by_field() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2",
            "source": {"container": {"image": "auth v1", "replicas": 0, "port": 0,
                "labels": {"switchyard.stack": "x"}, "publish": false,
                "resources": {"memory": "1k", "cpus": 0.0}, "start_timeout": "soon"}}
        }))
        .expect("shape");
        let problems = validate(&spec).expect_err("invalid");
        for field in [
            "source.container.image",
            "source.container.replicas",
            "source.container.port",
            "source.container.labels",
            "source.container.publish",
            "source.container.resources.memory",
            "source.container.resources.cpus",
            "source.container.start_timeout",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(field)),
                "{field} in {problems:?}"
            );
        }
        let ok: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2",
            "source": {"container": {"image": "auth:v1.4", "replicas": 2, "port": 8080,
                "pull": "never", "health": "docker", "resources": {"memory": "256m", "cpus": 0.5}}}
        }))
        .expect("shape");
        let plan = validate(&ok).expect("valid");
        assert!(
            plan.process,
            "a restart while provisioning containers rolls back"
        );
    }

    #[test]
    fn memory_limits_read_bytes_and_suffixes() {
        assert_eq!(parse_memory("256m"), Ok(256 << 20));
        assert_eq!(parse_memory("1G"), Ok(1 << 30));
        assert_eq!(parse_memory("8388608"), Ok(8 << 20));
        assert!(parse_memory("5m").is_err());
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn canary_steps_must_rise_to_100() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]},
            "strategy": {"canary": {"steps": [{"weight": 50, "pause": "1x"}, {"weight": 40}]}},
            "pre_integration": [{"http": {"path": "health"}, "command": ["true"]}]
        }))
        .expect("shape");
        let problems = validate(&spec).expect_err("invalid");
        let all = problems.join("\n");
        assert!(all.contains("steps[0].pause"), "{all}");
        assert!(all.contains("steps[1].weight"), "{all}");
        assert!(all.contains("last step"), "{all}");
        assert!(
            all.contains("pre_integration[0]: expected exactly one"),
            "{all}"
        );
    }

    #[test]
    fn blue_green_is_one_step_to_100() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2",
            "source": {"process": {"command": ["srv", "{port}"], "replicas": 2}},
            "pre_integration": [{"http": {"path": "/health", "repeat": 3}}]
        }))
        .expect("shape");
        let plan = validate(&spec).expect("valid");
        assert_eq!(
            plan.steps,
            vec![Step {
                percent: 100,
                pause: Pause::None
            }]
        );
        assert!(plan.process);
        assert_eq!(plan.pre.len(), 1);
    }

    #[test]
    fn huge_durations_are_refused_naming_the_maximum() {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]},
            "strategy": {"canary": {"steps": [{"weight": 50, "pause": "25h"}, {"weight": 100}]}},
            "healthy_timeout": "99999999999999999h",
            "retire_previous": {"after": "2h"}
        }))
        .expect("shape");
        let problems = validate(&spec).expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                "strategy.canary.steps[0].pause: duration \"25h\" is too long: expected at most 24h, or \"manual\"",
                "healthy_timeout: duration \"99999999999999999h\" is too long: expected at most 1h",
            ]
        );
    }
}
