//! Deployment records in the state directory: `deployments/<service>/<id>.json`, each
//! replaced atomically (see [`atomic`](super::atomic)) like the desired state next to it.

use std::fs;
use std::path::Path;

use super::{atomic, io};
use crate::deploy::DeploymentRecord;
use crate::store::StoreError;

const DIR: &str = "deployments";

/// Replaces one record durably.
pub(super) fn save(state_dir: &Path, record: &DeploymentRecord) -> Result<(), StoreError> {
    let bytes = atomic::pretty_json(record, "deployment")?;
    let dir = state_dir.join(DIR).join(&record.service);
    atomic::create_dir(state_dir, &dir)?;
    atomic::write(&dir.join(format!("{}.json", record.id)), &bytes)
}

/// Every saved record, ordered by service and id.
pub(super) fn load_all(state_dir: &Path) -> Result<Vec<DeploymentRecord>, StoreError> {
    let mut out = Vec::new();
    for path in super::nested_entries(&state_dir.join(DIR))? {
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
