//! The dashboard's routes: the static page needs no token, `whoami` names the caller, and the
//! live feed sends snapshots of what the token may see, with the data plane's figures.

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use switchyard_config::{Figures, Quantiles, Window};
use tower::ServiceExt;

use crate::fake::{AUTH_ONLY, Fixture, OPERATE, READ, config_text};

#[tokio::test]
async fn the_page_and_its_assets_need_no_token_and_load_only_from_this_origin() {
    let f = Fixture::start(&config_text()).await;
    for (path, kind, needle) in [
        ("/ui/", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/v1/dashboard/events"),
        ("/ui/style.css", "text/css", ".stack"),
    ] {
        let a = f.call(Method::GET, path, None, None).await;
        assert_eq!(a.status, 200, "{path}");
        let content_type = a.headers["content-type"].to_str().expect("ascii");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = a.headers["content-security-policy"]
            .to_str()
            .expect("ascii");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        let body = String::from_utf8(a.bytes).expect("utf-8");
        assert!(body.contains(needle), "{path} lacks {needle}");
        // Nothing is fetched from another origin: the page works with no internet.
        assert!(!body.contains("https://"), "{path} names another origin");
    }
}

#[tokio::test]
async fn whoami_names_the_token_its_role_and_services() {
    let f = Fixture::start(&config_text()).await;
    let a = f.call(Method::GET, "/v1/whoami", Some(READ), None).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        serde_json::json!({"name": "reader", "role": "read", "services": []})
    );
    let a = f
        .call(Method::GET, "/v1/whoami", Some(AUTH_ONLY), None)
        .await;
    assert_eq!(
        a.json(),
        serde_json::json!({"name": "auth-ci", "role": "deploy", "services": ["auth*"]})
    );
    let a = f.call(Method::GET, "/v1/whoami", None, None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error().0, "unauthorized");
}

/// The first event of the feed, as (event name, JSON data).
async fn first_event(f: &Fixture, token: &str) -> (String, serde_json::Value) {
    let req = Request::builder()
        .uri("/v1/dashboard/events")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("valid request");
    let res = crate::api::router(f.state.clone())
        .oneshot(req)
        .await
        .expect("router is infallible");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let mut text = String::new();
    // The first snapshot is sent at once; the stream itself never ends.
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("a snapshot at once")
            .expect("the stream goes on")
            .expect("no body error");
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).expect("utf-8"));
        }
    }
    let event = text
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .expect("an event name")
        .to_owned();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data");
    (event, serde_json::from_str(data).expect("JSON data"))
}

#[tokio::test]
async fn the_feed_sends_snapshots_with_each_stacks_figures() {
    let f = Fixture::start(&config_text()).await;
    f.dp.figures.lock().expect("not poisoned").insert(
        ("auth".into(), "blue".into(), Window::Last1m),
        Figures {
            seconds: 60.0,
            requests: 120,
            responses: [110, 0, 4, 6],
            request_rate: 2.0,
            error_rate: 0.05,
            latency: Quantiles {
                p50: Some(0.002),
                p90: Some(0.004),
                p99: Some(0.008),
            },
            ..Figures::default()
        },
    );
    let (event, snap) = first_event(&f, READ).await;
    assert_eq!(event, "snapshot");
    let services: Vec<&str> = snap["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| s["service"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(services, ["auth", "web"]);
    let auth = &snap["services"][0];
    assert_eq!(auth["service"]["stacks"][0]["weight"], 100);
    assert_eq!(auth["service"]["stacks"][1]["name"], "green");
    let blue = &auth["figures"][0];
    assert_eq!(blue["stack"], "blue");
    assert_eq!(
        blue["last_1m"],
        serde_json::json!({"seconds": 60.0, "requests": 120, "completed": 120, "errors": 6,
            "request_rate": 2.0, "error_rate": 0.05, "p50": 0.002, "p99": 0.008})
    );
    assert_eq!(blue["last_10s"], serde_json::Value::Null, "none reported");
    assert_eq!(auth["figures"][1]["stack"], "green");
    assert_eq!(auth["deployment"], serde_json::Value::Null);
    assert_eq!(auth["history"], serde_json::json!([]));
}

#[tokio::test]
async fn the_feed_shows_only_the_services_a_token_may_see_and_needs_a_token() {
    let f = Fixture::start(&config_text()).await;
    let (_, snap) = first_event(&f, AUTH_ONLY).await;
    let services = snap["services"].as_array().expect("services");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["service"]["name"], "auth");
    let (_, snap) = first_event(&f, OPERATE).await;
    assert_eq!(snap["services"].as_array().expect("services").len(), 2);
    for token in [None, Some("not-a-token")] {
        let a = f
            .call(Method::GET, "/v1/dashboard/events", token, None)
            .await;
        assert_eq!(a.status, 401);
        assert_eq!(a.error().0, "unauthorized");
    }
}
