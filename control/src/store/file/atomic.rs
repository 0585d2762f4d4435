//! The one atomic file write of the file store: write a temporary file beside the target,
//! fsync it, rename it over the target, fsync the folder (the rename is durable only once the
//! folder entry is). Every replaced file of the state directory goes through [`write`].

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::io;
use crate::store::StoreError;

/// Makes the entries of the folder `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Creates `dir` (under `state_dir`) when missing and makes every new folder entry up to
/// `state_dir` durable.
pub(super) fn create_dir(state_dir: &Path, dir: &Path) -> Result<(), StoreError> {
    if dir.exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    let mut d = dir;
    while let Some(parent) = d.parent() {
        sync_dir(parent)?;
        if parent == state_dir {
            break;
        }
        d = parent;
    }
    Ok(())
}

/// Replaces `path` with `bytes` atomically and durably, through `<path>.tmp`.
pub(super) fn write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("a store file always has a folder");
    let mut tmp_name = path
        .file_name()
        .expect("a store file has a name")
        .to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("rename", &tmp))?;
    sync_dir(dir)
}

/// `value` as pretty JSON with a final newline, as every record file is written.
pub(super) fn pretty_json<T: serde::Serialize>(
    value: &T,
    what: &'static str,
) -> Result<Vec<u8>, StoreError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode { what, source })?;
    bytes.push(b'\n');
    Ok(bytes)
}
