//! The embedded process source: replicas of a command on free loopback ports.
//!
//! Each replica gets a port picked by binding `127.0.0.1:0` and releasing it (another program
//! could take it in between; the replica then fails to start and is restarted on the same
//! port, or the start times out), `{port}` substituted in the command. It runs in its own
//! process group with its stdout and stderr going to a log file under the state folder
//! (`replicas/<service>/<stack>/<n>.log`, see `log`), so it never depends on Switchyard
//! being alive. A supervisor task per replica restarts it with exponential backoff whenever
//! it exits, for as long as the stack lives (see `supervisor`).
//!
//! Every stack's replicas are recorded durably through the [`Store`]
//! ([`ProcessStackRecord`]: the command, and each replica's endpoint, PID and start time),
//! updated whoever (re)started a replica. Switchyard leaving — SIGTERM, SIGINT, kill -9 —
//! leaves replicas running unless the owner asked to stop them on exit (the demo);
//! [`ProcessSource::adopt`] on the next start watches the live ones by PID again and starts
//! the gone ones anew on the same endpoints. Stopping sends SIGTERM, waits up to the drain
//! timeout, then SIGKILL — by PID, checked against the process's start time so a reused PID
//! is never signalled.

mod launch;
mod log;
mod pid;
mod rolling;
mod supervisor;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_config::raw;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tracing::Instrument;

use launch::{Launch, free_port, launch, port_of};
use log::{LOG_LIMIT, LogFile};
use pid::{alive, terminate_pid};
use supervisor::{Control, Replica, Supervisor};

use super::{Reporter, Source, SourceError, Target};
use crate::data_plane::BoxFuture;
use crate::deploy::record::{ProcessStackRecord, Unit};
use crate::deploy::spec::SourceSpec;
use crate::error::chain;
use crate::store::{Store, now};

/// How often readiness is probed.
pub(super) const PROBE: Duration = Duration::from_millis(20);
/// How long a SIGKILLed process may take to disappear.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);
/// Drain time for replicas stopped because Switchyard exits (demo) or because their stack is
/// no longer in the desired state at start.
const EXIT_DRAIN: Duration = Duration::from_secs(5);

/// Supervised replicas of one stack.
struct Running {
    control: watch::Sender<Control>,
    tasks: Vec<JoinHandle<()>>,
    units: Arc<watch::Sender<Vec<Unit>>>,
    recorder: JoinHandle<()>,
    reporter: Arc<Mutex<Reporter>>,
}

impl Running {
    /// Tells every supervisor `control`, waits for them, then for the last record.
    async fn end(self, control: Control) {
        self.control.send_replace(control);
        for t in self.tasks {
            if let Err(e) = t.await {
                if e.is_panic() {
                    tracing::error!("replica supervisor panicked");
                }
            }
        }
        // The supervisors' senders are gone; this last one ends the recorder after its save.
        drop(self.units);
        if let Err(e) = self.recorder.await {
            if e.is_panic() {
                tracing::error!("replica recorder panicked");
            }
        }
    }
}

/// The process source, with every stack it supervises.
pub(crate) struct ProcessSource {
    running: Mutex<HashMap<(String, String), Running>>,
    store: Arc<dyn Store>,
    log_dir: PathBuf,
    stop_on_exit: bool,
}

/// One replica about to be supervised.
struct Member {
    launch: Launch,
    endpoint: String,
    replica: Option<Replica>,
    log: LogFile,
}

/// Persists every change of a stack's units until its last sender is gone.
async fn record_units(
    store: Arc<dyn Store>,
    mut record: ProcessStackRecord,
    mut units: watch::Receiver<Vec<Unit>>,
) {
    while units.changed().await.is_ok() {
        record.units = units.borrow_and_update().clone();
        record.updated_at = now();
        if let Err(e) = store.save_process_stack(&record).await {
            tracing::error!(error = %chain(&e), "cannot record the stack's replicas; a restart may not find the current processes");
        }
    }
}

impl ProcessSource {
    /// A source recording stacks in `store`, with replica log files under `log_dir`; on
    /// [`shutdown`](Self::shutdown) replicas are stopped when `stop_on_exit`, else left running.
    pub(crate) fn new(store: Arc<dyn Store>, log_dir: PathBuf, stop_on_exit: bool) -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
            store,
            log_dir,
            stop_on_exit,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Running>> {
        self.running
            .lock()
            .expect("process registry lock is never poisoned")
    }

    fn log_file(&self, service: &str, stack: &str, index: usize) -> LogFile {
        LogFile::new(log::path(&self.log_dir, service, stack, index), LOG_LIMIT)
    }

    /// Starts a supervisor per member and the recorder of `record`.
    fn supervise(
        &self,
        record: &ProcessStackRecord,
        members: Vec<Member>,
        reporter: Reporter,
    ) -> Running {
        let (control, control_rx) = watch::channel(Control::Supervise);
        let (units, units_rx) = watch::channel(record.units.clone());
        let units = Arc::new(units);
        let reporter = Arc::new(Mutex::new(reporter));
        let span =
            tracing::info_span!("replicas", service = %record.service, stack = %record.stack);
        let recorder = tokio::spawn(
            record_units(self.store.clone(), record.clone(), units_rx).instrument(span.clone()),
        );
        let tasks = members
            .into_iter()
            .enumerate()
            .map(|(index, m)| {
                let sup = Supervisor {
                    launch: m.launch,
                    endpoint: m.endpoint,
                    index,
                    units: units.clone(),
                    reporter: reporter.clone(),
                    control: control_rx.clone(),
                    log: m.log,
                };
                let span = tracing::info_span!(parent: &span, "replica", name = %sup.launch.name);
                tokio::spawn(sup.run(m.replica).instrument(span))
            })
            .collect();
        Running {
            control,
            tasks,
            units,
            recorder,
            reporter,
        }
    }

    /// Supervises again, after a restart, the process stacks `records` name: replicas whose
    /// PID and start time are alive are watched by PID, the others are started anew from the
    /// record on the same endpoint. Stacks `keep` refuses (no longer in the desired state and
    /// no deployment of theirs in flight) are stopped and forgotten.
    pub(crate) fn adopt(
        self: &Arc<Self>,
        records: Vec<ProcessStackRecord>,
        keep: impl Fn(&ProcessStackRecord) -> bool,
    ) {
        for rec in records {
            if !keep(&rec) {
                tracing::warn!(service = %rec.service, stack = %rec.stack, "process stack no longer in the desired state; stopping its replicas");
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this
                        .release(&rec.service, &rec.stack, &[], EXIT_DRAIN)
                        .await
                    {
                        tracing::error!(service = %rec.service, stack = %rec.stack, error = %chain(&e), "cannot stop the replicas of a removed stack");
                    }
                });
                continue;
            }
            self.supervise_record(rec);
        }
    }

    /// Supervises `rec`'s stack from now on (replacing any supervision of it): replicas whose
    /// PID and start time are alive are watched by PID, the others are started anew from the
    /// record on the same endpoint.
    pub(crate) fn supervise_record(&self, rec: ProcessStackRecord) {
        let mut members = Vec::new();
        let mut units = Vec::new();
        for (index, unit) in rec.units.iter().enumerate() {
            let l = launch(&rec, index, port_of(&unit.endpoint).unwrap_or(0));
            let mut log = self.log_file(&rec.service, &rec.stack, index);
            let replica = match unit.pid {
                Some(pid) if alive(pid, unit.start_ticks) => {
                    tracing::info!(replica = %l.name, pid, endpoint = %unit.endpoint, "replica re-adopted");
                    log.skip();
                    Some(Replica::Adopted {
                        pid,
                        ticks: unit.start_ticks,
                    })
                }
                _ => match l.spawn(&mut log) {
                    Ok(child) => {
                        tracing::info!(replica = %l.name, pid = ?child.id(), endpoint = %unit.endpoint, "replica was gone; started anew");
                        Some(Replica::Child(child))
                    }
                    Err(e) => {
                        tracing::warn!(replica = %l.name, error = %chain(&e), "replica was gone and cannot be started; retrying with backoff");
                        None
                    }
                },
            };
            units.push(replica.as_ref().map_or_else(
                || Unit {
                    endpoint: unit.endpoint.clone(),
                    pid: None,
                    start_ticks: None,
                    container: None,
                },
                |r| r.unit(&unit.endpoint),
            ));
            members.push(Member {
                launch: l,
                endpoint: unit.endpoint.clone(),
                replica,
                log,
            });
        }
        let running = self.supervise(&rec, members, Reporter::detached());
        if units != rec.units {
            running.units.send_replace(units);
        }
        let key = (rec.service.clone(), rec.stack.clone());
        if let Some(old) = self.registry().insert(key, running) {
            // Replaced supervision lets go of its replicas: detach, never kill.
            tokio::spawn(old.end(Control::Detach));
        }
    }

    /// Ends supervision of every stack as Switchyard exits: replicas keep running (the next
    /// start re-adopts them) unless this source was made to stop them on exit.
    pub(crate) async fn shutdown(&self) {
        let all: Vec<Running> = self.registry().drain().map(|(_, r)| r).collect();
        if all.is_empty() {
            return;
        }
        let control = if self.stop_on_exit {
            Control::Stop(EXIT_DRAIN)
        } else {
            Control::Detach
        };
        for r in &all {
            r.control.send_replace(control);
        }
        let stacks = all.len();
        for r in all {
            r.end(control).await;
        }
        if self.stop_on_exit {
            tracing::info!(stacks, "replicas stopped on exit");
        } else {
            tracing::info!(
                stacks,
                "replicas left running; the next start re-adopts them"
            );
        }
    }
}

/// Stops, without a drain, children started for a provision that failed halfway.
async fn abandon(members: Vec<Member>) {
    for mut m in members {
        if let Some(r) = m.replica.as_mut() {
            r.terminate(Duration::ZERO).await;
        }
    }
}

impl Source for ProcessSource {
    fn provision<'a>(
        &'a self,
        target: &'a Target<'a>,
        report: Reporter,
    ) -> BoxFuture<'a, Result<raw::Stack, SourceError>> {
        Box::pin(async move {
            let SourceSpec::Process(p) = &target.spec.source else {
                return Ok(target.stack(Vec::new(), None));
            };
            let mut record = ProcessStackRecord {
                service: target.service.to_owned(),
                stack: target.spec.stack.clone(),
                version: target.spec.version.clone(),
                process: p.clone(),
                base_dir: target.base_dir.to_string_lossy().into_owned(),
                units: Vec::new(),
                updated_at: now(),
            };
            let mut members = Vec::new();
            for index in 0..p.replicas.unwrap_or(1) as usize {
                let port = match free_port() {
                    Ok(p) => p,
                    Err(e) => {
                        abandon(members).await;
                        return Err(e);
                    }
                };
                let l = launch(&record, index, port);
                let endpoint = format!("127.0.0.1:{port}");
                let mut log = self.log_file(&record.service, &record.stack, index);
                match l.spawn(&mut log) {
                    Ok(child) => {
                        let replica = Replica::Child(child);
                        let unit = replica.unit(&endpoint);
                        report.log(
                            &l.name,
                            format!(
                                "started pid {} on {endpoint}",
                                unit.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                            ),
                        );
                        record.units.push(unit);
                        members.push(Member {
                            launch: l,
                            endpoint,
                            replica: Some(replica),
                            log,
                        });
                    }
                    Err(e) => {
                        abandon(members).await;
                        return Err(e);
                    }
                }
            }
            if let Err(e) = self.store.save_process_stack(&record).await {
                abandon(members).await;
                return Err(SourceError::Record(e));
            }
            report.units(record.units.clone()).await;
            let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
            let running = self.supervise(&record, members, report);
            let key = (record.service.clone(), record.stack.clone());
            let replaced = self.registry().insert(key, running);
            if let Some(old) = replaced {
                old.end(Control::Stop(Duration::ZERO)).await;
            }
            for e in &endpoints {
                wait_listening(e, target.start_timeout).await?;
            }
            Ok(target.stack(endpoints, None))
        })
    }

    fn release<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let mut known: Vec<Unit> = units.to_vec();
            let running = self
                .registry()
                .remove(&(service.to_owned(), stack.to_owned()));
            if let Some(r) = running {
                known.extend(r.units.borrow().iter().cloned());
                r.end(Control::Stop(drain)).await;
            }
            // Replicas of a previous Switchyard process, or restarted ones the supervisors no
            // longer hold: stop them by PID, from the durable record too.
            match self.store.load_process_stacks().await {
                Ok(all) => known.extend(
                    all.into_iter()
                        .filter(|r| r.service == service && r.stack == stack)
                        .flat_map(|r| r.units),
                ),
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "cannot read the process stack records; stopping the known replicas only")
                }
            }
            let mut survivors = Vec::new();
            let mut seen = Vec::new();
            for u in known {
                let Some(pid) = u.pid else { continue };
                if seen.contains(&(pid, u.start_ticks)) {
                    continue;
                }
                seen.push((pid, u.start_ticks));
                if !terminate_pid(pid, u.start_ticks, drain).await {
                    survivors.push(pid);
                }
            }
            if !survivors.is_empty() {
                return Err(SourceError::Survivors { pids: survivors });
            }
            self.store
                .remove_process_stack(service, stack)
                .await
                .map_err(SourceError::Record)?;
            let logs = self.log_dir.join(service).join(stack);
            if let Err(e) = std::fs::remove_dir_all(&logs) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %logs.display(), error = %e, "cannot remove the replicas' log files");
                }
            }
            Ok(())
        })
    }

    fn attach(&self, service: &str, stack: &str, report: Reporter) {
        let registry = self.registry();
        let Some(r) = registry.get(&(service.to_owned(), stack.to_owned())) else {
            return;
        };
        *r.reporter.lock().expect("reporter lock is never poisoned") = report.clone();
        let units = r.units.borrow().clone();
        tokio::spawn(async move { report.units(units).await });
    }
}

async fn wait_listening(endpoint: &str, limit: Duration) -> Result<(), SourceError> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(endpoint).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SourceError::NotListening {
                endpoint: endpoint.to_owned(),
                timeout: limit,
            });
        }
        sleep(PROBE).await;
    }
}
