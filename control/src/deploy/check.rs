//! Pre- and post-integration checks: http requests and commands.
//!
//! Pre-integration checks target the new stack's endpoints directly (no user request has
//! reached it). Post-integration checks go through the proxy's own public listener with the
//! service's Host header and the pin header naming the new stack: the path users take. An http
//! check passes when every one of its `repeat` answers (per endpoint, for pre-integration)
//! has the expected status, body substring and JSON value; checks stop at the first failure.
//! A command check passes on exit status 0; its output goes to the deployment log and a
//! timeout kills it.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::timeout;

use super::outbound::send;
use super::plan::Check;
use super::record::CheckResult;
use super::source::Reporter;
use crate::store::now;

/// How long a finished command's output may still be read.
const PIPE_WAIT: Duration = Duration::from_secs(1);

/// Where checks send their requests.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The new stack's endpoints, directly.
    Direct {
        endpoints: Vec<SocketAddr>,
        host: String,
    },
    /// The proxy's public listener, pinned to the new stack.
    Proxy {
        listener: SocketAddr,
        host: String,
        pin_header: String,
        stack: String,
    },
}

/// What the command checks learn through their environment.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) post: bool,
    pub(crate) service: String,
    pub(crate) stack: String,
    pub(crate) version: String,
}

/// Runs `checks` in order, stopping at the first failure. True when all passed.
pub(crate) async fn run(
    checks: &[Check],
    target: &Target,
    ctx: &Context,
    report: &Reporter,
) -> (Vec<CheckResult>, bool) {
    let phase = if ctx.post {
        "post_integration"
    } else {
        "pre_integration"
    };
    let mut results = Vec::new();
    for check in checks {
        let name = check.name();
        report.log("check", format!("{phase}: {name}"));
        let outcome = match check {
            Check::Http { .. } => http(check, target).await,
            Check::Command { argv, timeout } => command(argv, *timeout, target, ctx, report).await,
        };
        let (passed, detail) = match outcome {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        report.log(
            "check",
            format!(
                "{phase}: {name}: {} ({detail})",
                if passed { "passed" } else { "failed" }
            ),
        );
        results.push(CheckResult {
            phase: phase.to_owned(),
            name,
            passed,
            detail,
            at: now(),
        });
        if !passed {
            return (results, false);
        }
    }
    (results, true)
}

async fn http(check: &Check, target: &Target) -> Result<String, String> {
    let Check::Http { repeat, .. } = check else {
        return Err("not an http check".to_owned());
    };
    let (addresses, host, pin): (Vec<SocketAddr>, &str, Option<(&str, &str)>) = match target {
        Target::Direct { endpoints, host } => (endpoints.clone(), host, None),
        Target::Proxy {
            listener,
            host,
            pin_header,
            stack,
        } => (vec![*listener], host, Some((pin_header, stack))),
    };
    if addresses.is_empty() {
        return Err("no endpoint to check".to_owned());
    }
    let mut sent = 0;
    for _ in 0..*repeat {
        for addr in &addresses {
            one(check, *addr, host, pin)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
            sent += 1;
        }
    }
    Ok(format!("{sent} answers as expected"))
}

async fn one(
    check: &Check,
    addr: SocketAddr,
    host: &str,
    pin: Option<(&str, &str)>,
) -> Result<(), String> {
    let Check::Http {
        method,
        path,
        headers,
        body,
        status,
        contains,
        json,
        timeout: limit,
        ..
    } = check
    else {
        return Err("not an http check".to_owned());
    };
    let mut req = hyper::Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .header(hyper::header::HOST, host);
    if let Some((name, stack)) = pin {
        req = req.header(name, stack);
    }
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.clone())))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let (code, bytes) = send(&addr.ip().to_string(), addr.port(), req, *limit).await?;
    if code != *status {
        return Err(format!("status {code}, expected {status}"));
    }
    if let Some(needle) = contains {
        if !String::from_utf8_lossy(&bytes).contains(needle.as_str()) {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    if let Some((pointer, expected)) = json {
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("body is not JSON: {e}"))?;
        match value.pointer(pointer) {
            Some(v) if v == expected => {}
            Some(v) => return Err(format!("{pointer} is {v}, expected {expected}")),
            None => return Err(format!("{pointer} is absent")),
        }
    }
    Ok(())
}

async fn command(
    argv: &[String],
    limit: Duration,
    target: &Target,
    ctx: &Context,
    report: &Reporter,
) -> Result<String, String> {
    let (url, extra): (String, Vec<(&str, String)>) = match target {
        Target::Direct { endpoints, host } => (
            endpoints
                .first()
                .map_or_else(String::new, |e| format!("http://{e}")),
            vec![
                (
                    "SWITCHYARD_ENDPOINTS",
                    endpoints
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("SWITCHYARD_HOST", host.clone()),
            ],
        ),
        Target::Proxy {
            listener,
            host,
            pin_header,
            ..
        } => (
            format!("http://{listener}"),
            vec![
                ("SWITCHYARD_HOST", host.clone()),
                ("SWITCHYARD_PIN_HEADER", pin_header.clone()),
            ],
        ),
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_remove("NOTIFY_SOCKET")
        .env(
            "SWITCHYARD_TEST_TYPE",
            if ctx.post {
                "post-integration"
            } else {
                "pre-integration"
            },
        )
        .env("SWITCHYARD_TARGET_URL", url)
        .env("SWITCHYARD_SERVICE", &ctx.service)
        .env("SWITCHYARD_STACK", &ctx.stack)
        .env("SWITCHYARD_VERSION", &ctx.version)
        .envs(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child =
        crate::launcher::spawn(cmd).map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    let mut pipes = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.push(tokio::spawn(pipe(out, report.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(tokio::spawn(pipe(err, report.clone())));
    }
    let status = match timeout(limit, child.wait()).await {
        Ok(s) => s.map_err(|e| format!("cannot wait for it: {e}"))?,
        Err(_) => {
            // Kill errors only when it exited meanwhile.
            let _ = child.kill().await;
            return Err(format!("timed out after {limit:?}"));
        }
    };
    for p in pipes {
        // The readers end with the pipes, unless a grandchild keeps them open: wait briefly;
        // a failure or a timeout only loses log lines.
        let _ = timeout(PIPE_WAIT, p).await;
    }
    if status.success() {
        Ok(status.to_string())
    } else {
        Err(status.to_string())
    }
}

async fn pipe(stream: impl AsyncRead + Unpin, report: Reporter) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        report.log("check", line);
    }
}
