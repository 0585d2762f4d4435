//! Approval gates: a deployment waits at a point of its plan until a URL approves (200) or
//! rejects (403) it; a rejection or a timeout rolls back.
//!
//! A gate stands `before` a point: `shift` (the first weight change), `step:N` (canary step N,
//! 1-based; `step:1` is `shift`) or `promote` (after the last step and the post-integration
//! checks, before the previous stacks are retired: the point of no return). While the
//! deployment waits, the gate's URL is POSTed the deployment as JSON every `interval`
//! (default 2s): 200 approves, 403 rejects (its body, up to 512 bytes, becomes the rollback
//! reason), anything else (another status, no answer) means "not yet". Operators can still
//! `promote` (passes the gate) or `abort` while it waits. [`before_next`] (pure) says which
//! gate guards the machine's next advance; [`poll`] is the waiting, run by the driver as
//! background work.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use switchyard_config::{HttpUrl, MAX_PERIOD, MAX_TIMEOUT, parse_duration_at_most};
use tokio::time::{Instant, sleep};
use utoipa::ToSchema;

use super::outbound::send;
use super::plan::Plan;
use super::record::Phase;

/// Default time a gate may take to answer 200 or 403.
const TIMEOUT: Duration = Duration::from_secs(600);
/// Default time between two requests to a gate.
const INTERVAL: Duration = Duration::from_secs(2);
/// Time one request to a gate may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of a rejection's body kept in the reason.
const REASON_BYTES: usize = 512;

/// A gate as requested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Where the deployment waits: `shift`, `step:N` (1-based) or `promote`.
    #[schema(pattern = "^(shift|promote|step:[1-9][0-9]{0,3})$")]
    pub before: String,
    /// `http://host:port/path` answering 200 (approve) or 403 (reject).
    pub url: String,
    /// How long to wait for an answer before rolling back (default `10m`, at most `24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time between two requests to the URL (default `2s`, at most `1h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// Where a gate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// Before shifting step `n` (0-based) is applied.
    Step(usize),
    /// Before the previous stacks are retired.
    Promote,
}

/// A validated gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gate {
    pub(crate) before: Point,
    pub(crate) label: String,
    pub(crate) url: HttpUrl,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
}

/// Checks the gates of a request against its `steps`; every problem names its field.
pub(crate) fn validate(specs: &[GateSpec], steps: usize, problems: &mut Vec<String>) -> Vec<Gate> {
    let mut out: Vec<Gate> = Vec::new();
    for (i, g) in specs.iter().enumerate() {
        let at = format!("gates[{i}]");
        let before = match g.before.as_str() {
            "shift" => Some(Point::Step(0)),
            "promote" => Some(Point::Promote),
            other => match other.strip_prefix("step:").map(str::parse::<usize>) {
                Some(Ok(n)) if (1..=steps).contains(&n) => Some(Point::Step(n - 1)),
                Some(_) => {
                    problems.push(format!(
                        "{at}.before: {other:?}: the strategy has steps 1 to {steps}"
                    ));
                    None
                }
                None => {
                    problems.push(format!(
                        "{at}.before: {other:?}: expected \"shift\", \"step:N\" or \"promote\""
                    ));
                    None
                }
            },
        };
        let url = HttpUrl::parse(&g.url)
            .map_err(|e| problems.push(format!("{at}.url: {e}")))
            .ok();
        let timeout = match g
            .timeout
            .as_deref()
            .map(|t| parse_duration_at_most(t, MAX_PERIOD))
        {
            None => TIMEOUT,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => {
                problems.push(format!("{at}.timeout: expected a duration above 0"));
                TIMEOUT
            }
            Some(Err(e)) => {
                problems.push(format!("{at}.timeout: {e}"));
                TIMEOUT
            }
        };
        let interval = match g
            .interval
            .as_deref()
            .map(|t| parse_duration_at_most(t, MAX_TIMEOUT))
        {
            None => INTERVAL,
            Some(Ok(d)) if d >= Duration::from_millis(10) => d,
            Some(Ok(_)) => {
                problems.push(format!("{at}.interval: expected at least 10ms"));
                INTERVAL
            }
            Some(Err(e)) => {
                problems.push(format!("{at}.interval: {e}"));
                INTERVAL
            }
        };
        let (Some(before), Some(url)) = (before, url) else {
            continue;
        };
        if out.iter().any(|o| o.before == before) {
            problems.push(format!(
                "{at}.before: another gate stands at {:?} already",
                g.before
            ));
            continue;
        }
        out.push(Gate {
            before,
            label: match before {
                Point::Step(0) => "shift".to_owned(),
                Point::Step(n) => format!("step:{}", n + 1),
                Point::Promote => "promote".to_owned(),
            },
            url,
            timeout,
            interval,
        });
    }
    out
}

/// The gate guarding the machine's next advance from `phase` at `step`, if any.
pub(crate) fn before_next(plan: &Plan, phase: Phase, step: usize) -> Option<&Gate> {
    let steps = plan.steps.len();
    let point = match phase {
        Phase::WaitingHealthy if plan.pre.is_empty() => Point::Step(0),
        Phase::PreIntegration => Point::Step(0),
        Phase::Shifting if step + 1 < steps => Point::Step(step + 1),
        Phase::Shifting if plan.post.is_empty() => Point::Promote,
        Phase::PostIntegration => Point::Promote,
        _ => return None,
    };
    plan.gates.iter().find(|g| g.before == point)
}

/// How a gate answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200.
    Approved,
    /// 403, with the body.
    Rejected(String),
    /// Neither within the gate's timeout; the last thing seen.
    TimedOut(String),
}

/// POSTs `body` to the gate's URL every interval until it answers 200 or 403, or its
/// timeout passes.
pub(crate) async fn poll(gate: Gate, body: Bytes) -> Answer {
    let deadline = Instant::now() + gate.timeout;
    loop {
        let req = hyper::Request::post(gate.url.path())
            .header(hyper::header::HOST, gate.url.authority())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, "switchyard-gate")
            .header("x-switchyard-gate", gate.label.as_str())
            .body(Full::new(body.clone()));
        let left = deadline.saturating_duration_since(Instant::now());
        let last = match req {
            Err(e) => format!("cannot build the request: {e}"),
            Ok(req) => {
                match send(
                    gate.url.host(),
                    gate.url.port(),
                    req,
                    REQUEST_TIMEOUT.min(left),
                )
                .await
                {
                    Ok((200, _)) => return Answer::Approved,
                    Ok((403, body)) => {
                        let text = String::from_utf8_lossy(&body[..body.len().min(REASON_BYTES)])
                            .trim()
                            .to_owned();
                        return Answer::Rejected(text);
                    }
                    Ok((code, _)) => format!("status {code}"),
                    Err(e) => e,
                }
            }
        };
        if Instant::now() + gate.interval >= deadline {
            sleep(deadline.saturating_duration_since(Instant::now())).await;
            return Answer::TimedOut(last);
        }
        sleep(gate.interval).await;
    }
}
