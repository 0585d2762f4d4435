//! The writer task: the one owner of the desired state.
//!
//! Handlers and reloads send [`Command`]s over a bounded channel and wait on a oneshot reply;
//! no lock is held across an `.await`. For every write the task plans the change (validation,
//! `If-Match`), persists the next state durably together with its history entry
//! ([`Store::commit`]), has the data plane apply it and only then replies. If the data plane
//! refuses, the previous state is persisted again and nothing changes. With a shared store a
//! lost compare-and-swap plans the write again on the newer state, and states other instances
//! wrote are applied as the store's watch publishes them. Readers never wait for the writer:
//! each accepted state is published on a `watch` channel as an immutable [`Published`] value.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use switchyard_config::{Config, raw};
use tokio::sync::{mpsc, oneshot, watch};

use crate::change::{Change, plan};
use crate::data_plane::DataPlane;
use crate::error::{ApiError, chain};
use crate::seed::{Seeded, merge};
use crate::state::ReseedError;
use crate::store::{
    HistoryEntry, Observed, STATE_FORMAT, SavedState, ServiceRecord, SpecJson, Store, StoreError,
    now,
};

/// The token name recorded for changes that came from the configuration file.
pub(crate) const FILE_TOKEN: &str = "file";

/// One accepted desired state, as readers see it.
#[derive(Debug)]
pub(crate) struct Published {
    /// The desired configuration.
    pub(crate) config: Arc<Config>,
    /// Every service's durable record (revisions, tombstones, promotions).
    pub(crate) records: BTreeMap<String, ServiceRecord>,
    /// The data plane's generation for it, once the writer applied one.
    pub(crate) generation: Option<u64>,
}

/// A request to the writer.
pub(crate) enum Command {
    /// A change to one service through the API.
    Write {
        caller: String,
        service: String,
        if_match: Option<u64>,
        change: Change,
        reply: oneshot::Sender<Result<Arc<Published>, ApiError>>,
    },
    /// Re-merge with a reloaded configuration file.
    Reseed {
        file: Box<Config>,
        reply: oneshot::Sender<Result<Option<u64>, ReseedError>>,
    },
}

/// The writer task's state.
pub(crate) struct Writer {
    pub(crate) current: Arc<Published>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) data_plane: Arc<dyn DataPlane>,
    pub(crate) base_dir: PathBuf,
    pub(crate) publish: watch::Sender<Arc<Published>>,
    /// The configuration file: what a state another instance wrote is merged with.
    pub(crate) seed: Config,
    /// The shared store's revision of the state serving (0 for the local store).
    pub(crate) revision: i64,
}

/// How many times a write is planned again after losing a compare-and-swap to another
/// instance before the client is told to retry.
const WRITE_ATTEMPTS: usize = 5;

/// Why a commit did not happen.
enum CommitError {
    /// Another instance changed the state first: plan again on the newer state.
    Conflict,
    /// Anything else, as the client sees it.
    Api(ApiError),
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::Conflict,
            other => Self::Api(ApiError::from_store(other)),
        }
    }
}

impl Writer {
    /// Serves commands until shutdown is signalled or every sender is gone; with a shared
    /// store, also applies what other instances wrote.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut observed = self.store.shared().map(|s| s.observed());
        // What the watch published before this task subscribed counts too.
        let first = observed
            .as_mut()
            .and_then(|rx| rx.borrow_and_update().clone());
        if let Some(seen) = first {
            self.follow(&seen).await;
        }
        loop {
            tokio::select! {
                biased;
                () = stopped(&mut shutdown) => break,
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                Some(seen) = changed(&mut observed) => self.follow(&seen).await,
            }
        }
        tracing::debug!("control writer stopped");
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Write {
                caller,
                service,
                if_match,
                change,
                reply,
            } => {
                let result = self.write(&caller, &service, if_match, &change).await;
                // The client may have gone away; the write stands either way.
                let _ = reply.send(result);
            }
            Command::Reseed { file, reply } => {
                let result = self.reseed(*file).await;
                // The reloader may have stopped waiting; the reload stands either way.
                let _ = reply.send(result);
            }
        }
    }

    /// Applies a state another instance wrote (or this one, echoed by the watch).
    async fn follow(&mut self, seen: &Observed) {
        if seen.state.services != self.current.records {
            let merged = match merge(&self.seed, &seen.state.services, &self.base_dir, &now()) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %chain(&e), revision = seen.revision, "the shared state does not fit this instance's configuration file; serving the previous state");
                    return;
                }
            };
            let config = Arc::new(merged.config);
            match self.data_plane.apply(config.clone()).await {
                Ok(generation) => {
                    tracing::info!(
                        generation,
                        revision = seen.revision,
                        "shared desired state applied"
                    );
                    let published = Arc::new(Published {
                        config,
                        records: seen.state.services.clone(),
                        generation: Some(generation),
                    });
                    self.current = published.clone();
                    self.publish.send_replace(published);
                }
                Err(reason) => {
                    tracing::error!(reason = %reason, revision = seen.revision, "data plane refused the shared desired state; serving the previous state");
                    return;
                }
            }
        }
        self.revision = self.revision.max(seen.revision);
        if let Some(shared) = self.store.shared() {
            shared.report(self.current.generation, self.revision);
        }
    }

    /// Reads the store again after losing a compare-and-swap, and applies what it holds.
    async fn refresh(&mut self) -> Result<(), ApiError> {
        let saved = self
            .store
            .load()
            .await
            .map_err(ApiError::from_store)?
            .unwrap_or_default();
        let seen = Observed {
            state: saved,
            revision: self.revision,
        };
        self.follow(&seen).await;
        Ok(())
    }

    async fn write(
        &mut self,
        caller: &str,
        service: &str,
        if_match: Option<u64>,
        change: &Change,
    ) -> Result<Arc<Published>, ApiError> {
        for _ in 0..WRITE_ATTEMPTS {
            match self.write_once(caller, service, if_match, change).await {
                Err(CommitError::Conflict) => self.refresh().await?,
                Err(CommitError::Api(e)) => return Err(e),
                Ok(p) => return Ok(p),
            }
        }
        Err(ApiError::Conflict(format!(
            "service {service:?} kept changing on other instances; try again"
        )))
    }

    async fn write_once(
        &mut self,
        caller: &str,
        service: &str,
        if_match: Option<u64>,
        change: &Change,
    ) -> Result<Arc<Published>, CommitError> {
        let time = now();
        let current = self.current.clone();
        let revision = current.records.get(service).map_or(0, |r| r.revision);
        let entry =
            |before: Option<&raw::Service>, after: Option<&raw::Service>, revision| HistoryEntry {
                time: time.clone(),
                token: caller.to_owned(),
                action: change.action().to_owned(),
                service: service.to_owned(),
                before: before.and_then(to_json),
                after: after.and_then(to_json),
                outcome: "applied".to_owned(),
                revision,
                detail: None,
            };
        let before = current.config.service(service).map(|s| s.to_raw());
        let planned = plan(
            &current.config,
            &current.records,
            service,
            if_match,
            change,
            &self.base_dir,
            &time,
        );
        let planned = match planned {
            Ok(p) => p,
            Err(e) => {
                let mut h = entry(before.as_ref(), None, revision);
                h.outcome = format!("rejected: {}", e.code());
                h.detail = Some(e.to_string());
                self.record(&h).await;
                return Err(CommitError::Api(e));
            }
        };
        if planned.unchanged {
            let mut h = entry(planned.before.as_ref(), planned.before.as_ref(), revision);
            h.outcome = "unchanged".to_owned();
            self.record(&h).await;
            return Ok(current);
        }

        let mut records = current.records.clone();
        let after = planned.record.spec.clone();
        let next_revision = planned.record.revision;
        records.insert(service.to_owned(), planned.record);
        let config = Arc::new(planned.config);
        let applied = entry(planned.before.as_ref(), after.as_ref(), next_revision);
        match self.commit(config, records, vec![applied]).await {
            Ok(published) => Ok(published),
            Err(CommitError::Conflict) => Err(CommitError::Conflict),
            Err(CommitError::Api(e)) => {
                let mut h = entry(planned.before.as_ref(), None, revision);
                h.outcome = format!("rejected: {}", e.code());
                h.detail = Some(e.to_string());
                self.record(&h).await;
                Err(CommitError::Api(e))
            }
        }
    }

    /// Persists (with `history`, in one step), applies and publishes a new state; on a
    /// refused apply, restores the old one.
    async fn commit(
        &mut self,
        config: Arc<Config>,
        records: BTreeMap<String, ServiceRecord>,
        history: Vec<HistoryEntry>,
    ) -> Result<Arc<Published>, CommitError> {
        let base = SavedState {
            format: STATE_FORMAT,
            services: self.current.records.clone(),
        };
        let saved = SavedState {
            format: STATE_FORMAT,
            services: records,
        };
        self.store.commit(&base, &saved, &history).await?;
        let generation = match self.data_plane.apply(config.clone()).await {
            Ok(g) => g,
            Err(reason) => {
                tracing::warn!(reason = %reason, "data plane refused the desired state; restoring the previous one");
                if let Err(e) = self.store.commit(&saved, &base, &[]).await {
                    tracing::error!(error = %chain(&e), "cannot restore the previous desired state; the saved state is ahead of the proxy until the next write");
                }
                return Err(CommitError::Api(ApiError::ApplyFailed(reason)));
            }
        };
        tracing::info!(generation, "desired state applied");
        let published = Arc::new(Published {
            config,
            records: saved.services,
            generation: Some(generation),
        });
        self.current = published.clone();
        self.publish.send_replace(published.clone());
        Ok(published)
    }

    async fn reseed(&mut self, file: Config) -> Result<Option<u64>, ReseedError> {
        for _ in 0..WRITE_ATTEMPTS {
            let time = now();
            let merged = merge(&file, &self.current.records, &self.base_dir, &time)?;
            if merged.changed.is_empty() && merged.config == *self.current.config {
                self.seed = file;
                return Ok(self.current.generation);
            }
            let history = seed_history(&merged.changed, &time);
            match self
                .commit(Arc::new(merged.config), merged.records, history)
                .await
            {
                Ok(published) => {
                    self.seed = file;
                    return Ok(published.generation);
                }
                Err(CommitError::Conflict) => self
                    .refresh()
                    .await
                    .map_err(|e| ReseedError::Persist(e.to_string()))?,
                Err(CommitError::Api(ApiError::ApplyFailed(reason))) => {
                    return Err(ReseedError::Apply(reason));
                }
                Err(CommitError::Api(other)) => {
                    return Err(ReseedError::Persist(other.to_string()));
                }
            }
        }
        Err(ReseedError::Persist(
            "the shared state kept changing on other instances".to_owned(),
        ))
    }

    /// Appends to the history. A failure is logged, not returned: the change itself is durable
    /// and applied, and telling the client otherwise would be wrong.
    async fn record(&self, entry: &HistoryEntry) {
        if let Err(e) = self.store.append_history(entry).await {
            tracing::error!(error = %chain(&e), service = %entry.service, "cannot append to the history");
        }
    }
}

/// The next state a shared store's watch publishes; never resolves for the local store.
async fn changed(
    observed: &mut Option<watch::Receiver<Option<Arc<Observed>>>>,
) -> Option<Arc<Observed>> {
    match observed {
        Some(rx) => match rx.changed().await {
            Ok(()) => rx.borrow_and_update().clone(),
            // The store's watch is gone; keep serving the last state.
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Resolves once shutdown is signalled; a dropped sender counts as shutdown.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Either outcome means stop; the guard is dropped here so the future stays `Send`.
    let _ = shutdown.wait_for(|stop| *stop).await.map(drop);
}

/// History entries for services the configuration file changed.
pub(crate) fn seed_history(changed: &[Seeded], time: &str) -> Vec<HistoryEntry> {
    changed
        .iter()
        .map(|c| HistoryEntry {
            time: time.to_owned(),
            token: FILE_TOKEN.to_owned(),
            action: "reseed".to_owned(),
            service: c.service.clone(),
            before: c.before.as_ref().and_then(to_json),
            after: c.after.as_ref().and_then(to_json),
            outcome: "applied".to_owned(),
            revision: c.revision,
            detail: None,
        })
        .collect()
}

fn to_json(s: &raw::Service) -> Option<SpecJson> {
    SpecJson::of(s).ok()
}
