//! The container source: replicas of an image, run by the Docker Engine (through `bollard`,
//! used in this module and nowhere else).
//!
//! Replica `n` of stack `S` of service `V` is the container `switchyard-V-S-n`, labelled with
//! the service, stack, deployment, replica number and owner (see `engine`). Its `port` is
//! published on 127.0.0.1 at a port the kernel hands out (bound once to `127.0.0.1:0` and
//! released, then given to the Engine explicitly so a restart of the container keeps it, and
//! read back from the Engine), and the stack's endpoints are those addresses; with
//! `"publish": false` they are the containers' own addresses on their network.
//!
//! Units (the containers' names and endpoints) are reported before the containers start, so a
//! deployment persists them before any wait. The Engine itself is the durable record of a
//! container stack: the containers outlive Switchyard (SIGTERM or kill -9), and the next start
//! finds them by their labels ([`ContainerSource::adopt`]): those of stacks still wanted are
//! supervised again, the others (a deployment rolled back while Switchyard was down, a stack
//! deleted) are removed. A keeper per replica restarts it with backoff while its stack lives
//! (see `replica`). Release stops every container of the stack — from the persisted units and
//! from the labels, so it works after a restart — with the drain timeout as the stop timeout,
//! then removes it.

mod adopt;
mod create;
mod engine;
mod error;
mod listening;
mod replica;
mod rolling;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthStatusEnum};
use switchyard_config::raw;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep};
use tracing::Instrument;

use super::{Reporter, Source, SourceError, Target};
use crate::data_plane::BoxFuture;
use crate::deploy::record::Unit;
use crate::deploy::spec::{ContainerSpec, HealthSource, SourceSpec};
use crate::error::chain;
use create::{Replica, free_port, open, published};
use engine::{Engine, LABEL_SERVICE, LABEL_STACK};
pub use error::ContainerError;
use replica::Keeper;

/// The Engine's address when neither `[docker] host` nor `DOCKER_HOST` says otherwise.
pub(crate) const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
/// How often a starting replica is probed.
const PROBE: Duration = Duration::from_millis(20);
/// How often a starting replica's `HEALTHCHECK` status is read.
const HEALTH_POLL: Duration = Duration::from_millis(50);
/// Drain time for containers removed at start (their stack is gone) or on exit (demo).
const EXIT_DRAIN_SECS: i32 = 5;

type Key = (String, String);

/// Kept replicas of one stack.
struct Running {
    end: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    names: Vec<String>,
    /// How each container was created (`None` when adopted), by position in `names`.
    bodies: Vec<Option<ContainerCreateBody>>,
    reporter: Arc<Mutex<Reporter>>,
    units: Vec<Unit>,
    span: tracing::Span,
}

impl Running {
    /// An empty group of keepers for `key`, reporting to `reporter`.
    fn new(key: &Key, reporter: Reporter) -> Self {
        Self {
            end: watch::channel(false).0,
            tasks: Vec::new(),
            names: Vec::new(),
            bodies: Vec::new(),
            reporter: Arc::new(Mutex::new(reporter)),
            units: Vec::new(),
            span: tracing::info_span!("containers", service = %key.0, stack = %key.1),
        }
    }

    /// Ends every keeper (the containers keep running) and waits for them.
    async fn end(self) {
        self.end.send_replace(true);
        for t in self.tasks {
            if let Err(e) = t.await {
                if e.is_panic() {
                    tracing::error!("container keeper panicked");
                }
            }
        }
    }
}

#[derive(Default)]
struct Registry {
    running: HashMap<Key, Running>,
    /// Reporters of resumed deployments whose stack was not adopted yet.
    attached: HashMap<Key, Reporter>,
}

/// The container source, with every stack it keeps.
pub(crate) struct ContainerSource {
    engine: Arc<Engine>,
    owner: String,
    stop_on_exit: bool,
    registry: Mutex<Registry>,
}

/// The name of replica `n` of `service`/`stack`.
pub(crate) fn container_name(service: &str, stack: &str, n: usize) -> String {
    format!("switchyard-{service}-{stack}-{n}")
}

impl ContainerSource {
    /// A source on the Engine at `host`, owning the containers labelled with `owner` (the
    /// state folder); on [`shutdown`](Self::shutdown) containers are removed when
    /// `stop_on_exit`, else left running.
    pub(crate) fn new(host: String, owner: String, stop_on_exit: bool) -> Self {
        Self {
            engine: Arc::new(Engine::new(host)),
            owner,
            stop_on_exit,
            registry: Mutex::new(Registry::default()),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .expect("container registry lock is never poisoned")
    }

    /// Starts a keeper per container; reports go to `reporter` (or to the reporter of a
    /// deployment that attached meanwhile).
    fn keep(
        &self,
        key: &Key,
        replicas: Vec<(String, Option<ContainerCreateBody>)>,
        units: Vec<Unit>,
        reporter: Reporter,
        since: i32,
    ) -> Running {
        let mut running = Running::new(key, reporter);
        for (n, (name, body)) in replicas.into_iter().enumerate() {
            self.add_keeper(&mut running, format!("{}-{n}", key.1), name, body, since);
        }
        running.units = units;
        running
    }

    /// Adds to `running` the keeper of container `name`, shown as `replica` in the log.
    fn add_keeper(
        &self,
        running: &mut Running,
        replica: String,
        name: String,
        body: Option<ContainerCreateBody>,
        since: i32,
    ) {
        running.names.push(name.clone());
        running.bodies.push(body.clone());
        let keeper = Keeper {
            engine: self.engine.clone(),
            name,
            replica,
            body,
            owner: self.owner.clone(),
            reporter: running.reporter.clone(),
            end: running.end.subscribe(),
        };
        let span = tracing::info_span!(parent: &running.span, "replica", container = %keeper.name);
        running
            .tasks
            .push(tokio::spawn(keeper.run(since).instrument(span)));
    }

    /// Ends the supervision of every container stack as Switchyard exits: containers keep
    /// running (the next start re-adopts them) unless this source was made to stop them.
    pub(crate) async fn shutdown(&self) {
        let all: Vec<Running> = self.registry().running.drain().map(|(_, r)| r).collect();
        if all.is_empty() {
            return;
        }
        let stacks = all.len();
        let mut names = Vec::new();
        for r in all {
            names.extend(r.names.iter().cloned());
            r.end().await;
        }
        if self.stop_on_exit {
            for name in names {
                if let Err(e) = self.engine.stop_and_remove(&name, EXIT_DRAIN_SECS).await {
                    tracing::error!(container = %name, error = %chain(&e), "cannot remove a container on exit");
                }
            }
            tracing::info!(stacks, "containers removed on exit");
        } else {
            tracing::info!(
                stacks,
                "containers left running; the next start re-adopts them"
            );
        }
    }

    /// Waits until replica `name` serves: its port opens (`switchyard`) or the Engine reports
    /// its `HEALTHCHECK` healthy (`docker`).
    async fn ready(
        &self,
        name: &str,
        endpoint: &str,
        spec: &ContainerSpec,
        limit: Duration,
    ) -> Result<(), ContainerError> {
        let deadline = Instant::now() + limit;
        loop {
            match spec.health.unwrap_or_default() {
                HealthSource::Switchyard => {
                    let seen = if self.engine.is_local() {
                        let info = self.engine.inspect(name).await?;
                        let pid = info.state.and_then(|s| s.pid).unwrap_or(0);
                        listening::listening(pid, info.id.as_deref().unwrap_or(""), spec.port)
                    } else {
                        None
                    };
                    let ready = match seen {
                        // Listening inside; the published port forwards to it.
                        Some(listens) => listens && open(endpoint).await,
                        None => open(endpoint).await,
                    };
                    if ready {
                        return Ok(());
                    }
                }
                HealthSource::Docker => {
                    let health = self
                        .engine
                        .inspect(name)
                        .await?
                        .state
                        .and_then(|s| s.health);
                    match health.as_ref().and_then(|h| h.status) {
                        Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                        Some(HealthStatusEnum::UNHEALTHY) => {
                            let detail = health
                                .and_then(|h| h.log)
                                .and_then(|l| l.into_iter().last())
                                .map(|r| {
                                    format!(
                                        "exit code {}: {}",
                                        r.exit_code.unwrap_or(-1),
                                        r.output.unwrap_or_default().trim()
                                    )
                                })
                                .unwrap_or_else(|| "no check output".to_owned());
                            return Err(ContainerError::Unhealthy {
                                container: name.to_owned(),
                                detail,
                                logs: self.engine.last_lines(name).await,
                            });
                        }
                        Some(HealthStatusEnum::STARTING) => {}
                        _ => {
                            return Err(ContainerError::NoHealthcheck {
                                image: spec.image.clone(),
                            });
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(ContainerError::NotListening {
                    container: name.to_owned(),
                    port: spec.port,
                    timeout: limit,
                    logs: self.engine.last_lines(name).await,
                });
            }
            sleep(match spec.health.unwrap_or_default() {
                HealthSource::Switchyard => PROBE,
                HealthSource::Docker => HEALTH_POLL,
            })
            .await;
        }
    }

    /// Where a started replica is reached: the loopback address the Engine bound for its
    /// port, or, unpublished, its own address on its network.
    async fn address(
        &self,
        name: &str,
        spec: &ContainerSpec,
    ) -> Result<Option<String>, ContainerError> {
        let info = self.engine.inspect(name).await?;
        if spec.publish.unwrap_or(true) {
            return Ok(published(&info));
        }
        let network = spec.network.clone().unwrap_or_default();
        info.network_settings
            .and_then(|s| s.networks)
            .and_then(|n| n.get(&network).and_then(|e| e.ip_address.clone()))
            .filter(|ip| !ip.is_empty())
            .map(|ip| Some(format!("{ip}:{}", spec.port)))
            .ok_or_else(|| ContainerError::NoAddress {
                container: name.to_owned(),
                network,
            })
    }

    async fn provision_containers(
        &self,
        target: &Target<'_>,
        spec: &ContainerSpec,
        report: Reporter,
    ) -> Result<raw::Stack, ContainerError> {
        let service = target.service;
        let stack = &target.spec.stack;
        let publish = spec.publish.unwrap_or(true);
        self.engine
            .ensure_image(&spec.image, spec.pull.unwrap_or_default())
            .await?;
        let mut replicas: Vec<(String, Option<ContainerCreateBody>)> = Vec::new();
        let mut units = Vec::new();
        for n in 0..spec.replicas.unwrap_or(1) as usize {
            let name = container_name(service, stack, n);
            let host_port = if publish { free_port()? } else { 0 };
            let body = Replica {
                target,
                spec,
                n,
                host_port,
                owner: &self.owner,
            }
            .body();
            if let Err(e) = self.engine.create(&name, &self.owner, body.clone()).await {
                for (created, _) in &replicas {
                    // Best effort: the release of the rolled-back stack finds them by label.
                    let _ = self.engine.remove(created).await;
                }
                return Err(e);
            }
            report.log(
                &format!("{stack}-{n}"),
                format!("created container {name} from {}", spec.image),
            );
            units.push(Unit {
                endpoint: if publish {
                    format!("127.0.0.1:{host_port}")
                } else {
                    String::new()
                },
                pid: None,
                start_ticks: None,
                container: Some(name.clone()),
            });
            replicas.push((name, Some(body)));
        }
        // Persisted before anything is started or waited for.
        report.units(units.clone()).await;
        for (name, _) in &replicas {
            self.engine.start(name).await?;
        }
        // Read back what the Engine bound (and, unpublished, where the container is).
        for (unit, (name, _)) in units.iter_mut().zip(&replicas) {
            if let Some(a) = self.address(name, spec).await? {
                unit.endpoint = a;
            }
        }
        report.units(units.clone()).await;
        for (n, (unit, (name, _))) in units.iter().zip(&replicas).enumerate() {
            report.log(
                &format!("{stack}-{n}"),
                format!("started container {name} on {}", unit.endpoint),
            );
        }
        let key = (service.to_owned(), stack.clone());
        let endpoints: Vec<String> = units.iter().map(|u| u.endpoint.clone()).collect();
        let running = self.keep(&key, replicas, units, report, 0);
        let replaced = self.registry().running.insert(key, running);
        if let Some(old) = replaced {
            old.end().await;
        }
        let waits = endpoints.iter().enumerate().map(|(n, e)| {
            let name = container_name(service, stack, n);
            async move { self.ready(&name, e, spec, target.start_timeout).await }
        });
        for r in futures_util::future::join_all(waits).await {
            r?;
        }
        Ok(target.stack(endpoints, None))
    }
}

/// Seconds of the stop timeout for `drain` (rounded up; the Engine takes whole seconds).
fn stop_secs(drain: Duration) -> i32 {
    let secs = drain.as_secs() + u64::from(drain.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

impl Source for ContainerSource {
    fn provision<'a>(
        &'a self,
        target: &'a Target<'a>,
        report: Reporter,
    ) -> BoxFuture<'a, Result<raw::Stack, SourceError>> {
        Box::pin(async move {
            let SourceSpec::Container(c) = &target.spec.source else {
                return Ok(target.stack(Vec::new(), None));
            };
            Ok(self.provision_containers(target, c, report).await?)
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
            let mut names: Vec<String> = units.iter().filter_map(|u| u.container.clone()).collect();
            let running = self
                .registry()
                .running
                .remove(&(service.to_owned(), stack.to_owned()));
            if let Some(r) = running {
                names.extend(r.names.iter().cloned());
                r.end().await;
            }
            // Containers a deployment created but had not reported, or that an earlier
            // Switchyard process started: by label.
            let labelled = match self
                .engine
                .list(
                    &self.owner,
                    &[(LABEL_SERVICE, service), (LABEL_STACK, stack)],
                )
                .await
            {
                Ok(l) => l,
                // Nothing was recorded as created: a provision that failed before creating
                // any container (the Engine unreachable, say). A container created but not yet
                // recorded is removed as an orphan at the next start.
                Err(e) if names.is_empty() => {
                    tracing::warn!(service, stack, error = %chain(&e), "cannot list the stack's containers; none was recorded");
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            names.extend(labelled.into_iter().filter_map(|c| engine::name_of(&c)));
            names.sort();
            names.dedup();
            // One after another (the Engine takes container changes one at a time anyway);
            // a failure does not keep the others from being removed.
            let secs = stop_secs(drain);
            let mut failed = None;
            for name in &names {
                if let Err(e) = self.engine.stop_and_remove(name, secs).await {
                    failed = Some(e);
                }
            }
            match failed {
                Some(e) => Err(e.into()),
                None => Ok(()),
            }
        })
    }

    fn attach(&self, service: &str, stack: &str, report: Reporter) {
        let key = (service.to_owned(), stack.to_owned());
        let mut registry = self.registry();
        if !registry.running.contains_key(&key) {
            registry.attached.insert(key, report);
            return;
        }
        let r = &registry.running[&key];
        *r.reporter.lock().expect("reporter lock is never poisoned") = report.clone();
        let units = r.units.clone();
        tokio::spawn(async move { report.units(units).await });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_becomes_whole_seconds_rounded_up() {
        assert_eq!(stop_secs(Duration::ZERO), 0);
        assert_eq!(stop_secs(Duration::from_millis(1)), 1);
        assert_eq!(stop_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn containers_are_named_after_service_stack_and_replica() {
        assert_eq!(
            container_name("auth", "green", 1),
            "switchyard-auth-green-1"
        );
    }
}
