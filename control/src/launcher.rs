//! Where the control plane starts child processes: the replicas of process stacks and the
//! check commands of deployments.
//!
//! A child starts with the scheduling priority of the thread that forks it. The binary runs
//! the control plane's threads nicer than the proxy's, so that a control write yields the CPU
//! to requests rather than preempt them. Replicas are the user's services, and checks judge
//! them: neither may inherit that. [`install`] starts one thread, at the priority of the thread
//! that calls it, that does nothing but fork; [`spawn`] forks there, in the caller's runtime
//! (so the child is reaped and awaited there as before), and waits for the fork to return.
//! Without a launcher installed (the library alone, its tests), [`spawn`] forks on the calling
//! thread.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};

/// A fork to make, with where its answer goes.
type Job = Box<dyn FnOnce() + Send>;

/// A thread that starts child processes at its own priority.
#[derive(Debug)]
pub struct Launcher {
    jobs: mpsc::Sender<Job>,
}

impl Launcher {
    /// Starts the launcher's thread (`switchyard-launch`), at the calling thread's priority.
    pub fn start() -> io::Result<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("switchyard-launch".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                // Ends when every sender is gone.
                for job in rx {
                    job();
                }
            })?;
        Ok(Self { jobs })
    }

    /// Starts `cmd` on the launcher's thread, in the calling runtime's context; on the calling
    /// thread when the launcher's thread is gone.
    pub(crate) fn spawn(&self, mut cmd: Command) -> io::Result<Child> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _on = runtime.as_ref().map(tokio::runtime::Handle::enter);
            // The caller waits for the answer; only a caller that panicked meanwhile is gone.
            let _ = tx.send(cmd.spawn());
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The thread is gone; the job runs here, and its answer is waiting.
            job();
        }
        rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the launcher's thread stopped during a fork",
            ))
        })
    }
}

static LAUNCHER: OnceLock<Launcher> = OnceLock::new();

/// Makes [`spawn`] fork on a launcher thread started now, at the calling thread's priority.
/// Only the first call starts one; later calls keep it.
pub fn install() -> io::Result<()> {
    if LAUNCHER.get().is_none() {
        let launcher = Launcher::start()?;
        // A concurrent first call may have won; its launcher serves.
        let _ = LAUNCHER.set(launcher);
    }
    Ok(())
}

/// Starts `cmd`: on the installed launcher's thread, else on the calling thread.
pub(crate) fn spawn(cmd: Command) -> io::Result<Child> {
    match LAUNCHER.get() {
        Some(launcher) => launcher.spawn(cmd),
        None => {
            let mut cmd = cmd;
            cmd.spawn()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("nice")
    }

    /// The nice value a child started by `launcher` (or in place) reports for itself.
    async fn child_nice(launcher: Option<&Launcher>) -> i32 {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "nice"]).stdout(Stdio::piped());
        let child = match launcher {
            Some(l) => l.spawn(cmd),
            None => cmd.spawn(),
        }
        .expect("spawn sh");
        let out = child.wait_with_output().await.expect("wait");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a nice value")
    }

    #[test]
    fn a_child_started_from_a_nicer_thread_gets_the_launchers_priority() {
        let launcher = Launcher::start().expect("launcher");
        let mine = nice();
        // The kernel caps a nice value at 19.
        let nicer = (mine + 5).min(19);
        // A thread that made itself nicer, as the control plane's are.
        let (from_launcher, in_place) = std::thread::spawn(move || {
            rustix::process::setpriority_process(Some(rustix::thread::gettid()), nicer)
                .expect("lower this thread's priority");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async { (child_nice(Some(&launcher)).await, child_nice(None).await) })
        })
        .join()
        .expect("thread");
        assert_eq!(from_launcher, mine, "the launcher's priority");
        assert_eq!(in_place, nicer, "forked in place: the thread's");
    }
}
