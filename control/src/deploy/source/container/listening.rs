//! Whether a replica's process listens on its port, read from the container's own network
//! namespace (`/proc/PID/net/tcp` and `tcp6`). The probe through the published port cannot
//! tell a listening replica from the Engine's port proxy when that proxy is slow to close a
//! connection it could not forward; the kernel's socket table can. Used only when the Engine
//! runs on this machine (a `unix://` socket) and the PID it reports is the container's here
//! (its cgroup names the container), else the caller probes the published port.

/// `Some(true)` when a socket of the container listens on TCP `port`, `Some(false)` when its
/// tables were read and none does, `None` when they cannot be read for this container.
pub(super) fn listening(pid: i64, container_id: &str, port: u16) -> Option<bool> {
    if pid <= 0 || container_id.is_empty() {
        return None;
    }
    // A PID from another PID namespace (Switchyard itself in a container) is another process.
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    if !cgroup.contains(container_id) {
        return None;
    }
    let mut read = false;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        read = true;
        if table_listens(&text, port) {
            return Some(true);
        }
    }
    read.then_some(false)
}

/// Whether a `/proc/net/tcp`-format table has a socket in state LISTEN (`0A`) on `port`.
fn table_listens(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        // "sl", then the local address, the remote address and the state.
        let local = fields.nth(1);
        let state = fields.nth(1);
        match (local, state) {
            (Some(local), Some("0A")) => {
                local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_of_this_process_is_found_in_its_table() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let table = std::fs::read_to_string("/proc/self/net/tcp").expect("/proc/self/net/tcp");
        assert!(table_listens(&table, port));
        drop(listener);
        let table = std::fs::read_to_string("/proc/self/net/tcp").expect("/proc/self/net/tcp");
        assert!(!table_listens(&table, port), "closed: no longer listed");
    }

    #[test]
    fn only_the_listen_state_counts() {
        let table = "  sl  local_address rem_address   st\n\
                     0: 0100007F:270F 0100007F:D431 01 0\n\
                     1: 00000000:1F90 00000000:0000 0A 0\n";
        assert!(!table_listens(table, 9999), "established, not listening");
        assert!(table_listens(table, 8080));
    }

    #[test]
    fn a_pid_whose_cgroup_does_not_name_the_container_is_not_trusted() {
        let me = i64::from(std::process::id());
        assert_eq!(listening(me, "0123456789abcdef-no-such-container", 1), None);
        assert_eq!(listening(0, "x", 1), None);
    }
}
