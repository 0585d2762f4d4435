//! Copying everything one store holds into another (`switchyard store migrate`): the desired
//! state, the whole history in order, deployment records and process stack records.

use super::{Store, StoreError};

/// Why a migration did not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The target holds a desired state already; copying would mix two histories.
    #[error("the target store already holds a desired state: migrate into an empty one")]
    NotEmpty,
    /// The source holds nothing to copy.
    #[error("the source store holds no desired state")]
    Empty,
    /// A read or write failed (the target may hold part of the copy).
    #[error("store operation failed during the migration")]
    Store(#[from] StoreError),
}

/// What a migration copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrateReport {
    /// Service records (tombstones included).
    pub services: usize,
    /// History entries.
    pub history: usize,
    /// Deployment records.
    pub deployments: usize,
    /// Process stack records.
    pub process_stacks: usize,
}

/// Copies `from` into the empty store `to`. The state is written last, so a target that
/// holds a state holds the whole copy.
pub async fn migrate(from: &dyn Store, to: &dyn Store) -> Result<MigrateReport, MigrateError> {
    if to.load().await?.is_some() {
        return Err(MigrateError::NotEmpty);
    }
    let state = from.load().await?.ok_or(MigrateError::Empty)?;
    let history = from.read_history(None, usize::MAX).await?;
    for entry in &history {
        to.append_history(entry).await?;
    }
    let deployments = from.load_deployments().await?;
    for d in &deployments {
        to.save_deployment(d).await?;
    }
    let stacks = from.load_process_stacks().await?;
    for s in &stacks {
        to.save_process_stack(s).await?;
    }
    to.save(&state).await?;
    Ok(MigrateReport {
        services: state.services.len(),
        history: history.len(),
        deployments: deployments.len(),
        process_stacks: stacks.len(),
    })
}
