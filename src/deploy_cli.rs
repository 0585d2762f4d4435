//! The deploy job's and the operator's client commands: `switchyard deploy`, `status`,
//! `promote`, `pause`, `resume` and `abort`, over the control API.
//!
//! `deploy --wait` follows the deployment's event stream with a progress line (phase, step,
//! weights, elapsed; while a step waits for an operator, the command that continues it) and
//! exits [`EXIT_SUCCEEDED`], [`EXIT_ROLLED_BACK`] or [`EXIT_FAILED`], printing the log when it
//! did not succeed, so a CI step can gate on it. Its last progress line shows the weights the
//! service is left with (after a rollback, the restored ones). A request the API refuses as
//! conflicting (409) exits [`EXIT_REFUSED`]; usage errors, an unreachable API and other
//! rejected requests exit [`EXIT_USAGE`]. [`EXIT_CODES`] is the table `--help` shows.

mod body;
mod client;

pub use client::Connection;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  done (deploy --wait: the deployment succeeded)
  1  refused: the control API answered 409 (e.g. promote with no step waiting, a deployment
     already in progress)
  2  usage error, the control API unreachable, or a request it rejected (400, 401, 403, 404,
     422)
  3  deploy --wait: the deployment rolled back (the previous state is restored)
  4  deploy --wait: the deployment failed (even its rollback could not complete)";

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
    #[command(after_help = EXIT_CODES)]
    Deploy(Box<DeployArgs>),
    /// Which version is live where, at what weights, since when, deployed by which token.
    #[command(after_help = EXIT_CODES)]
    Status {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
    },
    /// Move a deployment past its current pause.
    #[command(after_help = EXIT_CODES)]
    Promote(Target),
    /// Hold a deployment before its next advance.
    #[command(after_help = EXIT_CODES)]
    Pause(Target),
    /// Release a paused deployment.
    #[command(after_help = EXIT_CODES)]
    Resume(Target),
    /// Roll a deployment back.
    #[command(after_help = EXIT_CODES)]
    Abort(Target),
    /// Restore the service as before its latest successful deployment: switches back to the
    /// previous stack while it is kept at weight 0, or re-deploys it once it was retired.
    #[command(after_help = EXIT_CODES)]
    Rollback {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// The service.
        #[arg(long)]
        service: String,
    },
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
    #[arg(long, conflicts_with = "endpoints")]
    pub(crate) process: Option<String>,
    /// An image to run as containers on the Docker Engine, e.g. `auth:v1.4` (needs --port).
    #[arg(long, conflicts_with_all = ["process", "endpoints"], requires = "port")]
    pub(crate) image: Option<String>,
    /// The port the --image containers serve on, inside the container.
    #[arg(long, requires = "image")]
    pub(crate) port: Option<u16>,
    /// When --image is pulled: never, if_missing (default) or always.
    #[arg(long, requires = "image", value_parser = ["never", "if_missing", "always"])]
    pub(crate) pull: Option<String>,
    /// Who decides an --image replica is healthy: switchyard (default) or docker (its
    /// HEALTHCHECK).
    #[arg(long, requires = "image", value_parser = ["switchyard", "docker"])]
    pub(crate) health: Option<String>,
    /// Replicas of --process or --image.
    #[arg(long)]
    pub(crate) replicas: Option<u32>,
    /// KEY=VALUE for --process or --image (repeatable).
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
    /// How long the previous stack stays at weight 0 after the cutover, so `switchyard
    /// rollback` switches back at once (default 10m).
    #[arg(long)]
    pub(crate) retire_after: Option<String>,
    /// Canary analysis: the window length (e.g. 10s); needs --canary.
    #[arg(long)]
    pub(crate) analysis_interval: Option<String>,
    /// Canary analysis: the highest error rate of a window, 0..1; needs --canary.
    #[arg(long)]
    pub(crate) analysis_max_error_rate: Option<f64>,
    /// Canary analysis: the highest p99 of a window (e.g. 300ms); needs --canary.
    #[arg(long)]
    pub(crate) analysis_max_p99: Option<String>,
    /// Canary analysis: judge and record but never hold a step or roll back.
    #[arg(long)]
    pub(crate) analysis_dry_run: bool,
    /// Drain time of the previous stack's processes.
    #[arg(long)]
    pub(crate) drain_timeout: Option<String>,
    /// Rolling update of the live process stack --stack: replicas replaced N at a time.
    #[arg(long, conflicts_with_all = ["canary", "blue_green"])]
    pub(crate) rolling_batch_size: Option<u32>,
    /// Rolling update: time between two batches (default 5s).
    #[arg(long, conflicts_with_all = ["canary", "blue_green"])]
    pub(crate) rolling_interval: Option<String>,
    /// Rolling update: start each batch's new replicas before stopping old ones (the
    /// default; `--start-first=false` stops old ones first).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", conflicts_with_all = ["canary", "blue_green"])]
    pub(crate) start_first: Option<bool>,
    /// An approval gate, `BEFORE=URL[,timeout=D][,interval=D]` with BEFORE `shift`, `step:N`
    /// or `promote` (repeatable): the deployment waits until URL answers 200; 403 rolls back.
    #[arg(long = "gate")]
    pub(crate) gates: Vec<String>,
    /// Makes a retried call safe: the same key and body return the deployment the first call
    /// started (keys are remembered 24 h).
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Validate everything and print the plan (phases and weights); change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub(crate) dry_run: bool,
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
            DeployCommand::Rollback { conn, service } => rollback(&conn, &service).await,
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
    if args.dry_run {
        let plan = client
            .json("POST", &format!("{path}?dry_run=true"), Some(&spec))
            .await?;
        print_plan(&plan);
        return Ok(EXIT_SUCCEEDED);
    }
    let key: Vec<(&str, &str)> = args
        .idempotency_key
        .as_deref()
        .map(|k| ("idempotency-key", k))
        .into_iter()
        .collect();
    let started = client.json_with("POST", &path, Some(&spec), &key).await?;
    let id = started["id"].as_u64().unwrap_or(0);
    let phase = started["phase"].as_str().unwrap_or("");
    if phase == "provisioning" {
        println!(
            "deployment {id} of {} started: stack {} version {}",
            args.service, started["stack"], started["version"]
        );
    } else {
        println!(
            "deployment {id} of {} (started before with this idempotency key) is {}",
            args.service,
            started["label"].as_str().unwrap_or(phase)
        );
    }
    if !args.wait {
        return Ok(EXIT_SUCCEEDED);
    }
    let clock = tokio::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut events = client.events(&format!("{path}/{id}/events")).await?;
    let mut last = Value::Null;
    let mut shown = Progress::new(tty, clock);
    // A terminal gets its line redrawn every second; a log gets a line when something changed,
    // and while nothing does (a pause, a manual step) one every 30 s, so time keeps counting.
    let mut tick = tokio::time::interval(if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(30)
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Cancel-safe: a frame is only taken from the body once it is complete.
            next = events.next() => {
                let Some((name, data)) = next? else { break };
                if name == "log" {
                    continue;
                }
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                shown.show(state_text(&value, &args.service), false);
                last = value;
            }
            _ = tick.tick() => shown.show(shown.state.clone(), true),
        }
    }
    // The transition events carry no log; the full record does.
    let rec = client
        .json("GET", &format!("{path}/{id}"), None)
        .await
        .unwrap_or(last);
    let phase = rec["phase"].as_str().unwrap_or("");
    // The record keeps the weights the deployment last set; after a rollback the service
    // has the previous ones back, and those are what the last line must show.
    let live = client
        .json("GET", &format!("/v1/services/{}", args.service), None)
        .await
        .map(|svc| live_weights(&svc))
        .unwrap_or_else(|_| weights_text(&rec["weights"]));
    shown.show(format!("{phase}  weights: {live}"), false);
    shown.finish();
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
        println!("weights now: {live}");
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

/// A dry run's answer: each phase with its weights and pause, then what was verified.
fn print_plan(plan: &Value) {
    println!(
        "dry run: deployment of stack {} version {} to {} ({}); nothing changed",
        plan["stack"].as_str().unwrap_or("?"),
        plan["version"].as_str().unwrap_or("?"),
        plan["service"].as_str().unwrap_or("?"),
        plan["strategy"].as_str().unwrap_or("?")
    );
    for p in plan["phases"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let mut line = format!(
            "  {:<18} {}",
            p["label"].as_str().unwrap_or("?"),
            p["detail"].as_str().unwrap_or("")
        );
        if p["weights"].is_object() {
            line.push_str(&format!("  weights: {}", weights_text(&p["weights"])));
        }
        if let Some(pause) = p["pause"].as_str() {
            line.push_str(&format!("  then pause {pause}"));
        }
        println!("{line}");
    }
    for v in plan["verified"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        println!("  verified: {}", v.as_str().unwrap_or(""));
    }
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

/// The weights of a service view's stacks, `blue=100 green=0`.
fn live_weights(svc: &Value) -> String {
    svc["stacks"]
        .as_array()
        .map(|stacks| {
            stacks
                .iter()
                .map(|s| format!("{}={}", s["name"].as_str().unwrap_or("?"), s["weight"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A deployment view as the progress line shows it, without the time.
fn state_text(v: &Value, service: &str) -> String {
    let paused = if v["paused"].as_bool() == Some(true) {
        format!(" paused (continue: switchyard resume --service {service})")
    } else {
        String::new()
    };
    let gate = match v["gate"].as_object() {
        Some(g) => format!(
            " (waiting at gate {}: {} answers 200, up to {}; pass it: switchyard promote --service {service})",
            g["before"].as_str().unwrap_or("?"),
            g["url"].as_str().unwrap_or("?"),
            g["timeout"].as_str().unwrap_or("?")
        ),
        None => String::new(),
    };
    let waiting = match v["step"]["waiting"].as_str() {
        Some("promote") => {
            format!(" (waiting for promote: switchyard promote --service {service})")
        }
        Some("timer") => " (pause)".to_owned(),
        Some("analysis") => " (waiting for a passing analysis window)".to_owned(),
        _ => String::new(),
    };
    format!(
        "{}{gate}{waiting}{paused}  weights: {}",
        v["label"].as_str().unwrap_or("?"),
        weights_text(&v["weights"])
    )
}

/// The progress line on stderr: redrawn in place on a terminal, one line per change in a log.
struct Progress {
    tty: bool,
    clock: tokio::time::Instant,
    state: String,
    printed: bool,
}

impl Progress {
    fn new(tty: bool, clock: tokio::time::Instant) -> Self {
        Self {
            tty,
            clock,
            state: String::new(),
            printed: false,
        }
    }

    /// Shows `state` if it changed, or again with the time counted on when `again`.
    fn show(&mut self, state: String, again: bool) {
        if state.is_empty() || (state == self.state && !again) {
            return;
        }
        let line = format!("[{:6.1}s] {state}", self.clock.elapsed().as_secs_f64());
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        // Best effort: progress output only.
        let _ = std::io::stderr().flush();
        self.state = state;
        self.printed = true;
    }

    /// Ends the line on a terminal.
    fn finish(&self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
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
        if let Some(d) = deployments.first() {
            print_latest(name, d);
        }
    }
    instances(&client).await?;
    Ok(EXIT_SUCCEEDED)
}

/// The latest deployment's analysis window, why it rolled back, and its standby.
fn print_latest(service: &str, d: &Value) {
    if let Some(w) = d["analysis"].as_object() {
        println!(
            "  analysis of deployment {} at {}: {} ({})",
            d["id"],
            w["step"].as_str().unwrap_or("?"),
            w["verdict"].as_str().unwrap_or("?"),
            w["detail"].as_str().unwrap_or("")
        );
    }
    if let Some(reason) = d["reason"].as_str() {
        println!(
            "  deployment {} {}: {reason}",
            d["id"],
            d["phase"].as_str().unwrap_or("?")
        );
    }
    if let Some(s) = d["standby"].as_object() {
        let stacks: Vec<&str> = s["stacks"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "  previous {} kept at weight 0 until {}: `switchyard rollback --service {service}` switches back",
            stacks.join(", "),
            s["until"].as_str().unwrap_or("?")
        );
    }
}

async fn rollback(conn: &Connection, service: &str) -> Result<u8, CliError> {
    let client = Client::new(conn)?;
    let v = client
        .json("POST", &format!("/v1/services/{service}/rollback"), None)
        .await?;
    let id = v["id"].as_u64().unwrap_or(0);
    let undone = v["undo_of"].as_u64().unwrap_or(0);
    if v["phase"] == "succeeded" {
        println!(
            "deployment {id}: rolled back deployment {undone}; weights: {}",
            weights_text(&v["weights"])
        );
    } else {
        println!(
            "deployment {id}: re-deploying stack {} version {} to roll back deployment {undone}: {}",
            v["stack"].as_str().unwrap_or("?"),
            v["version"].as_str().unwrap_or("?"),
            state_text(&v, service)
        );
    }
    instances(&client).await?;
    Ok(EXIT_SUCCEEDED)
}

/// With a shared store: the instances and whether they serve the same state.
async fn instances(client: &Client) -> Result<(), CliError> {
    // A token limited to some services may not read the instances; status shows the rest.
    let Ok(list) = client.json("GET", "/v1/instances", None).await else {
        return Ok(());
    };
    if list["store"] != "etcd" {
        return Ok(());
    }
    let all = list["instances"].as_array().cloned().unwrap_or_default();
    let agree = if list["agree"] == true {
        "agree"
    } else {
        "DISAGREE"
    };
    println!("instances ({}, {agree})", all.len());
    println!(
        "  {:<18} {:<22} {:<8} {:>10} {:>10}",
        "id", "control", "version", "generation", "revision"
    );
    for i in &all {
        println!(
            "  {:<18} {:<22} {:<8} {:>10} {:>10}",
            i["id"].as_str().unwrap_or("?"),
            i["address"].as_str().unwrap_or("?"),
            i["version"].as_str().unwrap_or("?"),
            i["generation"],
            i["revision"],
        );
    }
    Ok(())
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
    println!("deployment {id}: {}", state_text(&v, &t.service));
    Ok(EXIT_SUCCEEDED)
}
