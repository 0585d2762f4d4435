//! The systemd readiness protocol (`sd_notify`): one datagram per state change to the Unix
//! socket named by `NOTIFY_SOCKET`, for a unit with `Type=notify`.
//!
//! The socket is a filesystem path (`/run/systemd/notify`) or, when it starts with `@`, a name
//! in the abstract namespace (Linux only). Without `NOTIFY_SOCKET` every call is a no-op, so the
//! binary behaves the same outside systemd. A failed notification is logged and never stops the
//! proxy: systemd times the start-up out on its own if `READY=1` never arrives.
//!
//! Written on std's `UnixDatagram` so the protocol needs no extra crate and no `unsafe`.

use std::ffi::{OsStr, OsString};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use tracing::warn;

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// The service finished starting: every listener is bound and serving.
pub const READY: &str = "READY=1";
/// The service is reloading its configuration (`SIGHUP`); `READY=1` follows when done.
pub const RELOADING: &str = "RELOADING=1";
/// The service is shutting down.
pub const STOPPING: &str = "STOPPING=1";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is empty or not a usable socket name.
    #[error("invalid {NOTIFY_SOCKET} {0:?}")]
    Address(OsString, #[source] std::io::Error),
    /// The datagram could not be sent.
    #[error("cannot send {state:?} to {socket:?}")]
    Send {
        /// The state line.
        state: String,
        /// The socket name as given.
        socket: OsString,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Where notifications go: the address named by `NOTIFY_SOCKET`.
#[derive(Debug)]
pub struct Notifier {
    name: OsString,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, or `None` when the variable is not set.
    pub fn from_env() -> Result<Option<Self>, NotifyError> {
        std::env::var_os(NOTIFY_SOCKET)
            .map(|name| Self::from_name(&name))
            .transpose()
    }

    /// A notifier for a socket name as systemd writes it: a path, or `@name` for the abstract
    /// namespace.
    pub fn from_name(name: &OsStr) -> Result<Self, NotifyError> {
        let bad = |e| NotifyError::Address(name.to_owned(), e);
        let bytes = name.as_encoded_bytes();
        let addr = match bytes.split_first() {
            None => {
                return Err(bad(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "empty socket name",
                )));
            }
            Some((b'@', abstract_name)) => abstract_addr(abstract_name).map_err(bad)?,
            Some(_) => SocketAddr::from_pathname(PathBuf::from(name)).map_err(bad)?,
        };
        Ok(Self {
            name: name.to_owned(),
            addr,
        })
    }

    /// Sends one state line (`READY=1`, `STOPPING=1`, ...) as one datagram.
    pub fn send(&self, state: &str) -> Result<(), NotifyError> {
        let failed = |source| NotifyError::Send {
            state: state.to_owned(),
            socket: self.name.clone(),
            source,
        };
        let socket = UnixDatagram::unbound().map_err(failed)?;
        socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map_err(failed)?;
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

/// Sends `state` to `NOTIFY_SOCKET` when it is set; a failure is logged, never returned,
/// because readiness reporting must not stop a proxy that is serving.
pub fn notify(state: &str) {
    match Notifier::from_env() {
        Ok(None) => {}
        Ok(Some(n)) => {
            if let Err(e) = n.send(state) {
                warn!(error = %e, cause = ?std::error::Error::source(&e), "systemd notification failed");
            }
        }
        Err(e) => {
            warn!(error = %e, cause = ?std::error::Error::source(&e), "systemd notification failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_socket_receives_the_state_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let rx = UnixDatagram::bind(&path).expect("bind");
        Notifier::from_name(path.as_os_str())
            .expect("path name")
            .send(READY)
            .expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_socket_receives_the_state_line() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("switchyard-notify-unit-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let rx = UnixDatagram::bind_addr(&addr).expect("bind");
        Notifier::from_name(OsStr::new(&format!("@{name}")))
            .expect("abstract name")
            .send(STOPPING)
            .expect("send");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn empty_name_is_refused() {
        assert!(matches!(
            Notifier::from_name(OsStr::new("")),
            Err(NotifyError::Address(..))
        ));
    }
}
