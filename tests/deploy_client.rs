//! End-to-end tests of what the `switchyard deploy` client tells its user: the progress line
//! while a step waits for an operator, the weights on its last line after an abort or a
//! rollback, the exit codes (also in `--help`), and usage errors.

mod support;

use std::process::{Output, Stdio};
use std::time::Duration;
use support::{Proxy, Upstream, config, sha256_hex};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const SECRET: &str = "deployer-secret";
/// A failure bound for one wait, never a delay.
const WAIT: Duration = Duration::from_secs(60);

/// Service `web` with stack `blue` (v1.3, weight 100) and one `deploy` token, whose secret is
/// in the returned token file.
async fn proxy_with_blue(blue: &Upstream) -> (Proxy, Vec<String>) {
    let token = format!(
        "[[tokens]]\nname = \"ci\"\nrole = \"deploy\"\nsha256 = \"{}\"\n",
        sha256_hex(SECRET)
    );
    let proxy = Proxy::start(&config(
        &[("blue", "v1.3", 100, vec![blue.addr])],
        "",
        &token,
    ));
    let file = proxy.dir.path().join("ci.token");
    std::fs::write(&file, SECRET).expect("token file");
    let conn = vec![
        "--control".to_owned(),
        format!("http://{}", proxy.control),
        "--token-file".to_owned(),
        file.to_string_lossy().into_owned(),
        "--service".to_owned(),
        "web".to_owned(),
    ];
    (proxy, conn)
}

async fn cli(args: &[&str]) -> Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .expect("run the client")
}

fn with<'a>(conn: &'a [String], args: &[&'a str]) -> Vec<&'a str> {
    let mut v: Vec<&str> = args[..1].to_vec();
    v.extend(conn.iter().map(String::as_str));
    v.extend(&args[1..]);
    v
}

/// `deploy` of stack `green` (v1.4) on `green_addr`, with `extra` flags.
fn deploy_green<'a>(conn: &'a [String], green_addr: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "deploy",
        "--stack",
        "green",
        "--version",
        "v1.4",
        "--endpoint",
        green_addr,
    ];
    args.extend(extra);
    with(conn, &args)
}

fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn waiting_line_names_the_command_and_after_an_abort_the_last_line_shows_restored_weights() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let (proxy, conn) = proxy_with_blue(&blue).await;
    let green_addr = green.addr.to_string();
    let args = deploy_green(&conn, &green_addr, &["--canary", "25:manual,100", "--wait"]);
    let mut child = tokio::process::Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn deploy --wait");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let waiting = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if line.contains("waiting for promote") {
                return line;
            }
        }
        panic!("stderr ended before the manual step");
    })
    .await
    .expect("the manual step is reached");
    assert!(
        waiting.contains(
            "shifting(1/2) (waiting for promote: switchyard promote --service web)  weights: blue=75 green=25"
        ),
        "{waiting}"
    );

    let out = cli(&with(&conn, &["abort"])).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let rest = tokio::time::timeout(WAIT, async {
        let mut rest = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("the client ends after the rollback");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the client exits")
        .expect("wait");
    assert_eq!(out.status.code(), Some(3), "rolled back: {rest:?}");
    let last = rest.last().expect("a last progress line");
    assert!(
        last.ends_with("] rolled_back  weights: blue=100"),
        "the last line shows the restored weights: {rest:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("weights now: blue=100\n"), "{stdout}");

    // The deployment is over: promoting it is refused with 409, which exits 1.
    let out = cli(&with(&conn, &["promote", "--id", "1"])).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("control api answered 409"),
        "{out:?}"
    );
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn after_a_post_check_rollback_the_last_line_shows_restored_weights() {
    let blue = Upstream::start("v1.3").await;
    let green = Upstream::start("v1.4").await;
    let (proxy, conn) = proxy_with_blue(&blue).await;
    let green_addr = green.addr.to_string();
    let out = cli(&deploy_green(
        &conn,
        &green_addr,
        &["--blue-green", "--post-check", "GET /=418", "--wait"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("weights: blue=0 green=100"),
        "the cutover happened before the post-check: {stderr}"
    );
    assert!(
        last_line(&out.stderr).ends_with("] rolled_back  weights: blue=100"),
        "{stderr}"
    );
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn usage_errors_exit_2_and_help_lists_every_exit_code() {
    let conn = [
        "--control",
        "http://127.0.0.1:1",
        "--service",
        "web",
        "--stack",
        "x",
        "--version",
        "v",
    ];
    let mut args = vec!["deploy"];
    args.extend(conn);
    args.extend(["--process", "srv {port}", "--endpoint", "127.0.0.1:9"]);
    let out = cli(&args).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--process <PROCESS>' cannot be used with '--endpoint <ENDPOINTS>'"),
        "{stderr}"
    );

    let mut args = vec!["deploy"];
    args.extend(conn);
    args.extend(["--endpoint", "127.0.0.1:9", "--pre-check", "health"]);
    let out = cli(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --pre-check \"health\": expected [METHOD] PATH=STATUS, e.g. \"/health=200\" or \"POST /warm=204\"\n"
    );

    for command in ["deploy", "status", "promote", "abort", "rollback"] {
        let out = cli(&[command, "--help"]).await;
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        for code in ["  0  ", "  1  refused", "  2  usage", "  3  ", "  4  "] {
            assert!(
                help.contains(code),
                "{command} --help lacks {code:?}: {help}"
            );
        }
    }
}
