//! Deployment routes through `router(state).oneshot(..)` over the in-memory data plane:
//! validation and refusals before any effect, roles, and a deployment driven to the end.

use axum::http::Method;
use serde_json::json;

use crate::fake::{DEPLOY, Fixture, OPERATE, READ, config_text};

const START: &str = "/v1/services/auth/deployments";

fn body(stack: &str, strategy: serde_json::Value) -> String {
    json!({"stack": stack, "version": "v2", "source": {"endpoints": ["127.0.0.1:9010"]}, "strategy": strategy,
        "retire_previous": {"after": "0s"}})
        .to_string()
}

#[tokio::test]
async fn refusals_change_nothing_and_name_the_problem() {
    let f = Fixture::start(&config_text()).await;
    let before = f.get("/v1/services/auth").await.bytes;
    let cases: [(&str, Option<&str>, String, u16, &str); 6] = [
        (START, Some(READ), body("red", json!({"blue_green": {}})), 403, "forbidden"),
        (START, Some(DEPLOY), body("green", json!({"blue_green": {}})), 409, "conflict"),
        ("/v1/services/nope/deployments", Some(DEPLOY), body("red", json!({"blue_green": {}})), 404, "not_found"),
        (START, Some(DEPLOY), body("red", json!({"canary": {"steps": [{"weight": 50}]}})), 400, "invalid_value"),
        (START, Some(DEPLOY), json!({"stack": "red", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]}, "analysis": {}}).to_string(), 422, "invalid_body"),
        (START, Some(DEPLOY), json!({"stack": "red", "version": "v2", "source": {"endpoints": ["127.0.0.1:1"]}, "post_integration": [{"http": {"path": "/"}}]}).to_string(), 400, "invalid_value"),
    ];
    for (uri, token, b, status, code) in cases {
        let a = f.call(Method::POST, uri, token, Some(&b)).await;
        assert_eq!(
            a.status.as_u16(),
            status,
            "{b}: {}",
            String::from_utf8_lossy(&a.bytes)
        );
        assert_eq!(a.error().0, code, "{b}");
    }
    assert_eq!(f.get("/v1/services/auth").await.bytes, before);
    let list = f.get(START).await.json();
    assert_eq!(list["deployments"], json!([]));
}

#[tokio::test]
async fn operator_commands_need_operate_and_a_running_deployment() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::POST,
            &format!("{START}/1/promote"),
            Some(READ),
            None,
        )
        .await;
    assert_eq!(a.status, 403);
    let a = f
        .call(
            Method::POST,
            &format!("{START}/1/abort"),
            Some(OPERATE),
            None,
        )
        .await;
    assert_eq!(a.status, 404);
    let a = f.get(&format!("{START}/1/events")).await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn an_endpoints_deployment_without_checks_runs_to_succeeded_through_the_writer() {
    let f = Fixture::start(&config_text()).await;
    // The fake data plane reports the new endpoint healthy.
    f.dp.endpoints.lock().expect("not poisoned").insert(
        ("auth".into(), "red".into()),
        vec![crate::data_plane::EndpointStatus {
            address: "127.0.0.1:9010".into(),
            state: crate::data_plane::EndpointState::Healthy,
            in_flight: 0,
            requests_total: 0,
            detail: None,
        }],
    );
    let a = f
        .call(
            Method::POST,
            START,
            Some(DEPLOY),
            Some(&body("red", json!({"blue_green": {}}))),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(a.json()["created_by"], "deployer");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let v = loop {
        let v = f.get(&format!("{START}/1")).await.json();
        if v["phase"] == "succeeded" || tokio::time::Instant::now() > deadline {
            break v;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    let svc = f.get("/v1/services/auth").await.json();
    let stacks: Vec<(String, u64)> = svc["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_owned(),
                s["weight"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        stacks,
        [("green".into(), 0), ("red".into(), 100)],
        "blue retired, green untouched"
    );
    assert_eq!(svc["deployment"], serde_json::Value::Null);
    let history = f.get("/v1/history?service=auth").await.json();
    let actions: Vec<&str> = history["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["token"] == "deployer")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["add_stack", "set_weights", "delete_stack"]);
}
