//! The container source's errors: the Engine, the image, or a replica that never served.

use std::time::Duration;

/// Why the container source failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The Engine did not answer.
    #[error("cannot reach the Docker Engine at {host}")]
    Unreachable {
        /// Where it was looked for.
        host: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image is not there and may not be pulled.
    #[error("image {image} not found locally and pull is \"never\"")]
    ImageMissing {
        /// The image.
        image: String,
    },
    /// Pulling the image failed.
    #[error("cannot pull image {image}")]
    Pull {
        /// The image.
        image: String,
        /// The cause.
        #[source]
        source: bollard::errors::Error,
    },
    /// The Engine refused a request.
    #[error("cannot {action} {name}")]
    Engine {
        /// What was asked, e.g. `create container`.
        action: &'static str,
        /// The container or image.
        name: String,
        /// The Engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
    /// A rolling update of a container stack was asked with another kind of source.
    #[error("a rolling update of a container stack needs a \"container\" source")]
    NotContainer,
    /// A container of that name exists and is not this Switchyard's.
    #[error("container name {name} is taken by a container this Switchyard did not start")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// A replica never opened its port.
    #[error(
        "replica {container} did not open port {port} within {timeout:?}; its last log lines: {logs}"
    )]
    NotListening {
        /// The container.
        container: String,
        /// The port inside the container.
        port: u16,
        /// The start timeout.
        timeout: Duration,
        /// Its last log lines.
        logs: String,
    },
    /// A replica's `HEALTHCHECK` failed.
    #[error("replica {container} is unhealthy ({detail}); its last log lines: {logs}")]
    Unhealthy {
        /// The container.
        container: String,
        /// The health check's last output.
        detail: String,
        /// Its last log lines.
        logs: String,
    },
    /// `"health": "docker"` for an image without a `HEALTHCHECK`.
    #[error(
        "image {image} has no HEALTHCHECK; use \"health\": \"switchyard\" to check it with the stack's health check"
    )]
    NoHealthcheck {
        /// The image.
        image: String,
    },
    /// No free loopback port could be had.
    #[error("cannot pick a free loopback port")]
    Port(#[source] std::io::Error),
    /// The Engine reported no address for a replica.
    #[error("the Engine reports no address of {container} on network {network}")]
    NoAddress {
        /// The container.
        container: String,
        /// The network.
        network: String,
    },
}

impl ContainerError {
    /// Whether the Engine answered "no such container".
    pub(super) fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::Engine {
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ..
                },
                ..
            }
        )
    }
}
