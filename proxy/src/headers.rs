//! Header rewriting between client and endpoint: hop-by-hop removal (RFC 9110 §7.6.1) and the
//! `X-Forwarded-*` headers, which are set by the proxy rather than trusted
//! from clients.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `x-forwarded-for`
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-forwarded-host`
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-request-id`
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The hop-by-hop headers by definition (RFC 9110 §7.6.1) or by convention.
static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    // The h2c upgrade's settings (RFC 7540 §3.2.1): connection-specific by definition, and
    // the proxy never tunnels h2c.
    HeaderName::from_static("http2-settings"),
];

/// Whether `n` is one of [`HOP_BY_HOP`].
#[inline]
fn is_hop_by_hop(n: &HeaderName) -> bool {
    HOP_BY_HOP.contains(n)
}

/// Removes hop-by-hop headers, including those the `Connection` header names. With `upgrade`,
/// keeps `Connection: upgrade` and `Upgrade` so the endpoint sees the upgrade request.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: bool) {
    // One pass over the names (no hashing) finds the hop-by-hop ones: most messages carry
    // none, and then nothing is removed or looked up. They are distinct and each one of
    // `is_hop_by_hop`'s, so a fixed array holds them (no allocation for the `Connection:
    // close` of a connection per request).
    let mut present: [Option<HeaderName>; HOP_BY_HOP.len()] = Default::default();
    let mut found = 0;
    let mut connection = false;
    for n in h.keys() {
        if is_hop_by_hop(n) && found < present.len() {
            connection |= n == header::CONNECTION;
            present[found] = Some(n.clone());
            found += 1;
        }
    }
    if found == 0 {
        return;
    }
    if connection {
        // The names `Connection` lists, read as bytes (`close`, `keep-alive` and `upgrade`
        // are options, not names). Not allocated unless one is listed.
        let mut listed: Vec<HeaderName> = Vec::new();
        for v in h.get_all(header::CONNECTION) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.is_empty()
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"upgrade")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t) {
                    listed.push(n);
                }
            }
        }
        for n in listed {
            h.remove(n);
        }
    }
    for n in present.into_iter().flatten() {
        if !(upgrade && n == header::UPGRADE) {
            h.remove(n);
        }
    }
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether an HTTP/1.1 request asks for a protocol upgrade (`Connection: upgrade` + `Upgrade`).
pub(crate) fn wants_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
            v.to_str().is_ok_and(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
        })
}

/// A request whose `Host` is repeated or disagrees with its request-target's authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AmbiguousHost;

/// The host a request addresses, from what a [`Scan`] found (the first `Host` value and whether
/// another followed): its one `Host` field, else the request-target's authority
/// (absolute form on HTTP/1, `:authority` on HTTP/2). More than one `Host`, or a `Host` that
/// differs from the authority, is refused (RFC 9112 §3.2, RFC 9113 §8.3.1): the proxy and the
/// endpoint could each pick a different one.
pub(crate) fn host_of<'a>(
    host: Option<&'a [u8]>,
    repeated: bool,
    uri: &'a http::Uri,
) -> Result<Option<&'a [u8]>, AmbiguousHost> {
    if repeated {
        return Err(AmbiguousHost);
    }
    let authority = uri.authority().map(|a| a.as_str().as_bytes());
    let default_port = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
        443
    } else {
        80
    };
    match (host, authority) {
        (Some(h), Some(a)) if !same_authority(h, a, default_port) => Err(AmbiguousHost),
        (Some(h), _) => Ok(Some(h)),
        (None, a) => Ok(a),
    }
}

/// Whether two `host[:port]` values name the same origin: hosts equal ignoring case, ports
/// equal once an absent port is read as the scheme's default (`a` and `a:80` agree on http).
fn same_authority(x: &[u8], y: &[u8], default_port: u16) -> bool {
    if x.eq_ignore_ascii_case(y) {
        return true;
    }
    let (xh, xp) = split_port(x);
    let (yh, yp) = split_port(y);
    xh.eq_ignore_ascii_case(yh)
        && matches!((xp.or(Some(default_port)), yp.or(Some(default_port))), (Some(a), Some(b)) if a == b)
}

/// `host[:port]` into the host and the port; a port that is not a number stays part of the
/// host, so such a value can only ever equal itself. An IPv6 literal keeps its brackets.
fn split_port(v: &[u8]) -> (&[u8], Option<u16>) {
    let Some(colon) = v.iter().rposition(|&b| b == b':') else {
        return (v, None);
    };
    if v[..colon].contains(&b':') && !v[..colon].ends_with(b"]") {
        return (v, None); // a bare IPv6 address: no port
    }
    match std::str::from_utf8(&v[colon + 1..])
        .ok()
        .and_then(|p| p.parse().ok())
    {
        Some(port) => (&v[..colon], Some(port)),
        None => (v, None),
    }
}

static PROTO_HTTP: HeaderValue = HeaderValue::from_static("http");
static PROTO_HTTPS: HeaderValue = HeaderValue::from_static("https");

/// One field the proxy sets on a request to an endpoint: replaces any the client sent of that
/// name; `None` removes it.
pub(crate) type SetField<'a> = (&'a HeaderName, Option<&'a HeaderValue>);

/// The fields the proxy sets on a request to an endpoint: `Host` (kept or removed),
/// `X-Forwarded-For/-Proto/-Host` and `X-Request-Id`. Client-sent values are replaced, not
/// appended to: clients are untrusted, so the endpoint only ever sees what this proxy observed.
///
/// On the live path they are not written into the request's map: the encoder writes them in
/// place of the client's (`crate::upstream::encode`), which spares rebuilding the map for every
/// request. A shadow copy, whose head is a clone, gets them with [`Forwarding::apply`].
#[derive(Debug)]
pub(crate) struct Forwarding<'a> {
    /// The request's host (its `Host`, else its authority).
    pub(crate) host: Option<HeaderValue>,
    /// Whether `Host` goes to the endpoint (`preserve_host`); otherwise it is removed.
    pub(crate) keep_host: bool,
    pub(crate) peer_ip: &'a HeaderValue,
    pub(crate) tls: bool,
    pub(crate) request_id: &'a HeaderValue,
}

impl Forwarding<'_> {
    /// The fields, for the encoder.
    pub(crate) fn fields(&self) -> [SetField<'_>; 5] {
        [
            (&header::HOST, self.host.as_ref().filter(|_| self.keep_host)),
            (&X_FORWARDED_FOR, Some(self.peer_ip)),
            (
                &X_FORWARDED_PROTO,
                Some(if self.tls { &PROTO_HTTPS } else { &PROTO_HTTP }),
            ),
            (&X_FORWARDED_HOST, self.host.as_ref()),
            (&X_REQUEST_ID, Some(self.request_id)),
        ]
    }

    /// Sets the fields in `h`.
    pub(crate) fn apply(&self, h: &mut HeaderMap) {
        for (name, value) in self.fields() {
            match value {
                Some(v) => h.insert(name.clone(), v.clone()),
                None => h.remove(name),
            };
        }
    }
}

/// A peer's address as an `X-Forwarded-For` value, once per connection: the thread's last one
/// when the address is the same, else written anew ([`format_peer`]). IPv4 (nearly every
/// connection) is written by hand into a stack buffer: `to_string` goes through the formatting
/// machinery and a `String` (about 500 instructions, noticeable when each request is a new
/// connection).
pub(crate) fn peer_value(ip: std::net::IpAddr) -> HeaderValue {
    // The last address this thread wrote: clients behind one address (a load balancer, a
    // NAT, a benchmark) open connection after connection, and a clone is a reference count
    // where a new value is a formatting and an allocation.
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((seen, v)) if *seen == ip => v.clone(),
            _ => {
                let v = format_peer(ip);
                *last = Some((ip, v.clone()));
                v
            }
        }
    })
}

/// `ip` as `X-Forwarded-For` carries it (as `std` writes it).
fn format_peer(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).expect("an IP address is a valid value");
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid value")
}

/// What one pass over a request's fields finds, for the request path's checks and rewrites:
/// one iteration instead of a hash lookup or a scan of its own for each.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Total bytes of names and values plus per-field framing, as counted for the header limit.
    pub(crate) block_size: usize,
    /// The first `Host` value.
    pub(crate) host: Option<HeaderValue>,
    /// Whether more than one `Host` value came.
    pub(crate) hosts_repeated: bool,
    /// The first `X-Request-Id` value.
    pub(crate) request_id: Option<HeaderValue>,
    /// Whether any hop-by-hop field came (`Upgrade` and `Connection` among them): without one,
    /// there is nothing to strip and no upgrade asked for.
    pub(crate) hop_by_hop: bool,
}

impl Scan {
    /// Scans `h` once.
    pub(crate) fn of(h: &HeaderMap) -> Self {
        let mut s = Self::default();
        for (n, v) in h {
            s.block_size += n.as_str().len() + v.len() + 4;
            if n == header::HOST {
                if s.host.is_none() {
                    s.host = Some(v.clone());
                } else {
                    s.hosts_repeated = true;
                }
            } else if n == X_REQUEST_ID {
                if s.request_id.is_none() {
                    s.request_id = Some(v.clone());
                }
            } else if !s.hop_by_hop && is_hop_by_hop(n) {
                s.hop_by_hop = true;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_value_is_the_address_as_std_writes_it() {
        let mut ips: Vec<std::net::IpAddr> = [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "99.100.101.255",
            "255.255.255.255",
            "1.9.10.199",
            "::1",
            "2001:db8::7",
            "::ffff:10.0.0.1",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        // Every octet value in every position.
        ips.extend((0..=255u8).map(|b| std::net::IpAddr::from([b, 255 - b, b / 3, b / 7])));
        for ip in ips {
            assert_eq!(format_peer(ip).to_str().unwrap(), ip.to_string(), "{ip}");
            // Written, then taken from the thread's last one.
            assert_eq!(peer_value(ip).to_str().unwrap(), ip.to_string(), "{ip}");
            assert_eq!(peer_value(ip).to_str().unwrap(), ip.to_string(), "{ip}");
        }
    }

    /// The host as the request path finds it: one [`Scan`], then [`host_of`].
    fn request_host(h: &HeaderMap, uri: &http::Uri) -> Result<Option<Vec<u8>>, AmbiguousHost> {
        let scan = Scan::of(h);
        host_of(
            scan.host.as_ref().map(HeaderValue::as_bytes),
            scan.hosts_repeated,
            uri,
        )
        .map(|h| h.map(<[u8]>::to_vec))
    }

    #[test]
    fn connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::UPGRADE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-keep").is_some());
    }

    #[test]
    fn every_hop_by_hop_name_is_removed_at_once() {
        let mut h = HeaderMap::new();
        for n in &HOP_BY_HOP {
            h.append(n.clone(), HeaderValue::from_static("1"));
            h.append(n.clone(), HeaderValue::from_static("2"));
        }
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-keep"]);
    }

    #[test]
    fn upgrade_keeps_upgrade_and_sets_connection() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-other"));
        h.insert("x-other", HeaderValue::from_static("1"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(header::CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert!(h.get("x-other").is_none());
    }

    #[test]
    fn connection_tokens_are_read_in_any_case_around_spaces_and_odd_bytes() {
        let mut h = HeaderMap::new();
        h.append(
            header::CONNECTION,
            HeaderValue::from_bytes(b"Close ,  X-Secret,,\xff-odd, KEEP-ALIVE").unwrap(),
        );
        h.append(header::CONNECTION, HeaderValue::from_static("x-second"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-second", HeaderValue::from_static("1"));
        h.insert("close", HeaderValue::from_static("an option, not a name"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["close", "x-keep"]);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn one_scan_finds_what_the_request_path_looks_up() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a.test"));
        h.append("x-request-id", HeaderValue::from_static("first"));
        h.append("x-request-id", HeaderValue::from_static("second"));
        h.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        let scan = Scan::of(&h);
        let size: usize = h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
        assert_eq!(scan.block_size, size);
        assert_eq!(scan.host, Some(HeaderValue::from_static("a.test")));
        assert!(!scan.hosts_repeated);
        assert_eq!(scan.request_id, h.get("x-request-id").cloned());
        assert!(!scan.hop_by_hop);
        for hop in [
            "connection",
            "upgrade",
            "te",
            "keep-alive",
            "http2-settings",
        ] {
            let mut with = h.clone();
            with.append(HeaderName::from_static(hop), HeaderValue::from_static("x"));
            assert!(Scan::of(&with).hop_by_hop, "{hop}");
        }
        h.append(header::HOST, HeaderValue::from_static("b.test"));
        let scan = Scan::of(&h);
        assert!(scan.hosts_repeated);
        assert_eq!(scan.host, Some(HeaderValue::from_static("a.test")));
    }

    #[test]
    fn repeated_or_conflicting_host_is_ambiguous() {
        let origin: http::Uri = "/x".parse().expect("uri");
        let absolute: http::Uri = "http://a.test/x".parse().expect("uri");
        let mut h = HeaderMap::new();
        assert_eq!(request_host(&h, &origin), Ok(None));
        assert_eq!(request_host(&h, &absolute), Ok(Some(b"a.test".to_vec())));
        h.insert(header::HOST, HeaderValue::from_static("A.test"));
        assert_eq!(request_host(&h, &origin), Ok(Some(b"A.test".to_vec())));
        assert_eq!(request_host(&h, &absolute), Ok(Some(b"A.test".to_vec())));
        h.insert(header::HOST, HeaderValue::from_static("b.test"));
        assert_eq!(request_host(&h, &absolute), Err(AmbiguousHost));
        h.append(header::HOST, HeaderValue::from_static("b.test"));
        assert_eq!(request_host(&h, &origin), Err(AmbiguousHost));
    }

    #[test]
    fn a_default_port_names_the_same_host() {
        let host = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static(v));
            h
        };
        let cases: &[(&str, &'static str, bool)] = &[
            ("http://a.test:80/x", "a.test", true),
            ("http://a.test/x", "A.TEST:80", true),
            ("https://a.test/x", "a.test:443", true),
            ("https://a.test/x", "a.test:80", false),
            ("http://a.test:8080/x", "a.test", false),
            ("http://a.test:8080/x", "a.test:8080", true),
            ("http://[::1]:80/x", "[::1]", true),
            ("http://[::1]:81/x", "[::1]", false),
            ("http://a.test:80/x", "b.test:80", false),
        ];
        for &(uri, h, same) in cases {
            let uri: http::Uri = uri.parse().expect("uri");
            let headers = host(h);
            let got = request_host(&headers, &uri).is_ok();
            assert_eq!(got, same, "{uri} with Host {h}");
        }
    }

    #[test]
    fn h2c_settings_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQAAP__"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("http2-settings").is_none());
        assert!(h.get("x-keep").is_some());
    }
}
