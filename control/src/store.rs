//! The durable desired state and the audit history, behind the [`Store`] trait.
//!
//! A store keeps two things: the [`SavedState`] (every service's record: revision, who owns it,
//! its raw spec or a tombstone, stack promotions), replaced as a whole on every write, and the
//! append-only history of [`HistoryEntry`]s. Deployment records and process stack records
//! (the replicas Switchyard supervises, by PID) are kept through the same trait. `save` and
//! `append_history` resolve only once the data is durable, because the API acknowledges a write only after that. [`FileStore`] keeps
//! both in a state directory, for one instance. [`EtcdStore`] keeps them in etcd for several
//! instances: its writes are compare-and-swap transactions ([`Store::commit`]) and it tells
//! every instance what the others wrote through [`SharedStore`].

mod etcd;
mod file;
mod migrate;

pub use etcd::EtcdStore;
pub use file::FileStore;
pub use migrate::{MigrateError, MigrateReport, migrate};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchyard_config::raw;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::data_plane::BoxFuture;
use crate::deploy::{DeploymentRecord, ProcessStackRecord};

/// The version of the state file format written by this build.
pub const STATE_FORMAT: u32 = 1;

/// Where desired state and history are kept durably.
pub trait Store: Send + Sync + 'static {
    /// The saved state, or `None` when nothing was ever saved.
    fn load(&self) -> BoxFuture<'_, Result<Option<SavedState>, StoreError>>;
    /// Replaces the saved state; resolves once it is durable.
    fn save<'a>(&'a self, state: &'a SavedState) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Appends one history entry; resolves once it is durable.
    fn append_history<'a>(
        &'a self,
        entry: &'a HistoryEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The last `limit` entries (oldest first), only those of `service` when given.
    fn read_history<'a>(
        &'a self,
        service: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>>;
    /// Every saved deployment record (finished ones are the deployment history).
    fn load_deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentRecord>, StoreError>>;
    /// Replaces one deployment's record; resolves once it is durable.
    fn save_deployment<'a>(
        &'a self,
        record: &'a DeploymentRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every saved process stack record (replicas Switchyard supervises).
    fn load_process_stacks(&self) -> BoxFuture<'_, Result<Vec<ProcessStackRecord>, StoreError>>;
    /// Replaces one process stack's record; resolves once it is durable.
    fn save_process_stack<'a>(
        &'a self,
        record: &'a ProcessStackRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes one process stack's record (nothing to remove is fine); resolves once durable.
    fn remove_process_stack<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The remembered `Idempotency-Key` `key` of `service`, if one was saved and has not
    /// expired ([`IDEMPOTENCY_TTL`]).
    fn load_idempotency_key<'a>(
        &'a self,
        service: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>, StoreError>>;
    /// Remembers one `Idempotency-Key` (and may forget expired ones); resolves once durable.
    fn save_idempotency_key<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Replaces `base` (the state the writer planned from) with `next` and appends `history`,
    /// as one durable step. A shared store refuses with [`StoreError::Conflict`] when another
    /// writer changed a service that differs between the two since `base` was read, so no
    /// update is lost; the local store has one writer and saves, then appends.
    fn commit<'a>(
        &'a self,
        base: &'a SavedState,
        next: &'a SavedState,
        history: &'a [HistoryEntry],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // One writer: nothing can have changed `base` behind its back.
        let _ = base;
        Box::pin(async move {
            self.save(next).await?;
            for entry in history {
                self.append_history(entry).await?;
            }
            Ok(())
        })
    }

    /// What a store shared by several instances adds; `None` for a store of one instance.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }
}

/// How long an `Idempotency-Key` of a deployment request is remembered.
pub const IDEMPOTENCY_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A remembered `Idempotency-Key`: which deployment a request with it started, and a digest
/// of the request's body, so a retry with another body is told apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencyRecord {
    /// The service deployed to.
    pub service: String,
    /// The key as the client sent it.
    pub key: String,
    /// Hex SHA-256 of the request body as decoded (so whitespace does not matter).
    pub body_sha256: String,
    /// The deployment the first request started.
    pub deployment: u64,
    /// When the first request was answered (RFC 3339, UTC).
    pub created_at: String,
}

impl IdempotencyRecord {
    /// Whether the record is older than [`IDEMPOTENCY_TTL`] at `now` (unreadable times count
    /// as expired).
    pub fn expired(&self, now: time::OffsetDateTime) -> bool {
        time::OffsetDateTime::parse(
            &self.created_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map_or(true, |at| now - at > IDEMPOTENCY_TTL)
    }
}

/// A store several instances share: what the others wrote, whether it answers, one driver per
/// deployment, and who the instances are.
pub trait SharedStore: Send + Sync {
    /// The latest state in the store as this instance's watch saw it (`None` before the first
    /// listing).
    fn observed(&self) -> watch::Receiver<Option<Arc<Observed>>>;
    /// Whether the store answers (`false` while it is unreachable).
    fn available(&self) -> watch::Receiver<bool>;
    /// Tries to become the one driver of the deployments of `service`: `None` while another
    /// instance holds the lock. Dropping the lock releases it; if this instance dies, it
    /// expires after the lease time and another instance takes over.
    fn lock_deployment<'a>(
        &'a self,
        service: &'a str,
    ) -> BoxFuture<'a, Result<Option<DriverLock>, StoreError>>;
    /// Records what this instance now serves (its registration is refreshed with it).
    fn report(&self, generation: Option<u64>, revision: i64);
    /// Every registered instance, by id.
    fn instances(&self) -> BoxFuture<'_, Result<Vec<InstanceRecord>, StoreError>>;
}

/// The state a shared store holds, as seen at `revision` (the newest change among its
/// services: equal revisions mean equal states).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The state.
    pub state: SavedState,
    /// The store's revision of its newest service record.
    pub revision: i64,
}

/// A held deployment lock; dropping it releases the lock.
pub struct DriverLock {
    _guard: Box<dyn Send + Sync>,
}

impl DriverLock {
    /// A lock whose release is `guard`'s drop.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self {
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for DriverLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverLock")
    }
}

/// One running instance as registered in a shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstanceRecord {
    /// Random id, new on every start.
    pub id: String,
    /// Its control API address.
    pub address: String,
    /// The Switchyard version it runs.
    pub version: String,
    /// The data plane generation it serves (`null` before its first change).
    pub generation: Option<u64>,
    /// The store revision of the desired state it serves (see [`Observed::revision`]).
    pub revision: i64,
    /// When it last reported (RFC 3339, UTC).
    pub updated_at: String,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or directory operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done (`write`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The saved state cannot be read back.
    #[error("corrupt state in {path}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The saved state was written by a newer format.
    #[error("state in {path} has format {found}; this build reads format {STATE_FORMAT}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The format found.
        found: u32,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode the {what} as JSON")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A blocking task of the store died.
    #[error("store task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The shared store cannot be reached (or refused the request).
    #[error("the store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Another instance changed the state first (compare-and-swap lost, or the deployment
    /// lock is no longer this instance's).
    #[error("another instance changed {what} first")]
    Conflict {
        /// What changed.
        what: String,
    },
    /// A value in the shared store cannot be read back.
    #[error("corrupt value under key {key}")]
    CorruptKey {
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The whole desired state as persisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedState {
    /// File format version ([`STATE_FORMAT`]).
    pub format: u32,
    /// Every service ever known, by name (including deleted ones, as tombstones).
    pub services: BTreeMap<String, ServiceRecord>,
}

/// Who decides a service's content on start and on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Seeded from the configuration file, never changed at runtime: the file decides.
    File,
    /// Created, changed or deleted through the API: the saved state decides.
    Runtime,
}

/// One service's durable record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceRecord {
    /// Increases on every change of the service, deletion included.
    pub revision: u64,
    /// Who owns the content.
    pub origin: Origin,
    /// The service as given (relative paths unresolved); `None` once deleted (a tombstone).
    pub spec: Option<raw::Service>,
    /// When each stack was last promoted (its weight raised).
    #[serde(default)]
    pub promotions: BTreeMap<String, Promotion>,
    /// When the record last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// The last promotion of a stack: its weight was raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The service revision that raised it: orders promotions without trusting the clock.
    pub revision: u64,
}

/// One entry of the audit history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEntry {
    /// When the write was decided (RFC 3339, UTC).
    pub time: String,
    /// The token's name, `anonymous` when the API is open, `file` for a reload.
    pub token: String,
    /// What was asked: `create_service`, `delete_service`, `set_weights`, `add_stack`,
    /// `set_endpoints`, `delete_stack` or `reseed`.
    pub action: String,
    /// The service concerned.
    pub service: String,
    /// The service before the change (`null` when it did not exist).
    #[schema(value_type = Option<Object>)]
    pub before: Option<SpecJson>,
    /// The service after the change (`null` when deleted or when the write was refused).
    #[schema(value_type = Option<Object>)]
    pub after: Option<SpecJson>,
    /// `applied`, `unchanged`, or `rejected: <code>`.
    pub outcome: String,
    /// The service revision after the write.
    pub revision: u64,
    /// Why a write was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A service's specification in the history, kept as its JSON text: encoded once when the
/// entry is made, then copied as it is into every line that carries the entry (the journal,
/// `history.jsonl`, etcd, the API's answer) instead of being built into a
/// [`serde_json::Value`] tree and encoded again for each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecJson(Box<serde_json::value::RawValue>);

impl SpecJson {
    /// `service`'s specification as JSON text.
    pub fn of(service: &raw::Service) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(service).map(Self)
    }

    /// Any JSON value (a test's or a tool's record).
    pub fn from_value(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

/// The same text is the same specification: every build encodes a specification the same way.
impl PartialEq for SpecJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// The current time as RFC 3339 UTC, for records and history.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time is within RFC 3339's years")
}
