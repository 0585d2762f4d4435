//! Handler tests through `router(state).oneshot(..)`, over a temporary `FileStore` and an
//! in-memory data plane.

mod authz;
mod contract;
mod dashboard;
mod inputs;
mod persist;
mod writes;

use axum::http::Method;

use crate::fake::{ADMIN, Fixture, OPERATE, config_text};

#[tokio::test]
async fn every_route_in_the_table_is_routed() {
    let f = Fixture::start(&config_text()).await;
    for route in super::routes() {
        let uri = route
            .path
            .replace("{service}", "auth")
            .replace("{stack}", "green");
        let a = f
            .call(route.method.clone(), &uri, Some("wrong"), None)
            .await;
        assert_ne!(a.status.as_u16(), 405, "{} {uri}", route.method);
        if a.status.as_u16() == 404 {
            assert_ne!(a.error().0, "no_route", "{} {uri}", route.method);
        }
    }
}

#[tokio::test]
async fn unknown_path_and_method_answer_in_the_error_shape() {
    let f = Fixture::start(&config_text()).await;
    let a = f.get("/v1/nothing").await;
    assert_eq!(a.status.as_u16(), 404);
    assert_eq!(a.error().0, "no_route");
    let a = f
        .call(Method::PATCH, "/v1/services", Some(ADMIN), None)
        .await;
    assert_eq!(a.status.as_u16(), 405);
    assert_eq!(a.error().0, "method_not_allowed");
}

#[tokio::test]
async fn probes_need_no_token_and_readiness_follows_the_flag() {
    let f = Fixture::start(&config_text()).await;
    assert_eq!(
        f.call(Method::GET, "/healthz", None, None).await.status,
        200
    );
    assert_eq!(f.call(Method::GET, "/readyz", None, None).await.status, 200);
    f.state.set_ready(false);
    let a = f.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.error().0, "not_ready");
}

#[tokio::test]
async fn list_shows_active_stack_weights_and_endpoint_counts() {
    let f = Fixture::start(&config_text()).await;
    let v = f.get("/v1/services").await.json();
    let auth = &v["services"][0];
    assert_eq!(auth["name"], "auth");
    assert_eq!(auth["active"], "blue");
    assert_eq!(auth["stacks"][0]["endpoint_count"], 2);
    assert_eq!(auth["stacks"][0]["health"]["unknown"], 2);
    assert_eq!(auth["stacks"][1]["weight"], 0);
    assert_eq!(v["services"][1]["name"], "web");
    let one = f.get("/v1/services/auth").await;
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(one["deployment"], serde_json::Value::Null);
    assert_eq!(one["routing"]["hosts"][0], "auth.example.test");
    assert_eq!(
        one["stacks"][1]["endpoints"][0]["address"],
        "127.0.0.1:9003"
    );
}

#[tokio::test]
async fn ties_go_to_the_most_recently_promoted_stack() {
    let f = Fixture::start(&config_text()).await;
    let put = |body: &'static str| {
        f.call(
            Method::PUT,
            "/v1/services/auth/weights",
            Some(OPERATE),
            Some(body),
        )
    };
    assert_eq!(put(r#"{"weights":{"green":100}}"#).await.status, 200);
    assert_eq!(f.get("/v1/services/auth").await.json()["active"], "green");
    assert_eq!(put(r#"{"weights":{"blue":0}}"#).await.status, 200);
    assert_eq!(put(r#"{"weights":{"blue":100}}"#).await.status, 200);
    let v = f.get("/v1/services/auth").await.json();
    assert_eq!(v["active"], "blue");
    assert!(v["stacks"][0]["promoted_at"].is_string());
    let a = put(r#"{"weights":{"blue":0,"green":0}}"#).await;
    assert_eq!(a.status, 409, "no traffic needs saying so");
    assert_eq!(a.error().0, "no_traffic");
    let a = put(r#"{"weights":{"blue":0,"green":0},"allow_no_traffic":true}"#).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        f.get("/v1/services/auth").await.json()["active"],
        serde_json::Value::Null
    );
}
