//! The connection to etcd shared by the store and its tasks: every request bounded in time
//! (an unreachable etcd is [`StoreError::Unavailable`], and the store's availability follows
//! the outcome), the key layout under the prefix, and the cache of service records with the
//! `mod_revision` each was last seen at — what commits compare against and what the watch
//! publishes.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::{Client, ClientError, Op, Range};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;

use crate::store::{InstanceRecord, Observed, STATE_FORMAT, SavedState, ServiceRecord, StoreError};

/// The longest any single etcd request may take, attempts included, before etcd counts as
/// unavailable.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one attempt may take: a request stuck on a connection to a member that just
/// died is sent again (to a live member) well before [`REQUEST_TIMEOUT`].
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(700);

/// The pause before sending a request again to another member.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// What the store's tasks share with it.
pub(super) struct Inner {
    pub(super) client: Client,
    pub(super) prefix: String,
    /// This instance's id (registration, lock values, history keys).
    pub(super) id: String,
    pub(super) lease_ttl: Duration,
    /// Every service record this instance knows, with its key's `mod_revision`.
    pub(super) cache: Mutex<BTreeMap<String, (ServiceRecord, i64)>>,
    pub(super) observed: channel::Sender<Option<Arc<Observed>>>,
    pub(super) available: channel::Sender<bool>,
    /// The registration this instance keeps under its lease.
    pub(super) registration: channel::Sender<InstanceRecord>,
    /// The lease of each deployment lock held, by service.
    pub(super) locks: Mutex<BTreeMap<String, i64>>,
    pub(super) history_seq: AtomicU64,
    /// The lease of this instance's registration (0 before the first).
    pub(super) registration_lease: AtomicI64,
}

pub(super) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable(Box::new(e))
}

/// Waited on too long.
#[derive(Debug, thiserror::Error)]
#[error("etcd did not answer within {0:?}")]
pub(super) struct TimedOut(pub(super) Duration);

impl Inner {
    /// Runs one etcd request, bounded by [`REQUEST_TIMEOUT`] in all; tracks availability.
    /// `request` makes the request afresh for each attempt: a request that did not reach a
    /// member (connection refused, member unavailable: that member is down) is sent again,
    /// and the client has moved on to the next member of the cluster.
    pub(super) async fn call<T, F>(&self, mut request: impl FnMut() -> F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, ClientError>>,
    {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let outcome = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let again = tokio::time::Instant::now() + RETRY_PAUSE < deadline;
            match tokio::time::timeout(left.min(ATTEMPT_TIMEOUT), request()).await {
                Ok(Ok(v)) => break Ok(v),
                Ok(Err(e)) if e.unreached() && again => {}
                Ok(Err(e)) => break Err(unavailable(e)),
                // Stuck on a connection to a member that went away: another member may
                // answer. (A commit that went through after all is refused by its own compare
                // when sent again, and the writer plans again; other writes are idempotent.)
                Err(_) if again => self.client.next_endpoint(),
                Err(_) => {
                    self.client.next_endpoint();
                    break Err(unavailable(TimedOut(REQUEST_TIMEOUT)));
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        self.track(outcome)
    }

    /// Records whether etcd answered.
    fn track<T>(&self, outcome: Result<T, StoreError>) -> Result<T, StoreError> {
        self.available.send_if_modified(|a| {
            let now = outcome.is_ok();
            std::mem::replace(a, now) != now
        });
        outcome
    }

    pub(super) fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub(super) fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, (ServiceRecord, i64)>> {
        self.cache
            .lock()
            .expect("store cache lock is never poisoned")
    }

    pub(super) fn locks(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, i64>> {
        self.locks
            .lock()
            .expect("lock table lock is never poisoned")
    }

    /// Records what a listing or event says about a service, unless the cache knows a newer
    /// revision already.
    pub(super) fn remember(&self, name: &str, record: ServiceRecord, revision: i64) {
        let mut cache = self.cache();
        match cache.get(name) {
            Some((_, known)) if *known >= revision => {}
            _ => {
                cache.insert(name.to_owned(), (record, revision));
            }
        }
    }

    /// Publishes the cache as the observed state (only when it changed).
    pub(super) fn publish(&self) {
        let observed = {
            let cache = self.cache();
            Observed {
                state: SavedState {
                    format: STATE_FORMAT,
                    services: cache
                        .iter()
                        .map(|(k, (r, _))| (k.clone(), r.clone()))
                        .collect(),
                },
                revision: cache.values().map(|(_, r)| *r).max().unwrap_or(0),
            }
        };
        self.observed.send_if_modified(|o| {
            if o.as_deref() == Some(&observed) {
                return false;
            }
            *o = Some(Arc::new(observed));
            true
        });
    }

    pub(super) async fn get_prefix(&self, rest: &str) -> Result<Range, StoreError> {
        let key = self.key(rest);
        self.call(|| self.client.get_prefix(&key)).await
    }

    /// Every value under `rest`, decoded, in key order.
    pub(super) async fn list<T: DeserializeOwned>(&self, rest: &str) -> Result<Vec<T>, StoreError> {
        let resp = self.get_prefix(rest).await?;
        resp.kvs
            .iter()
            .map(|kv| decode(&kv.key, &kv.value))
            .collect()
    }
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::CorruptKey {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

pub(super) fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

/// Puts `value` at `key` under `lease` (0: none).
pub(super) fn leased_put(key: String, value: Vec<u8>, lease: i64) -> Op {
    Op::Put { key, value, lease }
}
