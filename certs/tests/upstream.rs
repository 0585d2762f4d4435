//! Upstream client TLS: trust roots, verification opt-out, client certificates and ALPN.

mod support;

use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::{Outcome, Pki, TlsServer, connect, leaf, provider, serve, write_self_signed};
use switchyard_certs::{
    CertStore, TlsConfigError, UnknownSni, UpstreamTls, upstream_client_config,
};

fn invalid_certificate(err: &std::io::Error) -> Option<CertificateError> {
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(cert_err) => Some(cert_err.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn ca_bundle_verifies_a_server_it_signed() {
    let pki = Pki::new();
    let server_cert = pki.issue("localhost", &["localhost"]);
    let (_, server) = serve(&[&server_cert], UnknownSni::ServeDefault).await;

    let config = upstream_client_config(&UpstreamTls {
        ca: Some(pki.ca_path()),
        ..UpstreamTls::default()
    })
    .expect("client config");
    let stream = connect(server.addr, "localhost", config.clone())
        .await
        .expect("verified handshake");
    assert_eq!(leaf(&stream), server_cert.fingerprint);
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let err = connect(server.addr, "other.test", config)
        .await
        .expect_err("name not in the certificate");
    assert!(
        matches!(
            invalid_certificate(&err),
            Some(CertificateError::NotValidForNameContext { .. })
        ),
        "{err:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_self_signed_server_is_rejected() {
    let pki = Pki::new();
    let stranger = write_self_signed(pki.dir.path(), "stranger", &["localhost"]);
    let (_, server) = serve(&[&stranger], UnknownSni::Refuse).await;

    for ca in [Some(pki.ca_path()), None] {
        let config = upstream_client_config(&UpstreamTls {
            ca: ca.clone(),
            ..UpstreamTls::default()
        })
        .expect("client config");
        let err = connect(server.addr, "localhost", config)
            .await
            .expect_err("unknown issuer must be rejected");
        assert_eq!(
            invalid_certificate(&err),
            Some(CertificateError::UnknownIssuer),
            "ca {ca:?}: {err:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn webpki_roots_do_not_trust_a_private_ca() {
    let pki = Pki::new();
    let server_cert = pki.issue("localhost", &["localhost"]);
    let (_, server) = serve(&[&server_cert], UnknownSni::Refuse).await;

    let config = upstream_client_config(&UpstreamTls::default()).expect("client config");
    let err = connect(server.addr, "localhost", config)
        .await
        .expect_err("private ca is not a webpki root");
    assert_eq!(
        invalid_certificate(&err),
        Some(CertificateError::UnknownIssuer)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_server() {
    let pki = Pki::new();
    let stranger = write_self_signed(pki.dir.path(), "stranger", &["localhost"]);
    let (_, server) = serve(&[&stranger], UnknownSni::ServeDefault).await;

    let config = upstream_client_config(&UpstreamTls {
        ca: Some(pki.ca_path()),
        insecure_skip_verify: true,
        ..UpstreamTls::default()
    })
    .expect("client config");
    let stream = connect(server.addr, "wrong-name.test", config)
        .await
        .expect("anything is accepted");
    assert_eq!(leaf(&stream), stranger.fingerprint);
    server.shutdown().await;
}

#[tokio::test]
async fn client_certificate_is_presented_for_mtls() {
    let pki = Pki::new();
    let server_cert = pki.issue("localhost", &["localhost"]);
    let client_cert = pki.issue("client", &["client.example.test"]);
    let store =
        CertStore::load(vec![server_cert.source.clone()], UnknownSni::Refuse).expect("store");

    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(pki.ca_path()).expect("ca pem");
    roots.add(ca).expect("ca root");
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .expect("client verifier");
    let server_config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(store);
    let mut server = TlsServer::start(Arc::new(server_config)).await;

    let with_cert = upstream_client_config(&UpstreamTls {
        ca: Some(pki.ca_path()),
        client_cert: Some(client_cert.source.clone()),
        insecure_skip_verify: false,
    })
    .expect("client config");
    let _stream = connect(server.addr, "localhost", with_cert)
        .await
        .expect("mtls handshake");
    assert_eq!(
        server.next_outcome().await,
        Outcome::Accepted {
            sni: Some("localhost".to_owned()),
            client_leaf: Some(client_cert.fingerprint.clone()),
        }
    );

    let without_cert = upstream_client_config(&UpstreamTls {
        ca: Some(pki.ca_path()),
        ..UpstreamTls::default()
    })
    .expect("client config");
    // With TLS 1.3 the client may finish before the server rejects it; the server decides.
    let _ = connect(server.addr, "localhost", without_cert).await;
    assert!(matches!(server.next_outcome().await, Outcome::Failed(_)));
    server.shutdown().await;
}

#[test]
fn ca_bundle_without_certificates_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty-ca.pem");
    std::fs::write(&path, "nothing here\n").expect("write");
    let err = upstream_client_config(&UpstreamTls {
        ca: Some(path.clone()),
        ..UpstreamTls::default()
    })
    .expect_err("empty bundle");
    assert!(matches!(err, TlsConfigError::Ca(_)), "{err:?}");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&e.to_string());
        source = e.source();
    }
    assert!(chain.contains("empty-ca.pem"), "{chain}");
}
