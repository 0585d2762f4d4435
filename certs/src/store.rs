//! The SNI certificate store: rustls asks it for a certificate on every handshake.
//!
//! Reads are lock-free: one `ArcSwap` holds an immutable [`table::Table`] (exact names,
//! wildcard suffixes, default = first configured pair). Reloads re-read every pair off the
//! handshake path, keep the old pair for any file that fails, and publish the result with a
//! single store, so a handshake never sees half a reload. Reloads are serialised by a mutex
//! that the handshake path never touches.

mod table;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tracing::{debug, error, info};

use crate::load::{CertLoadError, CertSource, load_pair, seconds_until};
use table::Table;

/// What to do with a handshake whose SNI matches no certificate, or that carries no SNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSni {
    /// Serve the default (first configured) certificate.
    #[default]
    ServeDefault,
    /// Abort the handshake.
    Refuse,
}

/// Outcome of one [`CertStore::reload`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Pairs whose chain changed and are now served.
    pub reloaded: usize,
    /// Pairs that loaded with the same chain as before.
    pub unchanged: usize,
    /// Pairs that failed: the file at fault and the error with its causes. Their previous
    /// certificate stays in service.
    pub failed: Vec<(PathBuf, String)>,
}

/// Status of one configured pair, for metrics and the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertStatus {
    /// Certificate file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
    /// SAN DNS names served by this pair.
    pub dns_names: Vec<String>,
    /// SHA-256 fingerprint of the leaf in service.
    pub fingerprint_sha256: String,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// Seconds until `not_after`; negative if expired.
    pub seconds_until_expiry: i64,
}

/// SNI certificate store; implements [`rustls::server::ResolvesServerCert`].
pub struct CertStore {
    sources: Vec<CertSource>,
    unknown: UnknownSni,
    table: ArcSwap<Table>,
    /// Serialises reloads so two cannot interleave their read-modify-store.
    reload_lock: Mutex<()>,
    generation: watch::Sender<u64>,
}

impl CertStore {
    /// Loads every pair; all must load. The first pair is the default certificate.
    pub fn load(sources: Vec<CertSource>, unknown: UnknownSni) -> Result<Arc<Self>, CertLoadError> {
        if sources.is_empty() {
            return Err(CertLoadError::NoSources);
        }
        let certs = sources
            .iter()
            .map(|src| load_pair(src).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        for cert in &certs {
            info!(
                cert = %cert.source.cert.display(),
                names = ?cert.dns_names,
                fingerprint = %cert.fingerprint_sha256,
                "certificate loaded"
            );
        }
        Ok(Arc::new(Self {
            sources,
            unknown,
            table: ArcSwap::from_pointee(Table::build(certs)),
            reload_lock: Mutex::new(()),
            generation: watch::Sender::new(0),
        }))
    }

    /// Re-reads every pair. Changed pairs are swapped in together with one atomic store; a
    /// broken pair keeps its previous certificate in service and is logged and reported with
    /// the file at fault.
    pub fn reload(&self) -> ReloadReport {
        // A poisoned lock only means an earlier reload panicked; the table itself is immutable
        // and still consistent, so carry on.
        let _serialised = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = self.table.load_full();
        let mut report = ReloadReport::default();
        let mut certs = Vec::with_capacity(self.sources.len());
        for (src, previous) in self.sources.iter().zip(&old.certs) {
            match load_pair(src) {
                Ok(fresh) if fresh.certified.cert == previous.certified.cert => {
                    report.unchanged += 1;
                    certs.push(Arc::clone(previous));
                }
                Ok(fresh) => {
                    info!(
                        cert = %src.cert.display(),
                        names = ?fresh.dns_names,
                        fingerprint = %fresh.fingerprint_sha256,
                        previous = %previous.fingerprint_sha256,
                        "certificate reloaded"
                    );
                    report.reloaded += 1;
                    certs.push(Arc::new(fresh));
                }
                Err(err) => {
                    let chain = crate::error_chain(&err);
                    let path = err.path().unwrap_or(&src.cert).to_path_buf();
                    error!(
                        file = %path.display(),
                        error = %chain,
                        "certificate reload failed, previous certificate stays in service"
                    );
                    report.failed.push((path, chain));
                    certs.push(Arc::clone(previous));
                }
            }
        }
        if report.reloaded > 0 {
            self.table.store(Arc::new(Table::build(certs)));
            self.generation.send_modify(|generation| *generation += 1);
        }
        report
    }

    /// Per configured pair, what is in service now.
    pub fn current(&self) -> Vec<CertStatus> {
        self.table
            .load()
            .certs
            .iter()
            .map(|cert| CertStatus {
                cert: cert.source.cert.clone(),
                key: cert.source.key.clone(),
                dns_names: cert.dns_names.clone(),
                fingerprint_sha256: cert.fingerprint_sha256.clone(),
                not_after: cert.not_after,
                seconds_until_expiry: seconds_until(cert.not_after),
            })
            .collect()
    }

    /// The configured pairs, in order.
    pub fn sources(&self) -> &[CertSource] {
        &self.sources
    }

    /// The certificate generation: 0 after `load`, +1 for every reload that swapped anything
    /// in. Await `changed()`/`wait_for` to learn of a swap.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let server_name = client_hello.server_name();
        if let Some(cert) = server_name.and_then(|name| table.lookup(name)) {
            return Some(Arc::clone(&cert.certified));
        }
        match self.unknown {
            UnknownSni::ServeDefault => table.default_cert().map(|c| Arc::clone(&c.certified)),
            UnknownSni::Refuse => {
                debug!(
                    sni = server_name.unwrap_or("(none)"),
                    "no certificate for server name, refusing handshake"
                );
                None
            }
        }
    }
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("sources", &self.sources)
            .field("unknown", &self.unknown)
            .field("generation", &*self.generation.borrow())
            .finish_non_exhaustive()
    }
}
