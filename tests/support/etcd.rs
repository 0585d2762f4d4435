//! Real etcd processes for tests/etcd.rs and benches/etcd.rs: members on 127.0.0.1 with free
//! ports and temporary data folders, stopped by PID, and Switchyard configurations using them.
//! With `CI=true` a missing `etcd` binary fails the test (CI installs it); elsewhere the test
//! is skipped with a message.

use std::net::TcpListener;
use std::path::PathBuf;
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
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
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
}

impl Etcd {
    /// Starts a cluster of `n` members and waits until each serves clients.
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data: dir.path().join(format!("m{i}")),
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
        let child = Command::new("etcd")
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
