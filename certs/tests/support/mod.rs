//! Fixtures shared by the certs integration tests: a per-test CA issuing certificates into a
//! temporary directory, a TLS echo server on 127.0.0.1:0 that reports each handshake, a client
//! that accepts any certificate (tests identify the served leaf by fingerprint), and openssl.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SignatureAlgorithm,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme, SupportedProtocolVersion,
};
use switchyard_certs::{CertSource, CertStore, UnknownSni, fingerprint_sha256, server_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Failure bound for every wait in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A test CA plus the temporary directory its certificates are written to.
pub(crate) struct Pki {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub(crate) dir: tempfile::TempDir,
}

/// A certificate written to disk: its files and the fingerprint of its leaf.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub(crate) source: CertSource,
    pub(crate) fingerprint: String,
}

impl Pki {
    pub(crate) fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "switchyard test ca");
        params.distinguished_name = dn;
        let key = KeyPair::generate().expect("ca key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("ca cert");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).expect("write ca");
        Self { issuer, dir }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub(crate) fn ca_path(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// Issues an ECDSA P-256 leaf for `names`, written to `STEM.crt` / `STEM.key`.
    pub(crate) fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        self.issue_with(stem, names, &rcgen::PKCS_ECDSA_P256_SHA256, None)
    }

    /// Issues a leaf with the given key algorithm and, optionally, validity window (seconds
    /// relative to now), overwriting `STEM.crt` / `STEM.key`.
    pub(crate) fn issue_with(
        &self,
        stem: &str,
        names: &[&str],
        alg: &'static SignatureAlgorithm,
        validity: Option<(i64, i64)>,
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        let now = time::OffsetDateTime::now_utc();
        let (from, to) = validity.unwrap_or((-60, 30 * 86_400));
        params.not_before = now + time::Duration::seconds(from);
        params.not_after = now + time::Duration::seconds(to);
        let key = KeyPair::generate_for(alg).expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let source = write_pair(self.dir.path(), stem, &cert.pem(), &key.serialize_pem());
        Issued {
            source,
            fingerprint: fingerprint_sha256(cert.der()),
        }
    }
}

/// Writes a self-signed ECDSA certificate for `names` (trusted by no test CA).
pub(crate) fn write_self_signed(dir: &Path, stem: &str, names: &[&str]) -> Issued {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(names)
        .expect("params")
        .self_signed(&key)
        .expect("self sign");
    Issued {
        source: write_pair(dir, stem, &cert.pem(), &key.serialize_pem()),
        fingerprint: fingerprint_sha256(cert.der()),
    }
}

pub(crate) fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> CertSource {
    let source = CertSource {
        cert: dir.join(format!("{stem}.crt")),
        key: dir.join(format!("{stem}.key")),
    };
    std::fs::write(&source.cert, cert_pem).expect("write cert");
    std::fs::write(&source.key, key_pem).expect("write key");
    source
}

/// Loads `pairs` into a store and serves it with the production server config.
pub(crate) async fn serve(pairs: &[&Issued], unknown: UnknownSni) -> (Arc<CertStore>, TlsServer) {
    let store = CertStore::load(pairs.iter().map(|p| p.source.clone()).collect(), unknown)
        .expect("store loads");
    let config = server_config(Arc::clone(&store)).expect("server config");
    (store, TlsServer::start(config).await)
}

/// What the server saw of one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted {
        sni: Option<String>,
        client_leaf: Option<String>,
    },
    Failed(String),
}

/// A TLS echo server on 127.0.0.1:0.
pub(crate) struct TlsServer {
    pub(crate) addr: SocketAddr,
    accept: JoinHandle<()>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
}

impl TlsServer {
    pub(crate) async fn start(config: Arc<ServerConfig>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let acceptor = TlsAcceptor::from(config);
        let (tx, outcomes) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            let conn = tls.get_ref().1;
                            let outcome = Outcome::Accepted {
                                sni: conn.server_name().map(str::to_owned),
                                client_leaf: conn
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| fingerprint_sha256(c.as_ref())),
                            };
                            // The test may have stopped listening; nothing to do then.
                            let _ = tx.send(outcome);
                            echo(tls).await;
                        }
                        Err(err) => {
                            // As above: a closed receiver just means nobody asks.
                            let _ = tx.send(Outcome::Failed(err.to_string()));
                        }
                    }
                });
            }
        });
        Self {
            addr,
            accept,
            outcomes,
        }
    }

    /// The next handshake the server finished or failed.
    pub(crate) async fn next_outcome(&mut self) -> Outcome {
        timeout(WAIT, self.outcomes.recv())
            .await
            .expect("server reported no handshake in time")
            .expect("server task ended")
    }

    pub(crate) async fn shutdown(self) {
        self.accept.abort();
        if let Err(err) = self.accept.await {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
        }
    }
}

async fn echo(mut tls: tokio_rustls::server::TlsStream<TcpStream>) {
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A client config that accepts any server certificate, with the given ALPN and versions.
pub(crate) fn client_config(
    alpn: &[&[u8]],
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A TLS 1.2 + 1.3 client offering `http/1.1`.
pub(crate) fn default_client() -> Arc<ClientConfig> {
    client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS)
}

/// Connects to `addr` with `name` as SNI (an IP address sends no SNI).
pub(crate) async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let server_name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name.to_owned()).expect("valid dns name"),
    };
    let tcp = TcpStream::connect(addr).await?;
    timeout(WAIT, TlsConnector::from(config).connect(server_name, tcp))
        .await
        .expect("handshake did not finish in time")
}

/// Fingerprint of the leaf the server presented.
pub(crate) fn leaf(stream: &TlsStream<TcpStream>) -> String {
    let certs = stream.get_ref().1.peer_certificates().expect("peer certs");
    fingerprint_sha256(certs.first().expect("leaf").as_ref())
}

/// Sends `msg` and asserts it comes back.
pub(crate) async fn assert_echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) {
    stream.write_all(msg).await.expect("write");
    stream.flush().await.expect("flush");
    let mut back = vec![0u8; msg.len()];
    timeout(WAIT, stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("read echo");
    assert_eq!(back, msg);
}

/// Runs `openssl ARGS` with no stdin; returns whether it exited 0 and its combined output.
pub(crate) async fn openssl(args: &[&str]) -> (bool, String) {
    let output = timeout(
        WAIT,
        tokio::process::Command::new("openssl")
            .args(args)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("openssl finished in time")
    .expect("openssl must be installed (it is part of the build image)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Accepts any server certificate; the tests check which one was served by fingerprint.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
