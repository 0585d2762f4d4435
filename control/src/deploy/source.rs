//! Where a new stack's endpoints come from, behind the [`Source`] trait.
//!
//! A source provisions the stack (starts whatever it needs and returns the stack to register
//! with the proxy) and releases it (stops what it started: drain, then force). Endpoints
//! started elsewhere and DNS names need nothing started ([`StaticSource`]); the embedded
//! process source starts replicas ([`process::ProcessSource`]), the container source
//! runs them on the Docker Engine ([`container::ContainerSource`]). Kubernetes would be a
//! further implementation: report the units it starts through the
//! [`Reporter`] as soon as they exist (so they are persisted before any wait), and release
//! them from the persisted units alone (so a release works after a restart).

pub(crate) mod container;
mod port;
pub(crate) mod process;

use std::path::PathBuf;
use std::time::Duration;

use switchyard_config::raw;
use tokio::sync::mpsc;

use super::record::{LogLine, Unit};
use super::spec::{DeploymentSpec, SourceSpec};
use crate::data_plane::BoxFuture;
use crate::store::now;

/// Why a source could not provision or release a stack.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A process could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A replica's log file could not be opened.
    #[error("cannot open the log file of replica {name}")]
    Log {
        /// The replica, e.g. `green-0`.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No free loopback port could be had.
    #[error("cannot pick a free loopback port")]
    Port(#[source] std::io::Error),
    /// A replica did not accept connections in time.
    #[error("replica {endpoint} did not accept connections within {timeout:?}")]
    NotListening {
        /// The replica's endpoint.
        endpoint: String,
        /// The start timeout.
        timeout: Duration,
    },
    /// A replica exited while starting.
    #[error("replica {endpoint} exited while starting ({status})")]
    Exited {
        /// The replica's endpoint.
        endpoint: String,
        /// How it ended.
        status: String,
    },
    /// The record of the stack's replicas could not be saved.
    #[error("cannot record the stack's replicas")]
    Record(#[source] crate::store::StoreError),
    /// The container source failed (the Engine, the image, or a replica).
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    /// Processes that would not stop.
    #[error("processes still running after SIGKILL: {pids:?}")]
    Survivors {
        /// Their PIDs.
        pids: Vec<u32>,
    },
}

/// What a source reports while it works: units and log lines, to the deployment's driver.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    tx: mpsc::Sender<Report>,
}

/// One report.
#[derive(Debug)]
pub(crate) enum Report {
    /// The current units of the stack.
    Units(Vec<Unit>),
    /// A log line.
    Log(LogLine),
}

impl Reporter {
    pub(crate) fn new(tx: mpsc::Sender<Report>) -> Self {
        Self { tx }
    }

    /// A reporter nobody follows (replicas re-adopted after a restart, until a resumed
    /// deployment attaches): its lines go nowhere.
    pub(crate) fn detached() -> Self {
        let (tx, _) = mpsc::channel(1);
        Self { tx }
    }

    /// Whether a driver still receives what is reported.
    pub(crate) fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Adds a line to the deployment log; dropped (and traced) when the driver is gone or
    /// behind, so a chatty process never blocks.
    pub(crate) fn log(&self, source: &str, line: impl Into<String>) {
        let line = line.into();
        tracing::debug!(source, line = %line, "deployment log");
        // A full or closed channel only loses a log line; the process must not wait.
        let _ = self.tx.try_send(Report::Log(LogLine {
            time: now(),
            source: source.to_owned(),
            line,
        }));
    }

    /// Reports the units; waits for room, since units must be persisted.
    pub(crate) async fn units(&self, units: Vec<Unit>) {
        if self.tx.send(Report::Units(units)).await.is_err() {
            tracing::debug!("deployment driver gone; units not recorded");
        }
    }
}

/// What a source needs to know about the stack it provisions.
#[derive(Debug)]
pub(crate) struct Target<'a> {
    pub(crate) service: &'a str,
    /// The deployment's id (containers are labelled with it).
    pub(crate) deployment: u64,
    pub(crate) spec: &'a DeploymentSpec,
    pub(crate) base_dir: PathBuf,
    pub(crate) start_timeout: Duration,
}

impl Target<'_> {
    /// The stack to register, at weight 0, with the given endpoints or DNS source.
    pub(crate) fn stack(&self, endpoints: Vec<String>, dns: Option<raw::Dns>) -> raw::Stack {
        raw::Stack {
            name: self.spec.stack.clone(),
            version: self.spec.version.clone(),
            weight: 0,
            endpoints,
            dns,
            health_check: self.spec.health_check.clone(),
            outlier_detection: None,
            slow_start: None,
            tls: None,
        }
    }
}

/// Where a new stack's endpoints come from.
pub(crate) trait Source: Send + Sync {
    /// Starts what the stack needs and resolves with the stack to register once its endpoints
    /// accept connections. Units are reported through `report` as soon as they exist.
    fn provision<'a>(
        &'a self,
        target: &'a Target<'a>,
        report: Reporter,
    ) -> BoxFuture<'a, Result<raw::Stack, SourceError>>;

    /// Stops what `provision` started for `service`/`stack`: asks it to stop, waits up to
    /// `drain`, then forces it. Works from the persisted `units` alone; idempotent.
    fn release<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>>;

    /// Sends what the stack's units report from now on to `report` (a deployment resumed
    /// after a restart follows the units re-adopted at start). Nothing by default.
    fn attach(&self, _service: &str, _stack: &str, _report: Reporter) {}
}

/// A source whose stacks' replicas a rolling update replaces in place, one batch at a time,
/// inside the live stack (`deploy::rolling`). The process and container sources are; the
/// rolling driver talks to them through this trait alone.
///
/// The update keeps the old replicas recoverable until it succeeds: they are taken out of
/// service ([`stop_old`](Self::stop_old)) but their durable record (a process stack's record,
/// the Engine's stopped containers) stays as it was, so a rollback, even after a restart,
/// brings exactly them back ([`restore`](Self::restore)). The new replicas are told apart
/// from the old ones by the deployment that started them.
pub(crate) trait Replicas: Send + Sync {
    /// How many replicas the live stack `service`/`stack` has here; `None` when this source
    /// does not run it.
    fn replicas_of(&self, service: &str, stack: &str) -> Option<usize>;

    /// The live stack's old replicas, in replica order (those the update of `target` replaces);
    /// `None` when this source has no record of the stack.
    fn old<'a>(
        &'a self,
        target: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<Option<Vec<Unit>>, SourceError>>;

    /// Ends the supervision of the live stack for the time of the update (its replicas keep
    /// running, and an exiting one is not restarted).
    fn detach<'a>(&'a self, service: &'a str, stack: &'a str) -> BoxFuture<'a, ()>;

    /// Starts replica `index` of the new version and resolves once it accepts connections.
    fn start_replica<'a>(
        &'a self,
        target: &'a Target<'a>,
        index: usize,
        report: &'a Reporter,
    ) -> BoxFuture<'a, Result<Unit, SourceError>>;

    /// Stops an old replica (drain, then force), keeping what a rollback restores it from.
    fn stop_old<'a>(
        &'a self,
        unit: &'a Unit,
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>>;

    /// The update succeeded: the stack is the new replicas `units` from now on, supervised;
    /// what is left of the old ones goes. Resolves with the units as the stack keeps them.
    fn keep_new<'a>(
        &'a self,
        target: &'a Target<'a>,
        units: Vec<Unit>,
        drain: Duration,
    ) -> BoxFuture<'a, Result<Vec<Unit>, SourceError>>;

    /// Rollback: starts the old replicas again where they were stopped or are gone, supervises
    /// them as the stack, and resolves once they accept connections.
    fn restore<'a>(&'a self, target: &'a Target<'a>) -> BoxFuture<'a, Result<(), SourceError>>;

    /// Rollback: stops and forgets the update's new replicas (`units`, and any the update
    /// started without reporting it).
    fn discard<'a>(
        &'a self,
        target: &'a Target<'a>,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>>;
}

/// Endpoints started elsewhere, or a DNS name: nothing to start or stop.
pub(crate) struct StaticSource;

impl Source for StaticSource {
    fn provision<'a>(
        &'a self,
        target: &'a Target<'a>,
        _report: Reporter,
    ) -> BoxFuture<'a, Result<raw::Stack, SourceError>> {
        Box::pin(async move {
            Ok(match &target.spec.source {
                SourceSpec::Endpoints(eps) => target.stack(eps.clone(), None),
                SourceSpec::Dns(dns) => target.stack(Vec::new(), Some(dns.clone())),
                // Never chosen for process or container specs; an empty stack would fail
                // health anyway.
                SourceSpec::Process(_) | SourceSpec::Container(_) => target.stack(Vec::new(), None),
            })
        })
    }

    fn release<'a>(
        &'a self,
        _service: &'a str,
        _stack: &'a str,
        _units: &'a [Unit],
        _drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async { Ok(()) })
    }
}
