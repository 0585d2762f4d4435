//! The client's command line arguments beyond the connection: `deploy`'s flags, the target of
//! an operator command, and the `deployments` subcommands.

use std::path::PathBuf;

use super::{Connection, Output, environment, exit_codes};

/// Which deployment an operator command is for.
#[derive(Debug, clap::Args)]
pub struct Target {
    #[command(flatten)]
    pub(crate) conn: Connection,
    /// The service.
    #[arg(long)]
    pub(crate) service: String,
    /// The deployment id (default: the one in progress).
    #[arg(long)]
    pub(crate) id: Option<u64>,
}

/// Which deployment a `deployments` read command is about.
#[derive(Debug, clap::Args)]
pub struct Which {
    #[command(flatten)]
    pub(crate) conn: Connection,
    /// The deployment id (ids count per service).
    pub(crate) id: u64,
    /// The service (default: the only service with a deployment of this id).
    #[arg(long)]
    pub(crate) service: Option<String>,
}

/// `switchyard deployments ...`
#[derive(Debug, clap::Subcommand)]
pub enum DeploymentsCommand {
    /// The deployments, newest first: id, service, stack, version, phase, who, when.
    #[command(after_help = concat!(
        "Examples:
  switchyard deployments list --service auth
  switchyard deployments list --output json | jq '.deployments[] | select(.phase == \"rolled_back\")'

",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    List {
        /// Where the control API is.
        #[command(flatten)]
        conn: Connection,
        /// Only this service's (default: every service's).
        #[arg(long)]
        service: Option<String>,
        /// `text`, or `json`: `{"deployments": [...]}`, the API's entries, each with its
        /// `service`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One deployment: phase, step, weights, checks, gate, analysis windows, replicas.
    #[command(after_help = concat!(
        "Examples:
  switchyard deployments show 7 --service auth
  switchyard deployments show 7 --service auth --output json | jq .analysis

",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Show {
        /// The deployment.
        #[command(flatten)]
        which: Which,
        /// `text`, or `json`: the API's deployment view.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// A deployment's log lines, with their timestamps and sources.
    #[command(after_help = concat!(
        "Example:\n  switchyard deployments logs 7 --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Logs {
        /// The deployment.
        #[command(flatten)]
        which: Which,
        /// `text`, or `json`: `{"service", "id", "log": [{"time", "source", "line"}]}`.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Follow a deployment to its end, as `deploy --wait` does (the same progress, the same
    /// exit codes); re-attaches to one still running.
    #[command(after_help = concat!(
        "Example:\n  switchyard deployments watch 7 --service auth\n\n",
        environment!(),
        "\n\n",
        exit_codes!()
    ))]
    Watch {
        /// The deployment.
        #[command(flatten)]
        which: Which,
    },
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
    /// Shadow traffic first, `PERCENT:DURATION` (e.g. 10:30s): a copy of that share of the
    /// live requests also goes to the new stack, its answers discarded (blue-green: before
    /// the cutover; canary: as the first step). Judged by the --analysis-* flags.
    #[arg(long, conflicts_with_all = ["rolling_batch_size", "rolling_interval", "start_first"])]
    pub(crate) shadow: Option<String>,
    /// A pre-integration check, `[METHOD] PATH=STATUS` (repeatable).
    #[arg(long = "pre-check", num_args = 1..=2)]
    pub(crate) pre_checks: Vec<String>,
    /// A post-integration check, `[METHOD] PATH=STATUS` (repeatable).
    #[arg(long = "post-check", num_args = 1..=2)]
    pub(crate) post_checks: Vec<String>,
    /// Time for every endpoint of the new stack to become healthy (default 60s).
    #[arg(long)]
    pub(crate) healthy_timeout: Option<String>,
    /// How long the previous stack stays at weight 0 after the cutover, so `switchyard
    /// rollback` switches back at once (default 10m).
    #[arg(long)]
    pub(crate) retire_after: Option<String>,
    /// Analysis: the window length (e.g. 10s); needs --canary or --shadow.
    #[arg(long)]
    pub(crate) analysis_interval: Option<String>,
    /// Analysis: completed requests of the new stack a window needs to be judged (default 50).
    #[arg(long)]
    pub(crate) analysis_min_requests: Option<u64>,
    /// Analysis: the highest error rate of a window, 0..1.
    #[arg(long)]
    pub(crate) analysis_max_error_rate: Option<f64>,
    /// Analysis: the highest p99 of a window (e.g. 300ms).
    #[arg(long)]
    pub(crate) analysis_max_p99: Option<String>,
    /// Analysis: most the error rate may exceed the previous stacks' over the same window.
    #[arg(long)]
    pub(crate) analysis_max_error_rate_increase: Option<f64>,
    /// Analysis: most the p99 may be as a multiple of the previous stacks' (at least 1).
    #[arg(long)]
    pub(crate) analysis_max_p99_ratio: Option<f64>,
    /// Analysis: failing windows that roll back (default 1).
    #[arg(long)]
    pub(crate) analysis_failure_limit: Option<u32>,
    /// Analysis: inconclusive windows in a row before --analysis-on-inconclusive decides
    /// (default 3).
    #[arg(long)]
    pub(crate) analysis_max_inconclusive: Option<u32>,
    /// Analysis: after too many inconclusive windows, fail (roll back, the default) or pass.
    #[arg(long, value_parser = ["fail", "pass"])]
    pub(crate) analysis_on_inconclusive: Option<String>,
    /// Analysis: judge and record but never hold a step or roll back.
    #[arg(long)]
    pub(crate) analysis_dry_run: bool,
    /// Drain time of the previous stack's processes.
    #[arg(long)]
    pub(crate) drain_timeout: Option<String>,
    /// Rolling update of the live process or container stack --stack: replicas replaced N at
    /// a time.
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
    /// A webhook told of this deployment's transitions besides the configured ones,
    /// `URL[,events=PATTERN]...[,secret_env=VAR]` (repeatable), e.g.
    /// `http://hooks.internal/deploy,events=deployment.rolled_back,secret_env=HOOK_SECRET`.
    #[arg(long = "webhook")]
    pub(crate) webhooks: Vec<String>,
    /// Makes a retried call safe: the same key and body return the deployment the first call
    /// started (keys are remembered 24 h).
    #[arg(long)]
    pub(crate) idempotency_key: Option<String>,
    /// Validate everything and print the plan (phases and weights); change nothing.
    #[arg(long, conflicts_with = "wait")]
    pub(crate) dry_run: bool,
    /// Follow the deployment to its end; the exit code tells how it ended (Ctrl-C leaves it
    /// running and prints the command that re-attaches).
    #[arg(long)]
    pub(crate) wait: bool,
}
