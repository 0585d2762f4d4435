//! Restarts of Switchyard around deployments and process replicas, through the real binary
//! with real replicas (`switchyard demo-upstream`).
//!
//! The fault matrix: source (`endpoints`, `process`) × strategy (blue-green, canary with a
//! manual pause) × the moment Switchyard is stopped (`waiting_healthy`, `pre_integration`,
//! `shifting`, `post_integration`, `retiring`, after success) × how (`kill -9`, SIGTERM). Every
//! stop point is held deterministically by a gate the test opens after the restart: a health
//! endpoint answering 503 until a file exists, a command check blocking until a file exists,
//! a manual pause, or a request held in flight on the previous stack (retirement waits for
//! it). A blue-green deployment cannot be stopped in `shifting`: its one cutover is a single
//! write with no pause, so that cell is covered by the canary's manual step. After the
//! restart every deployment finishes (`succeeded`, nothing left), the service view is the
//! expected one, a bounded client load is answered entirely by the new stack, the process
//! replicas are the same processes (handed over, not restarted), and a replica killed with
//! SIGKILL comes back.
//!
//! Focused tests: replicas survive SIGTERM and are re-adopted; a replica that logs every
//! request keeps serving after `kill -9`; the demo's Ctrl-C leaves no replica; retirement
//! after a restart stops the respawned process.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::deploy::{CI, OPS, is_terminal, tokens};
use support::{Client, Proxy, Reaper, WAIT, api, config, pid_alive, wait_json};
use tokio::net::TcpListener;
use tokio::sync::watch;

const HOST: &str = "web.test";
const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// Matrix cases run at once (each runs a Switchyard and up to two replicas).
const CONCURRENCY: usize = 4;

/// Service `web` on `web.test` with stack `blue` (v1, weight 100) on `blue`, state in `state`.
fn setup(blue: SocketAddr, state: &Path) -> String {
    format!(
        "{}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
        config(
            &[("blue", "v1", 100, vec![blue])],
            &format!("hosts = [\"{HOST}\"]\n"),
            &tokens()
        ),
        state.display()
    )
}

/// A test upstream answering `{"version": ..}`; `/hold` answers only once released, and
/// `/health` answers 503 while the gate file does not exist.
struct TestUpstream {
    addr: SocketAddr,
    release: watch::Sender<bool>,
    holding: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TestUpstream {
    async fn start(version: &'static str, gate: Option<PathBuf>) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (release, released) = watch::channel(false);
        let holding = Arc::new(AtomicU64::new(0));
        let held = holding.clone();
        let gate = Arc::new(gate);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (released, held, gate) = (released.clone(), held.clone(), gate.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (mut released, held, gate) =
                                (released.clone(), held.clone(), gate.clone());
                            async move {
                                let path = req.uri().path().to_owned();
                                if path == "/hold" {
                                    held.fetch_add(1, Ordering::SeqCst);
                                    // Sender dropped: the test is over; answer anyway.
                                    let _ = released.wait_for(|r| *r).await;
                                }
                                let mut r = Response::new(Full::new(Bytes::from(
                                    json!({"version": version, "path": path}).to_string(),
                                )));
                                if path == "/health"
                                    && gate.as_ref().as_ref().is_some_and(|g| !g.exists())
                                {
                                    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                                }
                                Ok::<_, Infallible>(r)
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            release,
            holding,
            task,
        }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.release.send_replace(true);
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Endpoints,
    Process,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Strategy {
    BlueGreen,
    Canary,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
    WaitingHealthy,
    PreIntegration,
    Shifting,
    PostIntegration,
    Retiring,
    Succeeded,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    Nine,
    Term,
}

#[derive(Debug, Clone, Copy)]
struct Case {
    source: Source,
    strategy: Strategy,
    stop: Stop,
    kill: Kill,
}

fn reached(stop: Stop, v: &Value) -> bool {
    match stop {
        Stop::WaitingHealthy => v["phase"] == "waiting_healthy",
        Stop::PreIntegration => v["phase"] == "pre_integration",
        Stop::Shifting => v["phase"] == "shifting" && v["step"]["waiting"] == "promote",
        Stop::PostIntegration => v["phase"] == "post_integration",
        Stop::Retiring => v["phase"] == "retiring",
        Stop::Succeeded => v["phase"] == "succeeded",
    }
}

/// Follows deployment `id` until `done`, promoting past manual steps when `promote`.
async fn drive(proxy: &Proxy, id: u64, promote: bool, done: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/v1/services/web/deployments/{id}");
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let (status, v) = api(proxy.control, "GET", &path, Some(CI), None).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(!is_terminal(&v), "deployment ended early: {v:#}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "deployment stuck: {v:#}"
        );
        if promote && v["step"]["waiting"] == "promote" {
            // 409 when it moved on meanwhile; the next poll sees where it is.
            api(
                proxy.control,
                "POST",
                &format!("{path}/promote"),
                Some(OPS),
                None,
            )
            .await;
        }
        // A poll interval, bounded by the deadline above; the condition is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(proxy: &Proxy, body: &Value) -> u64 {
    let (status, v) = api(
        proxy.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_u64().expect("id")
}

/// The process stack record: each replica's (endpoint, pid).
fn units(state: &Path, service: &str, stack: &str) -> Vec<(String, u32)> {
    let path = state.join(format!("replicas/{service}/{stack}/stack.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("stack record");
    v["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| {
            (
                u["endpoint"].as_str().expect("endpoint").to_owned(),
                u["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

fn process_source(version: &str, replicas: u32, extra: &[&str]) -> Value {
    let mut command = vec![
        BIN.to_owned(),
        "demo-upstream".into(),
        "--bind".into(),
        "127.0.0.1:{port}".into(),
        "--version".into(),
        version.into(),
    ];
    command.extend(extra.iter().map(|s| (*s).to_owned()));
    json!({"process": {"command": command, "replicas": replicas}})
}

/// A check command that passes once `gate` exists.
fn gate_check(gate: &Path) -> Value {
    json!({"command": ["sh", "-c", format!("while [ ! -e '{}' ]; do sleep 0.05; done", gate.display())]})
}

fn touch(p: &Path) {
    std::fs::write(p, b"").expect("gate file");
}

/// Sends SIGTERM, runs `meanwhile`, and waits for a clean exit (without blocking the runtime:
/// what `meanwhile` wakes must run).
async fn terminate(mut proxy: Proxy, meanwhile: impl FnOnce()) {
    proxy.signal("TERM");
    meanwhile();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(s) = proxy.child.try_wait().expect("wait") {
            assert!(
                s.success(),
                "switchyard exited with {s}: {}",
                proxy.stderr()
            );
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "switchyard did not exit on SIGTERM: {}",
            proxy.stderr()
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the service is `[green: 100]` with every endpoint healthy; its endpoints.
async fn wait_green_live(proxy: &Proxy) -> Vec<String> {
    let v = wait_json(
        proxy.control,
        "/v1/services/web",
        Some(CI),
        "green live and healthy",
        |v| {
            v["stacks"].as_array().is_some_and(|s| {
                s.len() == 1
                    && s[0]["name"] == "green"
                    && s[0]["endpoints"]
                        .as_array()
                        .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["state"] == "healthy"))
            })
        },
    )
    .await;
    assert_eq!(v["stacks"][0]["weight"], 100, "{v:#}");
    assert_eq!(v["stacks"][0]["version"], "v2", "{v:#}");
    let mut eps: Vec<String> = v["stacks"][0]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["address"].as_str().expect("address").to_owned())
        .collect();
    eps.sort();
    eps
}

/// `n` requests through the proxy, every one answered 200 by `version`.
async fn load_answers(proxy: &Proxy, n: usize, version: &str) {
    let mut c = Client::connect(proxy.addr("public")).await;
    for i in 0..n {
        let r = c.request("GET", "/", &[("host", HOST)], Bytes::new()).await;
        assert_eq!(
            (r.status, r.version()),
            (200, version.to_owned()),
            "request {i} of {n}: {:?} {}",
            r.error(),
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// SIGKILLs the replica with `pid` and waits until the stack record shows its replacement
/// running and accepting connections on the same endpoint.
async fn kill_replica_and_see_it_back(state: &Path, stack: &str, pid: u32) -> u32 {
    let before = units(state, "web", stack);
    let (endpoint, _) = before
        .iter()
        .find(|(_, p)| *p == pid)
        .cloned()
        .expect("replica in the record");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = units(state, "web", stack);
        if let Some((_, new)) = now.iter().find(|(e, _)| *e == endpoint) {
            if *new != pid
                && *new != 0
                && pid_alive(*new)
                && tokio::net::TcpStream::connect(&endpoint).await.is_ok()
            {
                assert!(!pid_alive(pid));
                return *new;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica {pid} on {endpoint} did not come back: {now:?}"
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_case(case: Case, reaper: Arc<Reaper>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let healthy = dir.path().join("healthy");
    let pre = dir.path().join("pre");
    let post = dir.path().join("post");
    for (gate, stop) in [
        (&healthy, Stop::WaitingHealthy),
        (&pre, Stop::PreIntegration),
        (&post, Stop::PostIntegration),
    ] {
        if case.stop != stop {
            touch(gate);
        }
    }
    let blue = TestUpstream::start("v1", None).await;
    let green = match case.source {
        Source::Endpoints => Some(TestUpstream::start("v2", Some(healthy.clone())).await),
        Source::Process => None,
    };
    let text = setup(blue.addr, &state);
    let mut proxy = Proxy::start(&text);
    let mut held = None;
    if case.stop == Stop::Retiring {
        let addr = proxy.addr("public");
        held = Some(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            // Ends with the connection when Switchyard is killed; only its holding matters.
            let _ = c
                .try_request("GET", "/hold", &[("host", HOST)], Bytes::new())
                .await;
        }));
        let deadline = tokio::time::Instant::now() + WAIT;
        while blue.holding.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no held request");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let source = match &green {
        Some(g) => json!({"endpoints": [g.addr.to_string()]}),
        None => process_source(
            "v2",
            2,
            &["--healthy-when", healthy.to_str().expect("utf-8 path")],
        ),
    };
    let strategy = match case.strategy {
        Strategy::BlueGreen => json!({"blue_green": {}}),
        Strategy::Canary => {
            json!({"canary": {"steps": [{"weight": 50, "pause": "manual"}, {"weight": 100}]}})
        }
    };
    let body = json!({
        "stack": "green", "version": "v2", "source": source, "strategy": strategy,
        "health_check": {"path": "/health", "interval": "100ms"},
        "healthy_timeout": "60s",
        "pre_integration": [gate_check(&pre)],
        // Through the proxy: after a restart it passes only once the new stack is healthy.
        "post_integration": [gate_check(&post), {"http": {"path": "/", "expect_status": 200}}],
        "retire_previous": {"after": "0s", "drain_timeout": "60s"},
    });
    let id = start(&proxy, &body).await;
    let v = drive(&proxy, id, case.stop != Stop::Shifting, |v| {
        reached(case.stop, v)
    })
    .await;
    // The replicas as the deployment reports them.
    let replicas: Vec<(String, u32)> = v["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|u| {
            let pid = u["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
            (
                u["endpoint"].as_str().expect("endpoint").to_owned(),
                pid.expect("pid"),
            )
        })
        .collect();
    reaper.add(replicas.iter().map(|(_, p)| *p));
    assert_eq!(
        replicas.len(),
        if case.source == Source::Process { 2 } else { 0 }
    );

    let release = || {
        blue.release.send_replace(true);
    };
    match case.kill {
        Kill::Nine => {
            proxy.child.kill().expect("kill -9");
            proxy.child.wait().expect("reaped");
            release();
        }
        Kill::Term => terminate(proxy, release).await,
    }
    if let Some(h) = held {
        h.await.expect("held request task");
    }
    for (_, pid) in &replicas {
        assert!(pid_alive(*pid), "replica {pid} died with switchyard");
    }

    for gate in [&healthy, &pre, &post] {
        touch(gate);
    }
    let proxy = Proxy::start(&text);
    let v = drive(&proxy, id, true, is_terminal).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    assert!(v["left"].is_null(), "{v:#}");
    let endpoints = wait_green_live(&proxy).await;
    match &green {
        Some(g) => assert_eq!(endpoints, [g.addr.to_string()]),
        None => {
            let mut expected: Vec<String> = replicas.iter().map(|(e, _)| e.clone()).collect();
            expected.sort();
            assert_eq!(endpoints, expected, "the stack's endpoints did not change");
        }
    }
    load_answers(&proxy, 60, "v2").await;
    if case.source == Source::Process {
        assert_eq!(
            units(&state, "web", "green"),
            replicas,
            "replicas handed over, not restarted"
        );
        let new = kill_replica_and_see_it_back(&state, "green", replicas[0].1).await;
        reaper.add([new]);
        wait_green_live(&proxy).await;
        load_answers(&proxy, 20, "v2").await;
    }
    terminate(proxy, || {}).await;
    if case.source == Source::Process {
        // SIGTERM leaves them running; the test stops them.
        for (_, pid) in units(&state, "web", "green") {
            assert!(pid_alive(pid), "replica {pid} died with switchyard");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fault_matrix_every_deployment_finishes_after_a_restart_and_the_new_stack_serves() {
    let mut cases = Vec::new();
    for source in [Source::Endpoints, Source::Process] {
        for strategy in [Strategy::BlueGreen, Strategy::Canary] {
            for stop in [
                Stop::WaitingHealthy,
                Stop::PreIntegration,
                Stop::Shifting,
                Stop::PostIntegration,
                Stop::Retiring,
                Stop::Succeeded,
            ] {
                if strategy == Strategy::BlueGreen && stop == Stop::Shifting {
                    continue;
                }
                for kill in [Kill::Nine, Kill::Term] {
                    cases.push(Case {
                        source,
                        strategy,
                        stop,
                        kill,
                    });
                }
            }
        }
    }
    let total = cases.len();
    let reaper = Arc::new(Reaper::default());
    let permits = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let clock = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for case in cases {
        let (permits, reaper) = (permits.clone(), reaper.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            let outcome = tokio::spawn(run_case(case, reaper)).await;
            (case, outcome)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = set.join_next().await {
        let (case, outcome) = joined.expect("case runner");
        if let Err(e) = outcome {
            let msg = if e.is_panic() {
                let p = e.into_panic();
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            } else {
                e.to_string()
            };
            failed.push(format!("{case:?}: {msg}"));
        }
    }
    eprintln!(
        "fault matrix: {total} cases, {} failed, {} s",
        failed.len(),
        clock.elapsed().as_secs()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Deploys `green` from process replicas (blue-green, no checks) and waits for success.
async fn deploy_process(proxy: &Proxy, stack: &str, replicas: u32, extra: &[&str]) -> u64 {
    let body = json!({"stack": stack, "version": "v2", "source": process_source("v2", replicas, extra),
        "health_check": {"path": "/health", "interval": "100ms"},
        "retire_previous": {"after": "0s", "drain_timeout": "5s"}});
    let id = start(proxy, &body).await;
    drive(proxy, id, true, is_terminal).await;
    id
}

#[tokio::test]
async fn replicas_survive_sigterm_of_switchyard_and_are_re_adopted() {
    let reaper = Reaper::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let blue = TestUpstream::start("v1", None).await;
    let text = setup(blue.addr, &state);
    let proxy = Proxy::start(&text);
    deploy_process(&proxy, "green", 2, &[]).await;
    let before = units(&state, "web", "green");
    reaper.add(before.iter().map(|(_, p)| *p));
    for (_, pid) in &before {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat")
            .1
            .split_whitespace()
            .collect();
        assert_eq!(
            fields[2],
            pid.to_string(),
            "replica {pid} leads its own process group"
        );
    }
    terminate(proxy, || {}).await;
    for (_, pid) in &before {
        assert!(
            pid_alive(*pid),
            "replica {pid} died on SIGTERM of switchyard"
        );
    }
    let proxy = Proxy::start(&text);
    wait_green_live(&proxy).await;
    load_answers(&proxy, 50, "v2").await;
    assert_eq!(
        units(&state, "web", "green"),
        before,
        "re-adopted, not restarted"
    );
    // Supervised again: a replica that dies is restarted on its endpoint.
    let new = kill_replica_and_see_it_back(&state, "green", before[1].1).await;
    reaper.add([new]);
    load_answers(&proxy, 20, "v2").await;
    terminate(proxy, || {}).await;
}

#[tokio::test]
async fn a_replica_that_logs_every_request_keeps_serving_after_kill_9_of_switchyard() {
    let reaper = Reaper::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let blue = TestUpstream::start("v1", None).await;
    let text = setup(blue.addr, &state);
    let mut proxy = Proxy::start(&text);
    deploy_process(&proxy, "green", 2, &["--log-requests"]).await;
    let before = units(&state, "web", "green");
    reaper.add(before.iter().map(|(_, p)| *p));
    load_answers(&proxy, 10, "v2").await;
    proxy.child.kill().expect("kill -9");
    proxy.child.wait().expect("reaped");
    // Requests straight to the replicas while no Switchyard runs: each writes a log line.
    for (endpoint, _) in &before {
        let mut c = Client::connect(endpoint.parse().expect("endpoint")).await;
        assert_eq!(c.get("/direct").await.status, 200);
    }
    let proxy = Proxy::start(&text);
    wait_green_live(&proxy).await;
    load_answers(&proxy, 50, "v2").await;
    assert_eq!(
        units(&state, "web", "green"),
        before,
        "the same processes serve"
    );
    let log = std::fs::read_to_string(state.join("replicas/web/green/0.log")).expect("log file");
    assert!(
        log.contains("GET /direct"),
        "replica output in its log file: {log}"
    );
    terminate(proxy, || {}).await;
}

#[tokio::test]
async fn retirement_after_a_restart_stops_the_respawned_replicas() {
    let reaper = Reaper::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let seed = TestUpstream::start("v0", None).await;
    let text = setup(seed.addr, &state);
    let mut proxy = Proxy::start(&text);
    // `green` (2 replicas) replaces the file's stack; one replica is respawned by the
    // deployment-less supervisor before the restart, the other by the re-adopting one after.
    deploy_process(&proxy, "green", 2, &[]).await;
    let first = units(&state, "web", "green");
    reaper.add(first.iter().map(|(_, p)| *p));
    let respawned_before = kill_replica_and_see_it_back(&state, "green", first[0].1).await;
    reaper.add([respawned_before]);
    proxy.child.kill().expect("kill -9");
    proxy.child.wait().expect("reaped");
    let proxy = Proxy::start(&text);
    wait_green_live(&proxy).await;
    let respawned_after = kill_replica_and_see_it_back(&state, "green", first[1].1).await;
    reaper.add([respawned_after]);

    let body = json!({"stack": "red", "version": "v3", "source": process_source("v3", 1, &[]),
        "retire_previous": {"after": "0s", "drain_timeout": "5s"}});
    let id = start(&proxy, &body).await;
    let v = drive(&proxy, id, true, is_terminal).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    assert!(v["left"].is_null(), "{v:#}");
    reaper.add(units(&state, "web", "red").iter().map(|(_, p)| *p));
    for pid in [respawned_before, respawned_after] {
        assert!(
            !pid_alive(pid),
            "respawned replica {pid} of the retired stack still runs"
        );
    }
    assert!(
        !state.join("replicas/web/green/stack.json").exists(),
        "the retired stack's record is removed"
    );
    terminate(proxy, || {}).await;
}

#[test]
fn demo_ctrl_c_stops_every_replica_it_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr");
    let mut demo = std::process::Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(dir.path().join("demo"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn demo");
    let reaper = Reaper::default();
    // Stops the demo (by its PID) if the test fails before its Ctrl-C.
    reaper.add([demo.id()]);
    let stdout = demo.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut control = None;
    while let Ok(line) = rx.recv_timeout(WAIT) {
        if let Some(a) = line.strip_prefix("control addr=") {
            control = Some(a.parse::<SocketAddr>().expect("control addr"));
        }
        if line == "ready" {
            break;
        }
    }
    let control = control.expect("the demo printed its control address and ready");
    let dashboard = std::iter::from_fn(|| rx.recv_timeout(WAIT).ok())
        .find_map(|l| l.strip_prefix("Dashboard: ").map(str::to_owned))
        .expect("the demo prints its dashboard's URL");
    assert!(
        dashboard.starts_with(&format!("http://{control}/ui/ ")),
        "{dashboard}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let pids = rt.block_on(async {
        let body = json!({"stack": "red", "version": "v2", "source": process_source("v2", 2, &[]),
            "retire_previous": {"after": "0s", "drain_timeout": "5s"}});
        let (status, v) = api(
            control,
            "POST",
            "/v1/services/demo/deployments",
            None,
            Some(&body),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        let path = format!("/v1/services/demo/deployments/{}", v["id"]);
        let v = wait_json(control, &path, None, "the demo deployment", is_terminal).await;
        assert_eq!(v["phase"], "succeeded", "{v:#}");
        units(&dir.path().join("demo/state"), "demo", "red")
    });
    reaper.add(pids.iter().map(|(_, p)| *p));
    for (_, pid) in &pids {
        assert!(pid_alive(*pid));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = tokio::time::Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = demo.try_wait().expect("wait") {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo did not exit on Ctrl-C"
        );
        // A poll interval, bounded by the deadline above.
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "demo exited with {exit}");
    for (_, pid) in &pids {
        assert!(!pid_alive(*pid), "replica {pid} outlived the demo");
    }
}
