//! What a rolling update asks of the process source: the live stack's replica count, ending
//! its supervision (replicas keep running) for the time of the update, starting one replica
//! of the new version, stopping one old replica by PID, and supervising a stack from its
//! record again at the end (the new replicas, or the old ones put back: re-adopted where
//! alive, started anew on their endpoints where gone).

use std::time::Duration;

use super::launch::{free_port, launch};
use super::pid::terminate_pid;
use super::supervisor::Control;
use super::{ProcessSource, wait_listening};
use crate::deploy::record::{ProcessStackRecord, Unit};
use crate::deploy::source::{Reporter, SourceError};

impl ProcessSource {
    /// How many replicas the supervised stack has; `None` when it is not supervised here.
    pub(crate) fn replicas_of(&self, service: &str, stack: &str) -> Option<usize> {
        self.registry()
            .get(&(service.to_owned(), stack.to_owned()))
            .map(|r| r.units.borrow().len())
    }

    /// Ends the supervision of a stack; its replicas keep running, unsupervised.
    pub(crate) async fn detach(&self, service: &str, stack: &str) {
        let running = self
            .registry()
            .remove(&(service.to_owned(), stack.to_owned()));
        if let Some(r) = running {
            r.end(Control::Detach).await;
        }
    }

    /// The durable record of a stack's replicas.
    pub(crate) async fn record_of(
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

    /// Starts replica `index` of `record` (the new version) on a free port, unsupervised, and
    /// waits until it accepts connections.
    pub(crate) async fn start_replica(
        &self,
        record: &ProcessStackRecord,
        index: usize,
        start_timeout: Duration,
        report: &Reporter,
    ) -> Result<Unit, SourceError> {
        let port = free_port()?;
        let l = launch(record, index, port);
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
        // The child handle goes; tokio reaps the process should it exit. The stack is
        // supervised again (by PID) when the update ends.
        drop(unit);
        if let Err(e) = wait_listening(&endpoint, start_timeout).await {
            stop_unit(&u, Duration::ZERO).await;
            return Err(e);
        }
        Ok(u)
    }

    /// Supervises `record`'s stack from now on (replacing any supervision of it): live
    /// replicas are watched by PID, gone ones started anew on their endpoints.
    pub(crate) fn supervise_record(self: &std::sync::Arc<Self>, record: ProcessStackRecord) {
        self.adopt(vec![record], |_| true);
    }

    /// Waits until every endpoint accepts connections (each up to `limit`).
    pub(crate) async fn wait_for(
        &self,
        endpoints: &[String],
        limit: Duration,
    ) -> Result<(), SourceError> {
        for e in endpoints {
            wait_listening(e, limit).await?;
        }
        Ok(())
    }

    /// Saves a stack's record.
    pub(crate) async fn save_record(&self, record: &ProcessStackRecord) -> Result<(), SourceError> {
        self.store
            .save_process_stack(record)
            .await
            .map_err(SourceError::Record)
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
