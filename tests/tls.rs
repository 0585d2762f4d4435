//! End-to-end TLS through the real binary: SNI certificate choice, ALPN to HTTP/2,
//! `X-Forwarded-Proto: https`, certificate reload on SIGHUP with open connections, upstream TLS
//! verified against a test CA and refused against an untrusted one, and the `certs` CLI.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use support::{Proxy, Upstream};
use tokio::net::TcpStream;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
                .expect("ca"),
        }
    }

    /// Writes `STEM.crt`/`STEM.key` for `names` into `dir`; returns the leaf fingerprint.
    fn issue(&self, dir: &Path, stem: &str, names: &[&str]) -> String {
        let key = KeyPair::generate().expect("key");
        let params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(dir.join(format!("{stem}.crt")), cert.pem()).expect("write");
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).expect("write");
        switchyard_certs::fingerprint_sha256(cert.der())
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("root");
        roots
    }
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut c = rustls::ClientConfig::builder()
        .with_root_certificates(ca.roots())
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let stream = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from(sni.to_owned()).expect("name"), tcp)
        .await
        .expect("handshake");
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| switchyard_certs::fingerprint_sha256(c))
        .expect("leaf");
    (stream, leaf)
}

async fn h1_get(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    host: &str,
) -> (
    hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    serde_json::Value,
) {
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let v = get_json(&mut send, host).await;
    (send, v)
}

async fn get_json(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
) -> serde_json::Value {
    let req = hyper::Request::builder()
        .uri("/tls")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
        .expect("json")
}

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

fn tls_config(upstream: SocketAddr) -> String {
    format!(
        r#"
[[listeners]]
name = "public-tls"
bind = "127.0.0.1:0"
tls = {{ certs = [{{ cert = "a.crt", key = "a.key" }}, {{ cert = "b.crt", key = "b.key" }}] }}

[[services]]
name = "web"
listeners = ["public-tls"]
[[services.stacks]]
name = "blue"
weight = 1
endpoints = ["{upstream}"]
"#
    )
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_gives_http2() {
    install_provider();
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let fa = ca.issue(dir.path(), "a", &["a.example.test"]);
    let fb = ca.issue(dir.path(), "b", &["*.b.example.test"]);
    let proxy = Proxy::start_in(dir, &tls_config(up.addr));
    let addr = proxy.addr("public-tls");

    let (s, leaf) = tls_connect(addr, "a.example.test", client_config(&ca, &[b"http/1.1"])).await;
    assert_eq!(leaf, fa);
    let (_, v) = h1_get(s, "a.example.test").await;
    assert_eq!(v["headers"]["x-forwarded-proto"], "https");

    let (s, leaf) = tls_connect(
        addr,
        "shop.b.example.test",
        client_config(&ca, &[b"h2", b"http/1.1"]),
    )
    .await;
    assert_eq!(leaf, fb);
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
            .await
            .expect("h2");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("https://shop.b.example.test/h2")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = send.send_request(req).await.expect("h2 response");
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_idle_https_keep_alive_connection_sleeps_wakes_and_closes_with_the_drain() {
    install_provider();
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    ca.issue(dir.path(), "a", &["a.example.test"]);
    ca.issue(dir.path(), "b", &["*.b.example.test"]);
    let proxy = Proxy::start_in_with_env(
        dir,
        &tls_config(up.addr),
        &[("RUST_LOG", "info,switchyard_proxy::listener=debug")],
    );
    let addr = proxy.addr("public-tls");
    let (s, _) = tls_connect(addr, "a.example.test", client_config(&ca, &[b"http/1.1"])).await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("h1");
    let conn = tokio::spawn(conn);
    for round in 1..=2 {
        let v = get_json(&mut send, "a.example.test").await;
        assert_eq!(v["headers"]["x-forwarded-proto"], "https", "round {round}");
        // Past the dormant time (a second): the serving future is dropped, the session kept.
        tokio::time::timeout(support::WAIT, async {
            while proxy.stderr().matches("connection dormant").count() < round {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never dormant (round {round}): {}", proxy.stderr()));
    }
    assert_eq!(
        proxy.stderr().matches("dormant connection woken").count(),
        1
    );
    // The drain closes the dormant connection (with its close_notify), and the process ends.
    let stopped = tokio::task::spawn_blocking(move || proxy.stop());
    let ended = tokio::time::timeout(support::WAIT, conn).await;
    assert!(
        matches!(ended, Ok(Ok(Ok(())))),
        "the client's connection did not end cleanly: {ended:?}"
    );
    assert!(stopped.await.expect("stop").success());
}

#[tokio::test]
async fn certificate_reload_keeps_open_connections_and_serves_the_new_one() {
    install_provider();
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let ca = Ca::new();
    let old = ca.issue(&path, "a", &["a.example.test"]);
    ca.issue(&path, "b", &["b.example.test"]);
    let proxy = Proxy::start_in(dir, &tls_config(up.addr));
    let addr = proxy.addr("public-tls");
    let (s, leaf) = tls_connect(addr, "a.example.test", client_config(&ca, &[b"http/1.1"])).await;
    assert_eq!(leaf, old);
    let (mut open, _) = h1_get(s, "a.example.test").await;

    // A broken replacement keeps the old certificate in service.
    std::fs::write(path.join("a.key"), "not a key").expect("write");
    proxy.signal("HUP");
    tokio::time::timeout(support::WAIT, async {
        while !proxy.stderr().contains("a.key") {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the error names the broken file");
    assert_eq!(
        tls_connect(addr, "a.example.test", client_config(&ca, &[b"http/1.1"]))
            .await
            .1,
        old
    );

    let new = ca.issue(&path, "a", &["a.example.test"]);
    proxy.signal("HUP");
    let seen = tokio::time::timeout(support::WAIT, async {
        loop {
            let (_, leaf) =
                tls_connect(addr, "a.example.test", client_config(&ca, &[b"http/1.1"])).await;
            if leaf == new {
                return leaf;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("new handshakes see the new certificate");
    assert_ne!(seen, old);
    // The connection opened before the reload still works.
    assert_eq!(get_json(&mut open, "a.example.test").await["version"], "v1");
}

/// A TLS upstream answering JSON like the demo upstream.
async fn tls_upstream(ca: &Ca, dir: &Path) -> SocketAddr {
    ca.issue(dir, "upstream", &["localhost"]);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("upstream.crt"))
            .expect("pem")
            .map(|c| c.expect("cert"))
            .collect();
    let key =
        rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("upstream.key")).expect("key");
    let cfg = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config"),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(cfg.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"{\"version\":\"tls-upstream\"}"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstream_tls_verifies_against_the_stack_ca_and_refuses_an_untrusted_upstream() {
    install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    let up = tls_upstream(&ca, dir.path()).await;
    std::fs::write(dir.path().join("ca.pem"), ca.issuer.pem()).expect("ca");
    let endpoint = format!("https://localhost:{}", up.port());
    let text = [
        support::PUBLIC_LISTENER.to_owned(),
        support::service("trusted", "hosts = [\"trusted.test\"]", &endpoint),
        "tls = { ca = \"ca.pem\" }\n".to_owned(),
        support::service("untrusted", "hosts = [\"untrusted.test\"]", &endpoint),
    ]
    .concat();
    let proxy = Proxy::start_in(dir, &text);
    let mut c = support::Client::connect(proxy.addr("public")).await;
    let r = c
        .request("GET", "/", &[("host", "trusted.test")], Bytes::new())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.error());
    assert_eq!(r.version(), "tls-upstream");
    let r = c
        .request("GET", "/", &[("host", "untrusted.test")], Bytes::new())
        .await;
    assert_eq!((r.status, r.error()), (502, Some("upstream-tls")));
}

#[test]
fn certs_cli_writes_a_certificate_whose_fingerprint_openssl_agrees_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "certs",
            "self-signed",
            "--name",
            "integration.example.test",
            "--name",
            "alt.example.test",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ours = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sha256 fingerprint: "))
        .expect("fingerprint line")
        .to_owned();
    let crt = dir.path().join("integration.example.test.crt");
    let o = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&crt)
        .output()
        .expect("openssl");
    let theirs = String::from_utf8_lossy(&o.stdout);
    assert_eq!(theirs.trim().rsplit('=').next(), Some(ours.as_str()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("integration.example.test.key"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["certs", "inspect"])
        .arg(&crt)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alt.example.test") && text.contains(&ours),
        "{text}"
    );
}

#[tokio::test]
async fn control_api_can_be_served_over_tls() {
    install_provider();
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new();
    ca.issue(dir.path(), "a", &["a.example.test"]);
    ca.issue(dir.path(), "b", &["b.example.test"]);
    ca.issue(dir.path(), "control", &["control.example.test"]);
    let text = format!(
        "{}\n[control]\nlisten = \"127.0.0.1:0\"\ntls = {{ certs = [{{ cert = \"control.crt\", key = \"control.key\" }}] }}\n",
        tls_config(up.addr)
    );
    let proxy = Proxy::start_in(dir, &text);
    let (s, _) = tls_connect(
        proxy.control,
        "control.example.test",
        client_config(&ca, &[b"http/1.1"]),
    )
    .await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("h1");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("/v1/services")
        .header("host", "control.example.test")
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = send.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.expect("body").to_bytes())
            .expect("json");
    assert!(v.to_string().contains("\"web\""), "{v}");
    // Plain HTTP on the TLS control port gets no API answer.
    let out = support::raw_exchange(
        proxy.control,
        b"GET /v1/services HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(!out.contains("\"web\""));
}
