//! Every file in `examples/` is a configuration the real binary's `check` accepts, with the
//! certificates `examples/gen-certs.sh` writes, and every `switchyard ...` command in its
//! comments is one the binary accepts. The set of files is fixed here so a new example cannot
//! be added without being checked.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::output_text as text;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Every configuration in `examples/`; adding one means adding it here.
const CONFIGS: &[&str] = &[
    "blue-green-process.toml",
    "canary.toml",
    "control-tls-tokens.toml",
    "dns-stacks.toml",
    "tls-sni.toml",
    "upstream-mtls.toml",
];

/// The other files in `examples/`.
const SCRIPTS: &[&str] = &["gen-certs.sh"];

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// A copy of `examples/` (configurations only) in a temp folder, as `TMP/examples`, with the
/// certificates written by the shipped script into `TMP/examples/certs`.
fn examples_with_certs() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dest = tmp.path().join("examples");
    std::fs::create_dir(&dest).expect("mkdir");
    for name in CONFIGS {
        std::fs::copy(examples_dir().join(name), dest.join(name)).expect("copy example");
    }
    let out = Command::new("bash")
        .arg(examples_dir().join("gen-certs.sh"))
        .arg(dest.join("certs"))
        .env("SWITCHYARD", BIN)
        .output()
        .expect("run gen-certs.sh");
    assert!(out.status.success(), "gen-certs.sh failed: {}", text(&out));
    tmp
}

#[test]
fn examples_folder_holds_exactly_the_checked_files() {
    let found: BTreeSet<String> = std::fs::read_dir(examples_dir())
        .expect("read examples/")
        .map(|e| e.expect("entry"))
        // examples/certs is what gen-certs.sh writes by default (ignored by git).
        .filter(|e| e.file_name() != "certs")
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let expected: BTreeSet<String> = CONFIGS
        .iter()
        .chain(SCRIPTS)
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(
        found, expected,
        "examples/ changed: list every configuration in CONFIGS so it is checked"
    );
}

#[test]
fn every_example_passes_check() {
    let tmp = examples_with_certs();
    for name in CONFIGS {
        let path = tmp.path().join("examples").join(name);
        let out = Command::new(BIN)
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .expect("run check");
        assert!(out.status.success(), "{name}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(": ok: "), "{name}: {stdout}");
    }
}

#[test]
fn gen_certs_writes_every_file_the_examples_name() {
    let tmp = examples_with_certs();
    let mut named = 0;
    for name in CONFIGS {
        let config = std::fs::read_to_string(examples_dir().join(name)).expect("read");
        for line in config.lines().filter(|l| !l.trim_start().starts_with('#')) {
            for (i, _) in line.match_indices("\"certs/") {
                let rest = &line[i + 1..];
                let file = &rest[..rest.find('"').expect("closing quote")];
                let path = tmp.path().join("examples").join(file);
                assert!(
                    path.is_file(),
                    "{name} names {file}, which gen-certs.sh does not write"
                );
                named += 1;
            }
        }
    }
    // tls-sni: 2 pairs; upstream-mtls: listener pair, CA, client pair; control: 1 pair.
    assert_eq!(named, 11, "certificate and key paths found in the examples");
}

/// The `switchyard ...` commands shown in an example's comments, continuation lines joined.
fn commented_commands(config: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in config.lines() {
        let Some(comment) = line.strip_prefix('#') else {
            continue;
        };
        let body = comment.trim();
        match current.as_mut() {
            Some(c) => c.push_str(body.trim_end_matches('\\')),
            None if body.starts_with("switchyard ") => {
                current = Some(body.trim_end_matches('\\').to_owned())
            }
            None => continue,
        }
        if !body.ends_with('\\') {
            commands.extend(current.take());
        } else if let Some(c) = current.as_mut() {
            c.push(' ');
        }
    }
    commands
}

#[test]
fn commands_in_the_comments_are_accepted_by_the_binary() {
    let tmp = examples_with_certs();
    let token = tmp.path().join("token");
    std::fs::write(&token, "example-secret\n").expect("token file");
    // A loopback port with nothing listening: a client command that gets as far as connecting
    // has passed every local check of its arguments (the deployment body is built first).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    // `switchyard` in the comments runs the binary under test, with --control and --token-file
    // pointed at the closed port and the temp token file.
    let wrapper = r#"switchyard() {
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --control) args+=("$1" "$CONTROL"); shift 2 ;;
      --token-file) args+=("$1" "$TOKEN"); shift 2 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  "$BIN" "${args[@]}"
}
"#;
    let mut seen = BTreeSet::new();
    for name in CONFIGS {
        let config = std::fs::read_to_string(examples_dir().join(name)).expect("read");
        let commands = commented_commands(&config);
        assert!(
            commands.contains(&format!("switchyard check --config examples/{name}")),
            "{name} does not show how to check it: {commands:?}"
        );
        for command in commands {
            let verb = command.split_whitespace().nth(1).expect("verb").to_owned();
            let out = Command::new("bash")
                .arg("-c")
                .arg(format!("{wrapper}{command}"))
                .current_dir(tmp.path())
                .env("BIN", BIN)
                .env("CONTROL", format!("http://{closed}"))
                .env("TOKEN", &token)
                .output()
                .expect("run bash");
            if verb == "check" {
                assert!(out.status.success(), "{name}: {command}: {}", text(&out));
            } else {
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    stderr.contains("cannot reach the control api"),
                    "{name}: {command}: {}",
                    text(&out)
                );
            }
            seen.insert(verb);
        }
    }
    let expected: BTreeSet<String> = ["check", "deploy", "promote", "status"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(seen, expected, "kinds of commands shown in the examples");
}

/// `examples/tls-sni.toml` with its public binds, control listener and state moved to
/// loopback and a temp folder, and the API's endpoint replaced by a real upstream.
fn tls_sni_on_loopback(api_upstream: std::net::SocketAddr) -> String {
    let config = std::fs::read_to_string(examples_dir().join("tls-sni.toml")).expect("read");
    let replaced = config
        .replace("bind = \"0.0.0.0:80\"", "bind = \"127.0.0.1:0\"")
        .replace("bind = \"0.0.0.0:443\"", "bind = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "state_dir = \"/var/lib/switchyard\"",
            "state_dir = \"state\"",
        )
        .replace("\"127.0.0.1:8101\"", &format!("\"{api_upstream}\""));
    for (from, what) in [
        ("0.0.0.0:80\"", "plain bind"),
        ("0.0.0.0:443\"", "tls bind"),
        ("127.0.0.1:9090", "control listen"),
        ("/var/lib/switchyard", "state_dir"),
        ("127.0.0.1:8101", "api endpoint"),
    ] {
        assert!(!replaced.contains(from), "tls-sni.toml changed: {what}");
    }
    replaced
}

#[tokio::test]
async fn tls_sni_example_serves_each_name_its_certificate_and_the_api_over_https_only() {
    use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Only fails if another provider was installed first; either serves the handshake.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let upstream = support::Upstream::start("api-v3.2").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = dir.path().join("certs");
    let out = Command::new("bash")
        .arg(examples_dir().join("gen-certs.sh"))
        .arg(&certs)
        .env("SWITCHYARD", BIN)
        .output()
        .expect("run gen-certs.sh");
    assert!(out.status.success(), "gen-certs.sh: {}", text(&out));
    let pem = |name: &str| {
        CertificateDer::from_pem_file(certs.join(format!("{name}.crt"))).expect("certificate")
    };
    let (www, api) = (pem("www.example.test"), pem("api.example.test"));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(www.clone()).expect("www as a root");
    roots.add(api.clone()).expect("api as a root");
    let client = std::sync::Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let proxy = support::Proxy::start_in(dir, &tls_sni_on_loopback(upstream.addr));
    let https = proxy.addr("https");

    let connect = |sni: &'static str| {
        let client = client.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(https)
                .await
                .expect("connect");
            tokio_rustls::TlsConnector::from(client)
                .connect(ServerName::try_from(sni).expect("name"), tcp)
                .await
        }
    };
    let leaf = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().expect("certificates")[0].clone()
    };
    for (sni, expected) in [
        ("www.example.test", &www),
        ("example.test", &www),
        ("api.example.test", &api),
    ] {
        let stream = connect(sni).await.expect("handshake");
        assert_eq!(&leaf(&stream), expected, "certificate served for {sni}");
    }
    // unknown_sni = "refuse": a name no certificate carries gets no handshake.
    assert!(connect("other.example.test").await.is_err());

    // The API answers over HTTPS...
    let mut stream = connect("api.example.test").await.expect("handshake");
    stream
        .write_all(b"GET /v1/ping HTTP/1.1\r\nHost: api.example.test\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut reply = String::new();
    tokio::time::timeout(support::WAIT, stream.read_to_string(&mut reply))
        .await
        .expect("reply within the bound")
        .expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"version\":\"api-v3.2\""), "{reply}");
    assert!(reply.contains("\"x-forwarded-proto\":\"https\""), "{reply}");
    // ...and not on the plain listener, where the web site is.
    let mut plain = support::Client::connect(proxy.addr("http")).await;
    let reply = plain
        .request(
            "GET",
            "/v1/ping",
            &[("host", "api.example.test")],
            Default::default(),
        )
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.error(), Some("no-route"));
    assert_eq!(upstream.requests(), 1);
}
