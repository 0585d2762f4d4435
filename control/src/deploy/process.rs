//! The embedded process source: replicas of a command on free loopback ports.
//!
//! Each replica gets a port picked by binding `127.0.0.1:0` and releasing it (another program
//! could take it in between; the replica then fails to start and is restarted on the same
//! port, or the start times out), `{port}` substituted in the command. A supervisor task per
//! replica captures its output into the deployment log and restarts it with exponential
//! backoff whenever it exits, for as long as the stack lives. Stopping sends SIGTERM, waits up
//! to the drain timeout, then SIGKILL — by PID, checked against the process's start time so a
//! reused PID is never signalled. Replicas are not killed when Switchyard itself dies; a
//! release after a restart stops them from the persisted PIDs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard_config::raw;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tracing::Instrument;

mod pid;

use pid::{start_ticks, terminate_pid};

use super::record::Unit;
use super::source::{Reporter, Source, SourceError, Target};
use super::spec::{ProcessSpec, SourceSpec};
use crate::data_plane::BoxFuture;

/// First restart delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A replica that ran this long restarts with the first delay again.
const STABLE: Duration = Duration::from_secs(10);
/// How often readiness and liveness are probed.
pub(super) const PROBE: Duration = Duration::from_millis(20);
/// How long a SIGKILLed process may take to disappear.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);

/// Running replicas of one stack.
struct Running {
    stop: watch::Sender<Option<Duration>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The process source, with every stack it supervises.
#[derive(Default)]
pub(crate) struct ProcessSource {
    running: Mutex<HashMap<(String, String), Running>>,
}

/// How to start one replica.
#[derive(Debug, Clone)]
struct Launch {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    workdir: Option<PathBuf>,
}

impl Launch {
    fn spawn(&self) -> Result<Child, SourceError> {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.workdir {
            cmd.current_dir(dir);
        }
        cmd.spawn().map_err(|source| SourceError::Spawn {
            program: self.argv[0].clone(),
            source,
        })
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn free_port() -> Result<u16, SourceError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(SourceError::Port)?;
    Ok(l.local_addr().map_err(SourceError::Port)?.port())
}

fn launch(target: &Target<'_>, p: &ProcessSpec, index: u32, port: u16) -> Launch {
    let workdir = p.workdir.as_ref().map(|w| resolve(&target.base_dir, w));
    let base = workdir.clone().unwrap_or_else(|| target.base_dir.clone());
    let mut argv: Vec<String> = p
        .command
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    // A relative program with a slash is relative to the working directory or the config's
    // folder, never to wherever Switchyard was started from.
    if argv[0].contains('/') {
        argv[0] = resolve(&base, &argv[0]).to_string_lossy().into_owned();
    }
    let mut env: Vec<(String, String)> =
        p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    env.push(("SWITCHYARD_PORT".into(), port.to_string()));
    env.push(("SWITCHYARD_SERVICE".into(), target.service.to_owned()));
    env.push(("SWITCHYARD_STACK".into(), target.spec.stack.clone()));
    env.push(("SWITCHYARD_VERSION".into(), target.spec.version.clone()));
    Launch {
        name: format!("{}-{index}", target.spec.stack),
        argv,
        env,
        workdir,
    }
}

fn unit_of(endpoint: &str, child: &Child) -> Unit {
    let pid = child.id();
    Unit {
        endpoint: endpoint.to_owned(),
        pid,
        start_ticks: pid.and_then(start_ticks),
    }
}

impl Source for ProcessSource {
    fn provision<'a>(
        &'a self,
        target: &'a Target<'a>,
        report: Reporter,
    ) -> BoxFuture<'a, Result<raw::Stack, SourceError>> {
        Box::pin(async move {
            let SourceSpec::Process(p) = &target.spec.source else {
                return Ok(target.stack(Vec::new(), None));
            };
            let key = (target.service.to_owned(), target.spec.stack.clone());
            let (stop, stop_rx) = watch::channel(None);
            let mut children = Vec::new();
            let mut started = Vec::new();
            for i in 0..p.replicas.unwrap_or(1) {
                let port = free_port()?;
                let l = launch(target, p, i, port);
                let endpoint = format!("127.0.0.1:{port}");
                match l.spawn() {
                    Ok(child) => {
                        report.log(
                            &l.name,
                            format!("started pid {:?} on {endpoint}", child.id()),
                        );
                        started.push(unit_of(&endpoint, &child));
                        children.push((l, endpoint, child));
                    }
                    Err(e) => {
                        for (_, _, mut c) in children {
                            terminate(&mut c, Duration::ZERO).await;
                        }
                        return Err(e);
                    }
                }
            }
            report.units(started.clone()).await;
            let units = Arc::new(Mutex::new(started));
            let mut tasks = Vec::new();
            let mut endpoints = Vec::new();
            for (index, (l, endpoint, child)) in children.into_iter().enumerate() {
                endpoints.push(endpoint.clone());
                let sup = Supervisor {
                    launch: l,
                    endpoint,
                    index,
                    units: units.clone(),
                    report: report.clone(),
                    stop: stop_rx.clone(),
                };
                let span = tracing::info_span!("replica", service = %target.service, name = %sup.launch.name);
                tasks.push(tokio::spawn(sup.run(child).instrument(span)));
            }
            let replaced = self
                .running
                .lock()
                .expect("process registry lock is never poisoned")
                .insert(key, Running { stop, tasks });
            if let Some(old) = replaced {
                stop_running(old, Duration::ZERO).await;
            }
            for e in &endpoints {
                wait_listening(e, target.start_timeout).await?;
            }
            Ok(target.stack(endpoints, None))
        })
    }

    fn release<'a>(
        &'a self,
        service: &'a str,
        stack: &'a str,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let running = self
                .running
                .lock()
                .expect("process registry lock is never poisoned")
                .remove(&(service.to_owned(), stack.to_owned()));
            if let Some(r) = running {
                stop_running(r, drain).await;
            }
            // Replicas of a previous Switchyard process (or restarted ones the supervisors no
            // longer hold): stop them by PID.
            let mut survivors = Vec::new();
            for u in units {
                if let Some(pid) = u.pid {
                    if !terminate_pid(pid, u.start_ticks, drain).await {
                        survivors.push(pid);
                    }
                }
            }
            if survivors.is_empty() {
                Ok(())
            } else {
                Err(SourceError::Survivors { pids: survivors })
            }
        })
    }
}

async fn stop_running(r: Running, drain: Duration) {
    r.stop.send_replace(Some(drain));
    for t in r.tasks {
        if let Err(e) = t.await {
            if e.is_panic() {
                tracing::error!("replica supervisor panicked");
            }
        }
    }
}

async fn wait_listening(endpoint: &str, limit: Duration) -> Result<(), SourceError> {
    let deadline = Instant::now() + limit;
    loop {
        if tokio::net::TcpStream::connect(endpoint).await.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SourceError::NotListening {
                endpoint: endpoint.to_owned(),
                timeout: limit,
            });
        }
        sleep(PROBE).await;
    }
}

/// One replica's keeper.
struct Supervisor {
    launch: Launch,
    endpoint: String,
    index: usize,
    units: Arc<Mutex<Vec<Unit>>>,
    report: Reporter,
    stop: watch::Receiver<Option<Duration>>,
}

impl Supervisor {
    async fn run(mut self, first: Child) {
        let mut child = Some(first);
        let mut backoff = FIRST_BACKOFF;
        loop {
            let Some(mut c) = child.take() else {
                // Spawning failed: wait, then try again.
                if self.pause(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                child = self.respawn().await;
                continue;
            };
            self.capture(&mut c);
            let since = Instant::now();
            let exit = tokio::select! {
                status = c.wait() => Some(status),
                drain = stopped(&mut self.stop) => {
                    self.report.log(&self.launch.name, "stopping");
                    terminate(&mut c, drain).await;
                    None
                }
            };
            let Some(status) = exit else { return };
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            if since.elapsed() >= STABLE {
                backoff = FIRST_BACKOFF;
            }
            self.report.log(
                &self.launch.name,
                format!("exited ({status}); restarting in {backoff:?}"),
            );
            if self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            child = self.respawn().await;
        }
    }

    /// Sleeps `d`; true when asked to stop meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = sleep(d) => false,
            _ = stopped(&mut self.stop) => true,
        }
    }

    async fn respawn(&mut self) -> Option<Child> {
        match self.launch.spawn() {
            Ok(c) => {
                self.report
                    .log(&self.launch.name, format!("restarted as pid {:?}", c.id()));
                let units = {
                    let mut units = self.units.lock().expect("units lock is never poisoned");
                    units[self.index] = unit_of(&self.endpoint, &c);
                    units.clone()
                };
                self.report.units(units).await;
                Some(c)
            }
            Err(e) => {
                self.report
                    .log(&self.launch.name, format!("{e}: {}", e_source(&e)));
                None
            }
        }
    }

    fn capture(&self, c: &mut Child) {
        if let Some(out) = c.stdout.take() {
            tokio::spawn(pipe(out, self.report.clone(), self.launch.name.clone()));
        }
        if let Some(err) = c.stderr.take() {
            tokio::spawn(pipe(err, self.report.clone(), self.launch.name.clone()));
        }
    }
}

fn e_source(e: &SourceError) -> String {
    std::error::Error::source(e).map_or_else(String::new, ToString::to_string)
}

/// Resolves with the drain time once a stop is asked (a dropped sender stops immediately).
async fn stopped(stop: &mut watch::Receiver<Option<Duration>>) -> Duration {
    match stop.wait_for(Option::is_some).await {
        Ok(d) => d.unwrap_or(Duration::ZERO),
        Err(_) => Duration::ZERO,
    }
}

async fn pipe(stream: impl AsyncRead + Unpin, report: Reporter, name: String) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        report.log(&name, line);
    }
}

/// SIGTERM, up to `drain` for the child to exit, then SIGKILL.
async fn terminate(child: &mut Child, drain: Duration) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        // Already gone is fine: wait() below reaps it.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    if timeout(drain, child.wait()).await.is_err() {
        // Kill errors only when it exited meanwhile; wait() reaps it either way.
        let _ = child.start_kill();
        let _ = timeout(KILL_WAIT, child.wait()).await;
    }
}
