//! Helpers of `tests/client.rs`: a server with one service and a `deploy` token, the client
//! run as a child process (its environment cleared of the client's variables), a running
//! client whose stderr is read line by line, and a test CA.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr};

use super::{Proxy, Upstream, config, sha256_hex, wait_json};

pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
pub const SECRET: &str = "deployer-secret";
/// A failure bound for one wait, never a delay.
pub const WAIT: Duration = Duration::from_secs(60);
/// Every variable the client reads, removed from each child so the test's own environment
/// never leaks in.
pub const CLIENT_ENV: [&str; 4] = [
    "SWITCHYARD_CONTROL_URL",
    "SWITCHYARD_TOKEN",
    "SWITCHYARD_TOKEN_FILE",
    "SWITCHYARD_CA",
];

/// Service `web` with stack `blue` (v1.3, weight 100) and a `deploy` token; `control_extra`
/// goes into `[control]` (e.g. its TLS).
pub fn proxy_with_blue(blue: &Upstream, dir: tempfile::TempDir, control_extra: &str) -> Proxy {
    let token = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n{control_extra}\n[[tokens]]\nname = \"ci\"\nrole = \"deploy\"\nsha256 = \"{}\"\n",
        sha256_hex(SECRET)
    );
    let proxy = Proxy::start_in(
        dir,
        &config(&[("blue", "v1.3", 100, vec![blue.addr])], "", &token),
    );
    std::fs::write(token_file(&proxy), SECRET).expect("token file");
    proxy
}

pub fn token_file(proxy: &Proxy) -> PathBuf {
    proxy.dir.path().join("ci.token")
}

/// The connection flags for `proxy`'s plain control API.
pub fn conn(proxy: &Proxy) -> Vec<String> {
    vec![
        "--control".into(),
        format!("http://{}", proxy.control),
        "--token-file".into(),
        token_file(proxy).to_string_lossy().into_owned(),
    ]
}

pub fn command(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    for v in CLIENT_ENV {
        c.env_remove(v);
    }
    c.args(args).envs(env.iter().copied()).kill_on_drop(true);
    c
}

pub async fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(WAIT, command(args, env).output())
        .await
        .expect("the client ends")
        .expect("run the client")
}

/// `args[0]` (and `args[1]` when it is a `deployments` subcommand), the connection, the rest.
pub async fn cli(conn: &[String], args: &[&str]) -> Output {
    cli_env(&with(conn, args), &[]).await
}

pub fn with<'a>(conn: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let head = if args[0] == "deployments" { 2 } else { 1 };
    let mut v: Vec<&str> = args[..head].to_vec();
    v.extend(conn.iter().map(String::as_str));
    v.extend(&args[head..]);
    v
}

pub fn text(out: &Output) -> String {
    super::output_text(out)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// A running client whose stderr is read line by line.
pub struct Running {
    pub child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    seen: Vec<String>,
}

impl Running {
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = command(args, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        let stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
        Self {
            child,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle`; returns that line.
    pub async fn until(&mut self, needle: &str) -> String {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            panic!("stderr ended before {needle:?}: {:#?}", self.seen);
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle:?} on stderr: {:#?}", self.seen))
    }

    /// Waits for the exit; the exit code, stdout and every stderr line.
    pub async fn end(mut self) -> (Option<i32>, String, Vec<String>) {
        let mut stdout = self.child.stdout.take().expect("stdout");
        let rest = tokio::time::timeout(WAIT, async {
            let mut out = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut out)
                .await
                .expect("read stdout");
            while let Some(line) = self.stderr.next_line().await.expect("read stderr") {
                self.seen.push(line);
            }
            out
        })
        .await
        .unwrap_or_else(|_| panic!("the client did not end: {:#?}", self.seen));
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the client exits")
            .expect("wait");
        (status.code(), rest, self.seen)
    }
}

/// `deploy` of stack `stack` (version `version`) on `addr`, with `extra` flags.
pub fn deploy<'a>(
    conn: &'a [String],
    stack: &'a str,
    addr: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "deploy",
        "--service",
        "web",
        "--stack",
        stack,
        "--version",
        stack,
        "--endpoint",
        addr,
    ];
    args.extend(extra);
    with(conn, &args)
}

pub async fn deployment(
    proxy: &Proxy,
    id: u64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(SECRET),
        what,
        done,
    )
    .await
}

pub fn waiting_for_promote(v: &Value) -> bool {
    v["step"]["waiting"] == "promote"
}

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key"))
                .expect("ca"),
        }
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.issuer.pem()).expect("write ca");
    }

    /// Writes `control.crt`/`control.key` for `localhost` into `dir`.
    pub fn issue(&self, dir: &Path) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(dir.join("control.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("control.key"), key.serialize_pem()).expect("write");
    }
}
