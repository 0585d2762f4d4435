//! The control API over real HTTP on a loopback port, through the public API only.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sha2::{Digest, Sha256};
use switchyard_config::{Config, Figures, Reading, Window};
use switchyard_control::{
    BoxFuture, ControlBuilder, DataPlane, EndpointStatus, FileStore, PublicListener, spawn_control,
};
use tokio::sync::watch;

#[derive(Default)]
struct RecordingDataPlane {
    applied: Mutex<Vec<Arc<Config>>>,
}

impl DataPlane for RecordingDataPlane {
    fn apply(&self, desired: Arc<Config>) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            let mut applied = self.applied.lock().expect("not poisoned");
            applied.push(desired);
            Ok(applied.len() as u64)
        })
    }

    fn listeners(&self) -> Vec<PublicListener> {
        Vec::new()
    }

    fn endpoints(&self, _: &str, _: &str) -> Vec<EndpointStatus> {
        Vec::new()
    }

    fn stack_figures(&self, _: &str, _: &str, _: Window) -> Option<Figures> {
        None
    }

    fn stack_reading(&self, _: &str, _: &str) -> Option<Reading> {
        None
    }
}

const SECRET: &str = "operator-secret";

fn config() -> Config {
    let text = format!(
        r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:18080"

[[services]]
name = "auth"
listeners = ["public"]

[[services.stacks]]
name = "blue"
weight = 100
endpoints = ["127.0.0.1:9001"]

[[services.stacks]]
name = "green"
endpoints = ["127.0.0.1:9002"]

[[tokens]]
name = "ops"
role = "operate"
sha256 = "{}"
"#,
        hex::encode(Sha256::digest(SECRET.as_bytes()))
    );
    switchyard_config::parse(&text, Path::new("/etc/switchyard/test.toml")).expect("valid config")
}

#[tokio::test]
async fn weights_change_over_http_and_are_on_disk_when_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FileStore::open(dir.path()).expect("store"));
    let dp = Arc::new(RecordingDataPlane::default());
    let (stop, stopped) = watch::channel(false);
    let (state, desired, writer) = ControlBuilder::new(config(), store)
        .build(dp.clone(), stopped.clone())
        .await
        .expect("control builds");
    assert_eq!(desired.services().len(), 1);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound address");
    let server = spawn_control(listener, state, stopped);

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let send = |method: Method, path: &str, token: Option<&str>, body: &str| {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("valid request");
        let client = client.clone();
        async move {
            let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                .await
                .expect("answer within the bound")
                .expect("request succeeds");
            let status = res.status();
            let body = res.into_body().collect().await.expect("body").to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
            (status, json)
        }
    };

    let (status, _) = send(Method::GET, "/healthz", None, "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(Method::GET, "/v1/services/auth", None, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let (status, body) = send(
        Method::PUT,
        "/v1/services/auth/weights",
        Some(SECRET),
        r#"{"weights":{"blue":90,"green":10}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["stacks"][1]["weight"], 10);
    // Acknowledged means durable: the store's journal already has it (state.json follows at
    // the next checkpoint).
    let journal = std::fs::read_to_string(dir.path().join("state.journal")).expect("journal");
    // The journal is preallocated: its content ends at the first zero byte.
    let journal = journal.split('\0').next().unwrap_or_default();
    let last: serde_json::Value =
        serde_json::from_str(journal.lines().last().expect("a journal line"))
            .expect("journal JSON");
    assert_eq!(
        last["state"]["services"]["auth"]["spec"]["stacks"][1]["weight"],
        10
    );
    assert_eq!(dp.applied.lock().expect("not poisoned").len(), 1);

    let (status, body) = send(Method::GET, "/v1/services/auth", Some(SECRET), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revision"], 2);
    assert_eq!(body["stacks"][0]["weight"], 90);

    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), server.join())
        .await
        .expect("server stops within the bound")
        .expect("server ran cleanly");
    tokio::time::timeout(Duration::from_secs(10), writer.join())
        .await
        .expect("writer stops within the bound");
}
