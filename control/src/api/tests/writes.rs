//! Accepted writes: applied to the data plane, visible in reads, recorded in the history.

use axum::body::Body;
use axum::http::{Method, Request};

use crate::fake::{ADMIN, DEPLOY, Fixture, OPERATE, config_text};

const WEIGHTS: &str = "/v1/services/auth/weights";

fn weights_of(config: &switchyard_config::Config, service: &str) -> Vec<(String, u32)> {
    config
        .service(service)
        .expect("service exists")
        .stacks()
        .iter()
        .map(|s| (s.name().as_str().to_owned(), s.weight().get()))
        .collect()
}

#[tokio::test]
async fn weight_change_is_applied_and_visible_in_get() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::PUT,
            WEIGHTS,
            Some(OPERATE),
            Some(r#"{"weights":{"blue":90,"green":10}}"#),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(f.dp.applied_count(), 1);
    let applied = f.dp.last_applied().expect("applied");
    assert_eq!(
        weights_of(&applied, "auth"),
        vec![("blue".into(), 90), ("green".into(), 10)]
    );
    assert_eq!(f.state.generation(), Some(1));
    assert_eq!(a.headers["etag"], "\"2\"");
    let v = f.get("/v1/services/auth").await.json();
    assert_eq!(v["revision"], 2);
    assert_eq!(v["origin"], "runtime");
    assert_eq!(v["stacks"][0]["weight"], 90);
    assert_eq!(v["stacks"][1]["weight"], 10);
    assert_eq!(weights_of(&f.state.desired(), "auth")[1].1, 10);
}

#[tokio::test]
async fn exclusive_weights_zero_the_stacks_not_named() {
    let f = Fixture::start(&config_text()).await;
    let body = r#"{"weights":{"green":100},"exclusive":true}"#;
    assert_eq!(
        f.call(Method::PUT, WEIGHTS, Some(OPERATE), Some(body))
            .await
            .status,
        200
    );
    let applied = f.dp.last_applied().expect("applied");
    assert_eq!(
        weights_of(&applied, "auth"),
        vec![("blue".into(), 0), ("green".into(), 100)]
    );
}

#[tokio::test]
async fn same_weights_again_change_nothing() {
    let f = Fixture::start(&config_text()).await;
    let body = r#"{"weights":{"blue":100}}"#;
    let a = f
        .call(Method::PUT, WEIGHTS, Some(OPERATE), Some(body))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["revision"], 1);
    assert_eq!(f.dp.applied_count(), 0);
}

#[tokio::test]
async fn if_match_with_an_old_revision_is_412_and_changes_nothing() {
    let f = Fixture::start(&config_text()).await;
    let before = f.get("/v1/services/auth").await.bytes;
    let put = |if_match: &str| {
        Request::builder()
            .method(Method::PUT)
            .uri(WEIGHTS)
            .header("authorization", format!("Bearer {OPERATE}"))
            .header("content-type", "application/json")
            .header("if-match", if_match)
            .body(Body::from(r#"{"weights":{"green":5}}"#))
            .expect("valid request")
    };
    let a = f.send(put("\"7\"")).await;
    assert_eq!(a.status, 412);
    let (code, message) = a.error();
    assert_eq!(code, "revision_mismatch");
    assert!(message.contains("revision 1, not 7"), "{message}");
    assert_eq!(f.get("/v1/services/auth").await.bytes, before);
    assert_eq!(f.dp.applied_count(), 0);

    assert_eq!(f.send(put("\"1\"")).await.status, 200);
    // The same condition again is now stale: the service moved to revision 2.
    assert_eq!(f.send(put("1")).await.status, 412);
}

#[tokio::test]
async fn prefer_return_minimal_answers_204_with_the_revision_and_applies_the_same() {
    let f = Fixture::start(&config_text()).await;
    let put = |prefer: &str, weight: u32| {
        Request::builder()
            .method(Method::PUT)
            .uri(WEIGHTS)
            .header("authorization", format!("Bearer {OPERATE}"))
            .header("content-type", "application/json")
            .header("prefer", prefer)
            .body(Body::from(format!(r#"{{"weights":{{"green":{weight}}}}}"#)))
            .expect("valid request")
    };
    let a = f
        .send(put("handling=lenient, return=minimal; x=1", 5))
        .await;
    assert_eq!(a.status, 204);
    assert!(a.bytes.is_empty());
    assert_eq!(a.headers["etag"], "\"2\"");
    assert_eq!(a.headers["preference-applied"], "return=minimal");
    let v = f.get("/v1/services/auth").await;
    assert_eq!(v.json()["revision"], 2);
    assert_eq!(
        weights_of(&f.dp.last_applied().expect("applied"), "auth"),
        vec![("blue".into(), 100), ("green".into(), 5)]
    );
    // Any other preference gets the whole view, as without the header.
    let a = f.send(put("return=representation", 6)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["revision"], 3);
    assert!(!a.headers.contains_key("preference-applied"));
    // An error is an error whatever the preference.
    let a = f.send(put("return=minimal", 20000)).await;
    assert_eq!(a.status, 400);
    assert_eq!(f.get("/v1/services/auth").await.json()["revision"], 3);
}

#[tokio::test]
async fn deleting_a_stack_with_weight_needs_force() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::DELETE,
            "/v1/services/auth/stacks/blue",
            Some(DEPLOY),
            None,
        )
        .await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error().0, "conflict");
    assert_eq!(f.dp.applied_count(), 0);
    let a = f
        .call(
            Method::DELETE,
            "/v1/services/auth/stacks/green",
            Some(DEPLOY),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    let a = f
        .call(
            Method::DELETE,
            "/v1/services/auth/stacks/blue?force=true&allow_no_traffic=true",
            Some(DEPLOY),
            None,
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["stacks"], serde_json::json!([]));
    let applied = f.dp.last_applied().expect("applied");
    assert!(applied.service("auth").expect("auth").stacks().is_empty());
}

#[tokio::test]
async fn stacks_register_at_weight_zero_and_endpoints_are_replaced() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::POST,
            "/v1/services/auth/stacks",
            Some(DEPLOY),
            Some(r#"{"name":"canary","version":"v1.5","endpoints":["127.0.0.1:9005"]}"#),
        )
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(a.json()["stacks"][2]["weight"], 0);
    let a = f
        .call(
            Method::PUT,
            "/v1/services/auth/stacks/canary/endpoints",
            Some(DEPLOY),
            Some(r#"{"endpoints":["127.0.0.1:9006","https://localhost:9443"]}"#),
        )
        .await;
    assert_eq!(a.status, 200);
    let applied = f.dp.last_applied().expect("applied");
    let canary = applied
        .service("auth")
        .and_then(|s| s.stack("canary"))
        .expect("canary");
    let eps: Vec<String> = canary.endpoints().iter().map(ToString::to_string).collect();
    assert_eq!(eps, vec!["127.0.0.1:9006", "https://localhost:9443"]);
}

#[tokio::test]
async fn a_service_is_created_from_nothing_and_deleted() {
    let f = Fixture::start(&config_text()).await;
    let body = r#"{"name":"api","listeners":["internal"],"path_prefix":"/api",
        "stacks":[{"name":"a","version":"1","weight":100,"endpoints":["127.0.0.1:9200"]}]}"#;
    let a = f
        .call(Method::POST, "/v1/services", Some(ADMIN), Some(body))
        .await;
    assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.bytes));
    assert_eq!(a.json()["active"], "a");
    assert!(
        f.dp.last_applied()
            .expect("applied")
            .service("api")
            .is_some()
    );
    let a = f
        .call(Method::DELETE, "/v1/services/api", Some(ADMIN), None)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["revision"], 2);
    assert_eq!(f.get("/v1/services/api").await.status, 404);
    assert!(
        f.dp.last_applied()
            .expect("applied")
            .service("api")
            .is_none()
    );
    // Re-created, it continues from the tombstone's revision.
    let a = f
        .call(Method::POST, "/v1/services", Some(ADMIN), Some(body))
        .await;
    assert_eq!(a.json()["revision"], 3);
}

#[tokio::test]
async fn a_route_held_by_another_service_is_a_conflict() {
    let f = Fixture::start(&config_text()).await;
    let body = r#"{"name":"auth2","listeners":["public"],"hosts":["auth.example.test"]}"#;
    let a = f
        .call(Method::POST, "/v1/services", Some(ADMIN), Some(body))
        .await;
    assert_eq!(a.status, 409);
    assert!(a.error().1.contains("already routed"), "{}", a.error().1);
    let body = r#"{"name":"lost","listeners":["nowhere"]}"#;
    let a = f
        .call(Method::POST, "/v1/services", Some(ADMIN), Some(body))
        .await;
    assert_eq!(a.status, 400);
    assert!(
        a.error().1.starts_with("listeners[0]: unknown listener"),
        "{}",
        a.error().1
    );
    assert_eq!(f.dp.applied_count(), 0);
}

#[tokio::test]
async fn a_refused_apply_changes_nothing_durable() {
    let f = Fixture::start(&config_text()).await;
    let before = f.get("/v1/services").await.bytes;
    *f.dp.refuse.lock().expect("not poisoned") = Some("cannot read CA bundle".into());
    let a = f
        .call(
            Method::PUT,
            WEIGHTS,
            Some(OPERATE),
            Some(r#"{"weights":{"green":50}}"#),
        )
        .await;
    assert_eq!(a.status, 422);
    let (code, message) = a.error();
    assert_eq!(code, "apply_failed");
    assert!(message.contains("cannot read CA bundle"), "{message}");
    assert_eq!(f.get("/v1/services").await.bytes, before);
    let f = f.restart().await;
    assert_eq!(f.get("/v1/services").await.bytes, before);
}

#[tokio::test]
async fn history_records_token_before_after_and_outcome() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::PUT,
            WEIGHTS,
            Some(OPERATE),
            Some(r#"{"weights":{"green":10}}"#),
        )
        .await;
    assert_eq!(a.status, 200);
    let a = f
        .call(
            Method::PUT,
            WEIGHTS,
            Some(OPERATE),
            Some(r#"{"weights":{"green":20000}}"#),
        )
        .await;
    assert_eq!(a.status, 400);

    let v = f.get("/v1/history?service=auth&limit=2").await.json();
    let entries = v["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    let applied = &entries[0];
    assert_eq!(applied["token"], "operator");
    assert_eq!(applied["action"], "set_weights");
    assert_eq!(applied["service"], "auth");
    assert_eq!(applied["outcome"], "applied");
    assert_eq!(applied["revision"], 2);
    assert_eq!(applied["before"]["stacks"][1]["weight"], 0);
    assert_eq!(applied["after"]["stacks"][1]["weight"], 10);
    assert!(applied["time"].as_str().expect("time").ends_with('Z'));
    let rejected = &entries[1];
    assert_eq!(rejected["outcome"], "rejected: invalid_value");
    assert_eq!(rejected["after"], serde_json::Value::Null);

    // The file seeding is in the history too, and the filter keeps other services out.
    let all = f.get("/v1/history?limit=1000").await.json();
    let seeded = all["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["token"] == "file")
        .count();
    assert_eq!(seeded, 2);
    let web = f.get("/v1/history?service=web").await.json();
    assert_eq!(web["entries"].as_array().expect("entries").len(), 1);
}

#[tokio::test]
async fn without_tokens_the_api_is_open_and_history_says_anonymous() {
    let text = config_text();
    let text = text.split("[[tokens]]").next().expect("head");
    let f = Fixture::start(text).await;
    let a = f
        .call(
            Method::PUT,
            WEIGHTS,
            None,
            Some(r#"{"weights":{"green":1}}"#),
        )
        .await;
    assert_eq!(a.status, 200);
    let v = f
        .call(Method::GET, "/v1/history?service=auth&limit=1", None, None)
        .await
        .json();
    assert_eq!(v["entries"][0]["token"], crate::auth::ANONYMOUS);
}
