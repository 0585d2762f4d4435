//! The previous stacks a successful deployment leaves at weight 0 (its standby), and their
//! retirement once `retire_previous.after` has passed; `undo` switches back to them meanwhile.
//!
//! A deployment that succeeds with `after > 0` records its [`Standby`](super::Standby) (which
//! stacks, until when, as a wall-clock time in the persisted record, so a restart keeps the
//! deadline). The registry then retires them at that time — unless a deployment of the service
//! is running (it waits for it to end) or a rollback switched back to them meanwhile. A stack
//! someone gave traffic again is left alone. Retirement and rollback never run at the same
//! time (`standby_lock`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::driver::retire_stack;
use super::plan;
use super::record::{DeploymentRecord, LogLine, Phase};
use super::{Deployments, Entry};
use crate::error::ApiError;
use crate::state::ControlState;
use crate::store::now;

/// How often a due retirement looks again whether the deployment in its way has ended.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// `now` (RFC 3339) plus `after`, as RFC 3339; from the clock when `now` does not parse.
pub(crate) fn later(now: &str, after: Duration) -> String {
    let start = OffsetDateTime::parse(now, &Rfc3339).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let after = time::Duration::try_from(after).unwrap_or(time::Duration::DAY);
    start
        .checked_add(after)
        .unwrap_or(start)
        .format(&Rfc3339)
        .unwrap_or_else(|_| now.to_owned())
}

/// Time from now until `until` (zero when past or unreadable).
fn remaining(until: &str) -> Duration {
    OffsetDateTime::parse(until, &Rfc3339)
        .ok()
        .map(|t| t - OffsetDateTime::now_utc())
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO)
}

/// Appends a line to a finished deployment's log.
pub(super) fn log(rec: &mut DeploymentRecord, line: String) {
    let time = now();
    rec.updated_at = time.clone();
    rec.push_log(LogLine {
        time,
        source: "deploy".to_owned(),
        line,
    });
}

impl Deployments {
    /// Replaces the published copy of a finished deployment's record (its driver is gone).
    pub(super) fn republish(&self, rec: DeploymentRecord) -> Arc<DeploymentRecord> {
        let key = (rec.service.clone(), rec.id);
        let shared = Arc::new(rec);
        let (_, record) = watch::channel(shared.clone());
        let mut entries = self.entries();
        let (commands, feed) = match entries.get(&key) {
            Some(e) => (e.commands.clone(), e.feed.clone()),
            None => (mpsc::channel(1).0, broadcast::channel(1).0),
        };
        entries.insert(
            key,
            Entry {
                record,
                commands,
                feed,
            },
        );
        shared
    }

    /// Persists and publishes a finished record.
    pub(super) async fn save_finished(
        &self,
        state: &ControlState,
        rec: DeploymentRecord,
    ) -> Result<Arc<DeploymentRecord>, ApiError> {
        state
            .store()
            .save_deployment(&rec)
            .await
            .map_err(ApiError::internal)?;
        Ok(self.republish(rec))
    }

    /// After a deployment's driver finished it (or on start, for every saved record): its
    /// standby is scheduled for retirement, and a rollback by re-deployment that succeeded is
    /// noted on the deployment it undid.
    pub(crate) async fn finished(&self, state: &ControlState, rec: &DeploymentRecord) {
        if rec.phase != Phase::Succeeded {
            return;
        }
        if let Some(undone) = rec.undo_of {
            let _guard = self.standby_lock.lock().await;
            if let Some(target) = self.get(&rec.service, undone) {
                if target.undone_by.is_none() {
                    let mut target = (*target).clone();
                    target.undone_by = Some(rec.id);
                    log(&mut target, format!("rolled back by deployment {}", rec.id));
                    if let Err(e) = self.save_finished(state, target).await {
                        tracing::error!(error = %e, "cannot record the rollback on the deployment it undid");
                    }
                }
            }
        }
        self.schedule_standby(state, rec);
    }

    /// Retires `rec`'s standby when it is due (at once when overdue).
    pub(crate) fn schedule_standby(&self, state: &ControlState, rec: &DeploymentRecord) {
        let Some(standby) = rec.standby.as_ref().filter(|_| rec.undone_by.is_none()) else {
            return;
        };
        let wait = remaining(&standby.until);
        let state = state.clone();
        let service = rec.service.clone();
        let id = rec.id;
        let mut shutdown = self.shutdown.clone();
        let span = tracing::info_span!("standby", service = %service, id);
        tracing::info!(parent: &span, until = %standby.until, stacks = ?standby.stacks, "previous stacks kept at weight 0");
        tokio::spawn(
            async move {
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                // Not under a running deployment: its `before` names these stacks.
                while state.deployments().active(&service).is_some() {
                    tokio::select! {
                        () = tokio::time::sleep(BUSY_RETRY) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
                state
                    .deployments()
                    .retire_standby(&state, &service, id)
                    .await;
            }
            .instrument(span),
        );
    }

    /// Retires the standby of deployment `id` now, if it still has one.
    async fn retire_standby(&self, state: &ControlState, service: &str, id: u64) {
        let _guard = self.standby_lock.lock().await;
        let Some(rec) = self.get(service, id) else {
            return;
        };
        let Some(standby) = rec.standby.clone().filter(|_| rec.undone_by.is_none()) else {
            return;
        };
        let drain = plan::validate(&rec.spec).map_or(Duration::from_secs(30), |p| p.drain);
        let mut rec = (*rec).clone();
        let mut left = Vec::new();
        for name in &standby.stacks {
            let current = state.published().config.service(service).cloned();
            match current.as_ref().and_then(|c| c.stack(name)) {
                None => continue,
                Some(s) if s.weight().get() > 0 => {
                    log(
                        &mut rec,
                        format!("stack {name} has traffic again; not retired"),
                    );
                    continue;
                }
                Some(_) => {}
            }
            log(&mut rec, format!("retiring stack {name}"));
            if let Err(e) = retire_stack(state, &rec.created_by, service, name, drain).await {
                left.push(e);
            }
        }
        if *self.shutdown.borrow() {
            // The writer may be gone: retired again (idempotently) on the next start.
            return;
        }
        rec.standby = None;
        if !left.is_empty() {
            let l = left.join("; ");
            log(&mut rec, format!("previous stack not fully retired: {l}"));
            rec.left = Some(l);
        } else {
            log(&mut rec, "previous stacks retired".to_owned());
        }
        tracing::info!(stacks = ?standby.stacks, "previous stacks retired");
        if let Err(e) = self.save_finished(state, rec).await {
            tracing::error!(error = %e, "cannot record the retirement");
        }
    }
}
