//! Binding listeners (with TLS from the `certs` crate), starting the proxy and the control
//! plane, and the process lifecycle.
//!
//! Start-up order: the state-folder lock is taken (`crate::lock`), listeners are bound (or
//! received from the running instance on an upgrade, `crate::upgrade`), the control plane
//! loads the saved desired state and merges it with the file (runtime changes win), the proxy
//! starts on the merged state with the endpoint health saved by the previous process
//! (`crate::health_file`), then the control API starts driving it. `SIGHUP` re-merges the file
//! and reloads certificates (a bad file keeps the old state serving); `SIGUSR1` reopens the
//! access log (log rotation); `SIGTERM`/`SIGINT` stop
//! accepting and drain; a take-over by `switchyard upgrade` stops accepting, releases the state
//! folder and drains.
//! Process replicas keep running on exit (the next start re-adopts them) unless
//! [`Bound::stop_replicas_on_exit`] (the demo).

use crate::control_runtime::ControlRuntime;
use crate::health_file;
use crate::lock::StateLock;
use crate::notify::{self, notify};
use crate::plane::ProxyPlane;
use crate::upgrade::{Offer, Sockets};
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_certs::{CertSource, CertStore};
use switchyard_config::{Config, ListenerTls, Scheduler, StoreSpec, UnknownSni};
use switchyard_control::{
    ControlState, EtcdStore, FileStore, Store, spawn_control, spawn_control_tls,
};
use switchyard_proxy::{BoundListener, ListenerInfo, Workers, spawn_proxy_on, spawn_proxy_with};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{error, info, warn};

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be bound.
    #[error("cannot bind listener {name} on {addr}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A listener's certificates could not be loaded.
    #[error("cannot load the certificates of listener {name}")]
    Certs {
        /// Listener name.
        name: String,
        /// Cause.
        #[source]
        source: switchyard_certs::CertLoadError,
    },
    /// The TLS configuration could not be built.
    #[error("cannot build the tls configuration of listener {name}")]
    Tls {
        /// Listener name.
        name: String,
        /// Cause.
        #[source]
        source: Box<switchyard_certs::TlsConfigError>,
    },
    /// The metrics registry refused the proxy's metrics.
    #[error("cannot register the metrics")]
    Metrics(#[source] Box<prometheus::Error>),
    /// The proxy refused the configuration.
    #[error("cannot start the proxy")]
    Proxy(#[from] switchyard_proxy::ApplyError),
    /// The control plane could not load its state.
    #[error("cannot load the control plane's state")]
    Control(#[from] switchyard_control::BuildError),
    /// The desired state store (state directory or etcd) could not be opened.
    #[error("cannot open the desired state store")]
    Store(#[from] switchyard_control::StoreError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
    /// The control plane's thread could not be started.
    #[error("cannot start the control plane's runtime")]
    Runtime(#[source] std::io::Error),
    /// The proxy's thread-per-core workers could not be started.
    #[error("cannot start the proxy's worker threads")]
    Workers(#[source] std::io::Error),
    /// The state folder is locked by another instance, or cannot be locked.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

/// What is running, for the startup report.
#[derive(Debug, Clone)]
pub struct Started {
    /// Bound public listeners.
    pub listeners: Vec<ListenerInfo>,
    /// The control API's address.
    pub control: SocketAddr,
}

/// Bound listeners and the certificate stores behind their TLS.
pub struct Bound {
    listeners: Vec<BoundListener>,
    stores: Vec<Arc<CertStore>>,
    control: TcpListener,
    control_tls: Option<Arc<rustls::ServerConfig>>,
    /// Duplicates of the listening sockets, offered to a new process on an upgrade.
    sockets: Sockets,
    stop_replicas_on_exit: bool,
}

impl Bound {
    /// Stop every process replica when the process exits (the demo leaves nothing behind);
    /// by default replicas keep running and the next start re-adopts them.
    pub fn stop_replicas_on_exit(mut self) -> Self {
        self.stop_replicas_on_exit = true;
        self
    }
}

/// Listening sockets received from the instance being upgraded.
#[derive(Default)]
pub(crate) struct Inherited {
    /// Public listeners by name.
    pub(crate) public: Vec<(String, OwnedFd)>,
    /// The control listener.
    pub(crate) control: Option<OwnedFd>,
}

/// `fd` as a listener for `want` when it is bound there (a configured port 0 matches any
/// port on the same address); `None` (logged, and the socket closed) when it is elsewhere.
fn adopt(name: &str, want: SocketAddr, fd: OwnedFd) -> Result<Option<TcpListener>, ServeError> {
    let err = |source| ServeError::Bind {
        name: name.to_owned(),
        addr: want,
        source,
    };
    let l = std::net::TcpListener::from(fd);
    match l.local_addr() {
        Ok(a) if a == want || (want.port() == 0 && a.ip() == want.ip()) => {
            l.set_nonblocking(true).map_err(err)?;
            TcpListener::from_std(l).map(Some).map_err(err)
        }
        Ok(a) => {
            warn!(listener = name, inherited = %a, configured = %want, "the running instance's socket is elsewhere; binding anew");
            Ok(None)
        }
        Err(e) => {
            warn!(listener = name, error = %e, "unusable inherited socket; binding anew");
            Ok(None)
        }
    }
}

/// A new listening socket on `addr`; with `reuseport`, one of a `SO_REUSEPORT` group (each
/// thread-per-core worker accepts on a socket of its own, and the kernel spreads new
/// connections over the group).
fn bind_socket(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // What `TcpListener::bind` sets: a restart binds while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuseport {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The accept queue of each listening socket (what `TcpListener::bind` uses).
const LISTEN_BACKLOG: u32 = 1024;

/// The sockets of one listener: those inherited at `want`, else a new one; then, up to
/// `count`, new sockets joining its `SO_REUSEPORT` group. A socket that refuses to join (an
/// inherited one bound without `SO_REUSEPORT`) leaves fewer sockets than workers, which then
/// share them.
fn listen(
    name: &str,
    want: SocketAddr,
    fds: Vec<OwnedFd>,
    count: usize,
) -> Result<Vec<TcpListener>, ServeError> {
    let err = |addr, source| ServeError::Bind {
        name: name.to_owned(),
        addr,
        source,
    };
    let mut out = Vec::with_capacity(count.max(fds.len()));
    for fd in fds {
        if let Some(l) = adopt(name, want, fd)? {
            out.push(l);
        }
    }
    if out.is_empty() {
        out.push(bind_socket(want, count > 1).map_err(|e| err(want, e))?);
    }
    let addr = out[0].local_addr().map_err(|e| err(want, e))?;
    while out.len() < count {
        match bind_socket(addr, true) {
            Ok(l) => out.push(l),
            Err(e) => {
                info!(listener = name, sockets = out.len(), error = %e, "cannot add a socket to the listener; its workers share the sockets it has");
                break;
            }
        }
    }
    Ok(out)
}

/// How many thread-per-core workers serve the listeners (`[runtime]`): 0 when the proxy runs
/// on the main runtime (one worker thread, or the work-stealing scheduler).
pub fn proxy_workers(config: &Config) -> usize {
    let rt = config.runtime();
    let n = rt
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    match rt.scheduler {
        Scheduler::ThreadPerCore if n > 1 => n,
        _ => 0,
    }
}

fn dup(name: &str, l: &TcpListener) -> Result<OwnedFd, ServeError> {
    l.as_fd()
        .try_clone_to_owned()
        .map_err(|source| ServeError::Bind {
            name: name.to_owned(),
            addr: l
                .local_addr()
                .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            source,
        })
}

fn cert_store(
    name: &str,
    tls: &ListenerTls,
) -> Result<(Arc<CertStore>, Arc<rustls::ServerConfig>), ServeError> {
    let sources = tls
        .certs()
        .iter()
        .map(|c| CertSource {
            cert: c.cert.clone(),
            key: c.key.clone(),
        })
        .collect();
    let unknown = match tls.unknown_sni() {
        UnknownSni::ServeDefault => switchyard_certs::UnknownSni::ServeDefault,
        UnknownSni::Refuse => switchyard_certs::UnknownSni::Refuse,
    };
    let store = CertStore::load(sources, unknown).map_err(|source| ServeError::Certs {
        name: name.to_owned(),
        source,
    })?;
    let config =
        switchyard_certs::server_config(store.clone()).map_err(|source| ServeError::Tls {
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok((store, config))
}

/// Loads every certificate the listeners (and the control API) would serve, binding nothing:
/// what `switchyard check` adds to the configuration's own rules, so it refuses what
/// [`bind`] would.
pub fn check_certificates(config: &Config) -> Result<(), ServeError> {
    for l in config.listeners() {
        if let Some(t) = l.tls() {
            cert_store(l.name().as_str(), t)?;
        }
    }
    if let Some(t) = &config.control().tls {
        cert_store("control", t)?;
    }
    Ok(())
}

/// Binds every configured listener (and the control API's) and loads certificates.
pub async fn bind(config: &Config) -> Result<Bound, ServeError> {
    bind_inherited(config, Inherited::default()).await
}

/// [`bind`], taking each listener from `inherited` when it has one of that name at that
/// address; inherited sockets no listener takes are closed.
pub(crate) async fn bind_inherited(
    config: &Config,
    mut inherited: Inherited,
) -> Result<Bound, ServeError> {
    // The control listener's policy (no open API off loopback) is a configuration rule:
    // `switchyard_config::parse` refused the file already, so `check` says the same.
    let mut sockets = Sockets {
        public: Vec::new(),
        control: None,
    };
    let mut listeners = Vec::new();
    let mut stores = Vec::new();
    // One socket per thread-per-core worker.
    let workers = proxy_workers(config).max(1);
    for l in config.listeners() {
        let tls = match l.tls() {
            Some(t) => {
                let (store, cfg) = cert_store(l.name().as_str(), t)?;
                stores.push(store);
                Some(cfg)
            }
            None => None,
        };
        let name = l.name().as_str();
        let (mine, rest) = std::mem::take(&mut inherited.public)
            .into_iter()
            .partition::<Vec<_>, _>(|(n, _)| n == name);
        inherited.public = rest;
        let fds = mine.into_iter().map(|(_, fd)| fd).collect();
        for listener in listen(name, l.bind(), fds, workers)? {
            sockets
                .public
                .push((name.to_owned(), dup(name, &listener)?));
            listeners.push(BoundListener {
                name: l.name().clone(),
                listener,
                tls: tls.clone(),
            });
        }
    }
    let control_tls = match &config.control().tls {
        Some(t) => {
            let (store, cfg) = cert_store("control", t)?;
            stores.push(store);
            Some(cfg)
        }
        None => None,
    };
    let control = listen(
        "control",
        config.control().listen,
        inherited.control.into_iter().collect(),
        1,
    )?
    .swap_remove(0);
    sockets.control = Some(dup("control", &control)?);
    for (name, _) in &inherited.public {
        warn!(listener = %name, "the new configuration has no such listener; its socket is closed");
    }
    Ok(Bound {
        listeners,
        stores,
        control,
        control_tls,
        sockets,
        stop_replicas_on_exit: false,
    })
}

/// Takes the lock on `config`'s state folder; refused while another instance holds it.
pub fn lock_state(config: &Config) -> Result<StateLock, ServeError> {
    Ok(StateLock::acquire(&config.control().state_dir)?)
}

/// Runs the proxy and the control API on `bound` until SIGTERM/SIGINT or a take-over by a
/// new process. `lock` is the state folder's (see [`lock_state`]); `config_path` is re-read
/// on SIGHUP. `on_started` is called once everything is bound and serving.
pub async fn serve_until_signal(
    config: Config,
    config_path: PathBuf,
    lock: StateLock,
    bound: Bound,
    on_started: impl FnOnce(&Started),
) -> Result<(), ServeError> {
    let drain = config.timeouts().drain;
    let workers = proxy_workers(&config);
    let base = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let control_addr = bound
        .control
        .local_addr()
        .map_err(|source| ServeError::Bind {
            name: "control".into(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let (store, etcd) = open_store(&config, control_addr).await?;
    let loaded = switchyard_control::ControlBuilder::new(config, store)
        .base_dir(base)
        .stop_replicas_on_exit(bound.stop_replicas_on_exit)
        .load()
        .await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut watchers = Vec::new();
    for store in &bound.stores {
        watchers.push(switchyard_certs::spawn_watcher(
            store.clone(),
            Duration::from_secs(2),
            shutdown_rx.clone(),
        ));
    }
    let stores = bound.stores;
    let remembered = health_file::load(lock.dir());
    let proxy = match workers {
        0 => spawn_proxy_with(loaded.desired(), bound.listeners, remembered).await?,
        n => {
            let workers = Workers::start(n).map_err(ServeError::Workers)?;
            spawn_proxy_on(workers, loaded.desired(), bound.listeners, remembered).await?
        }
    };
    let (saver_stop, saver_rx) = watch::channel(false);
    let saver = health_file::spawn_saver(lock.dir().to_path_buf(), proxy.clone(), saver_rx);
    let plane = ProxyPlane::new(proxy.clone(), loaded.desired().metrics_enabled())
        .and_then(|p| p.with_certificates(stores.clone()))
        .map_err(|e| ServeError::Metrics(Box::new(e)))?;
    // The control API, the state writer and the deployment drivers run on a thread of their
    // own (issue 13): a burst of control calls never takes the proxy's event loop.
    // Child processes (replicas, checks) are forked on a thread at the proxy's priority,
    // started here: the control runtime's threads are made nicer than the proxy's only once
    // their children cannot inherit it.
    let nicer = match switchyard_control::launcher::install() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the launcher thread; the control plane runs at the proxy's priority");
            false
        }
    };
    let control_rt = ControlRuntime::start(nicer).map_err(ServeError::Runtime)?;
    let (state, writer, control) = {
        let _on = control_rt.enter();
        let (state, writer) = loaded.spawn(Arc::new(plane), shutdown_rx.clone());
        let bind_err = |source| ServeError::Bind {
            name: "control".into(),
            addr: control_addr,
            source,
        };
        let listener = ControlRuntime::adopt(bound.control).map_err(bind_err)?;
        let control = match bound.control_tls {
            None => spawn_control(listener, state.clone(), shutdown_rx.clone()),
            Some(tls) => spawn_control_tls(listener, tls, state.clone(), shutdown_rx.clone())
                .map_err(bind_err)?,
        };
        (state, writer, control)
    };
    // Installed before `ready` is announced: a SIGTERM sent right after it must drain, not
    // kill the process with the default action.
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(ServeError::Signals)?;
    on_started(&Started {
        listeners: proxy.listeners().to_vec(),
        control: control_addr,
    });
    let mut offer = Offer::spawn(lock.dir(), bound.sockets);

    let takeover = loop {
        tokio::select! {
            _ = hup.recv() => {
                // systemd (Type=notify) shows the unit as reloading until READY=1 again.
                notify(notify::RELOADING);
                reload(&config_path, &state, &stores).await;
                notify(notify::READY);
            }
            _ = usr1.recv() => {
                info!("reopening the access log on SIGUSR1");
                proxy.reopen_access_log();
            }
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            Some(t) = async { match offer.as_mut() { Some(o) => o.next().await, None => None } } => break Some(t),
        }
    };
    notify(notify::STOPPING);
    state.set_ready(false);
    let answering = offer.and_then(|o| o.close(takeover.is_some()));
    if let Some(t) = takeover {
        // The new process accepts from now on; this one must not write the state folder
        // once it has released it.
        info!(drain = ?drain, "handing over to the new process; draining");
        proxy.hand_over();
        shutdown_tx.send_replace(true);
        writer.join().await;
        saver_stop.send_replace(true);
        join_logged(saver, "health saver").await;
        drop(lock);
        // The new process may have gone; this one drains either way.
        let _ = t.released.send(());
        if let Some(task) = answering {
            // Bounded: a new process that stopped reading must not keep this one alive.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                warn!("the new process did not read the hand-over answer");
            }
        }
        proxy.shutdown().await;
        if let Err(e) = control.join().await {
            warn!(error = %e, "control api ended with an error");
        }
    } else {
        info!(drain = ?drain, "shutting down");
        shutdown_tx.send_replace(true);
        proxy.shutdown().await;
        if let Err(e) = control.join().await {
            warn!(error = %e, "control api ended with an error");
        }
        writer.join().await;
        saver_stop.send_replace(true);
        join_logged(saver, "health saver").await;
        drop(lock);
    }
    if let Some(etcd) = etcd {
        etcd.leave().await;
    }
    for w in watchers {
        // A watcher that panicked must not hide a clean shutdown; it was logged already.
        let _ = w.await;
    }
    // What is left on the control thread (finished drivers' timers) is dropped with it.
    drop(control_rt);
    Ok(())
}

/// The store `[store]` names: the state folder, or etcd (watching and registered as the
/// instance whose control API is at `control`). The etcd store also comes back as itself, for [`EtcdStore::leave`] on a clean stop.
async fn open_store(
    config: &Config,
    control: SocketAddr,
) -> Result<(Arc<dyn Store>, Option<Arc<EtcdStore>>), ServeError> {
    Ok(match config.store() {
        StoreSpec::Local => (
            Arc::new(FileStore::open(&config.control().state_dir)?),
            None,
        ),
        StoreSpec::Etcd(spec) => {
            let store = EtcdStore::connect(spec, &control.to_string()).await?;
            store.start();
            info!(endpoints = ?spec.endpoints, prefix = %spec.prefix, instance = store.id(), "desired state kept in etcd");
            let store = Arc::new(store);
            (store.clone(), Some(store))
        }
    })
}

async fn join_logged(task: tokio::task::JoinHandle<()>, name: &str) {
    if let Err(e) = task.await {
        warn!(task = name, error = %e, "task ended abnormally");
    }
}

async fn reload(path: &Path, state: &ControlState, stores: &[Arc<CertStore>]) {
    info!(config = %path.display(), "reloading on SIGHUP");
    for s in stores {
        let r = s.reload();
        if !r.failed.is_empty() {
            warn!(failed = ?r.failed, "some certificates were not reloaded");
        }
    }
    match switchyard_config::load(path) {
        Err(e) => {
            state.count_reload(false);
            error!(error = %e, "configuration reload refused; the previous configuration keeps serving")
        }
        Ok(c) => match switchyard_control::reseed(state, c).await {
            Ok(generation) => {
                state.count_reload(true);
                info!(generation = ?generation, "configuration reloaded")
            }
            Err(e) => {
                state.count_reload(false);
                error!(error = %e, cause = std::error::Error::source(&e).map(tracing::field::display), "configuration reload refused; the previous configuration keeps serving")
            }
        },
    }
}
