//! End-to-end tests of deployments through the real `switchyard` binary: blue-green under
//! load with real process replicas, canary steps with a timed and a manual pause, pre- and
//! post-integration failures rolling back exactly, abort, one deployment per service, a
//! `kill -9` during shifting (resumed, process replicas re-adopted), and the `switchyard deploy` client's exit codes.

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::deploy::{CI, OPS, is_terminal, tokens};
use support::{Client, Proxy, Reaper, Upstream, api, config, pid_alive, wait_json};

const HOST: &str = "web.test";
const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Service `web` on `web.test` with the given stacks, the two tokens, and `extra`.
fn setup(stacks: &[(&str, &str, u32, Vec<SocketAddr>)], extra: &str) -> String {
    config(
        stacks,
        &format!("hosts = [\"{HOST}\"]\n"),
        &format!("{}\n{extra}", tokens()),
    )
}

fn process(version: &str, replicas: u32) -> Value {
    json!({"process": {"command": [BIN, "demo-upstream", "--bind", "127.0.0.1:{port}", "--version", version], "replicas": replicas}})
}

async fn start(proxy: &Proxy, body: Value) -> u64 {
    let (status, v) = api(
        proxy.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(&body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_u64().expect("id")
}

async fn wait_phase(proxy: &Proxy, id: u64, phase: &str) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        phase,
        |v| v["phase"] == phase || (is_terminal(v) && v["phase"] != phase),
    )
    .await
    .tap(|v| assert_eq!(v["phase"], phase, "deployment ended otherwise: {v:#}"))
}

async fn wait_promote(proxy: &Proxy, id: u64) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        "the manual step",
        |v| v["step"]["waiting"] == "promote" || is_terminal(v),
    )
    .await
    .tap(|v| assert_eq!(v["step"]["waiting"], "promote", "{v:#}"))
}

trait Tap: Sized {
    fn tap(self, f: impl FnOnce(&Self)) -> Self {
        f(&self);
        self
    }
}
impl Tap for Value {}

async fn service(proxy: &Proxy) -> Value {
    let (status, v) = api(proxy.control, "GET", "/v1/services/web", Some(CI), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The service view without what every write changes (revision, updated_at).
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("service object");
    o.remove("revision");
    o.remove("updated_at");
    for s in o["stacks"].as_array_mut().expect("stacks") {
        for e in s["endpoints"].as_array_mut().expect("endpoints") {
            // Runtime counters and check results, not desired state.
            let e = e.as_object_mut().expect("endpoint");
            e.remove("requests_total");
            e.remove("detail");
        }
    }
    v
}

fn weights(v: &Value) -> Vec<(String, u64)> {
    v["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                s["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn pids(v: &Value) -> Vec<u32> {
    v["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .map(|p| u32::try_from(p).expect("pid"))
        .collect()
}

fn logged(v: &Value, needle: &str) -> Option<usize> {
    v["log"]
        .as_array()
        .expect("log")
        .iter()
        .position(|l| l["line"].as_str().is_some_and(|s| s.contains(needle)))
}

async fn get(c: &mut Client, pin: Option<&str>) -> support::Reply {
    let mut headers = vec![("host", HOST)];
    if let Some(p) = pin {
        headers.push(("x-switchyard-stack", p));
    }
    c.request("GET", "/", &headers, bytes::Bytes::new()).await
}

/// Sequential clients hammering the proxy until `stop`; each returns (status, version) in order.
fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<(u16, String)>>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                let mut seen = Vec::new();
                // Bounded: the deployment ends long before this many requests.
                while !stop.load(Ordering::Relaxed) && seen.len() < 200_000 {
                    let r = c
                        .try_request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
                        .await;
                    match r {
                        Ok(r) => seen.push((r.status, r.version())),
                        Err(e) => seen.push((0, e.to_string())),
                    }
                }
                seen
            })
        })
        .collect()
}

/// The nice value in `/proc/<pid>/stat` (or `/proc/<pid>/task/<tid>/stat`): field 19.
fn nice_of(stat: &std::path::Path) -> i64 {
    let text = std::fs::read_to_string(stat).expect("stat");
    let (_, rest) = text.rsplit_once(')').expect("stat's comm");
    rest.split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .expect("nice")
}

/// The control plane's threads run nicer than the proxy's so that control writes yield to
/// requests; the replicas it starts are the user's services and keep the proxy's priority.
#[tokio::test]
async fn replicas_keep_the_proxys_priority_while_the_control_threads_are_nicer() {
    let reaper = Reaper::default();
    let proxy = Proxy::start(&setup(&[], ""));
    let id = start(
        &proxy,
        json!({"stack": "blue", "version": "v1", "source": process("v1", 1)}),
    )
    .await;
    let replicas = pids(&wait_phase(&proxy, id, "succeeded").await);
    reaper.add(replicas.clone());
    let pid = proxy.child.id();
    let main = nice_of(&std::path::PathBuf::from(format!("/proc/{pid}/stat")));
    let mut control = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let task = task.expect("task").path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        // The kernel keeps 15 bytes of a thread's name: "switchyard-cont".
        if comm.trim_end().starts_with("switchyard-con") {
            control.push(nice_of(&task.join("stat")));
        }
    }
    assert!(!control.is_empty(), "no control thread found");
    assert!(
        control.iter().all(|n| *n == (main + 10).min(19)),
        "control threads' nice {control:?}, the proxy's {main}"
    );
    assert_eq!(replicas.len(), 1);
    for r in &replicas {
        assert_eq!(
            nice_of(&std::path::PathBuf::from(format!("/proc/{r}/stat"))),
            main,
            "replica {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_of_process_replicas_under_load_fails_no_request_and_stops_the_old_ones() {
    let reaper = Reaper::default();
    let proxy = Proxy::start(&setup(&[], ""));
    let checks = |v: &str| {
        json!({
            "pre_integration": [{"http": {"path": "/health", "expect_status": 200}}],
            "post_integration": [{"http": {"path": "/", "expect_body_contains": v}}],
            "retire_previous": {"after": "0s", "drain_timeout": "5s"},
        })
    };
    let mut body = json!({"stack": "blue", "version": "v1.3", "source": process("v1.3", 2)});
    merge(&mut body, checks("v1.3"));
    let id = start(&proxy, body).await;
    let blue = wait_phase(&proxy, id, "succeeded").await;
    let blue_pids = pids(&blue);
    reaper.add(blue_pids.clone());
    assert_eq!(blue_pids.len(), 2);

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 2, stop.clone());
    let mut body = json!({"stack": "green", "version": "v1.4", "source": process("v1.4", 2),
        "strategy": {"blue_green": {}}});
    merge(&mut body, checks("v1.4"));
    let clock = tokio::time::Instant::now();
    let id = start(&proxy, body).await;
    let green = wait_phase(&proxy, id, "succeeded").await;
    eprintln!(
        "blue-green of 2 process replicas, 1 pre- and 1 post-integration check: POST to succeeded in {} ms",
        clock.elapsed().as_millis()
    );
    reaper.add(pids(&green));
    // A few more requests after the cutover, then stop the load.
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        assert_eq!(get(&mut c, None).await.version(), "v1.4");
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for client in clients {
        let seen = client.await.expect("load client");
        total += seen.len();
        let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        let first_new = seen.iter().position(|(_, v)| v == "v1.4");
        let first_new = first_new.expect("the cutover is visible in versions");
        assert!(first_new > 0, "the load started on the old version");
        assert!(
            seen[first_new..].iter().all(|(_, v)| v == "v1.4"),
            "an old answer after the cutover"
        );
    }
    assert!(total > 0);
    for pid in &blue_pids {
        assert!(!pid_alive(*pid), "old replica {pid} still runs");
    }
    assert_eq!(weights(&service(&proxy).await), [("green".to_owned(), 100)]);
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn deleting_a_process_stack_through_the_api_stops_its_replicas() {
    let reaper = Reaper::default();
    let proxy = Proxy::start(&setup(&[], ""));
    let retire = json!({"after": "1h", "drain_timeout": "2s"});
    let id = start(
        &proxy,
        json!({"stack": "blue", "version": "v1", "source": process("v1", 2), "retire_previous": retire}),
    )
    .await;
    let blue = pids(&wait_phase(&proxy, id, "succeeded").await);
    reaper.add(blue.clone());
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v2", "source": process("v2", 1), "retire_previous": retire}),
    )
    .await;
    let green = pids(&wait_phase(&proxy, id, "succeeded").await);
    reaper.add(green.clone());
    // Blue waits on standby at weight 0 (an hour before its retirement); an operator removes it.
    assert!(blue.iter().all(|p| pid_alive(*p)), "blue on standby runs");
    let (status, v) = api(
        proxy.control,
        "DELETE",
        "/v1/services/web/stacks/blue",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // Bounded by the stack's drain time and a margin; the condition is what is awaited.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while blue.iter().any(|p| pid_alive(*p)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "blue's replicas {blue:?} still run after its removal\n{}",
            proxy.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(green.iter().all(|p| pid_alive(*p)), "green untouched");
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(get(&mut c, None).await.version(), "v2");
    assert!(proxy.stop().success());
}

fn merge(into: &mut Value, from: Value) {
    for (k, v) in from.as_object().expect("object") {
        into[k] = v.clone();
    }
}

#[tokio::test]
async fn canary_follows_a_timed_and_a_manual_step_and_promote_finishes_it() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v1.4", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 10, "pause": "200ms"}, {"weight": 50, "pause": "manual"}, {"weight": 100}]}},
            "retire_previous": {"after": "0s"}}),
    )
    .await;
    let v = wait_promote(&proxy, id).await;
    assert_eq!(v["label"], "shifting(2/3)");
    let ten = logged(&v, "weights blue=90 green=10").expect("step 1 applied");
    let fifty = logged(&v, "weights blue=50 green=50").expect("step 2 applied");
    assert!(ten < fifty);
    assert_eq!(
        weights(&service(&proxy).await),
        [("blue".to_owned(), 50), ("green".to_owned(), 50)]
    );
    let before = green.requests();
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..100 {
        assert_eq!(get(&mut c, None).await.status, 200);
    }
    let to_green = green.requests() - before;
    assert!((45..=55).contains(&to_green), "green got {to_green} of 100");

    let path = format!("/v1/services/web/deployments/{id}/promote");
    let (status, v) = api(proxy.control, "POST", &path, Some(OPS), None).await;
    assert_eq!(status, 200, "{v}");
    wait_phase(&proxy, id, "succeeded").await;
    assert_eq!(weights(&service(&proxy).await), [("green".to_owned(), 100)]);
    let (status, _) = api(proxy.control, "POST", &path, Some(OPS), None).await;
    assert_eq!(status, 409, "nothing left to promote");
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn pre_integration_failure_rolls_back_before_any_client_request_reaches_the_new_stack() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 1, stop.clone());
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v1.4", "source": {"endpoints": [green.addr.to_string()]},
            "pre_integration": [{"http": {"path": "/health", "expect_status": 418}}]}),
    )
    .await;
    let v = wait_phase(&proxy, id, "rolled_back").await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let seen = client.await.expect("load client");
        assert!(seen.iter().all(|(s, v)| *s == 200 && v == "v1.3"));
    }
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("status 200, expected 418")),
        "{v:#}"
    );
    // The one request the new stack saw is the check's own.
    assert_eq!(green.requests(), 1);
    assert_eq!(comparable(service(&proxy).await), before);
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn post_integration_failure_restores_the_service_exactly() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let old = Upstream::start("v1.2").await;
    let proxy = Proxy::start(&setup(
        &[
            ("blue", "v1.3", 100, vec![blue.addr]),
            ("old", "v1.2", 0, vec![old.addr]),
        ],
        "",
    ));
    let before = comparable(service(&proxy).await);
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v1.4", "source": {"endpoints": [green.addr.to_string()]},
            "post_integration": [{"http": {"path": "/", "expect_body_contains": "v9.9"}}]}),
    )
    .await;
    let v = wait_phase(&proxy, id, "rolled_back").await;
    assert!(
        logged(&v, "weights blue=0 green=100 old=0").is_some(),
        "{v:#}"
    );
    assert!(
        v["reason"]
            .as_str()
            .unwrap_or("")
            .contains("post-integration")
    );
    let after = comparable(service(&proxy).await);
    assert_eq!(after, before);
    let (_, history) = api(
        proxy.control,
        "GET",
        "/v1/history?service=web",
        Some(CI),
        None,
    )
    .await;
    let last = history["entries"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(last["action"], "restore_service");
    assert_eq!(last["token"], "ci");
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(get(&mut c, None).await.version(), "v1.3");
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn abort_mid_canary_rolls_back_and_a_second_deployment_meanwhile_is_refused() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    let body = json!({"stack": "green", "version": "v1.4", "source": {"endpoints": [green.addr.to_string()]},
        "strategy": {"canary": {"steps": [{"weight": 25, "pause": "manual"}, {"weight": 100}]}}});
    let id = start(&proxy, body.clone()).await;
    wait_promote(&proxy, id).await;
    let mut second = body;
    second["stack"] = json!("green2");
    let (status, v) = api(
        proxy.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(&second),
    )
    .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    let svc = service(&proxy).await;
    assert_eq!(svc["deployment"]["label"], "shifting(1/2)");
    assert_eq!(
        weights(&svc),
        [("blue".to_owned(), 75), ("green".to_owned(), 25)]
    );

    let path = format!("/v1/services/web/deployments/{id}/abort");
    let (status, _) = api(proxy.control, "POST", &path, Some(CI), None).await;
    assert_eq!(status, 200, "deploy includes operate");
    let v = wait_phase(&proxy, id, "rolled_back").await;
    assert_eq!(v["reason"], "aborted by ci");
    assert_eq!(comparable(service(&proxy).await), before);
    assert!(proxy.stop().success());
}

fn with_state_dir(dir: &std::path::Path, text: String) -> String {
    format!(
        "{text}\n[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
        dir.display()
    )
}

#[tokio::test]
async fn kill_9_during_shifting_resumes_an_endpoints_deployment_at_its_step() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let state = tempfile::tempdir().expect("state dir");
    let text = with_state_dir(
        state.path(),
        setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""),
    );
    let mut proxy = Proxy::start(&text);
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v1.4", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 30, "pause": "manual"}, {"weight": 100}]}}}),
    )
    .await;
    wait_promote(&proxy, id).await;
    proxy.child.kill().expect("kill -9");
    proxy.child.wait().expect("reaped");

    let proxy = Proxy::start(&text);
    let v = wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        "the resumed manual step",
        |v| logged(v, "switchyard restarted").is_some() && v["step"]["waiting"] == "promote",
    )
    .await;
    let svc = service(&proxy).await;
    assert_eq!(
        weights(&svc),
        [("blue".to_owned(), 70), ("green".to_owned(), 30)]
    );
    assert_eq!(v["weights"], json!({"blue": 70, "green": 30}));
    let mut c = Client::connect(proxy.addr("public")).await;
    let before = green.requests();
    for _ in 0..100 {
        assert_eq!(get(&mut c, None).await.status, 200);
    }
    let to_green = green.requests() - before;
    assert!((25..=35).contains(&to_green), "green got {to_green} of 100");
    let path = format!("/v1/services/web/deployments/{id}/promote");
    assert_eq!(
        api(proxy.control, "POST", &path, Some(OPS), None).await.0,
        200
    );
    wait_phase(&proxy, id, "succeeded").await;
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn kill_9_during_shifting_resumes_a_process_deployment_with_the_same_replicas() {
    let reaper = Reaper::default();
    let blue = Upstream::start("v1.3").await;
    let state = tempfile::tempdir().expect("state dir");
    let text = with_state_dir(
        state.path(),
        setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""),
    );
    let mut proxy = Proxy::start(&text);
    let id = start(
        &proxy,
        json!({"stack": "green", "version": "v1.4", "source": process("v1.4", 2),
            "strategy": {"canary": {"steps": [{"weight": 50, "pause": "manual"}, {"weight": 100}]}},
            "retire_previous": {"drain_timeout": "2s"}}),
    )
    .await;
    let v = wait_promote(&proxy, id).await;
    let green = pids(&v);
    reaper.add(green.clone());
    proxy.child.kill().expect("kill -9");
    proxy.child.wait().expect("reaped");
    assert!(
        green.iter().all(|p| pid_alive(*p)),
        "replicas outlive a killed switchyard"
    );

    let proxy = Proxy::start(&text);
    let v = wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        "the resumed manual step",
        |v| logged(v, "switchyard restarted").is_some() && v["step"]["waiting"] == "promote",
    )
    .await;
    assert_eq!(pids(&v), green, "the same replicas, re-adopted");
    assert_eq!(
        weights(&service(&proxy).await),
        [("blue".to_owned(), 50), ("green".to_owned(), 50)]
    );
    let path = format!("/v1/services/web/deployments/{id}/promote");
    assert_eq!(
        api(proxy.control, "POST", &path, Some(OPS), None).await.0,
        200
    );
    wait_phase(&proxy, id, "succeeded").await;
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        assert_eq!(get(&mut c, None).await.version(), "v1.4");
    }
    assert!(proxy.stop().success());
    assert!(
        green.iter().all(|p| pid_alive(*p)),
        "SIGTERM of switchyard leaves replicas running"
    );
}

async fn cli(args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("run the client")
}

#[tokio::test]
async fn deploy_client_exits_0_on_success_and_3_on_rollback() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let token = proxy.dir.path().join("ci.token");
    std::fs::write(&token, format!("{CI}\n")).expect("token file");
    let url = format!("http://{}", proxy.control);
    let (token, green_addr) = (token.to_string_lossy().into_owned(), green.addr.to_string());
    let common = [
        "--control",
        &url,
        "--token-file",
        &token,
        "--service",
        "web",
    ];
    let mut args = vec!["deploy"];
    args.extend(common);
    args.extend([
        "--stack",
        "green",
        "--version",
        "v1.4",
        "--endpoint",
        &green_addr,
        "--blue-green",
        "--pre-check",
        "GET",
        "/health=200",
        "--post-check",
        "GET /=200",
        "--retire-after",
        "0s",
        "--wait",
    ]);
    let out = cli(&args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("succeeded"), "{text}");

    let mut args = vec!["deploy"];
    args.extend(common);
    args.extend([
        "--stack",
        "blue",
        "--version",
        "v1.5",
        "--endpoint",
        &green_addr,
        "--pre-check",
        "GET /health=418",
        "--wait",
    ]);
    let out = cli(&args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("rolled_back") && text.contains("log:"),
        "{text}"
    );

    let mut args = vec!["status"];
    args.extend([
        "--control",
        &url,
        "--token-file",
        &token,
        "--service",
        "web",
    ]);
    let out = cli(&args).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("green"))
        .expect("green listed");
    assert!(
        line.contains("v1.4") && line.contains("100") && line.contains("ci (deployment 1"),
        "{text}"
    );

    let out = cli(&[
        "deploy",
        "--control",
        "http://127.0.0.1:1",
        "--service",
        "web",
        "--stack",
        "x",
        "--version",
        "v",
        "--endpoint",
        "127.0.0.1:9",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "connection errors exit 2");
    assert!(proxy.stop().success());
}
