//! Leases: this instance's registration under `P instances/<id>` and the deployment locks
//! under `P locks/<service>`. Each lives as long as its lease is kept alive; when the
//! instance dies the lease expires after the configured TTL and etcd deletes the keys, which
//! is how the other instances learn that it is gone and that a deployment needs a driver.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::client::Compare;
use super::session::{Inner, encode, leased_put};
use crate::error::chain;
use crate::store::{DriverLock, StoreError};

/// Grants a lease of the store's TTL.
async fn grant(inner: &Inner) -> Result<i64, StoreError> {
    let ttl = i64::try_from(inner.lease_ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    inner.call(|| inner.client.lease_grant(ttl)).await
}

/// Keeps `lease` alive until it expires (then returns) or the task is aborted. Outages
/// shorter than the TTL are ridden out: the keep-alive is sent again until etcd answers, and
/// its answer says whether the lease is still there.
async fn keep_alive(inner: &Inner, lease: i64) {
    let period = (inner.lease_ttl / 3).max(Duration::from_millis(300));
    let mut pause = period;
    loop {
        tokio::time::sleep(pause).await;
        match inner.call(|| inner.client.lease_keep_alive(lease)).await {
            Ok(ttl) if ttl > 0 => pause = period,
            // The lease is gone: it expired while etcd was away.
            Ok(_) => return,
            Err(_) => pause = Duration::from_millis(200),
        }
    }
}

/// Starts the registration task: puts this instance's record under a lease, refreshes it on
/// every report, and registers anew if the lease expired during an outage.
pub(super) fn spawn_registration(inner: Arc<Inner>) -> JoinHandle<()> {
    let span = tracing::info_span!("store_registration", instance = %inner.id);
    tokio::spawn(
        async move {
            let mut reports = inner.registration.subscribe();
            loop {
                let lease = match grant(&inner).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::debug!(error = %chain(&e), "cannot register; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                inner.registration_lease.store(lease, Ordering::Relaxed);
                let keeper = keep_alive(&inner, lease);
                tokio::pin!(keeper);
                loop {
                    let record = reports.borrow_and_update().clone();
                    let put = async {
                        let value = encode(&record, "instance")?;
                        let key = inner.key(&format!("instances/{}", inner.id));
                        let ops = [leased_put(key, value, lease)];
                        inner.call(|| inner.client.txn(&[], &ops)).await
                    };
                    if let Err(e) = put.await {
                        tracing::debug!(error = %chain(&e), "cannot refresh the registration");
                    }
                    tokio::select! {
                        () = &mut keeper => break,
                        changed = reports.changed() => if changed.is_err() { return },
                    }
                }
                tracing::warn!("registration lease expired; registering again");
            }
        }
        .instrument(span),
    )
}

/// Removes this instance's registration at once (a clean stop), rather than after the TTL.
pub(super) async fn leave(inner: &Inner) {
    let lease = inner.registration_lease.swap(0, Ordering::Relaxed);
    if lease != 0 {
        if let Err(e) = revoke(inner, lease).await {
            tracing::debug!(error = %chain(&e), "cannot revoke the registration; it expires on its own");
        }
    }
}

/// A held lock: its keep-alive task and the lease, revoked on drop.
struct LockGuard {
    inner: Arc<Inner>,
    service: String,
    lease: i64,
    keeper: JoinHandle<()>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.keeper.abort();
        {
            let mut locks = self.inner.locks();
            if locks.get(&self.service) == Some(&self.lease) {
                locks.remove(&self.service);
            }
        }
        // Revoking frees the lock at once rather than after the TTL; without a runtime (the
        // process is exiting) the lease simply expires.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let inner = self.inner.clone();
            let lease = self.lease;
            handle.spawn(async move {
                if let Err(e) = revoke(&inner, lease).await {
                    tracing::debug!(error = %chain(&e), "cannot revoke a deployment lock; it expires on its own");
                }
            });
        }
    }
}

/// Takes the deployment lock of `service` unless another instance holds it.
pub(super) async fn lock(
    inner: Arc<Inner>,
    service: &str,
) -> Result<Option<DriverLock>, StoreError> {
    let lease = grant(&inner).await?;
    let key = inner.key(&format!("locks/{service}"));
    let compares = [Compare::CreateRevision(key.clone(), 0)];
    let ops = [leased_put(key, inner.id.clone().into_bytes(), lease)];
    let resp = inner.call(|| inner.client.txn(&compares, &ops)).await;
    let won = match resp {
        Ok(r) => r.succeeded,
        Err(e) => {
            revoke_quietly(&inner, lease).await;
            return Err(e);
        }
    };
    if !won {
        revoke_quietly(&inner, lease).await;
        return Ok(None);
    }
    inner.locks().insert(service.to_owned(), lease);
    let keeper = {
        let inner = inner.clone();
        let span = tracing::info_span!("deployment_lock", service);
        tokio::spawn(async move { keep_alive(&inner, lease).await }.instrument(span))
    };
    tracing::info!(service, "deployment lock taken");
    Ok(Some(DriverLock::new(LockGuard {
        inner,
        service: service.to_owned(),
        lease,
        keeper,
    })))
}

async fn revoke_quietly(inner: &Inner, lease: i64) {
    // An unused lease expires on its own anyway.
    let _ = revoke(inner, lease).await;
}

async fn revoke(inner: &Inner, lease: i64) -> Result<(), StoreError> {
    inner.call(|| inner.client.lease_revoke(lease)).await
}
