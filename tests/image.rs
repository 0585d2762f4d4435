//! The container image of Switchyard itself, built with `contrib/docker/build-image.sh` from the
//! binary under test against the local Docker Engine: it checks its default configuration,
//! runs as the unprivileged user, keeps its state in the volume, and proxies a request to an
//! upstream container on a private network, through a port published on 127.0.0.1 only.
//!
//! Without a reachable Engine the test says why and passes, except with `CI=true`, where the
//! Engine is part of the machine and its absence is a failure. Every container, the network and
//! the image are removed by name, also when the test fails.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{output_text as text, stdout_lines};

/// Failure bound for each wait (image start-up on a loaded machine), never a delay.
const WAIT: Duration = Duration::from_secs(60);

/// `docker ARGS`, bounded at 5 minutes (a hung Engine fails the test instead of hanging it).
fn docker(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["300", "docker"])
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The Engine's version, or why it cannot be reached (within 30 s: a hung Engine fails the
/// test instead of hanging it).
fn engine() -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["30", "docker", "info", "--format", "{{.ServerVersion}}"])
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.code() == Some(124) {
        return Err("docker info did not answer within 30 s".to_owned());
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if out.status.success() && !version.is_empty() {
        Ok(version)
    } else {
        Err(format!(
            "docker info failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Everything the test creates, removed by name on drop (also after a failed assertion).
struct Resources {
    image: String,
    network: String,
    containers: Vec<String>,
    attached: Vec<Child>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        // Best effort: a name that was never created makes docker fail, which is fine here.
        for name in &self.containers {
            let _ = docker(&["rm", "--force", "--volumes", name]);
        }
        for child in &mut self.attached {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = docker(&["network", "rm", &self.network]);
        let _ = docker(&["image", "rm", "--force", &self.image]);
    }
}

/// Starts `docker <args>` attached and returns it with its stdout lines.
fn attached(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new("docker")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn docker");
    let rx = stdout_lines(&mut child);
    (child, rx)
}

/// Waits for a line starting with `prefix`, returning the lines seen.
fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, what: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(line) => {
                let done = line.starts_with(prefix);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("{what}: no {prefix:?} line ({e}); stdout so far: {seen:?}"),
        }
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).expect("connect to the published port");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: image.example.test\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read reply");
    reply
}

const PROXY_CONFIG: &str = r#"
[[listeners]]
name = "public"
bind = "0.0.0.0:8080"

[[services]]
name = "app"
listeners = ["public"]

[[services.stacks]]
name = "blue"
version = "v1"
weight = 100
# The upstream container, by its alias on the test's private network.
endpoints = ["upstream:9000"]

[control]
listen = "127.0.0.1:9090"
state_dir = "/var/lib/switchyard"
"#;

#[test]
fn image_checks_serves_and_proxies_as_an_unprivileged_user() {
    if let Err(why) = engine() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but no Docker Engine is reachable: {why}");
        }
        eprintln!("skipping the container image test: no Docker Engine is reachable ({why})");
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let unique = format!("switchyard-test-{}-{nanos}", std::process::id());
    let mut res = Resources {
        image: format!("{unique}:image"),
        network: unique.clone(),
        containers: Vec::new(),
        attached: Vec::new(),
    };
    let image = res.image.clone();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/docker/build-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--binary",
            env!("CARGO_BIN_EXE_switchyard"),
            "--tag",
            &image,
        ])
        .output()
        .expect("run build-image.sh");
    assert!(out.status.success(), "build-image.sh: {}", text(&out));

    // Runs as the numeric unprivileged user, with state in a volume.
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Config.User}}", &image]),
        "65532:65532"
    );
    let volumes = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Volumes}}",
        &image,
    ]);
    assert!(volumes.contains("/var/lib/switchyard"), "{volumes}");

    // `docker run IMAGE check --config ...` validates the default configuration...
    let check = docker_ok(&[
        "run",
        "--rm",
        &image,
        "check",
        "--config",
        "/etc/switchyard/switchyard.toml",
    ]);
    assert!(check.contains(": ok: 1 listeners"), "{check}");
    // ...and says so when a file is missing.
    let missing = docker(&["run", "--rm", &image, "check", "--config", "/nope.toml"]);
    assert!(!missing.status.success(), "{}", text(&missing));

    docker_ok(&["network", "create", &res.network]);
    let upstream = format!("{unique}-upstream");
    res.containers.push(upstream.clone());
    let (child, upstream_out) = attached(&[
        "run",
        "--name",
        &upstream,
        "--network",
        &res.network,
        "--network-alias",
        "upstream",
        &image,
        "demo-upstream",
        "--bind",
        "0.0.0.0:9000",
        "--version",
        "v-image",
    ]);
    res.attached.push(child);
    wait_line(&upstream_out, "listening addr=", "upstream container");

    // The proxy with the test's configuration copied in, its listener published on loopback.
    let proxy = format!("{unique}-proxy");
    res.containers.push(proxy.clone());
    docker_ok(&[
        "create",
        "--name",
        &proxy,
        "--network",
        &res.network,
        "--publish",
        "127.0.0.1::8080",
        &image,
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("switchyard.toml");
    std::fs::write(&config, PROXY_CONFIG).expect("write config");
    docker_ok(&[
        "cp",
        config.to_str().expect("utf-8 path"),
        &format!("{proxy}:/etc/switchyard/switchyard.toml"),
    ]);
    let (child, proxy_out) = attached(&["start", "--attach", &proxy]);
    res.attached.push(child);
    let lines = wait_line(&proxy_out, "ready", "proxy container");
    assert!(
        lines
            .iter()
            .any(|l| l == "listening listener=public addr=0.0.0.0:8080 tls=false"),
        "{lines:?}"
    );

    let published: SocketAddr = docker_ok(&["port", &proxy, "8080/tcp"])
        .lines()
        .next()
        .expect("a published address")
        .parse()
        .expect("published address");
    assert!(published.ip().is_loopback(), "{published}");
    let reply = get(published, "/through-the-image");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""version":"v-image""#), "{reply}");
    assert!(reply.contains(r#""path":"/through-the-image""#), "{reply}");

    // The unprivileged process wrote its desired state into the volume.
    let state = docker(&[
        "cp",
        &format!("{proxy}:/var/lib/switchyard/state.json"),
        "-",
    ]);
    assert!(state.status.success(), "{}", text(&state));
    assert!(
        String::from_utf8_lossy(&state.stdout).contains("\"app\""),
        "state.json does not name the service"
    );

    drop(res);
    let left = docker(&["image", "inspect", &image]);
    assert!(!left.status.success(), "image {image} was not removed");
}
