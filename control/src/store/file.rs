//! [`FileStore`]: the desired state and history as files in the state directory.
//!
//! `state.json` is replaced atomically: written to `state.json.tmp`, fsynced, renamed over the
//! old file, then the directory is fsynced so the rename itself survives a power loss.
//! `history.jsonl` gets one JSON line per entry, fsynced before the append resolves. A crash can
//! leave at most a torn last history line, which [`FileStore::open`] terminates and readers skip.
//! Blocking file I/O runs on tokio's blocking pool, never on the runtime's workers.

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{HistoryEntry, IdempotencyRecord, STATE_FORMAT, SavedState, Store, StoreError};
use crate::data_plane::BoxFuture;
use crate::deploy::{DeploymentRecord, ProcessStackRecord};

mod atomic;
mod deployments;
mod idempotency;
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
    /// Opens (creating it if needed) the state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let store = Self { dir };
        store.terminate_torn_history()?;
        Ok(store)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ends a last line left without its newline by a crash, so the next entry starts clean.
    fn terminate_torn_history(&self) -> Result<(), StoreError> {
        let path = self.dir.join(HISTORY_FILE);
        let mut file = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("open", &path)(e)),
        };
        let len = file.metadata().map_err(io("stat", &path))?.len();
        if len == 0 {
            return Ok(());
        }
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))
            .and_then(|_| file.read_exact(&mut last))
            .map_err(io("read", &path))?;
        if last[0] != b'\n' {
            tracing::warn!(path = %path.display(), "terminating a torn last history line");
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(io("write", &path))?;
        }
        Ok(())
    }

    fn load_blocking(dir: &Path) -> Result<Option<SavedState>, StoreError> {
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &path)(e)),
        };
        let state: SavedState =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?;
        if state.format > STATE_FORMAT {
            return Err(StoreError::Format {
                path,
                found: state.format,
            });
        }
        Ok(Some(state))
    }

    fn save_blocking(dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        atomic::write(&dir.join(STATE_FILE), bytes)
    }

    fn append_blocking(dir: &Path, line: &[u8]) -> Result<(), StoreError> {
        let path = dir.join(HISTORY_FILE);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        file.write_all(line)
            .and_then(|()| file.sync_data())
            .map_err(io("append to", &path))?;
        if created {
            atomic::sync_dir(dir)?;
        }
        Ok(())
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
        Box::pin(blocking(move || Self::load_blocking(&dir)))
    }

    fn save<'a>(&'a self, state: &'a SavedState) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            let bytes = atomic::pretty_json(state, "desired state")?;
            blocking(move || Self::save_blocking(&dir, &bytes)).await
        })
    }

    fn append_history<'a>(
        &'a self,
        entry: &'a HistoryEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            let mut line = serde_json::to_vec(entry).map_err(|source| StoreError::Encode {
                what: "history entry",
                source,
            })?;
            line.push(b'\n');
            blocking(move || Self::append_blocking(&dir, &line)).await
        })
    }

    /// Saves `next`, then appends every entry of `history` in one write and one `fsync`, in
    /// one blocking task (one writer: nothing can have changed `base`).
    fn commit<'a>(
        &'a self,
        _base: &'a SavedState,
        next: &'a SavedState,
        history: &'a [HistoryEntry],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let dir = self.dir.clone();
        Box::pin(async move {
            let bytes = atomic::pretty_json(next, "desired state")?;
            let mut lines = Vec::new();
            for entry in history {
                serde_json::to_writer(&mut lines, entry).map_err(|source| StoreError::Encode {
                    what: "history entry",
                    source,
                })?;
                lines.push(b'\n');
            }
            blocking(move || {
                Self::save_blocking(&dir, &bytes)?;
                if lines.is_empty() {
                    Ok(())
                } else {
                    Self::append_blocking(&dir, &lines)
                }
            })
            .await
        })
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
