//! One container replica's keeper: follows its log stream into the deployment log, waits for
//! it to stop and starts it again with exponential backoff, for as long as its stack lives.
//!
//! A keeper never stops its container: ending supervision ([`Keeper::run`] returns when its
//! `end` flag turns true or its sender is dropped) leaves the container running, so a
//! Switchyard restart does not touch a live replica; retirement stops and removes containers
//! itself, after the keepers ended. A container removed behind Switchyard's back is created
//! anew when the keeper knows how (it created it); an adopted one is reported and left alone.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::ContainerCreateBody;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

use super::engine::{Engine, LogStream};
use crate::deploy::source::Reporter;
use crate::error::chain;

/// First restart delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A replica that ran this long restarts with the first delay again.
const STABLE: Duration = Duration::from_secs(10);

/// The current Unix time in seconds, for the Engine's `since`.
pub(super) fn unix_secs() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// One replica's keeper.
pub(super) struct Keeper {
    pub(super) engine: Arc<Engine>,
    /// The container's name.
    pub(super) name: String,
    /// The replica's name in the deployment log, e.g. `green-0`.
    pub(super) replica: String,
    /// How to create the container again if it is removed (`None` when adopted).
    pub(super) body: Option<ContainerCreateBody>,
    pub(super) owner: String,
    pub(super) reporter: Arc<Mutex<Reporter>>,
    pub(super) end: watch::Receiver<bool>,
}

/// Resolves once supervision must end (a dropped sender ends it too).
async fn ended(end: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: end as well.
    let _ = end.wait_for(|e| *e).await;
}

/// The next chunk of a log stream; pending forever when there is none.
async fn next_chunk(logs: &mut Option<LogStream>) -> Option<String> {
    match logs {
        Some(s) => match s.next().await {
            Some(Ok(chunk)) => Some(chunk.to_string()),
            _ => {
                *logs = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

impl Keeper {
    fn reporter(&self) -> Reporter {
        self.reporter
            .lock()
            .expect("reporter lock is never poisoned")
            .clone()
    }

    fn say(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!(replica = %self.replica, container = %self.name, "{line}");
        self.reporter().log(&self.replica, line);
    }

    fn lines(&self, chunk: &str) {
        let report = self.reporter();
        if !report.is_open() {
            return;
        }
        for line in chunk.lines().filter(|l| !l.trim().is_empty()) {
            report.log(&self.replica, line);
        }
    }

    async fn follow(&self, since: i32) -> Option<LogStream> {
        match self.engine.follow(&self.name, since).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(container = %self.name, error = %chain(&e), "cannot follow the container's log");
                None
            }
        }
    }

    /// Sleeps `d`; true when supervision must end meanwhile.
    async fn pause(&mut self, d: Duration) -> bool {
        tokio::select! {
            () = sleep(d) => false,
            () = ended(&mut self.end) => true,
        }
    }

    /// Keeps the replica running until supervision ends; its log is followed from `since`.
    pub(super) async fn run(mut self, since: i32) {
        let mut backoff = FIRST_BACKOFF;
        let mut logs = self.follow(since).await;
        loop {
            let started = Instant::now();
            let waited = loop {
                tokio::select! {
                    () = ended(&mut self.end) => return,
                    r = self.engine.wait(&self.name) => break r,
                    Some(chunk) = next_chunk(&mut logs) => self.lines(&chunk),
                }
            };
            // What the replica wrote last, before it stopped.
            while let Ok(Some(chunk)) =
                tokio::time::timeout(Duration::from_millis(50), next_chunk(&mut logs)).await
            {
                self.lines(&chunk);
            }
            let (status, gone) = match self.engine.inspect(&self.name).await {
                Ok(info) => {
                    let state = info.state.unwrap_or_default();
                    if state.running == Some(true) {
                        if let Err(e) = waited {
                            tracing::debug!(container = %self.name, error = %chain(&e), "waiting for the container failed; waiting again");
                            if self.pause(backoff).await {
                                return;
                            }
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                        continue;
                    }
                    (
                        format!("exit code {}", state.exit_code.unwrap_or(-1)),
                        false,
                    )
                }
                Err(e) if e.is_not_found() => ("container removed".to_owned(), true),
                Err(e) => {
                    self.say(format!("cannot inspect the container: {}", chain(&e)));
                    if self.pause(backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            if gone && self.body.is_none() {
                self.say("container removed outside Switchyard; not recreated (it was adopted)");
                return;
            }
            if started.elapsed() >= STABLE {
                backoff = FIRST_BACKOFF;
            }
            self.say(format!("exited ({status}); restarting in {backoff:?}"));
            if self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let since = unix_secs();
            let restarted = match (&self.body, gone) {
                (Some(body), true) => match self
                    .engine
                    .create(&self.name, &self.owner, body.clone())
                    .await
                {
                    Ok(()) => self.engine.start(&self.name).await,
                    Err(e) => Err(e),
                },
                _ => self.engine.start(&self.name).await,
            };
            match restarted {
                Ok(()) => {
                    self.say("restarted");
                    logs = self.follow(since).await;
                }
                Err(e) => self.say(format!("cannot restart: {}", chain(&e))),
            }
        }
    }
}
