//! Undo, after success too: the previous stacks a deployment leaves at weight 0, their
//! retirement once `retire_previous.after` has passed, and `POST /v1/services/{service}/rollback`.
//!
//! A deployment that succeeds with `after > 0` records its [`Standby`] (which stacks, until
//! when, as a wall-clock time in the persisted record, so a restart keeps the deadline). The
//! registry then retires them at that time — unless a deployment of the service is running
//! (it waits for it to end) or a rollback switched back to them meanwhile. A stack someone
//! gave traffic again is left alone.
//!
//! A rollback restores the service as before its latest successful deployment, with the same
//! equality as a rollback during a deployment (weights, active stack, the newer stack torn
//! down): one atomic weight switch then the exact restore, while the previous stacks are still
//! there; once they were retired, by re-deploying the spec of the deployment that deployed
//! the previous stack. Either way it is recorded as a deployment (`undo_of`), and the undone
//! one names it (`undone_by`). Retirement and rollback never run at the same time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::raw;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::driver::{retire_stack, wait_idle};
use super::machine::describe_weights;
use super::plan;
use super::record::{DeploymentRecord, LogLine, Phase, Waiting};
use super::spec::{DeploymentSpec, RetireSpec, SourceSpec, StrategySpec};
use super::{Deployments, Entry};
use crate::change::Change;
use crate::error::ApiError;
use crate::state::ControlState;
use crate::store::now;

/// How often a due retirement looks again whether the deployment in its way has ended.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// Longest wait for requests in flight on the newer stack after the switch back.
const UNDO_DRAIN: Duration = Duration::from_secs(10);

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

fn log(rec: &mut DeploymentRecord, line: String) {
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
    fn republish(&self, rec: DeploymentRecord) -> Arc<DeploymentRecord> {
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
    async fn save_finished(
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

    /// `POST /v1/services/{service}/rollback`: restores the service as before its latest
    /// successful deployment. The record of the rollback, finished when it switched back to a
    /// standby stack (`false`), or just started when it re-deploys a retired one (`true`).
    pub(crate) async fn undo(
        &self,
        state: &ControlState,
        caller: &str,
        service: &str,
    ) -> Result<(Arc<DeploymentRecord>, bool), ApiError> {
        let guard = self.standby_lock.lock().await;
        if let Some(r) = self.active(service) {
            return Err(ApiError::Conflict(format!(
                "deployment {} of service {service:?} is in progress ({}); abort it instead",
                r.id,
                r.phase.as_str()
            )));
        }
        let list = self.list(service);
        let target = list
            .iter()
            .find(|r| r.phase == Phase::Succeeded)
            .cloned()
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "service {service:?} has no successful deployment to roll back"
                ))
            })?;
        if let Some(by) = target.undone_by {
            return Err(ApiError::Conflict(format!(
                "deployment {} was rolled back already by deployment {by}",
                target.id
            )));
        }
        if let Some(of) = target.undo_of {
            return Err(ApiError::Conflict(format!(
                "the latest deployment {} is the rollback of deployment {of}; deploy the version you want instead",
                target.id
            )));
        }
        let current = state
            .published()
            .config
            .service(service)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
        let new = target.spec.stack.clone();
        let live: Vec<String> = target
            .before
            .weights()
            .into_iter()
            .filter(|(n, w)| *w > 0 && *n != new)
            .map(|(n, _)| n)
            .collect();
        if live.is_empty() {
            return Err(ApiError::Conflict(format!(
                "service {service:?} had no stack with traffic before deployment {}: nothing to switch back to",
                target.id
            )));
        }
        // The spec that deployed the previous stack, when a deployment did.
        let deployed_by = |name: &str| {
            list.iter()
                .find(|r| r.id < target.id && r.phase == Phase::Succeeded && r.spec.stack == name)
                .map(|r| r.spec.clone())
        };
        if !live.iter().all(|n| current.stack(n).is_some()) {
            let [name] = live.as_slice() else {
                return Err(ApiError::Conflict(format!(
                    "the previous stacks {} were retired; several cannot be re-deployed as one",
                    live.join(", ")
                )));
            };
            let spec = deployed_by(name).ok_or_else(|| {
                ApiError::Conflict(format!(
                    "the previous stack {name} was retired and no deployment recorded how it was deployed"
                ))
            })?;
            drop(guard);
            tracing::info!(service, undone = target.id, stack = %name, token = caller, "rollback by re-deploying the previous stack");
            let rec = self
                .start_as(state, caller, service, None, spec, Some(target.id))
                .await?;
            return Ok((rec, true));
        }
        let first = &live[0];
        let spec = deployed_by(first).unwrap_or_else(|| {
            let s = target.before.spec.stacks.iter().find(|s| s.name == *first);
            DeploymentSpec {
                stack: first.clone(),
                version: s.map(|s| s.version.clone()).unwrap_or_default(),
                source: match s.and_then(|s| s.dns.clone()) {
                    Some(dns) => SourceSpec::Dns(dns),
                    None => {
                        SourceSpec::Endpoints(s.map(|s| s.endpoints.clone()).unwrap_or_default())
                    }
                },
                strategy: StrategySpec::default(),
                pre_integration: Vec::new(),
                post_integration: Vec::new(),
                retire_previous: RetireSpec::default(),
                healthy_timeout: None,
                health_check: None,
            }
        });
        let time = now();
        let mut rec = DeploymentRecord {
            id: list.first().map_or(0, |r| r.id) + 1,
            service: service.to_owned(),
            spec,
            created_by: caller.to_owned(),
            created_at: time.clone(),
            updated_at: time.clone(),
            finished_at: None,
            phase: Phase::Shifting,
            step: 0,
            waiting: Waiting::Work,
            paused: false,
            pending: false,
            retire_started: false,
            epoch: 0,
            weights: BTreeMap::new(),
            before: super::Before {
                revision: state
                    .published()
                    .records
                    .get(service)
                    .map_or(0, |r| r.revision),
                origin: state
                    .published()
                    .records
                    .get(service)
                    .map_or(crate::store::Origin::File, |r| r.origin),
                spec: current.to_raw(),
                promotions: state
                    .published()
                    .records
                    .get(service)
                    .map(|r| r.promotions.clone())
                    .unwrap_or_default(),
            },
            stack: None,
            units: Vec::new(),
            checks: Vec::new(),
            reason: None,
            left: None,
            log: Vec::new(),
            analysis: Default::default(),
            standby: None,
            undone_by: None,
            undo_of: Some(target.id),
        };
        // Held in the registry (not persisted) while it runs, so a deployment started
        // meanwhile is refused; once done it is saved finished. A crash in between leaves the
        // service restored (each write is durable) and no record.
        let id = rec.id;
        self.reserve(&rec)?;
        let span = tracing::info_span!("rollback", service, id = rec.id, undone = target.id);
        let outcome = self
            .switch_back(state, caller, &target, &current, &mut rec)
            .instrument(span)
            .await;
        rec.finished_at = Some(now());
        match outcome {
            Ok(()) => {
                rec.phase = Phase::Succeeded;
                log(&mut rec, "phase succeeded".to_owned());
            }
            Err(left) => {
                log(&mut rec, format!("rollback incomplete: {left}"));
                rec.left = Some(left);
                rec.phase = Phase::Failed;
            }
        }
        let saved = self.save_finished(state, rec).await;
        let saved = match saved {
            Ok(s) => s,
            Err(e) => {
                self.entries().remove(&(service.to_owned(), id));
                return Err(e);
            }
        };
        if saved.phase == Phase::Succeeded {
            let mut target = (*target).clone();
            target.undone_by = Some(saved.id);
            target.standby = None;
            log(
                &mut target,
                format!("rolled back by deployment {}", saved.id),
            );
            self.save_finished(state, target).await?;
        }
        Ok((saved, false))
    }

    /// Registers `rec` (in progress, not persisted) unless a deployment of its service runs.
    fn reserve(&self, rec: &DeploymentRecord) -> Result<(), ApiError> {
        let mut entries = self.entries();
        let service = rec.service.as_str();
        let running = entries
            .range((service.to_owned(), 0)..=(service.to_owned(), u64::MAX))
            .map(|(_, e)| e.record.borrow().clone())
            .find(|r| !r.phase.is_terminal());
        if let Some(r) = running {
            return Err(ApiError::Conflict(format!(
                "deployment {} of service {service:?} is in progress ({})",
                r.id,
                r.phase.as_str()
            )));
        }
        let key = (service.to_owned(), rec.id);
        if entries.contains_key(&key) {
            return Err(ApiError::Conflict(format!(
                "another deployment of service {service:?} started at the same time"
            )));
        }
        let (_, record) = watch::channel(Arc::new(rec.clone()));
        entries.insert(
            key,
            Entry {
                record,
                commands: mpsc::channel(1).0,
                feed: broadcast::channel(1).0,
            },
        );
        Ok(())
    }

    /// The switch back to `target`'s previous stacks: their weights in one write (the newer
    /// stack at 0), its requests in flight finished, then the service exactly as before
    /// `target` (stacks retired since, that had no traffic, stay retired), and the newer
    /// stack's processes stopped.
    async fn switch_back(
        &self,
        state: &ControlState,
        caller: &str,
        target: &DeploymentRecord,
        current: &switchyard_config::ServiceSpec,
        rec: &mut DeploymentRecord,
    ) -> Result<(), String> {
        let service = target.service.as_str();
        let new = target.spec.stack.as_str();
        let drain = plan::validate(&target.spec).map_or(UNDO_DRAIN, |p| p.drain);
        let write = |change: Change| async move {
            state
                .write(caller, service, None, change)
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let mut weights = target.before.weights();
        weights.retain(|n, _| current.stack(n).is_some());
        if current.stack(new).is_some() {
            weights.insert(new.to_owned(), 0);
        }
        log(
            rec,
            format!(
                "rolling back deployment {}: weights {}",
                target.id,
                describe_weights(&weights)
            ),
        );
        tracing::info!(weights = %describe_weights(&weights), "rollback: switching back");
        rec.weights = weights.clone();
        write(Change::SetWeights {
            weights: weights
                .into_iter()
                .map(|(n, w)| (n, i64::from(w)))
                .collect(),
            exclusive: false,
            allow_no_traffic: true,
        })
        .await
        .map_err(|e| format!("weights not switched back: {e}"))?;
        wait_idle(
            state.data_plane().as_ref(),
            service,
            new,
            UNDO_DRAIN.min(drain),
        )
        .await;
        let mut spec: raw::Service = target.before.spec.clone();
        spec.stacks
            .retain(|s| s.weight > 0 || current.stack(&s.name).is_some());
        write(Change::Restore {
            spec: Box::new(spec),
            origin: target.before.origin,
            promotions: target.before.promotions.clone(),
        })
        .await
        .map_err(|e| format!("service not restored: {e}"))?;
        log(
            rec,
            format!(
                "stack {new} removed; service restored as before deployment {}",
                target.id
            ),
        );
        let source = self.source_for(&target.spec);
        source
            .release(service, new, &target.units, drain)
            .await
            .map_err(|e| format!("stack {new}: {}", crate::error::chain(&e)))?;
        Ok(())
    }
}
