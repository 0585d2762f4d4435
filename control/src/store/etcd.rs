//! [`EtcdStore`]: the desired state, history and deployments in etcd, shared by several
//! instances. The only module that uses the etcd client.
//!
//! Keys under the configured prefix `P`:
//! - `P format`: the state format; `P services/<name>`: one [`ServiceRecord`] each (tombstones
//!   included), so two writers on two services do not collide;
//! - `P history/<unix ns>-<instance>-<seq>`: one [`HistoryEntry`] each, in time order;
//! - `P deployments/<service>/<id>`: one [`DeploymentRecord`] each;
//!   `P replicas/<service>/<stack>`: process stack records;
//! - `P locks/<service>`: the instance driving that service's deployment, under its lease;
//! - `P instances/<id>`: each running instance, under its lease.
//!
//! Writes from the API are one transaction: compare every changed service key's
//! `mod_revision` with the one this instance last saw, put the records and the history
//! entries. The watch (see `watch`) keeps those revisions current and publishes what other
//! instances wrote. Every request is bounded in time: an unreachable etcd is
//! [`StoreError::Unavailable`], never a hang. etcd 3.4 or newer (v3 API).

mod client;
mod lease;
mod session;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use switchyard_config::EtcdSpec;
use tokio::sync::watch as channel;
use tokio::task::JoinHandle;

use super::{
    DriverLock, HistoryEntry, InstanceRecord, Observed, STATE_FORMAT, SavedState, ServiceRecord,
    SharedStore, Store, StoreError,
};
use crate::data_plane::BoxFuture;
use crate::deploy::{DeploymentRecord, ProcessStackRecord};
use client::{Client, Compare, Op};
use session::{Inner, decode, encode, unavailable};

/// A [`Store`] in etcd.
pub struct EtcdStore {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.inner.prefix)
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().expect("task list lock").drain(..) {
            task.abort();
        }
    }
}

/// A random id for this start of the process, unique among the instances of a store.
fn instance_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl EtcdStore {
    /// Connects to the cluster `spec` names (no request is sent yet: an unreachable etcd is
    /// found by the first read). `address` is this instance's control API address, recorded
    /// in its registration once [`start`](Self::start) runs.
    pub async fn connect(spec: &EtcdSpec, address: &str) -> Result<Self, StoreError> {
        let client = Client::new(spec).map_err(unavailable)?;
        let id = instance_id();
        let registration = InstanceRecord {
            id: id.clone(),
            address: address.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            generation: None,
            revision: 0,
            updated_at: super::now(),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                prefix: spec.prefix.clone(),
                id,
                lease_ttl: spec.lease_ttl,
                cache: Mutex::new(BTreeMap::new()),
                observed: channel::Sender::new(None),
                available: channel::Sender::new(true),
                registration: channel::Sender::new(registration),
                locks: Mutex::new(BTreeMap::new()),
                history_seq: AtomicU64::new(0),
                registration_lease: AtomicI64::new(0),
            }),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Starts watching the prefix (publishing what other instances write) and registering
    /// this instance under its lease. Call once, on a running tokio runtime.
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().expect("task list lock");
        tasks.push(watch::spawn(self.inner.clone()));
        tasks.push(lease::spawn_registration(self.inner.clone()));
    }

    /// Ends this instance's watch and registration: the others stop listing it at once.
    /// Call on a clean stop, after the control plane stopped writing.
    pub async fn leave(&self) {
        for task in self.tasks.lock().expect("task list lock").drain(..) {
            task.abort();
        }
        lease::leave(&self.inner).await;
    }

    /// This instance's id in the store.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    async fn put_one<T: Serialize>(
        &self,
        rest: String,
        value: &T,
        what: &'static str,
    ) -> Result<(), StoreError> {
        let bytes = encode(value, what)?;
        let key = self.inner.key(&rest);
        self.inner
            .call(|| self.inner.client.put(&key, &bytes))
            .await
    }

    /// Sends a transaction ([`Inner::call`] repeats it when it did not reach etcd).
    async fn txn(
        &self,
        compares: &[Compare],
        ops: &[Op],
    ) -> Result<client::TxnResponse, StoreError> {
        self.inner
            .call(|| self.inner.client.txn(compares, ops))
            .await
    }

    /// A new history key: wall-clock time orders entries across instances (the entries carry
    /// their own time too); the instance id and a counter keep keys unique.
    fn history_key(&self) -> String {
        let n = self.inner.history_seq.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("history/{nanos:020}-{}-{n:08}", self.inner.id)
    }

    fn history_ops(&self, history: &[HistoryEntry]) -> Result<Vec<Op>, StoreError> {
        history
            .iter()
            .map(|h| {
                let key = self.inner.key(&self.history_key());
                Ok(Op::put(key, encode(h, "history entry")?))
            })
            .collect()
    }
}

impl Store for EtcdStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<SavedState>, StoreError>> {
        Box::pin(async move {
            let resp = self.inner.get_prefix("").await?;
            let services_prefix = self.inner.key("services/");
            let format_key = self.inner.key("format");
            let mut format = None;
            let mut services = BTreeMap::new();
            for kv in &resp.kvs {
                let key = String::from_utf8_lossy(&kv.key);
                if key == format_key {
                    format = Some(decode::<u32>(&kv.key, &kv.value)?);
                } else if let Some(name) = key.strip_prefix(&services_prefix) {
                    let record: ServiceRecord = decode(&kv.key, &kv.value)?;
                    self.inner.remember(name, record.clone(), kv.mod_revision);
                    services.insert(name.to_owned(), record);
                }
            }
            if format.is_none() && services.is_empty() {
                return Ok(None);
            }
            let format = format.unwrap_or(STATE_FORMAT);
            if format > STATE_FORMAT {
                return Err(StoreError::Format {
                    path: format_key.into(),
                    found: format,
                });
            }
            Ok(Some(SavedState { format, services }))
        })
    }

    fn save<'a>(&'a self, state: &'a SavedState) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut ops = vec![Op::put(
                self.inner.key("format"),
                encode(&state.format, "state format")?,
            )];
            for (name, record) in &state.services {
                ops.push(Op::put(
                    self.inner.key(&format!("services/{name}")),
                    encode(record, "service record")?,
                ));
            }
            let resp = self.txn(&[], &ops).await?;
            let revision = resp.revision();
            for (name, record) in &state.services {
                self.inner.remember(name, record.clone(), revision);
            }
            Ok(())
        })
    }

    fn commit<'a>(
        &'a self,
        base: &'a SavedState,
        next: &'a SavedState,
        history: &'a [HistoryEntry],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let changed: Vec<(&String, &ServiceRecord)> = next
                .services
                .iter()
                .filter(|(name, record)| base.services.get(*name) != Some(*record))
                .collect();
            let mut compares = Vec::new();
            {
                let cache = self.inner.cache();
                for (name, _) in &changed {
                    let key = self.inner.key(&format!("services/{name}"));
                    match (cache.get(*name), base.services.get(*name)) {
                        (Some((seen, revision)), Some(planned)) if seen == planned => {
                            compares.push(Compare::ModRevision(key, *revision));
                        }
                        (None, None) => {
                            compares.push(Compare::CreateRevision(key, 0));
                        }
                        // This instance planned from an older state than it has seen.
                        _ => {
                            return Err(StoreError::Conflict {
                                what: format!("service {name:?}"),
                            });
                        }
                    }
                }
            }
            let mut ops = Vec::new();
            if base.format != next.format {
                ops.push(Op::put(
                    self.inner.key("format"),
                    encode(&next.format, "state format")?,
                ));
            }
            for (name, record) in &changed {
                ops.push(Op::put(
                    self.inner.key(&format!("services/{name}")),
                    encode(*record, "service record")?,
                ));
            }
            ops.extend(self.history_ops(history)?);
            let resp = self.txn(&compares, &ops).await?;
            if !resp.succeeded {
                let names: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
                return Err(StoreError::Conflict {
                    what: format!("service {}", names.join(", ")),
                });
            }
            let revision = resp.revision();
            for (name, record) in changed {
                self.inner.remember(name, record.clone(), revision);
            }
            self.inner.publish();
            Ok(())
        })
    }

    fn append_history<'a>(
        &'a self,
        entry: &'a HistoryEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.history_key();
            self.put_one(key, entry, "history entry").await
        })
    }

    fn read_history<'a>(
        &'a self,
        service: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>> {
        Box::pin(async move {
            let mut entries: Vec<HistoryEntry> = self.inner.list("history/").await?;
            entries.retain(|e| service.is_none_or(|s| e.service == s));
            let skip = entries.len().saturating_sub(limit);
            entries.drain(..skip);
            Ok(entries)
        })
    }

    fn load_deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentRecord>, StoreError>> {
        Box::pin(async move {
            let mut out: Vec<DeploymentRecord> = self.inner.list("deployments/").await?;
            out.sort_by(|a, b| (&a.service, a.id).cmp(&(&b.service, b.id)));
            Ok(out)
        })
    }

    fn save_deployment<'a>(
        &'a self,
        record: &'a DeploymentRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self
                .inner
                .key(&format!("deployments/{}/{:020}", record.service, record.id));
            let put = [Op::put(key, encode(record, "deployment")?)];
            let lease = self.inner.locks().get(&record.service).copied();
            let compares = match lease {
                // Only the lock holder may write: a driver whose lease expired (this instance
                // was cut off from etcd) stops at its next transition instead of racing the
                // instance that took over.
                Some(lease) => vec![Compare::Lease(
                    self.inner.key(&format!("locks/{}", record.service)),
                    lease,
                )],
                None => Vec::new(),
            };
            let resp = self.txn(&compares, &put).await?;
            if !resp.succeeded {
                return Err(StoreError::Conflict {
                    what: format!("the deployment lock of service {:?}", record.service),
                });
            }
            Ok(())
        })
    }

    fn load_process_stacks(&self) -> BoxFuture<'_, Result<Vec<ProcessStackRecord>, StoreError>> {
        Box::pin(async move { self.inner.list("replicas/").await })
    }

    fn load_idempotency_key<'a>(
        &'a self,
        service: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::IdempotencyRecord>, StoreError>> {
        Box::pin(async move {
            let found: Vec<super::IdempotencyRecord> =
                self.inner.list(&idempotency_key(service, key)).await?;
            let now = time::OffsetDateTime::now_utc();
            Ok(found
                .into_iter()
                .find(|r| r.key == key && r.service == service && !r.expired(now)))
        })
    }

    fn save_idempotency_key<'a>(
        &'a self,
        record: &'a super::IdempotencyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // Expired records are told apart on reading (`expired`); the key space stays as small
        // as a day's deployments because every key is one deployment request.
        let key = idempotency_key(&record.service, &record.key);
        Box::pin(async move { self.put_one(key, record, "idempotency key").await })
    }

    fn save_process_stack<'a>(
        &'a self,
        record: &'a ProcessStackRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let key = format!("replicas/{}/{}", record.service, record.stack);
        Box::pin(async move { self.put_one(key, record, "process stack").await })
    }

    fn remove_process_stack<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.inner.key(&format!("replicas/{service}/{stack}"));
            self.inner.call(|| self.inner.client.delete(&key)).await
        })
    }

    fn shared(&self) -> Option<&dyn SharedStore> {
        Some(self)
    }
}

impl SharedStore for EtcdStore {
    fn observed(&self) -> channel::Receiver<Option<Arc<Observed>>> {
        self.inner.observed.subscribe()
    }

    fn available(&self) -> channel::Receiver<bool> {
        self.inner.available.subscribe()
    }

    fn lock_deployment<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DriverLock>, StoreError>> {
        Box::pin(lease::lock(self.inner.clone(), service))
    }

    fn report(&self, generation: Option<u64>, revision: i64) {
        self.inner.registration.send_if_modified(|r| {
            if r.generation == generation && r.revision == revision {
                return false;
            }
            r.generation = generation;
            r.revision = revision;
            r.updated_at = super::now();
            true
        });
    }

    fn instances(&self) -> BoxFuture<'_, Result<Vec<InstanceRecord>, StoreError>> {
        Box::pin(async move { self.inner.list("instances/").await })
    }
}

/// Where a remembered `Idempotency-Key` lives under the prefix: the key's SHA-256, so any key
/// makes a safe etcd key.
fn idempotency_key(service: &str, key: &str) -> String {
    use sha2::Digest;
    format!(
        "idempotency/{service}/{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    )
}
