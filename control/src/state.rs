//! Building the control plane: load the saved state, merge it with the file, start the writer.
//!
//! Start-up is two steps because the proxy must run on the merged state before control can
//! drive it: [`ControlBuilder::load`] reads the store and merges it with the configuration
//! file by the rule documented in `seed` (runtime changes win, the file seeds the rest) and
//! returns a [`LoadedState`] whose [`LoadedState::desired`] config the caller starts the proxy
//! on; [`LoadedState::spawn`] then starts the writer task over the proxy's [`DataPlane`] and
//! returns the [`ControlState`] that the API and [`reseed`] use.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard_config::Config;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::change::Change;
use crate::data_plane::DataPlane;
use crate::deploy::{DeploymentRecord, Deployments, ProcessOptions, ProcessStackRecord};
use crate::error::{ApiError, chain};
use crate::metrics::ControlMetrics;
use crate::seed::{SeedError, merge};
use crate::store::{STATE_FORMAT, SavedState, Store, StoreError, now};
use crate::writer::{Command, Published, Writer, seed_history};

/// How many writes may wait for the writer before senders wait too.
const COMMAND_QUEUE: usize = 64;

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The store could not be read or written.
    #[error("desired state store failed")]
    Store(#[from] StoreError),
    /// The saved state does not fit the configuration file.
    #[error("cannot merge the saved state with the configuration file")]
    Seed(#[from] SeedError),
}

/// Why a reload of the configuration file was not applied (the previous state keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReseedError {
    /// The reloaded file and the saved state do not fit together.
    #[error("cannot merge the saved state with the reloaded file")]
    Seed(#[from] SeedError),
    /// The new state could not be made durable.
    #[error("cannot persist the reloaded state: {0}")]
    Persist(String),
    /// The data plane refused the new state.
    #[error("the proxy refused the reloaded state: {0}")]
    Apply(String),
    /// The writer task is gone (shutting down).
    #[error("control writer unavailable")]
    Unavailable,
}

/// Loads the saved state and merges it with the configuration file.
pub struct ControlBuilder {
    seed: Config,
    store: Arc<dyn Store>,
    base_dir: PathBuf,
    stop_replicas_on_exit: bool,
}

impl ControlBuilder {
    /// A builder over the configuration file's model and a store.
    pub fn new(seed: Config, store: Arc<dyn Store>) -> Self {
        Self {
            seed,
            store,
            base_dir: PathBuf::from("."),
            stop_replicas_on_exit: false,
        }
    }

    /// Whether process replicas are stopped when the control plane shuts down. By default
    /// they keep running, so Switchyard itself can be restarted or upgraded without
    /// restarting services (the next start re-adopts them); the demo stops them.
    pub fn stop_replicas_on_exit(mut self, stop: bool) -> Self {
        self.stop_replicas_on_exit = stop;
        self
    }

    /// The folder relative paths in API bodies resolve against (the wiring passes the
    /// configuration file's folder, as the file's own paths use); default `.`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// Reads the saved state and merges it with the file; persists the merge when it changed
    /// anything, with a history entry per service the file changed.
    pub async fn load(self) -> Result<LoadedState, BuildError> {
        let time = now();
        let mut attempts = 0;
        // With a shared store several instances may seed at once: the loser of the
        // compare-and-swap merges again with what the winner wrote.
        let (merged, revision) = loop {
            let saved = self.store.load().await?.unwrap_or_default();
            let merged = merge(&self.seed, &saved.services, &self.base_dir, &time)?;
            if merged.records != saved.services || saved.format != STATE_FORMAT {
                let state = SavedState {
                    format: STATE_FORMAT,
                    services: merged.records.clone(),
                };
                let history = seed_history(&merged.changed, &time);
                match self.store.commit(&saved, &state, &history).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict { .. }) if attempts < 5 => {
                        attempts += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let revision = match self.store.shared() {
                Some(shared) => shared
                    .observed()
                    .borrow()
                    .as_ref()
                    .map_or(0, |o| o.revision),
                None => 0,
            };
            break (merged, revision);
        };
        let deployments = self.store.load_deployments().await?;
        let process_stacks = self.store.load_process_stacks().await?;
        tracing::info!(
            services = merged.config.services().len(),
            seeded = merged.changed.len(),
            deployments = deployments.len(),
            process_stacks = process_stacks.len(),
            "desired state loaded"
        );
        let processes = ProcessOptions {
            store: self.store.clone(),
            log_dir: self.seed.control().state_dir.join("replicas"),
            stop_on_exit: self.stop_replicas_on_exit,
            docker_host: self.seed.docker_host().map(str::to_owned),
            owner: std::fs::canonicalize(&self.seed.control().state_dir)
                .unwrap_or_else(|_| self.seed.control().state_dir.clone())
                .to_string_lossy()
                .into_owned(),
        };
        Ok(LoadedState {
            published: Published {
                config: Arc::new(merged.config),
                records: merged.records,
                generation: None,
            },
            seed: self.seed,
            revision,
            store: self.store,
            base_dir: self.base_dir,
            deployments,
            process_stacks,
            processes,
        })
    }

    /// [`load`](Self::load) and [`spawn`](LoadedState::spawn) in one, for a data plane that
    /// exists before the desired state is known. Returns the state, the merged desired config
    /// and the writer's handle.
    pub async fn build(
        self,
        data_plane: Arc<dyn DataPlane>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(ControlState, Arc<Config>, WriterHandle), BuildError> {
        let loaded = self.load().await?;
        let desired = loaded.desired();
        let (state, writer) = loaded.spawn(data_plane, shutdown);
        Ok((state, desired, writer))
    }
}

/// The merged desired state, before the writer runs.
pub struct LoadedState {
    published: Published,
    seed: Config,
    revision: i64,
    store: Arc<dyn Store>,
    base_dir: PathBuf,
    deployments: Vec<DeploymentRecord>,
    process_stacks: Vec<ProcessStackRecord>,
    processes: ProcessOptions,
}

impl LoadedState {
    /// The merged desired configuration: start the proxy on it.
    pub fn desired(&self) -> Arc<Config> {
        self.published.config.clone()
    }

    /// Starts the writer task over `data_plane`; it stops when `shutdown` turns true (or its
    /// sender is dropped). Process replicas of the saved stacks are supervised again
    /// (re-adopted by PID, or started anew on their endpoints), then deployments found in
    /// flight resume (or roll back) in their own tasks. The returned state is ready.
    pub fn spawn(
        self,
        data_plane: Arc<dyn DataPlane>,
        shutdown: watch::Receiver<bool>,
    ) -> (ControlState, WriterHandle) {
        let published = Arc::new(self.published);
        let (publish, view) = watch::channel(published.clone());
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (ready, _) = watch::channel(true);
        let deployments = Arc::new(Deployments::new(
            self.base_dir.clone(),
            shutdown.clone(),
            self.processes,
        ));
        let writer = Writer {
            current: published,
            store: self.store.clone(),
            data_plane: data_plane.clone(),
            base_dir: self.base_dir,
            publish,
            seed: self.seed,
            revision: self.revision,
        };
        let task = tokio::spawn(
            writer
                .run(receiver, shutdown)
                .instrument(tracing::info_span!("control_writer")),
        );
        let metrics = ControlMetrics::new(deployments.clone());
        let state = ControlState {
            inner: Arc::new(Inner {
                commands,
                view,
                store: self.store,
                data_plane,
                ready,
                deployments,
                metrics,
            }),
        };
        state.deployments().adopt_processes(
            &state.desired(),
            self.process_stacks,
            &self.deployments,
        );
        state.deployments().resume(&state, self.deployments);
        let deployments = state.deployments().clone();
        (state, WriterHandle { task, deployments })
    }
}

/// The running writer task.
pub struct WriterHandle {
    task: JoinHandle<()>,
    deployments: Arc<Deployments>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle").finish_non_exhaustive()
    }
}

impl WriterHandle {
    /// Waits for the writer to stop (after shutdown), then ends the supervision of process
    /// replicas (left running, or stopped when the builder asked for it); re-raises the
    /// writer's panic if it panicked.
    pub async fn join(self) {
        let joined = self.task.await;
        self.deployments.shutdown_processes().await;
        if let Err(e) = joined {
            if e.is_panic() {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// What the API handlers share: the writer's command queue and the published state. Cheap to
/// clone.
#[derive(Clone)]
pub struct ControlState {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    view: watch::Receiver<Arc<Published>>,
    store: Arc<dyn Store>,
    data_plane: Arc<dyn DataPlane>,
    ready: watch::Sender<bool>,
    deployments: Arc<Deployments>,
    metrics: ControlMetrics,
}

impl ControlState {
    /// The current desired configuration.
    pub fn desired(&self) -> Arc<Config> {
        self.inner.view.borrow().config.clone()
    }

    /// The data plane generation of the last state control applied (`None` before the first
    /// write or reload).
    pub fn generation(&self) -> Option<u64> {
        self.inner.view.borrow().generation
    }

    /// Sets what `/readyz` answers (ready by default once spawned; the wiring may clear it
    /// while it drains).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.send_replace(ready);
    }

    /// Whether `/readyz` answers ready.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// Whether the shared store answers (`None` for the local store).
    pub fn store_available(&self) -> Option<bool> {
        self.inner.store.shared().map(|s| *s.available().borrow())
    }

    /// Counts a reload of the configuration file (`switchyard_config_reloads_total`): `ok`
    /// when the new file serves, false when it was refused (unreadable, invalid, or not
    /// applied).
    pub fn count_reload(&self, ok: bool) {
        self.inner.metrics.reload(ok);
    }

    pub(crate) fn metrics(&self) -> &ControlMetrics {
        &self.inner.metrics
    }

    pub(crate) fn published(&self) -> Arc<Published> {
        self.inner.view.borrow().clone()
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub(crate) fn data_plane(&self) -> &Arc<dyn DataPlane> {
        &self.inner.data_plane
    }

    pub(crate) fn deployments(&self) -> &Arc<Deployments> {
        &self.inner.deployments
    }

    /// Sends a write to the writer and waits for its outcome.
    pub(crate) async fn write(
        &self,
        caller: &str,
        service: &str,
        if_match: Option<u64>,
        change: Change,
    ) -> Result<Arc<Published>, ApiError> {
        let (reply, outcome) = oneshot::channel();
        let command = Command::Write {
            caller: caller.to_owned(),
            service: service.to_owned(),
            if_match,
            change,
            reply,
        };
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| ApiError::Unavailable)?;
        outcome.await.map_err(|_| ApiError::Unavailable)?
    }
}

/// Re-merges a reloaded configuration file with the current state (same rule as at start)
/// and applies it; on any error the previous state keeps serving. Returns the data plane
/// generation now serving.
pub async fn reseed(state: &ControlState, file_config: Config) -> Result<Option<u64>, ReseedError> {
    let (reply, outcome) = oneshot::channel();
    let command = Command::Reseed {
        file: Box::new(file_config),
        reply,
    };
    state
        .inner
        .commands
        .send(command)
        .await
        .map_err(|_| ReseedError::Unavailable)?;
    let result = outcome.await.map_err(|_| ReseedError::Unavailable)?;
    if let Err(e) = &result {
        tracing::warn!(error = %chain(e), "configuration reload not applied");
    }
    result
}
