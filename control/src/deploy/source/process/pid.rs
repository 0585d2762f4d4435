//! Processes by PID: liveness checked against the kernel's start time (so a reused PID is
//! never taken for the replica that had it), signalling a replica (its whole process group
//! when it leads one, as replicas started by Switchyard do), and stopping a process that is
//! not our child.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};
use tokio::time::{Instant, sleep};

use super::{KILL_WAIT, PROBE};

/// Stops a process that is not (or no longer) our child, by PID. True once it is gone.
pub(super) async fn terminate_pid(pid: u32, ticks: Option<u64>, drain: Duration) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return true;
    };
    if !alive(pid, ticks) {
        return true;
    }
    signal(raw, Signal::SIGTERM);
    if gone_within(pid, ticks, drain).await {
        return true;
    }
    // Checked again: the PID may have been reused while we waited.
    if alive(pid, ticks) {
        signal(raw, Signal::SIGKILL);
    }
    gone_within(pid, ticks, KILL_WAIT).await
}

/// Sends `sig` to a replica: to its process group when it leads one (so a shell wrapper's
/// children stop too), else to the process alone.
pub(super) fn signal(pid: i32, sig: Signal) {
    let target = Pid::from_raw(pid);
    // Errors mean it is gone already; the caller's liveness checks decide what follows.
    if getpgid(Some(target)).is_ok_and(|g| g == target) {
        let _ = killpg(target, sig);
    } else {
        let _ = kill(target, sig);
    }
}

async fn gone_within(pid: u32, ticks: Option<u64>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !alive(pid, ticks) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(PROBE).await;
    }
}

/// Whether `pid` runs and is the process that started at `ticks` (a zombie counts as gone).
pub(super) fn alive(pid: u32, ticks: Option<u64>) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let Some((state, start)) = parse_stat(&stat) else {
                return false;
            };
            state != 'Z' && ticks.is_none_or(|t| t == start)
        }
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        // No procfs: ask the kernel; signal 0 checks existence only.
        Err(_) => i32::try_from(pid).is_ok_and(|p| kill(Pid::from_raw(p), None).is_ok()),
    }
}

/// The start time (clock ticks since boot) of `pid`, where procfs tells it.
pub(super) fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, t)| t)
}

/// State and start time from `/proc/PID/stat` (fields 3 and 22; the command name in field 2
/// may hold spaces and parentheses, so parsing starts after its last `)`).
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_skips_the_command_name() {
        let stat = "42 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 777)));
    }

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id();
        let ticks = start_ticks(me);
        assert!(alive(me, ticks));
        if let Some(t) = ticks {
            assert!(!alive(me, Some(t + 1)));
        }
    }
}
