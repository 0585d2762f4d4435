//! What a rolling update asks of the process source ([`Replicas`]): the live stack's replicas
//! from its record, ending its supervision (replicas keep running) for the time of the update,
//! starting one replica of the new version, stopping one replica by PID, and supervising a
//! stack from its record again at the end (the new replicas, or the old ones put back:
//! re-adopted where alive, started anew on their endpoints where gone).
//!
//! The stack's record is left as it was until the update succeeds, so a restart in the middle
//! re-adopts (or restarts on their endpoints) exactly the old replicas.

use std::time::Duration;

use super::launch::{free_port, launch};
use super::pid::terminate_pid;
use super::supervisor::Control;
use super::{ProcessSource, wait_listening};
use crate::data_plane::BoxFuture;
use crate::deploy::record::{ProcessStackRecord, Unit};
use crate::deploy::source::{Replicas, Reporter, SourceError, Target};
use crate::deploy::spec::SourceSpec;
use crate::store::now;

impl ProcessSource {
    /// The durable record of a stack's replicas.
    async fn record_of(
        &self,
        service: &str,
        stack: &str,
    ) -> Result<Option<ProcessStackRecord>, SourceError> {
        let all = self
            .store
            .load_process_stacks()
            .await
            .map_err(SourceError::Record)?;
        Ok(all
            .into_iter()
            .find(|r| r.service == service && r.stack == stack))
    }

    /// The record of `target`'s new version, with `units`.
    fn new_record(target: &Target<'_>, units: Vec<Unit>) -> ProcessStackRecord {
        let process = match &target.spec.source {
            SourceSpec::Process(p) => p.clone(),
            _ => crate::deploy::spec::ProcessSpec {
                command: Vec::new(),
                replicas: None,
                env: Default::default(),
                workdir: None,
                start_timeout: None,
            },
        };
        ProcessStackRecord {
            service: target.service.to_owned(),
            stack: target.spec.stack.clone(),
            version: target.spec.version.clone(),
            process,
            base_dir: target.base_dir.to_string_lossy().into_owned(),
            units,
            updated_at: now(),
        }
    }
}

/// Stops one replica by PID (checked against its start time): SIGTERM, `drain`, SIGKILL.
/// False when it survived.
pub(crate) async fn stop_unit(unit: &Unit, drain: Duration) -> bool {
    match unit.pid {
        Some(pid) => terminate_pid(pid, unit.start_ticks, drain).await,
        None => true,
    }
}

/// `Ok` when every unit stopped, else the survivors.
async fn stop_all<'a>(
    units: impl IntoIterator<Item = &'a Unit>,
    drain: Duration,
) -> Result<(), SourceError> {
    let mut pids = Vec::new();
    for u in units {
        if !stop_unit(u, drain).await {
            pids.extend(u.pid);
        }
    }
    if pids.is_empty() {
        Ok(())
    } else {
        Err(SourceError::Survivors { pids })
    }
}

impl Replicas for ProcessSource {
    fn replicas_of(&self, service: &str, stack: &str) -> Option<usize> {
        self.registry()
            .get(&(service.to_owned(), stack.to_owned()))
            .map(|r| r.units.borrow().len())
    }

    fn old<'a>(
        &'a self,
        target: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<Option<Vec<Unit>>, SourceError>> {
        Box::pin(async move {
            Ok(self
                .record_of(target.service, &target.spec.stack)
                .await?
                .map(|r| r.units))
        })
    }

    fn detach<'a>(&'a self, service: &'a str, stack: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let running = self
                .registry()
                .remove(&(service.to_owned(), stack.to_owned()));
            if let Some(r) = running {
                r.end(Control::Detach).await;
            }
        })
    }

    /// Starts the replica on a free port, unsupervised (tokio reaps it should it exit).
    fn start_replica<'a>(
        &'a self,
        target: &'a Target<'a>,
        index: usize,
        report: &'a Reporter,
    ) -> BoxFuture<'a, Result<Unit, SourceError>> {
        Box::pin(async move {
            let record = Self::new_record(target, Vec::new());
            let port = free_port()?;
            let l = launch(&record, index, port);
            let endpoint = format!("127.0.0.1:{port}");
            let mut log = self.log_file(&record.service, &record.stack, index);
            let child = l.spawn(&mut log)?;
            let unit = super::supervisor::Replica::Child(child);
            let u = unit.unit(&endpoint);
            report.log(
                &l.name,
                format!(
                    "started pid {} on {endpoint} ({})",
                    u.pid.map_or_else(|| "?".to_owned(), |p| p.to_string()),
                    record.version
                ),
            );
            // The child handle goes; the stack is supervised again (by PID) when the update
            // ends.
            drop(unit);
            if let Err(e) = wait_listening(&endpoint, target.start_timeout).await {
                stop_unit(&u, Duration::ZERO).await;
                return Err(e);
            }
            Ok(u)
        })
    }

    fn stop_old<'a>(
        &'a self,
        unit: &'a Unit,
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(stop_all([unit], drain))
    }

    fn keep_new<'a>(
        &'a self,
        target: &'a Target<'a>,
        units: Vec<Unit>,
        drain: Duration,
    ) -> BoxFuture<'a, Result<Vec<Unit>, SourceError>> {
        Box::pin(async move {
            let service = target.service;
            let stack = &target.spec.stack;
            // After a restart, the old replicas were started again from their record.
            let old = self.record_of(service, stack).await?;
            let gone: Vec<Unit> = old
                .map(|r| r.units)
                .unwrap_or_default()
                .into_iter()
                .filter(|u| !units.contains(u))
                .collect();
            let left = stop_all(&gone, drain).await;
            self.detach(service, stack).await;
            let record = Self::new_record(target, units.clone());
            self.store
                .save_process_stack(&record)
                .await
                .map_err(SourceError::Record)?;
            self.supervise_record(record);
            left.map(|()| units)
        })
    }

    fn restore<'a>(&'a self, target: &'a Target<'a>) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let Some(old) = self.record_of(target.service, &target.spec.stack).await? else {
                return Ok(());
            };
            let endpoints: Vec<String> = old.units.iter().map(|u| u.endpoint.clone()).collect();
            self.supervise_record(old);
            for e in &endpoints {
                wait_listening(e, target.start_timeout).await?;
            }
            Ok(())
        })
    }

    fn discard<'a>(
        &'a self,
        _target: &'a Target<'a>,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(stop_all(units, drain))
    }
}
