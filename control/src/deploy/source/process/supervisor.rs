//! One replica's keeper: waits for the replica to exit and restarts it with exponential
//! backoff, records each new process durably, tails its log file, and stops it — or leaves it
//! running — when told.
//!
//! The replica is either our child (started here: waited on directly) or adopted (started by
//! an earlier Switchyard process: watched by PID and start time, polling `/proc`). A supervisor
//! only ever stops its replica on an explicit [`Control::Stop`]; [`Control::Detach`] and a
//! dropped control channel both end supervision and leave the replica running, so a
//! shutdown (or a runtime tearing tasks down) never kills a live replica by accident.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, sleep, timeout};

use super::KILL_WAIT;
use super::launch::Launch;
use super::log::LogFile;
use super::pid::{alive, signal, start_ticks, terminate_pid};
use crate::deploy::record::Unit;
use crate::deploy::source::Reporter;
use crate::error::chain;

/// First restart delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A replica that ran this long restarts with the first delay again.
const STABLE: Duration = Duration::from_secs(10);
/// How often an adopted replica's liveness is checked (it is not our child: no exit status).
const ADOPTED_POLL: Duration = Duration::from_millis(50);
/// How often the log file is tailed and its size checked.
const TAIL: Duration = Duration::from_millis(100);

/// What the owner of a stack asks of its supervisors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Control {
    /// Keep the replica running.
    Supervise,
    /// Stop the replica: SIGTERM, up to this drain time, then SIGKILL.
    Stop(Duration),
    /// Stop supervising; the replica keeps running (a later start re-adopts it).
    Detach,
}

/// Resolves once supervision must end (a dropped sender detaches; it never stops).
async fn wanted(control: &mut watch::Receiver<Control>) -> Control {
    match control.wait_for(|c| *c != Control::Supervise).await {
        Ok(c) => *c,
        Err(_) => Control::Detach,
    }
}

/// A running replica.
#[derive(Debug)]
pub(super) enum Replica {
    /// Started by this process.
    Child(Child),
    /// Started by an earlier Switchyard process, watched by PID and start time.
    Adopted { pid: u32, ticks: Option<u64> },
}

impl Replica {
    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Self::Child(c) => c.id(),
            Self::Adopted { pid, .. } => Some(*pid),
        }
    }

    pub(super) fn unit(&self, endpoint: &str) -> Unit {
        let pid = self.pid();
        Unit {
            endpoint: endpoint.to_owned(),
            pid,
            start_ticks: match self {
                Self::Child(_) => pid.and_then(start_ticks),
                Self::Adopted { ticks, .. } => *ticks,
            },
            container: None,
        }
    }

    /// Waits for the replica to end; how it ended.
    async fn exited(&mut self) -> String {
        match self {
            Self::Child(c) => c
                .wait()
                .await
                .map_or_else(|e| e.to_string(), |s| s.to_string()),
            Self::Adopted { pid, ticks } => {
                while alive(*pid, *ticks) {
                    sleep(ADOPTED_POLL).await;
                }
                "adopted process gone".to_owned()
            }
        }
    }

    /// SIGTERM, up to `drain` for it to exit, then SIGKILL.
    pub(super) async fn terminate(&mut self, drain: Duration) {
        match self {
            Self::Child(c) => {
                if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
                    signal(pid, Signal::SIGTERM);
                }
                if timeout(drain, c.wait()).await.is_err() {
                    if let Some(pid) = c.id().and_then(|p| i32::try_from(p).ok()) {
                        signal(pid, Signal::SIGKILL);
                    }
                    // Bounded: a process that survives SIGKILL is reported by the release.
                    let _ = timeout(KILL_WAIT, c.wait()).await;
                }
            }
            Self::Adopted { pid, ticks } => {
                terminate_pid(*pid, *ticks, drain).await;
            }
        }
    }
}

/// One replica's keeper.
pub(super) struct Supervisor {
    pub(super) launch: Launch,
    pub(super) endpoint: String,
    pub(super) index: usize,
    /// The stack's current units; a recorder task persists every change.
    pub(super) units: Arc<watch::Sender<Vec<Unit>>>,
    /// Where log lines and units go: the driver following the stack, if any.
    pub(super) reporter: Arc<Mutex<Reporter>>,
    pub(super) control: watch::Receiver<Control>,
    pub(super) log: LogFile,
}

impl Supervisor {
    fn reporter(&self) -> Reporter {
        self.reporter
            .lock()
            .expect("reporter lock is never poisoned")
            .clone()
    }

    fn say(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(replica = %self.launch.name, "{line}");
        self.reporter().log(&self.launch.name, line);
    }

    fn tail(&mut self) {
        let report = self.reporter();
        self.log.tail(&report, &self.launch.name);
    }

    /// Keeps the replica running until told otherwise; `first` is the replica as found
    /// (`None`: it could not be started, try again after the first backoff).
    pub(super) async fn run(mut self, first: Option<Replica>) {
        let mut current = first;
        let mut backoff = FIRST_BACKOFF;
        let mut tick = tokio::time::interval(TAIL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let Some(mut replica) = current.take() else {
                if self.pause(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                current = self.respawn().await;
                continue;
            };
            let since = Instant::now();
            let status = loop {
                tokio::select! {
                    status = replica.exited() => break Some(status),
                    c = wanted(&mut self.control) => {
                        if let Control::Stop(drain) = c {
                            self.say("stopping");
                            replica.terminate(drain).await;
                        } else {
                            tracing::info!(replica = %self.launch.name, pid = ?replica.pid(), "supervision detached; the replica keeps running");
                        }
                        break None;
                    }
                    _ = tick.tick() => self.tail(),
                }
            };
            self.tail();
            let Some(status) = status else { return };
            if since.elapsed() >= STABLE {
                backoff = FIRST_BACKOFF;
            }
            self.say(format!("exited ({status}); restarting in {backoff:?}"));
            if self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            current = self.respawn().await;
        }
    }

    /// Sleeps `d`; true when supervision must end meanwhile (nothing runs to stop).
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = sleep(d) => false,
            _ = wanted(&mut self.control) => true,
        }
    }

    async fn respawn(&mut self) -> Option<Replica> {
        match self.launch.spawn(&mut self.log) {
            Ok(c) => {
                let replica = Replica::Child(c);
                let unit = replica.unit(&self.endpoint);
                self.say(format!(
                    "restarted as pid {}",
                    unit.pid.map_or_else(|| "?".to_owned(), |p| p.to_string())
                ));
                self.units.send_modify(|u| {
                    if let Some(slot) = u.get_mut(self.index) {
                        *slot = unit;
                    }
                });
                let units = self.units.borrow().clone();
                self.reporter().units(units).await;
                Some(replica)
            }
            Err(e) => {
                self.say(chain(&e));
                None
            }
        }
    }
}
