//! What a rolling update asks of the container source ([`Replicas`]).
//!
//! The Engine is the record: the live stack's old replicas are its containers labelled with
//! the service and stack but another deployment, the update's new replicas those labelled with
//! its own deployment. A new replica is the container `switchyard-<service>-<stack>-<n>-r<id>`
//! (its canonical name is still the old one's), kept, while the update runs, by a group of
//! keepers of its own (restarted if it exits, its log followed). An old replica taken out is
//! stopped, not removed: it keeps its published port, so a rollback starts exactly it again.
//! When the update succeeds the old containers are removed and the new ones take their
//! canonical names.

use std::time::Duration;

use bollard::models::ContainerCreateBody;
use tokio::time::{Instant, sleep};

use super::create::{Replica, free_port, open, published};
use super::engine::{LABEL_DEPLOYMENT, LABEL_REPLICA, LABEL_SERVICE, LABEL_STACK, name_of};
use super::replica::unix_secs;
use super::{ContainerError, ContainerSource, Key, Running, container_name, stop_secs};
use crate::data_plane::BoxFuture;
use crate::deploy::record::Unit;
use crate::deploy::source::{Replicas, Reporter, SourceError, Target};
use crate::deploy::spec::SourceSpec;
use crate::error::chain;

/// How often a restored replica is probed.
const PROBE: Duration = Duration::from_millis(20);

/// The key of the keepers of an update's new replicas.
fn update_key(target: &Target<'_>) -> Key {
    (
        target.service.to_owned(),
        format!("{}@{}", target.spec.stack, target.deployment),
    )
}

/// Where a container is reached, running or stopped: the loopback address published for it
/// (or bound for it, when stopped), else its address on its network.
fn endpoint_of(info: &bollard::models::ContainerInspectResponse) -> String {
    if let Some(p) = published(info) {
        return p;
    }
    let bound = info
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .and_then(|b| {
            b.values().flatten().flatten().find_map(|b| {
                let port = b.host_port.as_deref().filter(|p| !p.is_empty())?;
                let ip = b
                    .host_ip
                    .as_deref()
                    .filter(|ip| !ip.is_empty() && *ip != "0.0.0.0");
                Some(format!("{}:{port}", ip.unwrap_or("127.0.0.1")))
            })
        });
    if let Some(b) = bound {
        return b;
    }
    let port = info
        .config
        .as_ref()
        .and_then(|c| c.exposed_ports.as_ref())
        .and_then(|p| p.iter().next())
        .and_then(|p| p.split('/').next().map(str::to_owned));
    let ip = info
        .network_settings
        .as_ref()
        .and_then(|s| s.networks.as_ref())
        .and_then(|n| n.values().find_map(|e| e.ip_address.clone()))
        .filter(|ip| !ip.is_empty());
    match (ip, port) {
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        _ => String::new(),
    }
}

/// What an ended group of keepers kept.
struct Ended {
    /// Each container's name and creation body (`None` when adopted).
    bodies: Vec<(String, Option<ContainerCreateBody>)>,
    reporter: Reporter,
}

impl Ended {
    fn body_of(&self, name: &str) -> Option<ContainerCreateBody> {
        self.bodies
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, b)| b.clone())
    }
}

impl ContainerSource {
    /// The containers of `target`'s stack, old (another deployment's) or new (`target`'s),
    /// in replica order: `(replica, name, endpoint)`.
    async fn containers_of(
        &self,
        target: &Target<'_>,
        new: bool,
    ) -> Result<Vec<(usize, String, String)>, ContainerError> {
        let deployment = target.deployment.to_string();
        let listed = self
            .engine
            .list(
                &self.owner,
                &[
                    (LABEL_SERVICE, target.service),
                    (LABEL_STACK, &target.spec.stack),
                ],
            )
            .await?;
        let mut found = Vec::new();
        for c in listed {
            let Some(name) = name_of(&c) else {
                continue;
            };
            let labels = c.labels.unwrap_or_default();
            if (labels.get(LABEL_DEPLOYMENT) == Some(&deployment)) != new {
                continue;
            }
            let n = labels
                .get(LABEL_REPLICA)
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let endpoint = match self.engine.inspect(&name).await {
                Ok(info) => endpoint_of(&info),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            found.push((n, name, endpoint));
        }
        found.sort();
        Ok(found)
    }

    /// Ends the keepers kept under `key` (their containers keep running): what they kept.
    async fn end_group(&self, key: &Key) -> Option<Ended> {
        let running = self.registry().running.remove(key)?;
        let ended = Ended {
            bodies: running
                .names
                .iter()
                .cloned()
                .zip(running.bodies.iter().cloned())
                .collect(),
            reporter: running
                .reporter
                .lock()
                .expect("reporter lock is never poisoned")
                .clone(),
        };
        running.end().await;
        Some(ended)
    }

    /// Keeps `replicas` as the stack `key` from now on, reporting to the first of `groups`
    /// that had a reporter.
    async fn keep_as(
        &self,
        key: Key,
        replicas: Vec<(String, Option<ContainerCreateBody>)>,
        units: Vec<Unit>,
        groups: [Option<Ended>; 2],
    ) {
        let reporter = groups
            .into_iter()
            .flatten()
            .next()
            .map_or_else(Reporter::detached, |g| g.reporter);
        let running = self.keep(&key, replicas, units, reporter, unix_secs());
        let replaced = self.registry().running.insert(key, running);
        if let Some(replaced) = replaced {
            replaced.end().await;
        }
    }

    /// Waits until the restored replica `name` accepts connections on `endpoint`.
    async fn wait_open(
        &self,
        name: &str,
        endpoint: &str,
        limit: Duration,
    ) -> Result<(), ContainerError> {
        let deadline = Instant::now() + limit;
        while !open(endpoint).await {
            if Instant::now() >= deadline {
                return Err(ContainerError::NotListening {
                    container: name.to_owned(),
                    port: endpoint
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0),
                    timeout: limit,
                    logs: self.engine.last_lines(name).await,
                });
            }
            sleep(PROBE).await;
        }
        Ok(())
    }
}

impl Replicas for ContainerSource {
    fn replicas_of(&self, service: &str, stack: &str) -> Option<usize> {
        self.registry()
            .running
            .get(&(service.to_owned(), stack.to_owned()))
            .map(|r| r.names.len())
    }

    fn old<'a>(
        &'a self,
        target: &'a Target<'a>,
    ) -> BoxFuture<'a, Result<Option<Vec<Unit>>, SourceError>> {
        Box::pin(async move {
            let old = self.containers_of(target, false).await?;
            Ok((!old.is_empty()).then(|| {
                old.into_iter()
                    .map(|(_, name, endpoint)| Unit {
                        endpoint,
                        pid: None,
                        start_ticks: None,
                        container: Some(name),
                    })
                    .collect()
            }))
        })
    }

    fn detach<'a>(&'a self, service: &'a str, stack: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.end_group(&(service.to_owned(), stack.to_owned()))
                .await;
        })
    }

    fn start_replica<'a>(
        &'a self,
        target: &'a Target<'a>,
        index: usize,
        report: &'a Reporter,
    ) -> BoxFuture<'a, Result<Unit, SourceError>> {
        Box::pin(async move {
            let SourceSpec::Container(spec) = &target.spec.source else {
                return Err(ContainerError::NotContainer.into());
            };
            let stack = &target.spec.stack;
            self.engine
                .ensure_image(&spec.image, spec.pull.unwrap_or_default())
                .await?;
            let name = format!(
                "{}-r{}",
                container_name(target.service, stack, index),
                target.deployment
            );
            let publish = spec.publish.unwrap_or(true);
            let host_port = if publish { free_port()? } else { 0 };
            let body = Replica {
                target,
                spec,
                n: index,
                host_port,
                owner: &self.owner,
            }
            .body();
            self.engine.create(&name, &self.owner, body.clone()).await?;
            let replica = format!("{stack}-{index}");
            report.log(
                &replica,
                format!("created container {name} from {}", spec.image),
            );
            self.engine.start(&name).await?;
            let endpoint = self.address(&name, spec).await?.unwrap_or_default();
            report.log(&replica, format!("started container {name} on {endpoint}"));
            // Kept while the update runs: restarted if it exits, its log followed.
            {
                let key = update_key(target);
                let mut registry = self.registry();
                let running = registry
                    .running
                    .entry(key.clone())
                    .or_insert_with(|| Running::new(&key, report.clone()));
                self.add_keeper(running, replica, name.clone(), Some(body), unix_secs());
            }
            self.ready(&name, &endpoint, spec, target.start_timeout)
                .await?;
            Ok(Unit {
                endpoint,
                pid: None,
                start_ticks: None,
                container: Some(name),
            })
        })
    }

    fn stop_old<'a>(
        &'a self,
        unit: &'a Unit,
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            if let Some(name) = &unit.container {
                self.engine.stop(name, stop_secs(drain)).await?;
            }
            Ok(())
        })
    }

    fn keep_new<'a>(
        &'a self,
        target: &'a Target<'a>,
        _units: Vec<Unit>,
        drain: Duration,
    ) -> BoxFuture<'a, Result<Vec<Unit>, SourceError>> {
        Box::pin(async move {
            let service = target.service;
            let stack = &target.spec.stack;
            let key = (service.to_owned(), stack.clone());
            let update = self.end_group(&update_key(target)).await;
            // After a restart, one group kept old and new containers alike.
            let adopted = self.end_group(&key).await;
            let secs = stop_secs(drain);
            for (_, name, _) in self.containers_of(target, false).await? {
                self.engine.stop_and_remove(&name, secs).await?;
            }
            let mut replicas = Vec::new();
            let mut units = Vec::new();
            for (n, name, endpoint) in self.containers_of(target, true).await? {
                let body = update.as_ref().and_then(|r| r.body_of(&name));
                let canonical = container_name(service, stack, n);
                let name = if name == canonical {
                    name
                } else {
                    match self.engine.rename(&name, &canonical).await {
                        Ok(()) => canonical,
                        Err(e) => {
                            tracing::warn!(container = %name, error = %chain(&e), "cannot give the replica its canonical name; it keeps its own");
                            name
                        }
                    }
                };
                units.push(Unit {
                    endpoint,
                    pid: None,
                    start_ticks: None,
                    container: Some(name.clone()),
                });
                replicas.push((name, body));
            }
            self.keep_as(key, replicas, units.clone(), [update, adopted])
                .await;
            Ok(units)
        })
    }

    fn restore<'a>(&'a self, target: &'a Target<'a>) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            let key = (target.service.to_owned(), target.spec.stack.clone());
            // The new replicas' keepers end first: they must not restart what goes next.
            let update = self.end_group(&update_key(target)).await;
            let adopted = self.end_group(&key).await;
            let old = self.containers_of(target, false).await?;
            let mut replicas = Vec::new();
            let mut units = Vec::new();
            for (_, name, _) in &old {
                self.engine.start(name).await?;
                let endpoint = endpoint_of(&self.engine.inspect(name).await?);
                units.push(Unit {
                    endpoint,
                    pid: None,
                    start_ticks: None,
                    container: Some(name.clone()),
                });
                replicas.push((name.clone(), None));
            }
            self.keep_as(key, replicas, units.clone(), [update, adopted])
                .await;
            for u in &units {
                let name = u.container.as_deref().unwrap_or_default();
                self.wait_open(name, &u.endpoint, target.start_timeout)
                    .await?;
            }
            Ok(())
        })
    }

    fn discard<'a>(
        &'a self,
        target: &'a Target<'a>,
        units: &'a [Unit],
        drain: Duration,
    ) -> BoxFuture<'a, Result<(), SourceError>> {
        Box::pin(async move {
            self.end_group(&update_key(target)).await;
            let mut names: Vec<String> = units.iter().filter_map(|u| u.container.clone()).collect();
            names.extend(
                self.containers_of(target, true)
                    .await?
                    .into_iter()
                    .map(|(_, name, _)| name),
            );
            names.sort();
            names.dedup();
            let secs = stop_secs(drain);
            for name in names {
                self.engine.stop_and_remove(&name, secs).await?;
            }
            Ok(())
        })
    }
}
