//! End-to-end tests of the deploy-job workflow through the real `switchyard` binary: an
//! `Idempotency-Key` making retries safe, dry runs that change nothing, webhooks to a real
//! receiver (signed, never holding a deployment up), approval gates, and rolling updates of
//! process replicas.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;

use serde_json::{Value, json};
use support::deploy::{CI, OPS, is_terminal, tokens};
use support::{Client, Proxy, Upstream, api, config, wait_json};

const HOST: &str = "web.test";

/// Service `web` on `web.test` with the given stacks, the two tokens, and `extra`.
fn setup(stacks: &[(&str, &str, u32, Vec<SocketAddr>)], extra: &str) -> String {
    config(
        stacks,
        &format!("hosts = [\"{HOST}\"]\n"),
        &format!("{}\n{extra}", tokens()),
    )
}

/// `POST /v1/services/web/deployments` (with `query`) and extra headers: (status, JSON).
async fn post_deployment(
    proxy: &Proxy,
    query: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> (u16, Value) {
    let mut c = Client::connect(proxy.control).await;
    let auth = format!("Bearer {CI}");
    let mut all = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    let r = c
        .request(
            "POST",
            &format!("/v1/services/web/deployments{query}"),
            &all,
            bytes::Bytes::from(body.to_string()),
        )
        .await;
    (r.status, r.json())
}

async fn wait_end(proxy: &Proxy, id: u64) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        "the deployment to end",
        is_terminal,
    )
    .await
}

async fn list(proxy: &Proxy) -> Vec<Value> {
    let (status, v) = api(
        proxy.control,
        "GET",
        "/v1/services/web/deployments",
        Some(CI),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["deployments"].as_array().expect("deployments").clone()
}

/// The files that differ between two snapshots, for a failure message.
fn differing(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                todo.push(p);
            } else if !p.is_file() {
                // The upgrade hand-over socket, bound in the background after start: not state.
                continue;
            } else {
                out.insert(
                    p.display().to_string(),
                    std::fs::read(&p).expect("read file"),
                );
            }
        }
    }
    out
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_same_deployment_and_another_body_is_refused() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let body = json!({"stack": "green", "version": "v1.4",
        "source": {"endpoints": [green.addr.to_string()]},
        "strategy": {"canary": {"steps": [{"weight": 10, "pause": "manual"}, {"weight": 100}]}}});
    let key = [("idempotency-key", "ci-run-4711")];
    let (status, first) = post_deployment(&proxy, "", &key, &body).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].as_u64().expect("id");
    // The same request again (as a CI retry would send it; key order does not matter).
    let reordered: Value = serde_json::from_str(&format!(
        "{{\"strategy\": {}, \"version\": \"v1.4\", \"source\": {}, \"stack\": \"green\"}}",
        body["strategy"], body["source"]
    ))
    .expect("json");
    let (status, again) = post_deployment(&proxy, "", &key, &reordered).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"].as_u64(), Some(id));
    assert_eq!(list(&proxy).await.len(), 1, "no second deployment");
    // Another body under the same key.
    let mut other = body.clone();
    other["version"] = json!("v1.5");
    let (status, refused) = post_deployment(&proxy, "", &key, &other).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    // A key that is not visible ASCII is a bad request.
    let (status, bad) = post_deployment(&proxy, "", &[("idempotency-key", "a b")], &body).await;
    assert_eq!(status, 400, "{bad}");
    assert_eq!(list(&proxy).await.len(), 1);

    // Remembered durably: after a restart the retry still finds the deployment.
    let path = format!("/v1/services/web/deployments/{id}/abort");
    let (status, v) = api(proxy.control, "POST", &path, Some(OPS), None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(wait_end(&proxy, id).await["phase"], "rolled_back");
    let (exit, dir) = proxy.stop_keep_dir();
    assert!(exit.success());
    let config = std::fs::read_to_string(dir.path().join("switchyard.toml")).expect("config");
    let proxy = Proxy::start_in(dir, &config);
    let (status, again) = post_deployment(&proxy, "", &key, &body).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"].as_u64(), Some(id));
    assert_eq!(again["phase"], "rolled_back");
    // Without the key the same body starts a new deployment.
    let (status, fresh) = post_deployment(&proxy, "", &[], &body).await;
    assert_eq!(status, 201, "{fresh}");
    assert_eq!(fresh["id"].as_u64(), Some(id + 1));
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn a_dry_run_returns_the_plan_and_leaves_the_state_byte_identical() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let body = json!({"stack": "green", "version": "v1.4",
        "source": {"endpoints": [green.addr.to_string()]},
        "strategy": {"canary": {"steps": [{"weight": 5, "pause": "60s"}, {"weight": 50, "pause": "manual"}, {"weight": 100}]}},
        "pre_integration": [{"http": {"path": "/health"}}, {"command": ["true"]}],
        "post_integration": [{"http": {"path": "/", "expect_body_contains": "v1.4"}}]});
    let before = files(&proxy.dir.path().join("switchyard-state"));
    let (status, plan) = post_deployment(
        &proxy,
        "?dry_run=true",
        &[("idempotency-key", "dry")],
        &body,
    )
    .await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["dry_run"], true);
    let labels: Vec<&str> = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .map(|p| p["label"].as_str().expect("label"))
        .collect();
    assert_eq!(
        labels,
        [
            "provisioning",
            "waiting_healthy",
            "pre_integration",
            "shifting(1/3)",
            "shifting(2/3)",
            "shifting(3/3)",
            "post_integration",
            "retiring",
            "succeeded"
        ]
    );
    assert_eq!(
        plan["phases"][3]["weights"],
        json!({"blue": 95, "green": 5})
    );
    assert_eq!(plan["phases"][3]["pause"], "1m");
    assert_eq!(
        plan["phases"][4]["weights"],
        json!({"blue": 50, "green": 50})
    );
    assert_eq!(plan["phases"][4]["pause"], "manual");
    assert_eq!(
        plan["phases"][5]["weights"],
        json!({"blue": 0, "green": 100})
    );
    assert!(
        plan["verified"].to_string().contains("is executable"),
        "{plan}"
    );
    let after = files(&proxy.dir.path().join("switchyard-state"));
    assert!(
        after == before,
        "the dry run wrote {:?}",
        differing(&before, &after)
    );
    assert!(list(&proxy).await.is_empty());

    // Problems are reported as a start would, plus what only a dry run looks at.
    let mut bad = body.clone();
    bad["source"] = json!({"process": {"command": ["./no-such-server", "{port}"]}});
    bad["pre_integration"] = json!([{"command": ["no-such-checker-on-path"]}]);
    let (status, v) = post_deployment(&proxy, "?dry_run=true", &[], &bad).await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().expect("message");
    assert!(message.contains("source.process.command"), "{message}");
    assert!(message.contains("pre_integration[0].command"), "{message}");
    let mut named = body.clone();
    named["source"] = json!({"endpoints": ["no-such-host.invalid:80"]});
    let (status, v) = post_deployment(&proxy, "?dry_run=true", &[], &named).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .to_string()
            .contains("does not resolve"),
        "{v}"
    );
    let after = files(&proxy.dir.path().join("switchyard-state"));
    assert!(
        after == before,
        "a refused dry run wrote {:?}",
        differing(&before, &after)
    );

    // A running deployment makes the dry run of the next one fail, as the start would.
    let (status, v) = post_deployment(&proxy, "", &[], &body).await;
    assert_eq!(status, 201, "{v}");
    let mut next = body.clone();
    next["stack"] = json!("red");
    let (status, v) = post_deployment(&proxy, "?dry_run=true", &[], &next).await;
    assert_eq!(status, 409, "{v}");
    assert!(proxy.stop().success());
}

/// How a test receiver answers.
#[derive(Clone)]
enum Answer {
    /// This status and body.
    Status(u16, &'static str),
    /// Never: the request hangs (bounded by the test's end).
    Hang,
}

/// A webhook or gate receiver on 127.0.0.1: records every request (headers and body) and
/// answers as told.
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(hyper::HeaderMap, bytes::Bytes)>>>,
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<(hyper::HeaderMap, bytes::Bytes)>>> = Arc::default();
        let answer = Arc::new(Mutex::new(answer));
        let (s, a) = (seen.clone(), answer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (s, a) = (s.clone(), a.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (s, a) = (s.clone(), a.clone());
                            async move {
                                let (parts, body) = req.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                s.lock().expect("seen lock").push((parts.headers, body));
                                let answer = a.lock().expect("answer lock").clone();
                                let (status, text) = match answer {
                                    Answer::Status(code, text) => (code, text),
                                    Answer::Hang => {
                                        // Longer than any deployment in these tests.
                                        tokio::time::sleep(Duration::from_secs(600)).await;
                                        (200, "")
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                                            text.as_bytes(),
                                        )))
                                        .expect("response"),
                                )
                            }
                        },
                    );
                    // A client that goes away mid-request is fine.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            answer,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self) -> Vec<(hyper::HeaderMap, bytes::Bytes)> {
        self.seen.lock().expect("seen lock").clone()
    }

    fn answer(&self, a: Answer) {
        *self.answer.lock().expect("answer lock") = a;
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// HMAC-SHA256 (RFC 2104), written here independently of the server's.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(&opad)
            .chain_update(inner)
            .finalize(),
    )
}

#[test]
fn the_test_hmac_matches_rfc_4231() {
    assert_eq!(
        hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

async fn command(proxy: &Proxy, id: u64, word: &str) -> Value {
    let path = format!("/v1/services/web/deployments/{id}/{word}");
    let (status, v) = api(proxy.control, "POST", &path, Some(OPS), None).await;
    assert_eq!(status, 200, "{word}: {v}");
    v
}

async fn wait_for(proxy: &Proxy, id: u64, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_json(
        proxy.control,
        &format!("/v1/services/web/deployments/{id}"),
        Some(CI),
        what,
        done,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_get_every_transition_signed_and_a_bad_receiver_holds_nothing_up() {
    let good = Receiver::start(Answer::Status(200, "ok")).await;
    let hanging = Receiver::start(Answer::Hang).await;
    let failing = Receiver::start(Answer::Status(500, "boom")).await;
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let control = format!(
        "[control]\nlisten = \"127.0.0.1:0\"\n\n[[control.webhooks]]\nurl = \"{}\"\nevents = [\"deployment.*\"]\nsecret_env = \"HOOK_SECRET\"\n",
        good.url("/hooks/deploy")
    );
    let proxy = Proxy::start_with_env(
        &setup(&[("blue", "v1.3", 100, vec![blue.addr])], &control),
        &[("HOOK_SECRET", "s3cret")],
    );
    let (status, v) = post_deployment(
        &proxy,
        "",
        &[],
        &json!({"stack": "green", "version": "v1.4",
            "source": {"endpoints": [green.addr.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 50, "pause": "manual"}, {"weight": 100}]}},
            "webhooks": [{"url": hanging.url("/")}, {"url": failing.url("/x"), "events": ["deployment.step", "deployment.succeeded"]}]}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    wait_for(&proxy, id, "the manual step", |v| {
        v["step"]["waiting"] == "promote"
    })
    .await;
    command(&proxy, id, "pause").await;
    command(&proxy, id, "resume").await;
    command(&proxy, id, "promote").await;
    // It completes although one receiver hangs and one answers 500.
    let done = wait_end(&proxy, id).await;
    assert_eq!(done["phase"], "succeeded", "{done:#}");

    // The good receiver gets every transition, in order, each signed.
    let notes = wait_notes(&good, "deployment.succeeded").await;
    let mut events = Vec::new();
    for (headers, body) in &notes {
        let sig = headers
            .get("x-switchyard-signature")
            .and_then(|v| v.to_str().ok())
            .expect("signature header");
        assert_eq!(sig, format!("sha256={}", hmac_sha256(b"s3cret", body)));
        let v: Value = serde_json::from_slice(body).expect("json note");
        assert_eq!(
            (
                v["service"].as_str(),
                v["stack"].as_str(),
                v["version"].as_str()
            ),
            (Some("web"), Some("green"), Some("v1.4"))
        );
        assert_eq!(v["deployment"].as_u64(), Some(id));
        events.push((v["event"].as_str().unwrap_or("").to_owned(), v));
    }
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names.first(), Some(&"deployment.started"), "{names:?}");
    assert_eq!(names.last(), Some(&"deployment.succeeded"), "{names:?}");
    for expected in [
        "deployment.phase",
        "deployment.paused",
        "deployment.resumed",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    let steps: Vec<&Value> = events
        .iter()
        .filter(|(e, _)| e == "deployment.step")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(steps.len(), 2, "{names:?}");
    assert_eq!(steps[0]["step"], 1);
    assert_eq!(steps[0]["weights"], json!({"blue": 50, "green": 50}));
    assert_eq!(steps[1]["weights"], json!({"blue": 0, "green": 100}));

    // The failing receiver's failures show in the deployment view.
    let v = wait_for(&proxy, id, "a failed delivery in the view", |v| {
        v["webhooks"][2]["failed"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(v["webhooks"][2]["url"], failing.url("/x"));
    assert!(
        v["webhooks"][2]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("status 500")),
        "{:#}",
        v["webhooks"]
    );
    assert!(failing.seen().len() >= 2, "retried");
    assert!(!hanging.seen().is_empty(), "the hanging receiver was asked");
    assert!(proxy.stop().success());
}

/// The receiver's notes once one with `event` arrived.
async fn wait_notes(r: &Receiver, event: &str) -> Vec<(hyper::HeaderMap, bytes::Bytes)> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let seen = r.seen();
        let has = seen
            .iter()
            .any(|(h, _)| h.get("x-switchyard-event").and_then(|v| v.to_str().ok()) == Some(event));
        if has {
            return seen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event} note; got {} notes",
            seen.len()
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_gate_rejecting_rolls_back_with_its_body_approving_proceeds_and_silence_times_out() {
    let gate = Receiver::start(Answer::Status(403, "change freeze until friday")).await;
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let red = Upstream::start("v1.5").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let body = |stack: &str, gate_timeout: &str| {
        let upstream = if stack == "red" { red.addr } else { green.addr };
        json!({"stack": stack, "version": "v1.4",
            "source": {"endpoints": [upstream.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 50}, {"weight": 100}]}},
            "gates": [{"before": "step:2", "url": gate.url("/approve"), "timeout": gate_timeout, "interval": "50ms"}]})
    };
    // 403: rolled back, the body in the reason.
    let (status, v) = post_deployment(&proxy, "", &[], &body("green", "1m")).await;
    assert_eq!(status, 201, "{v}");
    let v = wait_end(&proxy, v["id"].as_u64().expect("id")).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("change freeze until friday")),
        "{v:#}"
    );
    let asked = gate.seen();
    let note: Value = serde_json::from_slice(&asked[0].1).expect("json");
    assert_eq!(
        note["weights"],
        json!({"blue": 50, "green": 50}),
        "asked at step 1"
    );

    // 200: proceeds.
    gate.answer(Answer::Status(200, "go"));
    let (status, v) = post_deployment(&proxy, "", &[], &body("green", "1m")).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let v = wait_end(&proxy, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    assert!(
        v["log"].to_string().contains("gate step:2 approved"),
        "{v:#}"
    );

    // Neither 200 nor 403 until the timeout: rolled back.
    gate.answer(Answer::Status(202, "thinking"));
    let (status, v) = post_deployment(&proxy, "", &[], &body("red", "500ms")).await;
    assert_eq!(status, 201, "{v}");
    let v = wait_end(&proxy, v["id"].as_u64().expect("id")).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not approve within")),
        "{v:#}"
    );

    // An operator's promote passes a gate that is still thinking.
    let (status, v) = post_deployment(&proxy, "", &[], &body("red", "10m")).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let waiting = wait_for(&proxy, id, "the gate", |v| {
        v["gate"].is_object() || is_terminal(v)
    })
    .await;
    assert_eq!(waiting["gate"]["before"], "step:2", "{waiting:#}");
    command(&proxy, id, "promote").await;
    let v = wait_end(&proxy, id).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    assert!(proxy.stop().success());
}

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Service `web` checked over HTTP every 100 ms (a new replica is healthy after one answer).
fn rolling_setup() -> String {
    config(
        &[],
        &format!(
            "hosts = [\"{HOST}\"]\n\n[services.health_check]\nkind = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\nhealthy_threshold = 1\n"
        ),
        &tokens(),
    )
}

fn process(version: &str, replicas: Option<u32>, extra: &[&str]) -> Value {
    let mut command = vec![
        BIN.to_owned(),
        "demo-upstream".into(),
        "--bind".into(),
        "127.0.0.1:{port}".into(),
        "--version".into(),
        version.into(),
    ];
    command.extend(extra.iter().map(|s| (*s).to_owned()));
    let mut p = json!({"command": command});
    if let Some(n) = replicas {
        p["replicas"] = json!(n);
    }
    json!({ "process": p })
}

/// Deploys stack `app` with 4 replicas of version v1.3 (blue-green) and returns their PIDs.
async fn four_replicas(proxy: &Proxy, reaper: &support::Reaper) -> Vec<u32> {
    let (status, v) = post_deployment(
        proxy,
        "",
        &[],
        &json!({"stack": "app", "version": "v1.3", "source": process("v1.3", Some(4), &[])}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let v = wait_end(proxy, v["id"].as_u64().expect("id")).await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    let pids = pids(&v);
    reaper.add(pids.clone());
    assert_eq!(pids.len(), 4);
    pids
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

async fn app_stack(proxy: &Proxy) -> Value {
    let (status, v) = api(proxy.control, "GET", "/v1/services/web", Some(CI), None).await;
    assert_eq!(status, 200, "{v}");
    v["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .find(|s| s["name"] == "app")
        .cloned()
        .expect("stack app")
}

/// The stack's desired content: version and endpoints.
fn desired(stack: &Value) -> (String, Vec<String>) {
    let mut eps: Vec<String> = stack["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["address"].as_str().expect("address").to_owned())
        .collect();
    eps.sort();
    (stack["version"].as_str().expect("version").to_owned(), eps)
}

fn rolling(version: &str, interval: &str, extra: &[&str]) -> Value {
    json!({"stack": "app", "version": version, "source": process(version, None, extra),
        "strategy": {"rolling": {"batch_size": 1, "interval": interval, "start_first": true}},
        "healthy_timeout": "3s"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_of_four_replicas_loses_no_request_and_keeps_four_healthy() {
    let reaper = support::Reaper::default();
    let proxy = Proxy::start(&rolling_setup());
    let old = four_replicas(&proxy, &reaper).await;

    let stop = Arc::new(AtomicBool::new(false));
    let public = proxy.addr("public");
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = Client::connect(public).await;
                let mut seen = Vec::new();
                // Bounded: the update ends long before this many requests.
                while !stop.load(Ordering::Relaxed) && seen.len() < 100_000 {
                    match c
                        .try_request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
                        .await
                    {
                        Ok(r) => seen.push((r.status, r.version())),
                        Err(e) => seen.push((0, e.to_string())),
                    }
                }
                seen
            })
        })
        .collect();
    // The stack view, sampled while it rolls: healthy endpoints and the version label.
    let control = proxy.control;
    let sampler = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) && samples.len() < 100_000 {
                let (_, v) = api(control, "GET", "/v1/services/web", Some(CI), None).await;
                if let Some(app) = v["stacks"]
                    .as_array()
                    .and_then(|s| s.iter().find(|s| s["name"] == "app"))
                {
                    let healthy = app["endpoints"]
                        .as_array()
                        .map_or(0, |e| e.iter().filter(|e| e["state"] == "healthy").count());
                    samples.push((healthy, app["version"].as_str().unwrap_or("").to_owned()));
                }
            }
            samples
        })
    };
    let clock = tokio::time::Instant::now();
    let (status, v) = post_deployment(&proxy, "", &[], &{
        let mut b = rolling("v1.4", "200ms", &[]);
        b["pre_integration"] = json!([{"http": {"path": "/", "expect_body_contains": "v1.4"}}]);
        b["post_integration"] =
            json!([{"http": {"path": "/", "expect_body_contains": "v1.4", "repeat": 8}}]);
        b
    })
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let done = wait_end(&proxy, id).await;
    assert_eq!(done["phase"], "succeeded", "{done:#}");
    eprintln!(
        "rolling update of 4 process replicas, batch 1, interval 200ms, 1 pre- and 1 post-integration check: POST to succeeded in {} ms",
        clock.elapsed().as_millis()
    );
    let new = pids(&done);
    reaper.add(new.clone());
    // A few more requests after the last batch, then stop.
    let mut c = Client::connect(public).await;
    for _ in 0..20 {
        let r = c
            .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
            .await;
        assert_eq!((r.status, r.version()), (200, "v1.4".to_owned()));
    }
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.expect("sampler");
    let mut total = 0;
    for client in clients {
        let seen = client.await.expect("load client");
        total += seen.len();
        let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
    }
    assert!(total > 0);
    eprintln!(
        "{total} requests during the update, none failed; {} stack views sampled",
        samples.len()
    );
    assert!(!samples.is_empty());
    let fewest = samples.iter().map(|(h, _)| *h).min().expect("samples");
    assert!(
        fewest >= 4,
        "the stack had only {fewest} healthy replicas at some point"
    );
    let versions: Vec<&str> = samples.iter().map(|(_, v)| v.as_str()).collect();
    assert!(
        versions.contains(&"v1.3 ×2, v1.4 ×2"),
        "the mix never showed: {versions:?}"
    );
    let (version, endpoints) = desired(&app_stack(&proxy).await);
    assert_eq!((version.as_str(), endpoints.len()), ("v1.4", 4));
    assert_eq!(new.len(), 4);
    for pid in &old {
        assert!(!support::pid_alive(*pid), "old replica {pid} still runs");
    }
    for pid in &new {
        assert!(support::pid_alive(*pid), "new replica {pid} is gone");
    }
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_rolling_update_midway_restores_the_old_replicas_exactly() {
    let reaper = support::Reaper::default();
    let proxy = Proxy::start(&rolling_setup());
    let old = four_replicas(&proxy, &reaper).await;
    let before = desired(&app_stack(&proxy).await);
    let (status, v) = post_deployment(&proxy, "", &[], &rolling("v1.4", "10m", &[])).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let mid = wait_for(&proxy, id, "the pause after batch 1", |v| {
        v["step"]["waiting"] == "timer" || is_terminal(v)
    })
    .await;
    assert_eq!(mid["label"], "shifting(1/4)", "{mid:#}");
    let new = pids(&mid);
    reaper.add(new.clone());
    assert_eq!(new.len(), 1);
    assert_eq!(desired(&app_stack(&proxy).await).0, "v1.3 ×3, v1.4 ×1");
    command(&proxy, id, "abort").await;
    let v = wait_end(&proxy, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert_eq!(
        desired(&app_stack(&proxy).await),
        before,
        "the stack is not as before"
    );
    assert!(!support::pid_alive(new[0]), "the new replica still runs");
    // The three untouched old replicas never stopped; the replaced one runs again.
    let alive = old.iter().filter(|p| support::pid_alive(**p)).count();
    assert_eq!(alive, 3);
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        let r = c
            .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
            .await;
        assert_eq!((r.status, r.version()), (200, "v1.3".to_owned()));
    }
    // The replica started again is supervised: the status lists four replicas serving.
    let stack = app_stack(&proxy).await;
    assert_eq!(stack["health"]["healthy"], 4, "{stack:#}");
    for pid in old {
        reaper.add([pid]);
    }
    recorded_old_replicas(&proxy, &reaper, new[0]).await;
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_rolls_the_update_back() {
    let reaper = support::Reaper::default();
    let proxy = Proxy::start(&rolling_setup());
    four_replicas(&proxy, &reaper).await;
    let before = desired(&app_stack(&proxy).await);
    // The dry run of a rolling update lists its batches; one of a stack that does not exist
    // is refused.
    let (status, plan) =
        post_deployment(&proxy, "?dry_run=true", &[], &rolling("v1.4", "1s", &[])).await;
    assert_eq!(status, 200, "{plan}");
    assert_eq!(plan["strategy"], "rolling");
    let batches: Vec<&str> = plan["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter(|p| p["phase"] == "shifting")
        .map(|p| p["detail"].as_str().expect("detail"))
        .collect();
    assert_eq!(batches.len(), 4, "{plan:#}");
    assert!(batches[1].starts_with("replicas 1..2 of app"), "{plan:#}");
    let mut other = rolling("v1.4", "1s", &[]);
    other["stack"] = json!("nope");
    let (status, v) = post_deployment(&proxy, "?dry_run=true", &[], &other).await;
    assert_eq!(status, 400, "{v}");
    // The new version never becomes healthy: its /health answers 503.
    let never = proxy.dir.path().join("never-created");
    let never = never.to_str().expect("utf-8 path");
    let (status, v) = post_deployment(
        &proxy,
        "",
        &[],
        &rolling("v1.4", "0s", &["--healthy-when", never]),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let v = wait_end(&proxy, v["id"].as_u64().expect("id")).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not healthy")),
        "{v:#}"
    );
    let new = pids(&v);
    reaper.add(new.clone());
    for pid in &new {
        assert!(!support::pid_alive(*pid), "new replica {pid} still runs");
    }
    assert_eq!(desired(&app_stack(&proxy).await), before);
    let mut c = Client::connect(proxy.addr("public")).await;
    let r = c
        .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
        .await;
    assert_eq!((r.status, r.version()), (200, "v1.3".to_owned()));
    assert!(proxy.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_interrupted_by_kill_9_rolls_back_cleanly_on_restart() {
    let reaper = support::Reaper::default();
    let config = rolling_setup();
    let proxy = Proxy::start(&config);
    let old = four_replicas(&proxy, &reaper).await;
    let before = desired(&app_stack(&proxy).await);
    let (status, v) = post_deployment(&proxy, "", &[], &rolling("v1.4", "10m", &[])).await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let mid = wait_for(&proxy, id, "the pause after batch 1", |v| {
        v["step"]["waiting"] == "timer" || is_terminal(v)
    })
    .await;
    let new = pids(&mid);
    reaper.add(new.clone());
    assert_eq!(new.len(), 1, "{mid:#}");
    let dir = proxy.kill9();
    let proxy = Proxy::start_in(dir, &config);
    let v = wait_end(&proxy, id).await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("restarted during a rolling update")),
        "{v:#}"
    );
    assert_eq!(desired(&app_stack(&proxy).await), before);
    assert!(!support::pid_alive(new[0]), "the new replica still runs");
    assert_eq!(old.iter().filter(|p| support::pid_alive(**p)).count(), 3);
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..20 {
        let r = c
            .request("GET", "/", &[("host", HOST)], bytes::Bytes::new())
            .await;
        assert_eq!((r.status, r.version()), (200, "v1.3".to_owned()));
    }
    // The replica started again on its endpoint is recorded: the stack's record lists four
    // live processes, none of them the new version's. The supervisor writes the record once
    // the replica it restarted runs, which may follow the rollback's end by a moment: polled,
    // bounded.
    recorded_old_replicas(&proxy, &reaper, new[0]).await;
    assert!(proxy.stop().success());
}

/// Waits (bounded) until the `app` stack's record lists four live v1.3 processes, none of them
/// `new`, and hands them to `reaper`: a replica started again on its endpoint has a new PID the
/// test did not see. The supervisor writes the record once the replica it restarted runs,
/// which may follow the rollback's end by a moment.
async fn recorded_old_replicas(proxy: &Proxy, reaper: &support::Reaper, new: u32) {
    let path = proxy
        .dir
        .path()
        .join("switchyard-state/replicas/web/app/stack.json");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let record = std::fs::read_to_string(&path).expect("stack record");
        let record: Value = serde_json::from_str(&record).expect("json");
        assert_eq!(record["version"], "v1.3");
        let recorded: Vec<u32> = record["units"]
            .as_array()
            .expect("units")
            .iter()
            .filter_map(|u| u["pid"].as_u64())
            .map(|p| u32::try_from(p).expect("pid"))
            .collect();
        reaper.add(recorded.clone());
        let live =
            recorded.len() == 4 && recorded.iter().all(|p| support::pid_alive(*p) && *p != new);
        if live {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stack record lists {recorded:?} (new replica {new}): {record:#}"
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `switchyard` client with the ci token against `proxy`.
async fn client(proxy: &Proxy, args: &[&str]) -> std::process::Output {
    let token = proxy.dir.path().join("ci.token");
    std::fs::write(&token, CI).expect("token file");
    let control = format!("http://{}", proxy.control);
    let mut all: Vec<&str> = vec![args[0], "--control", &control, "--token-file"];
    let token = token.to_string_lossy().into_owned();
    all.push(&token);
    all.extend(&args[1..]);
    tokio::process::Command::new(BIN)
        .args(&all)
        .output()
        .await
        .expect("run the client")
}

#[tokio::test]
async fn the_client_dry_runs_retries_with_a_key_and_prints_the_gate_it_waits_at() {
    let gate = Receiver::start(Answer::Status(202, "later")).await;
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = Proxy::start(&setup(&[("blue", "v1.3", 100, vec![blue.addr])], ""));
    let green_addr = green.addr.to_string();
    let gate_flag = format!("shift={},timeout=1m,interval=50ms", gate.url("/ok"));
    let base = [
        "deploy",
        "--service",
        "web",
        "--stack",
        "green",
        "--version",
        "v1.4",
        "--endpoint",
        &green_addr,
        "--canary",
        "50:manual,100",
        "--gate",
        &gate_flag,
    ];
    let dry = client(&proxy, &[&base[..], &["--dry-run"]].concat()).await;
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("nothing changed"), "{out}");
    assert!(
        out.contains("weights: blue=50 green=50  then pause manual"),
        "{out}"
    );
    assert!(out.contains("wait for http://"), "{out}");
    assert!(list(&proxy).await.is_empty(), "a dry run started nothing");

    let keyed = [&base[..], &["--idempotency-key", "job-7", "--wait"]].concat();
    let mut first = tokio::process::Command::new(BIN);
    let token = proxy.dir.path().join("ci.token");
    std::fs::write(&token, CI).expect("token file");
    let control = format!("http://{}", proxy.control);
    first
        .args([
            keyed[0],
            "--control",
            &control,
            "--token-file",
            &token.to_string_lossy(),
        ])
        .args(&keyed[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut waiting = first.spawn().expect("client");
    let stderr = waiting.stderr.take().expect("stderr");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let gate_line = tokio::time::timeout(support::WAIT, async {
        while let Some(l) = lines.next_line().await.expect("read") {
            if l.contains("waiting at gate shift") {
                return l;
            }
        }
        panic!("the client never printed the gate");
    })
    .await
    .expect("the gate line within the bound");
    assert!(gate_line.contains(&gate.url("/ok")), "{gate_line}");
    // Keep reading, so the client never writes into a closed pipe.
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // A retry with the same key names the running deployment instead of starting another.
    let again = client(
        &proxy,
        &[&base[..], &["--idempotency-key", "job-7"]].concat(),
    )
    .await;
    let out = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{out}");
    assert!(
        out.contains("started before with this idempotency key"),
        "{out}"
    );
    assert_eq!(list(&proxy).await.len(), 1);

    // Approve; the waiting client sees the deployment through to the manual step, then abort.
    gate.answer(Answer::Status(200, "ok"));
    let id = list(&proxy).await[0]["id"].as_u64().expect("id");
    wait_for(&proxy, id, "the manual step", |v| {
        v["step"]["waiting"] == "promote"
    })
    .await;
    command(&proxy, id, "abort").await;
    let out = tokio::time::timeout(support::WAIT, waiting.wait_with_output())
        .await
        .expect("the client ends")
        .expect("client output");
    assert_eq!(out.status.code(), Some(3), "rolled back after the abort");
    drain.await.expect("stderr reader");
    assert!(proxy.stop().success());
}
