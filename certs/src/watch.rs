//! The certificate file watcher: file-system notifications (inotify, through `notify`, on the
//! folders holding the files, so a replacement by rename is seen too) wake it at once, and it
//! also polls every `interval` as the fallback for file systems without notifications. Either
//! way it reloads the store when any file's stamp changed, and warns about certificates close to
//! expiry.
//!
//! A file's stamp is its mtime, length and SHA-256 of its content (mtime alone misses a copy
//! that preserves it, or two writes within the clock's resolution). The first poll always
//! reloads, so a change made between `CertStore::load` and the watcher's start is not missed.
//! File reads and reloads run on the blocking pool, never on a runtime worker.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{Instrument, error, info, info_span, warn};

use crate::load::CertSource;
use crate::store::{CertStore, ReloadReport};

/// Certificates with less time left than this are warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

/// How often the expiry warning repeats when nothing is reloaded.
const WARNING_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Spawns a task that polls the store's files every `interval` (mtime, length and content hash)
/// and calls [`CertStore::reload`] when anything changed; it also warns, after each reload and
/// once a day, about certificates with fewer than 14 days left. Stops when `shutdown` becomes
/// true or its sender is dropped.
pub fn spawn_watcher(
    store: Arc<CertStore>,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(run(store, interval, shutdown).instrument(info_span!("cert_watcher")))
}

/// Lets writers finish the other file of a pair before the stamps are compared.
const SETTLE: Duration = Duration::from_millis(100);

/// Starts file-system notifications on the folders of the store's files; `None` (polling only)
/// when the platform or the file system does not offer them.
fn notifications(
    store: &CertStore,
) -> Option<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| changes(&e.kind)) {
            // A full channel already holds a wake-up: this event is covered by it.
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| warn!(error = %e, "file notifications unavailable; polling only"))
    .ok()?;
    let mut folders: Vec<std::path::PathBuf> = store
        .sources()
        .iter()
        .flat_map(|s| [s.cert.parent(), s.key.parent()])
        .flatten()
        .map(|p| {
            if p.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                p
            }
        })
        .map(std::path::Path::to_path_buf)
        .collect();
    folders.sort();
    folders.dedup();
    for f in &folders {
        if let Err(e) = watcher.watch(f, notify::RecursiveMode::NonRecursive) {
            warn!(folder = %f.display(), error = %e, "cannot watch folder; polling only for it");
        }
    }
    Some((watcher, rx))
}

/// Whether an event of `kind` may have changed a file. Opening, reading and closing after
/// reading change nothing, and this watcher's own reads make exactly those: waking up for them
/// would read the files again, every `SETTLE`, for ever.
fn changes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn run(store: Arc<CertStore>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    // Kept alive for the loop's lifetime; dropping it stops the notifications.
    let (_watcher, mut events) = match notifications(&store) {
        Some((w, rx)) => (Some(w), Some(rx)),
        None => (None, None),
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<Vec<Option<FileStamp>>> = None;
    let mut last_warning: Option<Instant> = None;
    info!(interval = ?interval, files = store.sources().len() * 2, "certificate watcher started");
    loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            _ = ticker.tick() => {}
            Some(()) = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tokio::time::sleep(SETTLE).await;
            }
        }

        let sources = store.sources().to_vec();
        let Some(stamps) = blocking(move || stamp_all(&sources)).await else {
            continue;
        };
        if last.as_ref() != Some(&stamps) {
            let first_poll = last.is_none();
            last = Some(stamps);
            let reloading = Arc::clone(&store);
            let Some(report) = blocking(move || reloading.reload()).await else {
                continue;
            };
            if !first_poll || report != ReloadReport::default() {
                log_report(&report);
            }
            warn_expiring(&store);
            last_warning = Some(Instant::now());
        } else if last_warning.is_none_or(|at| at.elapsed() >= WARNING_INTERVAL) {
            warn_expiring(&store);
            last_warning = Some(Instant::now());
        }
    }
    info!("certificate watcher stopped");
}

/// Runs blocking work on the blocking pool; a panic in it is logged and yields `None`.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Some(value),
        Err(err) => {
            error!(error = %err, "certificate watcher work failed");
            None
        }
    }
}

fn log_report(report: &ReloadReport) {
    if report.failed.is_empty() {
        info!(
            reloaded = report.reloaded,
            unchanged = report.unchanged,
            "certificate files changed, reload done"
        );
    } else {
        // Each failure was already logged at error level by the store, naming its file.
        warn!(
            reloaded = report.reloaded,
            unchanged = report.unchanged,
            failed = report.failed.len(),
            "certificate files changed, reload partly failed"
        );
    }
}

fn warn_expiring(store: &CertStore) {
    let threshold = i64::try_from(EXPIRY_WARNING.as_secs()).unwrap_or(i64::MAX);
    for status in store.current() {
        if status.seconds_until_expiry < 0 {
            warn!(cert = %status.cert.display(), names = ?status.dns_names, not_after = %crate::inspect::Utc(status.not_after), "certificate has expired");
        } else if status.seconds_until_expiry < threshold {
            warn!(
                cert = %status.cert.display(),
                names = ?status.dns_names,
                days_left = status.seconds_until_expiry / 86_400,
                "certificate expires soon"
            );
        }
    }
}

/// What a poll remembers of one file; `None` in the list when it could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    digest: [u8; 32],
}

fn stamp_all(sources: &[CertSource]) -> Vec<Option<FileStamp>> {
    sources
        .iter()
        .flat_map(|src| [&src.cert, &src.key])
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            let content = std::fs::read(path).ok()?;
            Some(FileStamp {
                modified: metadata.modified().ok(),
                len: metadata.len(),
                digest: Sha256::digest(&content).into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::changes;
    use notify::event::{
        AccessKind, AccessMode, CreateKind, DataChange, EventKind, ModifyKind, RemoveKind,
        RenameMode,
    };

    #[test]
    fn reads_do_not_wake_the_watcher_and_writes_do() {
        for quiet in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ] {
            assert!(!changes(&quiet), "{quiet:?}");
        }
        for change in [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ] {
            assert!(changes(&change), "{change:?}");
        }
    }
}
