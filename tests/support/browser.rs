//! A real headless Chromium driven over the Chrome DevTools Protocol, for tests of the web
//! dashboard: launch, open a tab, evaluate JavaScript, type, click with real mouse events, take
//! a screenshot.
//!
//! A small client over the WebSocket crate the tests already use (tokio-tungstenite) instead of
//! a CDP crate: the few commands needed here are plain JSON, and a generated protocol crate
//! would add a large build to every test run. Debian's `chromium` package provides the browser
//! (`.ci/run` installs it). Without it [`Browser::launch`] says why and returns `None`, except
//! under `CI=true`, where a missing browser fails the test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::WAIT;

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// Where Chromium is, if installed: `$CHROMIUM` (when it names a file), or `chromium` /
/// `chromium-browser` on `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    cdp: Arc<Cdp>,
}

/// One tab, attached through a flat CDP session.
pub struct Page {
    cdp: Arc<Cdp>,
    session: String,
}

/// The DevTools connection: commands by id, answers routed back by a reader task.
struct Cdp {
    sink: tokio::sync::Mutex<Sink>,
    pending: Pending,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Cdp {
    /// Sends a command and waits for its answer; `Err` carries chromium's refusal.
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.to_string()))
            .await
            .unwrap_or_else(|e| panic!("send {method} to chromium: {e}"));
        let answer = tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {method} within {WAIT:?}"))
            .unwrap_or_else(|_| panic!("chromium closed the connection during {method}"));
        match answer.get("error") {
            Some(e) => Err(format!("chromium refused {method}: {e}")),
            None => Ok(answer["result"].clone()),
        }
    }
}

impl Browser {
    /// Starts headless Chromium, or says why not: `None` when it is not installed (a failure
    /// under `CI=true`).
    pub async fn launch() -> Option<Self> {
        let Some(binary) = chromium() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but chromium is not installed: .ci/run installs Debian's chromium package"
                );
            }
            eprintln!(
                "skipped: chromium is not installed (apt-get install chromium, or set CHROMIUM) to run the dashboard's browser test"
            );
            return None;
        };
        let profile = tempfile::tempdir().expect("chromium profile dir");
        let mut child = Command::new(&binary)
            .args([
                "--headless=new",
                // Tests run as root in CI's container, where Chromium's sandbox cannot start.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                // Two tabs are open at once: the one in the background must keep running
                // (reading its feed, taking input) as a visible one does.
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let url = devtools_url(&mut child);
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
            .await
            .expect("DevTools connection within the bound")
            .unwrap_or_else(|e| panic!("cannot connect to chromium at {url}: {e}"));
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let routes = pending.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                // Events (no id) are not needed: every wait polls the page's state.
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = routes.lock().expect("pending lock").remove(&id) {
                        // The caller may have timed out and gone; nothing to tell then.
                        let _ = tx.send(v);
                    }
                }
            }
        });
        Some(Self {
            child,
            _profile: profile,
            cdp: Arc::new(Cdp {
                sink: tokio::sync::Mutex::new(sink),
                pending,
                next: AtomicU64::new(1),
                reader,
            }),
        })
    }

    /// Opens a new tab (its own `sessionStorage`) at `url`, 1280×1000 CSS pixels.
    pub async fn open(&self, url: &str) -> Page {
        let target = self
            .cdp
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self
            .cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let page = Page {
            cdp: self.cdp.clone(),
            session: attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
        };
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        let nav = page.call("Page.navigate", json!({"url": url})).await;
        if let Some(e) = nav.get("errorText") {
            panic!("chromium could not load {url}: {e}");
        }
        page.wait_for(
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                json!(url)
            ),
            "the page to load",
        )
        .await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Our own child, by its handle; it may have exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `DevTools listening on ws://...` from Chromium's stderr, then keeps draining it.
fn devtools_url(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(at) = line.find("ws://") {
                    sent = tx.send(Ok(line[at..].trim().to_owned())).is_ok();
                } else {
                    seen.push_str(&line);
                    seen.push('\n');
                }
            }
        }
        if !sent {
            // The receiver may have given up already.
            let _ = tx.send(Err(seen));
        }
    });
    match rx.recv_timeout(WAIT) {
        Ok(Ok(url)) => url,
        Ok(Err(output)) => panic!("chromium exited without a DevTools address:\n{output}"),
        Err(_) => panic!("chromium printed no DevTools address within {WAIT:?}"),
    }
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Value {
        self.cdp
            .call(Some(&self.session), method, params)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Evaluates `expression` in the page (awaiting a promise): its value as JSON, or why not
    /// (a thrown exception, or no page to run in while one is loading).
    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let r = self
            .cdp
            .call(
                Some(&self.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        match r.get("exceptionDetails") {
            Some(e) => Err(format!("{expression}\nthrew: {e}")),
            None => Ok(r["result"]["value"].clone()),
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON;
    /// a thrown exception fails the test.
    pub async fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls `expression` until it is truthy (not `null`, `false`, `0` or `""`), failing after
    /// [`WAIT`] with `what` and the last value; returns that value. An evaluation error (the
    /// tab is between two documents, an element not there yet) counts as not yet.
    pub async fn wait_for(&self, expression: &str, what: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = Err("never evaluated".to_owned());
        while tokio::time::Instant::now() < deadline {
            last = self.try_eval(expression).await;
            let truthy = match &last {
                Err(_) | Ok(Value::Null | Value::Bool(false)) => false,
                Ok(Value::Number(n)) => n.as_f64() != Some(0.0),
                Ok(Value::String(s)) => !s.is_empty(),
                Ok(_) => true,
            };
            if truthy {
                return last.expect("truthy means evaluated");
            }
            // A poll interval, bounded by the deadline above; the page's state is what is awaited.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let page = self
            .try_eval("location.href + '\\n' + (document.body ? document.body.innerText.slice(0, 500) : '(no body)')")
            .await;
        panic!("timed out waiting for {what}; last: {last:?}\nthe page: {page:?}");
    }

    /// Types `text` into the element `selector` as keyboard input would.
    pub async fn type_into(&self, selector: &str, text: &str) {
        self.call("Page.bringToFront", json!({})).await;
        let found = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); return true; }})()",
                json!(selector)
            ))
            .await;
        assert_eq!(found, json!(true), "no element {selector} to type into");
        self.call("Input.insertText", json!({"text": text})).await;
    }

    /// Clicks the middle of the element `selector` with real mouse events (the tab is brought
    /// to the front first, as a person would look at it).
    pub async fn click(&self, selector: &str) {
        self.call("Page.bringToFront", json!({})).await;
        let rect = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
                json!(selector)
            ))
            .await;
        let (x, y) = match rect.as_array().map(Vec::as_slice) {
            Some([x, y]) => (
                x.as_f64().expect("x is a number"),
                y.as_f64().expect("y is a number"),
            ),
            _ => panic!("no element {selector} to click"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Saves a PNG of the whole page to `path` (folders created).
    pub async fn screenshot(&self, path: &Path) {
        let size = self
            .eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            .await;
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}}),
            )
            .await;
        let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the artifact folder");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }
}

/// Standard base64 (with padding), as CDP sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:#x}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let [_, a, b, c] = n.to_be_bytes();
        out.push(a);
        if chunk.len() > 2 {
            out.push(b);
        }
        if chunk.len() > 3 {
            out.push(c);
        }
    }
    out
}
