//! The driver's side of webhooks and gates: starting the webhook deliveries of a deployment,
//! copying their counts into the record, the last deliveries once it ended, and the gate
//! work (asking the gate's URL in the background).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;

use super::Driver;
use crate::deploy::gate::{self, Answer};
use crate::deploy::machine::Event;
use crate::deploy::plan::Plan;
use crate::deploy::record::DeploymentRecord;
use crate::deploy::source::Reporter;
use crate::deploy::webhook::{FINISH_WAIT, Webhooks, payload};
use crate::error::chain;
use crate::state::ControlState;
use tokio::time::Instant;

/// The deliveries of `rec`: the configuration's webhooks, then the request's.
pub(super) fn spawn(
    state: &ControlState,
    plan: &Plan,
    rec: &DeploymentRecord,
    reporter: &Reporter,
    shutdown: &watch::Receiver<bool>,
) -> Webhooks {
    let mut hooks = state.published().config.control().webhooks.clone();
    hooks.extend(plan.webhooks.iter().cloned());
    Webhooks::spawn(
        hooks,
        &rec.webhooks,
        plan.steps.len(),
        reporter.clone(),
        shutdown.clone(),
    )
}

impl Driver {
    /// Copies changed delivery counts into the record (published with the next tick,
    /// persisted with the next transition).
    pub(super) fn take_hook_status(&mut self) {
        if let Some(status) = self.hooks.as_ref().and_then(|h| h.take_status()) {
            self.rec.webhooks = status;
            self.log_dirty = true;
        }
    }

    /// Once the deployment ended (not on shutdown): gives the queued notes a bounded time to
    /// be delivered (publishing the counts as they change), then records the final counts.
    pub(super) async fn last_deliveries(&mut self) {
        let Some(mut hooks) = self.hooks.take() else {
            return;
        };
        let saved = self.rec.webhooks.clone();
        if self.halted || !self.rec.phase.is_terminal() || *self.shutdown.borrow() {
            hooks.abort();
            return;
        }
        hooks.close();
        let deadline = Instant::now() + FINISH_WAIT;
        let mut tick = tokio::time::interval(super::LOG_PUBLISH);
        while !hooks.is_done() && Instant::now() < deadline {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.wait_for(|s| *s) => break,
            }
            if let Some(status) = hooks.take_status() {
                self.rec.webhooks = status;
                self.publish.send_replace(Arc::new(self.rec.clone()));
            }
        }
        if !hooks.is_done() {
            tracing::warn!("webhook deliveries still pending after the deployment ended; given up");
        }
        hooks.abort();
        let status = hooks.status();
        if status == saved || *self.shutdown.borrow() {
            return;
        }
        self.rec.webhooks = status;
        if let Err(e) = self.state.store().save_deployment(&self.rec).await {
            tracing::warn!(error = %chain(&e), "cannot persist the webhook deliveries of the ended deployment");
        }
        self.publish.send_replace(Arc::new(self.rec.clone()));
    }

    /// Asks the gate guarding the next advance until it answers: approval, or a failure that
    /// rolls back (a rejection with the gate's body, or the timeout).
    pub(super) fn gate(&self) -> impl Future<Output = Event> + Send + 'static {
        let found = gate::before_next(&self.plan, self.rec.phase, self.rec.step).cloned();
        let body = serde_json::to_vec(&payload(
            "deployment.gate",
            &self.rec,
            self.plan.steps.len(),
        ))
        .map(Bytes::from)
        .unwrap_or_default();
        async move {
            let Some(g) = found else {
                // The plan has no gate here (it cannot change under a deployment).
                return Event::GateApproved;
            };
            match gate::poll(g.clone(), body).await {
                Answer::Approved => Event::GateApproved,
                Answer::Rejected(text) => {
                    Event::Failed(format!("gate {} rejected by {}: {text}", g.label, g.url))
                }
                Answer::TimedOut(last) => Event::Failed(format!(
                    "gate {} at {} did not approve within {} (last: {last})",
                    g.label,
                    g.url,
                    switchyard_config::format_duration(g.timeout)
                )),
            }
        }
    }
}
