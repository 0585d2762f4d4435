//! With a shared store (etcd): every instance looks for deployments in flight that no live
//! instance drives, and the first to take the service's deployment lock drives it on from
//! its persisted phase — the same resume (or roll back) as after a restart. The lock's lease
//! expires when its holder dies, so a deployment is driven again within the lease time.
//! Deployments driven elsewhere, or finished, are shown to readers as their records say.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::Deployments;
use crate::error::chain;
use crate::state::ControlState;

/// How often the records are read. Well under the default lease time of 5 s, so a takeover
/// starts soon after the lock expires.
const POLL: Duration = Duration::from_millis(500);

/// Starts the takeover task; it stops on shutdown.
pub(super) fn spawn(deployments: Arc<Deployments>, state: ControlState) {
    let mut shutdown = deployments.shutdown();
    tokio::spawn(
        async move {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|s| *s) => break,
                    () = tokio::time::sleep(POLL) => {}
                }
                round(&deployments, &state).await;
            }
        }
        .instrument(tracing::info_span!("deploy_takeover")),
    );
}

async fn round(deployments: &Deployments, state: &ControlState) {
    let Some(shared) = state.store().shared() else {
        return;
    };
    let records = match state.store().load_deployments().await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %chain(&e), "cannot read deployments");
            return;
        }
    };
    for rec in records {
        let key = (rec.service.clone(), rec.id);
        if deployments.drives(&key) {
            continue;
        }
        if rec.phase.is_terminal() || *deployments.shutdown().borrow() {
            deployments.observe(rec);
            continue;
        }
        let lock = match shared.lock_deployment(&rec.service).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                deployments.observe(rec);
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %chain(&e), "cannot take a deployment lock");
                return;
            }
        };
        // The record may have moved on between the listing and the lock.
        let fresh = match state.store().load_deployments().await {
            Ok(all) => all
                .into_iter()
                .find(|r| (&r.service, r.id) == (&key.0, key.1)),
            Err(e) => {
                tracing::debug!(error = %chain(&e), "cannot read deployments");
                return;
            }
        };
        let Some(fresh) = fresh else { continue };
        if fresh.phase.is_terminal() {
            deployments.observe(fresh);
            continue;
        }
        tracing::warn!(service = %fresh.service, id = fresh.id, phase = fresh.phase.as_str(), "taking over a deployment no instance drives");
        deployments.launch(state, fresh, true, Some(lock));
    }
}
