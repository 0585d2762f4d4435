//! Loading errors and hot reload: replaced files are served to new connections while open
//! connections keep working; broken replacements keep the old certificate in service.

mod support;

use std::time::Duration;

use support::{Pki, WAIT, assert_echo, connect, default_client, leaf, openssl, serve};
use switchyard_certs::{
    CertLoadError, CertSource, CertStore, UnknownSni, load_pair, spawn_watcher,
};
use tokio::time::timeout;

const NAME: &str = "a.example.test";

#[tokio::test]
async fn reload_serves_new_pair_while_open_connection_keeps_working() {
    let pki = Pki::new();
    let old = pki.issue("a", &[NAME]);
    let (store, server) = serve(&[&old], UnknownSni::Refuse).await;
    let mut generation = store.subscribe();

    let mut open = connect(server.addr, NAME, default_client())
        .await
        .expect("connect");
    assert_eq!(leaf(&open), old.fingerprint);
    assert_echo(&mut open, b"before").await;

    let report = store.reload();
    assert_eq!((report.reloaded, report.unchanged), (0, 1), "{report:?}");
    assert!(!generation.has_changed().expect("store alive"));

    let new = pki.issue("a", &[NAME]);
    assert_ne!(new.fingerprint, old.fingerprint);
    let report = store.reload();
    assert_eq!((report.reloaded, report.unchanged), (1, 0), "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(*generation.borrow_and_update(), 1);
    assert_eq!(store.current()[0].fingerprint_sha256, new.fingerprint);

    assert_echo(&mut open, b"after reload, same connection").await;
    let fresh = connect(server.addr, NAME, default_client())
        .await
        .expect("connect");
    assert_eq!(leaf(&fresh), new.fingerprint);
    assert_echo(&mut open, b"still alive").await;
    server.shutdown().await;
}

#[tokio::test]
async fn watcher_reloads_replaced_files() {
    let pki = Pki::new();
    let old = pki.issue("a", &[NAME]);
    let (store, server) = serve(&[&old], UnknownSni::Refuse).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = spawn_watcher(store.clone(), Duration::from_millis(20), stopped);

    let mut open = connect(server.addr, NAME, default_client())
        .await
        .expect("connect");
    assert_echo(&mut open, b"before").await;

    let new = pki.issue("a", &[NAME]);
    timeout(WAIT, async {
        while store.current()[0].fingerprint_sha256 != new.fingerprint {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("watcher did not reload the replaced files");

    assert_echo(&mut open, b"after reload").await;
    let fresh = connect(server.addr, NAME, default_client())
        .await
        .expect("connect");
    assert_eq!(leaf(&fresh), new.fingerprint);

    stop.send(true).expect("watcher listens");
    timeout(WAIT, watcher)
        .await
        .expect("watcher stops on shutdown")
        .expect("watcher did not panic");
    server.shutdown().await;
}

#[tokio::test]
async fn broken_replacement_keeps_the_old_certificate() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let b = pki.issue("b", &["b.example.test"]);
    let (store, server) = serve(&[&a, &b], UnknownSni::Refuse).await;

    std::fs::write(
        &a.source.key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .expect("write garbage key");
    let b2 = pki.issue("b", &["b.example.test"]);
    let report = store.reload();

    assert_eq!((report.reloaded, report.unchanged), (1, 0), "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (path, reason) = &report.failed[0];
    assert_eq!(path, &a.source.key);
    assert!(
        reason.contains(&a.source.key.display().to_string()),
        "{reason}"
    );

    let current = store.current();
    assert_eq!(current[0].fingerprint_sha256, a.fingerprint);
    assert_eq!(current[1].fingerprint_sha256, b2.fingerprint);
    let still_old = connect(server.addr, NAME, default_client())
        .await
        .expect("connect");
    assert_eq!(leaf(&still_old), a.fingerprint);
    server.shutdown().await;
}

#[tokio::test]
async fn key_of_another_certificate_is_rejected() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);
    let b = pki.issue("b", &["b.example.test"]);
    let crossed = CertSource {
        cert: a.source.cert.clone(),
        key: b.source.key.clone(),
    };

    match load_pair(&crossed) {
        Err(CertLoadError::KeyMismatch { cert, key }) => {
            assert_eq!((cert, key), (a.source.cert.clone(), b.source.key.clone()));
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
    let err = CertStore::load(vec![a.source.clone(), crossed], UnknownSni::Refuse)
        .expect_err("store must not start with a mismatched pair");
    assert!(
        err.to_string()
            .contains(&b.source.key.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn unreadable_or_empty_files_are_named_in_the_error() {
    let pki = Pki::new();
    let a = pki.issue("a", &[NAME]);

    let missing = CertSource {
        cert: pki.path("missing.crt"),
        key: a.source.key.clone(),
    };
    let err = load_pair(&missing).expect_err("missing file");
    assert!(matches!(err, CertLoadError::Read { .. }), "{err:?}");
    assert_eq!(err.path(), Some(missing.cert.as_path()));

    std::fs::write(pki.path("empty.key"), "no pem here\n").expect("write");
    let keyless = CertSource {
        cert: a.source.cert.clone(),
        key: pki.path("empty.key"),
    };
    let err = load_pair(&keyless).expect_err("no key");
    assert!(matches!(err, CertLoadError::NoKey { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.key"), "{err}");

    let swapped = CertSource {
        cert: a.source.key.clone(),
        key: a.source.key.clone(),
    };
    let err = load_pair(&swapped).expect_err("key file is no certificate");
    assert!(
        matches!(err, CertLoadError::KeyNotCertificate { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .ends_with("holds a private key, not a certificate"),
        "{err}"
    );
}

#[tokio::test]
async fn expired_certificate_still_loads() {
    let pki = Pki::new();
    let expired = pki.issue_with(
        "old",
        &[NAME],
        &rcgen::PKCS_ECDSA_P256_SHA256,
        Some((-10 * 86_400, -86_400)),
    );
    let store = CertStore::load(vec![expired.source.clone()], UnknownSni::Refuse).expect("loads");
    let status = &store.current()[0];
    assert_eq!(status.fingerprint_sha256, expired.fingerprint);
    assert!(status.seconds_until_expiry <= -86_400, "{status:?}");
    assert_eq!(status.dns_names, vec![NAME.to_owned()]);
}

#[tokio::test]
async fn rsa_p384_ed25519_and_traditional_key_encodings_load() {
    let pki = Pki::new();
    for (stem, alg, traditional_header) in [
        (
            "rsa",
            &rcgen::PKCS_RSA_SHA256,
            Some("BEGIN RSA PRIVATE KEY"),
        ),
        (
            "p256",
            &rcgen::PKCS_ECDSA_P256_SHA256,
            Some("BEGIN EC PRIVATE KEY"),
        ),
        (
            "p384",
            &rcgen::PKCS_ECDSA_P384_SHA384,
            Some("BEGIN EC PRIVATE KEY"),
        ),
        ("ed25519", &rcgen::PKCS_ED25519, None),
    ] {
        let issued = pki.issue_with(stem, &[NAME], alg, None);
        let loaded = load_pair(&issued.source).unwrap_or_else(|e| panic!("{stem} pkcs8: {e}"));
        assert_eq!(loaded.fingerprint_sha256, issued.fingerprint);

        // PKCS#1 (RSA) and SEC1 (EC) encodings of the same key, written by openssl.
        let Some(header) = traditional_header else {
            continue;
        };
        let converted = pki.path(&format!("{stem}-traditional.key"));
        let key_in = issued.source.key.display().to_string();
        let key_out = converted.display().to_string();
        let (ok, output) =
            openssl(&["pkey", "-in", &key_in, "-traditional", "-out", &key_out]).await;
        assert!(ok, "openssl pkey: {output}");
        let pem = std::fs::read_to_string(&converted).expect("read converted key");
        assert!(pem.contains(header), "{stem}: {pem}");
        let source = CertSource {
            cert: issued.source.cert.clone(),
            key: converted,
        };
        let loaded = load_pair(&source).unwrap_or_else(|e| panic!("{stem} traditional: {e}"));
        assert_eq!(loaded.fingerprint_sha256, issued.fingerprint);
    }
}

#[tokio::test]
async fn file_notifications_reload_without_waiting_for_the_poll() {
    let pki = Pki::new();
    let old = pki.issue("a", &[NAME]);
    let (store, _server) = serve(&[&old], UnknownSni::Refuse).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The poll interval is far beyond the failure bound: after the watcher's first poll (its
    // first loop turn, before it waits on anything), only a notification can reload in time.
    let watcher = spawn_watcher(store.clone(), Duration::from_secs(3600), stopped);
    let mut generation = store.subscribe();
    generation.borrow_and_update();

    let first = pki.issue("a", &[NAME]);
    timeout(Duration::from_secs(10), generation.changed())
        .await
        .expect("the first replacement was reloaded")
        .expect("store alive");
    assert_eq!(store.current()[0].fingerprint_sha256, first.fingerprint);

    let second = pki.issue("a", &[NAME]);
    timeout(Duration::from_secs(10), generation.changed())
        .await
        .expect("a file notification triggered the second reload")
        .expect("store alive");
    assert_eq!(store.current()[0].fingerprint_sha256, second.fingerprint);
    stop.send_replace(true);
    watcher.await.expect("watcher task");
}
