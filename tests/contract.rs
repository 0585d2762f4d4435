//! The control API's contract, checked from outside: schemathesis (property-based testing from
//! the OpenAPI document, from PyPI) runs against the real binary's `/v1/openapi.json` with every
//! check and the stateful phase, bounded in examples and time, and any finding fails the test.
//!
//! `.ci/run` installs schemathesis in a virtual environment and sets `SCHEMATHESIS` to its
//! executable. Without that variable the test says why it skips, unless `CI` is set: then a
//! missing schemathesis is a failure.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{BlueGreen, Proxy, api, sha256_hex};

/// The admin token of the run (every route is reachable with it).
const ADMIN: &str = "contract-admin-secret";

/// Bound on the whole run; schemathesis' own `--max-time` is below it.
const RUN_BOUND: Duration = Duration::from_secs(170);

/// Settings and the reason for each. No check is disabled.
const SCHEMATHESIS_TOML: &str = r#"
# Valid data (by the schema) may still be refused where the server applies a rule the schema
# cannot state, and the message then names the field:
#   400 a value the schema admits but the semantics refuse: endpoint and DNS syntax, durations,
#       `endpoints` together with `dns`, an unknown stack name in `weights`, a canary whose
#       steps do not rise, a listener that does not exist;
#   412 `If-Match` naming a revision the service is not at (the schema cannot know the current
#       revision).
# 422 stays a finding: every body's shape is in the schema, so valid data never gets it.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412"]

# Writes to stacks and weights go to the service the run starts with (`web`), so they reach the
# planning code instead of a 404; every other route gets generated names.
[[operations]]
include-path-regex = '^/v1/services/\{service\}/(weights|stacks)'
parameters = { "path.service" = "web" }
"#;

fn schemathesis() -> Option<String> {
    match std::env::var("SCHEMATHESIS") {
        Ok(path) if !path.is_empty() => Some(path),
        _ if std::env::var_os("CI").is_some() => {
            panic!("CI is set but SCHEMATHESIS is not: .ci/run installs schemathesis and sets it")
        }
        _ => {
            eprintln!(
                "skipped: set SCHEMATHESIS to a schemathesis 4.x executable (.ci/run installs one) to run the API contract check"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_running_binary() {
    let Some(schemathesis) = schemathesis() else {
        return;
    };
    let upstreams = BlueGreen::start().await;
    let tokens = format!(
        "[[tokens]]\nname = \"root\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        sha256_hex(ADMIN)
    );
    let proxy = Proxy::start(&upstreams.config(100, 0, "", &tokens));
    let (status, doc) = api(proxy.control, "GET", "/v1/openapi.json", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{doc}");
    let dir = proxy.dir.path();
    let schema = dir.join("openapi.json");
    std::fs::write(&schema, doc.to_string()).expect("write the document");
    let settings = dir.join("schemathesis.toml");
    std::fs::write(&settings, SCHEMATHESIS_TOML).expect("write the settings");

    let mut child = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&settings)
        .arg("--no-color")
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://{}", proxy.control)])
        .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "25", "--max-time", "120", "--seed", "7"])
        .args(["--workers", "1", "--request-timeout", "10"])
        // A deployment runs what its body names (a process source's command, a command
        // check): generated bodies must not start programs on this machine. Its validation
        // is covered by the handler tests (`api::tests::contract`, `api::tests::inputs`).
        .args(["--exclude-operation-id", "start_deployment"])
        // The dashboard's feed is an endless event stream (a snapshot every second until the
        // client leaves), which a request-response checker would wait on forever. Its
        // authorization and its snapshots are covered by `api::tests::dashboard` and
        // `tests/dashboard.rs`.
        .args(["--exclude-operation-id", "follow_dashboard"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {schemathesis}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let read = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let mut out = String::new();
            // A read error only shortens the report printed on failure.
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut r, &mut out).await;
            out
        })
    };
    let (out, err) = (read(Box::new(stdout)), read(Box::new(stderr)));
    let status = tokio::time::timeout(RUN_BOUND, child.wait())
        .await
        .expect("schemathesis finished within its bound")
        .expect("schemathesis ran");
    let out = out.await.expect("stdout reader");
    let err = err.await.expect("stderr reader");
    assert!(
        status.success(),
        "schemathesis found problems ({status}):\n{out}\n{err}\nswitchyard:\n{}",
        proxy.stderr()
    );
    assert!(out.contains("passed"), "no test ran:\n{out}");
}

#[tokio::test]
async fn a_deployment_whose_source_cannot_work_is_refused_before_it_gets_an_id() {
    let upstreams = BlueGreen::start().await;
    let proxy = Proxy::start(&upstreams.config(100, 0, "", ""));
    let deploy = |source: serde_json::Value| {
        let body = json!({"stack": "next", "version": "v3", "source": source});
        async move {
            api(
                proxy.control,
                "POST",
                "/v1/services/web/deployments",
                None,
                Some(&body),
            )
            .await
        }
    };
    let (status, v) = deploy(json!({"dns": {}})).await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("source.dns: expected { name, port } or { srv }"),
        "{message}"
    );
    let (status, v) = deploy(json!({"endpoints": []})).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (422, &json!("no_endpoints")),
        "{v}"
    );
    let (status, v) = api(
        proxy.control,
        "GET",
        "/v1/services/web/deployments",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["deployments"], json!([]), "no id was handed out");
    let (status, _) = api(
        proxy.control,
        "GET",
        "/v1/services/nosuch/deployments",
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
}
