//! Helpers shared by the end-to-end tests: start the real binary and read its bound addresses,
//! start real upstreams (the built-in demo upstream), and a small keep-alive HTTP client.
#![allow(dead_code, unreachable_pub)]

pub mod browser;
pub mod client;
pub mod deploy;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use switchyard::demo::{DemoUpstream, DemoUpstreamHandle, spawn_demo_upstream};
use tokio::net::{TcpListener, TcpStream};

pub mod etcd;

/// Upper bound for any wait in a test: a failure bound, never a delay.
pub const WAIT: Duration = Duration::from_secs(20);

/// A real upstream on 127.0.0.1 (the built-in demo upstream).
pub struct Upstream {
    pub addr: SocketAddr,
    handle: DemoUpstreamHandle,
}

impl Upstream {
    pub async fn start(version: &str) -> Self {
        Self::start_with(version, 0.0, Duration::ZERO).await
    }

    pub async fn start_with(version: &str, fail_rate: f64, latency: Duration) -> Self {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = l.local_addr().expect("addr");
        let handle = spawn_demo_upstream(
            l,
            DemoUpstream {
                version: version.into(),
                fail_rate,
                latency,
            },
        );
        Self { addr, handle }
    }

    /// Requests this upstream answered.
    pub fn requests(&self) -> u64 {
        self.handle.requests.load(Ordering::Relaxed)
    }

    pub fn counter(&self) -> Arc<AtomicU64> {
        self.handle.requests.clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.handle.stop();
    }
}

/// The real `switchyard` binary running `serve` on a config written to a temp folder.
pub struct Proxy {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub listeners: HashMap<String, SocketAddr>,
    pub control: SocketAddr,
    pub stderr_path: PathBuf,
}

/// Adds a control listener on an ephemeral port when the config has none, so parallel tests
/// never share a port.
pub fn with_control(config: &str) -> String {
    if config.contains("[control]") {
        config.to_owned()
    } else {
        format!("{config}\n[control]\nlisten = \"127.0.0.1:0\"\n")
    }
}

impl Proxy {
    /// Starts `switchyard serve` and waits for its `ready` line.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, config)
    }

    pub fn start_in(dir: tempfile::TempDir, config: &str) -> Self {
        Self::start_in_with_env(dir, config, &[])
    }

    /// Starts `switchyard serve` with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in_with_env(dir, config, env)
    }

    pub fn start_in_with_env(dir: tempfile::TempDir, config: &str, env: &[(&str, &str)]) -> Self {
        let config_path = dir.path().join("switchyard.toml");
        std::fs::write(&config_path, with_control(config)).expect("write config");
        Self::run("serve", dir, config_path, env)
    }

    /// Starts `switchyard upgrade` on this proxy's configuration (taking over its sockets and
    /// state folder) and waits for its `ready` line.
    pub fn upgrade(&self) -> Self {
        Self::run(
            "upgrade",
            tempfile::tempdir().expect("tempdir"),
            self.config_path.clone(),
            &[],
        )
    }

    fn run(
        command: &str,
        dir: tempfile::TempDir,
        config_path: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let stderr_path = dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg(command)
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn switchyard");
        let rx = stdout_lines(&mut child);
        // Built before reading the startup lines, so any panic below still kills the child.
        let mut proxy = Self {
            child,
            dir,
            config_path,
            listeners: HashMap::new(),
            control: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr_path,
        };
        loop {
            let Ok(line) = rx.recv_timeout(WAIT) else {
                panic!("switchyard did not become ready: {}", proxy.stderr());
            };
            if line == "ready" {
                break;
            }
            if let Some(rest) = line.strip_prefix("control addr=") {
                proxy.control = rest.parse().expect("control addr");
            }
            if let Some(rest) = line.strip_prefix("listening ") {
                let kv: HashMap<&str, &str> =
                    rest.split(' ').filter_map(|p| p.split_once('=')).collect();
                proxy
                    .listeners
                    .insert(kv["listener"].to_owned(), kv["addr"].parse().expect("addr"));
            }
        }
        assert_ne!(
            proxy.control.port(),
            0,
            "control address printed before ready"
        );
        proxy
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listeners[listener]
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// `kill -9` and keep the folder (config and state) for a restart.
    pub fn kill9(mut self) -> tempfile::TempDir {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(self) -> std::process::ExitStatus {
        self.stop_keep_dir().0
    }

    /// Sends SIGTERM, waits for the exit and keeps the folder (config and state) for a restart.
    pub fn stop_keep_dir(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        self.signal("TERM");
        let status = self.wait_exit();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (status, dir)
    }

    /// Waits (bounded by [`WAIT`]) for the process to exit on its own.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "switchyard did not exit: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The child's stdout, line by line, read on a thread (so a wait can be bounded with
/// `recv_timeout`).
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A finished command's status and output, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A response as seen by the test client.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The `version` the demo upstream reported.
    pub fn version(&self) -> String {
        self.json()["version"].as_str().unwrap_or("").to_owned()
    }

    pub fn error(&self) -> Option<&str> {
        self.headers
            .get("x-switchyard-error")
            .and_then(|v| v.to_str().ok())
    }
}

/// One keep-alive HTTP/1.1 client connection.
pub struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    pub host: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect proxy");
        tcp.set_nodelay(true).expect("nodelay");
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Self {
            sender,
            host: addr.to_string(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[], Bytes::new()).await
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .await
            .expect("request")
    }

    pub async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, hyper::Error> {
        let mut b = hyper::Request::builder().method(method).uri(path);
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            b = b.header("host", &self.host);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body)).expect("request");
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// Sends raw bytes on a fresh connection and returns everything read until the peer closes
/// (or the failure bound passes).
/// An HTTP/2 client with prior knowledge (h2c) on a plain connection to `addr`; the connection
/// is driven by a task of its own.
pub async fn h2c(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A config file for one service `web` with the given stacks `(name, version, weight, endpoints)`.
pub fn config(
    stacks: &[(&str, &str, u32, Vec<SocketAddr>)],
    extra_service: &str,
    extra: &str,
) -> String {
    let mut s = String::from("[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n");
    s.push_str("[[services]]\nname = \"web\"\nlisteners = [\"public\"]\n");
    s.push_str(extra_service);
    s.push('\n');
    for (name, version, weight, eps) in stacks {
        let eps: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
        s.push_str(&format!(
            "\n[[services.stacks]]\nname = \"{name}\"\nversion = \"{version}\"\nweight = {weight}\nendpoints = [{}]\n",
            eps.join(", ")
        ));
    }
    s.push('\n');
    s.push_str(extra);
    s
}

/// Two upstreams answering versions `blue` and `green`.
pub struct BlueGreen {
    pub blue: Upstream,
    pub green: Upstream,
}

impl BlueGreen {
    pub async fn start() -> Self {
        Self {
            blue: Upstream::start("blue").await,
            green: Upstream::start("green").await,
        }
    }

    /// A config for service `web` with stacks `blue` and `green` at these weights.
    pub fn config(&self, blue: u32, green: u32, extra_service: &str, extra: &str) -> String {
        config(
            &[
                ("blue", "v1", blue, vec![self.blue.addr]),
                ("green", "v2", green, vec![self.green.addr]),
            ],
            extra_service,
            extra,
        )
    }
}

/// The plain listener every test config starts with.
pub const PUBLIC_LISTENER: &str = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n";

/// A `[[services]]` block on the `public` listener with one stack `a` (weight 1) on `endpoint`;
/// `extra` is added to the service table (hosts, prefix, timeouts, ...).
pub fn service(name: &str, extra: &str, endpoint: &str) -> String {
    format!(
        "\n[[services]]\nname = \"{name}\"\nlisteners = [\"public\"]\n{extra}\n[[services.stacks]]\nname = \"a\"\nweight = 1\nendpoints = [\"{endpoint}\"]\n"
    )
}

pub fn path_in(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

// ---- deployments (tests/deploy.rs) ----

/// The hex SHA-256 of a token secret, as the config's `sha256`.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// One control API call on a fresh connection: (status, JSON body).
pub async fn api(
    control: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut c = Client::connect(control).await;
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let bytes = match body {
        Some(b) => {
            headers.push(("content-type", "application/json"));
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let r = c.request(method, path, &headers, bytes).await;
    (r.status, r.json())
}

/// Polls `GET path` until `done` holds for its JSON, failing after [`WAIT`]; returns that JSON.
pub async fn wait_json(
    control: SocketAddr,
    path: &str,
    token: Option<&str>,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = serde_json::Value::Null;
    while tokio::time::Instant::now() < deadline {
        let (status, v) = api(control, "GET", path, token, None).await;
        if status == 200 && done(&v) {
            return v;
        }
        last = v;
        // A poll interval, bounded by the deadline above; the condition is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}; last answer: {last}");
}

/// Whether a process runs (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z')
}

/// A process's start time (clock ticks after boot, field 22 of `/proc/PID/stat`): with the
/// PID, it names one process even after the PID is reused.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills the listed processes when dropped, so a failing test leaves no replica behind. Each
/// is known by its PID and start time, taken when it is added: a PID the kernel has handed to
/// another process since (PIDs wrap at `pid_max`, 32768 here) is left alone.
#[derive(Default)]
pub struct Reaper(std::sync::Mutex<Vec<(u32, u64)>>);

impl Reaper {
    pub fn add(&self, pids: impl IntoIterator<Item = u32>) {
        let known: Vec<(u32, u64)> = pids
            .into_iter()
            .filter_map(|pid| start_ticks(pid).map(|t| (pid, t)))
            .collect();
        self.0.lock().expect("reaper lock").extend(known);
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for (pid, ticks) in self.0.lock().map(|p| p.clone()).unwrap_or_default() {
            if pid_alive(pid) && start_ticks(pid) == Some(ticks) {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
            }
        }
    }
}
