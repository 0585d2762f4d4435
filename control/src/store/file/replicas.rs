//! Process stack records in the state directory: `replicas/<service>/<stack>/stack.json`,
//! each replaced atomically (temporary file, fsync, rename, fsync of the folder). The same
//! folder holds the replicas' log files, which the process source owns.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::io;
use crate::deploy::ProcessStackRecord;
use crate::store::StoreError;

/// The folder under the state directory; the process source puts log files beside the records.
pub(crate) const DIR: &str = "replicas";
const FILE: &str = "stack.json";

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Replaces one record durably.
pub(super) fn save(state_dir: &Path, record: &ProcessStackRecord) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Encode {
        what: "process stack",
        source,
    })?;
    bytes.push(b'\n');
    let dir = state_dir
        .join(DIR)
        .join(&record.service)
        .join(&record.stack);
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        // Every new folder entry up to the state directory must be durable too.
        let mut d = dir.as_path();
        while let Some(parent) = d.parent() {
            sync_dir(parent)?;
            if parent == state_dir {
                break;
            }
            d = parent;
        }
    }
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    sync_dir(&dir)
}

/// Removes one record; a missing one is fine.
pub(super) fn remove(state_dir: &Path, service: &str, stack: &str) -> Result<(), StoreError> {
    let dir = state_dir.join(DIR).join(service).join(stack);
    let path = dir.join(FILE);
    match fs::remove_file(&path) {
        Ok(()) => sync_dir(&dir),
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
