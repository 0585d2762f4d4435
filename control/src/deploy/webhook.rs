//! Webhooks: a signed JSON POST for each transition of a deployment, delivered in the
//! background so that a slow or failing receiver never holds a transition up.
//!
//! The driver owns one [`Webhooks`] per deployment: the webhooks of `[[control.webhooks]]`
//! and of the request's `"webhooks"`. After each persisted transition it hands the before and
//! after records to [`Webhooks::transition`], which turns them into events ([`events`]: a pure
//! function) and queues a note for each webhook that asked for the event, without waiting: one
//! task per webhook reads its bounded queue in order and POSTs each note, retrying failures
//! with backoff. A full queue drops the note (counted). Each webhook's counts and last error
//! are copied into the record (`webhooks`), so delivery failures show in the deployment view.
//! Once the deployment ends, the driver gives the tasks a bounded time to deliver what is
//! queued, then records the final counts.
//!
//! The body is signed with `X-Switchyard-Signature: sha256=<hex HMAC-SHA256 of the body>`
//! under the secret in the environment variable the webhook names (`secret_env`); a webhook
//! whose variable is unset is not sent unsigned: each delivery fails, saying so.

mod sign;

pub(crate) use sign::signature;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use switchyard_config::WebhookSpec;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::outbound::send;
use super::record::{DeploymentRecord, Phase, Waiting};
use super::source::Reporter;
use crate::store::now;

/// Notes waiting per webhook before new ones are dropped.
const QUEUE: usize = 64;
/// Tries per note.
const ATTEMPTS: u32 = 5;
/// Backoff after the first failed try; doubled each time, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Time one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// After the deployment ended: longest wait for the queued notes to be delivered.
pub(crate) const FINISH_WAIT: Duration = Duration::from_secs(30);

/// How deliveries to one webhook went, as the deployment view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookStatus {
    /// The webhook's URL.
    pub url: String,
    /// Notes delivered (answered 2xx).
    pub delivered: u64,
    /// Notes given up on after every retry.
    pub failed: u64,
    /// Notes dropped because the webhook's queue was full (a receiver far behind).
    pub dropped: u64,
    /// The last failure, if any: what went wrong, for which event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The events a transition from `before` to `after` amounts to, in order.
pub(crate) fn events(before: &DeploymentRecord, after: &DeploymentRecord) -> Vec<&'static str> {
    let mut out = Vec::new();
    // Epoch 0 is the record as created; the first transition (never a resumption, whose
    // record was persisted after at least one) moves it.
    if before.epoch == 0 && after.epoch > 0 {
        out.push("deployment.started");
    }
    // A judged analysis window comes before the phase change it may cause (a rollback).
    if after.analysis.judged > before.analysis.judged {
        out.push("deployment.analysis");
    }
    if after.phase != before.phase {
        out.push(match after.phase {
            Phase::Succeeded => "deployment.succeeded",
            Phase::RolledBack => "deployment.rolled_back",
            Phase::Failed => "deployment.failed",
            _ => "deployment.phase",
        });
    }
    if after.phase == Phase::Shifting
        && (before.phase != Phase::Shifting || before.step != after.step)
    {
        out.push("deployment.step");
    }
    if after.paused != before.paused {
        out.push(if after.paused {
            "deployment.paused"
        } else {
            "deployment.resumed"
        });
    }
    if after.waiting == Waiting::Gate && before.waiting != Waiting::Gate {
        out.push("deployment.gate");
    }
    out
}

/// The JSON a webhook receives for `event` about `rec`.
pub(crate) fn payload(event: &str, rec: &DeploymentRecord, steps: usize) -> serde_json::Value {
    let shifted = matches!(
        rec.phase,
        Phase::Shifting | Phase::PostIntegration | Phase::Retiring | Phase::Succeeded
    ) || !rec.weights.is_empty();
    let mut body = serde_json::json!({
        "event": event,
        "deployment": rec.id,
        "service": rec.service,
        "stack": rec.spec.stack,
        "version": rec.spec.version,
        "phase": rec.phase.as_str(),
        "label": rec.phase_label(steps),
        "step": shifted.then_some(rec.step + 1),
        "steps": steps,
        "weights": rec.weights,
        "paused": rec.paused,
        "waiting": rec.waiting,
        "reason": rec.reason,
        "at": now(),
    });
    if event == "deployment.analysis" {
        // The verdict and the figures it was drawn from.
        body["analysis"] = serde_json::json!(rec.analysis.windows.last());
    }
    body
}

/// One queued note: the event (for errors) and the body to send.
struct Note {
    event: &'static str,
    body: Bytes,
}

/// The webhooks of one deployment and their delivery tasks.
pub(crate) struct Webhooks {
    queues: Vec<(WebhookSpec, mpsc::Sender<Arc<Note>>)>,
    status: Arc<Mutex<Vec<WebhookStatus>>>,
    changed: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    steps: usize,
}

impl Webhooks {
    /// Starts a delivery task per webhook; `known` are the counts a record already holds
    /// (a deployment resumed after a restart keeps counting).
    pub(crate) fn spawn(
        hooks: Vec<WebhookSpec>,
        known: &[WebhookStatus],
        steps: usize,
        report: Reporter,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let status: Vec<WebhookStatus> = hooks
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let url = h.url().to_string();
                known
                    .get(i)
                    .filter(|k| k.url == url)
                    .cloned()
                    .unwrap_or(WebhookStatus {
                        url,
                        delivered: 0,
                        failed: 0,
                        dropped: 0,
                        last_error: None,
                    })
            })
            .collect();
        let status = Arc::new(Mutex::new(status));
        let changed = Arc::new(AtomicBool::new(false));
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for (index, hook) in hooks.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(QUEUE);
            let secret = hook.secret_env().map(|name| {
                std::env::var(name).map(String::into_bytes).map_err(|_| {
                    format!("secret_env {name} is not set in Switchyard's environment")
                })
            });
            let delivery = Delivery {
                hook: hook.clone(),
                index,
                secret,
                status: status.clone(),
                changed: changed.clone(),
                report: report.clone(),
            };
            let span = tracing::info_span!("webhook", url = %hook.url());
            tasks.push(tokio::spawn(
                delivery.run(rx, shutdown.clone()).instrument(span),
            ));
            queues.push((hook, tx));
        }
        Self {
            queues,
            status,
            changed,
            tasks,
            steps,
        }
    }

    /// Queues a note per event of the transition for each webhook that wants it; never waits.
    pub(crate) fn transition(&self, before: &DeploymentRecord, after: &DeploymentRecord) {
        if self.queues.is_empty() {
            return;
        }
        for event in events(before, after) {
            self.queue(event, after);
        }
    }

    /// Queues one event about `rec` for each webhook that wants it; never waits.
    pub(crate) fn queue(&self, event: &'static str, rec: &DeploymentRecord) {
        let mut note = None;
        for (index, (hook, tx)) in self.queues.iter().enumerate() {
            if !hook.wants(event) {
                continue;
            }
            let note = note
                .get_or_insert_with(|| {
                    let body = serde_json::to_vec(&payload(event, rec, self.steps))
                        .expect("a JSON value serializes");
                    Arc::new(Note {
                        event,
                        body: Bytes::from(body),
                    })
                })
                .clone();
            if tx.try_send(note).is_err() {
                self.update(index, |s| {
                    s.dropped += 1;
                    s.last_error = Some(format!("{event}: dropped, the webhook's queue is full"));
                });
            }
        }
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut WebhookStatus)) {
        update(&self.status, &self.changed, index, f);
    }

    /// The counts, when they changed since the last call.
    pub(crate) fn take_status(&self) -> Option<Vec<WebhookStatus>> {
        self.changed
            .swap(false, Ordering::AcqRel)
            .then(|| self.status())
    }

    /// The counts now.
    pub(crate) fn status(&self) -> Vec<WebhookStatus> {
        self.status
            .lock()
            .expect("webhook status lock is never poisoned")
            .clone()
    }

    /// No more notes: each task ends once its queue is delivered.
    pub(crate) fn close(&mut self) {
        self.queues.clear();
    }

    /// Whether every delivery task ended.
    pub(crate) fn is_done(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Stops the delivery tasks now (shutdown).
    pub(crate) fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn update(
    status: &Mutex<Vec<WebhookStatus>>,
    changed: &AtomicBool,
    index: usize,
    f: impl FnOnce(&mut WebhookStatus),
) {
    if let Some(s) = status
        .lock()
        .expect("webhook status lock is never poisoned")
        .get_mut(index)
    {
        f(s);
    }
    changed.store(true, Ordering::Release);
}

/// One webhook's delivery task.
struct Delivery {
    hook: WebhookSpec,
    index: usize,
    secret: Option<Result<Vec<u8>, String>>,
    status: Arc<Mutex<Vec<WebhookStatus>>>,
    changed: Arc<AtomicBool>,
    report: Reporter,
}

impl Delivery {
    async fn run(self, mut notes: mpsc::Receiver<Arc<Note>>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let note = tokio::select! {
                biased;
                _ = shutdown.wait_for(|s| *s) => return,
                note = notes.recv() => match note {
                    Some(n) => n,
                    None => return,
                },
            };
            let outcome = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                outcome = self.deliver(&note) => outcome,
            };
            match outcome {
                Ok(()) => update(&self.status, &self.changed, self.index, |s| {
                    s.delivered += 1
                }),
                Err(e) => {
                    let line = format!("webhook {} {}: {e}", self.hook.url(), note.event);
                    tracing::warn!(error = %e, event = note.event, "webhook delivery failed");
                    self.report.log("webhook", line);
                    update(&self.status, &self.changed, self.index, |s| {
                        s.failed += 1;
                        s.last_error = Some(format!("{}: {e}", note.event));
                    });
                }
            }
        }
    }

    /// POSTs the note, retrying with backoff; the last error after every try failed.
    async fn deliver(&self, note: &Note) -> Result<(), String> {
        let signature = match &self.secret {
            None => None,
            Some(Ok(secret)) => Some(signature(secret, &note.body)),
            Some(Err(e)) => return Err(e.clone()),
        };
        let url = self.hook.url();
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut req = hyper::Request::post(url.path())
                .header(hyper::header::HOST, url.authority())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::USER_AGENT, "switchyard-webhook")
                .header("x-switchyard-event", note.event);
            if let Some(sig) = &signature {
                req = req.header("x-switchyard-signature", sig.as_str());
            }
            let req = req
                .body(Full::new(note.body.clone()))
                .map_err(|e| format!("cannot build the request: {e}"))?;
            match send(url.host(), url.port(), req, REQUEST_TIMEOUT).await {
                Ok((code, _)) if (200..300).contains(&code) => return Ok(()),
                Ok((code, _)) => last = format!("status {code}"),
                Err(e) => last = e,
            }
            if attempt < ATTEMPTS {
                tracing::debug!(attempt, error = %last, "webhook delivery failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(format!("{last} (after {ATTEMPTS} tries)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::spec::DeploymentSpec;
    use serde_json::Value;

    fn rec() -> DeploymentRecord {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "stack": "green", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]}
        }))
        .expect("spec");
        serde_json::from_value(serde_json::json!({
            "id": 1, "service": "web", "spec": spec, "created_by": "ci",
            "created_at": "t", "updated_at": "t", "finished_at": null,
            "phase": "provisioning", "step": 0, "waiting": "work", "paused": false,
            "pending": false, "retire_started": false, "epoch": 0, "weights": {},
            "before": {"revision": 1, "origin": "file",
                "spec": {"name": "web", "listeners": ["public"]}, "promotions": {}},
            "stack": null, "units": [], "checks": [], "reason": null, "left": null, "log": []
        }))
        .expect("record")
    }

    #[test]
    fn transitions_become_events_in_order() {
        let a = rec();
        let mut b = a.clone();
        b.epoch = 1;
        assert_eq!(events(&a, &b), ["deployment.started"]);
        let mut c = b.clone();
        c.phase = Phase::Shifting;
        c.epoch = 2;
        assert_eq!(events(&b, &c), ["deployment.phase", "deployment.step"]);
        let mut d = c.clone();
        d.step = 1;
        d.paused = true;
        assert_eq!(events(&c, &d), ["deployment.step", "deployment.paused"]);
        let mut e = d.clone();
        e.paused = false;
        e.waiting = Waiting::Gate;
        assert_eq!(events(&d, &e), ["deployment.resumed", "deployment.gate"]);
        let mut judged = e.clone();
        judged.analysis.judged = 1;
        judged.phase = Phase::RollingBack;
        assert_eq!(
            events(&e, &judged),
            ["deployment.analysis", "deployment.phase"]
        );
        let mut f = e.clone();
        f.phase = Phase::RolledBack;
        assert_eq!(events(&e, &f), ["deployment.rolled_back"]);
        assert!(events(&f, &f).is_empty());
        let note = payload("deployment.step", &d, 2);
        assert_eq!(note["step"], 2, "1-based");
        assert_eq!(note["label"], "shifting(2/2)");
        assert_eq!(
            payload("deployment.rolled_back", &f, 2)["step"],
            Value::Null
        );
    }
}
