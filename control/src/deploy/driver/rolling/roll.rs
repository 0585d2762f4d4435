//! One rolling update's work against the stack's source (through [`Replicas`]) and the
//! writer: preparing a batch, bringing new replicas into the stack once healthy, taking old
//! ones out and stopping them, recording the result, and putting the old replicas back on a
//! rollback.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchyard_config::raw;
use tokio::time::{Instant, sleep};

use crate::change::Change;
use crate::deploy::machine::Event;
use crate::deploy::record::{Before, Unit};
use crate::deploy::rolling::{Rolling, mixed_version};
use crate::deploy::source::{Replicas, Reporter, Target};
use crate::deploy::spec::DeploymentSpec;
use crate::error::chain;
use crate::state::ControlState;
use crate::store::Origin;

/// How often the new replicas' health is polled.
const POLL: Duration = Duration::from_millis(20);
/// Time for requests already sent to replicas taken out of the stack to finish before they
/// are stopped (they get no new ones once the generation without them is applied).
const SETTLE: Duration = Duration::from_millis(500);

/// What the rolling work needs, cheap to clone into background tasks.
#[derive(Clone)]
pub(super) struct Roll {
    pub(super) state: ControlState,
    pub(super) source: Arc<dyn Replicas>,
    pub(super) rolling: Rolling,
    pub(super) service: String,
    pub(super) deployment: u64,
    /// The deployment's spec: the stack and the new version's source.
    pub(super) spec: DeploymentSpec,
    pub(super) base_dir: PathBuf,
    /// The stack's version before the update.
    pub(super) old_version: String,
    pub(super) created_by: String,
    pub(super) reporter: Reporter,
    pub(super) healthy_timeout: Duration,
    pub(super) start_timeout: Duration,
    pub(super) drain: Duration,
    pub(super) before: Before,
}

impl Roll {
    fn target(&self) -> Target<'_> {
        Target {
            service: &self.service,
            deployment: self.deployment,
            spec: &self.spec,
            base_dir: self.base_dir.clone(),
            start_timeout: self.start_timeout,
        }
    }

    fn stack(&self) -> &str {
        &self.spec.stack
    }

    /// The stack's old replicas (unchanged in the source's record until the update succeeds).
    async fn old(&self) -> Result<Vec<Unit>, String> {
        match self.source.old(&self.target()).await {
            Ok(Some(units)) => Ok(units),
            Ok(None) => Err(format!(
                "stack {} has no record of its replicas; nothing to roll",
                self.stack()
            )),
            Err(e) => Err(chain(&e)),
        }
    }

    /// Starts the new replicas of batch `k`.
    async fn start(&self, k: usize, units: &mut Vec<Unit>) -> Result<(), String> {
        for index in self.rolling.batch(k) {
            let target = self.target();
            let unit = self
                .source
                .start_replica(&target, index, &self.reporter)
                .await
                .map_err(|e| format!("batch {}: {}", k + 1, chain(&e)))?;
            units.push(unit);
            // Recorded at once, so a rollback stops it even if the batch goes no further.
            self.reporter.units(units.clone()).await;
        }
        Ok(())
    }

    /// Provisioning: ends supervision of the live replicas and prepares the first batch
    /// (with `start_first` its new replicas start next to the old ones; without, the old
    /// ones are taken out and stopped first).
    pub(super) async fn provision(self) -> Event {
        let work = async {
            let old = self.old().await?;
            if old.len() != self.rolling.replicas {
                return Err(format!(
                    "stack {} has {} replicas, the update expects {}",
                    self.stack(),
                    old.len(),
                    self.rolling.replicas
                ));
            }
            self.source.detach(&self.service, self.stack()).await;
            let mut units = Vec::new();
            if !self.rolling.start_first {
                self.take_out(&old, 0, &units).await?;
            }
            self.start(0, &mut units).await?;
            Ok(units)
        };
        match work.await {
            Ok(units) => Event::Batched(units),
            Err(e) => Event::Failed(format!("provisioning failed: {e}")),
        }
    }

    /// Replaces batch `k` inside the stack.
    pub(super) async fn batch(self, k: usize, mut units: Vec<Unit>) -> Event {
        let work = async {
            let old = self.old().await?;
            if k > 0 {
                if !self.rolling.start_first {
                    self.take_out(&old, k, &units).await?;
                }
                self.start(k, &mut units).await?;
            }
            self.bring_in(&old, k, &units).await?;
            if self.rolling.start_first {
                self.take_out(&old, k, &units).await?;
            }
            self.reporter.log(
                "deploy",
                format!("batch {}/{} replaced", k + 1, self.rolling.batches()),
            );
            Ok(())
        };
        match work.await {
            Ok(()) => Event::Batched(units),
            Err(e) => Event::Failed(e),
        }
    }

    /// Writes the stack with `endpoints` and the version their mix amounts to.
    async fn write_stack(
        &self,
        old: &[Unit],
        endpoints: Vec<String>,
        units: &[Unit],
    ) -> Result<(), String> {
        let published = self.state.published();
        let current = published
            .config
            .service(&self.service)
            .ok_or_else(|| format!("service {:?} was deleted", self.service))?;
        let mut spec: raw::Service = current.to_raw();
        let record = published.records.get(&self.service);
        let old_count = endpoints
            .iter()
            .filter(|e| old.iter().any(|u| &u.endpoint == *e))
            .count();
        let new_count = endpoints
            .iter()
            .filter(|e| units.iter().any(|u| &u.endpoint == *e))
            .count();
        let stack = spec
            .stacks
            .iter_mut()
            .find(|s| s.name == self.spec.stack)
            .ok_or_else(|| format!("stack {} was removed", self.spec.stack))?;
        stack.version = mixed_version(&self.old_version, old_count, &self.spec.version, new_count);
        stack.endpoints = endpoints;
        let change = Change::Restore {
            spec: Box::new(spec),
            origin: Origin::Runtime,
            promotions: record.map(|r| r.promotions.clone()).unwrap_or_default(),
        };
        self.state
            .write(&self.created_by, &self.service, None, change)
            .await
            .map(drop)
            .map_err(|e| format!("cannot update stack {}: {e}", self.spec.stack))
    }

    fn endpoints(&self) -> Vec<String> {
        self.state
            .published()
            .config
            .service(&self.service)
            .and_then(|s| s.stack(&self.spec.stack).map(|st| st.to_raw().endpoints))
            .unwrap_or_default()
    }

    /// Adds batch `k`'s new replicas to the stack and waits until the proxy finds them healthy.
    async fn bring_in(&self, old: &[Unit], k: usize, units: &[Unit]) -> Result<(), String> {
        let fresh: Vec<String> = units[self.rolling.batch(k).start.min(units.len())..]
            .iter()
            .map(|u| u.endpoint.clone())
            .collect();
        let mut endpoints = self.endpoints();
        for e in &fresh {
            if !endpoints.contains(e) {
                endpoints.push(e.clone());
            }
        }
        self.write_stack(old, endpoints, units).await?;
        self.wait_healthy(&fresh).await
    }

    /// Waits (up to the healthy timeout) until the proxy's health check finds `endpoints`
    /// healthy in the stack.
    async fn wait_healthy(&self, endpoints: &[String]) -> Result<(), String> {
        let deadline = Instant::now() + self.healthy_timeout;
        let dp = self.state.data_plane().clone();
        loop {
            let eps = dp.endpoints(&self.service, &self.spec.stack);
            let pending: Vec<String> = endpoints
                .iter()
                .filter(|e| {
                    !eps.iter()
                        .any(|s| &s.address == *e && s.state.takes_traffic())
                })
                .cloned()
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "new replicas not healthy within {:?}: {}",
                    self.healthy_timeout,
                    pending.join(", ")
                ));
            }
            sleep(POLL).await;
        }
    }

    /// Takes batch `k`'s old replicas out of the stack, lets their requests finish, stops them.
    async fn take_out(&self, old: &[Unit], k: usize, units: &[Unit]) -> Result<(), String> {
        let batch = self.rolling.batch(k);
        let leaving: Vec<&Unit> = old[batch.start.min(old.len())..batch.end.min(old.len())]
            .iter()
            .collect();
        let endpoints: Vec<String> = self
            .endpoints()
            .into_iter()
            .filter(|e| !leaving.iter().any(|u| &u.endpoint == e))
            .collect();
        if endpoints.is_empty() {
            // The last replica of the stack without start_first: the stack keeps it listed
            // (with no replica behind it) rather than have no endpoint at all.
            self.reporter.log(
                "deploy",
                "the stack's only replica is replaced: it serves nothing meanwhile",
            );
        } else {
            self.write_stack(old, endpoints, units).await?;
        }
        sleep(SETTLE).await;
        for u in leaving {
            if let Err(e) = self.source.stop_old(u, self.drain).await {
                return Err(format!(
                    "old replica {} would not stop: {}",
                    u.endpoint,
                    chain(&e)
                ));
            }
            self.reporter
                .log("deploy", format!("old replica {} stopped", u.endpoint));
        }
        Ok(())
    }

    /// Records and supervises the new replicas; the stack gets the new version exactly.
    /// Resolves with the units as the source keeps them from now on (when it could).
    pub(super) async fn finish(self, units: Vec<Unit>) -> (Option<Vec<Unit>>, Event) {
        let mut left = Vec::new();
        if let Ok(old) = self.old().await {
            let endpoints: Vec<String> = units.iter().map(|u| u.endpoint.clone()).collect();
            if let Err(e) = self.write_stack(&old, endpoints, &units).await {
                left.push(e);
            }
        }
        let target = self.target();
        let kept = match self.source.keep_new(&target, units, self.drain).await {
            Ok(units) => Some(units),
            Err(e) => {
                left.push(chain(&e));
                None
            }
        };
        let retired = Event::Retired {
            left: (!left.is_empty()).then(|| left.join("; ")),
        };
        (kept, retired)
    }

    /// Starts the old replicas again where they are gone (on their endpoints), puts the
    /// stack back exactly as it was, and stops the new replicas.
    pub(super) async fn roll_back(self, units: Vec<Unit>) -> Event {
        let mut left = Vec::new();
        let target = self.target();
        match self.old().await {
            Err(e) => left.push(e),
            Ok(old) => {
                if let Err(e) = self.source.restore(&target).await {
                    left.push(format!("old replicas not back: {}", chain(&e)));
                }
                // Old replicas in, healthy, before the new ones go: capacity holds.
                let endpoints: Vec<String> = old.iter().map(|u| u.endpoint.clone()).collect();
                let mut all = self.endpoints();
                for e in &endpoints {
                    if !all.contains(e) {
                        all.push(e.clone());
                    }
                }
                if let Err(e) = self.write_stack(&old, all, &units).await {
                    left.push(e);
                } else if let Err(e) = self.wait_healthy(&endpoints).await {
                    self.reporter.log("deploy", format!("rollback: {e}"));
                }
            }
        }
        let before = Change::Restore {
            spec: Box::new(self.before.spec.clone()),
            origin: self.before.origin,
            promotions: self.before.promotions.clone(),
        };
        if let Err(e) = self
            .state
            .write(&self.created_by, &self.service, None, before)
            .await
        {
            left.push(format!("service not restored: {e}"));
        }
        sleep(SETTLE).await;
        if let Err(e) = self.source.discard(&target, &units, self.drain).await {
            left.push(format!("new replicas not all stopped: {}", chain(&e)));
        }
        if left.is_empty() {
            Event::RolledBack
        } else {
            Event::RollbackIncomplete(left.join("; "))
        }
    }
}
