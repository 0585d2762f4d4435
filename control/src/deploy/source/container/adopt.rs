//! Re-adoption after a restart: the Engine is the record of container stacks, found by the
//! owner label; the stacks still wanted are kept, the others removed.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument;

use super::create::published;
use super::engine::{LABEL_REPLICA, LABEL_SERVICE, LABEL_STACK, name_of};
use super::replica::unix_secs;
use super::{ContainerSource, EXIT_DRAIN_SECS, Key};
use crate::deploy::record::Unit;
use crate::deploy::source::Reporter;
use crate::error::chain;

impl ContainerSource {
    /// Keeps again, after a restart, the containers of this owner found on the Engine: those
    /// of stacks `keep` accepts are supervised (their reports go nowhere until a resumed
    /// deployment attaches), the others are stopped and removed. `expected` says whether
    /// saved deployments used containers (an unreachable Engine is then worth a warning).
    pub(crate) fn adopt(
        self: &Arc<Self>,
        keep: impl Fn(&str, &str) -> bool + Send + 'static,
        expected: bool,
    ) {
        let this = self.clone();
        let task = async move {
            let found = match this.engine.list(&this.owner, &[]).await {
                Ok(found) => found,
                Err(e) if expected => {
                    tracing::warn!(error = %chain(&e), "cannot list this Switchyard's containers; container stacks are not supervised until the next start");
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %chain(&e), "no Docker Engine; no container stack to adopt");
                    return;
                }
            };
            let mut stacks: BTreeMap<Key, Vec<(usize, String)>> = BTreeMap::new();
            for c in found {
                let Some(name) = name_of(&c) else {
                    continue;
                };
                let labels = c.labels.unwrap_or_default();
                let (Some(service), Some(stack)) =
                    (labels.get(LABEL_SERVICE), labels.get(LABEL_STACK))
                else {
                    continue;
                };
                let n = labels
                    .get(LABEL_REPLICA)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                stacks
                    .entry((service.clone(), stack.clone()))
                    .or_default()
                    .push((n, name));
            }
            for (key, mut replicas) in stacks {
                replicas.sort();
                if !keep(&key.0, &key.1) {
                    tracing::warn!(service = %key.0, stack = %key.1, containers = replicas.len(), "container stack no longer in the desired state; removing its containers");
                    for (_, name) in replicas {
                        if let Err(e) = this.engine.stop_and_remove(&name, EXIT_DRAIN_SECS).await {
                            tracing::error!(container = %name, error = %chain(&e), "cannot remove an orphaned container");
                        }
                    }
                    continue;
                }
                let mut units = Vec::new();
                for (_, name) in &replicas {
                    let endpoint = match this.engine.inspect(name).await {
                        Ok(info) => published(&info).unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    if let Err(e) = this.engine.start(name).await {
                        tracing::warn!(container = %name, error = %chain(&e), "cannot start a stopped replica; its keeper retries");
                    }
                    units.push(Unit {
                        endpoint,
                        pid: None,
                        start_ticks: None,
                        container: Some(name.clone()),
                    });
                    tracing::info!(container = %name, "container replica re-adopted");
                }
                let replicas = replicas.into_iter().map(|(_, name)| (name, None)).collect();
                let mut registry = this.registry();
                let reporter = registry
                    .attached
                    .remove(&key)
                    .unwrap_or_else(Reporter::detached);
                if reporter.is_open() {
                    let (r, u) = (reporter.clone(), units.clone());
                    tokio::spawn(async move { r.units(u).await });
                }
                let running = this.keep(&key, replicas, units, reporter, unix_secs());
                if let Some(old) = registry.running.insert(key, running) {
                    tokio::spawn(old.end());
                }
                drop(registry);
            }
        };
        tokio::spawn(task.instrument(tracing::info_span!("container_adoption")));
    }
}
