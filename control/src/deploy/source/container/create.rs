//! How a replica's container is made and reached: the Engine's create body (labels,
//! environment, the published port, limits), the loopback port it is published on, the
//! address read back from the Engine, and the probe that tells a listening replica from the
//! Engine's port proxy answering for it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use tokio::io::AsyncReadExt;
use tokio::time::timeout;

use super::ContainerError;
use super::engine::{LABEL_DEPLOYMENT, LABEL_OWNER, LABEL_REPLICA, LABEL_SERVICE, LABEL_STACK};
use crate::deploy::source::Target;
use crate::deploy::spec::{ContainerSpec, parse_memory};

/// How long an open connection must stay silent-and-open to count as a listening replica:
/// the Engine's port proxy accepts every connection and closes it at once when nothing
/// listens in the container.
const OPEN_GRACE: Duration = Duration::from_millis(50);

/// A port for a new replica, below the ephemeral range (see `source::port`).
pub(super) fn free_port() -> Result<u16, ContainerError> {
    crate::deploy::source::port::free_port().map_err(ContainerError::Port)
}

/// What replica `n` is created from.
pub(super) struct Replica<'a> {
    pub(super) target: &'a Target<'a>,
    pub(super) spec: &'a ContainerSpec,
    pub(super) n: usize,
    pub(super) host_port: u16,
    pub(super) owner: &'a str,
}

impl Replica<'_> {
    pub(super) fn body(&self) -> ContainerCreateBody {
        let (t, c) = (self.target, self.spec);
        let port = c.port.to_string();
        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.extend([
            (LABEL_SERVICE.to_owned(), t.service.to_owned()),
            (LABEL_STACK.to_owned(), t.spec.stack.clone()),
            (LABEL_DEPLOYMENT.to_owned(), t.deployment.to_string()),
            (LABEL_REPLICA.to_owned(), self.n.to_string()),
            (LABEL_OWNER.to_owned(), self.owner.to_owned()),
        ]);
        let mut env: BTreeMap<String, String> = c.env.clone();
        env.insert("SWITCHYARD_PORT".into(), port.clone());
        env.insert("SWITCHYARD_SERVICE".into(), t.service.to_owned());
        env.insert("SWITCHYARD_STACK".into(), t.spec.stack.clone());
        env.insert("SWITCHYARD_VERSION".into(), t.spec.version.clone());
        let key = format!("{port}/tcp");
        let publish = c.publish.unwrap_or(true);
        let resources = c.resources.clone().unwrap_or_default();
        let host_config = HostConfig {
            port_bindings: publish.then(|| {
                HashMap::from([(
                    key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".to_owned()),
                        host_port: Some(self.host_port.to_string()),
                    }]),
                )])
            }),
            network_mode: c.network.clone(),
            memory: resources
                .memory
                .as_deref()
                .and_then(|m| parse_memory(m).ok()),
            // Validated to (0, 1024] cores: the product fits.
            nano_cpus: resources.cpus.map(|cpus| (cpus * 1e9) as i64),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(c.image.clone()),
            cmd: (!c.command.is_empty()).then(|| {
                c.command
                    .iter()
                    .map(|a| a.replace("{port}", &port))
                    .collect()
            }),
            env: Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            exposed_ports: Some(vec![key]),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Whether a replica listens on `endpoint`: a connection is accepted and not closed at once
/// (the Engine's port proxy accepts and closes when nothing listens behind it).
pub(super) async fn open(endpoint: &str) -> bool {
    let Ok(Ok(mut stream)) = timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(endpoint),
    )
    .await
    else {
        return false;
    };
    let mut byte = [0u8; 1];
    match timeout(OPEN_GRACE, stream.read(&mut byte)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}

/// The 127.0.0.1 address the Engine bound for the container's exposed port.
pub(super) fn published(info: &bollard::models::ContainerInspectResponse) -> Option<String> {
    let ports = info.network_settings.as_ref()?.ports.as_ref()?;
    ports.values().flatten().flatten().find_map(|b| {
        let ip = b.host_ip.as_deref().unwrap_or("127.0.0.1");
        let port = b.host_port.as_deref().filter(|p| !p.is_empty())?;
        Some(format!(
            "{}:{port}",
            if ip.is_empty() || ip == "0.0.0.0" {
                "127.0.0.1"
            } else {
                ip
            }
        ))
    })
}
