//! The API's contract across routes: a missing service is 404 under every route, and a
//! deployment is refused in full before it gets an id.

use axum::http::Method;

use crate::fake::{ADMIN, DEPLOY, Fixture, config_text};

#[tokio::test]
async fn every_route_under_a_missing_service_is_404() {
    let f = Fixture::start(&config_text()).await;
    let mut checked = 0;
    for route in crate::api::routes() {
        if !route.path.starts_with("/v1/services/{service}") {
            continue;
        }
        let uri = route
            .path
            .replace("{service}", "nosuch")
            .replace("{stack}", "blue")
            .replace("{id}", "1");
        let body = matches!(route.method, Method::POST | Method::PUT).then_some("{}");
        let a = f.call(route.method.clone(), &uri, Some(ADMIN), body).await;
        assert_eq!(
            a.status.as_u16(),
            404,
            "{} {uri}: {}",
            route.method,
            String::from_utf8_lossy(&a.bytes)
        );
        let (code, message) = a.error();
        assert_eq!(code, "not_found", "{} {uri}", route.method);
        assert!(message.contains("no service \"nosuch\""), "{message}");
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} routes under a service");
}

#[tokio::test]
async fn a_deployment_that_cannot_run_is_refused_with_every_field_and_gets_no_id() {
    let f = Fixture::start(&config_text()).await;
    let body = r#"{"stack":"red","version":"v2","source":{"dns":{"name":"x.test","port":0}},
        "health_check":{"interval":"soon"},"retire_previous":{"after":"later"}}"#;
    let a = f
        .call(
            Method::POST,
            "/v1/services/auth/deployments",
            Some(DEPLOY),
            Some(body),
        )
        .await;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.bytes));
    let (_, message) = a.error();
    for field in [
        "source.dns.port: ",
        "health_check.interval: ",
        "retire_previous.after: ",
    ] {
        assert!(message.contains(field), "{message:?} lacks {field}");
    }
    let list = f.get("/v1/services/auth/deployments").await.json();
    assert_eq!(list["deployments"], serde_json::json!([]));
    assert_eq!(f.dp.applied_count(), 0);
}
