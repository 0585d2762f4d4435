//! Real etcd processes for tests/etcd.rs and benches/etcd.rs: members on 127.0.0.1 with free
//! ports and temporary data folders, stopped by PID, and Switchyard configurations using them.
//! With `CI=true` a missing `etcd` binary fails the test (CI installs it); elsewhere the test
//! is skipped with a message.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::WAIT;

/// Whether `etcd` can run here; panics under CI when it cannot.
pub fn available() -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd is not installed (CI installs it in .ci/run: apt-get install etcd-server)"
        );
        eprintln!("skipped: etcd is not installed (apt-get install etcd-server)");
    }
    found
}

/// A free port on 127.0.0.1 (etcd takes its ports on the command line).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// One etcd member's fixed identity: name, ports and data folder.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub data: PathBuf,
    /// Whether clients speak TLS to it (`https://`).
    pub https: bool,
}

impl Member {
    pub fn client_url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

/// A running etcd cluster (one or more members), killed by PID when dropped.
pub struct Etcd {
    _dir: tempfile::TempDir,
    pub members: Vec<Member>,
    children: Vec<Option<Child>>,
    initial_cluster: String,
    tls: Option<TlsFiles>,
}

/// PEM files of an etcd that serves clients over TLS and asks them for a certificate: the
/// CA that issued every certificate, the server's pair (valid for 127.0.0.1) and a client's.
#[derive(Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TlsFiles {
    /// A new CA and pairs issued by it, written into `dir` (no common names: see below).
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write pem");
            path
        };
        let issue = |stem: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
            // etcd's HTTP gateway refuses a client certificate with a common name (it would
            // stand for a user); the server's doubles as the gateway's own client certificate.
            params.distinguished_name = rcgen::DistinguishedName::new();
            let cert = params.signed_by(&key, &ca).expect("sign");
            (
                write(&format!("{stem}.crt"), cert.pem()),
                write(&format!("{stem}.key"), key.serialize_pem()),
            )
        };
        let (server_cert, server_key) = issue("etcd-server");
        let (client_cert, client_key) = issue("etcd-client");
        Self {
            ca: write("etcd-ca.crt", ca.pem()),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

impl Etcd {
    /// Starts a cluster of `n` members and waits until each serves clients.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, None)
    }

    /// Starts one member serving clients over TLS with `tls`, client certificates required.
    pub fn start_tls(tls: &TlsFiles) -> Self {
        Self::start_with(1, Some(tls.clone()))
    }

    fn start_with(n: usize, tls: Option<TlsFiles>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data: dir.path().join(format!("m{i}")),
                https: tls.is_some(),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Self {
            _dir: dir,
            members,
            children: (0..n).map(|_| None).collect(),
            initial_cluster,
            tls,
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_ready(i);
        }
        etcd
    }

    fn log(&self, i: usize) -> PathBuf {
        self.members[i].data.with_extension("log")
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(self.log(i)).expect("etcd log");
        let mut command = Command::new("etcd");
        if let Some(tls) = &self.tls {
            command
                .arg("--cert-file")
                .arg(&tls.server_cert)
                .arg("--key-file")
                .arg(&tls.server_key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        let child = command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            // One token for the whole cluster (members with different tokens never form one).
            .args([
                "--initial-cluster-token",
                &format!("t{}", self.members[0].peer_port),
            ])
            // Fast elections on loopback.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.children[i] = Some(child);
    }

    /// Waits until member `i` logs that it serves clients.
    fn wait_ready(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(self.log(i)).unwrap_or_default();
            if text.contains("ready to serve client requests") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd {} did not become ready: {text}",
                self.members[i].name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Client URLs of every member, as a TOML array.
    pub fn endpoints_toml(&self) -> String {
        let urls: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("\"{}\"", m.client_url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// Runs `etcdctl ARGS` against member 0 (with the client certificate when it speaks
    /// TLS); panics unless it succeeds.
    pub fn ctl(&self, args: &[&str]) {
        let mut command = Command::new("etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.members[0].client_url()]);
        if let Some(tls) = &self.tls {
            command
                .arg("--cacert")
                .arg(&tls.ca)
                .arg("--cert")
                .arg(&tls.client_cert)
                .arg("--key")
                .arg(&tls.client_key);
        }
        let out = command.args(args).output().expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            super::output_text(&out)
        );
    }

    /// Kills member `i` (SIGKILL, by PID) and reaps it.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data folder and ports.
    pub fn restart(&mut self, i: usize) {
        self.stop(i);
        // The restarted member appends to a fresh log, so readiness is its own.
        self.spawn(i);
        self.wait_ready(i);
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.stop(i);
        }
    }
}

/// The `[store]` table of an instance on `etcd` under `prefix`.
pub fn store_table(etcd: &Etcd, prefix: &str) -> String {
    format!(
        "[store]\nkind = \"etcd\"\nendpoints = {}\nprefix = \"{prefix}\"\nlease_ttl = \"2s\"\n",
        etcd.endpoints_toml()
    )
}
