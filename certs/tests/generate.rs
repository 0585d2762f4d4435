//! Self-signed generation and `certs inspect`, cross-checked with openssl.

mod support;

use std::os::unix::fs::PermissionsExt as _;

use support::{connect, default_client, leaf, openssl, serve};
use switchyard_certs::{
    CertGenError, CertSource, KeyType, UnknownSni, inspect, load_pair, self_signed,
};

fn names() -> Vec<String> {
    ["gen.example.test", "*.gen.example.test", "127.0.0.1"]
        .map(str::to_owned)
        .to_vec()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn self_signed_writes_usable_pairs_for_every_key_type() {
    for (key_type, key_name) in [
        (KeyType::EcdsaP256, "ECDSA P-256"),
        (KeyType::Rsa2048, "RSA 2048"),
        (KeyType::Ed25519, "Ed25519"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let generated = self_signed(&names(), 30, key_type, dir.path()).expect("generate");
        assert_eq!(generated.cert_path, dir.path().join("gen.example.test.crt"));
        assert_eq!(generated.key_path, dir.path().join("gen.example.test.key"));
        assert_eq!(mode(&generated.key_path), 0o600, "{key_type} key mode");

        let cert_arg = generated.cert_path.display().to_string();
        let (ok, output) = openssl(&[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            &cert_arg,
        ])
        .await;
        assert!(ok, "openssl x509: {output}");
        let openssl_fp = output.trim().rsplit('=').next().expect("fingerprint");
        assert_eq!(openssl_fp, generated.fingerprint_sha256, "{key_type}");

        let source = CertSource {
            cert: generated.cert_path.clone(),
            key: generated.key_path.clone(),
        };
        let loaded = load_pair(&source).expect("generated pair loads");
        assert_eq!(loaded.fingerprint_sha256, generated.fingerprint_sha256);
        assert_eq!(loaded.dns_names, ["gen.example.test", "*.gen.example.test"]);

        let info = inspect(&generated.cert_path).expect("inspect");
        assert_eq!(info.sans, names());
        assert_eq!(info.key_type, key_name);
        assert_eq!(info.subject, "CN=gen.example.test");
        assert_eq!(info.issuer, info.subject);
        assert!((29..=30).contains(&info.days_left), "{info:?}");
        assert_eq!(info.fingerprint_sha256, generated.fingerprint_sha256);
        let shown = info.to_string();
        assert!(
            shown.contains("sans: gen.example.test, *.gen.example.test, 127.0.0.1\n"),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("key_type: {key_name}\n")),
            "{shown}"
        );
    }
}

#[tokio::test]
async fn generated_certificate_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = self_signed(&names(), 1, KeyType::Ed25519, dir.path()).expect("generate");
    let issued = support::Issued {
        source: CertSource {
            cert: generated.cert_path,
            key: generated.key_path,
        },
        fingerprint: generated.fingerprint_sha256,
    };
    let (_, server) = serve(&[&issued], UnknownSni::Refuse).await;
    let stream = connect(server.addr, "x.gen.example.test", default_client())
        .await
        .expect("handshake");
    assert_eq!(leaf(&stream), issued.fingerprint);
    server.shutdown().await;
}

#[test]
fn existing_key_file_is_replaced_with_mode_0600() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("old.example.test.key");
    std::fs::write(&key, "old").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    let names = vec!["old.example.test".to_owned()];
    let generated = self_signed(&names, 5, KeyType::EcdsaP256, dir.path()).expect("generate");
    assert_eq!(generated.key_path, key);
    assert_eq!(mode(&key), 0o600);
    let pem = std::fs::read_to_string(&key).expect("read");
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
}

#[test]
fn wildcard_first_name_gets_a_plain_file_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = vec!["*.w.example.test".to_owned()];
    let generated = self_signed(&names, 5, KeyType::EcdsaP256, dir.path()).expect("generate");
    assert_eq!(
        generated.cert_path,
        dir.path().join("wildcard.w.example.test.crt")
    );
}

#[test]
fn bad_requests_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = self_signed(&[], 5, KeyType::EcdsaP256, dir.path()).expect_err("no names");
    assert!(matches!(err, CertGenError::NoNames), "{err:?}");

    for bad in ["../escape.test", "a/b", "", "-x.test", "a..b"] {
        let err = self_signed(&[bad.to_owned()], 5, KeyType::EcdsaP256, dir.path())
            .expect_err("invalid name");
        assert!(
            matches!(err, CertGenError::InvalidName { .. }),
            "{bad}: {err:?}"
        );
    }
    let err = self_signed(&names(), 0, KeyType::EcdsaP256, dir.path()).expect_err("zero days");
    assert!(matches!(err, CertGenError::NoValidity), "{err:?}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("read dir").count(), 0);
}

#[test]
fn key_type_parses_its_names() {
    for (text, key_type) in [
        ("ecdsa-p256", KeyType::EcdsaP256),
        ("rsa2048", KeyType::Rsa2048),
        ("ed25519", KeyType::Ed25519),
    ] {
        assert_eq!(text.parse::<KeyType>(), Ok(key_type));
        assert_eq!(key_type.to_string(), text);
    }
    assert!("dsa".parse::<KeyType>().is_err());
    assert!("".parse::<KeyType>().is_err());
}

#[test]
fn inspect_names_an_unreadable_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nothing.pem");
    let err = inspect(&path).expect_err("missing");
    assert_eq!(err.path(), Some(path.as_path()));

    std::fs::write(&path, "not a certificate").expect("write");
    let err = inspect(&path).expect_err("garbage");
    assert!(err.to_string().contains("nothing.pem"), "{err}");
}
