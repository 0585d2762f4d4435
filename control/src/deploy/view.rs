//! What the API answers about deployments, built from records.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::analysis::AnalysisWindow;
use super::plan::{Pause, validate};
use super::record::{CheckResult, DeploymentRecord, LogLine, Phase, Standby};

/// `GET /v1/services/{service}/deployments/{id}`: one deployment in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentView {
    /// Id, increasing per service.
    pub id: u64,
    /// The service.
    pub service: String,
    /// The new stack.
    pub stack: String,
    /// Its version.
    pub version: String,
    /// `provisioning`, `waiting_healthy`, `pre_integration`, `shadowing`, `shifting`,
    /// `post_integration`,
    /// `retiring`, `succeeded`, `rolling_back`, `rolled_back` or `failed`.
    pub phase: String,
    /// The phase with the step while shifting, e.g. `shifting(2/4)`.
    pub label: String,
    /// The current step, while shifting or after.
    pub step: Option<StepView>,
    /// Held by an operator.
    pub paused: bool,
    /// Weights the deployment last set, by stack.
    pub weights: BTreeMap<String, u32>,
    /// The new stack's endpoints, once provisioned.
    pub endpoints: Vec<String>,
    /// Processes the source started.
    pub replicas: Vec<UnitView>,
    /// Check outcomes, in order.
    pub checks: Vec<CheckResult>,
    /// Why it rolled back.
    pub reason: Option<String>,
    /// What was left behind.
    pub left: Option<String>,
    /// The token that started it.
    pub created_by: String,
    /// When it started (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// The latest log lines.
    pub log: Vec<LogLine>,
    /// The approval gate the deployment waits at, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateView>,
    /// How deliveries to each webhook went.
    pub webhooks: Vec<super::WebhookStatus>,
    /// Judged canary analysis windows, oldest first (the latest 100).
    pub analysis: Vec<AnalysisWindow>,
    /// After success: the previous stacks kept at weight 0 until they are retired;
    /// `POST /v1/services/{service}/rollback` switches back to them meanwhile.
    pub standby: Option<Standby>,
    /// The deployment that undid this one.
    pub undone_by: Option<u64>,
    /// The deployment this one undid.
    pub undo_of: Option<u64>,
}

/// An approval gate being waited at.
#[derive(Debug, Serialize, ToSchema)]
pub struct GateView {
    /// `shift`, `step:N` or `promote`.
    pub before: String,
    /// The URL asked.
    pub url: String,
    /// How long it may take to answer.
    pub timeout: String,
}

/// A canary step.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    /// 1-based.
    pub index: usize,
    /// Number of steps.
    pub of: usize,
    /// Percent of the traffic on the new stack.
    pub percent: u32,
    /// The pause after it: a duration, `manual`, or `null`.
    pub pause: Option<String>,
    /// `timer` or `promote` while the step waits at its pause, `analysis` while it waits for
    /// a passing analysis window.
    pub waiting: Option<String>,
}

/// A started process.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnitView {
    /// `127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// Its container's name, for a container replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// A deployment in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentSummary {
    /// Id.
    pub id: u64,
    /// The new stack.
    pub stack: String,
    /// Its version.
    pub version: String,
    /// The phase.
    pub phase: String,
    /// The phase with the step while shifting.
    pub label: String,
    /// Weights the deployment last set.
    pub weights: BTreeMap<String, u32>,
    /// Why it rolled back.
    pub reason: Option<String>,
    /// The token that started it.
    pub created_by: String,
    /// When it started.
    pub created_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// The latest judged analysis window.
    pub analysis: Option<AnalysisWindow>,
    /// After success: the previous stacks kept at weight 0 until they are retired.
    pub standby: Option<Standby>,
    /// The deployment this one undid.
    pub undo_of: Option<u64>,
}

/// `GET /v1/services/{service}/deployments`
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentList {
    /// Newest first.
    pub deployments: Vec<DeploymentSummary>,
}

fn steps(rec: &DeploymentRecord) -> Vec<super::plan::Step> {
    validate(&rec.spec).map(|p| p.steps).unwrap_or_default()
}

fn gate(rec: &DeploymentRecord) -> Option<GateView> {
    if rec.waiting != super::Waiting::Gate || rec.phase.is_terminal() {
        return None;
    }
    let plan = validate(&rec.spec).ok()?;
    super::gate::before_next(&plan, rec.phase, rec.step).map(|g| GateView {
        before: g.label.clone(),
        url: g.url.to_string(),
        timeout: switchyard_config::format_duration(g.timeout),
    })
}

impl DeploymentView {
    /// The full view of `rec`.
    pub fn of(rec: &DeploymentRecord) -> Self {
        let steps = steps(rec);
        let shifted = matches!(
            rec.phase,
            Phase::Shifting | Phase::PostIntegration | Phase::Retiring | Phase::Succeeded
        ) || !rec.weights.is_empty();
        let step = steps.get(rec.step).filter(|_| shifted).map(|s| StepView {
            index: rec.step + 1,
            of: steps.len(),
            percent: s.percent,
            pause: match s.pause {
                Pause::None => None,
                Pause::Manual => Some("manual".to_owned()),
                Pause::For(d) => Some(switchyard_config::format_duration(d)),
            },
            waiting: match (rec.phase, rec.waiting) {
                (Phase::Shifting, super::Waiting::Timer) => Some("timer".to_owned()),
                (Phase::Shifting, super::Waiting::Promote) => Some("promote".to_owned()),
                (Phase::Shifting, super::Waiting::Analysis) => Some("analysis".to_owned()),
                _ => None,
            },
        });
        Self {
            id: rec.id,
            service: rec.service.clone(),
            stack: rec.spec.stack.clone(),
            version: rec.spec.version.clone(),
            phase: rec.phase.as_str().to_owned(),
            label: rec.phase_label(steps.len()),
            step,
            paused: rec.paused,
            weights: rec.weights.clone(),
            endpoints: rec
                .stack
                .as_ref()
                .map(|s| s.endpoints.clone())
                .unwrap_or_default(),
            replicas: rec
                .units
                .iter()
                .map(|u| UnitView {
                    endpoint: u.endpoint.clone(),
                    pid: u.pid,
                    container: u.container.clone(),
                })
                .collect(),
            checks: rec.checks.clone(),
            reason: rec.reason.clone(),
            left: rec.left.clone(),
            created_by: rec.created_by.clone(),
            created_at: rec.created_at.clone(),
            updated_at: rec.updated_at.clone(),
            finished_at: rec.finished_at.clone(),
            log: rec.log.clone(),
            gate: gate(rec),
            webhooks: rec.webhooks.clone(),
            analysis: rec.analysis.windows.clone(),
            standby: rec.standby.clone(),
            undone_by: rec.undone_by,
            undo_of: rec.undo_of,
        }
    }
}

impl DeploymentSummary {
    /// The list entry of `rec`.
    pub fn of(rec: &DeploymentRecord) -> Self {
        Self {
            id: rec.id,
            stack: rec.spec.stack.clone(),
            version: rec.spec.version.clone(),
            phase: rec.phase.as_str().to_owned(),
            label: rec.phase_label(steps(rec).len()),
            weights: rec.weights.clone(),
            reason: rec.reason.clone(),
            created_by: rec.created_by.clone(),
            created_at: rec.created_at.clone(),
            finished_at: rec.finished_at.clone(),
            analysis: rec.analysis.windows.last().cloned(),
            standby: rec.standby.clone(),
            undo_of: rec.undo_of,
        }
    }
}
