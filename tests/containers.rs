//! Container stacks on a real Docker Engine, through the real binary.
//!
//! There is no registry: the images are built here, `FROM scratch`, from the built-in
//! `switchyard demo-upstream` and the shared libraries it needs (as
//! `contrib/docker/build-image.sh` does for the main image): `switchyard-test-upstream:v1` and
//! `:v2` answer with their version, `switchyard-test-unhealthy:v3` has a `HEALTHCHECK` that
//! always fails. They are built once while tests use them and removed by name when the last
//! user is done; every container a test's Switchyard starts is named
//! `switchyard-test-<case>-...` and removed by name when the test ends, failed or not.
//!
//! The tests take the Engine one at a time: Docker 20.10's network code (what Debian 12 ships)
//! can deadlock when containers of parallel tests exit and are removed concurrently. Should the
//! Engine hang all the same, every docker command is bounded and, once one did not answer, the
//! remaining tests fail at once instead of each waiting out its bounds.
//!
//! Without an Engine the tests print why they skip; with `CI=true` a missing Engine fails them.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use support::deploy::{CI, OPS, is_terminal, tokens};
use support::{Client, Proxy, Upstream, WAIT, api, wait_json};

const HOST: &str = "web.test";
const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const IMAGE_V1: &str = "switchyard-test-upstream:v1";
const IMAGE_V2: &str = "switchyard-test-upstream:v2";
const IMAGE_UNHEALTHY: &str = "switchyard-test-unhealthy:v3";
/// Bound on a whole deployment (container starts included).
const DEPLOY_WAIT: Duration = Duration::from_secs(60);

/// `docker ARGS`: (success, stdout, stderr), bounded at 2 minutes.
fn docker(args: &[&str]) -> (bool, String, String) {
    docker_within(120, args)
}

/// `docker ARGS` given at most `secs` seconds: an Engine that hangs (Docker 20.10's network
/// code can deadlock on concurrent container exits and removals) fails the test with a message
/// instead of hanging the suite.
fn docker_within(secs: u32, args: &[&str]) -> (bool, String, String) {
    if ENGINE_HUNG.load(Ordering::Relaxed) {
        return (
            false,
            String::new(),
            format!("`docker {}` not tried: the Engine hangs", args.join(" ")),
        );
    }
    match Command::new("timeout")
        .arg(secs.to_string())
        .arg("docker")
        .args(args)
        .output()
    {
        Ok(o) if o.status.code() == Some(124) => {
            ENGINE_HUNG.store(true, Ordering::Relaxed);
            (
                false,
                String::new(),
                format!("`docker {}` did not answer within {secs} s", args.join(" ")),
            )
        }
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), e.to_string()),
    }
}

/// Whether an Engine answers (within 30 s); panics under CI when none does, else says why the
/// test skips.
fn engine_or_skip(test: &str) -> bool {
    assert!(
        !ENGINE_HUNG.load(Ordering::Relaxed),
        "a docker command of an earlier test did not answer: the Docker Engine hangs"
    );
    let (ok, _, err) = docker_within(30, &["info", "--format", "{{.ServerVersion}}"]);
    if ok {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but no Docker Engine answers `docker info`: {err}"
    );
    eprintln!(
        "skipping {test}: no Docker Engine answers `docker info`: {}",
        err.trim()
    );
    false
}

/// Set when a docker command did not answer in time.
static ENGINE_HUNG: AtomicBool = AtomicBool::new(false);

/// How many tests use the images now (running or waiting for their turn); the first builds
/// them, the last removes them.
static IMAGE_USERS: Mutex<usize> = Mutex::new(0);

/// Whether a test has the Engine now, and the wait for it.
static TURN: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// The test images and the Engine's turn, for as long as this lives.
struct Images;

impl Images {
    fn acquire() -> Self {
        {
            let mut users = IMAGE_USERS.lock().unwrap_or_else(|p| p.into_inner());
            if *users == 0 {
                build_images();
            }
            *users += 1;
        }
        let (busy, free) = &TURN;
        let mut busy = busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = free.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Images
    }
}

impl Drop for Images {
    fn drop(&mut self) {
        let (busy, free) = &TURN;
        *busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        free.notify_one();
        let mut users = IMAGE_USERS.lock().unwrap_or_else(|p| p.into_inner());
        *users -= 1;
        if *users == 0 {
            // Best effort: an image still in use by a leftover container stays.
            docker(&["rmi", "-f", IMAGE_V1, IMAGE_V2, IMAGE_UNHEALTHY]);
        }
    }
}

/// Copies the binary and every library the loader resolves for it into `root`.
fn rootfs(root: &Path) {
    std::fs::create_dir_all(root).expect("rootfs");
    let bin = root.join("switchyard");
    std::fs::copy(BIN, &bin).expect("copy binary");
    // Smaller layers; a missing strip only costs disk.
    let _ = Command::new("strip")
        .arg("--strip-debug")
        .arg(&bin)
        .status();
    let out = Command::new("ldd").arg(BIN).output().expect("ldd");
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let lib = match line.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "=>", path, ..] if path.starts_with('/') => path.to_owned(),
            [path, ..] if path.starts_with('/') => path.to_owned(),
            _ => continue,
        };
        let dest = root.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("lib folder")).expect("lib folder");
        std::fs::copy(&lib, &dest).expect("copy library");
    }
}

fn build_images() {
    let ctx = tempfile::tempdir().expect("build context");
    rootfs(&ctx.path().join("rootfs"));
    let images = [
        (IMAGE_V1, "v1", ""),
        (IMAGE_V2, "v2", ""),
        (
            IMAGE_UNHEALTHY,
            "v3",
            // Exits 2 (unknown subcommand): unhealthy after the first check.
            "HEALTHCHECK --interval=200ms --timeout=2s --retries=1 CMD [\"/switchyard\", \"no-such-command\"]\n",
        ),
    ];
    for (tag, version, health) in images {
        let dockerfile = format!(
            "FROM scratch\nCOPY rootfs/ /\n{health}STOPSIGNAL SIGINT\nENTRYPOINT [\"/switchyard\", \"demo-upstream\", \"--bind\", \"0.0.0.0:8080\", \"--version\", \"{version}\"]\n"
        );
        let file = ctx.path().join(format!("Dockerfile.{version}"));
        std::fs::write(&file, dockerfile).expect("dockerfile");
        let (ok, _, err) = docker(&[
            "build",
            "--quiet",
            "--tag",
            tag,
            "--file",
            file.to_str().expect("utf-8 path"),
            ctx.path().to_str().expect("utf-8 path"),
        ]);
        assert!(ok, "cannot build {tag}: {err}");
    }
}

/// Every container whose name starts with `prefix`.
fn containers(prefix: &str) -> Vec<String> {
    let (ok, out, err) = docker(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(ok, "docker ps: {err}");
    let mut names: Vec<String> = out
        .lines()
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// Removes this test's containers (by name) now and when dropped.
struct Cleanup(String);

impl Cleanup {
    fn new(service: &str) -> Self {
        let c = Self(format!("switchyard-{service}-"));
        c.remove();
        c
    }

    /// One container at a time: fewer concurrent removals for the Engine's network code. Best
    /// effort and never panicking (it also runs while a failed test unwinds).
    fn remove(&self) {
        let (_, out, _) = docker(&["ps", "-a", "--format", "{{.Names}}"]);
        for name in out.lines().filter(|n| n.starts_with(&self.0)) {
            docker(&["rm", "-f", name]);
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Service `service` on `web.test` with one stack `seed` (v0, weight 100) on `seed`; state in
/// `state`; `extra` appended (e.g. a `[docker]` table).
fn config(service: &str, seed: SocketAddr, state: &Path, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n[[services]]\nname = \"{service}\"\nlisteners = [\"public\"]\nhosts = [\"{HOST}\"]\n\n[[services.stacks]]\nname = \"seed\"\nversion = \"v0\"\nweight = 100\nendpoints = [\"{seed}\"]\n\n{}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n\n{extra}\n",
        tokens(),
        state.display()
    )
}

/// A Switchyard in its own folder, state under it.
fn start_proxy(service: &str, seed: SocketAddr, extra: &str) -> Proxy {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    Proxy::start_in(dir, &config(service, seed, &state, extra))
}

fn container_source(image: &str, replicas: u32) -> Value {
    json!({"container": {"image": image, "replicas": replicas, "port": 8080, "pull": "never"}})
}

/// A deployment body: `stack` from `source`, checked by the stack's `/health`.
/// The previous stack is retired at once (`after: 0s`): these tests are about the containers
/// retirement stops; the standby window that `rollback` uses is tested in tests/analysis.rs.
fn body(stack: &str, version: &str, source: Value) -> Value {
    json!({"stack": stack, "version": version, "source": source,
           "health_check": {"path": "/health", "interval": "100ms"},
           "retire_previous": {"after": "0s", "drain_timeout": "2s"}})
}

async fn start(proxy: &Proxy, service: &str, body: &Value) -> u64 {
    let (status, v) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/{service}/deployments"),
        Some(CI),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_u64().expect("id")
}

/// Polls deployment `id` until `done` (or it ends), bounded by [`DEPLOY_WAIT`].
async fn follow(proxy: &Proxy, service: &str, id: u64, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/v1/services/{service}/deployments/{id}");
    let deadline = tokio::time::Instant::now() + DEPLOY_WAIT;
    loop {
        let (status, v) = api(proxy.control, "GET", &path, Some(CI), None).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) || is_terminal(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deployment stuck: {v:#}\n{}",
            proxy.stderr()
        );
        // A poll interval, bounded by the deadline above; the condition is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished(proxy: &Proxy, service: &str, id: u64) -> Value {
    follow(proxy, service, id, |_| false).await
}

/// Deploys `stack` of `image` and waits for success.
async fn deploy_ok(proxy: &Proxy, service: &str, stack: &str, image: &str, version: &str) -> Value {
    let id = start(
        proxy,
        service,
        &body(stack, version, container_source(image, 2)),
    )
    .await;
    let v = finished(proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}\n{}", proxy.stderr());
    v
}

/// The container names a deployment's view lists.
fn unit_names(v: &Value) -> Vec<String> {
    let mut names: Vec<String> = v["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|u| u["container"].as_str().expect("container").to_owned())
        .collect();
    names.sort();
    names
}

/// `n` requests through the proxy: the versions that answered, in order; every one must be
/// a 200.
async fn load(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut c = Client::connect(addr).await;
    let mut seen = Vec::with_capacity(n);
    for i in 0..n {
        let r = c.request("GET", "/", &[("host", HOST)], Bytes::new()).await;
        assert_eq!(
            r.status,
            200,
            "request {i} of {n} failed: {:?} {}",
            r.error(),
            String::from_utf8_lossy(&r.body)
        );
        seen.push(r.version());
    }
    seen
}

/// Milliseconds between two RFC 3339 times of the deployment log.
fn ms_between(a: &str, b: &str) -> f64 {
    let fmt = &time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(a, fmt).expect("time");
    let b = time::OffsetDateTime::parse(b, fmt).expect("time");
    (b - a).as_seconds_f64() * 1000.0
}

/// The time of the first log line containing `text`.
fn log_time<'a>(v: &'a Value, text: &str) -> Option<&'a str> {
    v["log"]
        .as_array()?
        .iter()
        .find(|l| l["line"].as_str().is_some_and(|s| s.contains(text)))
        .and_then(|l| l["time"].as_str())
}

/// Prints where the time from `POST` to `succeeded` went (for benches/RESULTS.md).
fn print_timing(v: &Value) {
    let t0 = v["created_at"].as_str().expect("created_at");
    let end = v["finished_at"].as_str().expect("finished_at");
    let at = |text: &str| log_time(v, text).unwrap_or(t0);
    let total = ms_between(t0, end);
    let created = ms_between(t0, at("created container"));
    let started = ms_between(at("created container"), at("started container"));
    let open = ms_between(at("started container"), at("phase waiting_healthy"));
    let health = ms_between(at("phase waiting_healthy"), at("phase pre_integration"));
    let retire = ms_between(at("phase retiring"), end);
    let own = total - created - started - open - health - retire;
    eprintln!(
        "timing: total {total:.0} ms = image check + create {created:.0} ms + container start {started:.0} ms + port open {open:.0} ms + health {health:.0} ms + retire (stop, remove) {retire:.0} ms + switchyard's own {own:.0} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_of_two_containers_under_load_loses_no_request_and_removes_the_old_containers() {
    if !engine_or_skip("blue_green_of_two_containers") {
        return;
    }
    let service = "test-bluegreen";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let first = deploy_ok(&proxy, service, "blue", IMAGE_V1, "v1").await;
    let blue = unit_names(&first);
    assert_eq!(
        blue,
        [
            "switchyard-test-bluegreen-blue-0",
            "switchyard-test-bluegreen-blue-1"
        ]
    );
    assert_eq!(containers(&cleanup.0), blue);

    let mut green = body("green", "v2", container_source(IMAGE_V2, 2));
    green["pre_integration"] = json!([{"http": {"path": "/health", "expect_status": 200}}]);
    green["post_integration"] = json!([{"http": {"path": "/", "expect_body_contains": "v2"}}]);
    let addr = proxy.addr("public");
    let client = tokio::spawn(async move {
        // Bounded: 4 rounds of 200 requests, each round bounded by the client's own timeout.
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.extend(load(addr, 200).await);
        }
        seen
    });
    let id = start(&proxy, service, &green).await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}\n{}", proxy.stderr());
    let seen = tokio::time::timeout(WAIT, client)
        .await
        .expect("load finishes")
        .expect("load task");
    assert_eq!(seen.len(), 800, "every request answered 200");
    assert!(
        seen.iter().all(|s| s == "v1" || s == "v2"),
        "only the containers answered: {:?}",
        seen.iter()
            .filter(|s| *s != "v1" && *s != "v2")
            .collect::<Vec<_>>()
    );
    print_timing(&v);
    let green_names = unit_names(&v);
    assert_eq!(
        containers(&cleanup.0),
        green_names,
        "the blue containers are gone, the green ones run"
    );
    let after = load(addr, 20).await;
    assert!(after.iter().all(|s| s == "v2"), "{after:?}");
    proxy.stop();
    // The containers outlive Switchyard (a restart re-adopts them).
    assert_eq!(containers(&cleanup.0), green_names);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_of_containers_from_the_client_waits_for_a_manual_promote() {
    if !engine_or_skip("canary_of_containers") {
        return;
    }
    let service = "test-canary";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let token = proxy.dir.path().join("ci.token");
    std::fs::write(&token, CI).expect("token file");
    let control = format!("http://{}", proxy.control);
    let out = tokio::process::Command::new(BIN)
        .args(["deploy", "--control", &control, "--token-file"])
        .arg(&token)
        .args(["--service", service, "--stack", "green", "--version", "v2"])
        .args([
            "--image",
            IMAGE_V2,
            "--port",
            "8080",
            "--replicas",
            "2",
            "--pull",
            "never",
        ])
        .args(["--canary", "50:manual,100"])
        .output()
        .await
        .expect("run the client");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = 1;
    let v = follow(&proxy, service, id, |v| v["step"]["waiting"] == "promote").await;
    assert_eq!(v["phase"], "shifting", "{v:#}");
    let seen = load(proxy.addr("public"), 200).await;
    let v2 = seen.iter().filter(|s| *s == "v2").count();
    assert!(
        v2 > 0 && v2 < 200,
        "both stacks answer at 50%: {v2} of 200 from v2"
    );
    let (status, r) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/{service}/deployments/{id}/promote"),
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    let seen = load(proxy.addr("public"), 50).await;
    assert!(seen.iter().all(|s| s == "v2"), "{seen:?}");
    assert_eq!(containers(&cleanup.0), unit_names(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_failing_its_healthcheck_is_rolled_back_and_receives_no_request() {
    if !engine_or_skip("container_failing_its_healthcheck") {
        return;
    }
    let service = "test-unhealthy";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let mut source = container_source(IMAGE_UNHEALTHY, 2);
    source["container"]["health"] = json!("docker");
    let addr = proxy.addr("public");
    let client = tokio::spawn(async move { load(addr, 300).await });
    let id = start(&proxy, service, &body("bad", "v3", source)).await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.contains("switchyard-test-unhealthy-bad-") && reason.contains("is unhealthy"),
        "{reason}"
    );
    let seen = tokio::time::timeout(WAIT, client)
        .await
        .expect("load finishes")
        .expect("load task");
    assert!(
        seen.iter().all(|s| s == "v0"),
        "the unhealthy containers received no client request: {seen:?}"
    );
    assert_eq!(
        containers(&cleanup.0),
        Vec::<String>::new(),
        "rolled back: removed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_canary_then_restart_finishes_and_leaves_no_unknown_container() {
    if !engine_or_skip("kill_9_mid_canary") {
        return;
    }
    let service = "test-crash";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = config(service, seed.addr, &dir.path().join("state"), "");
    let proxy = Proxy::start_in(dir, &conf);
    deploy_ok(&proxy, service, "blue", IMAGE_V1, "v1").await;
    let mut b = body("green", "v2", container_source(IMAGE_V2, 2));
    b["strategy"] =
        json!({"canary": {"steps": [{"weight": 30, "pause": "manual"}, {"weight": 100}]}});
    let id = start(&proxy, service, &b).await;
    let v = follow(&proxy, service, id, |v| v["step"]["waiting"] == "promote").await;
    assert_eq!(v["phase"], "shifting", "{v:#}");
    let green = unit_names(&v);
    let dir = proxy.kill9();
    // Both stacks' containers run on while Switchyard is down.
    assert_eq!(containers(&cleanup.0).len(), 4);
    let proxy = Proxy::start_in(dir, &conf);
    let v = follow(&proxy, service, id, |v| v["step"]["waiting"] == "promote").await;
    assert_eq!(v["phase"], "shifting", "resumed at the manual step: {v:#}");
    let seen = load(proxy.addr("public"), 100).await;
    assert!(seen.iter().all(|s| s == "v1" || s == "v2"), "{seen:?}");
    let (status, r) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/{service}/deployments/{id}/promote"),
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}\n{}", proxy.stderr());
    assert_eq!(unit_names(&v), green, "the same containers, re-adopted");
    assert_eq!(
        containers(&cleanup.0),
        green,
        "no container the state does not know"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_kill_of_a_replica_is_followed_by_a_restart() {
    if !engine_or_skip("docker_kill_of_a_replica") {
        return;
    }
    let service = "test-dockerkill";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let v = deploy_ok(&proxy, service, "green", IMAGE_V2, "v2").await;
    let victim = unit_names(&v)[0].clone();
    let started_at = |name: &str| {
        let (ok, out, err) = docker(&[
            "inspect",
            "--format",
            "{{.State.StartedAt}} {{.State.Running}}",
            name,
        ]);
        assert!(ok, "{err}");
        out.trim().to_owned()
    };
    let before = started_at(&victim);
    let (ok, _, err) = docker(&["kill", &victim]);
    assert!(ok, "{err}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = started_at(&victim);
        if now != before && now.ends_with("true") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{victim} was not restarted: {now}\n{}",
            proxy.stderr()
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_json(
        proxy.control,
        &format!("/v1/services/{service}"),
        Some(CI),
        "both replicas healthy again",
        |v| {
            v["stacks"][0]["endpoints"]
                .as_array()
                .is_some_and(|e| e.len() == 2 && e.iter().all(|e| e["state"] == "healthy"))
        },
    )
    .await;
    let seen = load(proxy.addr("public"), 50).await;
    assert!(seen.iter().all(|s| s == "v2"), "{seen:?}");
    assert_eq!(containers(&cleanup.0), unit_names(&v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_engine_is_named_in_the_rollback_reason() {
    let service = "test-noengine";
    let seed = Upstream::start("v0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A socket file nothing listens on any more.
    let socket: PathBuf = dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind socket"));
    let extra = format!("[docker]\nhost = \"unix://{}\"\n", socket.display());
    let proxy = start_proxy(service, seed.addr, &extra);
    let id = start(
        &proxy,
        service,
        &body("green", "v2", container_source(IMAGE_V2, 1)),
    )
    .await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.contains(&format!(
            "cannot reach the Docker Engine at unix://{}: ",
            socket.display()
        )),
        "{reason}"
    );
    let seen = load(proxy.addr("public"), 10).await;
    assert!(seen.iter().all(|s| s == "v0"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_and_a_port_never_opened_are_clear_errors() {
    if !engine_or_skip("an_unknown_image") {
        return;
    }
    let service = "test-errors";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let missing = "switchyard-test-nosuch:v1.5";
    let id = start(
        &proxy,
        service,
        &body("green", "v2", container_source(missing, 1)),
    )
    .await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains(&format!(
            "image {missing} not found locally and pull is \"never\""
        ))),
        "{v:#}"
    );

    // The image serves on 8080; the deployment says 9999.
    let mut source = container_source(IMAGE_V1, 1);
    source["container"]["port"] = json!(9999);
    source["container"]["start_timeout"] = json!("3s");
    let id = start(&proxy, service, &body("green", "v1", source)).await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.contains("replica switchyard-test-errors-green-0 did not open port 9999 within 3s")
            && reason.contains("listening addr=0.0.0.0:8080"),
        "the reason quotes the replica's last log lines: {reason}"
    );
    assert_eq!(containers(&cleanup.0), Vec::<String>::new());

    // Refused before an id is handed out.
    let mut bad = container_source(IMAGE_V1, 0);
    bad["container"]["port"] = json!(0);
    bad["container"]["labels"] = json!({"switchyard.owner": "me"});
    let (status, r) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/{service}/deployments"),
        Some(CI),
        Some(&body("green", "v1", bad)),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    let message = r["error"]["message"].as_str().expect("message");
    for field in [
        "source.container.replicas",
        "source.container.port",
        "source.container.labels",
    ] {
        assert!(message.contains(field), "{field} named: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_provisioning_then_restart_rolls_back_and_removes_the_containers() {
    if !engine_or_skip("kill_9_while_provisioning") {
        return;
    }
    let service = "test-crashstart";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = config(service, seed.addr, &dir.path().join("state"), "");
    let proxy = Proxy::start_in(dir, &conf);
    // Port 9999 never opens: provisioning waits (up to a minute) with its containers running.
    let mut source = container_source(IMAGE_V1, 2);
    source["container"]["port"] = json!(9999);
    source["container"]["start_timeout"] = json!("60s");
    let id = start(&proxy, service, &body("green", "v1", source)).await;
    let v = follow(&proxy, service, id, |v| {
        v["replicas"].as_array().is_some_and(|r| r.len() == 2)
            && v["log"].to_string().contains("started container")
    })
    .await;
    assert_eq!(v["phase"], "provisioning", "{v:#}");
    let dir = proxy.kill9();
    assert_eq!(containers(&cleanup.0).len(), 2, "they outlive Switchyard");
    let proxy = Proxy::start_in(dir, &conf);
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert_eq!(
        containers(&cleanup.0),
        Vec::<String>::new(),
        "the rolled-back deployment's containers are removed"
    );
    let seen = load(proxy.addr("public"), 20).await;
    assert!(seen.iter().all(|s| s == "v0"), "{seen:?}");
}

/// Every container of `prefix` with the image it runs and whether it runs: `name image running`.
fn containers_with_images(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for name in containers(prefix) {
        let (ok, info, err) = docker(&[
            "inspect",
            "--format",
            "{{.Config.Image}} {{.State.Running}}",
            &name,
        ]);
        assert!(ok, "{err}");
        out.push(format!("{name} {}", info.trim()));
    }
    out
}

/// Deploys stack `blue` of [`IMAGE_V1`] (version v1) with four containers.
async fn four_containers(proxy: &Proxy, service: &str) -> Vec<String> {
    let id = start(
        proxy,
        service,
        &body("blue", "v1", container_source(IMAGE_V1, 4)),
    )
    .await;
    let v = finished(proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}\n{}", proxy.stderr());
    let names = unit_names(&v);
    assert_eq!(names.len(), 4);
    names
}

/// A rolling update of stack `blue` to [`IMAGE_V2`] (version v2), one container at a time.
fn rolling_body(interval: &str) -> Value {
    let mut b = body(
        "blue",
        "v2",
        json!({"container": {"image": IMAGE_V2, "port": 8080, "pull": "never"}}),
    );
    b["strategy"] =
        json!({"rolling": {"batch_size": 1, "interval": interval, "start_first": true}});
    b["healthy_timeout"] = json!("20s");
    b
}

/// The `blue` stack as the service view shows it: (version, healthy endpoints, endpoints).
async fn blue_stack(proxy: &Proxy, service: &str) -> (String, usize, Vec<String>) {
    let (status, v) = api(
        proxy.control,
        "GET",
        &format!("/v1/services/{service}"),
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let blue = v["stacks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "blue"))
        .cloned()
        .unwrap_or(Value::Null);
    let endpoints = blue["endpoints"].as_array().cloned().unwrap_or_default();
    let healthy = endpoints.iter().filter(|e| e["state"] == "healthy").count();
    let mut addresses: Vec<String> = endpoints
        .iter()
        .filter_map(|e| e["address"].as_str().map(str::to_owned))
        .collect();
    addresses.sort();
    (
        blue["version"].as_str().unwrap_or("").to_owned(),
        healthy,
        addresses,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_four_containers_under_load_loses_no_request_and_keeps_four_healthy() {
    if !engine_or_skip("rolling_update_of_four_containers") {
        return;
    }
    let service = "test-rolling";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let old = four_containers(&proxy, service).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = proxy.addr("public");
    let client = {
        let stop = stop.clone();
        tokio::spawn(async move {
            // Bounded: at most 100 rounds of 50 requests.
            let mut seen = Vec::new();
            for _ in 0..100 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                seen.extend(load(addr, 50).await);
            }
            seen
        })
    };
    // The stack view, sampled while it rolls (bounded by the stop flag and a count).
    let sampler = {
        let stop = stop.clone();
        let control = proxy.control;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && samples.len() < 100_000 {
                let (_, v) = api(control, "GET", "/v1/services/test-rolling", Some(CI), None).await;
                if let Some(blue) = v["stacks"]
                    .as_array()
                    .and_then(|s| s.iter().find(|s| s["name"] == "blue"))
                {
                    let healthy = blue["endpoints"]
                        .as_array()
                        .map_or(0, |e| e.iter().filter(|e| e["state"] == "healthy").count());
                    samples.push((healthy, blue["version"].as_str().unwrap_or("").to_owned()));
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };
    let mut b = rolling_body("200ms");
    b["pre_integration"] = json!([{"http": {"path": "/", "expect_body_contains": "v2"}}]);
    b["post_integration"] =
        json!([{"http": {"path": "/", "expect_body_contains": "v2", "repeat": 8}}]);
    let id = start(&proxy, service, &b).await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}\n{}", proxy.stderr());
    let t0 = v["created_at"].as_str().expect("created_at");
    eprintln!(
        "rolling update of 4 containers, batch 1, interval 200ms, 1 pre- and 1 post-integration check: POST to succeeded in {:.0} ms",
        ms_between(t0, v["finished_at"].as_str().expect("finished_at"))
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = tokio::time::timeout(WAIT, client)
        .await
        .expect("load finishes")
        .expect("load task");
    let samples = sampler.await.expect("sampler");
    assert!(!seen.is_empty());
    eprintln!(
        "{} requests during the rolling update of 4 containers, none failed; {} stack views sampled",
        seen.len(),
        samples.len()
    );
    assert!(
        seen.iter().all(|s| s == "v1" || s == "v2"),
        "only the containers answered"
    );
    let fewest = samples.iter().map(|(h, _)| *h).min().expect("samples");
    assert!(fewest >= 4, "only {fewest} healthy replicas at some point");
    let versions: Vec<&str> = samples.iter().map(|(_, v)| v.as_str()).collect();
    assert!(
        versions.contains(&"v1 ×2, v2 ×2"),
        "the mix never showed: {versions:?}"
    );
    // The new containers took the canonical names; the old ones are gone.
    assert_eq!(unit_names(&v), old, "{v:#}");
    let running: Vec<String> = old.iter().map(|n| format!("{n} {IMAGE_V2} true")).collect();
    assert_eq!(containers_with_images(&cleanup.0), running);
    let (version, healthy, _) = blue_stack(&proxy, service).await;
    assert_eq!((version.as_str(), healthy), ("v2", 4));
    let after = load(addr, 20).await;
    assert!(after.iter().all(|s| s == "v2"), "{after:?}");
    // The replicas are kept again: one killed is restarted.
    let (ok, _, err) = docker(&["kill", &old[0]]);
    assert!(ok, "{err}");
    wait_json(
        proxy.control,
        &format!("/v1/services/{service}"),
        Some(CI),
        "the killed replica restarted and healthy",
        |v| {
            v["stacks"][0]["endpoints"]
                .as_array()
                .is_some_and(|e| e.len() == 4 && e.iter().all(|e| e["state"] == "healthy"))
                && containers_with_images("switchyard-test-rolling-")
                    .iter()
                    .all(|c| c.ends_with(" true"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_rolling_update_of_containers_restores_the_old_containers_exactly() {
    if !engine_or_skip("aborting_a_rolling_update_of_containers") {
        return;
    }
    let service = "test-rollabort";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    let old = four_containers(&proxy, service).await;
    let before = blue_stack(&proxy, service).await;
    let listed = containers_with_images(&cleanup.0);
    let id = start(&proxy, service, &rolling_body("10m")).await;
    let mid = follow(&proxy, service, id, |v| v["step"]["waiting"] == "timer").await;
    assert_eq!(mid["label"], "shifting(1/4)", "{mid:#}");
    let (version, _, _) = blue_stack(&proxy, service).await;
    assert_eq!(version, "v1 ×3, v2 ×1");
    // Four running (three old, one new) and the replaced old one stopped, kept for a rollback.
    assert_eq!(
        containers(&cleanup.0).len(),
        5,
        "{:?}",
        containers_with_images(&cleanup.0)
    );
    let (status, r) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/{service}/deployments/{id}/abort"),
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}\n{}", proxy.stderr());
    assert_eq!(
        blue_stack(&proxy, service).await,
        before,
        "the stack is back as it was"
    );
    assert_eq!(
        containers_with_images(&cleanup.0),
        listed,
        "the old containers run, the new one is gone"
    );
    let seen = load(proxy.addr("public"), 40).await;
    assert!(seen.iter().all(|s| s == "v1"), "{seen:?}");
    assert_eq!(old.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rolling_update_of_containers_then_restart_rolls_back_exactly() {
    if !engine_or_skip("kill_9_mid_rolling_update_of_containers") {
        return;
    }
    let service = "test-rollcrash";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = config(service, seed.addr, &dir.path().join("state"), "");
    let proxy = Proxy::start_in(dir, &conf);
    four_containers(&proxy, service).await;
    let before = blue_stack(&proxy, service).await;
    let listed = containers_with_images(&cleanup.0);
    let id = start(&proxy, service, &rolling_body("10m")).await;
    let mid = follow(&proxy, service, id, |v| v["step"]["waiting"] == "timer").await;
    assert_eq!(mid["label"], "shifting(1/4)", "{mid:#}");
    let dir = proxy.kill9();
    let proxy = Proxy::start_in(dir, &conf);
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}\n{}", proxy.stderr());
    assert_eq!(blue_stack(&proxy, service).await, before);
    assert_eq!(
        containers_with_images(&cleanup.0),
        listed,
        "exactly the old containers run; no container the state does not know"
    );
    let seen = load(proxy.addr("public"), 40).await;
    assert!(seen.iter().all(|s| s == "v1"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_of_containers_rolls_back_and_removes_the_new_container() {
    if !engine_or_skip("a_failing_batch_of_containers") {
        return;
    }
    let service = "test-rollfail";
    let _images = Images::acquire();
    let cleanup = Cleanup::new(service);
    let seed = Upstream::start("v0").await;
    let proxy = start_proxy(service, seed.addr, "");
    four_containers(&proxy, service).await;
    let before = blue_stack(&proxy, service).await;
    let listed = containers_with_images(&cleanup.0);
    // The new image's HEALTHCHECK fails: its first replica never counts as started.
    let mut b = rolling_body("0s");
    b["version"] = json!("v3");
    b["source"] = json!({"container": {"image": IMAGE_UNHEALTHY, "port": 8080,
        "pull": "never", "health": "docker"}});
    let id = start(&proxy, service, &b).await;
    let v = finished(&proxy, service, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}\n{}", proxy.stderr());
    let reason = v["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("unhealthy") || reason.contains("health"),
        "{reason}"
    );
    assert_eq!(blue_stack(&proxy, service).await, before);
    assert_eq!(containers_with_images(&cleanup.0), listed);
    let seen = load(proxy.addr("public"), 40).await;
    assert!(seen.iter().all(|s| s == "v1"), "{seen:?}");
}
