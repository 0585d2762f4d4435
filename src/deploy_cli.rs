//! The deploy job's and the operator's client commands over the control API: `switchyard
//! deploy`, `status`, `promote`, `pause`, `resume`, `abort`, `rollback` and `deployments
//! list|show|logs|watch`.
//!
//! Every command finds the API through [`Connection`]: `--control` or `SWITCHYARD_CONTROL_URL`
//! (`http://` or `https://`, the latter verified against the webpki roots or `--ca`), and a
//! token from `--token-file`, `SWITCHYARD_TOKEN_FILE` or `SWITCHYARD_TOKEN`.
//!
//! `deploy --wait` and `deployments watch` share one code path ([`follow`]): a progress line
//! (phase, step, weights, elapsed; while a step waits for an operator, the command that
//! continues it), a line per analysis verdict and gate, and the exit code [`EXIT_SUCCEEDED`],
//! [`EXIT_ROLLED_BACK`] or [`EXIT_FAILED`], printing the reason, the failing analysis figures
//! and the log when it did not succeed, so a CI step can gate on it. Ctrl-C leaves the
//! deployment running, prints the `deployments watch` command that re-attaches and exits
//! [`EXIT_INTERRUPTED`]. A request the API refuses as conflicting (409) exits
//! [`EXIT_REFUSED`]; usage errors, an unreachable API and other rejected requests exit
//! [`EXIT_USAGE`]. The exit code table is in every client command's `--help`.

mod args;
mod body;
mod client;
mod deployments;
mod follow;
mod operate;
mod render;
mod start;
mod status;

pub use args::{DeployArgs, DeploymentsCommand, Target, Which};
pub use client::Connection;

use std::process::ExitCode;

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
/// Following a deployment was interrupted (Ctrl-C); the deployment keeps running.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit code table as a literal, so `concat!` can append it to each command's help.
macro_rules! exit_codes {
    () => {
        "Exit codes:
    0  done (deploy --wait, deployments watch: the deployment succeeded)
    1  refused: the control API answered 409 (e.g. promote with no step waiting, a
       deployment already in progress)
    2  usage error, the control API unreachable (or its TLS certificate not trusted), or a
       request it rejected (400, 401, 403, 404, 422)
    3  deploy --wait, deployments watch: the deployment rolled back (the previous state is
       restored)
    4  deploy --wait, deployments watch: the deployment failed (even its rollback could not
       complete)
  130  deploy --wait, deployments watch: interrupted by Ctrl-C; the deployment keeps running
       (re-attach with the printed `switchyard deployments watch` command)"
    };
}
pub(crate) use exit_codes;

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES: &str = exit_codes!();

/// The environment every client command reads, as `--help` lists it after the examples.
macro_rules! environment {
    () => {
        "Environment (a flag wins over its variable):
  SWITCHYARD_CONTROL_URL  the control API URL (--control)
  SWITCHYARD_TOKEN_FILE   file holding the token secret (--token-file)
  SWITCHYARD_TOKEN        the token secret itself, used when no token file is given
  SWITCHYARD_CA           PEM bundle of the CAs an https:// control API is verified against
                          (--ca; default: the webpki roots)"
    };
}
pub(crate) use environment;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// The control API could not be reached.
    #[error("cannot reach the control api at {0}")]
    Connect(String),
    /// The TLS handshake with the control API failed (an untrusted certificate, say).
    #[error("tls handshake with the control api at {authority} failed: {message}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// What rustls said, with a hint.
        message: String,
    },
    /// The API answered with an error.
    #[error("control api answered {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error message.
        message: String,
    },
}

/// `--output`: how a read command prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    #[default]
    Text,
    /// The API's JSON, one document on stdout, for scripts.
    Json,
}

/// The client subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DeployCommand {
    /// Start a deployment (and with --wait, follow it to the end).
    #[command(after_help = concat!(
        "Examples:
  switchyard deploy --service auth --stack green --version v1.4 \\
    --process './auth-server --port {port}' --replicas 2 \\
    --canary 5:60s,25:60s,50:manual,100 --pre-check 'GET /health=200' \\
    --wait
  switchyard deploy --service auth --stack blue --version v1.5 \\
    --process './auth-server --port {port}' --rolling-batch-size 1 \\
    --wait

",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Deploy(Box<DeployArgs>),
    /// Which version is live where, at what weights, since when, deployed by which token.
    #[command(after_help = concat!(
        "Examples:
  switchyard status --control https://control.example.test:9443 --ca control-ca.pem
  switchyard status --service auth --output json | jq '.services[0].stacks'

",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Status {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// `text`, or `json`: `{"services": [...], "deployments": {SERVICE: [...]},
        /// "instances": ...}` built from the API's answers.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Deployments: list them, show one, print its log, or watch it to its end.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// Move a deployment past its current pause or gate.
    #[command(after_help = concat!(
        "Example:\n  switchyard promote --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Promote(Target),
    /// Hold a deployment before its next advance.
    #[command(after_help = concat!(
        "Example:\n  switchyard pause --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Pause(Target),
    /// Release a paused deployment.
    #[command(after_help = concat!(
        "Example:\n  switchyard resume --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Resume(Target),
    /// Roll a deployment back.
    #[command(after_help = concat!(
        "Example:\n  switchyard abort --service auth --id 7\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Abort(Target),
    /// Restore the service as before its latest successful deployment: switches back to the
    /// previous stack while it is kept at weight 0, or re-deploys it once it was retired.
    #[command(after_help = concat!(
        "Example:\n  switchyard rollback --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Rollback {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// The service.
        #[arg(long)]
        service: String,
    },
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
            DeployCommand::Deploy(args) => start::deploy(*args).await,
            DeployCommand::Status {
                conn,
                service,
                output,
            } => status::status(&conn, service.as_deref(), output).await,
            DeployCommand::Deployments(c) => deployments::run(c).await,
            DeployCommand::Promote(t) => operate::operate(t, "promote").await,
            DeployCommand::Pause(t) => operate::operate(t, "pause").await,
            DeployCommand::Resume(t) => operate::operate(t, "resume").await,
            DeployCommand::Abort(t) => operate::operate(t, "abort").await,
            DeployCommand::Rollback { conn, service } => operate::rollback(&conn, &service).await,
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
