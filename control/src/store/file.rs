//! [`FileStore`]: the desired state and history as files in the state directory.
//!
//! Every change of the desired state or the history is first one durable line of
//! `state.journal` (one write, one `fdatasync`; see [`journal`]); `history.jsonl` gets the
//! change's history lines at once, `state.json` the state at the next checkpoint, where it is
//! replaced atomically: written to `state.json.tmp`, fsynced, renamed over the old file, then
//! the directory is fsynced so the rename itself survives a power loss. [`FileStore::open`]
//! recovers whatever a crash left (a torn journal or history line included) and checkpoints.
//! Blocking file I/O runs on tokio's blocking pool, never on the runtime's workers.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{HistoryEntry, IdempotencyRecord, STATE_FORMAT, SavedState, Store, StoreError};
use crate::data_plane::BoxFuture;
use crate::deploy::{DeploymentRecord, ProcessStackRecord};

mod atomic;
mod deployments;
mod idempotency;
mod journal;
mod replicas;

const STATE_FILE: &str = "state.json";
/// The temporary file [`atomic::write`] leaves only while replacing the state.
#[cfg(test)]
const STATE_TMP: &str = "state.json.tmp";
const HISTORY_FILE: &str = "history.jsonl";

/// A [`Store`] in a local directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    journal: Arc<Mutex<journal::Journal>>,
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Every entry two levels under `top` (`top/<a>/<b>`, `<a>` folders only), in no particular
/// order; nothing when `top` does not exist. The deployment and process stack records are
/// kept in such trees.
fn nested_entries(top: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let firsts = match fs::read_dir(top) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("read", top)(e)),
    };
    let mut out = Vec::new();
    for first in firsts {
        let first = first.map_err(io("read", top))?.path();
        if !first.is_dir() {
            continue;
        }
        for second in fs::read_dir(&first).map_err(io("read", &first))? {
            out.push(second.map_err(io("read", &first))?.path());
        }
    }
    Ok(out)
}

impl FileStore {
    /// Opens (creating it if needed) the state directory, recovering what a crash left.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let journal = journal::Journal::recover(&dir)?;
        Ok(Self {
            dir,
            journal: Arc::new(Mutex::new(journal)),
        })
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` with the journal on the blocking pool.
    async fn with_journal<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut journal::Journal) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let journal = self.journal.clone();
        blocking(move || f(&mut lock(&journal))).await
    }

    fn load_blocking(
        dir: &Path,
        journal: &journal::Journal,
    ) -> Result<Option<SavedState>, StoreError> {
        let (state, path) = match journal.latest()? {
            Some(s) => (s, dir.join(journal::JOURNAL_FILE)),
            None => {
                let path = dir.join(STATE_FILE);
                let bytes = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(io("read", &path)(e)),
                };
                let state =
                    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                        path: path.clone(),
                        source,
                    })?;
                (state, path)
            }
        };
        if state.format > STATE_FORMAT {
            return Err(StoreError::Format {
                path,
                found: state.format,
            });
        }
        Ok(Some(state))
    }

    fn read_history_blocking(
        dir: &Path,
        service: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let path = dir.join(HISTORY_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &path)(e)),
        };
        // Whatever follows the last newline is an append in progress (or torn by a crash).
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let mut entries: Vec<HistoryEntry> = complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str::<HistoryEntry>(l) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable history line");
                    None
                }
            })
            .filter(|e| service.is_none_or(|s| e.service == s))
            .collect();
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
        Ok(entries)
    }
}

/// The journal, even if a thread panicked holding it (every step leaves the files consistent).
fn lock(journal: &Mutex<journal::Journal>) -> MutexGuard<'_, journal::Journal> {
    journal.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(StoreError::Task)?
}

impl Store for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<Option<SavedState>, StoreError>> {
        let dir = self.dir.clone();
        Box::pin(self.with_journal(move |j| Self::load_blocking(&dir, j)))
    }

    /// Journals `state`, then checkpoints: `state.json` holds it when this resolves.
    fn save<'a>(&'a self, state: &'a SavedState) -> BoxFuture<'a, Result<(), StoreError>> {
        let state = state.clone();
        Box::pin(self.with_journal(move |j| {
            j.append(&journal::encode(Some(&state), &[])?)?;
            j.checkpoint(Some(&state))
        }))
    }

    fn append_history<'a>(
        &'a self,
        entry: &'a HistoryEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let change = journal::encode(None, std::slice::from_ref(entry));
        Box::pin(async move { self.with_journal(move |j| j.append(&change?)).await })
    }

    /// Journals `next` and every entry of `history` as one line: one write and one
    /// `fdatasync` (one writer: nothing can have changed `base`).
    fn commit<'a>(
        &'a self,
        _base: &'a SavedState,
        next: &'a SavedState,
        history: &'a [HistoryEntry],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        // Encoded here, so the blocking pool gets the bytes instead of copies to encode there.
        let change = journal::encode(Some(next), history);
        Box::pin(async move { self.with_journal(move |j| j.append(&change?)).await })
    }

    fn read_history<'a>(
        &'a self,
        service: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<HistoryEntry>, StoreError>> {
        let dir = self.dir.clone();
        let service = service.map(str::to_owned);
        Box::pin(blocking(move || {
            Self::read_history_blocking(&dir, service.as_deref(), limit)
        }))
    }

    fn load_deployments(&self) -> BoxFuture<'_, Result<Vec<DeploymentRecord>, StoreError>> {
        let dir = self.dir.clone();
        Box::pin(blocking(move || deployments::load_all(&dir)))
    }

    fn save_deployment<'a>(
        &'a self,
        record: &'a DeploymentRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        let record = record.clone();
        Box::pin(blocking(move || deployments::save(&dir, &record)))
    }

    fn load_process_stacks(&self) -> BoxFuture<'_, Result<Vec<ProcessStackRecord>, StoreError>> {
        let dir = self.dir.clone();
        Box::pin(blocking(move || replicas::load_all(&dir)))
    }

    fn save_process_stack<'a>(
        &'a self,
        record: &'a ProcessStackRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        let record = record.clone();
        Box::pin(blocking(move || replicas::save(&dir, &record)))
    }

    fn remove_process_stack<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        let (service, stack) = (service.to_owned(), stack.to_owned());
        Box::pin(blocking(move || replicas::remove(&dir, &service, &stack)))
    }

    fn load_idempotency_key<'a>(
        &'a self,
        service: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdempotencyRecord>, StoreError>> {
        let dir = self.dir.clone();
        let (service, key) = (service.to_owned(), key.to_owned());
        Box::pin(blocking(move || idempotency::load(&dir, &service, &key)))
    }

    fn save_idempotency_key<'a>(
        &'a self,
        record: &'a IdempotencyRecord,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        let record = record.clone();
        Box::pin(blocking(move || idempotency::save(&dir, &record)))
    }
}

#[cfg(test)]
mod tests;
