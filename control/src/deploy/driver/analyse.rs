//! The analysis task of a step (or of the shadow step, whose mirrored answers are counted on
//! the new stack): every interval it reads the cumulative figures of the new stack and of the
//! baseline (the stacks that had traffic before the deployment) through the `DataPlane` trait, judges the difference since the previous reading, and sends the verdict
//! to the driver. Windows are back to back, so every request of the step is judged once.
//!
//! The task belongs to the step's epoch: it is aborted when the step or phase changes, and a
//! verdict it sent meanwhile is dropped as stale.

use switchyard_config::Reading;
use tokio::time::{Instant, sleep_until};

use super::{Driver, Msg};
use crate::data_plane::DataPlane;
use crate::deploy::analysis::{AnalysisWindow, WindowFigures, judge};
use crate::deploy::machine::Event;
use crate::deploy::record::Phase;
use crate::store::now;

/// The summed cumulative readings of `stacks` of `service` (absent stacks count as nothing).
fn read(dp: &dyn DataPlane, service: &str, stacks: &[String]) -> Reading {
    stacks
        .iter()
        .filter_map(|s| dp.stack_reading(service, s))
        .fold(Reading::default(), |sum, r| sum.plus(&r))
}

impl Driver {
    /// Starts judging the current step every analysis interval.
    pub(super) fn analyse(&mut self) {
        let Some(spec) = self.plan.analysis.clone() else {
            return;
        };
        let dp = self.state.data_plane().clone();
        let service = self.rec.service.clone();
        let new = vec![self.rec.spec.stack.clone()];
        let baseline: Vec<String> = self
            .rec
            .before
            .weights()
            .into_iter()
            .filter(|(n, w)| *w > 0 && *n != new[0])
            .map(|(n, _)| n)
            .collect();
        let step = if self.rec.phase == Phase::Shadowing {
            "shadow".to_owned()
        } else {
            format!("{}/{}", self.rec.step + 1, self.plan.steps.len())
        };
        let tx = self.inbox_tx.clone();
        let epoch = self.rec.epoch;
        self.tasks.push(tokio::spawn(async move {
            let mut start = Instant::now();
            let mut new_0 = read(dp.as_ref(), &service, &new);
            let mut base_0 = read(dp.as_ref(), &service, &baseline);
            let mut next = start + spec.interval;
            loop {
                sleep_until(next).await;
                let ended = Instant::now();
                let new_1 = read(dp.as_ref(), &service, &new);
                let base_1 = read(dp.as_ref(), &service, &baseline);
                let seconds = ended.saturating_duration_since(start).as_secs_f64();
                let window = new_1.since(&new_0, seconds);
                let base = base_1.since(&base_0, seconds);
                let verdict = judge(&window, &base, &spec);
                let record = AnalysisWindow {
                    at: now(),
                    step: step.clone(),
                    seconds,
                    new: WindowFigures::of(&window),
                    baseline: WindowFigures::of(&base),
                    verdict: String::new(),
                    detail: String::new(),
                };
                let event = Event::Analysed {
                    window: Box::new(record),
                    verdict,
                    ended,
                };
                if tx.send(Msg { epoch, event }).await.is_err() {
                    // The driver is gone (shutdown): nothing left to judge for.
                    return;
                }
                (start, new_0, base_0) = (ended, new_1, base_1);
                next += spec.interval;
            }
        }));
    }
}
