//! The durable desired state and the audit history, behind the [`Store`] trait.
//!
//! A store keeps two things: the [`SavedState`] (every service's record: revision, who owns it,
//! its raw spec or a tombstone, stack promotions), replaced as a whole on every write, and the
//! append-only history of [`HistoryEntry`]s. Deployment records and process stack records
//! (the replicas Switchyard supervises, by PID) are kept through the same trait. `save` and
//! `append_history` resolve only once the data is durable, because the API acknowledges a write only after that. [`FileStore`] keeps
//! both in a state directory; a shared store (etcd) for several proxies can implement the same
//! trait later.

mod file;

pub use file::FileStore;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use switchyard_config::raw;
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
    pub before: Option<serde_json::Value>,
    /// The service after the change (`null` when deleted or when the write was refused).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    /// `applied`, `unchanged`, or `rejected: <code>`.
    pub outcome: String,
    /// The service revision after the write.
    pub revision: u64,
    /// Why a write was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The current time as RFC 3339 UTC, for records and history.
pub(crate) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("the current time is within RFC 3339's years")
}
