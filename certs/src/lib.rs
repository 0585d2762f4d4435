//! Certificates for Switchyard: PEM chains and private keys, the SNI certificate store that
//! rustls asks for a certificate on every handshake, hot reload of the configured files, the TLS
//! server and upstream client configurations, self-signed generation and `certs inspect`.
//!
//! Invariants: the store always serves a complete, checked set of pairs (a broken file never
//! replaces a working certificate), and the handshake path only reads one `ArcSwap` snapshot.
//! This crate must not know about listeners, routes or the control plane: it hands out
//! `rustls` configurations and status, nothing more.

mod generate;
mod inspect;
mod load;
mod server;
mod store;
mod upstream;
mod watch;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use generate::{CertGenError, KeyType, ParseKeyTypeError, SelfSigned, self_signed};
pub use inspect::{CertInfo, inspect};
pub use load::{CertLoadError, CertSource, LoadedCert, fingerprint_sha256, load_pair};
pub use server::{TlsConfigError, server_config};
pub use store::{CertStatus, CertStore, ReloadReport, UnknownSni};
pub use upstream::{UpstreamTls, upstream_client_config};
pub use watch::spawn_watcher;

/// The crypto provider for keys and configurations: the process default when `main` installed
/// one, else rustls' aws-lc-rs provider (so library users and tests need no global setup).
fn crypto_provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Formats an error with its whole `source` chain, `outer: inner: innermost`, for logs and
/// reports where only a string travels.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
