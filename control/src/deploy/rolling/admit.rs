//! What a rolling update needs of the service before it starts: a live process or container
//! stack of the given name, kept by the source of the request's kind, whose replica count the
//! request keeps.

use switchyard_config::ServiceSpec;

use crate::deploy::Deployments;
use crate::deploy::spec::{DeploymentSpec, SourceSpec, StrategySpec};
use crate::error::ApiError;

/// The source's name in messages and its replica count field.
fn kind(source: &SourceSpec) -> (&'static str, Option<u32>) {
    match source {
        SourceSpec::Process(p) => ("process", p.replicas),
        SourceSpec::Container(c) => ("container", c.replicas),
        SourceSpec::Endpoints(_) | SourceSpec::Dns(_) => ("endpoints", None),
    }
}

impl Deployments {
    /// Fills in the replica count of a rolling update that gives none: the live stack's.
    pub(crate) fn complete_rolling(&self, service: &str, spec: &mut DeploymentSpec) {
        if !matches!(spec.strategy, StrategySpec::Rolling(_)) {
            return;
        }
        let Some(source) = self.replicas_for(spec) else {
            return;
        };
        let live = source
            .replicas_of(service, &spec.stack)
            .and_then(|n| u32::try_from(n).ok());
        match &mut spec.source {
            SourceSpec::Process(p) if p.replicas.is_none() => p.replicas = live,
            SourceSpec::Container(c) if c.replicas.is_none() => c.replicas = live,
            _ => {}
        }
    }

    /// Refuses a rolling update of a stack that is not a live stack of `current` kept by the
    /// source of the request's kind, or that would change its replica count.
    pub(crate) fn admit_rolling(
        &self,
        current: &ServiceSpec,
        spec: &DeploymentSpec,
    ) -> Result<(), ApiError> {
        let service = current.name().as_str();
        let (kind, asked) = kind(&spec.source);
        if current.stack(&spec.stack).is_none() {
            return Err(ApiError::Invalid(format!(
                "stack: a rolling update replaces the replicas of a live process or container stack; service {service:?} has no stack {:?}",
                spec.stack
            )));
        }
        let running = self
            .replicas_for(spec)
            .and_then(|s| s.replicas_of(service, &spec.stack));
        let Some(running) = running else {
            return Err(ApiError::Invalid(format!(
                "stack: {:?} is not a {kind} stack Switchyard keeps; deploy it blue-green or canary instead",
                spec.stack
            )));
        };
        let asked = asked.unwrap_or(1) as usize;
        if asked != running {
            return Err(ApiError::Invalid(format!(
                "source.{kind}.replicas: a rolling update keeps the stack's {running} replicas (asked {asked}); change the count with a blue-green deployment"
            )));
        }
        Ok(())
    }
}
