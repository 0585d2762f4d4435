//! The validated model: values that exist only if they passed validation.
//!
//! Constrained values are newtypes ([`Name`], [`Weight`], [`Endpoint`], [`HostPattern`]) and
//! composite types have private fields, so an invalid model cannot be built. Types here are what
//! the proxy and the control plane both speak.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// A name of a listener, service, stack or token: `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(String);

impl Name {
    /// Validates a name.
    pub fn new(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let ok_first = b
            .first()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if !ok_first || !ok_rest || b.len() > 63 {
            return Err(format!(
                "invalid name {s:?}: expected 1 to 63 characters of [a-z0-9-], starting with a letter or digit"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Name {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A stack's share of its service's traffic, 0..=10000. Weights are relative to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize)]
pub struct Weight(u32);

impl Weight {
    /// The largest weight accepted.
    pub const MAX: u32 = 10_000;

    /// Validates a weight.
    pub fn new(w: i64) -> Result<Self, String> {
        if (0..=i64::from(Self::MAX)).contains(&w) {
            Ok(Self(w as u32))
        } else {
            Err(format!(
                "weight {w} out of range: expected an integer from 0 to {}",
                Self::MAX
            ))
        }
    }

    /// The weight as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// How the proxy talks to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

/// An upstream endpoint: `host:port` or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port`, `http://host:port` or `https://host:port`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else {
            (Scheme::Http, s)
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let bad = || format!("invalid endpoint {s:?}: expected host:port or https://host:port");
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once("]:").ok_or_else(bad)?;
            h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (h, p)
        } else {
            rest.rsplit_once(':').ok_or_else(bad)?
        };
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'_'));
        if !host_ok || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Builds an endpoint from a resolved socket address.
    pub fn from_socket_addr(scheme: Scheme, addr: SocketAddr) -> Self {
        Self {
            scheme,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Host name or IP literal (without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address when the host is an IP literal.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == Scheme::Https {
            f.write_str("https://")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A host pattern: exact (`auth.example.test`) or wildcard (`*.example.test`), lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Matches this host only.
    Exact(String),
    /// Matches any host ending in this suffix (stored with its leading dot).
    Wildcard(String),
}

impl HostPattern {
    /// Validates a pattern.
    pub fn parse(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let bad = || format!("invalid host {s:?}: expected a host name or *.suffix");
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let ok = !name.is_empty()
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
            });
        if !ok {
            return Err(bad());
        }
        Ok(if wild {
            Self::Wildcard(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(h) => f.write_str(h),
            Self::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// How an endpoint is chosen inside a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoadBalancing {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// Power of two random choices by in-flight requests.
    LeastRequest,
}

impl LoadBalancing {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
        }
    }
}

/// What keeps one user on one stack while weights are unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The value of this cookie.
    Cookie(String),
    /// The value of this header (lowercase name).
    Header(String),
}

/// Which certificate to serve to a client that sends no or an unknown SNI name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownSni {
    /// Serve the listener's first certificate.
    #[default]
    ServeDefault,
    /// Refuse the handshake.
    Refuse,
}

/// A certificate chain and key on disk (paths resolved against the config file's folder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// PEM chain.
    pub cert: PathBuf,
    /// PEM key.
    pub key: PathBuf,
}

/// TLS termination on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub(crate) certs: Vec<CertPaths>,
    pub(crate) unknown_sni: UnknownSni,
}

impl ListenerTls {
    /// The certificate pairs, default first.
    pub fn certs(&self) -> &[CertPaths] {
        &self.certs
    }

    /// Unknown-SNI policy.
    pub fn unknown_sni(&self) -> UnknownSni {
        self.unknown_sni
    }
}

/// A listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub(crate) name: Name,
    pub(crate) bind: SocketAddr,
    pub(crate) tls: Option<ListenerTls>,
}

impl ListenerSpec {
    /// Listener name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// Configured bind address.
    pub fn bind(&self) -> SocketAddr {
        self.bind
    }

    /// TLS settings, if the listener terminates TLS.
    pub fn tls(&self) -> Option<&ListenerTls> {
        self.tls.as_ref()
    }
}
