//! The watch of `P services/`: lists the records once, then follows every change from the
//! next revision, updating the store's cache (the revisions commits compare against) and
//! publishing the state for the writer to apply.
//!
//! A lost watch (etcd restarted, a network cut, a compacted revision) ends one round; the
//! next round lists again at the latest revision and watches on from there, so nothing is
//! missed and nothing older than the listing is replayed. While etcd is unreachable the
//! rounds back off up to [`MAX_PAUSE`] and the store reports itself unavailable.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::Instrument;

use super::session::{Inner, decode, unavailable};
use crate::error::chain;
use crate::store::{ServiceRecord, StoreError};

/// The longest pause between two attempts while etcd is unreachable.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// How long a watch may stay quiet before the member it is on is asked whether it still
/// answers (a member cut off without a reset would otherwise hold the watch forever).
const QUIET: Duration = Duration::from_secs(2);

/// Starts the watch task.
pub(super) fn spawn(inner: Arc<Inner>) -> JoinHandle<()> {
    tokio::spawn(run(inner).instrument(tracing::info_span!("store_watch")))
}

async fn run(inner: Arc<Inner>) {
    let mut pause = Duration::from_millis(50);
    loop {
        match round(&inner).await {
            Ok(()) => pause = Duration::from_millis(50),
            Err(e) => {
                inner
                    .available
                    .send_if_modified(|a| std::mem::replace(a, false));
                tracing::warn!(error = %chain(&e), "store watch lost; listing again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

/// One listing and the watch that follows it. `Ok` when the watch ended in a way that only
/// needs a new listing (compaction, cancel, end of stream).
async fn round(inner: &Inner) -> Result<(), StoreError> {
    let prefix = inner.key("services/");
    let listing = inner.get_prefix("services/").await?;
    let revision = listing.revision();
    for kv in &listing.kvs {
        let key = String::from_utf8_lossy(&kv.key);
        if let Some(name) = key.strip_prefix(&prefix) {
            let record: ServiceRecord = decode(&kv.key, &kv.value)?;
            inner.remember(name, record, kv.mod_revision);
        }
    }
    inner.publish();
    tracing::debug!(revision, "store listed");
    let mut stream = inner
        .call(|| inner.client.watch(&prefix, revision + 1))
        .await?;
    loop {
        // A quiet watch is fine as long as its member answers.
        let resp = match tokio::time::timeout(QUIET, stream.message(&inner.client)).await {
            Ok(message) => match message.map_err(unavailable)? {
                Some(resp) => resp,
                None => return Ok(()),
            },
            Err(_) => {
                if stream.member_answers(&inner.client, QUIET).await {
                    continue;
                }
                return Err(unavailable(super::session::TimedOut(QUIET)));
            }
        };
        inner
            .available
            .send_if_modified(|a| !std::mem::replace(a, true));
        if resp.canceled || resp.compact_revision > 0 {
            tracing::info!(
                compacted = resp.compact_revision,
                reason = resp.cancel_reason,
                "store watch cancelled; listing again"
            );
            return Ok(());
        }
        let mut changed = false;
        for event in &resp.events {
            let Some(kv) = &event.kv else { continue };
            let key = String::from_utf8_lossy(&kv.key);
            let Some(name) = key.strip_prefix(&prefix) else {
                continue;
            };
            if event.is_delete() {
                inner.cache().remove(name);
            } else {
                let record: ServiceRecord = decode(&kv.key, &kv.value)?;
                inner.remember(name, record, kv.mod_revision);
            }
            changed = true;
        }
        if changed {
            inner.publish();
        }
    }
}
