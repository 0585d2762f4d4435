//! Services and stacks: names, listeners, hosts, path prefix, load balancing, pinning, shadow,
//! stickiness, timeouts, and each stack's weight, endpoints, DNS source and upstream TLS.

use super::health::{health_check, outlier, slow_start};
use super::{integer, name, optional_duration, resolve};
use crate::duration::MAX_TIMEOUT;
use crate::error::{FieldPath, Problems};
use crate::model::{CertPaths, Endpoint, HostPattern, LoadBalancing, Name, Sticky, Weight};
use crate::raw;
use crate::service::{
    DEFAULT_PIN_HEADER, DEFAULT_UPGRADES, DnsSource, ServiceSpec, StackSpec, UpstreamTlsSpec,
};
use crate::shadow::{DEFAULT_SHADOW_MAX_BODY, DEFAULT_SHADOW_METHODS, MAX_SHADOW_BODY, ShadowSpec};
use crate::size::{EXPECTED_SIZE, format_size, parse_size_at_most};
use std::collections::HashSet;
use std::path::Path;

pub(super) fn stack_at(
    s: &raw::Stack,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> Option<StackSpec> {
    let n = name(&s.name, &at.key("name"), p);
    p.expect(
        &at.key("weight"),
        format!("an integer from 0 to {}", Weight::MAX),
    );
    let weight = Weight::new(s.weight)
        .map_err(|e| p.push(&at.key("weight"), e))
        .ok();
    if s.version.len() > 128 || s.version.chars().any(char::is_control) {
        p.push(
            &at.key("version"),
            "expected at most 128 printable characters",
        );
    }
    let mut endpoints = Vec::new();
    let mut seen = HashSet::new();
    for (i, e) in s.endpoints.iter().enumerate() {
        match Endpoint::parse(e) {
            Ok(ep) => {
                if !seen.insert(ep.clone()) {
                    p.push(
                        &at.key("endpoints").index(i),
                        format!("duplicate endpoint {e:?}"),
                    );
                }
                endpoints.push(ep);
            }
            Err(m) => p.push(&at.key("endpoints").index(i), m),
        }
    }
    let dns = s.dns.as_ref().and_then(|d| dns(d, &at.key("dns"), p));
    if dns.is_some() && !s.endpoints.is_empty() {
        p.push(&at.key("dns"), "give either endpoints or dns, not both");
    }
    let health_check = s
        .health_check
        .as_ref()
        .map(|h| health_check(h, &at.key("health_check"), p));
    let outlier_detection = s
        .outlier_detection
        .as_ref()
        .map(|o| outlier(o, &at.key("outlier_detection"), p));
    let slow_start = slow_start(s.slow_start.as_ref(), &at.key("slow_start"), p);
    let tls = s.tls.as_ref().map(|t| UpstreamTlsSpec {
        ca: t.ca.as_deref().map(|c| resolve(base, c)),
        client_cert: t.client_cert.as_ref().map(|c| CertPaths {
            cert: resolve(base, &c.cert),
            key: resolve(base, &c.key),
        }),
        sni: t.sni.clone(),
        insecure_skip_verify: t.insecure_skip_verify.unwrap_or(false),
    });
    Some(StackSpec {
        name: n?,
        version: s.version.clone(),
        weight: weight?,
        endpoints,
        dns,
        health_check,
        outlier_detection,
        slow_start,
        tls,
        raw: s.clone(),
    })
}

fn dns(d: &raw::Dns, at: &FieldPath, p: &mut Problems) -> Option<DnsSource> {
    p.expect(&at.key("port"), "an integer from 1 to 65535");
    match (&d.name, d.port, &d.srv) {
        (Some(name), Some(port), None) => match u16::try_from(port) {
            Ok(port) if port > 0 => Some(DnsSource::Address {
                name: name.clone(),
                port,
            }),
            _ => {
                p.push(
                    &at.key("port"),
                    format!("port {port} out of range: expected 1 to 65535"),
                );
                None
            }
        },
        (None, None, Some(srv)) => Some(DnsSource::Srv { name: srv.clone() }),
        (Some(_), None, None) => {
            p.push(&at.key("port"), "expected a port with name");
            None
        }
        _ => {
            p.push(at, "expected { name, port } or { srv }");
            None
        }
    }
}

pub(super) fn service_at(
    s: &raw::Service,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> Option<ServiceSpec> {
    let n = name(&s.name, &at.key("name"), p);
    let listeners: Vec<Name> = s
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| name(l, &at.key("listeners").index(i), p))
        .collect();
    if s.listeners.is_empty() {
        p.push(&at.key("listeners"), "expected at least one listener name");
    }
    let hosts = s
        .hosts
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            HostPattern::parse(h)
                .map_err(|e| p.push(&at.key("hosts").index(i), e))
                .ok()
        })
        .collect();
    let path_prefix = s.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/')
        || path_prefix.contains(['?', '#'])
        || path_prefix.chars().any(char::is_whitespace)
    {
        p.push(
            &at.key("path_prefix"),
            format!("invalid path prefix {path_prefix:?}: expected a path starting with /"),
        );
    }
    let load_balancing = match s.load_balancing.as_deref() {
        None | Some("round_robin") => LoadBalancing::RoundRobin,
        Some("least_request") => LoadBalancing::LeastRequest,
        Some(o) => {
            p.push(
                &at.key("load_balancing"),
                format!("unknown policy {o:?}: expected \"round_robin\" or \"least_request\""),
            );
            LoadBalancing::RoundRobin
        }
    };
    let pin_header = match s.pin_header.as_deref() {
        None => Some(DEFAULT_PIN_HEADER.to_owned()),
        Some("") => None,
        Some(h) if is_token(h) => Some(h.to_ascii_lowercase()),
        Some(h) => {
            p.push(&at.key("pin_header"), format!("invalid header name {h:?}"));
            None
        }
    };
    let sticky = s
        .sticky
        .as_ref()
        .and_then(|st| match (&st.cookie, &st.header) {
            (Some(c), None) if is_token(c) => Some(Sticky::Cookie(c.clone())),
            (None, Some(h)) if is_token(h) => Some(Sticky::Header(h.to_ascii_lowercase())),
            _ => {
                p.push(
                    &at.key("sticky"),
                    "expected { cookie = \"NAME\" } or { header = \"NAME\" } with a valid name",
                );
                None
            }
        });
    let t = s.timeouts.clone().unwrap_or_default();
    let opt_dur = |v: &Option<String>, key: &str, p: &mut Problems| {
        optional_duration(v.as_ref(), &at.key("timeouts").key(key), MAX_TIMEOUT, p)
    };
    let connect_timeout = opt_dur(&t.connect, "connect", p);
    let upstream_response_timeout = opt_dur(&t.upstream_response, "upstream_response", p);
    let request_body_timeout = opt_dur(&t.request_body, "request_body", p);
    let upgrades = upgrades(s.upgrades.as_deref(), &at.key("upgrades"), p);
    let health = s
        .health_check
        .as_ref()
        .map(|h| health_check(h, &at.key("health_check"), p));
    let outlier_detection = s
        .outlier_detection
        .as_ref()
        .map(|o| outlier(o, &at.key("outlier_detection"), p))
        .unwrap_or_default();
    let slow_start = slow_start(s.slow_start.as_ref(), &at.key("slow_start"), p);
    let mut stacks = Vec::new();
    let mut stack_names = HashSet::new();
    for (i, st) in s.stacks.iter().enumerate() {
        let sat = at.key("stacks").index(i);
        if let Some(spec) = stack_at(st, &sat, base, p) {
            if !stack_names.insert(spec.name.clone()) {
                p.push(
                    &sat.key("name"),
                    format!("duplicate stack name {:?}", st.name),
                );
            }
            stacks.push(spec);
        }
    }
    let names: Vec<&str> = s.stacks.iter().map(|st| st.name.as_str()).collect();
    let shadow = s
        .shadow
        .as_ref()
        .and_then(|sh| shadow(sh, &names, &at.key("shadow"), p));
    let mut raw = s.clone();
    raw.stacks.clear();
    Some(ServiceSpec {
        name: n?,
        listeners,
        hosts,
        path_prefix,
        load_balancing,
        pin_header,
        sticky,
        preserve_host: s.preserve_host.unwrap_or(true),
        connect_timeout,
        upstream_response_timeout,
        request_body_timeout,
        upgrades,
        health_check: health,
        fail_open: s.fail_open.unwrap_or(false),
        outlier_detection,
        slow_start,
        shadow,
        stacks,
        raw,
    })
}

/// `upgrades`: protocol names (tokens, compared case-insensitively) to tunnel. `h2c` is refused:
/// the proxy speaks HTTP/2 itself, and a tunnelled h2c connection would carry requests past
/// every routing rule.
fn upgrades(v: Option<&[String]>, at: &FieldPath, p: &mut Problems) -> Vec<String> {
    let Some(v) = v else {
        return DEFAULT_UPGRADES.iter().map(|&u| u.to_owned()).collect();
    };
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for (i, u) in v.iter().enumerate() {
        let lower = u.to_ascii_lowercase();
        if !is_token(u) {
            p.push(
                &at.index(i),
                format!("invalid protocol name {u:?}: expected a token such as \"websocket\""),
            );
        } else if lower == "h2c" {
            p.push(
                &at.index(i),
                "h2c cannot be tunnelled: the proxy serves HTTP/2 itself (prior knowledge or ALPN)",
            );
        } else if !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

/// `shadow = { stack, percent, methods, max_body }`: `stack` must be one of `stacks` (the
/// service's stack names).
pub(crate) fn shadow(
    sh: &raw::Shadow,
    stacks: &[&str],
    at: &FieldPath,
    p: &mut Problems,
) -> Option<ShadowSpec> {
    let stack = name(&sh.stack, &at.key("stack"), p).and_then(|n| {
        if stacks.contains(&n.as_str()) {
            Some(n)
        } else {
            p.push(
                &at.key("stack"),
                format!(
                    "unknown stack {:?}: expected one of the service's stacks ({})",
                    sh.stack,
                    stacks.join(", ")
                ),
            );
            None
        }
    });
    let percent = integer(sh.percent, &at.key("percent"), 1, 100, p);
    let methods = match &sh.methods {
        None => DEFAULT_SHADOW_METHODS
            .iter()
            .map(|&m| m.to_owned())
            .collect(),
        Some(v) => {
            if v.is_empty() {
                p.push(&at.key("methods"), "expected at least one method");
            }
            let mut out: Vec<String> = Vec::with_capacity(v.len());
            for (i, m) in v.iter().enumerate() {
                if !is_token(m) {
                    p.push(
                        &at.key("methods").index(i),
                        format!("invalid method {m:?}: expected a token such as \"GET\""),
                    );
                } else if !out.contains(m) {
                    out.push(m.clone());
                }
            }
            out
        }
    };
    p.expect(
        &at.key("max_body"),
        format!("{EXPECTED_SIZE}, at most {}", format_size(MAX_SHADOW_BODY)),
    );
    let max_body = match &sh.max_body {
        None => Some(DEFAULT_SHADOW_MAX_BODY),
        Some(s) => parse_size_at_most(s, MAX_SHADOW_BODY)
            .map_err(|e| p.push(&at.key("max_body"), e))
            .ok(),
    };
    Some(ShadowSpec {
        stack: stack?,
        percent: u8::try_from(percent?).ok()?,
        methods,
        max_body: max_body?,
    })
}

/// An HTTP token (RFC 9110 §5.6.2), as header and cookie names must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}
