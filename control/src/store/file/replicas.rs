//! Process stack records in the state directory: `replicas/<service>/<stack>/stack.json`,
//! each replaced atomically (see [`atomic`](super::atomic)). The same
//! folder holds the replicas' log files, which the process source owns.

use std::fs;
use std::path::Path;

use super::{atomic, io};
use crate::deploy::ProcessStackRecord;
use crate::store::StoreError;

/// The folder under the state directory; the process source puts log files beside the records.
pub(crate) const DIR: &str = "replicas";
const FILE: &str = "stack.json";

/// Replaces one record durably.
pub(super) fn save(state_dir: &Path, record: &ProcessStackRecord) -> Result<(), StoreError> {
    let bytes = atomic::pretty_json(record, "process stack")?;
    let dir = state_dir
        .join(DIR)
        .join(&record.service)
        .join(&record.stack);
    atomic::create_dir(state_dir, &dir)?;
    atomic::write(&dir.join(FILE), &bytes)
}

/// Removes one record; a missing one is fine.
pub(super) fn remove(state_dir: &Path, service: &str, stack: &str) -> Result<(), StoreError> {
    let dir = state_dir.join(DIR).join(service).join(stack);
    let path = dir.join(FILE);
    match fs::remove_file(&path) {
        Ok(()) => atomic::sync_dir(&dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", &path)(e)),
    }
}

/// Every saved record, ordered by service and stack.
pub(super) fn load_all(state_dir: &Path) -> Result<Vec<ProcessStackRecord>, StoreError> {
    let mut out = Vec::new();
    for stack in super::nested_entries(&state_dir.join(DIR))? {
        let path = stack.join(FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            // A folder of log files whose stack was released.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("read", &path)(e)),
        };
        let record: ProcessStackRecord =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?;
        out.push(record);
    }
    out.sort_by(|a, b| (&a.service, &a.stack).cmp(&(&b.service, &b.stack)));
    Ok(out)
}
