//! Deployments: a new stack next to the live one, checked, shifted to, and the previous one
//! retired — or everything put back exactly as it was.
//!
//! [`Deployments`] is the registry every handler and driver shares: it validates and starts
//! deployments (one per service at a time), hands operator commands to the driver of a
//! running one, and answers reads from the latest record each driver published. The logic is
//! the pure state machine in `machine`; each running deployment has one `driver` task that
//! persists every record (through the [`Store`](crate::Store)) before acting on it. On start,
//! deployments found in flight resume from their persisted phase or roll back (see
//! `machine`). The new stack's endpoints come from a `source` (endpoints, DNS, or processes
//! Switchyard starts itself); checks are in `check`. Around that core: `webhook` (signed notes
//! of each transition, delivered by tasks the driver owns), `gate` (approval points the
//! machine waits at), `rolling` (a process stack's replicas replaced in place, batch by
//! batch), `dry_run` (every check and the plan, changing nothing); `outbound` is the one HTTP
//! client they and the checks share.
//!
//! This module never changes the desired state itself: every change goes through the writer
//! as an API write would, named after the token that started the deployment.

mod analysis;
mod check;
mod driver;
pub(crate) mod dry_run;
mod gate;
mod machine;
mod outbound;
mod plan;
mod record;
mod removed;
mod rolling;
mod shadow;
mod source;
mod spec;
mod standby;
mod takeover;
mod undo;
mod view;
mod webhook;

#[cfg(test)]
mod tests;

pub use analysis::{AnalysisRecord, AnalysisWindow, WindowFigures};
pub use dry_run::{DryRunView, PlannedPhase};
pub use gate::GateSpec;
pub use record::{
    Before, CheckResult, DeploymentRecord, LogLine, Phase, ProcessStackRecord, Standby, Unit,
    Waiting,
};
pub use rolling::RollingSpec;
pub use source::SourceError;
pub use source::container::ContainerError;
pub use spec::{
    AnalysisSpec, BaselineSpec, CheckSpec, ContainerSpec, DeploymentSpec, HealthSource,
    HttpCheckSpec, JsonExpectation, ProcessSpec, PullPolicy, ResourcesSpec, RetireSpec, SourceSpec,
    StepSpec, StrategySpec,
};
pub use view::{DeploymentList, DeploymentSummary, DeploymentView, GateView, StepView, UnitView};
pub use webhook::WebhookStatus;

pub(crate) use machine::Command;
pub(crate) use plan::validate as validate_spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::ControlState;
use crate::store::{DriverLock, now};
use driver::{Channels, CommandMsg, Driver};
use record::Waiting as Wait;
use source::container::ContainerSource;
use source::process::ProcessSource;
use source::{Replicas, Source, StaticSource};

/// Events a deployment's followers receive.
#[derive(Debug, Clone)]
pub(crate) enum Feed {
    /// The record after a transition.
    Transition(Arc<DeploymentRecord>),
    /// A new log line.
    Log(LogLine),
}

/// Room for events of a slow follower before it misses some (it then gets a fresh record).
const FEED_CAPACITY: usize = 512;

/// One deployment as the registry holds it.
#[derive(Clone)]
struct Entry {
    record: watch::Receiver<Arc<DeploymentRecord>>,
    commands: mpsc::Sender<CommandMsg>,
    feed: broadcast::Sender<Feed>,
}

/// Every deployment, by service and id, and the sources they use.
pub(crate) struct Deployments {
    entries: Mutex<BTreeMap<(String, u64), Entry>>,
    processes: Arc<ProcessSource>,
    containers: Arc<ContainerSource>,
    statics: Arc<StaticSource>,
    base_dir: PathBuf,
    shutdown: watch::Receiver<bool>,
    idempotent: tokio::sync::Mutex<()>,
    /// Held by a standby's retirement and by a rollback, so they never overlap.
    standby_lock: tokio::sync::Mutex<()>,
}

/// What the process and container sources need: where to record stacks and write replica
/// logs, the Docker Engine and the owner label of containers (the state folder), and what
/// Switchyard's exit does to replicas.
pub(crate) struct ProcessOptions {
    pub(crate) store: Arc<dyn crate::store::Store>,
    pub(crate) log_dir: PathBuf,
    pub(crate) stop_on_exit: bool,
    pub(crate) docker_host: Option<String>,
    pub(crate) owner: String,
}

impl Deployments {
    pub(crate) fn new(
        base_dir: PathBuf,
        shutdown: watch::Receiver<bool>,
        processes: ProcessOptions,
    ) -> Self {
        let docker_host = processes
            .docker_host
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| source::container::DEFAULT_DOCKER_HOST.to_owned());
        Self {
            entries: Mutex::new(BTreeMap::new()),
            containers: Arc::new(ContainerSource::new(
                docker_host,
                processes.owner,
                processes.stop_on_exit,
            )),
            processes: Arc::new(ProcessSource::new(
                processes.store,
                processes.log_dir,
                processes.stop_on_exit,
            )),
            statics: Arc::new(StaticSource),
            base_dir,
            shutdown,
            idempotent: tokio::sync::Mutex::new(()),
            standby_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// On start, before [`resume`](Self::resume): supervises again the replicas of every
    /// process stack still in `desired` (or deployed by a deployment in `in_flight`), and
    /// stops those of stacks that are gone. A succeeded process deployment whose stack has no
    /// record (saved by an older build) is adopted from the deployment's units.
    pub(crate) fn adopt_processes(
        &self,
        desired: &switchyard_config::Config,
        mut records: Vec<ProcessStackRecord>,
        deployments: &[DeploymentRecord],
    ) {
        for d in deployments {
            let SourceSpec::Process(p) = &d.spec.source else {
                continue;
            };
            let recorded = records
                .iter()
                .any(|r| r.service == d.service && r.stack == d.spec.stack);
            if d.phase == Phase::Succeeded && !recorded && !d.units.is_empty() {
                records.push(ProcessStackRecord {
                    service: d.service.clone(),
                    stack: d.spec.stack.clone(),
                    version: d.spec.version.clone(),
                    process: p.clone(),
                    base_dir: self.base_dir.to_string_lossy().into_owned(),
                    units: d.units.clone(),
                    updated_at: now(),
                });
            }
        }
        let keep = |r: &ProcessStackRecord| {
            desired
                .service(&r.service)
                .is_some_and(|s| s.stack(&r.stack).is_some())
                || deployments.iter().any(|d| {
                    !d.phase.is_terminal() && d.service == r.service && d.spec.stack == r.stack
                })
        };
        self.processes.adopt(records, keep);
        // Containers: the Engine is their record; those of stacks still wanted are kept.
        let wanted: Vec<(String, String)> = desired
            .services()
            .iter()
            .flat_map(|s| {
                s.stacks()
                    .iter()
                    .map(|st| (s.name().to_string(), st.name().to_string()))
            })
            .chain(
                deployments
                    .iter()
                    .filter(|d| !d.phase.is_terminal())
                    .map(|d| (d.service.clone(), d.spec.stack.clone())),
            )
            .collect();
        let expected = deployments
            .iter()
            .any(|d| matches!(d.spec.source, SourceSpec::Container(_)));
        self.containers.adopt(
            move |service, stack| wanted.iter().any(|(s, st)| s == service && st == stack),
            expected,
        );
    }

    /// As Switchyard exits: ends the supervision of every replica (stopping them only when
    /// asked to at start).
    pub(crate) async fn shutdown_processes(&self) {
        self.processes.shutdown().await;
        self.containers.shutdown().await;
    }

    /// Stops the replicas of a process or container stack being retired (its current
    /// processes or containers, whoever started them, and `units` as a deployment recorded
    /// them); nothing for other stacks. `spec` is the deployment that made the stack, if known.
    pub(crate) async fn release_stack(
        &self,
        service: &str,
        stack: &str,
        spec: Option<&DeploymentSpec>,
        units: &[Unit],
        drain: std::time::Duration,
    ) -> Result<(), SourceError> {
        if spec.is_some_and(|s| matches!(s.source, SourceSpec::Container(_))) {
            return self.containers.release(service, stack, units, drain).await;
        }
        self.processes.release(service, stack, units, drain).await
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, u64), Entry>> {
        self.entries
            .lock()
            .expect("deployment registry lock is never poisoned")
    }

    /// Turns true when the process shuts down.
    pub(crate) fn shutdown(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub(crate) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(crate) fn source_for(&self, spec: &DeploymentSpec) -> Arc<dyn Source> {
        match spec.source {
            SourceSpec::Process(_) => self.processes.clone(),
            SourceSpec::Container(_) => self.containers.clone(),
            SourceSpec::Endpoints(_) | SourceSpec::Dns(_) => self.statics.clone(),
        }
    }

    /// The source that replaces `spec`'s stack's replicas in a rolling update: process or
    /// container; `None` for the others.
    pub(crate) fn replicas_for(&self, spec: &DeploymentSpec) -> Option<Arc<dyn Replicas>> {
        match spec.source {
            SourceSpec::Process(_) => Some(self.processes.clone()),
            SourceSpec::Container(_) => Some(self.containers.clone()),
            SourceSpec::Endpoints(_) | SourceSpec::Dns(_) => None,
        }
    }

    /// Registers `rec` and starts its driver (unless it is finished). With a shared store the
    /// driver holds `lock` (the service's deployment lock) for as long as it runs.
    fn launch(
        &self,
        state: &ControlState,
        rec: DeploymentRecord,
        resumed: bool,
        lock: Option<DriverLock>,
    ) {
        let plan = plan::validate(&rec.spec);
        let key = (rec.service.clone(), rec.id);
        let terminal = rec.phase.is_terminal();
        let span = tracing::info_span!("deploy", service = %rec.service, id = rec.id);
        // A resumed deployment redoes its phase's work before it waits again: until its driver
        // says otherwise, readers must not see it waiting (a promote would be refused).
        let mut shown = rec.clone();
        if resumed && !terminal {
            shown.waiting = Waiting::Work;
        }
        let (publish, record) = watch::channel(Arc::new(shown));
        let (commands_tx, commands) = mpsc::channel(16);
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        self.entries().insert(
            key,
            Entry {
                record,
                commands: commands_tx,
                feed: feed.clone(),
            },
        );
        if terminal {
            return;
        }
        match plan {
            Ok(plan) => {
                let channels = Channels {
                    publish,
                    feed,
                    commands,
                };
                let d = Driver::new(state.clone(), rec, plan, channels, self.shutdown.clone());
                tokio::spawn(
                    async move {
                        d.run(resumed).await;
                        // Released only once the driver stopped acting.
                        drop(lock);
                    }
                    .instrument(span),
                );
            }
            Err(problems) => {
                span.in_scope(|| {
                    tracing::error!(problems = ?problems, "saved deployment no longer validates; left as it is");
                });
            }
        }
    }

    /// Registers the saved deployments and resumes (or rolls back) those in flight. With a
    /// shared store, deployments in flight are driven by whichever instance takes their lock
    /// (see `takeover`), this one included.
    pub(crate) fn resume(self: &Arc<Self>, state: &ControlState, records: Vec<DeploymentRecord>) {
        if state.store().shared().is_some() {
            for rec in records {
                self.observe(rec);
            }
            takeover::spawn(self.clone(), state.clone());
            return;
        }
        let mut standby = Vec::new();
        for rec in records {
            let resumed = !rec.phase.is_terminal();
            if resumed {
                tracing::warn!(service = %rec.service, id = rec.id, phase = rec.phase.as_str(), "resuming an interrupted deployment");
            } else if rec.standby.is_some() {
                standby.push(rec.clone());
            }
            self.launch(state, rec, resumed, None);
        }
        // Once every deployment is registered (a retirement waits for a running one). The
        // retirement time is in the record: a restart keeps it.
        for rec in standby {
            self.schedule_standby(state, &rec);
        }
    }

    /// Shows `rec` (driven by another instance, or finished) to readers, unless this instance
    /// drives it.
    fn observe(&self, rec: DeploymentRecord) {
        let key = (rec.service.clone(), rec.id);
        let mut entries = self.entries();
        if let Some(e) = entries.get(&key) {
            let shown = e.record.borrow();
            if !e.commands.is_closed()
                || (shown.updated_at == rec.updated_at && shown.phase == rec.phase)
            {
                return;
            }
        }
        let (_, record) = watch::channel(Arc::new(rec));
        let (commands, _) = mpsc::channel(1);
        let (feed, _) = broadcast::channel(1);
        entries.insert(
            key,
            Entry {
                record,
                commands,
                feed,
            },
        );
    }

    /// Whether this instance runs the driver of deployment `key`.
    fn drives(&self, key: &(String, u64)) -> bool {
        self.entries()
            .get(key)
            .is_some_and(|e| !e.commands.is_closed())
    }

    /// Everything [`start`](Self::start) checks before it hands out an id (the dry run's
    /// checks too): the plan, and the service's revision when it passed.
    pub(crate) fn admit(
        &self,
        state: &ControlState,
        service: &str,
        if_match: Option<u64>,
        spec: &DeploymentSpec,
    ) -> Result<(plan::Plan, u64), ApiError> {
        let spec = spec.clone();
        let published = state.published();
        let current = published
            .config
            .service(service)
            .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
        // Every field is checked before an id is handed out: the deployment's own (strategy,
        // checks, durations) and the stack it will register, by the rules of every stack
        // write. All problems at once, each naming its field.
        let (plan, stack) = match (
            plan::validate(&spec),
            plan::stack(&spec, service, &self.base_dir),
        ) {
            (Ok(plan), Ok(stack)) => (plan, stack),
            (Err(mut problems), Err(ApiError::Invalid(more))) => {
                problems.push(more);
                return Err(ApiError::Invalid(problems.join("; ")));
            }
            (Err(problems), _) => return Err(ApiError::Invalid(problems.join("; "))),
            (Ok(_), Err(e)) => return Err(e),
        };
        let shared = state.store().shared();
        if shared.is_some() && matches!(spec.source, SourceSpec::Process(_)) {
            return Err(ApiError::InvalidBody("source.process: process replicas belong to the instance that starts them, so with [store] kind = \"etcd\" deploy endpoints or dns stacks".into()));
        }
        let record = published.records.get(service);
        let revision = record.map_or(0, |r| r.revision);
        let rolling = plan.rolling.is_some();
        if rolling {
            self.admit_rolling(current, &spec)?;
        } else if current.stack(&spec.stack).is_some() {
            return Err(ApiError::Conflict(format!(
                "stack {:?} exists already in service {service:?}: deploy under another name, or delete it first",
                spec.stack
            )));
        }
        if let Some(expected) = if_match {
            if expected != revision {
                return Err(ApiError::RevisionMismatch {
                    service: service.to_owned(),
                    expected,
                    current: revision,
                });
            }
        }
        if !plan.post.is_empty() {
            if current.pin_header().is_none() {
                return Err(ApiError::Invalid("post_integration: the service has pinning disabled (pin_header = \"\"), so checks cannot reach the new stack alone".into()));
            }
            driver::public_listener(state.data_plane().as_ref(), current)
                .map_err(|e| ApiError::Invalid(format!("post_integration: {e}")))?;
        }
        if let SourceSpec::Endpoints(eps) = &spec.source {
            if !plan.pre.is_empty() && eps.iter().any(|e| e.starts_with("https://")) {
                return Err(ApiError::Invalid(
                    "pre_integration: checks reach plain-HTTP endpoints only".into(),
                ));
            }
        }
        let time = now();
        // A dry run of the write that will register the stack: whatever it would refuse is
        // refused now, not after provisioning.
        if !rolling {
            crate::change::plan(
                &published.config,
                &published.records,
                service,
                None,
                &crate::change::Change::AddStack(Box::new(stack)),
                &self.base_dir,
                &time,
            )?;
        }
        self.last_id(service)?;
        Ok((plan, revision))
    }

    /// The highest deployment id of `service` (0 for none); a conflict while one is in
    /// progress.
    fn last_id(&self, service: &str) -> Result<u64, ApiError> {
        let entries = self.entries();
        let mine = entries.range((service.to_owned(), 0)..=(service.to_owned(), u64::MAX));
        let mut last = 0;
        for ((_, id), e) in mine {
            last = last.max(*id);
            let r = e.record.borrow();
            if !r.phase.is_terminal() {
                return Err(ApiError::Conflict(format!(
                    "deployment {} of service {service:?} is in progress ({}); one deployment per service at a time",
                    r.id,
                    r.phase.as_str()
                )));
            }
        }
        Ok(last)
    }

    /// Serialises requests carrying an `Idempotency-Key` (look-up, start, remember), so two
    /// retries racing each other cannot both start a deployment.
    pub(crate) fn idempotency_gate(&self) -> &tokio::sync::Mutex<()> {
        &self.idempotent
    }

    /// Validates and starts a deployment of `service`.
    pub(crate) async fn start(
        &self,
        state: &ControlState,
        caller: &str,
        service: &str,
        if_match: Option<u64>,
        spec: DeploymentSpec,
    ) -> Result<Arc<DeploymentRecord>, ApiError> {
        self.start_as(state, caller, service, if_match, spec, None)
            .await
    }

    /// [`start`](Self::start), for a rollback when `undo_of` names the deployment it undoes.
    async fn start_as(
        &self,
        state: &ControlState,
        caller: &str,
        service: &str,
        if_match: Option<u64>,
        mut spec: DeploymentSpec,
        undo_of: Option<u64>,
    ) -> Result<Arc<DeploymentRecord>, ApiError> {
        self.complete_rolling(service, &mut spec);
        self.admit(state, service, if_match, &spec)?;
        let published = state.published();
        let current = published
            .config
            .service(service)
            .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
        let record = published.records.get(service);
        let revision = record.map_or(0, |r| r.revision);
        let time = now();
        // With a shared store: the lock first (one driver per service across instances),
        // then the ids and phases every instance saved.
        let (lock, stored_last) = match state.store().shared() {
            None => (None, 0),
            Some(shared) => {
                let lock = shared
                    .lock_deployment(service)
                    .await
                    .map_err(ApiError::from_store)?
                    .ok_or_else(|| {
                        ApiError::Conflict(format!(
                            "a deployment of service {service:?} is in progress on another instance; one deployment per service at a time"
                        ))
                    })?;
                let stored = state
                    .store()
                    .load_deployments()
                    .await
                    .map_err(ApiError::from_store)?;
                let mut last = 0;
                for r in stored.iter().filter(|r| r.service == service) {
                    last = last.max(r.id);
                    if !r.phase.is_terminal() {
                        return Err(ApiError::Conflict(format!(
                            "deployment {} of service {service:?} is in progress ({}); one deployment per service at a time",
                            r.id,
                            r.phase.as_str()
                        )));
                    }
                }
                (Some(lock), last)
            }
        };
        let rec = {
            let last = self.last_id(service)?.max(stored_last);
            DeploymentRecord {
                id: last + 1,
                service: service.to_owned(),
                spec,
                created_by: caller.to_owned(),
                created_at: time.clone(),
                updated_at: time,
                finished_at: None,
                phase: Phase::Provisioning,
                step: 0,
                waiting: Wait::Work,
                paused: false,
                pending: false,
                retire_started: false,
                epoch: 0,
                weights: BTreeMap::new(),
                before: Before {
                    revision,
                    origin: record.map_or(crate::store::Origin::File, |r| r.origin),
                    spec: current.to_raw(),
                    promotions: record.map(|r| r.promotions.clone()).unwrap_or_default(),
                },
                stack: None,
                units: Vec::new(),
                checks: Vec::new(),
                reason: None,
                left: None,
                log: Vec::new(),
                webhooks: Vec::new(),
                analysis: Default::default(),
                standby: None,
                undone_by: None,
                undo_of,
            }
        };
        // Registered before the save so a second request is refused meanwhile; removed
        // again if the save fails.
        let key = (service.to_owned(), rec.id);
        let (hold, record) = watch::channel(Arc::new(rec.clone()));
        let (commands, _) = mpsc::channel(1);
        let (feed, _) = broadcast::channel(1);
        {
            let mut entries = self.entries();
            if entries.contains_key(&key) {
                return Err(ApiError::Conflict(format!(
                    "another deployment of service {service:?} started at the same time"
                )));
            }
            entries.insert(
                key.clone(),
                Entry {
                    record,
                    commands,
                    feed,
                },
            );
        }
        if let Err(e) = state.store().save_deployment(&rec).await {
            self.entries().remove(&key);
            return Err(ApiError::from_store(e));
        }
        drop(hold);
        tracing::info!(service, id = rec.id, stack = %rec.spec.stack, version = %rec.spec.version, token = caller, "deployment started");
        let started = Arc::new(rec.clone());
        self.launch(state, rec, false, lock);
        Ok(started)
    }

    /// The latest record of one deployment.
    pub(crate) fn get(&self, service: &str, id: u64) -> Option<Arc<DeploymentRecord>> {
        self.entries()
            .get(&(service.to_owned(), id))
            .map(|e| e.record.borrow().clone())
    }

    /// Every deployment of `service`, newest first.
    pub(crate) fn list(&self, service: &str) -> Vec<Arc<DeploymentRecord>> {
        let entries = self.entries();
        let mut out: Vec<Arc<DeploymentRecord>> = entries
            .range((service.to_owned(), 0)..=(service.to_owned(), u64::MAX))
            .map(|(_, e)| e.record.borrow().clone())
            .collect();
        out.reverse();
        out
    }

    /// The phase of every deployment, by service and id (for the metrics).
    pub(crate) fn phases(&self) -> Vec<(String, u64, Phase)> {
        self.entries()
            .iter()
            .map(|((service, id), e)| (service.clone(), *id, e.record.borrow().phase))
            .collect()
    }

    /// The deployment in progress on `service`, if any.
    pub(crate) fn active(&self, service: &str) -> Option<Arc<DeploymentRecord>> {
        self.list(service)
            .into_iter()
            .find(|r| !r.phase.is_terminal())
    }

    /// The current record and a feed of what follows (subscribed first, so nothing is missed).
    pub(crate) fn follow(
        &self,
        service: &str,
        id: u64,
    ) -> Option<(Arc<DeploymentRecord>, broadcast::Receiver<Feed>)> {
        let entries = self.entries();
        let e = entries.get(&(service.to_owned(), id))?;
        let rx = e.feed.subscribe();
        let rec = e.record.borrow().clone();
        Some((rec, rx))
    }

    /// Hands an operator command to the deployment's driver and waits for the outcome.
    pub(crate) async fn command(
        &self,
        service: &str,
        id: u64,
        command: Command,
    ) -> Result<Arc<DeploymentRecord>, ApiError> {
        let entry = self
            .entries()
            .get(&(service.to_owned(), id))
            .cloned()
            .ok_or_else(|| {
                ApiError::NotFound(format!("no deployment {id} of service {service:?}"))
            })?;
        let word = command.as_str();
        let finished = || {
            let r = entry.record.borrow();
            if !r.phase.is_terminal() {
                // Shown here but not driven here: by another instance with a shared store, or
                // nowhere until a restart resumes it.
                return ApiError::Conflict(format!(
                    "cannot {word} here: deployment {id} ({}) has no driver on this instance; with [store] kind = \"etcd\" send the command to the instance driving it (GET /v1/instances)",
                    r.phase.as_str()
                ));
            }
            ApiError::Conflict(format!(
                "cannot {word}: deployment {id} has {}",
                r.phase.as_str()
            ))
        };
        let (reply, answer) = oneshot::channel();
        if entry
            .commands
            .send(CommandMsg { command, reply })
            .await
            .is_err()
        {
            return Err(finished());
        }
        match answer.await {
            Ok(Ok(rec)) => Ok(rec),
            Ok(Err(refusal)) => Err(ApiError::Conflict(refusal.0)),
            Err(_) => Err(finished()),
        }
    }

    /// The source and units of the stack `stack` of `service` as its latest successful
    /// deployment started them (to stop them when the stack is retired).
    pub(crate) fn units_of(
        &self,
        service: &str,
        stack: &str,
    ) -> Option<(DeploymentSpec, Vec<Unit>)> {
        self.list(service)
            .into_iter()
            .find(|r| r.spec.stack == stack && r.phase == Phase::Succeeded)
            .map(|r| (r.spec.clone(), r.units.clone()))
    }
}
