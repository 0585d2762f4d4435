//! The deploy job's and the operator's client commands: `switchyard deploy`, `status`,
//! `promote`, `pause`, `resume` and `abort`, over the control API.
//!
//! `deploy --wait` follows the deployment's event stream with a progress line (phase, step,
//! weights, elapsed) and exits [`EXIT_SUCCEEDED`], [`EXIT_ROLLED_BACK`] or [`EXIT_FAILED`],
//! printing the log when it did not succeed, so a CI step can gate on it. Usage, connection
//! and refused requests exit [`EXIT_USAGE`].

mod body;
mod client;

pub use client::Connection;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use client::Client;
use serde_json::Value;

/// The deployment succeeded.
pub const EXIT_SUCCEEDED: u8 = 0;
/// A command the API refused (409 on promote, say).
pub const EXIT_REFUSED: u8 = 1;
/// Bad usage, an unreachable control API, or a deployment the API did not accept.
pub const EXIT_USAGE: u8 = 2;
/// The deployment rolled back.
pub const EXIT_ROLLED_BACK: u8 = 3;
/// The deployment failed (even its rollback could not complete).
pub const EXIT_FAILED: u8 = 4;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The control API could not be reached.
    #[error("cannot reach the control api at {0}")]
    Connect(String),
    /// The API answered with an error.
    #[error("control api answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error message.
        message: String,
    },
}

/// The client subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DeployCommand {
    /// Start a deployment (and with --wait, follow it to the end).
    Deploy(Box<DeployArgs>),
    /// Which version is live where, at what weights, since when, deployed by which token.
    Status {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Move a deployment past its current pause.
    Promote(Target),
    /// Hold a deployment before its next advance.
    Pause(Target),
    /// Release a paused deployment.
    Resume(Target),
    /// Roll a deployment back.
    Abort(Target),
}

/// Which deployment an operator command is for.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    pub(crate) conn: Connection,
    /// The service.
    #[arg(long)]
    service: String,
    /// The deployment id (default: the one in progress).
    #[arg(long)]
    id: Option<u64>,
}

/// `switchyard deploy`
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    #[command(flatten)]
    pub(crate) conn: Connection,
    /// The service to deploy to.
    #[arg(long)]
    pub(crate) service: String,
    /// A JSON deployment body; the flags below override its fields.
    #[arg(long)]
    pub(crate) spec: Option<PathBuf>,
    /// Name of the new stack.
    #[arg(long)]
    pub(crate) stack: Option<String>,
    /// Version label of the new stack.
    #[arg(long)]
    pub(crate) version: Option<String>,
    /// Command to start, split on spaces; `{port}` is each replica's port.
    #[arg(long)]
    pub(crate) process: Option<String>,
    /// Replicas of --process.
    #[arg(long)]
    pub(crate) replicas: Option<u32>,
    /// KEY=VALUE for --process (repeatable).
    #[arg(long = "env")]
    pub(crate) env: Vec<String>,
    /// An endpoint started elsewhere (repeatable), instead of --process.
    #[arg(long = "endpoint")]
    pub(crate) endpoints: Vec<String>,
    /// Canary steps, e.g. 5:60s,25:60s,50:manual,100.
    #[arg(long, conflicts_with = "blue_green")]
    pub(crate) canary: Option<String>,
    /// Blue-green: one cutover after the checks (the default).
    #[arg(long)]
    pub(crate) blue_green: bool,
    /// A pre-integration check, `[METHOD] PATH=STATUS` (repeatable).
    #[arg(long = "pre-check", num_args = 1..=2)]
    pub(crate) pre_checks: Vec<String>,
    /// A post-integration check, `[METHOD] PATH=STATUS` (repeatable).
    #[arg(long = "post-check", num_args = 1..=2)]
    pub(crate) post_checks: Vec<String>,
    /// How long the previous stack stays as standby after the cutover.
    #[arg(long)]
    pub(crate) retire_after: Option<String>,
    /// Drain time of the previous stack's processes.
    #[arg(long)]
    pub(crate) drain_timeout: Option<String>,
    /// Follow the deployment to its end; the exit code tells how it ended.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// Runs a client subcommand and returns the process exit code.
pub fn run(command: DeployCommand) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = rt.block_on(async move {
        match command {
            DeployCommand::Deploy(args) => deploy(*args).await,
            DeployCommand::Status { conn, service } => status(&conn, service.as_deref()).await,
            DeployCommand::Promote(t) => operate(t, "promote").await,
            DeployCommand::Pause(t) => operate(t, "pause").await,
            DeployCommand::Resume(t) => operate(t, "resume").await,
            DeployCommand::Abort(t) => operate(t, "abort").await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                CliError::Api { status: 409, .. } => EXIT_REFUSED,
                _ => EXIT_USAGE,
            })
        }
    }
}

async fn deploy(args: DeployArgs) -> Result<u8, CliError> {
    let spec = body::body(&args)?;
    let client = Client::new(&args.conn)?;
    let path = format!("/v1/services/{}/deployments", args.service);
    let started = client.json("POST", &path, Some(&spec)).await?;
    let id = started["id"].as_u64().unwrap_or(0);
    println!(
        "deployment {id} of {} started: stack {} version {}",
        args.service, started["stack"], started["version"]
    );
    if !args.wait {
        return Ok(EXIT_SUCCEEDED);
    }
    let clock = tokio::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut events = client.events(&format!("{path}/{id}/events")).await?;
    let mut last = Value::Null;
    let mut printed = String::new();
    while let Some((name, data)) = events.next().await? {
        let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        if name == "log" {
            continue;
        }
        let line = progress(&value, clock.elapsed().as_secs_f64());
        if line != printed {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            // Best effort: progress output only.
            let _ = std::io::stderr().flush();
            printed = line;
        }
        last = value;
    }
    if tty {
        eprintln!();
    }
    // The transition events carry no log; the full record does.
    let rec = client
        .json("GET", &format!("{path}/{id}"), None)
        .await
        .unwrap_or(last);
    let phase = rec["phase"].as_str().unwrap_or("");
    let code = match phase {
        "succeeded" => EXIT_SUCCEEDED,
        "rolled_back" => EXIT_ROLLED_BACK,
        "failed" => EXIT_FAILED,
        _ => {
            return Err(CliError::Connect(format!(
                "the event stream ended with the deployment in {phase:?}"
            )));
        }
    };
    if code != EXIT_SUCCEEDED {
        println!(
            "deployment {id} {phase}: {}",
            rec["reason"].as_str().unwrap_or("")
        );
        if let Some(left) = rec["left"].as_str() {
            println!("left: {left}");
        }
        println!("log:");
        for l in rec["log"].as_array().map(Vec::as_slice).unwrap_or_default() {
            println!(
                "  {} [{}] {}",
                l["time"].as_str().unwrap_or(""),
                l["source"].as_str().unwrap_or(""),
                l["line"].as_str().unwrap_or("")
            );
        }
    } else {
        println!(
            "deployment {id} succeeded in {:.1}s",
            clock.elapsed().as_secs_f64()
        );
    }
    Ok(code)
}

fn weights_text(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, w)| format!("{k}={w}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn progress(v: &Value, elapsed: f64) -> String {
    let paused = if v["paused"].as_bool() == Some(true) {
        " paused"
    } else {
        ""
    };
    let waiting = match v["step"]["waiting"].as_str() {
        Some("promote") => " (waiting for promote)",
        Some("timer") => " (pause)",
        _ => "",
    };
    format!(
        "[{elapsed:6.1}s] {}{waiting}{paused}  weights: {}",
        v["label"].as_str().unwrap_or("?"),
        weights_text(&v["weights"])
    )
}

async fn status(conn: &Connection, only: Option<&str>) -> Result<u8, CliError> {
    let client = Client::new(conn)?;
    let services: Vec<Value> = match only {
        Some(s) => vec![
            client
                .json("GET", &format!("/v1/services/{s}"), None)
                .await?,
        ],
        None => {
            let list = client.json("GET", "/v1/services", None).await?;
            let mut out = Vec::new();
            for s in list["services"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let name = s["name"].as_str().unwrap_or_default();
                out.push(
                    client
                        .json("GET", &format!("/v1/services/{name}"), None)
                        .await?,
                );
            }
            out
        }
    };
    for svc in services {
        let name = svc["name"].as_str().unwrap_or_default();
        let deployments = client
            .json("GET", &format!("/v1/services/{name}/deployments"), None)
            .await?;
        let deployments = deployments["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!(
            "service {name} (revision {}, active {})",
            svc["revision"],
            svc["active"].as_str().unwrap_or("none")
        );
        let stacks = svc["stacks"].as_array().cloned().unwrap_or_default();
        let total: u64 = stacks.iter().filter_map(|s| s["weight"].as_u64()).sum();
        println!(
            "  {:<12} {:<10} {:>6} {:>6}  {:<32} deployed by",
            "stack", "version", "weight", "share", "live since"
        );
        for s in &stacks {
            let stack = s["name"].as_str().unwrap_or_default();
            let weight = s["weight"].as_u64().unwrap_or(0);
            let share = (weight * 100).checked_div(total).unwrap_or(0);
            let by = deployments
                .iter()
                .find(|d| d["stack"] == stack && d["phase"] == "succeeded")
                .map_or_else(
                    || "-".to_owned(),
                    |d| {
                        format!(
                            "{} (deployment {}, {})",
                            d["created_by"].as_str().unwrap_or("?"),
                            d["id"],
                            d["finished_at"].as_str().unwrap_or("")
                        )
                    },
                );
            println!(
                "  {:<12} {:<10} {:>6} {:>5}%  {:<32} {by}",
                stack,
                s["version"].as_str().unwrap_or_default(),
                weight,
                share,
                s["promoted_at"].as_str().unwrap_or("-"),
            );
        }
        if let Some(d) = svc["deployment"].as_object() {
            println!(
                "  deployment {} in progress: {} (stack {}, started by {} at {})",
                d["id"],
                d["label"].as_str().unwrap_or("?"),
                d["stack"].as_str().unwrap_or("?"),
                d["created_by"].as_str().unwrap_or("?"),
                d["created_at"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(EXIT_SUCCEEDED)
}

async fn operate(t: Target, word: &str) -> Result<u8, CliError> {
    let client = Client::new(&t.conn)?;
    let base = format!("/v1/services/{}/deployments", t.service);
    let id = match t.id {
        Some(id) => id,
        None => {
            let list = client.json("GET", &base, None).await?;
            list["deployments"]
                .as_array()
                .and_then(|ds| {
                    ds.iter().find(|d| {
                        !matches!(
                            d["phase"].as_str(),
                            Some("succeeded" | "rolled_back" | "failed")
                        )
                    })
                })
                .and_then(|d| d["id"].as_u64())
                .ok_or_else(|| {
                    CliError::Usage(format!("no deployment of {} in progress", t.service))
                })?
        }
    };
    let v = client
        .json("POST", &format!("{base}/{id}/{word}"), None)
        .await?;
    println!(
        "deployment {id}: {}",
        progress(&v, 0.0).split_once("] ").map_or("", |(_, r)| r)
    );
    Ok(EXIT_SUCCEEDED)
}
