//! SNI selection over real TLS handshakes: exact names, wildcards, unknown and missing SNI.

mod support;

use support::{Outcome, Pki, connect, default_client, leaf, serve};
use switchyard_certs::UnknownSni;

#[tokio::test]
async fn sni_selects_the_certificate_naming_the_host() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.example.test"]);
    let b = pki.issue("b", &["b.example.test", "www.b.example.test"]);
    let (_, mut server) = serve(&[&a, &b], UnknownSni::ServeDefault).await;

    for (name, want) in [
        ("b.example.test", &b),
        ("a.example.test", &a),
        ("www.b.example.test", &b),
        ("B.Example.TEST", &b),
    ] {
        let stream = connect(server.addr, name, default_client())
            .await
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(
            leaf(&stream),
            want.fingerprint,
            "certificate served for {name}"
        );
        assert!(matches!(
            server.next_outcome().await,
            Outcome::Accepted { .. }
        ));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn wildcard_serves_exactly_one_extra_label() {
    let pki = Pki::new();
    let other = pki.issue("other", &["other.test"]);
    let wild = pki.issue("wild", &["*.example.test"]);
    let (_, mut server) = serve(&[&other, &wild], UnknownSni::Refuse).await;

    for name in ["a.example.test", "WWW.example.test"] {
        let stream = connect(server.addr, name, default_client())
            .await
            .unwrap_or_else(|e| panic!("handshake for {name}: {e}"));
        assert_eq!(
            leaf(&stream),
            wild.fingerprint,
            "certificate served for {name}"
        );
        assert!(matches!(
            server.next_outcome().await,
            Outcome::Accepted { .. }
        ));
    }
    for name in ["example.test", "a.b.example.test"] {
        let refused = connect(server.addr, name, default_client()).await;
        assert!(refused.is_err(), "{name} must not match *.example.test");
        assert!(matches!(server.next_outcome().await, Outcome::Failed(_)));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_sni_is_served_the_default_certificate() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.example.test"]);
    let b = pki.issue("b", &["b.example.test"]);
    // Default is the first configured pair, not the first by name.
    let (_, mut server) = serve(&[&b, &a], UnknownSni::ServeDefault).await;

    let stream = connect(server.addr, "unknown.example.test", default_client())
        .await
        .expect("unknown name is served the default");
    assert_eq!(leaf(&stream), b.fingerprint);
    assert_eq!(
        server.next_outcome().await,
        Outcome::Accepted {
            sni: Some("unknown.example.test".to_owned()),
            client_leaf: None,
        }
    );
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_sni_is_refused_when_configured() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.example.test"]);
    let (_, mut server) = serve(&[&a], UnknownSni::Refuse).await;

    let refused = connect(server.addr, "unknown.example.test", default_client()).await;
    assert!(refused.is_err(), "unknown name must be refused");
    assert!(matches!(server.next_outcome().await, Outcome::Failed(_)));

    let no_sni = connect(server.addr, "127.0.0.1", default_client()).await;
    assert!(no_sni.is_err(), "a client without sni must be refused too");
    assert!(matches!(server.next_outcome().await, Outcome::Failed(_)));

    let known = connect(server.addr, "a.example.test", default_client())
        .await
        .expect("a known name is still served");
    assert_eq!(leaf(&known), a.fingerprint);
    server.shutdown().await;
}

#[tokio::test]
async fn client_without_sni_gets_the_default_certificate() {
    let pki = Pki::new();
    let a = pki.issue("a", &["a.example.test"]);
    let b = pki.issue("b", &["b.example.test"]);
    let (_, mut server) = serve(&[&b, &a], UnknownSni::ServeDefault).await;

    let stream = connect(server.addr, "127.0.0.1", default_client())
        .await
        .expect("connect by ip");
    assert_eq!(leaf(&stream), b.fingerprint);
    assert_eq!(
        server.next_outcome().await,
        Outcome::Accepted {
            sni: None,
            client_leaf: None,
        }
    );
    server.shutdown().await;
}
