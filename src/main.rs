//! The `switchyard` binary: command line, logging, the rustls crypto provider and exit codes.

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use switchyard::demo::{
    DEMO_CONFIG, DemoExtras, DemoUpstream, spawn_demo_upstream, spawn_demo_upstream_with,
};

/// mimalloc rather than the C library's allocator: tokio allocates each task and each socket's
/// registration aligned to a cache line, and glibc's aligned allocation bypasses its per-thread
/// cache (about 1k instructions each, twice per client connection).
/// Its version 2 (the crate's feature `v2`), not 3: the same instructions per request, and it
/// gives pages freed after a burst back to the system within milliseconds on the next activity
/// where version 3 keeps them (a burst of 500 requests at once left 12-16 MiB resident with
/// version 3 and 5-6 MiB with version 2; `benches/idle.sh`).
/// The feature `system-allocator` keeps the C library's, for heap profilers (valgrind's massif,
/// heaptrack) that see only its calls.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (sysexits' EX_CONFIG).
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Programmable TLS-terminating reverse proxy with blue-green and canary deployments"
)]
struct Cli {
    /// Format of Switchyard's own log on stderr: `text` (colours only on a terminal) or `json`
    /// (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "SWITCHYARD_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filter (default `info`), stderr.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Take over from the `serve` running on the same state folder without refusing a
    /// connection (its listening sockets, then its state folder), then run like `serve`.
    Upgrade {
        /// Configuration file (its state folder names the instance taken over).
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate a configuration file and print a summary.
    Check {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the demo: two demo upstreams (blue v1.3, green v1.4) behind the proxy.
    Demo {
        /// Working folder for the demo's certificate and state.
        #[arg(long, default_value = "switchyard-demo")]
        dir: PathBuf,
    },
    /// A tiny upstream for demos and tests, answering JSON about each request.
    DemoUpstream {
        /// Address to bind.
        #[arg(long)]
        bind: String,
        /// Version reported in answers.
        #[arg(long)]
        version: String,
        /// Fraction of requests answered with 500.
        #[arg(long, default_value_t = 0.0)]
        fail_rate: f64,
        /// Latency added to each answer, e.g. "100ms".
        #[arg(long, default_value = "0ms")]
        latency: String,
        /// Print a line per request to stdout (exit when stdout is gone).
        #[arg(long)]
        log_requests: bool,
        /// `/health` answers 503 until this file exists.
        #[arg(long)]
        healthy_when: Option<PathBuf>,
    },
    /// Certificate tools.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Control API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Write the manual pages (switchyard.1 and one per subcommand).
    Man {
        /// Folder to write every page into; without it, switchyard.1 goes to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Desired state store tools.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    #[command(flatten)]
    Client(switchyard::deploy_cli::DeployCommand),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy the desired state, history and deployments from one store into an empty other
    /// one: the state folder (`local`) or the `[store]` etcd of the configuration (`etcd`).
    Migrate {
        /// Configuration file naming both stores.
        #[arg(long)]
        config: PathBuf,
        /// The store to copy from.
        #[arg(long, value_enum)]
        from: switchyard::store_cli::StoreKind,
        /// The empty store to copy into.
        #[arg(long, value_enum)]
        to: switchyard::store_cli::StoreKind,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh secret once, and the lines to paste into the configuration.
    New {
        /// Token name (shown in the audit history).
        #[arg(long)]
        name: String,
        /// read, operate, deploy or admin.
        #[arg(long)]
        role: String,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Write a self-signed certificate and key for the given names.
    SelfSigned {
        /// Subject alternative names; the first names the files.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// ecdsa-p256, rsa2048 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a certificate's subject, names, validity, key type and fingerprint.
    Inspect {
        /// PEM file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Only fails if another provider was installed first, which nothing here does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated; a cause whose text its parent already shows
/// (some libraries print their source inside their own message) is not repeated.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    // One worker: a current-thread scheduler does the same work without the work-stealing
    // machinery (measured in benches/RESULTS.md).
    let mut b = match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The runtime `serve` and `upgrade` start on. With thread-per-core workers (the proxy's
/// own threads, `switchyard::proxy_workers`) it only runs the snapshot writer, health checks,
/// discovery and signals: one thread. Otherwise it serves the listeners too, with
/// `[runtime] worker_threads` threads.
fn proxy_runtime(config: &switchyard_config::Config) -> anyhow::Result<tokio::runtime::Runtime> {
    if switchyard::proxy_workers(config) > 0 {
        runtime(Some(1))
    } else {
        runtime(config.runtime().worker_threads)
    }
}

fn load_config(path: &Path) -> Result<switchyard_config::Config, ExitCode> {
    switchyard_config::load(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EX_CONFIG)
    })
}

fn print_started(s: &switchyard::Started) {
    for l in &s.listeners {
        println!(
            "listening listener={} addr={} tls={}",
            l.name, l.addr, l.tls
        );
    }
    println!("control addr={}", s.control);
    println!("ready");
    switchyard::notify::notify(switchyard::notify::READY);
}

fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { config } => match load_config(&config) {
            Err(code) => Ok(code),
            Ok(c) => {
                // Every rule that needs no socket: the file's, then its certificates.
                if let Err(e) = switchyard::check_certificates(&c) {
                    eprintln!("{}: {}", config.display(), chain(&anyhow::Error::new(e)));
                    return Ok(ExitCode::from(EX_CONFIG));
                }
                let stacks: usize = c.services().iter().map(|s| s.stacks().len()).sum();
                println!(
                    "{}: ok: {} listeners, {} services, {} stacks",
                    config.display(),
                    c.listeners().len(),
                    c.services().len(),
                    stacks
                );
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Serve { config: path } => {
            let config = match load_config(&path) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let rt = proxy_runtime(&config)?;
            rt.block_on(async move {
                let lock = switchyard::lock_state(&config)?;
                let bound = switchyard::bind(&config).await?;
                switchyard::serve_until_signal(config, path, lock, bound, print_started).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upgrade { config: path } => {
            let config = match load_config(&path) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let rt = proxy_runtime(&config)?;
            rt.block_on(switchyard::upgrade::take_over(config, path, print_started))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoUpstream {
            bind,
            version,
            fail_rate,
            latency,
            log_requests,
            healthy_when,
        } => {
            let latency =
                switchyard_config::parse_duration(&latency).map_err(anyhow::Error::msg)?;
            let rt = runtime(None)?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&bind)
                    .await
                    .with_context(|| format!("cannot bind {bind}"))?;
                println!("listening addr={}", listener.local_addr()?);
                let _h = spawn_demo_upstream_with(
                    listener,
                    DemoUpstream {
                        version,
                        fail_rate,
                        latency,
                    },
                    DemoExtras {
                        log_requests,
                        healthy_when,
                    },
                );
                tokio::signal::ctrl_c()
                    .await
                    .context("waiting for ctrl-c")?;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { dir } => demo(&dir),
        Command::Man { out: None } => {
            switchyard::manual::render(Cli::command(), &mut std::io::stdout().lock())
                .context("cannot write the manual page")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out: Some(dir) } => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for page in switchyard::manual::write_pages(Cli::command(), &dir)? {
                println!("{}", page.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            let script = switchyard::completion::script(Cli::command(), shell);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
                .context("cannot write the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Client(command) => Ok(switchyard::deploy_cli::run(command)),
        Command::Store {
            command: StoreCommand::Migrate { config, from, to },
        } => {
            let c = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            let rt = runtime(Some(1))?;
            let r = rt.block_on(switchyard::store_cli::migrate(&c, from, to))?;
            println!(
                "migrated services={} history={} deployments={} process_stacks={}",
                r.services, r.history, r.deployments, r.process_stacks
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Certs { command } => certs(command),
        Command::Token {
            command: TokenCommand::New { name, role },
        } => {
            switchyard_config::Name::new(&name).map_err(anyhow::Error::msg)?;
            switchyard_config::Role::parse(&role).map_err(anyhow::Error::msg)?;
            let (secret, sha256) = switchyard_control::generate_token();
            println!(
                "secret (shown once; give it to the client as `Authorization: Bearer <secret>`):"
            );
            println!("{secret}");
            println!();
            println!("add to the configuration:");
            println!("[[tokens]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{sha256}\"");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn certs(cmd: CertsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CertsCommand::SelfSigned {
            names,
            days,
            key_type,
            out,
        } => {
            let key_type: switchyard_certs::KeyType =
                key_type.parse().map_err(anyhow::Error::new)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let s = switchyard_certs::self_signed(&names, days, key_type, &out)
                .context("cannot generate the certificate")?;
            println!("certificate: {}", s.cert_path.display());
            println!("key: {}", s.key_path.display());
            println!("sha256 fingerprint: {}", s.fingerprint_sha256);
            Ok(ExitCode::SUCCESS)
        }
        CertsCommand::Inspect { file } => {
            let info = switchyard_certs::inspect(&file)
                .with_context(|| format!("cannot inspect {}", file.display()))?;
            println!("{info}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn demo(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let crt = dir.join("demo.example.test.crt");
    if !crt.exists() {
        let s = switchyard_certs::self_signed(
            &["demo.example.test".into(), "localhost".into()],
            30,
            switchyard_certs::KeyType::EcdsaP256,
            dir,
        )
        .context("cannot generate the demo certificate")?;
        println!(
            "generated {} (sha256 {})",
            s.cert_path.display(),
            s.fingerprint_sha256
        );
    }
    let origin = dir.join("demo.toml");
    std::fs::write(&origin, DEMO_CONFIG)
        .with_context(|| format!("cannot write {}", origin.display()))?;
    let config = match load_config(&origin) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let access_log = match config.access_log().map(|a| &a.target) {
        Some(switchyard_config::AccessLogTarget::File(p)) => p.display().to_string(),
        Some(switchyard_config::AccessLogTarget::Stdout) => "stdout".to_owned(),
        None => "off".to_owned(),
    };
    let rt = runtime(None)?;
    rt.block_on(async move {
        for (addr, version) in [("127.0.0.1:9101", "v1.3"), ("127.0.0.1:9102", "v1.4")] {
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot bind demo upstream {addr}"))?;
            // The upstreams live as long as the process.
            std::mem::forget(spawn_demo_upstream(l, DemoUpstream { version: version.into(), fail_rate: 0.0, latency: Duration::ZERO }));
        }
        // Ctrl-C ends the demo and every replica it started.
        let lock = switchyard::lock_state(&config)?;
        let bound = switchyard::bind(&config).await?.stop_replicas_on_exit();
        switchyard::serve_until_signal(config, origin, lock, bound, |s| {
            print_started(s);
            println!("access log (one JSON object per request): {access_log}");
            println!();
            println!("Dashboard: http://{}/ui/  (live stacks, traffic and deployments)", s.control);
            println!();
            println!("Try:");
            println!("  curl -s http://127.0.0.1:8080/hello                          # 90% blue v1.3, 10% green v1.4");
            println!("  curl -s -H 'x-switchyard-stack: green' http://127.0.0.1:8080/  # pinned to green");
            println!("  curl -sk --resolve demo.example.test:8443:127.0.0.1 https://demo.example.test:8443/");
            println!("  for i in $(seq 20); do curl -s http://127.0.0.1:8080/ | grep -o 'v1\\.[0-9]'; done | sort | uniq -c");
            println!("  curl -s http://127.0.0.1:9090/v1/services | python3 -m json.tool           # what is live");
            println!("  curl -s -X PUT -H 'content-type: application/json' -d '{{\"weights\":{{\"blue\":0,\"green\":100}}}}' http://127.0.0.1:9090/v1/services/demo/weights");
            println!("Stop with Ctrl-C.");
        })
        .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
