//! Protocol policy of the server config: TLS versions, ALPN and session resumption.

mod support;

use rustls::{HandshakeKind, ProtocolVersion, version};
use support::{Outcome, Pki, assert_echo, client_config, connect, openssl, serve};
use switchyard_certs::UnknownSni;

const NAME: &str = "a.example.test";

#[tokio::test]
async fn tls12_only_client_completes_handshake() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let (_, mut server) = serve(&[&a], UnknownSni::Refuse).await;

    let mut stream = connect(
        server.addr,
        NAME,
        client_config(&[b"h2"], &[&version::TLS12]),
    )
    .await
    .expect("tls 1.2 handshake");
    assert_eq!(
        stream.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_2)
    );
    assert_echo(&mut stream, b"over tls 1.2").await;
    assert!(matches!(
        server.next_outcome().await,
        Outcome::Accepted { .. }
    ));

    let modern = connect(
        server.addr,
        NAME,
        client_config(&[b"h2"], rustls::DEFAULT_VERSIONS),
    )
    .await
    .expect("default handshake");
    assert_eq!(
        modern.get_ref().1.protocol_version(),
        Some(ProtocolVersion::TLSv1_3)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn tls11_client_is_refused() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let (_, mut server) = serve(&[&a], UnknownSni::Refuse).await;
    let target = server.addr.to_string();
    // SECLEVEL=0 lets OpenSSL 3 actually send a TLS 1.1 ClientHello.
    let client = |version| {
        [
            "s_client",
            version,
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-servername",
            NAME,
            "-connect",
        ]
    };

    // Control: the same openssl invocation succeeds with TLS 1.2.
    let mut args = client("-tls1_2").to_vec();
    args.push(&target);
    let (ok, output) = openssl(&args).await;
    assert!(ok, "openssl tls 1.2 handshake failed:\n{output}");
    assert!(matches!(
        server.next_outcome().await,
        Outcome::Accepted { .. }
    ));

    let mut args = client("-tls1_1").to_vec();
    args.push(&target);
    let (ok, output) = openssl(&args).await;
    assert!(!ok, "tls 1.1 handshake must fail:\n{output}");
    match server.next_outcome().await {
        // rustls rejects the pre-1.2 ClientHello as incompatible (it lacks TLS 1.2 offers such
        // as signature_algorithms), not for an unrelated reason like a missing certificate.
        Outcome::Failed(reason) => assert!(
            reason.contains("peer is incompatible"),
            "server refused for another reason: {reason}"
        ),
        accepted => panic!("server accepted tls 1.1: {accepted:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn alpn_negotiates_h2_when_offered() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let (_, server) = serve(&[&a], UnknownSni::Refuse).await;

    for versions in [rustls::DEFAULT_VERSIONS, &[&version::TLS12]] {
        let stream = connect(
            server.addr,
            NAME,
            client_config(&[b"h2", b"http/1.1"], versions),
        )
        .await
        .expect("handshake");
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn alpn_negotiates_http11_when_only_it_is_offered() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let (_, server) = serve(&[&a], UnknownSni::Refuse).await;

    let stream = connect(
        server.addr,
        NAME,
        client_config(&[b"http/1.1"], rustls::DEFAULT_VERSIONS),
    )
    .await
    .expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    server.shutdown().await;
}

#[tokio::test]
async fn second_connection_resumes_the_session() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let (_, server) = serve(&[&a], UnknownSni::Refuse).await;

    for versions in [rustls::DEFAULT_VERSIONS, &[&version::TLS12]] {
        // One client config = one client session cache.
        let config = client_config(&[b"h2"], versions);
        let mut first = connect(server.addr, NAME, config.clone())
            .await
            .expect("first handshake");
        assert_eq!(
            first.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // Reading the echo also processes the TLS 1.3 tickets sent after the handshake.
        assert_echo(&mut first, b"ticket please").await;

        let second = connect(server.addr, NAME, config)
            .await
            .expect("second handshake");
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "resumption with {versions:?}"
        );
    }
    server.shutdown().await;
}
