//! The live dashboard (`/ui/`) in a real browser: headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs) against the real binary, with real demo upstreams (`switchyard
//! demo-upstream` processes), a canary deployment waiting at a manual step and real traffic.
//! The page is read through its DOM and clicked with real mouse events; a screenshot is kept in
//! `target/test-artifacts/dashboard.png`.
//!
//! Without Chromium the test says why and skips, except under `CI=true`, where it fails.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use support::browser::{Browser, Page};
use support::{Client, Proxy, WAIT, api, config, sha256_hex, stdout_lines, wait_json};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const CI: &str = "dashboard-ci-secret";
const OPS: &str = "dashboard-ops-secret";
const VIEWER: &str = "dashboard-viewer-secret";

/// Requests sent while the canary waits at 25 %: 30 reach `blue`, 10 reach `green`.
const REQUESTS: usize = 40;

/// A `switchyard demo-upstream` process on an ephemeral loopback port; killed when dropped.
struct DemoProcess {
    child: Child,
    addr: SocketAddr,
}

impl DemoProcess {
    fn start(version: &str, fail_rate: &str) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "demo-upstream",
                "--bind",
                "127.0.0.1:0",
                "--version",
                version,
            ])
            .args(["--fail-rate", fail_rate])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start switchyard demo-upstream");
        let lines = stdout_lines(&mut child);
        let line = lines
            .recv_timeout(WAIT)
            .expect("demo-upstream prints its address");
        let addr = line
            .strip_prefix("listening addr=")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Self { child, addr }
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        // Our own child, by its handle.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("test-artifacts")
        .join(name)
}

/// Signs in on the page's token form.
async fn sign_in(page: &Page, secret: &str) {
    page.wait_for("!document.getElementById('login').hidden", "the token form")
        .await;
    page.type_into("#token", secret).await;
    page.click("#sign-in").await;
}

/// What the page shows of each stack of `web`, by stack name.
const STACKS_SHOWN: &str = r#"(() => {
  const out = {};
  for (const el of document.querySelectorAll('[data-service="web"] [data-stack]')) {
    const f = (name) => { const e = el.querySelector('[data-field="' + name + '"]'); return e ? e.textContent : null; };
    out[el.dataset.stack] = {
      weight: f('weight'), rate: f('rate'), errors: f('error-rate'), p99: f('p99'),
      requests: f('requests'), health: [...el.querySelectorAll('[data-field="health"]')].map((e) => e.textContent),
    };
  }
  return out;
})()"#;

/// The phase the page shows for `web`'s deployment.
const PHASE_SHOWN: &str = r#"((document.querySelector('[data-service="web"] [data-field="phase"]') || {}).textContent || null)"#;

/// The action buttons the page offers.
const ACTIONS_SHOWN: &str =
    r#"[...document.querySelectorAll('[data-action]')].map((b) => b.dataset.action)"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_canary_live_and_its_buttons_pause_resume_and_promote_it() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let blue = DemoProcess::start("v1.3", "0");
    // Every 5th request to green fails: the page must tell the canary's errors from blue's.
    let green = DemoProcess::start("v1.4", "0.2");
    let tokens = format!(
        "[[tokens]]\nname = \"ci\"\nrole = \"deploy\"\nsha256 = \"{}\"\n\n\
         [[tokens]]\nname = \"ops\"\nrole = \"operate\"\nsha256 = \"{}\"\n\n\
         [[tokens]]\nname = \"viewer\"\nrole = \"read\"\nsha256 = \"{}\"\n",
        sha256_hex(CI),
        sha256_hex(OPS),
        sha256_hex(VIEWER)
    );
    let proxy = Proxy::start(&config(
        &[("blue", "v1.3", 100, vec![blue.addr])],
        "",
        &tokens,
    ));

    // A canary of green (a second stack of the service) that stops at 25 % for an operator.
    let (status, v) = api(
        proxy.control,
        "POST",
        "/v1/services/web/deployments",
        Some(CI),
        Some(&json!({"stack": "green", "version": "v1.4",
            "source": {"endpoints": [green.addr.to_string()]},
            "strategy": {"canary": {"steps": [{"weight": 25, "pause": "manual"}, {"weight": 100}]}},
            // Retired at once, so the promoted service is green alone (no standby for undo).
            "retire_previous": {"after": "0s"}})),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let id = v["id"].as_u64().expect("id");
    let deployment = format!("/v1/services/web/deployments/{id}");
    wait_json(
        proxy.control,
        &deployment,
        Some(CI),
        "the manual step",
        |v| v["step"]["waiting"] == "promote",
    )
    .await;

    // Bounded traffic at 75/25: exactly 30 requests to blue and 10 to green, 2 of them 500.
    let mut client = Client::connect(proxy.addr("public")).await;
    let mut failed = 0;
    for _ in 0..REQUESTS {
        let r = client.get("/").await;
        match r.status {
            200 => {}
            500 => failed += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert_eq!(failed, 2, "green fails every 5th of its 10 requests");

    // The operator's session: the token form, then both stacks side by side.
    let ops = browser.open(&format!("http://{}/ui/", proxy.control)).await;
    sign_in(&ops, OPS).await;
    let shown = ops
        .wait_for(
            &format!(
                "(() => {{ const s = {STACKS_SHOWN}; return s.blue && s.green && s.blue.requests === '30' && s.green.requests === '10' ? s : null; }})()"
            ),
            "both stacks with the traffic of the last minute",
        )
        .await;
    assert_eq!(shown["blue"]["weight"], "75", "{shown:#}");
    assert_eq!(shown["green"]["weight"], "25", "{shown:#}");
    assert_eq!(shown["blue"]["errors"], "0.0 %", "{shown:#}");
    assert_eq!(shown["green"]["errors"], "20.0 %", "{shown:#}");
    for stack in ["blue", "green"] {
        let rate: f64 = shown[stack]["rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{stack}'s request rate is a number: {shown:#}"));
        assert!(rate > 0.0, "{stack} shows no traffic: {shown:#}");
        assert_ne!(shown[stack]["p99"], "–", "{stack} has a p99: {shown:#}");
        assert_eq!(shown[stack]["health"], json!(["healthy"]), "{shown:#}");
    }
    assert_eq!(
        ops.eval(PHASE_SHOWN).await,
        "shifting",
        "the running deployment is shown"
    );
    assert_eq!(
        ops.eval(ACTIONS_SHOWN).await,
        json!(["promote", "pause", "abort"]),
        "an operate token is offered the commands"
    );
    assert_eq!(
        ops.eval("document.getElementById('who-role').textContent")
            .await,
        "operate"
    );
    let shot = artifact("dashboard.png");
    ops.screenshot(&shot).await;
    let png = std::fs::read(&shot).expect("read the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );

    // A read token: a wrong secret is refused on the form; the right one sees the deployment
    // live but is offered no command.
    let viewer = browser.open(&format!("http://{}/ui/", proxy.control)).await;
    sign_in(&viewer, "not-a-token").await;
    let refused = viewer
        .wait_for(
            "(() => { const e = document.getElementById('login-error'); return !e.hidden && e.textContent; })()",
            "the refusal of a wrong token",
        )
        .await;
    assert!(
        refused.as_str().is_some_and(|t| t.contains("refused")),
        "{refused}"
    );
    sign_in(&viewer, VIEWER).await;
    viewer
        .wait_for(&format!("{PHASE_SHOWN} === 'shifting'"), "the deployment")
        .await;
    assert_eq!(viewer.eval(ACTIONS_SHOWN).await, json!([]));
    assert_eq!(
        viewer
            .eval("document.getElementById('who-role').textContent")
            .await,
        "read"
    );

    // Pause and resume from the page: the API holds the deployment, the page offers what fits.
    ops.click(r#"[data-service="web"] button[data-action="pause"]"#)
        .await;
    ops.wait_for(
        &format!("JSON.stringify({ACTIONS_SHOWN}) === '[\"resume\",\"abort\"]'"),
        "resume instead of promote and pause while paused",
    )
    .await;
    let (_, v) = api(proxy.control, "GET", &deployment, Some(CI), None).await;
    assert_eq!(v["paused"], true, "{v:#}");
    ops.click(r#"[data-service="web"] button[data-action="resume"]"#)
        .await;
    ops.wait_for(
        &format!("JSON.stringify({ACTIONS_SHOWN}) === '[\"promote\",\"pause\",\"abort\"]'"),
        "promote offered again after resume",
    )
    .await;
    let (_, v) = api(proxy.control, "GET", &deployment, Some(CI), None).await;
    assert_eq!(v["paused"], false, "{v:#}");

    // Promote from the page: the deployment finishes, on the page and in the API.
    ops.click(r#"[data-service="web"] button[data-action="promote"]"#)
        .await;
    ops.wait_for(
        &format!("{PHASE_SHOWN} === 'succeeded'"),
        "the promoted deployment to succeed on the page",
    )
    .await;
    let (status, v) = api(proxy.control, "GET", &deployment, Some(CI), None).await;
    assert_eq!((status, &v["phase"]), (200, &json!("succeeded")), "{v:#}");
    let (_, service) = api(proxy.control, "GET", "/v1/services/web", Some(CI), None).await;
    let stacks: Vec<(&str, u64)> = service["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().expect("name"),
                s["weight"].as_u64().expect("weight"),
            )
        })
        .collect();
    assert_eq!(stacks, [("green", 100)], "{service:#}");
    // The read-only session follows too, and its history lists the deployment.
    viewer
        .wait_for(
            &format!("{PHASE_SHOWN} === 'succeeded'"),
            "the read-only session to see the outcome",
        )
        .await;
    let history: Value = viewer
        .eval(r#"[...document.querySelectorAll('[data-service="web"] tr[data-deployment]')].map((r) => r.dataset.deployment)"#)
        .await;
    assert_eq!(history, json!([id.to_string()]));
    ops.screenshot(&artifact("dashboard-promoted.png")).await;
    assert!(proxy.stop().success());
}
