//! Following one deployment to its end: the code path `deploy --wait` and `deployments watch`
//! share, so both show the same progress and exit with the same codes.
//!
//! The progress line goes to stderr (redrawn in place on a terminal, a line per change in a
//! log); each analysis verdict and gate gets a line of its own as it happens. The outcome goes
//! to stdout: on success the time taken; otherwise the reason, the weights the service is left
//! with, the failing analysis figures and the log. Ctrl-C stops following only: the deployment
//! keeps running and the command that re-attaches is printed.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use super::client::Client;
use super::render::{
    items, live_weights, log_text, state_text, text, verdict_text, weights_text, window_figures,
};
use super::{
    CliError, Connection, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_ROLLED_BACK, EXIT_SUCCEEDED,
};

/// Failing analysis windows printed after a rollback, at most.
const FAILING_WINDOWS: usize = 3;

/// Follows deployment `id` of `service` until it ends (or Ctrl-C); the exit code says how it
/// ended. `clock` is when the follower started counting (before the deployment was requested,
/// for `deploy --wait`).
pub(super) async fn follow(
    client: &Client,
    conn: &Connection,
    service: &str,
    id: u64,
    clock: Instant,
) -> Result<u8, CliError> {
    // Registered before anything is followed, so a Ctrl-C from here on never kills the
    // process without the re-attach hint.
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| CliError::Usage(format!("cannot watch for ctrl-c: {e}")))?;
    let path = format!("/v1/services/{service}/deployments/{id}");
    let tty = std::io::stderr().is_terminal();
    let mut events = client.events(&format!("{path}/events")).await?;
    let mut shown = Progress::new(tty, clock);
    let mut notes = Notes::default();
    let mut last = Value::Null;
    // A terminal gets its line redrawn every second; a log gets a line when something changed,
    // and while nothing does (a pause, a manual step) one every 30 s, so time keeps counting.
    let period = Duration::from_secs(if tty { 1 } else { 30 });
    let mut tick = tokio::time::interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Cancel-safe: a frame is only taken from the body once it is complete.
            next = events.next() => {
                let Some((name, data)) = next? else { break };
                if name == "log" {
                    continue;
                }
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                for line in notes.update(&value) {
                    shown.note(&line);
                }
                shown.show(state_text(&value, service), false);
                last = value;
            }
            _ = tick.tick() => shown.show(shown.state.clone(), true),
            _ = interrupt.recv() => {
                shown.finish();
                eprintln!(
                    "interrupted: deployment {id} of {service} keeps running ({})",
                    text(&last["label"], "state unknown")
                );
                eprintln!(
                    "re-attach with: switchyard deployments watch {id} --service {service}{}",
                    conn.flags()
                );
                return Ok(EXIT_INTERRUPTED);
            }
        }
    }
    // The transition events carry no log; the full record does.
    let rec = client.json("GET", &path, None).await.unwrap_or(last);
    let phase = text(&rec["phase"], "");
    // The record keeps the weights the deployment last set; after a rollback the service
    // has the previous ones back, and those are what the last line must show.
    let live = client
        .json("GET", &format!("/v1/services/{service}"), None)
        .await
        .map(|svc| live_weights(&svc))
        .unwrap_or_else(|_| weights_text(&rec["weights"]));
    shown.show(format!("{phase}  weights: {live}"), false);
    shown.finish();
    let code = match phase {
        "succeeded" => EXIT_SUCCEEDED,
        "rolled_back" => EXIT_ROLLED_BACK,
        "failed" => EXIT_FAILED,
        _ => {
            return Err(CliError::Connect(format!(
                "the event stream ended with the deployment in {phase:?}"
            )));
        }
    };
    if code == EXIT_SUCCEEDED {
        println!(
            "deployment {id} succeeded in {:.1}s",
            clock.elapsed().as_secs_f64()
        );
    } else {
        print_failure(id, &rec, &live);
    }
    Ok(code)
}

/// Why the deployment did not succeed: the reason, the weights now, what was left, the failing
/// analysis figures when analysis rolled it back, and the log.
fn print_failure(id: u64, rec: &Value, live: &str) {
    let reason = text(&rec["reason"], "");
    println!("deployment {id} {}: {reason}", text(&rec["phase"], "?"));
    println!("weights now: {live}");
    if let Some(left) = rec["left"].as_str() {
        println!("left: {left}");
    }
    if reason.starts_with("analysis ") {
        let failing: Vec<&Value> = items(&rec["analysis"])
            .iter()
            .filter(|w| w["verdict"] != "pass")
            .collect();
        let from = failing.len().saturating_sub(FAILING_WINDOWS);
        println!("failing analysis windows:");
        for w in &failing[from..] {
            println!("  {}", verdict_text(w));
            for line in window_figures(w) {
                println!("    {line}");
            }
        }
    }
    println!("log:");
    for l in items(&rec["log"]) {
        println!("  {}", log_text(l));
    }
}

/// What the follower has announced: the latest analysis window and the gate waited at.
#[derive(Default)]
struct Notes {
    /// `(at, step)` of the latest window announced.
    window: Option<(String, String)>,
    /// `before` of the gate being waited at.
    gate: Option<String>,
}

impl Notes {
    /// The lines `view` calls for: each analysis window judged since the last view (on the
    /// first view, only the latest), and a gate reached or left.
    fn update(&mut self, view: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let windows = items(&view["analysis"]);
        let key = |w: &Value| {
            (
                text(&w["at"], "").to_owned(),
                text(&w["step"], "").to_owned(),
            )
        };
        let new = match &self.window {
            Some(seen) => match windows.iter().rposition(|w| key(w) == *seen) {
                Some(i) => &windows[i + 1..],
                None => &windows[windows.len().saturating_sub(1)..],
            },
            None => &windows[windows.len().saturating_sub(1)..],
        };
        for w in new {
            out.push(verdict_text(w));
        }
        if let Some(w) = windows.last() {
            self.window = Some(key(w));
        }
        let gate = view["gate"]["before"].as_str().map(str::to_owned);
        if gate != self.gate {
            if let Some(old) = &self.gate {
                let phase = text(&view["phase"], "");
                if matches!(phase, "rolling_back" | "rolled_back" | "failed") {
                    out.push(format!(
                        "gate {old}: not approved: {}",
                        text(&view["reason"], "")
                    ));
                } else {
                    out.push(format!("gate {old}: passed"));
                }
            }
            if let Some(g) = view["gate"].as_object() {
                out.push(format!(
                    "gate {}: waiting until {} answers 200 (up to {})",
                    text(&g["before"], "?"),
                    text(&g["url"], "?"),
                    text(&g["timeout"], "?")
                ));
            }
            self.gate = gate;
        }
        out
    }
}

/// The progress line on stderr: redrawn in place on a terminal, one line per change in a log.
struct Progress {
    tty: bool,
    clock: Instant,
    state: String,
    printed: bool,
}

impl Progress {
    fn new(tty: bool, clock: Instant) -> Self {
        Self {
            tty,
            clock,
            state: String::new(),
            printed: false,
        }
    }

    fn stamp(&self) -> String {
        format!("[{:6.1}s]", self.clock.elapsed().as_secs_f64())
    }

    /// Shows `state` if it changed, or again with the time counted on when `again`.
    fn show(&mut self, state: String, again: bool) {
        if state.is_empty() || (state == self.state && !again) {
            return;
        }
        let line = format!("{} {state}", self.stamp());
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        // Best effort: progress output only.
        let _ = std::io::stderr().flush();
        self.state = state;
        self.printed = true;
    }

    /// A line of its own (a verdict, a gate), above the progress line on a terminal.
    fn note(&mut self, line: &str) {
        if self.tty && self.printed {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{} {line}", self.stamp());
        if self.tty && self.printed {
            let state = std::mem::take(&mut self.state);
            self.show(state, true);
        }
    }

    /// Ends the line on a terminal.
    fn finish(&self) {
        if self.tty && self.printed {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn window(at: &str, verdict: &str) -> Value {
        json!({"at": at, "step": "1/2", "verdict": verdict, "detail": "d"})
    }

    #[test]
    fn each_window_and_gate_is_announced_once() {
        let mut n = Notes::default();
        assert!(n.update(&json!({"analysis": []})).is_empty());
        let v = json!({"analysis": [window("t1", "inconclusive")],
            "gate": {"before": "step:2", "url": "http://h/", "timeout": "5m"}});
        assert_eq!(
            n.update(&v),
            [
                "analysis 1/2: inconclusive: d",
                "gate step:2: waiting until http://h/ answers 200 (up to 5m)"
            ]
        );
        assert!(n.update(&v).is_empty(), "nothing new");
        let v = json!({"phase": "shifting",
            "analysis": [window("t1", "inconclusive"), window("t2", "pass"), window("t3", "fail")]});
        assert_eq!(
            n.update(&v),
            [
                "analysis 1/2: pass: d",
                "analysis 1/2: fail: d",
                "gate step:2: passed"
            ]
        );
    }

    #[test]
    fn a_reattach_announces_only_the_latest_window() {
        let mut n = Notes::default();
        let v = json!({"analysis": [window("t1", "pass"), window("t2", "fail")]});
        assert_eq!(n.update(&v), ["analysis 1/2: fail: d"]);
    }
}
