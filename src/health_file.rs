//! Endpoint health kept across restarts: `STATE_DIR/health.json`, written when an active check
//! changes an endpoint's health or a new generation is applied (debounced; only when what it
//! would write differs from the last write; then write, fsync, rename, fsync the folder) and
//! once more on shutdown, and read at start so endpoints that
//! were healthy keep taking traffic until a check says otherwise (a restart is then not a
//! window of 503s). A missing or unreadable file means nothing is remembered.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_proxy::{ProxyHandle, ProxyStatus, RememberedHealth, ShownHealth};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

const FILE: &str = "health.json";
const FORMAT: u32 = 1;
/// Transitions within this time are saved together.
const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    format: u32,
    endpoints: Vec<SavedEndpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedEndpoint {
    service: String,
    stack: String,
    endpoint: String,
    address: SocketAddr,
    healthy: bool,
}

/// The health saved in `dir` by the previous process.
pub(crate) fn load(dir: &Path) -> RememberedHealth {
    let path = dir.join(FILE);
    let mut out = RememberedHealth::default();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read saved endpoint health; endpoints start as their checks say");
            return out;
        }
    };
    match serde_json::from_slice::<Saved>(&text) {
        Ok(saved) if saved.format == FORMAT => {
            for e in saved.endpoints {
                out.insert(&e.service, &e.stack, &e.endpoint, e.address, e.healthy);
            }
            info!(endpoints = out.len(), "endpoint health restored");
        }
        Ok(saved) => {
            warn!(file = %path.display(), format = saved.format, "saved endpoint health has an unknown format; ignored")
        }
        Err(e) => {
            warn!(file = %path.display(), error = %e, "saved endpoint health is unreadable; ignored")
        }
    }
    out
}

/// What is worth remembering of `status`: healthy and unhealthy endpoints (an ejected one as
/// its last check says); undecided and unchecked ones start as their checks say anyway.
fn saved(status: &ProxyStatus) -> Saved {
    let mut endpoints = Vec::new();
    for svc in &status.services {
        for st in &svc.stacks {
            for e in &st.endpoints {
                let healthy = match e.state {
                    ShownHealth::Healthy => true,
                    ShownHealth::Unhealthy => false,
                    ShownHealth::Ejected => {
                        e.check.as_ref().is_none_or(|c| c.consecutive_failures == 0)
                    }
                    ShownHealth::Unknown | ShownHealth::Unchecked => continue,
                };
                endpoints.push(SavedEndpoint {
                    service: svc.name.clone(),
                    stack: st.name.clone(),
                    endpoint: e.endpoint.clone(),
                    address: e.address,
                    healthy,
                });
            }
        }
    }
    Saved {
        format: FORMAT,
        endpoints,
    }
}

/// Writes `bytes` durably: a temporary file, fsync, rename over the old one, fsync the folder.
fn write(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Saves what is worth remembering now, unless it equals `last` (what the previous save
/// wrote): a new generation that changed weights but no endpoint's health costs no write.
async fn save(dir: &Path, proxy: &ProxyHandle, last: &mut Option<Vec<u8>>) {
    let bytes = match serde_json::to_vec_pretty(&saved(&proxy.status())) {
        Ok(b) => b,
        Err(e) => return warn!(error = %e, "cannot encode endpoint health"),
    };
    if last.as_ref() == Some(&bytes) {
        return;
    }
    let dir2: PathBuf = dir.to_path_buf();
    let r = tokio::task::spawn_blocking(move || write(&dir2, &bytes).map(|()| bytes)).await;
    match r {
        Ok(Ok(bytes)) => *last = Some(bytes),
        Ok(Err(e)) => warn!(dir = %dir.display(), error = %e, "cannot save endpoint health"),
        Err(e) => warn!(error = %e, "endpoint health save task failed"),
    }
}

/// The task that saves health on changes; it saves once more and ends when `stop` turns true.
pub(crate) fn spawn_saver(
    dir: PathBuf,
    proxy: ProxyHandle,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let task = async move {
        let mut changes = proxy.health_changes();
        let mut generations = proxy.generation();
        let mut last = None;
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                r = generations.changed() => if r.is_err() { break },
                _ = stop.wait_for(|s| *s) => break,
            }
            tokio::select! {
                () = tokio::time::sleep(DEBOUNCE) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            changes.borrow_and_update();
            generations.borrow_and_update();
            save(&dir, &proxy, &mut last).await;
        }
        save(&dir, &proxy, &mut last).await;
    };
    tokio::spawn(task.instrument(info_span!("health-saver")))
}
