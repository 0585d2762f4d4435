//! Where accept loops run: on the calling runtime, or spread over thread-per-core workers
//! (`crate::worker`), each worker accepting on sockets of its own.

use super::{BoundListener, listener_task};
use crate::handle::Shared;
use crate::worker::Workers;
use std::sync::Arc;
use switchyard_config::{Limits, Name, Timeouts};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// Spawns the accept loops of `bound` (each with its listener's position in the
/// configuration): without `workers` one per socket on the calling runtime; with them, each
/// listener's sockets are spread over the workers ([`spawn_on_workers`]).
pub(crate) fn start_listeners(
    bound: Vec<(usize, BoundListener)>,
    workers: Option<&Workers>,
    shared: &Arc<Shared>,
    limits: Limits,
    timeouts: Timeouts,
    shutdown: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let Some(workers) = workers else {
        return bound
            .into_iter()
            .map(|(index, b)| {
                tokio::spawn(listener_task(
                    index,
                    b,
                    shared.clone(),
                    limits,
                    timeouts,
                    shutdown.clone(),
                ))
            })
            .collect();
    };
    // The sockets of each listener, by its position.
    let mut groups: Vec<Group> = Vec::new();
    for (index, b) in bound {
        // Deregistered from this runtime's reactor, to be registered with a worker's.
        let socket = match b.listener.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!(listener = %b.name, error = %e, "cannot hand the socket to a worker; not serving it");
                continue;
            }
        };
        match groups.iter_mut().find(|g| g.index == index) {
            Some(g) => g.sockets.push(socket),
            None => groups.push(Group {
                index,
                name: b.name,
                tls: b.tls,
                sockets: vec![socket],
            }),
        }
    }
    let mut tasks = Vec::new();
    for g in groups {
        let name = g.name.clone();
        match spawn_on_workers(workers, g, shared, limits, timeouts, shutdown) {
            Ok(t) => tasks.extend(t),
            Err(e) => {
                warn!(listener = %name, error = %e, "cannot share the socket between workers; not serving it")
            }
        }
    }
    tasks
}

/// The sockets of one listener.
struct Group {
    index: usize,
    name: Name,
    tls: Option<Arc<rustls::ServerConfig>>,
    sockets: Vec<std::net::TcpListener>,
}

/// Spawns the accept loops of one listener on `workers`, over its sockets (its
/// `SO_REUSEPORT` group, or one socket): with at least as many sockets as workers each socket
/// is accepted on by one worker; with fewer, workers share sockets (each its own descriptor),
/// so every worker accepts and every socket is accepted on.
fn spawn_on_workers(
    workers: &Workers,
    group: Group,
    shared: &Arc<Shared>,
    limits: Limits,
    timeouts: Timeouts,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let n = workers.len();
    let mut assigned = Vec::with_capacity(group.sockets.len().max(n));
    if group.sockets.len() >= n {
        assigned.extend(
            group
                .sockets
                .into_iter()
                .enumerate()
                .map(|(j, s)| (j % n, s)),
        );
    } else {
        for w in 0..n {
            assigned.push((w, group.sockets[w % group.sockets.len()].try_clone()?));
        }
    }
    let mut tasks = Vec::with_capacity(assigned.len());
    for (w, socket) in assigned {
        let (index, name, tls) = (group.index, group.name.clone(), group.tls.clone());
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let task = async move {
            // Registered with this worker's reactor: its connections are served here.
            match TcpListener::from_std(socket) {
                Ok(listener) => {
                    let bound = BoundListener {
                        name,
                        listener,
                        tls,
                    };
                    listener_task(index, bound, shared, limits, timeouts, shutdown).await
                }
                Err(e) => {
                    warn!(listener = %name, worker = w, error = %e, "cannot accept on this worker")
                }
            }
        };
        // Not in a span: see `listener_task`.
        tasks.push(workers.spawn(w, task));
    }
    Ok(tasks)
}
