//! End-to-end tests of the control API against the real binary: weight changes reach the very
//! next request, runtime changes survive a restart and a `kill -9`, conflicting writes get 412,
//! tokens and roles are enforced, and bad input changes nothing.

mod support;

use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use support::{BlueGreen, Client, Proxy, Upstream, config};

async fn call(
    c: &mut Client,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut headers: Vec<(&str, String)> =
        extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let body = match body {
        Some(b) => {
            headers.push(("content-type", "application/json".into()));
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = c.request(method, path, &h, body).await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn put_weights(api: &mut Client, body: Value) -> (u16, Value) {
    call(
        api,
        "PUT",
        "/v1/services/web/weights",
        None,
        Some(body),
        &[],
    )
    .await
}

fn stack_weights(service: &Value) -> HashMap<String, i64> {
    service["stacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["name"].as_str().unwrap_or("").to_owned(),
                        s["weight"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn weight_change_is_visible_on_the_next_request_and_the_split_follows() {
    let bg = BlueGreen::start().await;
    let proxy = Proxy::start(&bg.config(100, 0, "", ""));
    let mut api = Client::connect(proxy.control).await;
    let mut web = Client::connect(proxy.addr("public")).await;
    assert_eq!(web.get("/").await.version(), "blue");

    let (s, _) = put_weights(&mut api, json!({"weights": {"blue": 0, "green": 100}})).await;
    assert_eq!(s, 200);
    // The very next request, on an already-open keep-alive connection.
    assert_eq!(web.get("/").await.version(), "green");

    let (s, _) = put_weights(&mut api, json!({"weights": {"blue": 75, "green": 25}})).await;
    assert_eq!(s, 200);
    let mut counts = HashMap::new();
    for _ in 0..400 {
        *counts.entry(web.get("/").await.version()).or_insert(0) += 1;
    }
    assert_eq!(counts.get("green").copied().unwrap_or(0), 100, "{counts:?}");

    let (s, svc) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(stack_weights(&svc)["green"], 25);
}

#[tokio::test]
async fn runtime_changes_survive_restart_and_kill_nine() {
    let bg = BlueGreen::start().await;
    let green = &bg.green;
    let text = bg.config(100, 0, "", "");
    let proxy = Proxy::start(&text);
    let mut api = Client::connect(proxy.control).await;
    let (s, _) = put_weights(&mut api, json!({"weights": {"blue": 10, "green": 90}})).await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &mut api,
        "POST",
        "/v1/services/web/stacks",
        None,
        Some(json!({"name": "canary", "version": "v3", "endpoints": [green.addr.to_string()], "weight": 0})),
        &[],
    )
    .await;
    assert!(s == 200 || s == 201, "create stack: {s}");
    let (_, before) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    // kill -9 right after the acknowledged write: nothing is lost.
    let dir = proxy.kill9();

    let proxy = Proxy::start_in(dir, &text);
    let mut api = Client::connect(proxy.control).await;
    let (s, after) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(stack_weights(&after), stack_weights(&before));
    assert_eq!(after["revision"], before["revision"]);
    assert!(stack_weights(&after).contains_key("canary"));
    // And the proxy routes on the restored state.
    let mut web = Client::connect(proxy.addr("public")).await;
    let mut green_hits = 0;
    for _ in 0..100 {
        if web.get("/").await.version() == "green" {
            green_hits += 1;
        }
    }
    assert_eq!(green_hits, 90);
}

#[tokio::test]
async fn stale_if_match_gets_412_and_changes_nothing() {
    let blue = Upstream::start("blue").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 100, vec![blue.addr])], "", ""));
    let mut api = Client::connect(proxy.control).await;
    let (_, svc) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    let rev = svc["revision"].as_u64().expect("revision");
    let stale = (rev + 7).to_string();
    let (s, err) = call(
        &mut api,
        "PUT",
        "/v1/services/web/weights",
        None,
        Some(json!({"weights": {"blue": 5}})),
        &[("if-match", &stale)],
    )
    .await;
    assert_eq!(s, 412);
    assert!(
        err["error"]["code"].is_string() && err["error"]["message"].is_string(),
        "{err}"
    );
    let (_, again) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    assert_eq!(without_figures(again), without_figures(svc));
    let current = rev.to_string();
    let (s, _) = call(
        &mut api,
        "PUT",
        "/v1/services/web/weights",
        None,
        Some(json!({"weights": {"blue": 5}})),
        &[("if-match", &current)],
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_leaves_state_unchanged() {
    let blue = Upstream::start("blue").await;
    // The view is compared whole: no health check may change its counters in between.
    let proxy = Proxy::start(&config(
        &[("blue", "v1", 100, vec![blue.addr])],
        "health_check = { kind = \"none\" }",
        "",
    ));
    let mut api = Client::connect(proxy.control).await;
    let (_, before) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"blue\": 5",
        ),
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"blue\": 5}, \"colour\": 1}",
        ),
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"blue\": -1}}",
        ),
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"blue\": 10001}}",
        ),
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"blue\": 1.5}}",
        ),
        (
            "PUT",
            "/v1/services/web/weights",
            "{\"weights\": {\"purple\": 5}}",
        ),
        (
            "POST",
            "/v1/services/web/stacks",
            "{\"name\": \"Bad_Name\", \"endpoints\": [\"127.0.0.1:1\"]}",
        ),
        (
            "PUT",
            "/v1/services/nope/weights",
            "{\"weights\": {\"blue\": 5}}",
        ),
    ];
    for (method, path, body) in cases {
        let r = api
            .request(
                method,
                path,
                &[("content-type", "application/json")],
                Bytes::from(body),
            )
            .await;
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} {body}: {}",
            r.status
        );
        let v: Value = serde_json::from_slice(&r.body).expect("json error body");
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{v}"
        );
    }
    let huge = format!(
        "{{\"weights\": {{\"blue\": 5}}, \"pad\": \"{}\"}}",
        "x".repeat(200_000)
    );
    let mut fresh = Client::connect(proxy.control).await;
    let r = fresh
        .request(
            "PUT",
            "/v1/services/web/weights",
            &[("content-type", "application/json")],
            Bytes::from(huge),
        )
        .await;
    assert_eq!(r.status, 413);
    let mut api = Client::connect(proxy.control).await;
    let (_, after) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
    assert_eq!(without_figures(after), without_figures(before));
}

/// A service view without its endpoints' live traffic figures, which move with the clock
/// (their window's length and rate) and are not state.
fn without_figures(mut v: serde_json::Value) -> serde_json::Value {
    for s in v["stacks"].as_array_mut().into_iter().flatten() {
        for e in s["endpoints"].as_array_mut().into_iter().flatten() {
            if let Some(d) = e["detail"].as_object_mut() {
                d.remove("figures");
            }
        }
    }
    v
}

#[tokio::test]
async fn tokens_and_roles_are_enforced() {
    let blue = Upstream::start("blue").await;
    let hash = |s: &str| hex::encode(Sha256::digest(s.as_bytes()));
    let tokens = format!(
        "[[tokens]]\nname = \"ops\"\nrole = \"operate\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"viewer\"\nrole = \"read\"\nsha256 = \"{}\"\n\n[[tokens]]\nname = \"other-team\"\nrole = \"admin\"\nsha256 = \"{}\"\nservices = [\"billing-*\"]\n",
        hash("ops-secret"),
        hash("read-secret"),
        hash("billing-secret")
    );
    let proxy = Proxy::start(&config(
        &[("blue", "v1", 100, vec![blue.addr])],
        "",
        &tokens,
    ));
    let mut api = Client::connect(proxy.control).await;
    let body = || Some(json!({"weights": {"blue": 50}}));
    assert_eq!(
        call(&mut api, "GET", "/healthz", None, None, &[]).await.0,
        200
    );
    assert_eq!(
        call(&mut api, "GET", "/v1/services", None, None, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        call(&mut api, "GET", "/v1/services", Some("wrong"), None, &[])
            .await
            .0,
        401
    );
    assert_eq!(
        call(
            &mut api,
            "GET",
            "/v1/services",
            Some("read-secret"),
            None,
            &[]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &mut api,
            "PUT",
            "/v1/services/web/weights",
            Some("read-secret"),
            body(),
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &mut api,
            "PUT",
            "/v1/services/web/weights",
            Some("billing-secret"),
            body(),
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &mut api,
            "DELETE",
            "/v1/services/web",
            Some("ops-secret"),
            None,
            &[]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &mut api,
            "PUT",
            "/v1/services/web/weights",
            Some("ops-secret"),
            body(),
            &[]
        )
        .await
        .0,
        200
    );
    let (s, history) = call(
        &mut api,
        "GET",
        "/v1/history?service=web&limit=10",
        Some("read-secret"),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 200);
    let text = history.to_string();
    assert!(text.contains("\"ops\""), "history names the token: {text}");
    assert!(!text.contains("ops-secret"), "history never holds a secret");
}

#[tokio::test]
async fn services_can_be_created_and_deleted_from_nothing() {
    let blue = Upstream::start("made-at-runtime").await;
    let proxy = Proxy::start("[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n");
    let mut api = Client::connect(proxy.control).await;
    let mut web = Client::connect(proxy.addr("public")).await;
    assert_eq!(web.get("/").await.status, 404);
    let svc = json!({"name": "late", "listeners": ["public"], "stacks": [{"name": "blue", "version": "v1", "weight": 1, "endpoints": [blue.addr.to_string()]}]});
    let (s, _) = call(&mut api, "POST", "/v1/services", None, Some(svc), &[]).await;
    assert!(s == 200 || s == 201, "{s}");
    assert_eq!(web.get("/").await.version(), "made-at-runtime");
    let (s, _) = call(&mut api, "DELETE", "/v1/services/late", None, None, &[]).await;
    assert!(s == 200 || s == 204, "{s}");
    assert_eq!(web.get("/").await.status, 404);
    let (s, doc) = call(&mut api, "GET", "/v1/openapi.json", None, None, &[]).await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    assert!(doc["paths"]["/v1/services/{service}/weights"]["put"].is_object());
}

#[tokio::test]
async fn service_view_shows_health_check_results_per_endpoint() {
    let up = Upstream::start("checked").await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let proxy = Proxy::start(&config(
        &[("blue", "v1", 100, vec![up.addr, down])],
        "health_check = { path = \"/health\", interval = \"100ms\", timeout = \"500ms\", healthy_threshold = 1, unhealthy_threshold = 1 }",
        "",
    ));
    let mut api = Client::connect(proxy.control).await;
    let svc = tokio::time::timeout(support::WAIT, async {
        loop {
            let (_, svc) = call(&mut api, "GET", "/v1/services/web", None, None, &[]).await;
            let states: Vec<String> = svc["stacks"][0]["endpoints"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| e["state"].as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_default();
            if states == ["healthy", "unhealthy"] {
                return svc;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both endpoints checked");
    let eps = &svc["stacks"][0]["endpoints"];
    let ok = &eps[0]["detail"]["check"];
    assert!(ok["last_check_unix_ms"].as_u64().is_some(), "{eps}");
    assert_eq!(ok["last_status"], 200, "{eps}");
    assert!(ok["consecutive_successes"].as_u64() >= Some(1));
    let bad = &eps[1]["detail"]["check"];
    assert!(bad["consecutive_failures"].as_u64() >= Some(1), "{eps}");
    assert_eq!(svc["stacks"][0]["health"]["healthy"], 1);
    assert_eq!(svc["stacks"][0]["health"]["unhealthy"], 1);
}
