//! Deployment records in the state directory: `deployments/<service>/<id>.json`, each
//! replaced atomically (temporary file, fsync, rename, fsync of the directory) like the
//! desired state next to it. [`FileStore`](crate::FileStore) implements the
//! [`Store`](crate::Store) methods for deployments with these functions.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::record::DeploymentRecord;
use crate::store::StoreError;

const DIR: &str = "deployments";

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}

/// Replaces one record durably.
pub(crate) fn save(state_dir: &Path, record: &DeploymentRecord) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Encode {
        what: "deployment",
        source,
    })?;
    bytes.push(b'\n');
    let top = state_dir.join(DIR);
    let dir = top.join(&record.service);
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        sync_dir(&top)?;
        sync_dir(state_dir)?;
    }
    let path = dir.join(format!("{}.json", record.id));
    let tmp = dir.join(format!("{}.json.tmp", record.id));
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
    sync_dir(&dir)
}

/// Every saved record, ordered by service and id.
pub(crate) fn load_all(state_dir: &Path) -> Result<Vec<DeploymentRecord>, StoreError> {
    let mut out = Vec::new();
    for path in crate::store::nested_entries(&state_dir.join(DIR))? {
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        let record: DeploymentRecord =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
                path: path.clone(),
                source,
            })?;
        out.push(record);
    }
    out.sort_by(|a, b| (&a.service, a.id).cmp(&(&b.service, b.id)));
    Ok(out)
}
