//! Raw → model: every semantic rule, all problems reported at once with their field paths.

use crate::duration::parse_duration;
use crate::error::{FieldPath, Problem, Problems};
use crate::model::{CertPaths, ListenerSpec, ListenerTls, Name, UnknownSni};
use crate::raw;
use crate::service::{ServiceSpec, StackSpec};
use crate::settings::{Config, ControlSpec, Limits, Role, Runtime, Timeouts, TokenSpec};
use std::collections::{HashMap, HashSet};
use std::path::Path;

mod health;
mod resolver;
mod service;

use service::{service_at, stack_at};

/// Validates a whole file. `base` resolves relative paths (the config file's folder).
pub(crate) fn file(raw: &raw::File, base: &Path) -> Result<Config, Problems> {
    let mut p = Problems::default();
    let root = FieldPath::root();

    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let at = root.key("listeners").index(i);
        if let Some(spec) = listener(l, &at, base, &mut p) {
            if !names.insert(spec.name.clone()) {
                p.push(
                    &at.key("name"),
                    format!("duplicate listener name {:?}", l.name),
                );
            }
            listeners.push(spec);
        }
    }

    let mut services = Vec::new();
    for (i, s) in raw.services.iter().enumerate() {
        let at = root.key("services").index(i);
        if let Some(spec) = service_at(s, &at, base, &mut p) {
            services.push(spec);
        }
    }
    if p.is_empty() {
        check_services(&listeners, &services, &mut p);
    }

    let runtime = runtime(raw.runtime.as_ref(), &root.key("runtime"), &mut p);
    let timeouts = timeouts(raw.timeouts.as_ref(), &root.key("timeouts"), &mut p);
    let limits = limits(raw.limits.as_ref(), &root.key("limits"), &mut p);
    let control = control(raw.control.as_ref(), &root.key("control"), base, &mut p);
    let dns = resolver::resolver(raw.dns.as_ref(), &root.key("dns"), &mut p);
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        if let Some(t) = token(t, &root.key("tokens").index(i), &mut p) {
            if tokens.iter().any(|o: &TokenSpec| o.name == t.name) {
                p.push(
                    &root.key("tokens").index(i).key("name"),
                    "duplicate token name",
                );
            }
            tokens.push(t);
        }
    }

    if !p.is_empty() {
        return Err(p);
    }
    Ok(Config {
        listeners,
        services,
        runtime,
        timeouts,
        limits,
        control,
        tokens,
        dns,
        metrics: raw.metrics.as_ref().and_then(|m| m.enabled).unwrap_or(true),
    })
}

/// Validates one service on its own (listener references are checked by [`check_services`]).
pub fn service(raw: &raw::Service, base: &Path) -> Result<ServiceSpec, Vec<Problem>> {
    let mut p = Problems::default();
    match service_at(raw, &FieldPath::root(), base, &mut p) {
        Some(s) if p.is_empty() => Ok(s),
        _ => Err(unlocated(p)),
    }
}

/// Validates one stack on its own.
pub fn stack(raw: &raw::Stack, base: &Path) -> Result<StackSpec, Vec<Problem>> {
    let mut p = Problems::default();
    match stack_at(raw, &FieldPath::root(), base, &mut p) {
        Some(s) if p.is_empty() => Ok(s),
        _ => Err(unlocated(p)),
    }
}

pub(crate) fn unlocated(p: Problems) -> Vec<Problem> {
    p.0.into_iter()
        .map(|(field, message)| Problem {
            field,
            location: None,
            message,
        })
        .collect()
}

/// Cross-service rules: unique names, known listeners, no two services on one route.
pub(crate) fn check_services(
    listeners: &[ListenerSpec],
    services: &[ServiceSpec],
    p: &mut Problems,
) {
    let mut names = HashSet::new();
    let mut routes: HashMap<(String, String, String), &str> = HashMap::new();
    for (i, s) in services.iter().enumerate() {
        let at = FieldPath::root().key("services").index(i);
        if !names.insert(s.name.as_str()) {
            p.push(
                &at.key("name"),
                format!("duplicate service name {:?}", s.name.as_str()),
            );
        }
        for (j, l) in s.listeners.iter().enumerate() {
            if !listeners.iter().any(|x| &x.name == l) {
                let known: Vec<_> = listeners.iter().map(|x| x.name.as_str()).collect();
                p.push(
                    &at.key("listeners").index(j),
                    format!(
                        "unknown listener {:?}: expected one of {known:?}",
                        l.as_str()
                    ),
                );
            }
            let hosts: Vec<String> = if s.hosts.is_empty() {
                vec!["*".into()]
            } else {
                s.hosts.iter().map(ToString::to_string).collect()
            };
            for h in hosts {
                let key = (l.as_str().to_owned(), h.clone(), s.path_prefix.clone());
                if let Some(other) = routes.insert(key, s.name.as_str()) {
                    if other != s.name.as_str() {
                        p.push(
                            &at.key("path_prefix"),
                            format!(
                                "service {:?} claims host {h} and prefix {:?} on listener {:?}, already routed to service {other:?}",
                                s.name.as_str(), s.path_prefix, l.as_str()
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn name(s: &str, at: &FieldPath, p: &mut Problems) -> Option<Name> {
    Name::new(s).map_err(|e| p.push(at, e)).ok()
}

fn duration(
    s: Option<&String>,
    at: &FieldPath,
    default: std::time::Duration,
    p: &mut Problems,
) -> std::time::Duration {
    match s {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            p.push(at, e);
            default
        }),
    }
}

fn positive(v: Option<i64>, at: &FieldPath, default: usize, max: i64, p: &mut Problems) -> usize {
    match v {
        None => default,
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => {
            p.push(
                at,
                format!("{n} out of range: expected an integer from 1 to {max}"),
            );
            default
        }
    }
}

fn resolve(base: &Path, s: &str) -> std::path::PathBuf {
    let path = Path::new(s);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

fn listener_tls(
    t: &raw::ListenerTls,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> ListenerTls {
    if t.certs.is_empty() {
        p.push(&at.key("certs"), "expected at least one { cert, key } pair");
    }
    let certs = t
        .certs
        .iter()
        .map(|c| CertPaths {
            cert: resolve(base, &c.cert),
            key: resolve(base, &c.key),
        })
        .collect();
    let unknown_sni = match t.unknown_sni.as_deref() {
        None | Some("default") => UnknownSni::ServeDefault,
        Some("refuse") => UnknownSni::Refuse,
        Some(o) => {
            p.push(
                &at.key("unknown_sni"),
                format!("unknown value {o:?}: expected \"default\" or \"refuse\""),
            );
            UnknownSni::ServeDefault
        }
    };
    ListenerTls { certs, unknown_sni }
}

fn listener(
    l: &raw::Listener,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> Option<ListenerSpec> {
    let n = name(&l.name, &at.key("name"), p);
    let bind = l
        .bind
        .parse()
        .map_err(|_| {
            p.push(
                &at.key("bind"),
                format!(
                    "invalid address {:?}: expected ip:port such as \"127.0.0.1:8080\"",
                    l.bind
                ),
            )
        })
        .ok();
    let tls = l
        .tls
        .as_ref()
        .map(|t| listener_tls(t, &at.key("tls"), base, p));
    Some(ListenerSpec {
        name: n?,
        bind: bind?,
        tls,
    })
}

fn runtime(r: Option<&raw::Runtime>, at: &FieldPath, p: &mut Problems) -> Runtime {
    let worker_threads = r
        .and_then(|r| r.worker_threads)
        .map(|n| positive(Some(n), &at.key("worker_threads"), 1, 1024, p));
    Runtime { worker_threads }
}

fn timeouts(t: Option<&raw::Timeouts>, at: &FieldPath, p: &mut Problems) -> Timeouts {
    let d = Timeouts::default();
    let Some(t) = t else { return d };
    Timeouts {
        connect: duration(t.connect.as_ref(), &at.key("connect"), d.connect, p),
        upstream_response: duration(
            t.upstream_response.as_ref(),
            &at.key("upstream_response"),
            d.upstream_response,
            p,
        ),
        idle: duration(t.idle.as_ref(), &at.key("idle"), d.idle, p),
        request_header: duration(
            t.request_header.as_ref(),
            &at.key("request_header"),
            d.request_header,
            p,
        ),
        request_body: duration(
            t.request_body.as_ref(),
            &at.key("request_body"),
            d.request_body,
            p,
        ),
        upstream_idle: duration(
            t.upstream_idle.as_ref(),
            &at.key("upstream_idle"),
            d.upstream_idle,
            p,
        ),
        drain: duration(t.drain.as_ref(), &at.key("drain"), d.drain, p),
    }
}

fn limits(l: Option<&raw::Limits>, at: &FieldPath, p: &mut Problems) -> Limits {
    let d = Limits::default();
    let Some(l) = l else { return d };
    Limits {
        max_request_header_bytes: positive(
            l.max_request_header_bytes,
            &at.key("max_request_header_bytes"),
            d.max_request_header_bytes,
            1 << 20,
            p,
        ),
        max_headers: positive(
            l.max_headers,
            &at.key("max_headers"),
            d.max_headers,
            10_000,
            p,
        ),
        h2_max_concurrent_streams: positive(
            l.h2_max_concurrent_streams,
            &at.key("h2_max_concurrent_streams"),
            d.h2_max_concurrent_streams as usize,
            10_000,
            p,
        ) as u32,
        h2_max_pending_reset_streams: positive(
            l.h2_max_pending_reset_streams,
            &at.key("h2_max_pending_reset_streams"),
            d.h2_max_pending_reset_streams,
            10_000,
            p,
        ),
        upstream_idle_per_endpoint: positive(
            l.upstream_idle_per_endpoint,
            &at.key("upstream_idle_per_endpoint"),
            d.upstream_idle_per_endpoint,
            100_000,
            p,
        ),
    }
}

fn control(c: Option<&raw::Control>, at: &FieldPath, base: &Path, p: &mut Problems) -> ControlSpec {
    let default_listen = "127.0.0.1:9090".parse().expect("literal address parses");
    let c = c.cloned().unwrap_or_default();
    let listen = match &c.listen {
        None => default_listen,
        Some(s) => s.parse().unwrap_or_else(|_| {
            p.push(
                &at.key("listen"),
                format!("invalid address {s:?}: expected ip:port such as \"127.0.0.1:9090\""),
            );
            default_listen
        }),
    };
    let state_dir = resolve(base, c.state_dir.as_deref().unwrap_or("switchyard-state"));
    let tls = c
        .tls
        .as_ref()
        .map(|t| listener_tls(t, &at.key("tls"), base, p));
    ControlSpec {
        listen,
        state_dir,
        tls,
    }
}

fn token(t: &raw::Token, at: &FieldPath, p: &mut Problems) -> Option<TokenSpec> {
    let n = name(&t.name, &at.key("name"), p);
    let role = Role::parse(&t.role)
        .map_err(|e| p.push(&at.key("role"), e))
        .ok();
    let mut sha256 = [0u8; 32];
    let hex_ok = t.sha256.len() == 64
        && t.sha256.as_bytes().chunks(2).enumerate().all(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map(|b| sha256[i] = b)
                .is_some()
        });
    if !hex_ok {
        p.push(
            &at.key("sha256"),
            "expected 64 hex digits (the SHA-256 of the secret; see `switchyard token new`)",
        );
    }
    Some(TokenSpec {
        name: n?,
        role: role?,
        sha256,
        services: t.services.clone(),
    })
}
