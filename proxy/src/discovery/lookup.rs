//! Turning a [`DnsSource`] into endpoint addresses with hickory-resolver, off the request path.
//!
//! A/AAAA: both are asked; the answer is their union. SRV: only the records of the lowest
//! priority value are used (RFC 2782 tries them first; higher values are backups this proxy does
//! not fail over to), each target's A/AAAA records are resolved, and each address carries its
//! record's weight. The TTL of an answer is the smallest TTL of every record it used.
//!
//! An answer is classified once: addresses, *empty* (NXDOMAIN, or NOERROR without records, for
//! every name asked) or *failed* (timeouts, SERVFAIL, refused, anything else). Callers treat
//! them differently: a failure keeps the last good set, an empty answer only counts when it
//! repeats.

use hickory_resolver::ResolveError;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::Name;
use hickory_resolver::proto::xfer::Protocol;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use switchyard_config::{DnsSource, DnsSpec};

/// One discovered endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Found {
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// SRV weight (1 for A/AAAA answers).
    pub(crate) weight: u16,
}

/// What one resolution gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Addresses, sorted and without duplicates, and the smallest TTL in seconds.
    Found(Vec<Found>, u32),
    /// The names exist without records, or do not exist.
    Empty,
    /// The lookup failed; the message says why.
    Failed(String),
}

/// Builds the resolver: explicit nameservers (UDP, TCP on truncation), or the system's
/// `resolv.conf`. Its cache is off: every refresh asks the nameservers, at the TTL the
/// discovery task computes itself.
pub(crate) fn resolver(spec: &DnsSpec) -> Result<TokioResolver, ResolveError> {
    let mut builder = if spec.nameservers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let mut config = ResolverConfig::new();
        for ns in &spec.nameservers {
            config.add_name_server(NameServerConfig::new(*ns, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(*ns, Protocol::Tcp));
        }
        TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.timeout = spec.timeout;
    Ok(builder.build())
}

/// Whether a lookup error means "no such records" rather than a failure.
fn is_empty(e: &ResolveError) -> bool {
    e.proto().is_some_and(|p| {
        matches!(
            p.kind(),
            ProtoErrorKind::NoRecordsFound {
                response_code: ResponseCode::NoError | ResponseCode::NXDomain,
                ..
            }
        )
    })
}

/// One half (A or AAAA) of an address lookup.
enum Part {
    Ips(Vec<IpAddr>, u32),
    Empty,
    Failed(String),
}

fn failed_part(e: ResolveError) -> Part {
    if is_empty(&e) {
        Part::Empty
    } else {
        Part::Failed(e.to_string())
    }
}

fn min_ttl(records: &[hickory_resolver::proto::rr::Record]) -> u32 {
    records.iter().map(|r| r.ttl()).min().unwrap_or(0)
}

/// The A and AAAA records of `name`.
async fn addresses(r: &TokioResolver, name: Name) -> Part {
    let (v4, v6) = tokio::join!(r.ipv4_lookup(name.clone()), r.ipv6_lookup(name));
    let v4 = match v4 {
        Ok(l) => Part::Ips(
            l.iter().map(|a| IpAddr::V4(a.0)).collect(),
            min_ttl(l.as_lookup().records()),
        ),
        Err(e) => failed_part(e),
    };
    let v6 = match v6 {
        Ok(l) => Part::Ips(
            l.iter().map(|a| IpAddr::V6(a.0)).collect(),
            min_ttl(l.as_lookup().records()),
        ),
        Err(e) => failed_part(e),
    };
    match (v4, v6) {
        (Part::Failed(e), _) | (_, Part::Failed(e)) => Part::Failed(e),
        (Part::Empty, Part::Empty) => Part::Empty,
        (Part::Ips(a, t), Part::Empty) | (Part::Empty, Part::Ips(a, t)) => Part::Ips(a, t),
        (Part::Ips(mut a, t1), Part::Ips(b, t2)) => {
            a.extend(b);
            Part::Ips(a, t1.min(t2))
        }
    }
}

fn parse_name(name: &str) -> Result<Name, Answer> {
    Name::from_utf8(name).map_err(|e| Answer::Failed(format!("invalid name {name:?}: {e}")))
}

/// Sorts, merges duplicate addresses (adding their weights) and wraps the answer.
fn found(mut v: Vec<Found>, ttl: u32) -> Answer {
    if v.is_empty() {
        return Answer::Empty;
    }
    v.sort();
    let mut out: Vec<Found> = Vec::with_capacity(v.len());
    for f in v {
        match out.last_mut() {
            Some(last) if last.addr == f.addr => last.weight = last.weight.saturating_add(f.weight),
            _ => out.push(f),
        }
    }
    Answer::Found(out, ttl)
}

/// Resolves `source` once.
pub(crate) async fn resolve(r: &TokioResolver, source: &DnsSource) -> Answer {
    match source {
        DnsSource::Address { name, port } => {
            let name = match parse_name(name) {
                Ok(n) => n,
                Err(a) => return a,
            };
            match addresses(r, name).await {
                Part::Ips(ips, ttl) => found(
                    ips.into_iter()
                        .map(|ip| Found {
                            addr: SocketAddr::new(ip, *port),
                            weight: 1,
                        })
                        .collect(),
                    ttl,
                ),
                Part::Empty => Answer::Empty,
                Part::Failed(e) => Answer::Failed(e),
            }
        }
        DnsSource::Srv { name } => srv(r, name).await,
    }
}

async fn srv(r: &TokioResolver, name: &str) -> Answer {
    let name = match parse_name(name) {
        Ok(n) => n,
        Err(a) => return a,
    };
    let lookup = match r.srv_lookup(name).await {
        Ok(l) => l,
        Err(e) if is_empty(&e) => return Answer::Empty,
        Err(e) => return Answer::Failed(e.to_string()),
    };
    let mut ttl = min_ttl(lookup.as_lookup().records());
    let Some(priority) = lookup.iter().map(|s| s.priority()).min() else {
        return Answer::Empty;
    };
    // Target -> (port, weight) records; "." means "no service here" (RFC 2782).
    let mut targets: BTreeMap<Name, Vec<(u16, u16)>> = BTreeMap::new();
    for s in lookup.iter().filter(|s| s.priority() == priority) {
        if !s.target().is_root() {
            targets
                .entry(s.target().clone())
                .or_default()
                .push((s.port(), s.weight()));
        }
    }
    let lookups = targets
        .keys()
        .map(|t| addresses(r, t.clone()))
        .collect::<Vec<_>>();
    let parts = futures_util::future::join_all(lookups).await;
    let mut out = Vec::new();
    for (part, records) in parts.into_iter().zip(targets.values()) {
        match part {
            Part::Ips(ips, t) => {
                ttl = ttl.min(t);
                for ip in ips {
                    for (port, weight) in records {
                        out.push(Found {
                            addr: SocketAddr::new(ip, *port),
                            weight: *weight,
                        });
                    }
                }
            }
            Part::Empty => {}
            Part::Failed(e) => return Answer::Failed(e),
        }
    }
    found(out, ttl)
}

/// How many times each endpoint appears in its stack's endpoint list so that round-robin and
/// least-request follow SRV weights: weights divided by their greatest common divisor, scaled
/// down to at most `MAX_COPIES` entries in all (each endpoint keeps at least one). A weight of
/// zero counts as one.
pub(crate) fn copies(found: &[Found]) -> Vec<usize> {
    const MAX_COPIES: u64 = 100;
    let w: Vec<u64> = found.iter().map(|f| u64::from(f.weight.max(1))).collect();
    let g = w.iter().fold(0, |g, &x| gcd(g, x)).max(1);
    let mut c: Vec<u64> = w.iter().map(|x| x / g).collect();
    let total: u64 = c.iter().sum();
    if total > MAX_COPIES {
        for x in &mut c {
            *x = (*x * MAX_COPIES / total).max(1);
        }
    }
    c.into_iter()
        .map(|x| usize::try_from(x).unwrap_or(1))
        .collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(port: u16, weight: u16) -> Found {
        Found {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight,
        }
    }

    #[test]
    fn srv_weights_become_proportional_copies() {
        assert_eq!(copies(&[f(1, 10), f(2, 30)]), vec![1, 3]);
        assert_eq!(copies(&[f(1, 0), f(2, 0)]), vec![1, 1]);
        assert_eq!(copies(&[f(1, 1), f(2, 1000)]), vec![1, 99]);
        assert_eq!(copies(&[f(1, 7)]), vec![1]);
    }

    #[test]
    fn duplicate_addresses_merge_their_weights() {
        let a = found(vec![f(2, 5), f(1, 1), f(2, 5)], 30);
        assert_eq!(a, Answer::Found(vec![f(1, 1), f(2, 10)], 30));
        assert_eq!(found(Vec::new(), 30), Answer::Empty);
    }
}
