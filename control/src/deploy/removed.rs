//! Replicas of stacks removed through the API (`DELETE .../stacks/{stack}`, or the whole
//! service): stopped in the background as a retirement stops them, instead of running on
//! until the next start finds them undesired.

use std::sync::Arc;

use super::{Deployments, plan};
use crate::error::chain;

impl Deployments {
    /// Stops the process or container replicas of `stacks` of `service` (already removed from
    /// the desired state), each given the drain time of the deployment that made it. Stacks of
    /// endpoints or DNS names have none: nothing happens for them.
    pub(crate) fn release_removed(self: &Arc<Self>, service: &str, stacks: Vec<String>) {
        for stack in stacks {
            let (spec, units) = self
                .units_of(service, &stack)
                .map_or((None, Vec::new()), |(spec, units)| (Some(spec), units));
            let drain = spec
                .as_ref()
                .and_then(|s| plan::validate(s).ok())
                .map_or(plan::DRAIN_TIMEOUT, |p| p.drain);
            let this = self.clone();
            let service = service.to_owned();
            tokio::spawn(async move {
                match this
                    .release_stack(&service, &stack, spec.as_ref(), &units, drain)
                    .await
                {
                    Ok(()) => {
                        tracing::debug!(service, stack, "replicas of a removed stack released")
                    }
                    Err(e) => {
                        tracing::warn!(service, stack, error = %chain(&e), "cannot stop the replicas of a removed stack")
                    }
                }
            });
        }
    }
}
