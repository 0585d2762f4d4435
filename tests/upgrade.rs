//! Restarts and upgrades of the real binary: the state-folder lock, the default TCP health
//! check (and `kind = "none"`), endpoint health restored across a restart so that a restart is
//! not a window of 503s, and a hot upgrade under keep-alive load.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Proxy, Upstream, WAIT, api, wait_json};
use tokio::net::TcpStream;
use tokio::task::block_in_place;

fn service(bind: &str, service_extra: &str, stacks: &str) -> String {
    format!(
        "[[listeners]]\nname = \"public\"\nbind = \"{bind}\"\n\n[[services]]\nname = \"web\"\nlisteners = [\"public\"]\n{service_extra}\n{stacks}"
    )
}

fn stack(name: &str, weight: u32, eps: &[SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "\n[[services.stacks]]\nname = \"{name}\"\nweight = {weight}\nendpoints = [{}]\n{extra}\n",
        eps.join(", ")
    )
}

/// An address nothing listens on: bound, then closed again.
async fn closed_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// The state of `addr` in stack `stack` of the service view.
fn state(view: &serde_json::Value, stack: &str, addr: SocketAddr) -> String {
    view["stacks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == stack))
        .and_then(|s| s["endpoints"].as_array())
        .and_then(|e| e.iter().find(|e| e["address"] == addr.to_string()))
        .and_then(|e| e["state"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_one_state_folder_is_refused_naming_the_folder_and_the_pid() {
    let up = Upstream::start("v1").await;
    let proxy = Proxy::start(&service(
        "127.0.0.1:0",
        "",
        &stack("blue", 100, &[up.addr], ""),
    ));
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("serve")
        .arg("--config")
        .arg(&proxy.config_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, second)
        .await
        .expect("the second instance exits")
        .expect("run switchyard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second instance started: {stderr}");
    let folder = proxy.dir.path().join("switchyard-state");
    assert!(
        stderr.contains(&folder.display().to_string()),
        "no folder in: {stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", proxy.child.id())),
        "no pid in: {stderr}"
    );
    // The first one is untouched.
    let mut c = support::Client::connect(proxy.addr("public")).await;
    assert_eq!(c.get("/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_configured_check_a_dead_endpoint_leaves_rotation_and_kind_none_shows_unchecked()
{
    let up = Upstream::start("v1").await;
    let dead = closed_addr().await;
    let stacks = format!(
        "{}{}",
        stack("blue", 100, &[up.addr, dead], ""),
        stack(
            "green",
            0,
            &[up.addr, dead],
            "health_check = { kind = \"none\" }"
        )
    );
    let proxy = Proxy::start(&service("127.0.0.1:0", "", &stacks));
    // Traffic flows at once: the default TCP check starts endpoints healthy.
    let (status, view) = api(proxy.control, "GET", "/v1/services/web", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(state(&view, "blue", up.addr), "healthy", "{view}");
    let view = wait_json(
        proxy.control,
        "/v1/services/web",
        None,
        "the dead endpoint reported unhealthy",
        |v| state(v, "blue", dead) == "unhealthy",
    )
    .await;
    assert_eq!(state(&view, "blue", up.addr), "healthy", "{view}");
    // Unchecked endpoints are never shown healthy, also the dead one.
    assert_eq!(state(&view, "green", up.addr), "unchecked", "{view}");
    assert_eq!(state(&view, "green", dead), "unchecked", "{view}");
    let green = view["stacks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "green"))
        .expect("green");
    assert_eq!(green["health"]["unchecked"], 2, "{view}");
    assert_eq!(green["health"]["healthy"], 0, "{view}");
    // Out of rotation: every request reaches the live endpoint.
    let mut c = support::Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        assert_eq!(c.get("/").await.status, 200);
    }
}

/// What one request of the load saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Ok,
    Status(u16),
    /// The connection was refused.
    Refused,
    /// The connection broke before a complete answer.
    Lost,
}

/// Outcomes per epoch. The epoch is even while one process serves steadily (from its `ready`
/// on) and odd while processes change; a request counts in an epoch only when it started and
/// ended in it.
#[derive(Default)]
struct Tally {
    epoch: AtomicU64,
    stop: AtomicBool,
    seen: Mutex<HashMap<(u64, Outcome), u64>>,
}

impl Tally {
    fn record(&self, start: u64, outcome: Outcome) {
        let end = self.epoch.load(Ordering::SeqCst);
        let epoch = if start == end { start } else { u64::MAX };
        *self
            .seen
            .lock()
            .expect("tally")
            .entry((epoch, outcome))
            .or_default() += 1;
    }

    fn count(&self, epoch: u64, outcome: Outcome) -> u64 {
        self.seen
            .lock()
            .expect("tally")
            .get(&(epoch, outcome))
            .copied()
            .unwrap_or(0)
    }

    fn bad_in_steady_epochs(&self) -> Vec<((u64, Outcome), u64)> {
        let seen = self.seen.lock().expect("tally");
        let mut bad: Vec<_> = seen
            .iter()
            .filter(|((e, o), _)| e % 2 == 0 && *e != u64::MAX && *o != Outcome::Ok)
            .map(|(k, v)| (*k, *v))
            .collect();
        bad.sort_by_key(|((e, _), _)| *e);
        bad
    }

    /// Waits (bounded) until epoch `epoch` has `n` successful requests.
    async fn wait_ok(&self, epoch: u64, n: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.count(epoch, Outcome::Ok) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "epoch {epoch}: only {} requests succeeded",
                self.count(epoch, Outcome::Ok)
            );
            // A poll interval; the awaited condition is the request count.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

type Sender = http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(tcp)).await.ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// One request on `sender`: its outcome and whether the connection may be used again.
async fn request(sender: &mut Sender, addr: SocketAddr) -> (Outcome, bool) {
    let req = hyper::Request::get("/")
        .header("host", addr.to_string())
        .body(Empty::new())
        .expect("request");
    let exchange = async {
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        let close = resp
            .headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok::<_, hyper::Error>((status, close))
    };
    match tokio::time::timeout(WAIT, exchange).await {
        Ok(Ok((200, close))) => (Outcome::Ok, !close),
        Ok(Ok((s, close))) => (Outcome::Status(s), !close),
        _ => (Outcome::Lost, false),
    }
}

/// A client that opens a new connection for every request (no retries), bounded in count.
async fn fresh_connections(addr: SocketAddr, tally: Arc<Tally>) {
    for _ in 0..50_000 {
        if tally.stop.load(Ordering::SeqCst) {
            return;
        }
        let start = tally.epoch.load(Ordering::SeqCst);
        let outcome = match connect(addr).await {
            None => Outcome::Refused,
            Some(mut s) => request(&mut s, addr).await.0,
        };
        tally.record(start, outcome);
        if outcome == Outcome::Refused {
            // Nothing listens between two processes of a plain restart: no busy loop.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A keep-alive client: requests on one connection until the server closes it (or a request
/// fails), then a new connection; no request is retried. Bounded in count.
async fn keep_alive(addr: SocketAddr, tally: Arc<Tally>) {
    let mut sender = None;
    for _ in 0..50_000 {
        if tally.stop.load(Ordering::SeqCst) {
            return;
        }
        let start = tally.epoch.load(Ordering::SeqCst);
        let s = match sender.take() {
            Some(s) => s,
            None => match connect(addr).await {
                Some(s) => s,
                None => {
                    tally.record(start, Outcome::Refused);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let mut s = s;
        let (outcome, reuse) = request(&mut s, addr).await;
        tally.record(start, outcome);
        if reuse {
            sender = Some(s);
        }
    }
}

/// A check every 500ms that needs two passes: without restored health every endpoint would
/// be `unknown` (and the service answering 503) for the first checks after a start.
const HTTP_CHECK: &str = "health_check = { path = \"/health\", interval = \"500ms\" }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_load_loses_no_request_to_a_503_after_the_new_process_is_ready() {
    let up = Upstream::start("v1").await;
    let stacks = stack("blue", 100, &[up.addr], "");
    let first = block_in_place(|| Proxy::start(&service("127.0.0.1:0", HTTP_CHECK, &stacks)));
    let addr = first.addr("public");
    // Restarts bind the address the first process got.
    let text = service(&addr.to_string(), HTTP_CHECK, &stacks);
    wait_json(
        first.control,
        "/v1/services/web",
        None,
        "the endpoint healthy",
        |v| state(v, "blue", up.addr) == "healthy",
    )
    .await;
    let tally = Arc::new(Tally::default());
    let load: Vec<_> = (0..2)
        .map(|_| tokio::spawn(fresh_connections(addr, tally.clone())))
        .collect();
    tally.wait_ok(0, 50).await;

    // SIGTERM, then a new process on the same folder.
    tally.epoch.fetch_add(1, Ordering::SeqCst);
    let (status, dir) = block_in_place(|| first.stop_keep_dir());
    assert!(status.success());
    let second = block_in_place(|| Proxy::start_in(dir, &text));
    tally.epoch.fetch_add(1, Ordering::SeqCst);
    tally.wait_ok(2, 200).await;

    // kill -9 once the healthy state is on disk, then a new process again.
    let health = second.dir.path().join("switchyard-state/health.json");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !std::fs::read_to_string(&health).is_ok_and(|t| t.contains("\"healthy\": true")) {
        assert!(tokio::time::Instant::now() < deadline, "no saved health");
        // A poll interval; the awaited condition is the file's content.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tally.epoch.fetch_add(1, Ordering::SeqCst);
    let dir = block_in_place(|| second.kill9());
    let third = block_in_place(|| Proxy::start_in(dir, &text));
    tally.epoch.fetch_add(1, Ordering::SeqCst);
    tally.wait_ok(4, 200).await;

    tally.stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.expect("load task");
    }
    eprintln!("restart load: {:?}", tally.seen.lock().expect("tally"));
    // Refused connections between the processes are expected for a plain restart (nothing
    // listens then) and are not counted; from each `ready` on, nothing but 200.
    assert_eq!(tally.bad_in_steady_epochs(), vec![], "{}", third.stderr());
    let first_checks = third.stderr().contains("endpoint health restored");
    assert!(first_checks, "{}", third.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_upgrade_under_keep_alive_load_refuses_no_connection_and_loses_no_request() {
    hot_upgrade_under_load("").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_upgrade_of_two_thread_per_core_workers_hands_over_every_socket_and_loses_no_request()
{
    let runtime = "\n[runtime]\nworker_threads = 2\nscheduler = \"thread-per-core\"\n";
    let (old, new) = hot_upgrade_under_load(runtime).await;
    // Two sockets of the public listener (one per worker) and the control listener, all taken
    // over: nothing was bound anew.
    assert!(
        new.stderr().contains("sockets=3"),
        "old: {}\nnew: {}",
        old.stderr(),
        new.stderr()
    );
    assert!(!new.stderr().contains("binding anew"), "{}", new.stderr());
    // Both of the new process's workers accepted connections of the load (new connections
    // spread over the group by the kernel's hash: hundreds of them, so each gets some).
    let mut m = support::Client::connect(new.control).await;
    let text = String::from_utf8_lossy(&m.get("/metrics").await.body).into_owned();
    for w in ["0", "1"] {
        let accepted = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "switchyard_worker_connections_accepted_total{{worker=\"{w}\"}} "
                ))
            })
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(accepted > 0.0, "worker {w} accepted nothing: {text}");
    }
}

/// A hot upgrade while keep-alive and new-connection clients load the proxy, with `runtime`
/// appended to the configuration; returns the old and the new process.
async fn hot_upgrade_under_load(runtime: &str) -> (Proxy, Proxy) {
    let up = Upstream::start("v1").await;
    let stacks = stack("blue", 100, &[up.addr], "");
    let text = format!("{}{runtime}", service("127.0.0.1:0", HTTP_CHECK, &stacks));
    let mut old = block_in_place(|| Proxy::start(&text));
    let addr = old.addr("public");
    wait_json(
        old.control,
        "/v1/services/web",
        None,
        "the endpoint healthy",
        |v| state(v, "blue", up.addr) == "healthy",
    )
    .await;
    let tally = Arc::new(Tally::default());
    let mut load: Vec<_> = (0..4)
        .map(|_| tokio::spawn(keep_alive(addr, tally.clone())))
        .collect();
    load.extend((0..2).map(|_| tokio::spawn(fresh_connections(addr, tally.clone()))));
    tally.wait_ok(0, 200).await;

    let new = block_in_place(|| old.upgrade());
    assert_eq!(new.addr("public"), addr);
    assert_eq!(new.control, old.control);
    tally.epoch.fetch_add(2, Ordering::SeqCst);
    tally.wait_ok(2, 400).await;
    tally.stop.store(true, Ordering::SeqCst);
    for t in load {
        t.await.expect("load task");
    }

    // Every request in every epoch, across the hand-over too, got its 200.
    let seen = tally.seen.lock().expect("tally").clone();
    eprintln!("upgrade load: {seen:?}");
    let bad: Vec<_> = seen
        .iter()
        .filter(|((_, o), _)| *o != Outcome::Ok)
        .collect();
    assert!(
        bad.is_empty(),
        "{bad:?}\nold: {}\nnew: {}",
        old.stderr(),
        new.stderr()
    );
    // The old process drained and exited; the new one serves and owns the state folder.
    let status = block_in_place(|| old.wait_exit());
    assert!(status.success(), "{}", old.stderr());
    assert!(old.stderr().contains("handing over"), "{}", old.stderr());
    let mut c = support::Client::connect(addr).await;
    assert_eq!(c.get("/").await.status, 200);
    let (status, _) = api(new.control, "GET", "/v1/services/web", None, None).await;
    assert_eq!(status, 200);
    let lock = std::fs::read_to_string(old.dir.path().join("switchyard-state/switchyard.lock"))
        .expect("lock file");
    assert_eq!(lock.trim(), new.child.id().to_string());
    (old, new)
}
