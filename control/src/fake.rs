//! Test fixtures: an in-memory data plane and a control plane over a temporary state directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use switchyard_config::{Config, Figures, Reading, Window};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::data_plane::{BoxFuture, DataPlane, EndpointStatus, PublicListener};
use crate::state::{ControlBuilder, ControlState, WriterHandle};
use crate::store::FileStore;

/// Records every applied config; refuses while `refuse` holds a reason.
#[derive(Default)]
pub(crate) struct FakeDataPlane {
    pub(crate) applied: Mutex<Vec<Arc<Config>>>,
    pub(crate) generation: AtomicU64,
    pub(crate) refuse: Mutex<Option<String>>,
    pub(crate) endpoints: Mutex<HashMap<(String, String), Vec<EndpointStatus>>>,
    /// Figures served for (service, stack, window), as a test sets them.
    pub(crate) figures: Mutex<HashMap<(String, String, Window), Figures>>,
    /// Cumulative readings served for (service, stack), as a test sets them.
    pub(crate) readings: Mutex<HashMap<(String, String), Reading>>,
}

impl FakeDataPlane {
    pub(crate) fn applied_count(&self) -> usize {
        self.applied.lock().expect("not poisoned").len()
    }

    pub(crate) fn last_applied(&self) -> Option<Arc<Config>> {
        self.applied.lock().expect("not poisoned").last().cloned()
    }
}

impl DataPlane for FakeDataPlane {
    fn apply(&self, desired: Arc<Config>) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(async move {
            if let Some(reason) = self.refuse.lock().expect("not poisoned").clone() {
                return Err(reason);
            }
            self.applied.lock().expect("not poisoned").push(desired);
            Ok(self.generation.fetch_add(1, Ordering::SeqCst) + 1)
        })
    }

    fn listeners(&self) -> Vec<PublicListener> {
        Vec::new()
    }

    fn endpoints(&self, service: &str, stack: &str) -> Vec<EndpointStatus> {
        self.endpoints
            .lock()
            .expect("not poisoned")
            .get(&(service.to_owned(), stack.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    fn stack_figures(&self, service: &str, stack: &str, window: Window) -> Option<Figures> {
        self.figures
            .lock()
            .expect("not poisoned")
            .get(&(service.to_owned(), stack.to_owned(), window))
            .cloned()
    }

    fn stack_reading(&self, service: &str, stack: &str) -> Option<Reading> {
        self.readings
            .lock()
            .expect("not poisoned")
            .get(&(service.to_owned(), stack.to_owned()))
            .cloned()
    }
}

/// Token secrets of the standard test configuration, by role.
pub(crate) const READ: &str = "secret-read";
pub(crate) const OPERATE: &str = "secret-operate";
pub(crate) const DEPLOY: &str = "secret-deploy";
pub(crate) const ADMIN: &str = "secret-admin";
/// A deploy token limited to services matching `auth*`.
pub(crate) const AUTH_ONLY: &str = "secret-auth-only";

fn sha(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Two listeners, two services (`auth` with `blue` at 100 and `green` at 0; `web` with `main`),
/// and one token per role.
pub(crate) fn config_text() -> String {
    format!(
        r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:18080"

[[listeners]]
name = "internal"
bind = "127.0.0.1:18081"

[[services]]
name = "auth"
listeners = ["public"]
hosts = ["auth.example.test"]

[[services.stacks]]
name = "blue"
version = "v1.3"
weight = 100
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[services.stacks]]
name = "green"
version = "v1.4"
weight = 0
endpoints = ["127.0.0.1:9003"]

[[services]]
name = "web"
listeners = ["public"]
hosts = ["www.example.test"]

[[services.stacks]]
name = "main"
version = "v7"
weight = 100
endpoints = ["127.0.0.1:9100"]

[[tokens]]
name = "reader"
role = "read"
sha256 = "{}"

[[tokens]]
name = "operator"
role = "operate"
sha256 = "{}"

[[tokens]]
name = "deployer"
role = "deploy"
sha256 = "{}"

[[tokens]]
name = "root"
role = "admin"
sha256 = "{}"

[[tokens]]
name = "auth-ci"
role = "deploy"
sha256 = "{}"
services = ["auth*"]
"#,
        sha(READ),
        sha(OPERATE),
        sha(DEPLOY),
        sha(ADMIN),
        sha(AUTH_ONLY),
    )
}

pub(crate) fn parse(text: &str) -> Config {
    switchyard_config::parse(text, Path::new("/etc/switchyard/test.toml")).expect("valid config")
}

/// A running control plane over a temporary state directory.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) state: ControlState,
    pub(crate) dp: Arc<FakeDataPlane>,
    pub(crate) seed: Config,
    shutdown: watch::Sender<bool>,
    writer: WriterHandle,
}

/// A response, decoded.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) bytes: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes).expect("JSON body")
    }

    /// Asserts the error shape and returns (code, message).
    pub(crate) fn error(&self) -> (String, String) {
        let v = self.json();
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 1, "only `error`: {v}");
        let e = v["error"].as_object().expect("error object");
        assert_eq!(e.len(), 2, "only code and message: {v}");
        (
            e["code"].as_str().expect("code").to_owned(),
            e["message"].as_str().expect("message").to_owned(),
        )
    }
}

impl Fixture {
    pub(crate) async fn start(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, parse(text)).await
    }

    pub(crate) async fn start_in(dir: tempfile::TempDir, seed: Config) -> Self {
        let store = Arc::new(FileStore::open(dir.path()).expect("open store"));
        let dp = Arc::new(FakeDataPlane::default());
        let (shutdown, stop) = watch::channel(false);
        let (state, _desired, writer) = ControlBuilder::new(seed.clone(), store)
            .build(dp.clone(), stop)
            .await
            .expect("control builds");
        Self {
            dir,
            state,
            dp,
            seed,
            shutdown,
            writer,
        }
    }

    /// Stops the writer and starts a new control plane on the same directory and seed.
    pub(crate) async fn restart(self) -> Self {
        let seed = self.seed.clone();
        let dir = self.stop().await;
        Self::start_in(dir, seed).await
    }

    /// Stops the writer (re-raising its panic) and hands back the directory.
    pub(crate) async fn stop(self) -> tempfile::TempDir {
        self.shutdown.send_replace(true);
        self.writer.join().await;
        self.dir
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_owned())),
            None => req.body(Body::empty()),
        }
        .expect("valid request");
        self.send(req).await
    }

    pub(crate) async fn send(&self, req: Request<Body>) -> Answer {
        let res = crate::api::router(self.state.clone())
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res
            .into_body()
            .collect()
            .await
            .expect("body collects")
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            bytes,
        }
    }

    pub(crate) async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, Some(ADMIN), None).await
    }
}
