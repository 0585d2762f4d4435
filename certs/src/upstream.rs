//! TLS client configuration for `https://` endpoints: which roots to trust (webpki roots, or
//! only a configured CA bundle), an optional client certificate for mTLS, and the explicit,
//! loudly logged opt-out of verification.
//!
//! ALPN is `http/1.1` only: the forwarder speaks HTTP/1.1 to endpoints. This module builds a
//! configuration; it never connects.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WantsClientCert};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore, SignatureScheme, version,
};
use tracing::warn;

use crate::load::{CertSource, load_pair, read_chain};
use crate::server::TlsConfigError;

/// Upstream (client) TLS options of a stack whose endpoints are `https://`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM bundle of the only CAs to trust; `None` trusts the webpki roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key presented to endpoints (mTLS).
    pub client_cert: Option<CertSource>,
    /// Accept any server certificate. For tests and broken environments only.
    pub insecure_skip_verify: bool,
}

/// Builds the client configuration for connections to upstream endpoints.
pub fn upstream_client_config(opts: &UpstreamTls) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let provider = crate::crypto_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .map_err(TlsConfigError::Versions)?;
    let builder: ConfigBuilder<ClientConfig, WantsClientCert> = if opts.insecure_skip_verify {
        warn!("upstream tls certificate verification is disabled (insecure_skip_verify)");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { provider }))
    } else {
        builder.with_root_certificates(roots(opts)?)
    };
    let mut config = match &opts.client_cert {
        Some(src) => {
            let loaded = load_pair(src).map_err(TlsConfigError::ClientCert)?;
            builder.with_client_cert_resolver(Arc::new(ClientCert(loaded.certified)))
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots(opts: &UpstreamTls) -> Result<RootCertStore, TlsConfigError> {
    let Some(path) = &opts.ca else {
        return Ok(RootCertStore::from_iter(
            webpki_roots::TLS_SERVER_ROOTS.iter().cloned(),
        ));
    };
    let bundle = read_chain(path).map_err(TlsConfigError::Ca)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(bundle);
    if ignored > 0 {
        warn!(ca = %path.display(), ignored, "ignoring unparsable certificates in ca bundle");
    }
    if added == 0 {
        return Err(TlsConfigError::NoUsableCa { path: path.clone() });
    }
    Ok(roots)
}

/// Always presents the configured client certificate.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Trusts any certificate chain for any name. Handshake signatures are still checked against
/// the presented certificate, which keeps the handshake itself sound without proving identity.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
