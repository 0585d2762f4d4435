//! The driver's actions: what each one does against the source, the proxy and the writer.
//!
//! Every action is idempotent, because a restart re-runs the action of the persisted phase:
//! registering a stack that is already there as asked succeeds, restoring a service already
//! restored changes nothing, releasing stopped processes finds them gone.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use switchyard_config::{DEFAULT_PIN_HEADER, Endpoint, HostPattern, ServiceSpec, raw};
use tokio::time::{Instant, sleep};

use super::Driver;
use crate::change::Change;
use crate::data_plane::DataPlane;
use crate::deploy::check::{self, Context, Target as CheckTarget};
use crate::deploy::machine::{Event, describe_weights};
use crate::deploy::source::Target;
use crate::error::chain;
use crate::state::ControlState;

/// How often health and in-flight counts are polled.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for requests in flight on the new stack during a rollback.
const ROLLBACK_DRAIN: Duration = Duration::from_secs(10);

impl Driver {
    fn service(&self) -> &str {
        &self.rec.service
    }

    fn new_stack(&self) -> &str {
        &self.rec.spec.stack
    }

    fn current(&self) -> Option<ServiceSpec> {
        self.state
            .published()
            .config
            .service(self.service())
            .cloned()
    }

    async fn write(&self, change: Change) -> Result<(), String> {
        self.state
            .write(&self.rec.created_by, &self.rec.service, None, change)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    pub(super) fn provision(&self) -> impl Future<Output = Event> + Send + 'static {
        let source = self.state.deployments().source_for(&self.rec.spec);
        let service = self.rec.service.clone();
        let deployment = self.rec.id;
        let spec = self.rec.spec.clone();
        let base_dir = self.state.deployments().base_dir().to_path_buf();
        let start_timeout = self.plan.start_timeout;
        let reporter = self.reporter.clone();
        async move {
            let target = Target {
                service: &service,
                deployment,
                spec: &spec,
                base_dir,
                start_timeout,
            };
            match source.provision(&target, reporter).await {
                Ok(stack) => Event::Provisioned(Box::new(stack)),
                Err(e) => Event::Failed(format!("provisioning failed: {}", chain(&e))),
            }
        }
    }

    pub(super) async fn register(&self, stack: Box<raw::Stack>) -> Event {
        let Some(current) = self.current() else {
            return Event::Failed(format!("service {:?} was deleted", self.service()));
        };
        if let Some(existing) = current.stack(&stack.name) {
            return if existing.to_raw() == *stack {
                Event::Registered
            } else {
                Event::Failed(format!("stack {:?} exists with other content", stack.name))
            };
        }
        match self.write(Change::AddStack(stack)).await {
            Ok(()) => Event::Registered,
            Err(e) => Event::Failed(format!("cannot register the stack: {e}")),
        }
    }

    pub(super) fn wait_healthy(&self) -> impl Future<Output = Event> + Send + 'static {
        let dp = self.state.data_plane().clone();
        let service = self.rec.service.clone();
        let stack = self.rec.spec.stack.clone();
        let expected = self.rec.stack.as_ref().map_or(0, |s| s.endpoints.len());
        let limit = self.plan.healthy_timeout;
        async move {
            let deadline = deadline_after(limit);
            loop {
                let eps = dp.endpoints(&service, &stack);
                let healthy = eps.iter().filter(|e| e.state.takes_traffic()).count();
                if !eps.is_empty() && healthy == eps.len() && healthy >= expected {
                    return Event::Healthy;
                }
                if Instant::now() >= deadline {
                    let states: Vec<String> = eps
                        .iter()
                        .map(|e| format!("{}={}", e.address, e.state.as_str()))
                        .collect();
                    return Event::Failed(format!(
                        "endpoints not healthy within {limit:?}: [{}]",
                        states.join(", ")
                    ));
                }
                sleep(POLL).await;
            }
        }
    }

    pub(super) fn checks(
        &self,
        post: bool,
    ) -> Result<impl Future<Output = Event> + Send + 'static, String> {
        let current = self
            .current()
            .ok_or_else(|| format!("service {:?} was deleted", self.service()))?;
        let host = check_host(&current);
        let target = if post {
            let listener = public_listener(self.state.data_plane().as_ref(), &current)?;
            CheckTarget::Proxy {
                listener,
                host: host.unwrap_or_else(|| listener.to_string()),
                pin_header: current
                    .pin_header()
                    .unwrap_or(DEFAULT_PIN_HEADER)
                    .to_owned(),
                stack: self.new_stack().to_owned(),
            }
        } else {
            let mut addresses: Vec<String> = self
                .state
                .data_plane()
                .endpoints(self.service(), self.new_stack())
                .into_iter()
                .map(|e| e.address)
                .collect();
            if addresses.is_empty() {
                addresses = self
                    .rec
                    .stack
                    .as_ref()
                    .map(|s| s.endpoints.clone())
                    .unwrap_or_default();
            }
            let mut endpoints = Vec::new();
            for a in &addresses {
                endpoints.push(direct_address(a)?);
            }
            CheckTarget::Direct {
                host: host.unwrap_or_else(|| addresses.first().cloned().unwrap_or_default()),
                endpoints,
            }
        };
        let checks = if post {
            self.plan.post.clone()
        } else {
            self.plan.pre.clone()
        };
        let ctx = Context {
            post,
            service: self.rec.service.clone(),
            stack: self.rec.spec.stack.clone(),
            version: self.rec.spec.version.clone(),
        };
        let reporter = self.reporter.clone();
        Ok(async move {
            let (results, passed) = check::run(&checks, &target, &ctx, &reporter).await;
            Event::Checked { results, passed }
        })
    }

    pub(super) async fn set_weights(&self, weights: BTreeMap<String, u32>) -> Event {
        let Some(current) = self.current() else {
            return Event::Failed(format!("service {:?} was deleted", self.service()));
        };
        // Only stacks still present: an operator may have removed one meanwhile.
        let weights: BTreeMap<String, i64> = weights
            .into_iter()
            .filter(|(n, _)| current.stack(n).is_some())
            .map(|(n, w)| (n, i64::from(w)))
            .collect();
        let change = Change::SetWeights {
            weights,
            exclusive: false,
            allow_no_traffic: false,
        };
        match self.write(change).await {
            Ok(()) => Event::WeightsSet,
            Err(e) => Event::Failed(format!("cannot set weights: {e}")),
        }
    }

    pub(super) async fn retire(&self) -> Event {
        let new = self.new_stack().to_owned();
        let current = self.current();
        let old: Vec<String> = self
            .rec
            .before
            .weights()
            .into_iter()
            .filter(|(n, w)| *w > 0 && *n != new)
            .map(|(n, _)| n)
            .filter(|n| current.as_ref().is_some_and(|c| c.stack(n).is_some()))
            .collect();
        let mut left = Vec::new();
        for name in old {
            self.reporter
                .log("deploy", format!("retiring stack {name}"));
            if let Err(e) = retire_stack(
                &self.state,
                &self.rec.created_by,
                self.service(),
                &name,
                self.plan.drain,
            )
            .await
            {
                left.push(e);
            }
        }
        Event::Retired {
            left: (!left.is_empty()).then(|| left.join("; ")),
        }
    }

    pub(super) async fn roll_back(&self) -> Event {
        let mut left = Vec::new();
        let new = self.new_stack().to_owned();
        let before = &self.rec.before;
        match self.current() {
            None => self.reporter.log(
                "deploy",
                format!(
                    "service {:?} was deleted; nothing to restore",
                    self.service()
                ),
            ),
            Some(current) => {
                // Take traffic off the new stack first and let its requests finish, then put
                // the service back exactly.
                if current.stack(&new).is_some_and(|s| s.weight().get() > 0) {
                    let mut weights = before.weights();
                    weights.insert(new.clone(), 0);
                    self.reporter
                        .log("deploy", format!("weights {}", describe_weights(&weights)));
                    let weights = weights
                        .into_iter()
                        .filter(|(n, _)| current.stack(n).is_some())
                        .map(|(n, w)| (n, i64::from(w)))
                        .collect();
                    // The weights from before, which may have been all 0.
                    let change = Change::SetWeights {
                        weights,
                        exclusive: false,
                        allow_no_traffic: true,
                    };
                    if let Err(e) = self.write(change).await {
                        left.push(format!("weights not restored: {e}"));
                    } else if let Some(ended) = self.window_end.filter(|_| {
                        self.rec
                            .reason
                            .as_deref()
                            .is_some_and(|r| r.starts_with("analysis"))
                    }) {
                        // The write resolves once the proxy routes on the new snapshot.
                        let ms = ended.elapsed().as_secs_f64() * 1000.0;
                        tracing::info!(
                            ms,
                            "previous weights served after the failing analysis window"
                        );
                        self.reporter.log(
                            "deploy",
                            format!("previous weights served {ms:.1} ms after the failing analysis window ended"),
                        );
                    }
                    wait_idle(
                        self.state.data_plane().as_ref(),
                        self.service(),
                        &new,
                        ROLLBACK_DRAIN.min(self.plan.drain),
                    )
                    .await;
                }
                let change = Change::Restore {
                    spec: Box::new(before.spec.clone()),
                    origin: before.origin,
                    promotions: before.promotions.clone(),
                };
                if let Err(e) = self.write(change).await {
                    left.push(format!("service not restored: {e}"));
                }
            }
        }
        let source = self.state.deployments().source_for(&self.rec.spec);
        if let Err(e) = source
            .release(self.service(), &new, &self.rec.units, self.plan.drain)
            .await
        {
            left.push(format!("stack {new}: {}", chain(&e)));
        }
        if left.is_empty() {
            Event::RolledBack
        } else {
            Event::RollbackIncomplete(left.join("; "))
        }
    }
}

/// `now + limit` without overflow: a deadline past the clock's range becomes one far away
/// (limits are validated to an hour, so this only guards the arithmetic).
fn deadline_after(limit: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(limit)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// Retires one previous stack of `service`: waits (up to `drain`) for its requests in flight,
/// removes it through the writer as `caller`, and stops its replicas if it is a process stack
/// (its current processes, supervised or recorded by whoever restarted them, plus the units
/// its deployment saw). `Err` says what is left.
pub(crate) async fn retire_stack(
    state: &ControlState,
    caller: &str,
    service: &str,
    name: &str,
    drain: Duration,
) -> Result<(), String> {
    wait_idle(state.data_plane().as_ref(), service, name, drain).await;
    let change = Change::DeleteStack {
        stack: name.to_owned(),
        force: false,
        allow_no_traffic: false,
    };
    state
        .write(caller, service, None, change)
        .await
        .map_err(|e| format!("stack {name} not removed: {e}"))?;
    let (spec, units) = state
        .deployments()
        .units_of(service, name)
        .map_or((None, Vec::new()), |(spec, units)| (Some(spec), units));
    state
        .deployments()
        .release_stack(service, name, spec.as_ref(), &units, drain)
        .await
        .map_err(|e| format!("stack {name}: {}", chain(&e)))
}

/// Waits (up to `limit`) until no request is in flight on the stack's endpoints.
pub(crate) async fn wait_idle(dp: &dyn DataPlane, service: &str, stack: &str, limit: Duration) {
    let deadline = deadline_after(limit);
    while Instant::now() < deadline {
        let busy: u64 = dp
            .endpoints(service, stack)
            .iter()
            .map(|e| e.in_flight)
            .sum();
        if busy == 0 {
            return;
        }
        sleep(POLL).await;
    }
}

/// The Host header checks send: the service's first exact host, or a name under its first
/// wildcard; `None` when it answers any host.
pub(crate) fn check_host(service: &ServiceSpec) -> Option<String> {
    let hosts = service.hosts();
    hosts
        .iter()
        .find_map(|h| match h {
            HostPattern::Exact(name) => Some(name.clone()),
            HostPattern::Wildcard(_) => None,
        })
        .or_else(|| {
            hosts.iter().find_map(|h| match h {
                HostPattern::Wildcard(suffix) => {
                    Some(format!("deploy-check.{}", suffix.trim_start_matches('.')))
                }
                HostPattern::Exact(_) => None,
            })
        })
}

/// A plain-HTTP public listener of the service, as a connectable address.
pub(crate) fn public_listener(
    dp: &dyn DataPlane,
    service: &ServiceSpec,
) -> Result<SocketAddr, String> {
    let names: Vec<&str> = service.listeners().iter().map(|l| l.as_str()).collect();
    let listener = dp
        .listeners()
        .into_iter()
        .find(|l| !l.tls && names.contains(&l.name.as_str()))
        .ok_or_else(|| {
            format!(
                "post-integration checks need a plain-HTTP listener of the service; it has {names:?}"
            )
        })?;
    let mut addr = listener.address;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// A stack endpoint as an address a pre-integration http check can reach.
fn direct_address(endpoint: &str) -> Result<SocketAddr, String> {
    let e = Endpoint::parse(endpoint).map_err(|m| format!("endpoint {endpoint}: {m}"))?;
    if e.scheme() != switchyard_config::Scheme::Http {
        return Err(format!(
            "pre-integration checks reach plain-HTTP endpoints only; {endpoint} is https"
        ));
    }
    e.socket_addr()
        .ok_or_else(|| format!("pre-integration checks need IP endpoints; {endpoint} is a name"))
}
