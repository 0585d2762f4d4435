//! Durability: a new control plane on the same state directory and file keeps every change.

use axum::http::Method;

use crate::fake::{ADMIN, DEPLOY, Fixture, OPERATE, config_text, parse};
use crate::state::reseed;

#[tokio::test]
async fn restart_keeps_every_runtime_change() {
    let f = Fixture::start(&config_text()).await;
    let calls = [
        (
            Method::PUT,
            "/v1/services/auth/weights",
            Some(OPERATE),
            Some(r#"{"weights":{"blue":70,"green":30}}"#),
        ),
        (
            Method::POST,
            "/v1/services/auth/stacks",
            Some(DEPLOY),
            Some(r#"{"name":"canary","version":"v2","endpoints":["127.0.0.1:9010"]}"#),
        ),
        (
            Method::PUT,
            "/v1/services/auth/stacks/green/endpoints",
            Some(DEPLOY),
            Some(r#"{"endpoints":["127.0.0.1:9011"]}"#),
        ),
        (
            Method::POST,
            "/v1/services",
            Some(ADMIN),
            Some(
                r#"{"name":"api","listeners":["internal"],"stacks":[{"name":"a","weight":1,"endpoints":["127.0.0.1:9012"]}]}"#,
            ),
        ),
        (Method::DELETE, "/v1/services/web", Some(ADMIN), None),
    ];
    for (method, uri, token, body) in calls {
        let a = f.call(method.clone(), uri, token, body).await;
        assert!(
            a.status.is_success(),
            "{method} {uri}: {}",
            String::from_utf8_lossy(&a.bytes)
        );
    }
    let list = f.get("/v1/services").await.bytes;
    let auth = f.get("/v1/services/auth").await.bytes;
    let history = f.get("/v1/history?limit=1000").await.bytes;
    let desired = f.state.desired();

    let f = f.restart().await;
    assert_eq!(f.get("/v1/services").await.bytes, list);
    assert_eq!(f.get("/v1/services/auth").await.bytes, auth);
    assert_eq!(f.get("/v1/services/web").await.status, 404);
    assert_eq!(
        f.get("/v1/history?limit=1000").await.bytes,
        history,
        "restart adds no history"
    );
    assert_eq!(*f.state.desired(), *desired);
    assert!(f.state.desired().service("web").is_none());
}

#[tokio::test]
async fn reload_applies_file_edits_only_to_services_not_changed_at_runtime() {
    let f = Fixture::start(&config_text()).await;
    let a = f
        .call(
            Method::PUT,
            "/v1/services/auth/weights",
            Some(OPERATE),
            Some(r#"{"weights":{"green":5}}"#),
        )
        .await;
    assert_eq!(a.status, 200);
    let edited = config_text()
        .replace("version = \"v7\"", "version = \"v8\"")
        .replace("version = \"v1.3\"", "version = \"v1.3-file\"");
    let generation = reseed(&f.state, parse(&edited))
        .await
        .expect("reload applies");
    assert_eq!(generation, Some(2));
    let web = f.get("/v1/services/web").await.json();
    assert_eq!(web["stacks"][0]["version"], "v8");
    assert_eq!(web["revision"], 2);
    assert_eq!(web["origin"], "file");
    let auth = f.get("/v1/services/auth").await.json();
    assert_eq!(
        auth["stacks"][0]["version"], "v1.3",
        "runtime changes win over the file"
    );
    assert_eq!(auth["stacks"][1]["weight"], 5);

    // The same file again changes nothing.
    assert_eq!(
        reseed(&f.state, parse(&edited)).await.expect("noop"),
        Some(2)
    );
    assert_eq!(f.dp.applied_count(), 2);

    // And a restart on the edited file keeps both rules.
    let dir = f.stop().await;
    let f = Fixture::start_in(dir, parse(&edited)).await;
    assert_eq!(f.get("/v1/services/web").await.json()["revision"], 2);
    assert_eq!(
        f.get("/v1/services/auth").await.json()["stacks"][1]["weight"],
        5
    );
}
