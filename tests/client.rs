//! End-to-end tests of the client commands through the real binary against a real server:
//! the connection from environment variables instead of flags, an `https://` control API
//! verified with `--ca` (and refused without it or with another CA), `--output json` checked
//! against the API's own answers, `deployments watch` re-attaching to a running deployment and
//! exiting with the code `deploy --wait` exits with, Ctrl-C during `deploy --wait` leaving the
//! deployment running with the command that re-attaches, and the analysis verdicts, gates and
//! failing figures printed while waiting.

mod support;

use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::client::{
    CLIENT_ENV, Ca, Running, SECRET, WAIT, cli, cli_env, conn, deploy, deployment, json,
    proxy_with_blue, stdout, text, token_file, waiting_for_promote, with,
};
use support::{Client, Upstream, api};
use switchyard::demo::{DemoExtras, DemoUpstream, spawn_demo_upstream_with};

#[tokio::test]
async fn environment_variables_stand_in_for_the_connection_flags_and_flags_win() {
    let blue = Upstream::start("v1.3").await;
    let proxy = proxy_with_blue(&blue, tempfile::tempdir().expect("dir"), "");
    let url = format!("http://{}", proxy.control);
    let file = token_file(&proxy);
    let file = file.to_str().expect("utf-8");

    let out = cli_env(
        &["status"],
        &[
            ("SWITCHYARD_CONTROL_URL", &url),
            ("SWITCHYARD_TOKEN", SECRET),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("service web (revision"),
        "{}",
        text(&out)
    );

    let out = cli_env(
        &["deployments", "list", "--service", "web"],
        &[
            ("SWITCHYARD_CONTROL_URL", &url),
            ("SWITCHYARD_TOKEN_FILE", file),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A flag wins over its variable: a wrong URL or token in the environment is not used.
    let out = cli_env(
        &["status", "--control", &url, "--token-file", file],
        &[
            ("SWITCHYARD_CONTROL_URL", "http://127.0.0.1:1"),
            ("SWITCHYARD_TOKEN", "wrong"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Without a token the API refuses (401, exit 2); with neither flag nor variable for the
    // URL, clap names both.
    let out = cli_env(&["status"], &[("SWITCHYARD_CONTROL_URL", &url)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("control api answered 401"),
        "{}",
        text(&out)
    );
    let out = cli_env(&["status"], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--control <CONTROL>"),
        "{}",
        text(&out)
    );

    for sub in [
        &["status"][..],
        &["deploy"],
        &["promote"],
        &["deployments", "watch"],
        &["deployments", "list"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let out = cli_env(&args, &[]).await;
        let help = stdout(&out);
        for v in CLIENT_ENV {
            assert!(help.contains(v), "{sub:?} --help lacks {v}: {help}");
        }
        assert!(
            help.contains("Example") && help.contains("  130  "),
            "{sub:?}: {help}"
        );
    }
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn https_control_api_is_verified_against_the_given_ca_and_refused_otherwise() {
    let blue = Upstream::start("v1.3").await;
    let dir = tempfile::tempdir().expect("dir");
    let ca = Ca::new();
    ca.issue(dir.path());
    let ca_file = dir.path().join("ca.pem");
    ca.write(&ca_file);
    let other_file = dir.path().join("other-ca.pem");
    Ca::new().write(&other_file);
    let proxy = proxy_with_blue(
        &blue,
        dir,
        "tls = { certs = [{ cert = \"control.crt\", key = \"control.key\" }] }\n",
    );
    let url = format!("https://localhost:{}", proxy.control.port());
    let file = token_file(&proxy);
    let file = file.to_str().expect("utf-8");
    let ca_file = ca_file.to_str().expect("utf-8");

    let out = cli_env(
        &[
            "status",
            "--control",
            &url,
            "--token-file",
            file,
            "--ca",
            ca_file,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("service web (revision"),
        "{}",
        text(&out)
    );

    // The same through the environment, JSON included.
    let out = cli_env(
        &["status", "--output", "json"],
        &[
            ("SWITCHYARD_CONTROL_URL", &url),
            ("SWITCHYARD_TOKEN_FILE", file),
            ("SWITCHYARD_CA", ca_file),
        ],
    )
    .await;
    assert_eq!(json(&out)["services"][0]["name"], "web");

    // Not trusted: no --ca (the webpki roots do not know this CA: UnknownIssuer), or another
    // CA (of the same subject: BadSignature).
    for extra in [&[][..], &["--ca", other_file.to_str().expect("utf-8")]] {
        let mut args = vec!["status", "--control", &url, "--token-file", file];
        args.extend(extra);
        let out = cli_env(&args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&format!(
                "error: tls handshake with the control api at localhost:{} failed: invalid peer certificate: ",
            proxy.control.port()))
                && stderr.contains("the control API's certificate is not trusted; pass --ca (or SWITCHYARD_CA) with the CA that signed it"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "{}", text(&out));
    }

    // A CA file that holds no certificate is a usage error naming it.
    let out = cli_env(&["status", "--control", &url, "--ca", file], &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(&format!("error: --ca {file}: ")),
        "{}",
        text(&out)
    );

    // Plain http:// to the TLS listener says what to do.
    let out = cli_env(
        &[
            "status",
            "--control",
            &format!("http://{}", proxy.control),
            "--token-file",
            file,
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("use https://"),
        "{}",
        text(&out)
    );
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn output_json_is_the_apis_state() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = proxy_with_blue(&blue, tempfile::tempdir().expect("dir"), "");
    let conn = conn(&proxy);
    let green_addr = green.addr.to_string();
    let out = cli_env(&deploy(&conn, "green", &green_addr, &["--wait"]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let get = |path: String| async move {
        let (status, v) = api(proxy.control, "GET", &path, Some(SECRET), None).await;
        assert_eq!(status, 200, "{v}");
        v
    };
    let status = json(&cli(&conn, &["status", "--output", "json"]).await);
    let service = get("/v1/services/web".into()).await;
    let listed = get("/v1/services/web/deployments".into()).await;
    assert_eq!(status["services"].as_array().expect("services").len(), 1);
    for field in ["name", "revision", "active", "stacks"] {
        let (a, b) = (&status["services"][0][field], &service[field]);
        if field == "stacks" {
            let names = |v: &Value| -> Vec<(String, u64)> {
                v.as_array()
                    .expect("stacks")
                    .iter()
                    .map(|s| {
                        (
                            s["name"].as_str().expect("name").to_owned(),
                            s["weight"].as_u64().expect("weight"),
                        )
                    })
                    .collect()
            };
            assert_eq!(names(a), names(b));
            assert_eq!(names(a), [("blue".into(), 0), ("green".into(), 100)]);
        } else {
            assert_eq!(a, b, "{field}");
        }
    }
    assert_eq!(status["deployments"]["web"], listed["deployments"]);
    assert_eq!(status["deployments"]["web"][0]["phase"], "succeeded");

    let list = json(&cli(&conn, &["deployments", "list", "--output", "json"]).await);
    let mut entries = list["deployments"].as_array().expect("entries").clone();
    assert_eq!(entries.len(), 1, "{list}");
    assert_eq!(entries[0]["service"], "web");
    entries[0].as_object_mut().expect("entry").remove("service");
    assert_eq!(Value::Array(entries), listed["deployments"]);

    let view = get("/v1/services/web/deployments/1".into()).await;
    let shown = json(&cli(&conn, &["deployments", "show", "1", "--output", "json"]).await);
    assert_eq!(shown, view);
    assert_eq!(shown["phase"], "succeeded");
    let shown = json(
        &cli(
            &conn,
            &[
                "deployments",
                "show",
                "1",
                "--service",
                "web",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(shown, view);

    let logs = json(&cli(&conn, &["deployments", "logs", "1", "--output", "json"]).await);
    assert_eq!(logs["log"], view["log"]);
    assert_eq!(
        (&logs["service"], &logs["id"]),
        (&view["service"], &view["id"])
    );
    let out = cli(&conn, &["deployments", "logs", "1"]).await;
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    let expected: Vec<String> = view["log"]
        .as_array()
        .expect("log")
        .iter()
        .map(|l| {
            format!(
                "{} [{}] {}",
                l["time"].as_str().expect("time"),
                l["source"].as_str().expect("source"),
                l["line"].as_str().expect("line")
            )
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(lines, expected);

    let out = cli(&conn, &["deployments", "show", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("deployment 1 of web: stack green version green\n"),
        "{}",
        text(&out)
    );
    let out = cli(&conn, &["deployments", "show", "9"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no service has a deployment 9\n"
    );
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn watch_reattaches_and_exits_with_the_code_deploy_wait_exits_with() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let red = Upstream::start("v1.5").await;
    let proxy = proxy_with_blue(&blue, tempfile::tempdir().expect("dir"), "");
    let conn = conn(&proxy);
    let (green_addr, red_addr) = (green.addr.to_string(), red.addr.to_string());

    // Success: deploy --wait and a watch attached to the same deployment both exit 0.
    let mut waiting = Running::spawn(&deploy(
        &conn,
        "green",
        &green_addr,
        &["--canary", "50:manual,100", "--wait"],
    ));
    waiting.until("waiting for promote").await;
    let mut watch = Running::spawn(&with(&conn, &["deployments", "watch", "1"]));
    let line = watch.until("waiting for promote").await;
    assert!(
        line.contains("shifting(1/2) (waiting for promote: switchyard promote --service web)  weights: blue=50 green=50"),
        "the watch shows the same progress: {line}"
    );
    let out = cli(&conn, &["promote", "--service", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (deploy_code, _, _) = waiting.end().await;
    let (watch_code, watch_out, watch_err) = watch.end().await;
    assert_eq!(deploy_code, Some(0));
    assert_eq!(watch_code, Some(0), "{watch_out} {watch_err:#?}");
    assert!(
        watch_out.starts_with("deployment 1 of web: stack green version green, started by ci at ")
            && watch_out.contains("\ndeployment 1 succeeded in "),
        "{watch_out}"
    );
    assert!(
        watch_err
            .last()
            .is_some_and(|l| l.ends_with("] succeeded  weights: blue=0 green=100")),
        "{watch_err:#?}"
    );

    // Rollback: both exit 3, both print the reason.
    let mut waiting = Running::spawn(&deploy(
        &conn,
        "red",
        &red_addr,
        &["--canary", "50:manual,100", "--wait"],
    ));
    waiting.until("waiting for promote").await;
    let mut watch = Running::spawn(&with(
        &conn,
        &["deployments", "watch", "2", "--service", "web"],
    ));
    watch.until("waiting for promote").await;
    let out = cli(&conn, &["abort", "--service", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (deploy_code, deploy_out, _) = waiting.end().await;
    let (watch_code, watch_out, _) = watch.end().await;
    assert_eq!(deploy_code, Some(3), "{deploy_out}");
    assert_eq!(watch_code, deploy_code, "{watch_out}");
    for out in [&deploy_out, &watch_out] {
        assert!(
            out.contains("deployment 2 rolled_back: aborted by ci")
                && out.contains("\nweights now: blue=0 green=100\n"),
            "{out}"
        );
    }

    // A finished deployment: watch tells how it ended at once, with the same codes.
    let out = cli(&conn, &["deployments", "watch", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cli(&conn, &["deployments", "watch", "2"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn ctrl_c_during_deploy_wait_leaves_the_deployment_running_and_prints_the_watch_command() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let proxy = proxy_with_blue(&blue, tempfile::tempdir().expect("dir"), "");
    let conn = conn(&proxy);
    let green_addr = green.addr.to_string();
    let mut waiting = Running::spawn(&deploy(
        &conn,
        "green",
        &green_addr,
        &["--canary", "50:manual,100", "--wait"],
    ));
    waiting.until("waiting for promote").await;
    let pid = waiting.child.id().expect("pid");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let (code, _, stderr) = waiting.end().await;
    assert_eq!(code, Some(130), "{stderr:#?}");
    let expected = format!(
        "re-attach with: switchyard deployments watch 1 --service web --control http://{} --token-file {}",
        proxy.control,
        token_file(&proxy).display()
    );
    assert!(stderr.contains(&expected), "{stderr:#?}");
    assert!(
        stderr
            .iter()
            .any(|l| l == "interrupted: deployment 1 of web keeps running (shifting(1/2))"),
        "{stderr:#?}"
    );

    // The deployment still runs, held at its manual step.
    let v = deployment(&proxy, 1, "the manual step", waiting_for_promote).await;
    assert_eq!(v["phase"], "shifting", "{v}");

    // The printed command re-attaches and ends with the deployment.
    let printed: Vec<String> = expected
        .trim_start_matches("re-attach with: switchyard ")
        .split(' ')
        .map(str::to_owned)
        .collect();
    let printed: Vec<&str> = printed.iter().map(String::as_str).collect();
    let mut watch = Running::spawn(&printed);
    watch.until("waiting for promote").await;
    let out = cli(&conn, &["promote", "--service", "web"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (code, out, _) = watch.end().await;
    assert_eq!(code, Some(0), "{out}");
    assert!(proxy.stop().success());
}

/// Sequential keep-alive clients sending `GET /` until `stop` (at most 20,000 requests each).
fn load(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut c = Client::connect(addr).await;
        let mut sent = 0;
        let deadline = tokio::time::Instant::now() + WAIT;
        while !stop.load(Ordering::Relaxed)
            && sent < 20_000
            && tokio::time::Instant::now() < deadline
        {
            if c.try_request("GET", "/", &[], bytes::Bytes::new())
                .await
                .is_err()
            {
                c = Client::connect(addr).await;
            }
            sent += 1;
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_wait_prints_gates_and_verdicts_as_they_happen_and_the_failing_figures() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start_with("v1.4", 1.0, Duration::ZERO).await;
    // The gate asks an upstream whose /health answers 503 ("not yet") until the file exists,
    // then 200 (approved): the test approves once the client showed the wait.
    let approval = tempfile::tempdir().expect("dir");
    let approved = approval.path().join("approved");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind approver");
    let approver = listener.local_addr().expect("addr");
    let approver_handle = spawn_demo_upstream_with(
        listener,
        DemoUpstream {
            version: "approver".into(),
            fail_rate: 0.0,
            latency: Duration::ZERO,
        },
        DemoExtras {
            log_requests: false,
            healthy_when: Some(approved.clone()),
        },
    );
    let proxy = proxy_with_blue(&blue, tempfile::tempdir().expect("dir"), "");
    let conn = conn(&proxy);
    let green_addr = green.addr.to_string();
    let gate = format!("shift=http://{approver}/health,interval=100ms");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(proxy.addr("public"), stop.clone());
    // Windows with too few requests are inconclusive; enough of them in a row would roll back
    // for that reason instead, so many are allowed: the first judged window fails.
    let mut waiting = Running::spawn(&deploy(
        &conn,
        "green",
        &green_addr,
        &[
            "--canary",
            "50:30s,100",
            "--gate",
            &gate,
            "--analysis-interval",
            "300ms",
            "--analysis-min-requests",
            "5",
            "--analysis-max-inconclusive",
            "50",
            "--analysis-max-error-rate",
            "0.1",
            "--wait",
        ],
    ));
    let gate_wait =
        format!("] gate shift: waiting until http://{approver}/health answers 200 (up to 10m)");
    waiting.until(&gate_wait).await;
    std::fs::write(&approved, "").expect("approve");
    let (code, stdout, stderr) = waiting.end().await;
    stop.store(true, Ordering::Relaxed);
    let sent = traffic.await.expect("load");
    assert!(sent > 0);
    approver_handle.stop();
    let stderr = stderr.join("\n");
    assert_eq!(code, Some(3), "{stdout}\n{stderr}");
    // In the order they happened.
    let at = |needle: &str| {
        stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in {stderr}"))
    };
    assert!(
        at(&gate_wait) < at("] gate shift: passed\n")
            && at("] gate shift: passed\n") < at("] shifting(1/2)")
            && at("] shifting(1/2)") < at("] analysis 1/2: fail: error rate 1 > 0.1 over ")
            && at("] analysis 1/2: fail: ") < at("] rolling_back"),
        "{stderr}"
    );
    assert!(
        stdout.contains("deployment 1 rolled_back: analysis failed at 1/2: error rate 1 > 0.1")
            && stdout.contains("\nfailing analysis windows:\n  analysis 1/2: fail: ")
            && stdout.contains("\n    new stack over ")
            && stdout.contains(" errors (error rate 1.0000), p99 ")
            && stdout.contains("\n    previous stacks: "),
        "{stdout}"
    );
    assert!(proxy.stop().success());
}
