//! The deployment state machine: `(record, event, now) -> (record, actions)`, with no I/O.
//!
//! The machine decides; the driver persists the record it returns and only then performs the
//! actions. Every phase has an entry (the actions that start its work); an advance moves to the
//! next phase, or is held while an operator has paused the deployment. Any failure before the
//! previous stacks are being retired turns into `rolling_back`. Operator commands that make no
//! sense in the current phase are refused with a reason and change nothing.
//!
//! Phases: provisioning → waiting_healthy → pre_integration → shadowing (when asked for) →
//! shifting (step k of n) → post_integration → retiring → succeeded (the previous stacks kept
//! at weight 0 until `retire_previous.after`, when it is not zero); or rolling_back →
//! rolled_back | failed. With analysis, a step (and the shadow step) advances once its pause is
//! over and a window passed; failing windows roll back.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_config::raw;

use super::analysis::{AnalysisWindow, Verdict};
use super::plan::{Pause, Plan, split};
use super::record::{CheckResult, DeploymentRecord, LogLine, Phase, Unit, Waiting};

/// Something that happened to a deployment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The driver starts: a new deployment, or one found in flight after a restart.
    Begin { resumed: bool },
    /// The source's units changed (started, restarted).
    Units(Vec<Unit>),
    /// The source produced the stack to register.
    Provisioned(Box<raw::Stack>),
    /// The stack is registered with the proxy.
    Registered,
    /// Every endpoint of the new stack is healthy.
    Healthy,
    /// The phase's checks finished.
    Checked {
        results: Vec<CheckResult>,
        passed: bool,
    },
    /// The step's weights are applied.
    WeightsSet,
    /// The shadow setting is applied (or cleared).
    ShadowSet,
    /// An analysis window was judged; `ended` is when its figures were read.
    Analysed {
        window: Box<AnalysisWindow>,
        verdict: Verdict,
        ended: tokio::time::Instant,
    },
    /// A pause ended.
    TimerFired,
    /// The previous stacks are retired; `left` names what could not be removed.
    Retired { left: Option<String> },
    /// Work failed: roll back.
    Failed(String),
    /// The rollback completed.
    RolledBack,
    /// The rollback could not complete; what is left.
    RollbackIncomplete(String),
    /// The gate the deployment waits at answered 200.
    GateApproved,
    /// A rolling update prepared its first batch (provisioning) or replaced a batch
    /// (shifting); the new replicas so far.
    Batched(Vec<Unit>),
    /// An operator's command.
    Command(Command),
}

/// What an operator may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// Move past a pause.
    Promote,
    /// Hold before the next advance.
    Pause,
    /// Release a pause.
    Resume,
    /// Roll back; `by` names the token.
    Abort { by: String },
}

impl Command {
    /// The URL word for the command.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Abort { .. } => "abort",
        }
    }
}

/// Work the driver performs after persisting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Start the source (background): ends in `Provisioned` or `Failed`.
    Provision,
    /// Add the stack to the service (inline): `Registered` or `Failed`.
    Register(Box<raw::Stack>),
    /// Wait for health (background): `Healthy` or `Failed`.
    WaitHealthy,
    /// Run the pre- or post-integration checks (background): `Checked`.
    Check { post: bool },
    /// Set weights (inline): `WeightsSet` or `Failed`.
    SetWeights(BTreeMap<String, u32>),
    /// Set (or with `None` clear) the service's shadow setting (inline): `ShadowSet` or
    /// `Failed`.
    SetShadow(Option<Box<raw::Shadow>>),
    /// Sleep (background): `TimerFired`.
    Timer(Duration),
    /// Judge the new stack every analysis interval until the step ends (background):
    /// `Analysed`, again and again.
    Analyse,
    /// Remove the previous stacks (inline): `Retired`.
    Retire,
    /// Restore the service and stop the new stack (inline): `RolledBack` or
    /// `RollbackIncomplete`.
    RollBack,
    /// Ask the gate guarding the next advance (background): `GateApproved` or `Failed`.
    Gate,
    /// Replace batch `n` of a rolling update (background): `WeightsSet` or `Failed`.
    RollBatch(usize),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal(pub(crate) String);

/// Applies `event` to `rec`: the next record and the actions to perform once it is persisted.
pub(crate) fn step(
    rec: &DeploymentRecord,
    plan: &Plan,
    event: Event,
    now: &str,
) -> Result<(DeploymentRecord, Vec<Action>), Refusal> {
    let mut next = rec.clone();
    next.updated_at = now.to_owned();
    let mut m = Machine {
        rec: &mut next,
        plan,
        now,
        actions: Vec::new(),
    };
    m.on(event)?;
    let actions = m.actions;
    Ok((next, actions))
}

struct Machine<'a> {
    rec: &'a mut DeploymentRecord,
    plan: &'a Plan,
    now: &'a str,
    actions: Vec<Action>,
}

impl Machine<'_> {
    fn log(&mut self, line: String) {
        self.rec.push_log(LogLine {
            time: self.now.to_owned(),
            source: "deploy".to_owned(),
            line,
        });
    }

    fn on(&mut self, event: Event) -> Result<(), Refusal> {
        let phase = self.rec.phase;
        if phase.is_terminal() {
            return match event {
                Event::Command(c) => Err(Refusal(format!(
                    "cannot {}: the deployment has {}",
                    c.as_str(),
                    phase.as_str()
                ))),
                _ => Ok(()),
            };
        }
        match event {
            Event::Begin { resumed: false } => self.enter(Phase::Provisioning),
            Event::Begin { resumed: true } => self.resume(),
            Event::Units(units) => self.rec.units = units,
            Event::Provisioned(stack) if phase == Phase::Provisioning => {
                self.log(format!(
                    "stack {} provisioned: {}",
                    stack.name,
                    describe_endpoints(&stack)
                ));
                self.rec.stack = Some((*stack).clone());
                self.actions.push(Action::Register(stack));
            }
            Event::Registered if phase == Phase::Provisioning => self.advance(),
            Event::Batched(units) if phase == Phase::Provisioning => {
                self.rec.units = units;
                self.advance();
            }
            Event::Batched(units) if phase == Phase::Shifting => {
                self.rec.units = units;
                self.after_weights();
            }
            Event::Healthy if self.rec.waiting == Waiting::Health => {
                self.log("the new stack is healthy again; continuing".to_owned());
                self.rec.waiting = Waiting::Work;
                self.start_work();
            }
            Event::Healthy if phase == Phase::WaitingHealthy => self.advance(),
            Event::Checked { results, passed }
                if matches!(phase, Phase::PreIntegration | Phase::PostIntegration) =>
            {
                let failed = results.iter().find(|r| !r.passed).cloned();
                self.rec.checks.extend(results);
                match failed {
                    None if passed => self.advance(),
                    Some(f) => self.roll_back(format!(
                        "{} check {} failed: {}",
                        phase.as_str().replace('_', "-"),
                        f.name,
                        f.detail
                    )),
                    None => self.roll_back(format!("{} checks failed", phase.as_str())),
                }
            }
            Event::WeightsSet if phase == Phase::Shifting => self.after_weights(),
            Event::ShadowSet if phase == Phase::Shadowing && self.rec.waiting == Waiting::Work => {
                self.shadowing();
            }
            Event::Analysed {
                window, verdict, ..
            } if matches!(phase, Phase::Shifting | Phase::Shadowing) => {
                self.analysed(*window, &verdict);
            }
            Event::TimerFired
                if self.rec.waiting == Waiting::Timer
                    && matches!(phase, Phase::Shifting | Phase::Shadowing) =>
            {
                self.step_done();
            }
            Event::TimerFired if self.rec.waiting == Waiting::Timer => self.advance(),
            Event::Retired { left } if phase == Phase::Retiring => {
                if let Some(l) = &left {
                    self.log(format!("previous stack not fully retired: {l}"));
                }
                self.rec.left = left;
                self.finish(Phase::Succeeded);
            }
            Event::Failed(reason) if phase != Phase::RollingBack => {
                if phase == Phase::Retiring && self.rec.retire_started {
                    self.log(format!("retirement problem: {reason}"));
                } else {
                    self.roll_back(reason);
                }
            }
            Event::GateApproved if self.rec.waiting == Waiting::Gate => {
                self.log(format!("gate {} approved", self.gate_label()));
                self.advance();
            }
            Event::RolledBack if phase == Phase::RollingBack => self.finish(Phase::RolledBack),
            Event::RollbackIncomplete(left) if phase == Phase::RollingBack => {
                self.log(format!("rollback incomplete: {left}"));
                self.rec.left = Some(left);
                self.finish(Phase::Failed);
            }
            Event::Command(c) => self.command(c)?,
            // An outcome that no longer fits the phase (the driver filters stale epochs; this
            // is the second guard).
            _ => {}
        }
        Ok(())
    }

    fn command(&mut self, c: Command) -> Result<(), Refusal> {
        let phase = self.rec.phase;
        let refuse = |why: &str| Err(Refusal(format!("cannot {}: {why}", c.as_str())));
        match &c {
            Command::Pause | Command::Resume if phase == Phase::RollingBack => {
                refuse("the deployment is rolling back")
            }
            Command::Pause => {
                if !self.rec.paused {
                    self.rec.paused = true;
                    self.log("paused".to_owned());
                }
                Ok(())
            }
            Command::Resume => {
                if self.rec.paused {
                    self.rec.paused = false;
                    self.log("resumed".to_owned());
                    if std::mem::take(&mut self.rec.pending) {
                        self.advance();
                    }
                }
                Ok(())
            }
            Command::Promote
                if self.rec.waiting == Waiting::Gate && phase != Phase::RollingBack =>
            {
                if self.rec.paused {
                    return refuse("the deployment is paused; resume it first");
                }
                self.log(format!("gate {} passed by promote", self.gate_label()));
                self.advance();
                Ok(())
            }
            Command::Promote => {
                if !matches!(phase, Phase::Shifting | Phase::Shadowing)
                    || !matches!(
                        self.rec.waiting,
                        Waiting::Timer | Waiting::Promote | Waiting::Analysis
                    )
                {
                    return refuse(&format!(
                        "the deployment is in {} and not waiting at a pause",
                        self.rec.phase_label(self.plan.steps.len())
                    ));
                }
                if self.rec.paused {
                    return refuse("the deployment is paused; resume it first");
                }
                self.log(format!(
                    "promoted past step {}",
                    self.rec.step.saturating_add(1)
                ));
                self.advance();
                Ok(())
            }
            Command::Abort { by } => match phase {
                Phase::RollingBack => refuse("the deployment is rolling back already"),
                Phase::Retiring if self.rec.retire_started => refuse(
                    "the previous stacks are being retired; deploy the previous version instead",
                ),
                _ => {
                    self.roll_back(format!("aborted by {by}"));
                    Ok(())
                }
            },
        }
    }

    /// After a restart: resume the persisted phase where it was. A phase that talks to the
    /// new stack (checks, shifting) first waits for it to be healthy again (bounded by the
    /// deployment's healthy timeout; a failure rolls back). A process deployment still
    /// provisioning rolls back: its replicas were being started, not yet recorded as a stack.
    fn resume(&mut self) {
        let phase = self.rec.phase;
        self.log(format!(
            "switchyard restarted; deployment found in {}",
            self.rec.phase_label(self.plan.steps.len())
        ));
        // A gate is asked again once the phase's work is redone.
        if self.rec.waiting == Waiting::Gate {
            self.rec.waiting = Waiting::Work;
        }
        // Replicas of a rolling update were being replaced unsupervised: put the old ones back.
        if self.plan.rolling.is_some()
            && matches!(
                phase,
                Phase::Provisioning
                    | Phase::WaitingHealthy
                    | Phase::PreIntegration
                    | Phase::Shifting
                    | Phase::PostIntegration
            )
        {
            self.roll_back(
                "switchyard restarted during a rolling update; the old replicas are restored"
                    .to_owned(),
            );
            return;
        }
        if self.plan.process && phase == Phase::Provisioning {
            self.roll_back(
                "switchyard restarted during provisioning; the new stack's processes were not all started".to_owned(),
            );
            return;
        }
        self.rec.epoch += 1;
        if matches!(
            phase,
            Phase::PreIntegration | Phase::Shadowing | Phase::Shifting | Phase::PostIntegration
        ) {
            self.rec.waiting = Waiting::Health;
            self.log("waiting for the new stack to be healthy again".to_owned());
            self.actions.push(Action::WaitHealthy);
            return;
        }
        self.start_work();
    }

    /// Enters `phase` at its beginning.
    fn enter(&mut self, phase: Phase) {
        self.rec.phase = phase;
        self.rec.epoch += 1;
        self.rec.waiting = Waiting::Work;
        self.log(format!(
            "phase {}",
            self.rec.phase_label(self.plan.steps.len())
        ));
        self.start_work();
    }

    /// The actions that do the current phase's work.
    fn start_work(&mut self) {
        let action = match self.rec.phase {
            Phase::Provisioning => match &self.rec.stack {
                Some(stack) => Action::Register(Box::new(stack.clone())),
                None => Action::Provision,
            },
            Phase::WaitingHealthy => Action::WaitHealthy,
            Phase::PreIntegration => Action::Check { post: false },
            Phase::Shadowing => {
                let setting = self
                    .plan
                    .shadow
                    .as_ref()
                    .map(|s| Box::new(s.setting.clone()));
                self.rec.waiting = Waiting::Work;
                Action::SetShadow(setting)
            }
            Phase::PostIntegration => Action::Check { post: true },
            Phase::Shifting if self.plan.rolling.is_some() => {
                self.rec.waiting = Waiting::Work;
                Action::RollBatch(self.rec.step)
            }
            Phase::Shifting => {
                let percent = self.plan.steps[self.rec.step].percent;
                let weights = split(&self.rec.before.weights(), &self.plan.stack, percent);
                self.log(format!("weights {}", describe_weights(&weights)));
                self.rec.weights = weights.clone();
                self.rec.waiting = Waiting::Work;
                Action::SetWeights(weights)
            }
            Phase::Retiring if self.rec.retire_started => Action::Retire,
            Phase::Retiring if !self.plan.retire_after.is_zero() => {
                self.keep_standby();
                return;
            }
            Phase::Retiring => {
                self.rec.waiting = Waiting::Timer;
                Action::Timer(self.plan.retire_after)
            }
            Phase::RollingBack => Action::RollBack,
            Phase::Succeeded | Phase::RolledBack | Phase::Failed => return,
        };
        self.actions.push(action);
    }

    fn after_weights(&mut self) {
        if self.plan.analysis.is_some() {
            self.rec.analysis.passed = false;
            self.actions.push(Action::Analyse);
        }
        match self.plan.steps[self.rec.step].pause {
            Pause::None => self.step_done(),
            Pause::For(d) => {
                self.rec.waiting = Waiting::Timer;
                self.actions.push(Action::Timer(d));
            }
            Pause::Manual => {
                self.rec.waiting = Waiting::Promote;
                self.log(format!(
                    "waiting for promote at step {}",
                    self.rec.step.saturating_add(1)
                ));
            }
        }
    }

    /// Moves to the next phase or step, unless paused (then the advance waits for resume).
    fn advance(&mut self) {
        if self.rec.paused {
            self.rec.pending = true;
            self.log("held by pause".to_owned());
            return;
        }
        // A gate guards the advance unless the deployment waited at it already (approved,
        // or passed by promote).
        if self.rec.waiting != Waiting::Gate {
            if let Some(g) = super::gate::before_next(self.plan, self.rec.phase, self.rec.step) {
                self.rec.waiting = Waiting::Gate;
                self.rec.epoch += 1;
                self.log(format!("waiting at gate {} for {}", g.label, g.url));
                self.actions.push(Action::Gate);
                return;
            }
        }
        let steps = self.plan.steps.len();
        match self.rec.phase {
            Phase::Provisioning => self.enter(Phase::WaitingHealthy),
            Phase::WaitingHealthy if self.plan.pre.is_empty() => self.enter_first_step(),
            Phase::WaitingHealthy => self.enter(Phase::PreIntegration),
            Phase::PreIntegration => self.enter_first_step(),
            Phase::Shadowing => {
                self.log("shadow traffic ends".to_owned());
                self.actions.push(Action::SetShadow(None));
                self.enter_step(0);
            }
            Phase::Shifting if self.rec.step + 1 < steps => self.enter_step(self.rec.step + 1),
            Phase::Shifting if self.plan.post.is_empty() => self.enter(Phase::Retiring),
            Phase::Shifting => self.enter(Phase::PostIntegration),
            Phase::PostIntegration => self.enter(Phase::Retiring),
            Phase::Retiring => {
                self.rec.retire_started = true;
                self.rec.waiting = Waiting::Work;
                self.rec.epoch += 1;
                self.log("retiring the previous stacks".to_owned());
                self.actions.push(Action::Retire);
            }
            Phase::Succeeded | Phase::RollingBack | Phase::RolledBack | Phase::Failed => {}
        }
    }

    fn gate_label(&self) -> String {
        super::gate::before_next(self.plan, self.rec.phase, self.rec.step)
            .map_or_else(|| "?".to_owned(), |g| g.label.clone())
    }

    fn enter_step(&mut self, index: usize) {
        self.rec.step = index;
        self.enter(Phase::Shifting);
    }

    fn roll_back(&mut self, reason: String) {
        self.log(format!("rolling back: {reason}"));
        self.rec.reason = Some(reason);
        self.rec.paused = false;
        self.rec.pending = false;
        self.enter(Phase::RollingBack);
    }

    fn finish(&mut self, phase: Phase) {
        self.rec.phase = phase;
        self.rec.epoch += 1;
        self.rec.waiting = Waiting::Work;
        self.rec.paused = false;
        self.rec.finished_at = Some(self.now.to_owned());
        self.log(format!("phase {}", phase.as_str()));
    }
}

/// `blue=95 green=5`
pub(crate) fn describe_weights(weights: &BTreeMap<String, u32>) -> String {
    weights
        .iter()
        .map(|(n, w)| format!("{n}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe_endpoints(stack: &raw::Stack) -> String {
    match &stack.dns {
        Some(d) => format!(
            "dns {}",
            d.srv.clone().or_else(|| d.name.clone()).unwrap_or_default()
        ),
        None => stack.endpoints.join(", "),
    }
}

mod gate;

#[cfg(test)]
mod tests;
