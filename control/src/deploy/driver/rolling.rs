//! The driver's actions for a rolling update (see `deploy::rolling`): provisioning prepares
//! the first batch, each shifting step replaces one batch inside the live stack, retiring
//! records and supervises the new replicas, and a rollback puts the old ones back. The
//! stack's source does the replicas' part, through [`crate::deploy::source::Replicas`].
//!
//! The source's record of the stack's replicas is left as it was until the update succeeded,
//! so a restart in the middle re-adopts (or restarts) exactly the old replicas, and the
//! resumed deployment rolls back. The stack's endpoints and `version` change through the
//! writer like any API write (a `restore_service` of the whole service, so both change in one
//! generation).

mod roll;

use std::future::Future;

use super::Driver;
use crate::deploy::check::{self, Context, Target as CheckTarget};
use crate::deploy::machine::{Action, Event};
use crate::deploy::rolling::Rolling;
use roll::Roll;

impl Driver {
    fn roll(&self, rolling: Rolling) -> Option<Roll> {
        let source = self.state.deployments().replicas_for(&self.rec.spec)?;
        let old_version = self
            .rec
            .before
            .spec
            .stacks
            .iter()
            .find(|s| s.name == self.rec.spec.stack)
            .map(|s| s.version.clone())
            .unwrap_or_default();
        Some(Roll {
            state: self.state.clone(),
            source,
            rolling,
            service: self.rec.service.clone(),
            deployment: self.rec.id,
            spec: self.rec.spec.clone(),
            base_dir: self.state.deployments().base_dir().to_path_buf(),
            old_version,
            created_by: self.rec.created_by.clone(),
            reporter: self.reporter.clone(),
            healthy_timeout: self.plan.healthy_timeout,
            start_timeout: self.plan.start_timeout,
            drain: self.plan.drain,
            before: self.rec.before.clone(),
        })
    }

    /// The rolling update's version of `action`; `None` when the deployment is not a rolling
    /// update or the action is the usual one (post-integration checks, timers, gates).
    pub(super) async fn perform_rolling(&mut self, action: &Action) -> Option<Option<Event>> {
        let rolling = self.plan.rolling.clone()?;
        // The plan admits rolling updates of process and container sources only.
        let roll = self.roll(rolling)?;
        let units = self.rec.units.clone();
        Some(match action {
            Action::Provision => {
                self.background(async move { roll.provision().await });
                None
            }
            Action::Register(_) | Action::WaitHealthy => Some(Event::Healthy),
            Action::Check { post: false } => {
                let work = self.pre_checks();
                self.background(work);
                None
            }
            Action::RollBatch(k) => {
                let k = *k;
                self.background(async move { roll.batch(k, units).await });
                None
            }
            Action::Retire => {
                let (kept, retired) = roll.finish(units).await;
                // Recorded with the event that ends the deployment (renamed containers).
                if let Some(kept) = kept {
                    self.rec.units = kept;
                }
                Some(retired)
            }
            Action::RollBack => Some(roll.roll_back(units).await),
            _ => return None,
        })
    }

    /// Pre-integration checks against the first batch's new replicas, directly.
    fn pre_checks(&self) -> impl Future<Output = Event> + Send + 'static {
        let mut endpoints = Vec::new();
        for u in &self.rec.units {
            if let Ok(a) = u.endpoint.parse() {
                endpoints.push(a);
            }
        }
        let host = self
            .state
            .published()
            .config
            .service(&self.rec.service)
            .and_then(super::work::check_host)
            .unwrap_or_else(|| {
                self.rec
                    .units
                    .first()
                    .map(|u| u.endpoint.clone())
                    .unwrap_or_default()
            });
        let target = CheckTarget::Direct { endpoints, host };
        let checks = self.plan.pre.clone();
        let ctx = Context {
            post: false,
            service: self.rec.service.clone(),
            stack: self.rec.spec.stack.clone(),
            version: self.rec.spec.version.clone(),
        };
        let reporter = self.reporter.clone();
        async move {
            let (results, passed) = check::run(&checks, &target, &ctx, &reporter).await;
            Event::Checked { results, passed }
        }
    }
}
