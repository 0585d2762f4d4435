//! Undo, after success too: `POST /v1/services/{service}/rollback` restores the service as
//! before its latest successful deployment, with the same equality as a rollback during a
//! deployment (weights, active stack, the newer stack torn down): one atomic weight switch then
//! the exact restore, while the previous stacks are still kept at weight 0 (see `standby`);
//! once they were retired, by re-deploying the spec of the deployment that deployed the
//! previous stack. Either way it is recorded as a deployment (`undo_of`), and the undone one
//! names it (`undone_by`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::raw;
use tokio::sync::{broadcast, mpsc, watch};
use tracing::Instrument;

use super::driver::wait_idle;
use super::machine::describe_weights;
use super::plan;
use super::record::{DeploymentRecord, Phase, Waiting};
use super::spec::{DeploymentSpec, RetireSpec, SourceSpec, StrategySpec};
use super::standby::log;
use super::{Deployments, Entry};
use crate::change::Change;
use crate::error::ApiError;
use crate::state::ControlState;
use crate::store::now;

/// Longest wait for requests in flight on the newer stack after the switch back.
const UNDO_DRAIN: Duration = Duration::from_secs(10);

impl Deployments {
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
                gates: Vec::new(),
                webhooks: Vec::new(),
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
            webhooks: Vec::new(),
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
