//! Hot upgrade: a new Switchyard takes the running one's listening sockets without refusing a
//! connection (as HAProxy and Envoy hot restarts do).
//!
//! The running instance offers its sockets on `STATE_DIR/upgrade.sock` (mode 0600, bound only
//! while it holds the state-folder lock). `switchyard upgrade --config FILE` connects and
//! receives every listening socket (public listeners and the control listener) by
//! `SCM_RIGHTS`, loads its certificates and binds any listener the old process did not have,
//! then asks the old one to stop. The old process stops its accept loops (from then on the
//! kernel queues new connections on the shared sockets until the new process accepts them;
//! none is refused), stops its control plane as on SIGTERM (process replicas keep running),
//! saves endpoint health, releases the state-folder lock and answers `released`. The new
//! process takes the lock, loads the saved state and health and starts serving on the
//! received sockets. The old process finishes its in-flight requests and keep-alive
//! connections (see `switchyard_proxy`'s listener) and exits.
//!
//! Protocol (one connection): old → new, one line of JSON naming the sockets, with their file
//! descriptors attached; new → old `stop`; old → new `released`. A new process that goes away
//! before `stop` changes nothing. Nothing here is reachable over the network.

use crate::lock::{LockError, StateLock};
use crate::serve::{Inherited, ServeError, Started, bind_inherited, serve_until_signal};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchyard_config::Config;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span, warn};

/// The socket's name in the state folder.
const SOCKET: &str = "upgrade.sock";
/// Most sockets passed in one hand-over (the kernel's `SCM_MAX_FD`): every socket of every
/// listener (one per thread-per-core worker) and the control listener.
const MAX_FDS: usize = 253;
/// Largest header line.
const MAX_HEADER: usize = 64 * 1024;

/// Why `switchyard upgrade` could not take over.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// No running instance offers its sockets.
    #[error("no running switchyard to take over: cannot connect to {}", path.display())]
    NoInstance {
        /// The upgrade socket's path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The exchange with the running instance failed.
    #[error("hand-over with the running switchyard failed: {what}")]
    Exchange {
        /// What went wrong.
        what: String,
        /// Cause.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The state-folder lock was not released in time.
    #[error("the running switchyard did not release the state folder")]
    Lock(#[from] LockError),
    /// Starting on the received sockets failed.
    #[error("cannot start")]
    Serve(#[from] ServeError),
}

fn exchange(what: &str) -> impl FnOnce(std::io::Error) -> UpgradeError + '_ {
    move |source| UpgradeError::Exchange {
        what: what.to_owned(),
        source: Some(source),
    }
}

/// The first line the old process sends: which socket each attached descriptor is.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    pid: u32,
    /// Names of the public listeners, in the order of the first descriptors.
    public: Vec<String>,
    /// Whether the last descriptor is the control listener.
    control: bool,
}

/// Duplicates of the listening sockets, kept to be offered to a new process.
pub(crate) struct Sockets {
    pub(crate) public: Vec<(String, OwnedFd)>,
    pub(crate) control: Option<OwnedFd>,
}

/// A new process asked to take over; answer once the state folder is released.
pub(crate) struct Takeover {
    pub(crate) released: oneshot::Sender<()>,
}

/// The running instance's offer of its sockets.
pub(crate) struct Offer {
    path: PathBuf,
    requests: mpsc::Receiver<Takeover>,
    task: JoinHandle<()>,
}

impl Offer {
    /// Listens on `STATE_DIR/upgrade.sock` (the caller holds the state-folder lock, so a file
    /// left there is stale). `None` (logged) when the socket cannot be bound: the instance
    /// then serves without offering upgrades.
    pub(crate) fn spawn(dir: &Path, sockets: Sockets) -> Option<Self> {
        let path = dir.join(SOCKET);
        // Stale from a process that died; the lock says none is running.
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot offer hot upgrades");
                return None;
            }
        };
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
            warn!(path = %path.display(), error = %e, "cannot restrict the upgrade socket; not offering upgrades");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        let (tx, requests) = mpsc::channel(1);
        let task =
            tokio::spawn(offer(listener, sockets, tx).instrument(info_span!("upgrade-offer")));
        Some(Self {
            path,
            requests,
            task,
        })
    }

    /// The next take-over request.
    pub(crate) async fn next(&mut self) -> Option<Takeover> {
        self.requests.recv().await
    }

    /// Stops offering: removes the socket file. A hand-over under way goes on: its task is
    /// returned, to be awaited once the take-over was answered (it ends after writing
    /// `released`), so the process does not exit before the new one has read it.
    pub(crate) fn close(self, handing_over: bool) -> Option<JoinHandle<()>> {
        // Removing a file another process may already have replaced is never done: this runs
        // before the lock is released.
        let _ = std::fs::remove_file(&self.path);
        if handing_over {
            Some(self.task)
        } else {
            self.task.abort();
            None
        }
    }
}

async fn offer(listener: UnixListener, sockets: Sockets, requests: mpsc::Sender<Takeover>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "upgrade socket accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match serve_one(stream, &sockets, &requests).await {
            Ok(true) => return,
            Ok(false) => info!("the new process left before taking over; still serving"),
            Err(e) => warn!(error = %e, "hand-over failed; still serving"),
        }
    }
}

/// One hand-over: sends the sockets, waits for `stop`, asks the main loop to release the
/// state folder, answers `released`. `Ok(true)` once handed over.
async fn serve_one(
    stream: UnixStream,
    sockets: &Sockets,
    requests: &mpsc::Sender<Takeover>,
) -> std::io::Result<bool> {
    let header = Header {
        pid: std::process::id(),
        public: sockets.public.iter().map(|(n, _)| n.clone()).collect(),
        control: sockets.control.is_some(),
    };
    let mut line = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let fds: Vec<BorrowedFd<'_>> = sockets
        .public
        .iter()
        .map(|(_, f)| f.as_fd())
        .chain(sockets.control.iter().map(AsFd::as_fd))
        .collect();
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(std::io::Error::other("too many sockets for one message"));
    }
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            rustix::net::sendmsg(
                &stream,
                &[IoSlice::new(&line)],
                &mut cmsg,
                SendFlags::empty(),
            )
            .map_err(std::io::Error::from)
        })
        .await?;
    let mut stream = BufReader::new(stream);
    // The descriptors went with the first byte; the rest of a long line follows plainly.
    stream.get_mut().write_all(&line[sent..]).await?;
    let mut reply = String::new();
    stream.read_line(&mut reply).await?;
    if reply.trim() != "stop" {
        return Ok(false);
    }
    let (released, done) = oneshot::channel();
    if requests.send(Takeover { released }).await.is_err() {
        return Ok(false);
    }
    if done.await.is_err() {
        return Ok(false);
    }
    stream.get_mut().write_all(b"released\n").await?;
    info!("state folder released to the new process");
    Ok(true)
}

/// Receives the header line and the attached sockets.
async fn receive(stream: &UnixStream) -> Result<(Header, Vec<OwnedFd>), UpgradeError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let got = stream
        .async_io(Interest::READABLE, || {
            rustix::net::recvmsg(
                stream,
                &mut [IoSliceMut::new(&mut buf)],
                &mut cmsg,
                RecvFlags::CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)
        })
        .await
        .map_err(exchange("cannot receive the sockets"))?;
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    if got.flags.contains(ReturnFlags::CTRUNC) {
        return Err(UpgradeError::Exchange {
            what: "more sockets than one hand-over carries".into(),
            source: None,
        });
    }
    let mut line = buf[..got.bytes].to_vec();
    while !line.ends_with(b"\n") {
        if line.len() >= MAX_HEADER {
            return Err(UpgradeError::Exchange {
                what: "the running switchyard sent no complete header".into(),
                source: None,
            });
        }
        let mut more = [0u8; 4096];
        stream
            .readable()
            .await
            .map_err(exchange("cannot read the header"))?;
        match stream.try_read(&mut more) {
            Ok(0) => {
                return Err(UpgradeError::Exchange {
                    what: "the connection closed inside the header".into(),
                    source: None,
                });
            }
            Ok(n) => line.extend_from_slice(&more[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(exchange("cannot read the header")(e)),
        }
    }
    let header: Header = serde_json::from_slice(&line).map_err(|e| UpgradeError::Exchange {
        what: format!("unreadable header: {e}"),
        source: None,
    })?;
    if fds.len() != header.public.len() + usize::from(header.control) {
        return Err(UpgradeError::Exchange {
            what: format!(
                "header names {} sockets but {} arrived",
                header.public.len() + usize::from(header.control),
                fds.len()
            ),
            source: None,
        });
    }
    Ok((header, fds))
}

/// `switchyard upgrade`: takes over the listening sockets and the state folder of the
/// instance running on `config`'s state folder, then serves until a signal like `serve`.
pub async fn take_over(
    config: Config,
    config_path: PathBuf,
    on_started: impl FnOnce(&Started),
) -> Result<(), UpgradeError> {
    let dir = config.control().state_dir.clone();
    let path = dir.join(SOCKET);
    let stream = UnixStream::connect(&path)
        .await
        .map_err(|source| UpgradeError::NoInstance {
            path: path.clone(),
            source,
        })?;
    let (header, mut fds) = receive(&stream).await?;
    info!(
        pid = header.pid,
        sockets = fds.len(),
        "received the running instance's sockets"
    );
    let control = if header.control { fds.pop() } else { None };
    let inherited = Inherited {
        public: header.public.into_iter().zip(fds).collect(),
        control,
    };
    // Certificates and any new listener first: a failure here leaves the old one serving.
    let bound = bind_inherited(&config, inherited).await?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"stop\n")
        .await
        .map_err(exchange("cannot ask it to stop"))?;
    let mut reply = String::new();
    stream
        .read_line(&mut reply)
        .await
        .map_err(exchange("no answer to stop"))?;
    if reply.trim() != "released" {
        return Err(UpgradeError::Exchange {
            what: format!("it did not release the state folder (answer {reply:?})"),
            source: None,
        });
    }
    let lock = StateLock::acquire_within(&dir, Duration::from_secs(10)).await?;
    info!(
        pid = header.pid,
        "took over; the old instance drains its connections"
    );
    serve_until_signal(config, config_path, lock, bound, on_started).await?;
    Ok(())
}
