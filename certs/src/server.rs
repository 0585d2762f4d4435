//! The TLS server configuration for public listeners: TLS 1.2 and 1.3 only, rustls' default
//! safe cipher suites, ALPN `h2` then `http/1.1`, session resumption by both a stateful cache and
//! stateless tickets, and the [`CertStore`] as certificate resolver.
//!
//! Also home of [`TlsConfigError`], shared with the upstream client configuration. This module
//! builds configurations only; it never accepts connections.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::ServerSessionMemoryCache;
use rustls::{ServerConfig, version};

use crate::load::CertLoadError;
use crate::store::CertStore;

/// Sessions kept by the stateful resumption cache (TLS 1.2 session ids, TLS 1.3 fallback).
const SESSION_CACHE_SIZE: usize = 10_240;

/// ALPN protocols offered by the server, most preferred first.
const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a rustls server or client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The crypto provider cannot do TLS 1.2 and 1.3 with its suites.
    #[error("crypto provider does not support tls 1.2 and 1.3")]
    Versions(#[source] rustls::Error),
    /// The session ticket key could not be created.
    #[error("cannot create session ticketer")]
    Ticketer(#[source] rustls::Error),
    /// The CA bundle could not be read or parsed.
    #[error("cannot load ca bundle")]
    Ca(#[source] CertLoadError),
    /// The CA bundle holds no certificate usable as a trust anchor.
    #[error("no usable ca certificate in {}", path.display())]
    NoUsableCa {
        /// The CA bundle file.
        path: PathBuf,
    },
    /// The client certificate pair could not be loaded.
    #[error("cannot load client certificate")]
    ClientCert(#[source] CertLoadError),
}

/// Builds the server configuration for TLS listeners, resolving certificates through `store`.
pub fn server_config(store: Arc<CertStore>) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut config = ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(TlsConfigError::Versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_SIZE);
    config.ticketer =
        rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsConfigError::Ticketer)?;
    Ok(Arc::new(config))
}
