//! The running proxy: [`spawn_proxy`] starts the writer task and the listeners and returns a
//! [`ProxyHandle`].
//!
//! One writer task owns the model. `apply` sends it a complete desired state over a bounded
//! channel; it coalesces queued states, builds the next snapshot off the hot path, publishes it
//! with a single `ArcSwap` store and then announces the new generation on a `watch` channel, so
//! a caller that awaited `apply` knows the very next request routes on its state.
//!
//! The writer also owns the endpoint health checkers (`crate::health`) and the DNS discovery
//! tasks (`crate::discovery`): after each new snapshot it starts and stops checkers to match its
//! endpoints, and a discovery task's changed endpoint set reaches it on a second bounded channel
//! and triggers a rebuild of the current state. Health transitions need no rebuild: they flip
//! the endpoint's atomic that every snapshot shares.

use crate::access_log::AccessLog;
use crate::build::{BuildError, Registry, Resolved};
use crate::discovery::{Discovery, Update};
use crate::endpoint::{EndpointState, RememberedHealth};
use crate::forward::Settings;
use crate::health::Checks;
use crate::listener::{BoundListener, ConnCounters, start_listeners};
use crate::snapshot::Snapshot;
use crate::status::ProxyStatus;
use crate::worker::Workers;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use switchyard_config::{Config, Figures, Name, Reading, Window};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

/// State shared by every connection: the current snapshot and fixed settings.
pub(crate) struct Shared {
    pub(crate) snapshot: ArcSwap<Snapshot>,
    pub(crate) settings: Settings,
    /// Counts health transitions made by the checkers (never by the request path).
    pub(crate) health_changes: watch::Sender<u64>,
    /// Set once the listeners are handed over to a new process: HTTP/1 responses then close
    /// their connection (one relaxed load per request).
    pub(crate) handing_over: AtomicBool,
    /// Connection counters by listener position in the configuration.
    pub(crate) connections: Box<[ConnCounters]>,
    /// Connections accepted by each thread-per-core worker (empty without workers).
    pub(crate) worker_accepted: Box<[AtomicU64]>,
}

impl Shared {
    /// Announces that an endpoint's health changed between taking traffic and not.
    pub(crate) fn health_changed(&self) {
        self.health_changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A bound public listener, as reported to callers.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Name in the configuration.
    pub name: Name,
    /// The bound address.
    pub addr: SocketAddr,
    /// Whether it terminates TLS.
    pub tls: bool,
}

/// Why a desired state was not applied (the previous snapshot keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The snapshot could not be built.
    #[error("cannot build the routing snapshot")]
    Build(#[from] BuildError),
    /// The proxy is shutting down.
    #[error("the proxy is shutting down")]
    Stopped,
    /// The access log's writer thread could not be started.
    #[error("cannot start the access log")]
    AccessLog(#[source] std::io::Error),
}

type Reply = oneshot::Sender<Result<u64, String>>;

struct Apply {
    config: Arc<Config>,
    reply: Reply,
}

/// Cheap handle to the running proxy.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Apply>,
    generation: watch::Receiver<u64>,
    listeners: Arc<Vec<ListenerInfo>>,
    /// Listener names by position in the configuration (metric labels).
    listener_names: Arc<Vec<String>>,
    shutdown: Arc<watch::Sender<bool>>,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
    /// Thread-per-core workers serving the listeners, stopped after the drain.
    workers: Arc<std::sync::Mutex<Option<Workers>>>,
}

/// Looks up endpoint host names that are not IP literals.
async fn resolve(config: &Config) -> Resolved {
    let mut out = Resolved::new();
    for svc in config.services() {
        for st in svc.stacks() {
            for ep in st.endpoints() {
                if ep.socket_addr().is_some()
                    || out.contains_key(&(ep.host().to_owned(), ep.port()))
                {
                    continue;
                }
                match tokio::net::lookup_host((ep.host(), ep.port())).await {
                    Ok(mut addrs) => {
                        if let Some(a) = addrs.next() {
                            out.insert((ep.host().to_owned(), ep.port()), a);
                        }
                    }
                    Err(e) => warn!(endpoint = %ep, error = %e, "endpoint did not resolve"),
                }
            }
        }
    }
    out
}

/// Builds the first snapshot, spawns the writer and one accept loop per listener. Listeners are
/// matched to the configuration's listeners by name; a configured listener without a bound
/// socket routes nothing.
pub async fn spawn_proxy(
    config: Arc<Config>,
    bound: Vec<BoundListener>,
) -> Result<ProxyHandle, ApplyError> {
    spawn_proxy_with(config, bound, RememberedHealth::default()).await
}

/// [`spawn_proxy`], with the endpoints of the first snapshot starting from the health a previous
/// process saved (an endpoint that was healthy takes traffic at once, until a check says
/// otherwise) instead of their checks' initial state.
pub async fn spawn_proxy_with(
    config: Arc<Config>,
    bound: Vec<BoundListener>,
    remembered: RememberedHealth,
) -> Result<ProxyHandle, ApplyError> {
    start(config, bound, remembered, None).await
}

/// [`spawn_proxy_with`], serving the listeners on thread-per-core `workers` instead of the
/// calling runtime: each worker accepts on its own sockets of every listener (pass several
/// [`BoundListener`]s of one name, a `SO_REUSEPORT` group, ideally one per worker) and keeps
/// its own idle upstream connections. The snapshot writer, health checks and discovery run on
/// the calling runtime. [`ProxyHandle::shutdown`] stops the workers after the drain.
pub async fn spawn_proxy_on(
    workers: Workers,
    config: Arc<Config>,
    bound: Vec<BoundListener>,
    remembered: RememberedHealth,
) -> Result<ProxyHandle, ApplyError> {
    start(config, bound, remembered, Some(workers)).await
}

async fn start(
    config: Arc<Config>,
    bound: Vec<BoundListener>,
    remembered: RememberedHealth,
    workers: Option<Workers>,
) -> Result<ProxyHandle, ApplyError> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (updates_tx, updates_rx) = mpsc::channel(64);
    let mut discovery = Discovery::new(updates_tx);
    discovery.sync(&config, &shutdown_rx).await;
    let mut registry = Registry::default();
    registry.remembered = remembered;
    registry.workers = workers.as_ref().map_or(1, Workers::len);
    let resolved = resolve(&config).await;
    let built = registry.build(&config, 1, &resolved, discovery.sets());
    registry.remembered = RememberedHealth::default();
    let first = match built {
        Ok(s) => s,
        Err(e) => {
            discovery.stop().await;
            return Err(e.into());
        }
    };
    let names: Vec<String> = config
        .listeners()
        .iter()
        .map(|l| l.name().to_string())
        .collect();
    let access_log = match config.access_log() {
        Some(spec) => match AccessLog::spawn(spec, names.clone()) {
            Ok(l) => Some(l),
            Err(e) => {
                discovery.stop().await;
                return Err(ApplyError::AccessLog(e));
            }
        },
        None => None,
    };
    let settings = Settings {
        max_headers: config.limits().max_headers,
        max_header_bytes: config.limits().max_request_header_bytes,
        upstream_idle: config.timeouts().upstream_idle,
        access_log,
    };
    let shared = Arc::new(Shared {
        snapshot: ArcSwap::from_pointee(first),
        settings,
        health_changes: watch::channel(0).0,
        handing_over: AtomicBool::new(false),
        connections: names.iter().map(|_| ConnCounters::default()).collect(),
        worker_accepted: (0..workers.as_ref().map_or(0, Workers::len))
            .map(|_| AtomicU64::new(0))
            .collect(),
    });
    let (gen_tx, gen_rx) = watch::channel(1);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    let mut infos: Vec<ListenerInfo> = Vec::new();
    let mut serving = Vec::new();
    for b in bound {
        let Some(index) = config.listeners().iter().position(|l| l.name() == &b.name) else {
            warn!(listener = %b.name, "bound listener is not in the configuration; not serving it");
            continue;
        };
        let addr = match b.listener.local_addr() {
            Ok(a) => a,
            Err(_) => {
                discovery.stop().await;
                if let Some(l) = &shared.settings.access_log {
                    l.close(std::time::Duration::ZERO).await;
                }
                return Err(ApplyError::Stopped);
            }
        };
        // Several sockets of one listener (a `SO_REUSEPORT` group) are one listener.
        if !infos.iter().any(|i| i.name == b.name) {
            infos.push(ListenerInfo {
                name: b.name.clone(),
                addr,
                tls: b.tls.is_some(),
            });
        }
        serving.push((index, b));
    }
    let mut tasks = start_listeners(
        serving,
        workers.as_ref(),
        &shared,
        config.limits(),
        config.timeouts(),
        &shutdown_rx,
    );
    let writer = Writer {
        shared: shared.clone(),
        registry,
        gen_tx,
        current: config,
        resolved,
        generation: 1,
        checks: Checks::default(),
        discovery,
        shutdown: shutdown_rx,
    };
    let writer = tokio::spawn(
        writer
            .run(cmd_rx, updates_rx)
            .instrument(info_span!("snapshot-writer")),
    );
    tasks.push(writer);
    Ok(ProxyHandle {
        shared,
        commands: cmd_tx,
        generation: gen_rx,
        listeners: Arc::new(infos),
        listener_names: Arc::new(names),
        shutdown: Arc::new(shutdown_tx),
        tasks: Arc::new(std::sync::Mutex::new(tasks)),
        workers: Arc::new(std::sync::Mutex::new(workers)),
    })
}

/// Resolves once shutdown is signalled (or its sender is gone). Holds no borrow of the channel
/// afterwards, so a `select!` whose other branches await stays `Send`.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Either outcome means stop: the flag was set, or every handle and the sender are gone.
    let _ = rx.wait_for(|s| *s).await;
}

/// The single owner of the model, the registry, the checkers and the discovery tasks.
struct Writer {
    shared: Arc<Shared>,
    registry: Registry,
    gen_tx: watch::Sender<u64>,
    current: Arc<Config>,
    /// Addresses of the current state's endpoint host names (reused by DNS-driven rebuilds).
    resolved: Resolved,
    generation: u64,
    checks: Checks,
    discovery: Discovery,
    shutdown: watch::Receiver<bool>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Apply>, mut updates: mpsc::Receiver<Update>) {
        self.checks
            .sync(&self.shared.snapshot.load(), &self.shared, &self.shutdown);
        // The per-second samples sliding-window figures are computed from.
        let mut second = tokio::time::interval_at(
            tokio::time::Instant::now() + std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(1),
        );
        second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                now = second.tick() => self.registry.tick_stats(now),
                m = rx.recv() => match m {
                    Some(m) => self.apply(m, &mut rx).await,
                    None => break,
                },
                Some(u) = updates.recv() => {
                    let mut changed = self.discovery.accept(u);
                    while let Ok(u) = updates.try_recv() {
                        changed |= self.discovery.accept(u);
                    }
                    if changed {
                        let config = self.current.clone();
                        let resolved = std::mem::take(&mut self.resolved);
                        let built = self.rebuild(&config, &resolved);
                        self.resolved = resolved;
                        if let Err(e) = built {
                            warn!(error = %e, cause = std::error::Error::source(&e).map(tracing::field::display), "dns change refused; previous snapshot keeps serving");
                        }
                    }
                }
                () = stopped(&mut shutdown) => break,
            }
        }
        self.checks.stop().await;
        self.discovery.stop().await;
    }

    async fn apply(&mut self, first: Apply, rx: &mut mpsc::Receiver<Apply>) {
        let mut replies = vec![first.reply];
        let mut config = first.config;
        // Coalesce: only the newest queued state matters.
        while let Ok(next) = rx.try_recv() {
            replies.push(next.reply);
            config = next.config;
        }
        if config.listeners() != self.current.listeners() {
            warn!(
                "listener changes take effect after a restart; routing uses the new services only"
            );
        }
        self.discovery.sync(&config, &self.shutdown).await;
        let resolved = resolve(&config).await;
        let result = match self.rebuild(&config, &resolved) {
            Ok(generation) => {
                self.current = config;
                self.resolved = resolved;
                info!(generation, "generation applied");
                Ok(generation)
            }
            Err(e) => {
                // The discovery tasks follow the state that serves.
                let current = self.current.clone();
                self.discovery.sync(&current, &self.shutdown).await;
                warn!(error = %e, cause = std::error::Error::source(&e).map(tracing::field::display), "desired state refused; previous snapshot keeps serving");
                Err(format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or(String::new(), |s| s.to_string())
                ))
            }
        };
        for r in replies {
            // The caller may have gone away; the state is applied either way.
            let _ = r.send(result.clone());
        }
    }

    /// Builds, stores and announces the next snapshot, then matches the checkers to it.
    fn rebuild(&mut self, config: &Config, resolved: &Resolved) -> Result<u64, BuildError> {
        let snap =
            self.registry
                .build(config, self.generation + 1, resolved, self.discovery.sets())?;
        self.generation += 1;
        let snap = Arc::new(snap);
        self.shared.snapshot.store(snap.clone());
        self.gen_tx.send_replace(self.generation);
        self.checks.sync(&snap, &self.shared, &self.shutdown);
        Ok(self.generation)
    }
}

impl ProxyHandle {
    /// Applies a complete desired state; resolves once requests route on it.
    pub async fn apply(&self, config: Arc<Config>) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Apply { config, reply })
            .await
            .map_err(|_| ApplyError::Stopped.to_string())?;
        rx.await.map_err(|_| ApplyError::Stopped.to_string())?
    }

    /// The generation channel: the latest applied generation.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// A counter that moves on every health transition an active check makes (healthy to
    /// unhealthy and back); the wiring saves health when it moves.
    pub fn health_changes(&self) -> watch::Receiver<u64> {
        self.shared.health_changes.subscribe()
    }

    /// The snapshot requests route on now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Bound public listeners.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// Every endpoint's state, check results and ejections, and each DNS stack's last
    /// resolution, as of now.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus::of(&self.snapshot())
    }

    /// The runtime status of one stack (cheaper than [`ProxyHandle::status`] for one view).
    pub fn stack_status(&self, service: &str, stack: &str) -> Option<crate::status::StackStatus> {
        Some(crate::status::stack(self.snapshot().stack(service, stack)?))
    }

    /// Traffic figures of a stack over `window`; `None` when the current snapshot has no such
    /// stack.
    pub fn stack_figures(&self, service: &str, stack: &str, window: Window) -> Option<Figures> {
        let now = tokio::time::Instant::now();
        Some(
            self.snapshot()
                .stack(service, stack)?
                .stats()
                .figures(window, now),
        )
    }

    /// The cumulative traffic counters of a stack as of now; `None` when the current snapshot
    /// has no such stack.
    pub fn stack_reading(&self, service: &str, stack: &str) -> Option<Reading> {
        Some(self.snapshot().stack(service, stack)?.stats().reading())
    }

    /// Registers the data plane's metrics (requests, latencies, bytes, proxy errors, weights,
    /// endpoint health and ejections, pools, generation, connections, TLS handshakes, access-log
    /// drops) in `registry`; they are read from the live
    /// counters at scrape time.
    pub fn register_metrics(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        let tls = self
            .listener_names
            .iter()
            .map(|n| {
                self.listeners
                    .iter()
                    .any(|l| l.tls && l.name.as_str() == n.as_str())
            })
            .collect();
        registry.register(Box::new(crate::metrics::ProxyCollector::new(
            self.shared.clone(),
            self.listener_names.to_vec(),
            tls,
        )))
    }

    /// Endpoint states of a stack in the current snapshot.
    pub fn endpoints(&self, service: &str, stack: &str) -> Vec<Arc<EndpointState>> {
        let snap = self.snapshot();
        snap.service(service)
            .and_then(|s| s.stacks().iter().find(|st| st.name().as_str() == stack))
            .map(|st| st.endpoints().to_vec())
            .unwrap_or_default()
    }

    /// Asks the access log to reopen its file (after log rotation renamed it); nothing when
    /// the access log is off or on stdout.
    pub fn reopen_access_log(&self) {
        if let Some(l) = &self.shared.settings.access_log {
            l.reopen();
        }
    }

    /// Stops accepting because another process now accepts on the same sockets; connections
    /// finish here (see `crate::listener`). [`ProxyHandle::shutdown`] then waits for them.
    pub fn hand_over(&self) {
        self.shared.handing_over.store(true, Ordering::Relaxed);
        self.shutdown.send_replace(true);
    }

    /// Stops accepting, lets in-flight requests finish within the drain deadline, and waits for
    /// every task.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(p) => p.into_inner().drain(..).collect(),
        };
        for t in tasks {
            if let Err(e) = t.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
        if let Some(l) = &self.shared.settings.access_log {
            // The last requests' lines are written and flushed, unless the log's output is
            // stuck (then they are lost rather than holding up the exit).
            l.close(std::time::Duration::from_secs(2)).await;
        }
        let workers = match self.workers.lock() {
            Ok(mut w) => w.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(w) = workers {
            w.stop().await;
        }
    }
}
