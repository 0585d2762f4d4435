//! DNS discovery: the endpoints of a stack with `dns = { name, port }` or `dns = { srv }`.
//!
//! One task per DNS stack resolves its name (see [`lookup`]) and re-resolves at the answer's
//! TTL, raised to `[dns] min_refresh` and lowered to `max_refresh`. When the set of addresses
//! changes it sends the snapshot writer an [`Update`]; the writer rebuilds the snapshot, and
//! because endpoint state is keyed by address, unchanged endpoints keep their health, counters
//! and pooled connections. A failed lookup keeps the last good set (and retries after
//! `min_refresh`, doubling up to `max_refresh`); an empty answer keeps it too until a second
//! empty answer in a row confirms it. The request path never resolves anything.
//!
//! When the writer applies a configuration with a new DNS stack it resolves that stack once
//! before building (as it does for endpoint host names), so the new snapshot already routes to
//! it; the task then takes over.

mod lookup;

use lookup::{Answer, Found};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use switchyard_config::{Config, DnsSource, DnsSpec};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

pub(crate) use lookup::copies;

/// Last resolution of a DNS stack, for the status view (written by its task).
#[derive(Debug, Default)]
pub(crate) struct DnsState {
    last_unix_ms: AtomicU64,
    ttl_secs: AtomicU32,
    outcome: AtomicU8,
    failures: AtomicU32,
}

/// What the last resolution of a DNS stack gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionOutcome {
    /// Addresses.
    Found,
    /// No records (kept the previous set unless it repeated).
    Empty,
    /// The lookup failed (kept the previous set).
    Failed,
}

impl DnsState {
    fn record(&self, answer: &Answer) {
        let (outcome, ttl) = match answer {
            Answer::Found(_, ttl) => (1, *ttl),
            Answer::Empty => (2, 0),
            Answer::Failed(_) => (3, 0),
        };
        if outcome == 3 {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failures.store(0, Ordering::Relaxed);
            self.ttl_secs.store(ttl, Ordering::Relaxed);
        }
        self.outcome.store(outcome, Ordering::Relaxed);
        self.last_unix_ms
            .store(crate::health::unix_ms(SystemTime::now()), Ordering::Release);
    }

    /// Unix milliseconds of the last resolution, its outcome, the TTL of the last answer with
    /// records (seconds), and failures in a row.
    pub(crate) fn last(&self) -> Option<(u64, ResolutionOutcome, u32, u32)> {
        let at = self.last_unix_ms.load(Ordering::Acquire);
        let outcome = match self.outcome.load(Ordering::Relaxed) {
            1 => ResolutionOutcome::Found,
            2 => ResolutionOutcome::Empty,
            3 => ResolutionOutcome::Failed,
            _ => return None,
        };
        Some((
            at,
            outcome,
            self.ttl_secs.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        ))
    }
}

/// The current endpoint set of one DNS stack, as the snapshot build uses it.
#[derive(Debug, Clone)]
pub(crate) struct DiscoveredSet {
    pub(crate) source: DnsSource,
    pub(crate) endpoints: Vec<Found>,
    pub(crate) state: Arc<DnsState>,
}

/// Endpoint sets by (service, stack).
pub(crate) type Discovered = HashMap<(String, String), DiscoveredSet>;

/// A changed endpoint set, from a discovery task to the writer.
#[derive(Debug)]
pub(crate) struct Update {
    key: (String, String),
    source: DnsSource,
    endpoints: Vec<Found>,
}

/// Per-stack progress of the empty-answer rule and the retry back-off.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    empties: u32,
    backoff: Option<Duration>,
}

/// What an answer means: the set to publish if it changes, and when to resolve again.
fn decide(
    answer: &Answer,
    published: &[Found],
    p: &mut Progress,
    spec: &DnsSpec,
) -> (Option<Vec<Found>>, Duration) {
    match answer {
        Answer::Found(set, ttl) => {
            *p = Progress::default();
            let next =
                Duration::from_secs(u64::from(*ttl)).clamp(spec.min_refresh, spec.max_refresh);
            ((set.as_slice() != published).then(|| set.clone()), next)
        }
        Answer::Empty => {
            p.backoff = None;
            p.empties = p.empties.saturating_add(1);
            let publish = (p.empties >= 2 && !published.is_empty()).then(Vec::new);
            (publish, spec.min_refresh)
        }
        Answer::Failed(_) => {
            let next = p
                .backoff
                .map_or(spec.min_refresh, |b| b.saturating_mul(2))
                .min(spec.max_refresh);
            p.backoff = Some(next);
            (None, next)
        }
    }
}

async fn resolve_bounded(
    r: &hickory_resolver::TokioResolver,
    source: &DnsSource,
    spec: &DnsSpec,
) -> Answer {
    // Two attempts per query plus the SRV targets' lookups.
    tokio::time::timeout(spec.timeout.saturating_mul(3), lookup::resolve(r, source))
        .await
        .unwrap_or_else(|_| Answer::Failed("resolution timed out".into()))
}

struct Task {
    key: (String, String),
    source: DnsSource,
    resolver: Arc<hickory_resolver::TokioResolver>,
    spec: DnsSpec,
    state: Arc<DnsState>,
    updates: mpsc::Sender<Update>,
}

impl Task {
    async fn run(
        self,
        mut published: Vec<Found>,
        mut progress: Progress,
        mut delay: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = crate::handle::stopped(&mut shutdown) => return,
            }
            let answer = tokio::select! {
                a = resolve_bounded(&self.resolver, &self.source, &self.spec) => a,
                () = crate::handle::stopped(&mut shutdown) => return,
            };
            self.state.record(&answer);
            let (publish, next) = decide(&answer, &published, &mut progress, &self.spec);
            match &answer {
                Answer::Failed(e) => {
                    warn!(error = %e, retry_ms = next.as_millis() as u64, "dns lookup failed; keeping the last endpoint set");
                }
                Answer::Empty if publish.is_none() && !published.is_empty() => {
                    warn!("dns answer is empty; keeping the last endpoint set until it repeats");
                }
                _ => debug!(next_ms = next.as_millis() as u64, "dns resolved"),
            }
            delay = next;
            let Some(set) = publish else { continue };
            info!(endpoints = set.len(), "dns endpoint set changed");
            published = set.clone();
            let update = Update {
                key: self.key.clone(),
                source: self.source.clone(),
                endpoints: set,
            };
            tokio::select! {
                r = self.updates.send(update) => if r.is_err() { return },
                () = crate::handle::stopped(&mut shutdown) => return,
            }
        }
    }
}

struct Running {
    source: DnsSource,
    task: JoinHandle<()>,
}

/// The discovery tasks and the current endpoint sets, owned by the snapshot writer.
pub(crate) struct Discovery {
    spec: DnsSpec,
    resolver: Option<Arc<hickory_resolver::TokioResolver>>,
    running: HashMap<(String, String), Running>,
    sets: Discovered,
    updates: mpsc::Sender<Update>,
}

impl Discovery {
    /// No tasks yet; tasks send their updates on `updates`.
    pub(crate) fn new(updates: mpsc::Sender<Update>) -> Self {
        Self {
            spec: DnsSpec::default(),
            resolver: None,
            running: HashMap::new(),
            sets: Discovered::new(),
            updates,
        }
    }

    /// The endpoint sets the next build uses.
    pub(crate) fn sets(&self) -> &Discovered {
        &self.sets
    }

    /// Takes a task's update; true when the snapshot must be rebuilt.
    pub(crate) fn accept(&mut self, u: Update) -> bool {
        match self.sets.get_mut(&u.key) {
            Some(set) if set.source == u.source && set.endpoints != u.endpoints => {
                set.endpoints = u.endpoints;
                true
            }
            _ => false,
        }
    }

    /// Starts a task for every DNS stack of `config` that has none (resolving it once first),
    /// restarts tasks whose source or resolver settings changed and stops the others.
    pub(crate) async fn sync(&mut self, config: &Config, shutdown: &watch::Receiver<bool>) {
        let wanted: HashMap<(String, String), DnsSource> = config
            .services()
            .iter()
            .flat_map(|svc| {
                svc.stacks().iter().filter_map(|st| {
                    let key = (svc.name().to_string(), st.name().to_string());
                    st.dns().map(|d| (key, d.clone()))
                })
            })
            .collect();
        if *config.dns() != self.spec {
            // New resolver settings: every task restarts, keeping the sets it had found.
            self.spec = config.dns().clone();
            self.resolver = None;
            for (_, r) in self.running.drain() {
                r.task.abort();
            }
        }
        self.running.retain(|k, r| {
            let keep = wanted.get(k) == Some(&r.source) && !r.task.is_finished();
            if !keep {
                r.task.abort();
            }
            keep
        });
        self.sets.retain(|k, s| wanted.get(k) == Some(&s.source));
        if wanted.is_empty() {
            return;
        }
        let resolver = match &self.resolver {
            Some(r) => r.clone(),
            None => match lookup::resolver(&self.spec) {
                Ok(r) => self.resolver.insert(Arc::new(r)).clone(),
                Err(e) => {
                    warn!(error = %e, "cannot build the dns resolver; dns stacks have no endpoints");
                    return;
                }
            },
        };
        let mut fresh = Vec::new();
        for (key, source) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            fresh.push((key, source));
        }
        // New stacks resolve once now, all at the same time; restarted ones keep their set.
        let first = futures_util::future::join_all(fresh.iter().map(|(key, source)| {
            let known = self.sets.contains_key(key);
            let resolver = resolver.clone();
            let spec = self.spec.clone();
            async move {
                if known {
                    None
                } else {
                    Some(resolve_bounded(&resolver, source, &spec).await)
                }
            }
        }))
        .await;
        for ((key, source), answer) in fresh.into_iter().zip(first) {
            let set = self
                .sets
                .entry(key.clone())
                .or_insert_with(|| DiscoveredSet {
                    source: source.clone(),
                    endpoints: Vec::new(),
                    state: Arc::default(),
                });
            let mut progress = Progress::default();
            let delay = match &answer {
                None => Duration::ZERO,
                Some(a) => {
                    set.state.record(a);
                    if let Answer::Failed(e) = a {
                        warn!(service = %key.0, stack = %key.1, error = %e, "dns lookup failed");
                    }
                    let (publish, next) = decide(a, &set.endpoints, &mut progress, &self.spec);
                    if let Some(eps) = publish {
                        set.endpoints = eps;
                    }
                    next
                }
            };
            let span = info_span!("dns-discovery", service = %key.0, stack = %key.1);
            let task = Task {
                key: key.clone(),
                source: source.clone(),
                resolver: resolver.clone(),
                spec: self.spec.clone(),
                state: set.state.clone(),
                updates: self.updates.clone(),
            };
            let handle = tokio::spawn(
                task.run(set.endpoints.clone(), progress, delay, shutdown.clone())
                    .instrument(span),
            );
            self.running.insert(
                key,
                Running {
                    source,
                    task: handle,
                },
            );
        }
    }

    /// Stops every task and re-raises a task's panic.
    pub(crate) async fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
            if let Err(e) = r.task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn spec() -> DnsSpec {
        DnsSpec {
            min_refresh: Duration::from_secs(1),
            max_refresh: Duration::from_secs(60),
            ..DnsSpec::default()
        }
    }

    fn set(ports: &[u16]) -> Vec<Found> {
        ports
            .iter()
            .map(|p| Found {
                addr: SocketAddr::from(([127, 0, 0, 1], *p)),
                weight: 1,
            })
            .collect()
    }

    #[test]
    fn ttl_is_bounded_by_the_refresh_settings() {
        let mut p = Progress::default();
        let (publish, next) = decide(&Answer::Found(set(&[1]), 0), &[], &mut p, &spec());
        assert_eq!(publish, Some(set(&[1])));
        assert_eq!(next, Duration::from_secs(1));
        let (_, next) = decide(&Answer::Found(set(&[1]), 3600), &set(&[1]), &mut p, &spec());
        assert_eq!(next, Duration::from_secs(60));
        let (publish, next) = decide(&Answer::Found(set(&[1]), 7), &set(&[1]), &mut p, &spec());
        assert_eq!((publish, next), (None, Duration::from_secs(7)));
    }

    #[test]
    fn empty_answer_counts_only_when_it_repeats() {
        let mut p = Progress::default();
        let last = set(&[1, 2]);
        assert_eq!(decide(&Answer::Empty, &last, &mut p, &spec()).0, None);
        assert_eq!(
            decide(&Answer::Empty, &last, &mut p, &spec()).0,
            Some(Vec::new())
        );
        // An answer with records in between starts the count again.
        let mut p = Progress::default();
        decide(&Answer::Empty, &last, &mut p, &spec());
        decide(&Answer::Found(last.clone(), 5), &last, &mut p, &spec());
        assert_eq!(decide(&Answer::Empty, &last, &mut p, &spec()).0, None);
    }

    #[test]
    fn failures_keep_the_set_and_back_off() {
        let mut p = Progress::default();
        let last = set(&[1]);
        let failed = Answer::Failed("servfail".into());
        let delays: Vec<Duration> = (0..8)
            .map(|_| {
                let (publish, next) = decide(&failed, &last, &mut p, &spec());
                assert_eq!(publish, None);
                next
            })
            .collect();
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
