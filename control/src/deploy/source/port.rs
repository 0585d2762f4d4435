//! Ports for the endpoints a source starts: process replicas' ports and containers' published
//! ports.
//!
//! They are chosen below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which
//! is where the local ends of outgoing connections come from. A replica stopped and started
//! again on its port must find it free: a rollback restores exactly the stacks it replaced,
//! endpoints and all. A port inside the ephemeral range may meanwhile have become the local end
//! of any outgoing connection on the machine (the proxy's own to other endpoints, its health
//! checks), and the restart would then fail with "address already in use". Below the range,
//! only a program that binds that very port can take it.

use std::io;
use std::net::TcpListener;

/// How far below the ephemeral range ports are chosen.
const SPAN: u16 = 10_000;
/// Random ports tried there before the kernel is asked for one.
const TRIES: usize = 64;
/// The lowest port chosen (the ones below are for well-known services).
const FLOOR: u16 = 10_000;

/// A port free on 127.0.0.1 now, below the ephemeral range when there is room there.
pub(crate) fn free_port() -> io::Result<u16> {
    let (start, end) = band(ephemeral_start());
    for _ in 0..if start < end { TRIES } else { 0 } {
        let port = rand::random_range(start..end);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // None free there (or no room): one the kernel picks.
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The ports chosen from, `start..end`, for an ephemeral range starting at `ephemeral`.
fn band(ephemeral: u16) -> (u16, u16) {
    (ephemeral.saturating_sub(SPAN).max(FLOOR), ephemeral)
}

/// Where the kernel's ephemeral range starts (Linux's default when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_below_the_ephemeral_range_and_are_free() {
        let start = ephemeral_start();
        let (lo, hi) = band(start);
        assert!(lo < hi, "room below {start} on this machine");
        for _ in 0..20 {
            let port = free_port().expect("a port");
            assert!((lo..hi).contains(&port), "{port} not in {lo}..{hi}");
            TcpListener::bind(("127.0.0.1", port)).expect("still free");
        }
    }

    #[test]
    fn the_band_keeps_clear_of_well_known_ports_and_of_the_range() {
        assert_eq!(band(32768), (22768, 32768));
        assert_eq!(band(15000), (10000, 15000));
        // A range starting low leaves no room: the kernel's choice is taken.
        assert_eq!(band(8000), (10000, 8000));
        assert_eq!(band(0), (10000, 0));
    }
}
