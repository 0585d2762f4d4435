//! Binding listeners (with TLS from the `certs` crate), starting the proxy and the control
//! plane, and the process lifecycle.
//!
//! Start-up order: the control plane loads the saved desired state and merges it with the file
//! (runtime changes win), the proxy starts on the merged state, then the control API starts
//! driving it. `SIGHUP` re-merges the file and reloads certificates (a bad file keeps the old
//! state serving); `SIGTERM`/`SIGINT` stop accepting and drain.

use crate::notify::{self, notify};
use crate::plane::ProxyPlane;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard_certs::{CertSource, CertStore};
use switchyard_config::{Config, ListenerTls, UnknownSni};
use switchyard_control::{ControlState, spawn_control, spawn_control_tls};
use switchyard_proxy::{BoundListener, ListenerInfo, spawn_proxy};
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
    /// The proxy refused the configuration.
    #[error("cannot start the proxy")]
    Proxy(#[from] switchyard_proxy::ApplyError),
    /// The control plane could not load its state.
    #[error("cannot load the control plane's state")]
    Control(#[from] switchyard_control::BuildError),
    /// The control state directory could not be opened.
    #[error("cannot open the state directory")]
    Store(#[from] switchyard_control::StoreError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] std::io::Error),
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
    // The control listener's policy (no open API off loopback) is a configuration rule:
    // `switchyard_config::parse` refused the file already, so `check` says the same.
    let mut listeners = Vec::new();
    let mut stores = Vec::new();
    for l in config.listeners() {
        let tls = match l.tls() {
            Some(t) => {
                let (store, cfg) = cert_store(l.name().as_str(), t)?;
                stores.push(store);
                Some(cfg)
            }
            None => None,
        };
        let listener = TcpListener::bind(l.bind())
            .await
            .map_err(|source| ServeError::Bind {
                name: l.name().to_string(),
                addr: l.bind(),
                source,
            })?;
        listeners.push(BoundListener {
            name: l.name().clone(),
            listener,
            tls,
        });
    }
    let control_tls = match &config.control().tls {
        Some(t) => {
            let (store, cfg) = cert_store("control", t)?;
            stores.push(store);
            Some(cfg)
        }
        None => None,
    };
    let addr = config.control().listen;
    let control = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            name: "control".into(),
            addr,
            source,
        })?;
    Ok(Bound {
        listeners,
        stores,
        control,
        control_tls,
    })
}

/// Runs the proxy and the control API on `bound` until SIGTERM/SIGINT. `config_path` is
/// re-read on SIGHUP. `on_started` is called once everything is bound and serving.
pub async fn serve_until_signal(
    config: Config,
    config_path: PathBuf,
    bound: Bound,
    on_started: impl FnOnce(&Started),
) -> Result<(), ServeError> {
    let drain = config.timeouts().drain;
    let base = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let store = Arc::new(switchyard_control::FileStore::open(
        &config.control().state_dir,
    )?);
    let loaded = switchyard_control::ControlBuilder::new(config, store)
        .base_dir(base)
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
    let proxy = spawn_proxy(loaded.desired(), bound.listeners).await?;
    let (state, writer) = loaded.spawn(Arc::new(ProxyPlane(proxy.clone())), shutdown_rx.clone());
    let control_addr = bound
        .control
        .local_addr()
        .map_err(|source| ServeError::Bind {
            name: "control".into(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    let control = match bound.control_tls {
        None => spawn_control(bound.control, state.clone(), shutdown_rx.clone()),
        Some(tls) => spawn_control_tls(bound.control, tls, state.clone(), shutdown_rx.clone())
            .map_err(|source| ServeError::Bind {
                name: "control".into(),
                addr: control_addr,
                source,
            })?,
    };
    on_started(&Started {
        listeners: proxy.listeners().to_vec(),
        control: control_addr,
    });

    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                // systemd (Type=notify) shows the unit as reloading until READY=1 again.
                notify(notify::RELOADING);
                reload(&config_path, &state, &stores).await;
                notify(notify::READY);
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(notify::STOPPING);
    info!(drain = ?drain, "shutting down");
    state.set_ready(false);
    shutdown_tx.send_replace(true);
    proxy.shutdown().await;
    if let Err(e) = control.join().await {
        warn!(error = %e, "control api ended with an error");
    }
    writer.join().await;
    for w in watchers {
        // A watcher that panicked must not hide a clean shutdown; it was logged already.
        let _ = w.await;
    }
    Ok(())
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
            error!(error = %e, "configuration reload refused; the previous configuration keeps serving")
        }
        Ok(c) => match switchyard_control::reseed(state, c).await {
            Ok(generation) => info!(generation = ?generation, "configuration reloaded"),
            Err(e) => {
                error!(error = %e, cause = std::error::Error::source(&e).map(tracing::field::display), "configuration reload refused; the previous configuration keeps serving")
            }
        },
    }
}
