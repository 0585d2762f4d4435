//! `switchyard store migrate`: copies the desired state, the history and the deployment
//! records between the state folder and etcd, both as the configuration file names them
//! (`[control] state_dir` and `[store]`).

use std::sync::Arc;

use switchyard_config::{Config, StoreSpec};
use switchyard_control::{EtcdStore, FileStore, MigrateError, MigrateReport, Store, StoreError};

use crate::lock::{LockError, StateLock};

/// One side of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// The state folder, `[control] state_dir`.
    Local,
    /// The etcd cluster and prefix of `[store]` (which must say `kind = "etcd"`).
    Etcd,
}

/// Why a migration did not run or stopped.
#[derive(Debug, thiserror::Error)]
pub enum StoreCliError {
    /// `--from` and `--to` name the same store.
    #[error("--from and --to name the same store")]
    Same,
    /// etcd was named but the configuration has no `[store] kind = "etcd"`.
    #[error("the configuration has no [store] kind = \"etcd\" (endpoints and prefix)")]
    NoEtcd,
    /// The state folder is in use by a running instance.
    #[error("cannot lock the state folder (stop the instance using it first)")]
    Lock(#[from] LockError),
    /// A store could not be opened.
    #[error("cannot open the store")]
    Open(#[from] StoreError),
    /// The copy failed.
    #[error("migration failed")]
    Migrate(#[from] MigrateError),
}

/// Copies `from` into `to` as `config` names them; the target must be empty. The state
/// folder is locked for the duration, so no instance serves from it meanwhile.
pub async fn migrate(
    config: &Config,
    from: StoreKind,
    to: StoreKind,
) -> Result<MigrateReport, StoreCliError> {
    if from == to {
        return Err(StoreCliError::Same);
    }
    let _lock = StateLock::acquire(&config.control().state_dir)?;
    let open = |kind| async move {
        let store: Arc<dyn Store> = match (kind, config.store()) {
            (StoreKind::Local, _) => Arc::new(FileStore::open(&config.control().state_dir)?),
            (StoreKind::Etcd, StoreSpec::Etcd(spec)) => {
                Arc::new(EtcdStore::connect(spec, "migration").await?)
            }
            (StoreKind::Etcd, StoreSpec::Local) => return Err(StoreCliError::NoEtcd),
        };
        Ok::<_, StoreCliError>(store)
    };
    let source = open(from).await?;
    let target = open(to).await?;
    Ok(switchyard_control::migrate(source.as_ref(), target.as_ref()).await?)
}
