//! How a replica is started: its command line (`{port}` substituted, a relative program
//! resolved against the working directory or the configuration's folder), its environment, and
//! the spawn itself — in its own process group, with its log file as stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::log::LogFile;
use crate::deploy::record::ProcessStackRecord;
use crate::deploy::source::SourceError;

/// How to start one replica.
#[derive(Debug, Clone)]
pub(super) struct Launch {
    pub(super) name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<PathBuf>,
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// A port for a new replica, below the ephemeral range (see `source::port`).
pub(super) fn free_port() -> Result<u16, SourceError> {
    crate::deploy::source::port::free_port().map_err(SourceError::Port)
}

pub(super) fn launch(rec: &ProcessStackRecord, index: usize, port: u16) -> Launch {
    let base_dir = PathBuf::from(&rec.base_dir);
    let p = &rec.process;
    let workdir = p.workdir.as_ref().map(|w| resolve(&base_dir, w));
    let base = workdir.clone().unwrap_or(base_dir);
    let mut argv: Vec<String> = p
        .command
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    // A relative program with a slash is relative to the working directory or the config's
    // folder, never to wherever Switchyard was started from.
    if argv[0].contains('/') {
        argv[0] = resolve(&base, &argv[0]).to_string_lossy().into_owned();
    }
    let mut env: Vec<(String, String)> =
        p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.push(("SWITCHYARD_PORT".into(), port.to_string()));
    env.push(("SWITCHYARD_SERVICE".into(), rec.service.clone()));
    env.push(("SWITCHYARD_STACK".into(), rec.stack.clone()));
    env.push(("SWITCHYARD_VERSION".into(), rec.version.clone()));
    Launch {
        name: format!("{}-{index}", rec.stack),
        argv,
        env,
        workdir,
    }
}

/// The port of a recorded `127.0.0.1:PORT` endpoint.
pub(super) fn port_of(endpoint: &str) -> Option<u16> {
    endpoint.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

impl Launch {
    /// Starts the replica in its own process group (a terminal's Ctrl-C to Switchyard does
    /// not reach it), with `log` as its stdout and stderr.
    pub(super) fn spawn(&self, log: &mut LogFile) -> Result<Child, SourceError> {
        let out = log.open_for_replica().map_err(|source| SourceError::Log {
            name: self.name.clone(),
            source,
        })?;
        let err = out.try_clone().map_err(|source| SourceError::Log {
            name: self.name.clone(),
            source,
        })?;
        let mut cmd = Command::new(&self.argv[0]);
        // A replica is not Switchyard: systemd's notify socket is not for it.
        cmd.args(&self.argv[1..])
            .env_remove("NOTIFY_SOCKET")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &self.workdir {
            cmd.current_dir(dir);
        }
        crate::launcher::spawn(cmd).map_err(|source| SourceError::Spawn {
            program: self.argv[0].clone(),
            source,
        })
    }
}
