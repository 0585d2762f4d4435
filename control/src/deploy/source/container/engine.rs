//! The Docker Engine as the container source sees it: a lazily made connection (the API
//! version negotiated once; a failure is retried on the next use, never cached), and the few
//! calls the source makes, each turning the Engine's answer into a [`ContainerError`].
//!
//! Every container this module creates carries the `switchyard.*` labels: service, stack,
//! deployment, replica, and the owner (the state folder of the Switchyard that started it), so
//! two Switchyards sharing one Engine never touch each other's containers.
//!
//! The calls that change a container (create, start, stop, rename, remove) are made one at a
//! time: Docker 20.10's network code (still what Debian 12 ships) can deadlock when containers
//! exit and are removed concurrently, after which the Engine answers nothing until restarted.
//! The stops of a retirement therefore follow one another; each is short because the proxy
//! drained the stack's requests before retiring it.

use std::collections::HashMap;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, RenameContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::ContainerError;
use crate::deploy::spec::PullPolicy;

/// Label naming the service of a container.
pub(super) const LABEL_SERVICE: &str = "switchyard.service";
/// Label naming the stack.
pub(super) const LABEL_STACK: &str = "switchyard.stack";
/// Label naming the deployment that started it.
pub(super) const LABEL_DEPLOYMENT: &str = "switchyard.deployment";
/// Label numbering the replica (0-based).
pub(super) const LABEL_REPLICA: &str = "switchyard.replica";
/// Label naming the owner: the state folder of the Switchyard that started it.
pub(super) const LABEL_OWNER: &str = "switchyard.owner";
/// Log lines quoted in an error about a replica.
const ERROR_LOG_LINES: usize = 5;
/// Seconds an Engine request may take before its answer starts (a wait or log stream then
/// runs as long as it needs).
const REQUEST_TIMEOUT: u64 = 120;

/// What a container writes, as the Engine streams it.
pub(super) type LogStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<LogOutput, BollardError>> + Send>>;

/// A connection to the Docker Engine, made on first use.
pub(super) struct Engine {
    host: String,
    docker: OnceCell<Docker>,
    /// Held across each call that changes a container (see the module's notes).
    changes: tokio::sync::Mutex<()>,
}

/// A listed container's name (the Engine lists it as `/name`).
pub(super) fn name_of(c: &ContainerSummary) -> Option<String> {
    c.names
        .as_ref()?
        .first()
        .map(|n| n.trim_start_matches('/').to_owned())
}

/// Whether the Engine answered "no such container" (or image).
fn not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

impl Engine {
    /// The Engine at `host` (`unix:///...` or `tcp://...`).
    pub(super) fn new(host: String) -> Self {
        Self {
            host,
            docker: OnceCell::new(),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether the Engine runs on this machine (reached through a unix socket).
    pub(super) fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }

    /// The connection, negotiating the API version on first use.
    pub(super) async fn docker(&self) -> Result<&Docker, ContainerError> {
        self.docker
            .get_or_try_init(|| async {
                let unreachable = |source| ContainerError::Unreachable {
                    host: self.host.clone(),
                    source,
                };
                let docker = if self.host.starts_with("unix://") {
                    Docker::connect_with_unix(
                        &self.host,
                        REQUEST_TIMEOUT,
                        bollard::API_DEFAULT_VERSION,
                    )
                } else {
                    Docker::connect_with_http(
                        &self.host,
                        REQUEST_TIMEOUT,
                        bollard::API_DEFAULT_VERSION,
                    )
                }
                .map_err(unreachable)?;
                docker.negotiate_version().await.map_err(unreachable)
            })
            .await
    }

    /// Makes sure the Engine has `image`, pulling it as `pull` says.
    pub(super) async fn ensure_image(
        &self,
        image: &str,
        pull: PullPolicy,
    ) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let present = match docker.inspect_image(image).await {
            Ok(_) => true,
            Err(e) if not_found(&e) => false,
            Err(e) => return Err(self.failed("inspect image", image, e)),
        };
        match (pull, present) {
            (PullPolicy::Never, false) => Err(ContainerError::ImageMissing {
                image: image.to_owned(),
            }),
            (PullPolicy::Never | PullPolicy::IfMissing, true) => Ok(()),
            (PullPolicy::IfMissing, false) | (PullPolicy::Always, _) => {
                let options = CreateImageOptions {
                    from_image: Some(image.to_owned()),
                    ..Default::default()
                };
                let mut progress = std::pin::pin!(docker.create_image(Some(options), None, None));
                while let Some(step) = progress.next().await {
                    step.map_err(|source| ContainerError::Pull {
                        image: image.to_owned(),
                        source,
                    })?;
                }
                Ok(())
            }
        }
    }

    /// Creates container `name`; one left by an earlier attempt of this owner (same name,
    /// same owner label) is removed first, one of anybody else is an error.
    pub(super) async fn create(
        &self,
        name: &str,
        owner: &str,
        body: ContainerCreateBody,
    ) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let _turn = self.changes.lock().await;
        let options = || CreateContainerOptions {
            name: Some(name.to_owned()),
            ..Default::default()
        };
        match docker.create_container(Some(options()), body.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if status(&e, 409) => {}
            Err(e) => return Err(self.failed("create container", name, e)),
        }
        let existing = docker
            .inspect_container(name, None)
            .await
            .map_err(|e| self.failed("inspect container", name, e))?;
        let mine = existing
            .config
            .and_then(|c| c.labels)
            .is_some_and(|l| l.get(LABEL_OWNER).is_some_and(|o| o == owner));
        if !mine {
            return Err(ContainerError::NameTaken {
                name: name.to_owned(),
            });
        }
        self.remove_now(docker, name).await?;
        docker
            .create_container(Some(options()), body)
            .await
            .map(drop)
            .map_err(|e| self.failed("create container", name, e))
    }

    /// Starts container `name` (already running is fine).
    pub(super) async fn start(&self, name: &str) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let _turn = self.changes.lock().await;
        match docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e, 304) => Ok(()),
            Err(e) => Err(self.failed("start container", name, e)),
        }
    }

    /// The Engine's view of container `name`.
    pub(super) async fn inspect(
        &self,
        name: &str,
    ) -> Result<ContainerInspectResponse, ContainerError> {
        let docker = self.docker().await?;
        docker
            .inspect_container(name, None)
            .await
            .map_err(|e| self.failed("inspect container", name, e))
    }

    /// Stops container `name` (SIGTERM or the image's stop signal, then SIGKILL after
    /// `drain_secs`) and removes it; a container already gone is fine.
    pub(super) async fn stop_and_remove(
        &self,
        name: &str,
        drain_secs: i32,
    ) -> Result<(), ContainerError> {
        if self.stop(name, drain_secs).await? {
            self.remove(name).await?;
        }
        Ok(())
    }

    /// Stops container `name` (SIGTERM or the image's stop signal, then SIGKILL after
    /// `drain_secs`) and keeps it, so it can be started again on the same port. False when it
    /// is gone.
    pub(super) async fn stop(&self, name: &str, drain_secs: i32) -> Result<bool, ContainerError> {
        let docker = self.docker().await?;
        let options = StopContainerOptions {
            t: Some(drain_secs),
            signal: None,
        };
        let _turn = self.changes.lock().await;
        match docker.stop_container(name, Some(options)).await {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) if status(&e, 304) => Ok(true),
            Err(e) => Err(self.failed("stop container", name, e)),
        }
    }

    /// Renames container `name` to `to`.
    pub(super) async fn rename(&self, name: &str, to: &str) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let options = RenameContainerOptions {
            name: to.to_owned(),
        };
        let _turn = self.changes.lock().await;
        docker
            .rename_container(name, options)
            .await
            .map_err(|e| self.failed("rename container", name, e))
    }

    /// Removes container `name` by force; already gone is fine.
    pub(super) async fn remove(&self, name: &str) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let _turn = self.changes.lock().await;
        self.remove_now(docker, name).await
    }

    /// [`Self::remove`] for a caller that already holds `changes`.
    async fn remove_now(&self, docker: &Docker, name: &str) -> Result<(), ContainerError> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match docker.remove_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            // Removal already under way (an earlier stop of the Engine's own).
            Err(e) if status(&e, 409) => Ok(()),
            Err(e) => Err(self.failed("remove container", name, e)),
        }
    }

    /// Every container of `owner` (running or not) whose labels include `labels`.
    pub(super) async fn list(
        &self,
        owner: &str,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, ContainerError> {
        let docker = self.docker().await?;
        let mut wanted = vec![format!("{LABEL_OWNER}={owner}")];
        wanted.extend(labels.iter().map(|(k, v)| format!("{k}={v}")));
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), wanted)])),
            ..Default::default()
        };
        docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.failed("list containers of", owner, e))
    }

    /// The last few lines container `name` wrote, for an error message (`(none)` when it
    /// wrote nothing, or the logs cannot be read).
    pub(super) async fn last_lines(&self, name: &str) -> String {
        let Ok(docker) = self.docker().await else {
            return "(none)".to_owned();
        };
        let options = LogsOptions {
            stdout: true,
            stderr: true,
            tail: ERROR_LOG_LINES.to_string(),
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut logs = std::pin::pin!(docker.logs(name, Some(options)));
        while let Some(Ok(chunk)) = logs.next().await {
            out.extend(
                chunk
                    .to_string()
                    .lines()
                    .map(str::to_owned)
                    .filter(|l| !l.trim().is_empty()),
            );
        }
        let start = out.len().saturating_sub(ERROR_LOG_LINES);
        if out[start..].is_empty() {
            "(none)".to_owned()
        } else {
            out[start..].join(" | ")
        }
    }

    /// Follows what container `name` writes from `since` (Unix seconds) on; the stream ends
    /// when the container stops.
    pub(super) async fn follow(&self, name: &str, since: i32) -> Result<LogStream, ContainerError> {
        let docker = self.docker().await?;
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            since,
            ..Default::default()
        };
        Ok(Box::pin(docker.logs(name, Some(options))))
    }

    /// Waits until container `name` is not running. An error means the wait itself failed
    /// (the caller inspects the container to learn more).
    pub(super) async fn wait(&self, name: &str) -> Result<(), ContainerError> {
        let docker = self.docker().await?;
        let mut wait = std::pin::pin!(docker.wait_container(name, None));
        match wait.next().await {
            // A non-zero exit status comes as this error: the container did stop.
            Some(Ok(_) | Err(BollardError::DockerContainerWaitError { .. })) | None => Ok(()),
            Some(Err(e)) => Err(self.failed("wait for container", name, e)),
        }
    }

    fn failed(&self, action: &'static str, name: &str, source: BollardError) -> ContainerError {
        if matches!(
            source,
            BollardError::DockerResponseServerError { .. }
                | BollardError::DockerContainerWaitError { .. }
                | BollardError::JsonDataError { .. }
        ) {
            ContainerError::Engine {
                action,
                name: name.to_owned(),
                source,
            }
        } else {
            ContainerError::Unreachable {
                host: self.host.clone(),
                source,
            }
        }
    }
}
