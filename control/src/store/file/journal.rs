//! The write-ahead journal of the file store: one durable write per change.
//!
//! A change (a new desired state, history entries, or both) is one JSON line appended to
//! `state.journal` and made durable with one `fdatasync` before it is acknowledged; its history
//! lines are then appended to `history.jsonl` without a sync (readers see them at once through
//! the page cache). Replacing `state.json` (write, fsync, rename, fsync the folder) and syncing
//! `history.jsonl` happen only at a checkpoint: when the journal has grown past
//! [`CHECKPOINT_BYTES`], on [`FileStore::save`](super::FileStore), at the first state of a new
//! folder, and when the store opens.
//! Before this journal every change paid three syncs and a rename, whose kernel time on a
//! virtual disk was most of a weight change's CPU (`benches/RESULTS.md`).
//!
//! The journal's first line is its header: the length `history.jsonl` had, synced, when the
//! journal was started. Recovery (on open) cuts `history.jsonl` back to that length, appends
//! the history of every journal line, syncs it, writes the last journalled state to
//! `state.json`, and starts a fresh journal, each step safe to repeat if a crash interrupts
//! it: until the fresh journal replaces the old one (atomically), the old one is the truth.
//! A last journal line without its newline was never acknowledged and is dropped.
//!
//! A fresh journal is preallocated ([`PREALLOCATED`] bytes, which read as zeros) and changes
//! are written in place after the last one, so a change's `fdatasync` does not also have to
//! record a new file size: on this project's machines that cut its kernel time from 57–70 to
//! 40–50 µs (`benches/RESULTS.md`). The journal's content ends at its first zero byte (JSON
//! text never holds one); a change that does not fit writes past the end, as an append. A
//! file system without `fallocate` gets the appends.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{HISTORY_FILE, STATE_FILE, atomic, io};
use crate::store::{HistoryEntry, SavedState, StoreError};

/// The journal file in the state directory.
pub(super) const JOURNAL_FILE: &str = "state.journal";
/// Journal size past which a change also checkpoints.
const CHECKPOINT_BYTES: u64 = 1 << 20;
/// The size a fresh journal is given: room for changes up to the checkpoint, and a last large
/// one.
const PREALLOCATED: u64 = CHECKPOINT_BYTES + (64 << 10);

/// The journal's first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    /// Length of `history.jsonl` (synced) when the journal started.
    history_len: u64,
}

/// One change as read back from its journal line (written by [`encode`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Read {
    #[serde(default)]
    state: Option<SavedState>,
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

/// A change encoded for the journal, on the caller's thread, so the blocking pool gets bytes
/// rather than a copy of the state to encode there.
#[derive(Debug)]
pub(super) struct Encoded {
    /// The journal line, newline included: `{"state":…,"history":[…]}`, without `state` when
    /// there is none (what `serde` would write for such a struct).
    line: Vec<u8>,
    /// The history lines for `history.jsonl`, each ended by a newline.
    history: Vec<u8>,
    /// Whether the line carries a state.
    has_state: bool,
}

#[cfg(test)]
impl Encoded {
    pub(super) fn line(&self) -> &[u8] {
        &self.line
    }

    pub(super) fn history_lines(&self) -> &[u8] {
        &self.history
    }
}

/// Encodes `state` and `history` as one journal line. Each history entry is encoded once: the
/// same bytes go into the journal line's `history` array and into the history lines.
pub(super) fn encode(
    state: Option<&SavedState>,
    history: &[HistoryEntry],
) -> Result<Encoded, StoreError> {
    let mut lines = Vec::new();
    let mut ends = Vec::with_capacity(history.len());
    for entry in history {
        serde_json::to_writer(&mut lines, entry).map_err(|source| StoreError::Encode {
            what: "history entry",
            source,
        })?;
        ends.push(lines.len());
        lines.push(b'\n');
    }
    let mut line = Vec::with_capacity(lines.len() + 1024);
    line.push(b'{');
    if let Some(state) = state {
        line.extend_from_slice(b"\"state\":");
        serde_json::to_writer(&mut line, state).map_err(|source| StoreError::Encode {
            what: "journal line",
            source,
        })?;
        line.push(b',');
    }
    line.extend_from_slice(b"\"history\":[");
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        if i > 0 {
            line.push(b',');
        }
        line.extend_from_slice(&lines[start..end]);
        start = end + 1;
    }
    line.extend_from_slice(b"]}\n");
    Ok(Encoded {
        line,
        history: lines,
        has_state: state.is_some(),
    })
}

/// The open journal; one per store, behind its lock, so changes and checkpoints never
/// interleave.
#[derive(Debug)]
pub(super) struct Journal {
    dir: PathBuf,
    file: File,
    /// Bytes of the journal's content: where the next change is written.
    len: u64,
    /// `history.jsonl`, opened for appending at the first change that has history.
    history: Option<File>,
    /// Whether `state.json` exists (a fresh folder gets it at its first change).
    has_state_file: bool,
}

impl Journal {
    /// Recovers the state directory `dir` (see the module's notes) and starts a fresh journal.
    pub(super) fn recover(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let history_len = match fs::read(&path) {
            Ok(bytes) => {
                let (header, changes) = parse(&path, &bytes)?;
                replay(dir, header.history_len, &changes)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => legacy_history_len(dir)?,
            Err(e) => return Err(io("read", &path)(e)),
        };
        Self::start(dir, history_len)
    }

    /// Replaces the journal with a fresh one whose header records `history_len`.
    fn start(dir: &Path, history_len: u64) -> Result<Self, StoreError> {
        let path = dir.join(JOURNAL_FILE);
        let mut header =
            serde_json::to_vec(&Header { history_len }).map_err(|source| StoreError::Encode {
                what: "journal header",
                source,
            })?;
        header.push(b'\n');
        atomic::write(&path, &header)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        preallocate(&file, &path);
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            len: header.len() as u64,
            history: None,
            has_state_file: dir.join(STATE_FILE).exists(),
        })
    }

    /// Makes `change` (a state, history entries, or both) durable as one journal line, then
    /// appends its history to `history.jsonl`; checkpoints when the journal grew past
    /// [`CHECKPOINT_BYTES`] or when this is the folder's first state.
    pub(super) fn append(&mut self, change: &Encoded) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        if let Err(e) = self
            .file
            .write_all_at(&change.line, self.len)
            .and_then(|()| self.file.sync_data())
        {
            // Not acknowledged, so not kept: a whole line whose sync failed would come back
            // after a restart. Zeros end the content there again (and the next change is
            // written over them).
            let _ = self
                .file
                .write_all_at(&vec![0; change.line.len()], self.len);
            return Err(io("append to", &path)(e));
        }
        self.len += change.line.len() as u64;
        self.append_history(&change.history)?;
        if self.len > CHECKPOINT_BYTES || (change.has_state && !self.has_state_file) {
            self.checkpoint(None)?;
        }
        Ok(())
    }

    /// Appends encoded history lines to `history.jsonl` through the handle kept open for it.
    fn append_history(&mut self, lines: &[u8]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(HISTORY_FILE);
        let file = match &mut self.history {
            Some(f) => f,
            None => self.history.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io("open", &path))?,
            ),
        };
        file.write_all(lines).map_err(io("append to", &path))
    }

    /// Writes `state` (the latest journalled one, if any change carried one since the last
    /// checkpoint; else the state file is current) to `state.json` and starts a fresh
    /// journal. A change journalled with no state leaves `state` as `None`: the journal is
    /// then read for the latest state.
    pub(super) fn checkpoint(&mut self, state: Option<&SavedState>) -> Result<(), StoreError> {
        let history_len = sync_history(&self.dir)?;
        let latest = match state {
            Some(s) => Some(atomic::pretty_json(s, "desired state")?),
            None => self
                .latest()?
                .map(|s| atomic::pretty_json(&s, "desired state"))
                .transpose()?,
        };
        if let Some(bytes) = latest {
            atomic::write(&self.dir.join(STATE_FILE), &bytes)?;
        }
        *self = Self::start(&self.dir, history_len)?;
        Ok(())
    }

    /// The latest state journalled since the last checkpoint.
    pub(super) fn latest(&self) -> Result<Option<SavedState>, StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let (_, changes) = parse(&path, &bytes)?;
        Ok(changes.into_iter().rev().find_map(|c| c.state))
    }
}

/// Gives a fresh journal [`PREALLOCATED`] bytes (zeros), made durable now, so that changes
/// written into them do not change the file's size. Where the file system cannot, changes
/// append.
fn preallocate(file: &File, path: &Path) {
    let done = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, PREALLOCATED)
        .map_err(std::io::Error::from)
        .and_then(|()| file.sync_all());
    if let Err(e) = done {
        tracing::debug!(path = %path.display(), error = %e, "journal not preallocated; changes append");
    }
}

/// The header and the complete changes of a journal; a last line without its newline (an
/// append a crash cut short, never acknowledged) is left out.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Header, Vec<Read>), StoreError> {
    // The preallocated rest (zeros), or whatever a crash left past them.
    let bytes = bytes
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes, |end| &bytes[..end]);
    let complete = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&bytes[..0], |end| &bytes[..end]);
    let mut lines = complete.split(|&b| b == b'\n');
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let header: Header =
        serde_json::from_slice(lines.next().unwrap_or_default()).map_err(corrupt)?;
    let changes = lines
        .map(|l| serde_json::from_slice::<Read>(l).map_err(corrupt))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((header, changes))
}

/// Puts the history of `changes` after the first `history_len` bytes of `history.jsonl`
/// (dropping whatever an interrupted checkpoint or unsynced append left there), syncs it, and
/// writes the last journalled state to `state.json`. Returns the new history length.
fn replay(dir: &Path, history_len: u64, changes: &[Read]) -> Result<u64, StoreError> {
    let path = dir.join(HISTORY_FILE);
    match OpenOptions::new().write(true).open(&path) {
        Ok(f) => {
            let len = f.metadata().map_err(io("stat", &path))?.len();
            if len > history_len {
                tracing::info!(path = %path.display(), history_len, "restoring the history from the journal");
                f.set_len(history_len).map_err(io("truncate", &path))?;
            } else if len < history_len {
                // Shortened by hand since the checkpoint: keep what is there.
                tracing::warn!(path = %path.display(), history_len, len, "the history is shorter than the journal recorded");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && history_len == 0 => {}
        Err(e) => return Err(io("open", &path)(e)),
    }
    for c in changes {
        append_history(dir, &c.history)?;
    }
    let len = sync_history(dir)?;
    if let Some(state) = changes.iter().rev().find_map(|c| c.state.as_ref()) {
        atomic::write(
            &dir.join(STATE_FILE),
            &atomic::pretty_json(state, "desired state")?,
        )?;
    }
    Ok(len)
}

/// A state directory from before the journal: `history.jsonl` as it is, a torn last line
/// (a crash mid-append) terminated.
fn legacy_history_len(dir: &Path) -> Result<u64, StoreError> {
    let path = dir.join(HISTORY_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("read", &path)(e)),
    };
    if bytes.last().is_some_and(|&b| b != b'\n') {
        tracing::warn!(path = %path.display(), "terminating a torn last history line");
        append_bytes(&path, b"\n")?;
    }
    sync_history(dir)
}

/// Appends `history` to `history.jsonl`, one line each, in one write.
fn append_history(dir: &Path, history: &[HistoryEntry]) -> Result<(), StoreError> {
    if history.is_empty() {
        return Ok(());
    }
    append_bytes(&dir.join(HISTORY_FILE), &encode(None, history)?.history)
}

fn append_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(io("append to", path))
}

/// Syncs `history.jsonl` (and the folder, which may have gained it); returns its length.
fn sync_history(dir: &Path) -> Result<u64, StoreError> {
    let path = dir.join(HISTORY_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("open", &path)(e)),
    };
    file.sync_data().map_err(io("sync", &path))?;
    atomic::sync_dir(dir)?;
    Ok(file.metadata().map_err(io("stat", &path))?.len())
}
