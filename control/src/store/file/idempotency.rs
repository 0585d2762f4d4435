//! Remembered `Idempotency-Key`s in the state directory: `idempotency/<service>/<digest>.json`
//! (the digest is the hex SHA-256 of the key, so any key makes a safe file name), each
//! written atomically (temporary file, fsync, rename, fsync of the folder). Saving a key
//! deletes the service's expired ones, so the folder stays as small as a day's deployments.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{atomic, io};
use crate::store::{IdempotencyRecord, StoreError};

const DIR: &str = "idempotency";

fn path(state_dir: &Path, service: &str, key: &str) -> PathBuf {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    state_dir
        .join(DIR)
        .join(service)
        .join(format!("{digest}.json"))
}

fn read(path: &Path) -> Result<Option<IdempotencyRecord>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// The record of `key`, unless absent or expired.
pub(super) fn load(
    state_dir: &Path,
    service: &str,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let now = time::OffsetDateTime::now_utc();
    Ok(read(&path(state_dir, service, key))?.filter(|r| r.key == key && !r.expired(now)))
}

/// Saves one record durably (the store's one atomic write), then deletes the service's
/// expired records.
pub(super) fn save(state_dir: &Path, record: &IdempotencyRecord) -> Result<(), StoreError> {
    let bytes = atomic::pretty_json(record, "idempotency key")?;
    let target = path(state_dir, &record.service, &record.key);
    let dir = target
        .parent()
        .expect("a key's file lives in its service's folder");
    atomic::create_dir(state_dir, dir)?;
    atomic::write(&target, &bytes)?;
    prune(dir);
    Ok(())
}

/// Deletes expired (or unreadable) records of one service; problems are only logged, since
/// an expired record is ignored when read anyway.
fn prune(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    for entry in entries.flatten() {
        let p = entry.path();
        if p.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let stale = match read(&p) {
            Ok(Some(r)) => r.expired(now),
            Ok(None) => false,
            Err(_) => true,
        };
        if stale {
            if let Err(e) = fs::remove_file(&p) {
                tracing::debug!(path = %p.display(), error = %e, "cannot delete an expired idempotency key");
            }
        }
    }
}
