//! What a rolling update needs of the service before it starts: a live process stack of the
//! given name, supervised by the process source, whose replica count the request keeps.

use switchyard_config::ServiceSpec;

use crate::deploy::Deployments;
use crate::deploy::spec::{DeploymentSpec, SourceSpec, StrategySpec};
use crate::error::ApiError;

impl Deployments {
    /// The process source (a rolling update works on it directly).
    pub(crate) fn processes(&self) -> &std::sync::Arc<crate::deploy::process::ProcessSource> {
        &self.processes
    }

    /// Fills in the replica count of a rolling update that gives none: the live stack's.
    pub(crate) fn complete_rolling(&self, service: &str, spec: &mut DeploymentSpec) {
        if !matches!(spec.strategy, StrategySpec::Rolling(_)) {
            return;
        }
        let stack = spec.stack.clone();
        if let SourceSpec::Process(p) = &mut spec.source {
            if p.replicas.is_none() {
                p.replicas = self
                    .processes
                    .replicas_of(service, &stack)
                    .and_then(|n| u32::try_from(n).ok());
            }
        }
    }

    /// Refuses a rolling update of a stack that is not a live, supervised process stack of
    /// `current`, or that would change its replica count.
    pub(crate) fn admit_rolling(
        &self,
        current: &ServiceSpec,
        spec: &DeploymentSpec,
    ) -> Result<(), ApiError> {
        let service = current.name().as_str();
        if current.stack(&spec.stack).is_none() {
            return Err(ApiError::Invalid(format!(
                "stack: a rolling update replaces the replicas of a live process stack; service {service:?} has no stack {:?}",
                spec.stack
            )));
        }
        let Some(running) = self.processes.replicas_of(service, &spec.stack) else {
            return Err(ApiError::Invalid(format!(
                "stack: {:?} is not a process stack Switchyard supervises; deploy it blue-green or canary instead",
                spec.stack
            )));
        };
        let asked = match &spec.source {
            SourceSpec::Process(p) => p.replicas.unwrap_or(1) as usize,
            _ => running,
        };
        if asked != running {
            return Err(ApiError::Invalid(format!(
                "source.process.replicas: a rolling update keeps the stack's {running} replicas (asked {asked}); change the count with a blue-green deployment"
            )));
        }
        Ok(())
    }
}
