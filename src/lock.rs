//! The state-folder lock: one Switchyard per state folder. `serve` takes an exclusive `flock`
//! on `STATE_DIR/switchyard.lock` (holding its PID) before it binds anything or its control
//! plane loads the saved state; a second instance on the same folder is refused with the
//! folder and the holder's PID. The lock lives as long as the [`StateLock`] value (the kernel
//! releases it when the process dies, also on kill -9). The one hand-over is an upgrade
//! (`crate::upgrade`): the running instance releases it and the new one takes it.

use rustix::fs::FlockOperation;
use rustix::io::Errno;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file's name in the state folder.
const LOCK_FILE: &str = "switchyard.lock";

/// Why the state folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "state folder {} is in use by another switchyard (pid {pid}); stop it first, or replace it without a gap with `switchyard upgrade --config FILE`",
        dir.display()
    )]
    Held {
        /// The state folder.
        dir: PathBuf,
        /// The PID written by the holder (`unknown` if it wrote none yet).
        pid: String,
    },
    /// The lock file could not be created, locked or written.
    #[error("cannot lock the state folder {}", dir.display())]
    Io {
        /// The state folder.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The held lock on a state folder; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    dir: PathBuf,
}

impl StateLock {
    /// Takes the lock on `dir` (created if missing), or says who holds it.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => {
                let mut pid = String::new();
                // A holder that has not written its PID yet reads as empty.
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    pid: if pid.is_empty() { "unknown" } else { pid }.to_owned(),
                });
            }
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// Takes the lock once its holder releases it, within `limit` (an upgrade: the old
    /// process releases it as its last step before it drains).
    pub async fn acquire_within(dir: &Path, limit: Duration) -> Result<Self, LockError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match Self::acquire(dir) {
                Err(LockError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                    // The release is a close in another process; nothing to await but time.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                r => return r,
            }
        }
    }

    /// The locked state folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
