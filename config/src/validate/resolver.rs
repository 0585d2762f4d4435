//! The `[dns]` table: the resolver of DNS-discovered endpoints.

use super::{duration, duration_at_most};
use crate::duration::MAX_PERIOD;
use crate::error::{FieldPath, Problems};
use crate::raw;
use crate::settings::DnsSpec;
use std::net::{IpAddr, SocketAddr};

/// Validates `[dns]`; absent fields take [`DnsSpec::default`].
pub(super) fn resolver(r: Option<&raw::DnsResolver>, at: &FieldPath, p: &mut Problems) -> DnsSpec {
    let d = DnsSpec::default();
    let Some(r) = r else { return d };
    let mut nameservers = Vec::new();
    for (i, ns) in r.nameservers.iter().enumerate() {
        let parsed = ns
            .parse::<SocketAddr>()
            .ok()
            .or_else(|| ns.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Some(a) if a.port() != 0 => nameservers.push(a),
            _ => p.push(
                &at.key("nameservers").index(i),
                format!(
                    "invalid nameserver {ns:?}: expected ip or ip:port such as \"127.0.0.1:5353\""
                ),
            ),
        }
    }
    let min_refresh = duration_at_most(
        r.min_refresh.as_ref(),
        &at.key("min_refresh"),
        d.min_refresh,
        MAX_PERIOD,
        p,
    );
    let max_refresh = duration_at_most(
        r.max_refresh.as_ref(),
        &at.key("max_refresh"),
        d.max_refresh,
        MAX_PERIOD,
        p,
    );
    let timeout = duration(r.timeout.as_ref(), &at.key("timeout"), d.timeout, p);
    if min_refresh.is_zero() {
        p.push(&at.key("min_refresh"), "expected a duration above zero");
    }
    if max_refresh < min_refresh {
        p.push(
            &at.key("max_refresh"),
            "expected a duration at least as long as min_refresh",
        );
    }
    if timeout.is_zero() {
        p.push(&at.key("timeout"), "expected a duration above zero");
    }
    DnsSpec {
        nameservers,
        min_refresh,
        max_refresh,
        timeout,
    }
}

#[cfg(test)]
mod tests {
    use crate::{DnsSpec, parse};
    use std::path::Path;
    use std::time::Duration;

    const LISTENER: &str = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:8080\"\n";

    #[test]
    fn dns_defaults_to_the_system_resolver() {
        let c = parse(LISTENER, Path::new("t.toml")).expect("valid");
        assert_eq!(*c.dns(), DnsSpec::default());
        assert!(c.dns().nameservers.is_empty());
        assert_eq!(c.dns().min_refresh, Duration::from_secs(1));
        assert_eq!(c.dns().max_refresh, Duration::from_secs(300));
    }

    #[test]
    fn explicit_nameservers_and_refresh_bounds_are_read() {
        let text = format!(
            "{LISTENER}[dns]\nnameservers = [\"127.0.0.1:5353\", \"::1\"]\nmin_refresh = \"100ms\"\nmax_refresh = \"10s\"\ntimeout = \"500ms\"\n"
        );
        let c = parse(&text, Path::new("t.toml")).expect("valid");
        let d = c.dns();
        assert_eq!(
            d.nameservers,
            vec![
                "127.0.0.1:5353".parse().expect("addr"),
                "[::1]:53".parse().expect("addr")
            ]
        );
        assert_eq!(d.min_refresh, Duration::from_millis(100));
        assert_eq!(d.max_refresh, Duration::from_secs(10));
        assert_eq!(d.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_nameserver_and_inverted_bounds_are_reported_with_lines() {
        let text = format!(
            "{LISTENER}[dns]\nnameservers = [\"resolver.local\"]\nmin_refresh = \"10s\"\nmax_refresh = \"1s\"\n"
        );
        let e = parse(&text, Path::new("t.toml")).expect_err("invalid");
        let got: Vec<(String, Option<usize>)> = e
            .problems
            .iter()
            .map(|p| (p.field.to_string(), p.location.map(|l| l.line)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("dns.nameservers[0]".to_string(), Some(5)),
                ("dns.max_refresh".to_string(), Some(7)),
            ]
        );
    }
}
