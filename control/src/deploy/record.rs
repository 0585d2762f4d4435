//! The persisted state of one deployment: the [`DeploymentRecord`] the state machine reads and
//! returns, and the pieces it is made of.
//!
//! A record is the whole truth about a deployment: the request as given, what the service was
//! before it started (so a rollback can put it back exactly), the phase and step, what the
//! source started (processes by PID), check results and a bounded log tail. It is saved as a
//! whole after every transition, before the transition's actions run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use switchyard_config::raw;

use super::analysis::AnalysisRecord;
use super::spec::{DeploymentSpec, ProcessSpec};
use crate::store::{Origin, Promotion};

/// Lines of log kept in a record.
pub(crate) const LOG_TAIL: usize = 400;

/// The phase of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Starting or registering the new stack's endpoints.
    Provisioning,
    /// Waiting for every endpoint of the new stack to be healthy.
    WaitingHealthy,
    /// Checking the new stack directly, before any user request reaches it.
    PreIntegration,
    /// Copies of live requests go to the new stack too; clients get the live stack's answers.
    Shadowing,
    /// Moving traffic to the new stack, step by step.
    Shifting,
    /// Checking the new stack through the public listener.
    PostIntegration,
    /// Removing the previous stacks.
    Retiring,
    /// Done: the new stack is live.
    Succeeded,
    /// Putting the service back as it was before the deployment.
    RollingBack,
    /// Done: the service is as it was before the deployment.
    RolledBack,
    /// The rollback could not complete; `left` says what remains.
    Failed,
}

impl Phase {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::WaitingHealthy => "waiting_healthy",
            Self::PreIntegration => "pre_integration",
            Self::Shadowing => "shadowing",
            Self::Shifting => "shifting",
            Self::PostIntegration => "post_integration",
            Self::Retiring => "retiring",
            Self::Succeeded => "succeeded",
            Self::RollingBack => "rolling_back",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
        }
    }

    /// Whether nothing will happen to the deployment any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::RolledBack | Self::Failed)
    }
}

/// What the current phase or step waits for, besides its own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Waiting {
    /// The phase's own work (a check, a weight change, health).
    #[default]
    Work,
    /// A timed pause.
    Timer,
    /// A manual pause: a `promote`.
    Promote,
    /// After a restart: the new stack to be healthy again before the phase's work resumes.
    Health,
    /// An approval gate: its URL to answer 200 (or an operator's `promote`).
    Gate,
    /// The step's pause is over; a passing analysis window is still missing.
    Analysis,
}

/// The service as it was before the deployment: what a rollback restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Before {
    /// The revision when the deployment started.
    pub revision: u64,
    /// Who owned the service's content.
    pub origin: Origin,
    /// The service as it was.
    pub spec: raw::Service,
    /// Its stacks' promotions.
    pub promotions: BTreeMap<String, Promotion>,
}

impl Before {
    /// Each stack's weight before the deployment.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        self.spec
            .stacks
            .iter()
            .map(|s| (s.name.clone(), u32::try_from(s.weight).unwrap_or(0)))
            .collect()
    }
}

/// One thing a source started for the new stack: a process or container replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unit {
    /// The endpoint it serves, `127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its process id, while it runs.
    pub pid: Option<u32>,
    /// The kernel's start time of the process (Linux), so a reused PID is never signalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_ticks: Option<u64>,
    /// The container's name, for a container replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The durable record of one process stack's replicas, kept by the process source for as
/// long as the stack lives (a deployment's driver is gone once it succeeded; this record is
/// not): what to start and where, and each replica's current process, whoever respawned it.
/// On start, Switchyard re-adopts the replicas it names, or starts them anew on the same
/// endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessStackRecord {
    /// The service.
    pub service: String,
    /// The stack.
    pub stack: String,
    /// The stack's version (given to replicas as `SWITCHYARD_VERSION`).
    pub version: String,
    /// What each replica runs.
    pub process: ProcessSpec,
    /// The folder relative paths of `process` resolve against.
    pub base_dir: String,
    /// One unit per replica, in replica order.
    pub units: Vec<Unit>,
    /// When the record last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    /// `pre_integration` or `post_integration`.
    pub phase: String,
    /// What was checked, e.g. `http GET /health`.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
    /// When it finished (RFC 3339, UTC).
    pub at: String,
}

/// One line of a deployment's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who wrote it: `deploy`, `check`, or a replica such as `green-0`.
    pub source: String,
    /// The text.
    pub line: String,
}

/// Everything about one deployment, as persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRecord {
    /// Increases per service: 1, 2, ...
    pub id: u64,
    /// The service deployed to.
    pub service: String,
    /// The request as given.
    pub spec: DeploymentSpec,
    /// The token that started it.
    pub created_by: String,
    /// When it started (RFC 3339, UTC).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When it reached a terminal phase.
    pub finished_at: Option<String>,
    /// The phase.
    pub phase: Phase,
    /// The canary step (0-based), meaningful while shifting and after.
    pub step: usize,
    /// What the phase waits for.
    pub waiting: Waiting,
    /// Held by an operator: no advance until resumed.
    pub paused: bool,
    /// An advance that arrived while paused, taken on resume.
    pub pending: bool,
    /// Retirement of the previous stacks has begun (no rollback past this point).
    pub retire_started: bool,
    /// Increases whenever the phase or step changes; results of work started under another
    /// epoch are stale.
    pub epoch: u64,
    /// Weights the deployment last set.
    pub weights: BTreeMap<String, u32>,
    /// The service before the deployment.
    pub before: Before,
    /// The new stack as registered with the proxy, once provisioned.
    pub stack: Option<raw::Stack>,
    /// What the source started.
    pub units: Vec<Unit>,
    /// Check outcomes, in order.
    pub checks: Vec<CheckResult>,
    /// Why it rolled back.
    pub reason: Option<String>,
    /// What is left behind (a failed rollback, or a previous stack that could not be retired).
    pub left: Option<String>,
    /// The latest log lines.
    pub log: Vec<LogLine>,
    /// How deliveries to each webhook went.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<super::webhook::WebhookStatus>,
    /// Canary analysis: every judged window and the counts.
    #[serde(default, skip_serializing_if = "AnalysisRecord::is_empty")]
    pub analysis: AnalysisRecord,
    /// After success: the previous stacks kept at weight 0 (a rollback switches back to them)
    /// until they are retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<Standby>,
    /// The deployment that undid this one (`POST /v1/services/{service}/rollback`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undone_by: Option<u64>,
    /// The deployment this one undid: it restores the service as before that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_of: Option<u64>,
}

/// Previous stacks kept at weight 0 after a deployment succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Standby {
    /// The stacks.
    pub stacks: Vec<String>,
    /// When they are retired (RFC 3339, UTC); persisted, so a restart keeps the time.
    pub until: String,
}

impl DeploymentRecord {
    /// Appends a log line, keeping the tail bounded.
    pub(crate) fn push_log(&mut self, line: LogLine) {
        self.log.push(line);
        if self.log.len() > LOG_TAIL {
            let excess = self.log.len() - LOG_TAIL;
            self.log.drain(..excess);
        }
    }

    /// `shifting(2/4)` while shifting, the phase name otherwise.
    pub fn phase_label(&self, steps: usize) -> String {
        match self.phase {
            Phase::Shifting => format!("shifting({}/{steps})", self.step + 1),
            p => p.as_str().to_owned(),
        }
    }
}
