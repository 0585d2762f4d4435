//! What ends a step besides its pause: the analysis gate (a step advances once a window
//! passed; verdicts counted into a rollback), the shadow step, and a success that keeps the
//! previous stacks as standby. Part of the pure state machine: no I/O.

use super::{Action, Machine};
use crate::deploy::analysis::{self, AnalysisWindow, Outcome, Verdict};
use crate::deploy::record::{Phase, Standby, Waiting};
use crate::deploy::standby;

impl Machine<'_> {
    /// The step's pause (or the shadow step's duration) is over: advance, unless its analysis
    /// gate still waits for a passing
    /// window (a dry run never holds; the 100 % step has no baseline left and does not hold
    /// either: its windows are judged during its pause).
    pub(super) fn step_done(&mut self) {
        let shadow = self.rec.phase == Phase::Shadowing;
        let gated = self.plan.analysis.as_ref().is_some_and(|a| !a.dry_run)
            && (shadow || self.plan.steps[self.rec.step].percent < 100);
        if gated && !self.rec.analysis.passed {
            self.rec.waiting = Waiting::Analysis;
            if shadow {
                self.log("the shadow step waits for a passing analysis window".to_owned());
            } else {
                self.log(format!(
                    "step {} waits for a passing analysis window",
                    self.rec.step.saturating_add(1)
                ));
            }
            return;
        }
        self.advance();
    }

    /// A judged analysis window: recorded, and counted into a rollback or a step's advance.
    pub(super) fn analysed(&mut self, window: AnalysisWindow, verdict: &Verdict) {
        let Some(spec) = self.plan.analysis.as_ref() else {
            return;
        };
        let dry = if spec.dry_run { " (dry run)" } else { "" };
        self.log(format!(
            "analysis {}{dry}: {}: {}",
            window.step,
            verdict.as_str(),
            verdict.detail()
        ));
        match analysis::tally(&mut self.rec.analysis, spec, window, verdict) {
            Outcome::Wait => {}
            Outcome::Pass if self.rec.waiting == Waiting::Analysis => {
                self.rec.waiting = Waiting::Work;
                self.advance();
            }
            Outcome::Pass => {}
            Outcome::RollBack(reason) => self.roll_back(reason),
        }
    }

    /// Succeeds with the previous stacks left at weight 0 until `retire_previous.after` has
    /// passed (the registry retires them then, unless a rollback switched back to them).
    pub(super) fn keep_standby(&mut self) {
        let stacks: Vec<String> = self
            .rec
            .before
            .weights()
            .into_iter()
            .filter(|(n, w)| *w > 0 && *n != self.plan.stack)
            .map(|(n, _)| n)
            .collect();
        if !stacks.is_empty() {
            let until = standby::later(self.now, self.plan.retire_after);
            self.log(format!(
                "previous stacks {} stay at weight 0 until {until}; a rollback switches back to them until then",
                stacks.join(", ")
            ));
            self.rec.standby = Some(Standby { stacks, until });
        }
        self.finish(Phase::Succeeded);
    }

    /// The shadow step when there is one, else the first weight step.
    pub(super) fn enter_first_step(&mut self) {
        if self.plan.shadow.is_some() {
            self.enter(Phase::Shadowing);
        } else {
            self.enter_step(0);
        }
    }

    /// The shadow setting is live: mirror for the step's duration, judged when asked.
    pub(super) fn shadowing(&mut self) {
        let Some(s) = self.plan.shadow.as_ref() else {
            return;
        };
        self.log(format!(
            "mirroring {}% of the live requests to the new stack for {}",
            s.setting.percent,
            switchyard_config::format_duration(s.duration)
        ));
        if self.plan.analysis.is_some() {
            self.rec.analysis.passed = false;
            self.actions.push(Action::Analyse);
        }
        self.rec.waiting = Waiting::Timer;
        self.actions.push(Action::Timer(s.duration));
    }
}
