//! The driver task of one deployment: feeds events to the state machine, persists the record
//! it returns, then performs its actions.
//!
//! Work that takes time (provisioning, health, checks, pauses) runs in background tasks tagged
//! with the record's epoch; when the phase or step changes they are aborted and any result
//! they already sent is dropped as stale. Changes to the service go through the control writer
//! like any API write (history, revisions, durability), named after the token that started
//! the deployment. If a record cannot be persisted the driver stops acting: the last persisted
//! phase is resumed on the next start.

mod analyse;
mod hooks;
mod rolling;
mod shadow;
mod work;

pub(crate) use work::{public_listener, retire_stack, wait_idle};

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::Feed;
use super::machine::{self, Action, Command, Event, Refusal};
use super::plan::Plan;
use super::record::DeploymentRecord;
use super::source::{Report, Reporter};
use crate::error::chain;
use crate::state::ControlState;
use crate::store::now;

/// How often a changed log tail is published to readers.
const LOG_PUBLISH: Duration = Duration::from_millis(200);

/// An operator command and where to answer.
pub(crate) struct CommandMsg {
    pub(crate) command: Command,
    pub(crate) reply: oneshot::Sender<Result<Arc<DeploymentRecord>, Refusal>>,
}

/// The outcome of background work, tagged with the epoch it was started in.
struct Msg {
    epoch: u64,
    event: Event,
}

/// What woke the driver.
enum Next {
    Stop,
    Command(CommandMsg),
    Work(Msg),
    Report(Report),
    Tick,
}

/// One deployment's driver.
pub(crate) struct Driver {
    state: ControlState,
    rec: DeploymentRecord,
    plan: Plan,
    publish: watch::Sender<Arc<DeploymentRecord>>,
    feed: broadcast::Sender<Feed>,
    inbox_tx: mpsc::Sender<Msg>,
    inbox: mpsc::Receiver<Msg>,
    reports: mpsc::Receiver<Report>,
    reporter: Reporter,
    commands: mpsc::Receiver<CommandMsg>,
    tasks: Vec<JoinHandle<()>>,
    shutdown: watch::Receiver<bool>,
    halted: bool,
    log_dirty: bool,
    hooks: Option<super::webhook::Webhooks>,
    /// When the latest analysis window ended (the rollback it causes reports how long after
    /// it the previous weights were served).
    window_end: Option<tokio::time::Instant>,
}

/// What a driver is started with.
pub(crate) struct Channels {
    pub(crate) publish: watch::Sender<Arc<DeploymentRecord>>,
    pub(crate) feed: broadcast::Sender<Feed>,
    pub(crate) commands: mpsc::Receiver<CommandMsg>,
}

impl Driver {
    pub(crate) fn new(
        state: ControlState,
        rec: DeploymentRecord,
        plan: Plan,
        channels: Channels,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(64);
        let (report_tx, reports) = mpsc::channel(1024);
        let reporter = Reporter::new(report_tx);
        let hooks = hooks::spawn(&state, &plan, &rec, &reporter, &shutdown);
        Self {
            state,
            rec,
            plan,
            publish: channels.publish,
            feed: channels.feed,
            inbox_tx,
            inbox,
            reports,
            reporter,
            commands: channels.commands,
            tasks: Vec::new(),
            shutdown,
            halted: false,
            log_dirty: false,
            hooks: Some(hooks),
            window_end: None,
        }
    }

    /// Drives the deployment until it is finished or shutdown is signalled.
    pub(crate) async fn run(mut self, resumed: bool) {
        if resumed {
            // Units re-adopted at start report to this driver from now on.
            self.state.deployments().source_for(&self.rec.spec).attach(
                &self.rec.service,
                &self.rec.spec.stack,
                self.reporter.clone(),
            );
        }
        // Start-up problems are logged in `handle`; there is no caller to refuse.
        let _ = self.handle(Event::Begin { resumed }).await;
        let mut tick = tokio::time::interval(LOG_PUBLISH);
        while !self.rec.phase.is_terminal() && !self.halted {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|s| *s) => Next::Stop,
                Some(c) = self.commands.recv() => Next::Command(c),
                Some(m) = self.inbox.recv() => Next::Work(m),
                Some(r) = self.reports.recv() => Next::Report(r),
                _ = tick.tick() => Next::Tick,
            };
            match next {
                Next::Stop => break,
                Next::Command(c) => {
                    let result = self.handle(Event::Command(c.command)).await;
                    // The caller may have gone away; the command stands either way.
                    let _ = c.reply.send(result.map(|()| self.publish.borrow().clone()));
                }
                Next::Work(m) => {
                    if m.epoch == self.rec.epoch {
                        // Refusals only answer commands.
                        let _ = self.handle(m.event).await;
                    }
                }
                Next::Report(Report::Units(units)) => {
                    let _ = self.handle(Event::Units(units)).await;
                }
                Next::Report(Report::Log(line)) => {
                    self.rec.push_log(line.clone());
                    self.log_dirty = true;
                    // No subscriber is fine.
                    let _ = self.feed.send(Feed::Log(line));
                }
                Next::Tick => {
                    self.take_hook_status();
                    if std::mem::take(&mut self.log_dirty) {
                        self.publish.send_replace(Arc::new(self.rec.clone()));
                    }
                }
            }
        }
        self.abort_tasks();
        self.publish.send_replace(Arc::new(self.rec.clone()));
        if self.rec.phase.is_terminal() && !self.halted {
            self.state
                .deployments()
                .finished(&self.state, &self.rec)
                .await;
        }
        tracing::info!(phase = self.rec.phase.as_str(), "deployment driver stopped");
        self.last_deliveries().await;
    }

    /// Runs `event` and whatever the actions it causes lead to.
    async fn handle(&mut self, event: Event) -> Result<(), Refusal> {
        let mut queue = VecDeque::from([event]);
        let mut first = true;
        while let Some(event) = queue.pop_front() {
            // Work that outlived a shutdown (a retirement waiting for requests to drain) must
            // not persist what it saw then (the writer is gone, its writes fail): the last
            // persisted phase resumes on the next start.
            if *self.shutdown.borrow() {
                self.halted = true;
            }
            if self.halted {
                break;
            }
            if let Event::Analysed { ended, .. } = &event {
                self.window_end = Some(*ended);
            }
            // What the actions just performed reported (a rollback's weights and timing) goes
            // into the record this event saves; the last transition would otherwise end the
            // driver before its loop reads them.
            while let Ok(report) = self.reports.try_recv() {
                match report {
                    Report::Log(line) => {
                        self.rec.push_log(line.clone());
                        // No subscriber is fine.
                        let _ = self.feed.send(Feed::Log(line));
                    }
                    Report::Units(units) => queue.push_back(Event::Units(units)),
                }
            }
            let (next, actions) = match machine::step(&self.rec, &self.plan, event, &now()) {
                Ok(x) => x,
                Err(r) if first => return Err(r),
                Err(r) => {
                    tracing::warn!(reason = %r.0, "event refused");
                    continue;
                }
            };
            first = false;
            if let Err(e) = self.state.store().save_deployment(&next).await {
                tracing::error!(error = %chain(&e), "cannot persist the deployment; it stops here and resumes from its last saved phase on restart");
                self.halted = true;
                break;
            }
            let moved = next.phase != self.rec.phase || next.step != self.rec.step;
            if next.epoch != self.rec.epoch {
                self.abort_tasks();
            }
            let before = std::mem::replace(&mut self.rec, next);
            if let Some(h) = &self.hooks {
                h.transition(&before, &self.rec);
            }
            if moved {
                tracing::info!(
                    phase = %self.rec.phase_label(self.plan.steps.len()),
                    "deployment phase"
                );
            }
            let shared = Arc::new(self.rec.clone());
            self.publish.send_replace(shared.clone());
            self.log_dirty = false;
            // No subscriber is fine.
            let _ = self.feed.send(Feed::Transition(shared));
            for action in actions {
                if let Some(e) = self.perform(action).await {
                    queue.push_back(e);
                }
            }
        }
        Ok(())
    }

    fn abort_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// Runs `work` in the background; its event counts only in the current epoch.
    fn background(&mut self, work: impl Future<Output = Event> + Send + 'static) {
        let tx = self.inbox_tx.clone();
        let epoch = self.rec.epoch;
        self.tasks.push(tokio::spawn(async move {
            let event = work.await;
            // The driver may be gone (shutdown); the work is moot then.
            let _ = tx.send(Msg { epoch, event }).await;
        }));
    }

    async fn perform(&mut self, action: Action) -> Option<Event> {
        if let Some(done) = self.perform_rolling(&action).await {
            return done;
        }
        match action {
            Action::Provision => {
                let work = self.provision();
                self.background(work);
                None
            }
            Action::Register(stack) => Some(self.register(stack).await),
            Action::WaitHealthy => {
                let work = self.wait_healthy();
                self.background(work);
                None
            }
            Action::Check { post } => match self.checks(post) {
                Ok(work) => {
                    self.background(work);
                    None
                }
                Err(reason) => Some(Event::Failed(reason)),
            },
            Action::SetWeights(weights) => Some(self.set_weights(weights).await),
            Action::Timer(d) => {
                self.background(async move {
                    tokio::time::sleep(d).await;
                    Event::TimerFired
                });
                None
            }
            Action::SetShadow(setting) => Some(self.set_shadow(setting.map(|s| *s)).await),
            Action::Analyse => {
                self.analyse();
                None
            }
            Action::Retire => Some(self.retire().await),
            Action::RollBack => Some(self.roll_back().await),
            Action::Gate => {
                let work = self.gate();
                self.background(work);
                None
            }
            // Only rolling updates replace batches (handled above).
            Action::RollBatch(_) => None,
        }
    }
}
