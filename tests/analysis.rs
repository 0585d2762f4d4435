//! End-to-end tests of deployments that judge themselves, through the real `switchyard`
//! binary and real upstreams (the built-in demo upstream with `fail_rate`/`latency`): canary
//! analysis rolling back on errors and on latency, a dry run that only records, too little
//! traffic being inconclusive rather than a pass; and undo after success: `rollback` within
//! `retire_previous.after` switching back under load with no failed request, re-deploying the
//! previous stack once it was retired, refused while a deployment runs, the retirement time
//! surviving a `kill -9`, process replicas kept then stopped; and a shadow step against a failing
//! version (it needs the proxy's mirroring, `proxy/src/shadow.rs`, from the traffic work).

mod support;

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::deploy::{CI, OPS, is_terminal};
use support::{Client, Proxy, Reaper, Upstream, api, config, pid_alive, sha256_hex, wait_json};

const HOST: &str = "web.test";

/// Service `web` on `web.test` with the given stacks and a `deploy` and an `operate` token.
fn setup(stacks: &[(&str, &str, u32, Vec<SocketAddr>)], extra: &str) -> String {
    config(
        stacks,
        &format!("hosts = [\"{HOST}\"]\n"),
        &format!(
            "[[tokens]]\nname = \"ci\"\nrole = \"deploy\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"ops\"\nrole = \"operate\"\nsha256 = \"{}\"\n\n{extra}",
            sha256_hex(CI),
            sha256_hex(OPS)
        ),
    )
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

async fn deployment(proxy: &Proxy, id: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        what,
        done,
    )
    .await
}

async fn wait_end(proxy: &Proxy, id: u64, phase: &str) -> Value {
    let v = deployment(proxy, id, phase, is_terminal).await;
    assert_eq!(v["phase"], phase, "deployment ended otherwise: {v:#}");
    v
}

async fn service(proxy: &Proxy) -> Value {
    let (status, v) = api(proxy.control, "GET", "/v1/services/web", Some(CI), None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The service view without what every write or request changes.
fn comparable(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("service object");
    o.remove("revision");
    o.remove("updated_at");
    for s in o["stacks"].as_array_mut().expect("stacks") {
        for e in s["endpoints"].as_array_mut().expect("endpoints") {
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

fn logged<'a>(v: &'a Value, needle: &str) -> Option<&'a str> {
    v["log"]
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|l| l["line"].as_str())
        .find(|s| s.contains(needle))
}

fn verdicts(v: &Value) -> Vec<String> {
    v["analysis"]
        .as_array()
        .expect("analysis windows")
        .iter()
        .map(|w| w["verdict"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Sequential keep-alive clients sending `GET /` until `stop` (at most 20,000 requests each);
/// each returns its (status, version) answers in order.
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
                let deadline = tokio::time::Instant::now() + support::WAIT * 2;
                while !stop.load(Ordering::Relaxed)
                    && seen.len() < 20_000
                    && tokio::time::Instant::now() < deadline
                {
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

async fn finish(
    stop: &AtomicBool,
    clients: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>,
) -> Vec<Vec<(u16, String)>> {
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for c in clients {
        out.push(c.await.expect("load client"));
    }
    out
}

fn canary(analysis: Value, steps: Value) -> Value {
    json!({"canary": {"steps": steps, "analysis": analysis}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_answering_30_percent_500s_rolls_back_at_the_first_window_with_the_figure() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start_with("v2", 0.3, Duration::ZERO).await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 2, stop.clone());
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": canary(
                json!({"interval": "1s", "min_requests": 10, "max_error_rate": 0.01}),
                json!([{"weight": 50}, {"weight": 100}]))}),
    )
    .await;
    let v = wait_end(&proxy, id, "rolled_back").await;
    let answers = finish(&stop, clients).await;
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("analysis failed at 1/2: error rate 0.3")
            && reason.contains(" > 0.01 over "),
        "{reason}"
    );
    assert_eq!(verdicts(&v), ["fail"], "the first window rolls back: {v:#}");
    let w = &v["analysis"][0];
    assert!(
        w["new"]["requests"].as_u64().expect("requests") >= 10,
        "{w}"
    );
    assert!(w["new"]["errors"].as_u64().expect("errors") > 0, "{w}");
    assert!(
        w["baseline"]["requests"].as_u64().expect("baseline") > 0,
        "{w}"
    );
    assert!(
        logged(&v, "weights blue=0 green=100").is_none(),
        "never shifted past the failing step: {v:#}"
    );
    let served = logged(&v, "previous weights served")
        .unwrap_or_else(|| panic!("rollback timing not logged: {v:#}"));
    eprintln!("measurement: {served}");
    assert_eq!(comparable(service(&proxy).await), before);
    // Every answer came from an upstream: the new stack's 500s while it had traffic, no
    // proxy error.
    assert!(
        answers
            .iter()
            .flatten()
            .all(|(s, _)| *s == 200 || *s == 500)
    );
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        let r = c
            .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
            .await;
        assert_eq!((r.status, r.version()), (200, "v1".to_owned()));
    }
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_records_the_failing_verdict_and_does_not_roll_back() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start_with("v2", 0.3, Duration::ZERO).await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 2, stop.clone());
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": canary(
                json!({"interval": "500ms", "min_requests": 10, "max_error_rate": 0.01, "dry_run": true}),
                json!([{"weight": 50, "pause": "manual"}, {"weight": 100}])),
            "retire_previous": {"after": "0s"}}),
    )
    .await;
    let v = deployment(&proxy, id, "two failing windows", |v| {
        is_terminal(v) || verdicts(v).iter().filter(|s| *s == "fail").count() >= 2
    })
    .await;
    assert_eq!(v["phase"], "shifting", "{v:#}");
    assert_eq!(v["step"]["waiting"], "promote", "{v:#}");
    assert!(v["reason"].is_null());
    let line = logged(&v, "analysis 1/2 (dry run): fail: error rate 0.3").expect("logged verdict");
    assert!(line.contains(" > 0.01 over "), "{line}");
    // `switchyard status` shows the latest window.
    let token = proxy.dir.path().join("ci.token");
    std::fs::write(&token, format!("{CI}\n")).expect("token file");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "--control", &format!("http://{}", proxy.control)])
        .args([
            "--token-file",
            token.to_str().expect("utf-8"),
            "--service",
            "web",
        ])
        .output()
        .await
        .expect("run status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "analysis of deployment {id} at 1/2: fail (error rate 0.3"
        )),
        "{text}"
    );
    let (status, v) = api(
        proxy.control,
        "POST",
        &format!("/v1/services/web/deployments/{id}/promote"),
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    wait_end(&proxy, id, "succeeded").await;
    finish(&stop, clients).await;
    assert_eq!(weights(&service(&proxy).await), [("green".to_owned(), 100)]);
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_with_its_p99_above_the_bound_rolls_back() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start_with("v2", 0.0, Duration::from_millis(250)).await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 4, stop.clone());
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": canary(
                json!({"interval": "2s", "min_requests": 4, "max_p99": "100ms"}),
                json!([{"weight": 50}, {"weight": 100}]))}),
    )
    .await;
    let v = wait_end(&proxy, id, "rolled_back").await;
    let answers = finish(&stop, clients).await;
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("analysis failed at 1/2: p99 ") && reason.contains("ms > 100ms over "),
        "{reason}"
    );
    // A slow version completes few requests: a window may be inconclusive first, never a pass.
    let judged = verdicts(&v);
    assert_eq!(judged.last().map(String::as_str), Some("fail"), "{v:#}");
    assert!(!judged.iter().any(|s| s == "pass"), "{v:#}");
    assert_eq!(comparable(service(&proxy).await), before);
    assert!(answers.iter().flatten().all(|(s, _)| *s == 200));
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn too_little_traffic_is_inconclusive_never_a_pass() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start("v2").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    // No client traffic at all: a healthy new version, but nothing to judge it by.
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": canary(
                json!({"interval": "300ms", "min_requests": 10, "max_error_rate": 0.01, "max_inconclusive": 2}),
                json!([{"weight": 50}, {"weight": 100}]))}),
    )
    .await;
    let v = wait_end(&proxy, id, "rolled_back").await;
    assert_eq!(verdicts(&v), ["inconclusive", "inconclusive"], "{v:#}");
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with(
            "analysis inconclusive at 1/2 for 2 windows in a row: too few requests: 0 < 10 in "
        ),
        "{reason}"
    );
    assert!(logged(&v, "step 1 waits for a passing analysis window").is_some());
    assert!(logged(&v, "weights blue=0 green=100").is_none(), "{v:#}");
    assert_eq!(comparable(service(&proxy).await), before);
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_within_after_switches_back_atomically_under_load_with_no_failed_request() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start("v2").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    // The default `after` (10m) keeps blue at weight 0.
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]}}),
    )
    .await;
    let v = wait_end(&proxy, id, "succeeded").await;
    assert_eq!(v["standby"]["stacks"], json!(["blue"]), "{v:#}");
    assert_eq!(
        weights(&service(&proxy).await),
        [("blue".to_owned(), 0), ("green".to_owned(), 100)]
    );
    let (status, list) = api(
        proxy.control,
        "GET",
        "/v1/services/web/deployments",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["deployments"][0]["standby"]["stacks"], json!(["blue"]));

    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 2, stop.clone());
    let base = blue.requests();
    // Load is running on green before the switch.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let g0 = green.requests();
    while green.requests() < g0 + 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load reached green"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, undo) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200, "{undo}");
    assert_eq!(undo["phase"], "succeeded", "{undo:#}");
    assert_eq!(undo["undo_of"], id);
    let after = blue.requests();
    while blue.requests() < after + 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load reached blue"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let answers = finish(&stop, clients).await;
    assert!(blue.requests() > base);
    for seen in &answers {
        assert!(
            seen.iter().all(|(s, _)| *s == 200),
            "a failed request: {:?}",
            seen.iter().find(|(s, _)| *s != 200)
        );
        // Each client saw green, then blue, and never green again after the switch.
        let first_blue = seen
            .iter()
            .position(|(_, v)| v == "v1")
            .expect("blue answers");
        assert!(
            seen[first_blue..].iter().all(|(_, v)| v == "v1"),
            "not one switch"
        );
        assert!(seen[..first_blue].iter().all(|(_, v)| v == "v2"));
    }
    assert_eq!(comparable(service(&proxy).await), before);
    let v = deployment(&proxy, id, "the undone deployment", |_| true).await;
    assert_eq!(v["undone_by"], undo["id"]);
    assert!(v["standby"].is_null());
    let (_, history) = api(
        proxy.control,
        "GET",
        "/v1/history?service=web",
        Some(CI),
        None,
    )
    .await;
    let entries = history["entries"].as_array().expect("entries");
    let last = entries.last().expect("history");
    assert_eq!(
        (last["action"].as_str(), last["token"].as_str()),
        (Some("restore_service"), Some("ci"))
    );
    let (status, again) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(OPS),
        None,
    )
    .await;
    assert_eq!(status, 403, "role deploy");
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn after_retirement_rollback_redeploys_the_previous_version_and_is_refused_while_a_deployment_runs()
 {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start("v2").await;
    let proxy = Proxy::start(&setup(&[], ""));
    let first = start(
        &proxy,
        &json!({"stack": "blue", "version": "v1", "source": {"endpoints": [blue.addr.to_string()]},
            "retire_previous": {"after": "0s"}}),
    )
    .await;
    wait_end(&proxy, first, "succeeded").await;
    let second = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "retire_previous": {"after": "500ms"}}),
    )
    .await;
    wait_end(&proxy, second, "succeeded").await;
    let v = deployment(&proxy, second, "blue retired", |v| v["standby"].is_null()).await;
    assert!(logged(&v, "previous stacks retired").is_some(), "{v:#}");
    assert_eq!(weights(&service(&proxy).await), [("green".to_owned(), 100)]);

    let (status, undo) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 201, "{undo}");
    assert_eq!(undo["undo_of"], second);
    assert_eq!(
        (undo["stack"].as_str(), undo["version"].as_str()),
        (Some("blue"), Some("v1"))
    );
    let third = undo["id"].as_u64().expect("id");
    wait_end(&proxy, third, "succeeded").await;
    // As before the second deployment: blue (re-registered) alone, green retired at once as
    // blue's deployment asked.
    let svc = service(&proxy).await;
    assert_eq!(weights(&svc), [("blue".to_owned(), 100)]);
    assert_eq!(svc["stacks"][0]["version"], "v1");
    let v = deployment(&proxy, second, "the undone deployment", |v| {
        !v["undone_by"].is_null()
    })
    .await;
    assert_eq!(v["undone_by"], third);
    let mut c = Client::connect(proxy.addr("public")).await;
    let r = c
        .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
        .await;
    assert_eq!(r.version(), "v1");

    let running = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 10, "pause": "manual"}, {"weight": 100}]}}}),
    )
    .await;
    deployment(&proxy, running, "the manual step", |v| {
        v["step"]["waiting"] == "promote"
    })
    .await;
    let (status, refused) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("in progress"),
        "{refused}"
    );
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn the_retirement_time_survives_a_kill_9() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start("v2").await;
    let state = tempfile::tempdir().expect("state dir");
    let text = setup(
        &[("blue", "v1", 100, vec![blue.addr])],
        &format!(
            "[control]\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n",
            state.path().display()
        ),
    );
    let mut proxy = Proxy::start(&text);
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "retire_previous": {"after": "3s"}}),
    )
    .await;
    let v = wait_end(&proxy, id, "succeeded").await;
    let until = v["standby"]["until"].as_str().expect("until").to_owned();
    proxy.child.kill().expect("kill -9");
    proxy.child.wait().expect("reaped");

    let proxy = Proxy::start(&text);
    let v = deployment(&proxy, id, "the record after the restart", |_| true).await;
    if !v["standby"].is_null() {
        assert_eq!(
            v["standby"]["until"],
            until.as_str(),
            "the deadline is kept"
        );
    }
    let v = deployment(&proxy, id, "blue retired after the restart", |v| {
        v["standby"].is_null()
    })
    .await;
    assert!(logged(&v, "previous stacks retired").is_some(), "{v:#}");
    assert_eq!(weights(&service(&proxy).await), [("green".to_owned(), 100)]);
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_step_against_a_failing_version_rolls_back_and_every_client_answer_came_from_the_live_stack()
 {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start_with("v2", 1.0, Duration::ZERO).await;
    let proxy = Proxy::start(&setup(&[("blue", "v1", 100, vec![blue.addr])], ""));
    let before = comparable(service(&proxy).await);
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(proxy.addr("public"), 2, stop.clone());
    let id = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": {"endpoints": [green.addr.to_string()]},
            "strategy": canary(
                json!({"interval": "1s", "min_requests": 5, "max_error_rate": 0.01}),
                json!([{"shadow": {"percent": 50, "duration": "30s"}}, {"weight": 100}]))}),
    )
    .await;
    let v = wait_end(&proxy, id, "rolled_back").await;
    let answers = finish(&stop, clients).await;
    let reason = v["reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("analysis failed at shadow: error rate 1 > 0.01 over "),
        "{reason}"
    );
    assert!(logged(&v, "phase shadowing").is_some(), "{v:#}");
    assert!(
        logged(&v, "phase shifting").is_none(),
        "no user request reached green: {v:#}"
    );
    let answered: usize = answers.iter().map(Vec::len).sum();
    for seen in &answers {
        assert!(
            seen.iter().all(|(s, v)| *s == 200 && v == "v1"),
            "an answer not from the live stack: {:?}",
            seen.iter().find(|(s, v)| *s != 200 || v != "v1")
        );
    }
    // Counted at the upstreams: blue answered every client request, green only got copies.
    assert_eq!(blue.requests(), answered as u64);
    assert!(
        green.requests() >= 5,
        "copies reached green: {}",
        green.requests()
    );
    assert_eq!(comparable(service(&proxy).await), before);
    assert!(proxy.stop().success());
}

fn process(version: &str) -> Value {
    json!({"process": {"command": [env!("CARGO_BIN_EXE_switchyard"), "demo-upstream", "--bind",
        "127.0.0.1:{port}", "--version", version], "replicas": 1}})
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_a_process_deployment_serves_the_kept_replicas_and_stops_the_newer_ones() {
    let reaper = Reaper::default();
    let proxy = Proxy::start(&setup(&[], ""));
    let blue = start(
        &proxy,
        &json!({"stack": "blue", "version": "v1", "source": process("v1"),
            "retire_previous": {"after": "0s", "drain_timeout": "5s"}}),
    )
    .await;
    let blue_pids = pids(&wait_end(&proxy, blue, "succeeded").await);
    reaper.add(blue_pids.clone());
    let green = start(
        &proxy,
        &json!({"stack": "green", "version": "v2", "source": process("v2"),
            "retire_previous": {"drain_timeout": "5s"}}),
    )
    .await;
    let green_pids = pids(&wait_end(&proxy, green, "succeeded").await);
    reaper.add(green_pids.clone());
    assert_eq!((blue_pids.len(), green_pids.len()), (1, 1));
    assert!(
        pid_alive(blue_pids[0]),
        "the previous replicas keep running"
    );

    let (status, undo) = api(
        proxy.control,
        "POST",
        "/v1/services/web/rollback",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200, "{undo}");
    assert!(
        !pid_alive(green_pids[0]),
        "the newer stack's replica is stopped"
    );
    assert!(pid_alive(blue_pids[0]));
    assert_eq!(weights(&service(&proxy).await), [("blue".to_owned(), 100)]);
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..10 {
        let r = c
            .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
            .await;
        assert_eq!((r.status, r.version()), (200, "v1".to_owned()));
    }
    assert!(proxy.stop().success());
}
