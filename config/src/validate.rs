//! Raw → model: every semantic rule, all problems reported at once with their field paths.

use crate::duration::{MAX_TIMEOUT, expected_duration, parse_duration_at_most};
use crate::error::{FieldPath, Problem, Problems};
use crate::model::{CertPaths, ListenerSpec, ListenerTls, Name, UnknownSni};
use crate::raw;
use crate::service::{ServiceSpec, StackSpec};
use crate::settings::{Config, ControlSpec, Limits, Role, Runtime, Scheduler, Timeouts, TokenSpec};
use std::collections::HashSet;
use std::path::Path;

mod access_log;
mod health;
mod links;
mod resolver;
mod service;
mod store;

pub(crate) use links::check_services;
use links::{check_listen_policy, check_listener_references, check_routes};
pub(crate) use service::shadow;
use service::{service_at, stack_at};

/// Validates a whole file into `p`. `base` resolves relative paths (the config file's folder).
/// The model is built only when no problem was found.
pub(crate) fn file(raw: &raw::File, base: &Path, p: &mut Problems) -> Option<Config> {
    let root = FieldPath::root();

    let mut listeners = Vec::new();
    let mut names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let at = root.key("listeners").index(i);
        if let Some(spec) = listener(l, &at, base, p) {
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
        if let Some(spec) = service_at(s, &at, base, p) {
            services.push((i, spec));
        }
    }
    check_listener_references(&raw.listeners, &raw.services, p);
    check_routes(&services, p);

    let runtime = runtime(raw.runtime.as_ref(), &root.key("runtime"), p);
    let timeouts = timeouts(raw.timeouts.as_ref(), &root.key("timeouts"), p);
    let limits = limits(raw.limits.as_ref(), &root.key("limits"), p);
    let control = control(raw.control.as_ref(), &root.key("control"), base, p);
    let dns = resolver::resolver(raw.dns.as_ref(), &root.key("dns"), p);
    let store = store::store(raw.store.as_ref(), &root.key("store"), base, p);
    let access_log =
        access_log::access_log(raw.access_log.as_ref(), &root.key("access_log"), base, p);
    let mut tokens = Vec::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        if let Some(t) = token(t, &root.key("tokens").index(i), p) {
            if tokens.iter().any(|o: &TokenSpec| o.name == t.name) {
                p.push(
                    &root.key("tokens").index(i).key("name"),
                    "duplicate token name",
                );
            }
            tokens.push(t);
        }
    }
    check_listen_policy(&control, &tokens, &root.key("control").key("listen"), p);
    let docker_host = docker_host(raw.docker.as_ref(), &root.key("docker").key("host"), p);

    if !p.is_empty() {
        return None;
    }
    Some(Config {
        listeners,
        services: services.into_iter().map(|(_, s)| s).collect(),
        runtime,
        timeouts,
        limits,
        control,
        tokens,
        dns,
        metrics: raw.metrics.as_ref().and_then(|m| m.enabled).unwrap_or(true),
        docker_host,
        store,
        access_log,
    })
}

/// `[docker] host`: a `unix://` socket path or a `tcp://`/`http://` address.
fn docker_host(d: Option<&raw::Docker>, at: &FieldPath, p: &mut Problems) -> Option<String> {
    let host = d?.host.as_ref()?;
    let ok = host
        .strip_prefix("unix://")
        .is_some_and(|path| path.starts_with('/'))
        || ["tcp://", "http://"]
            .iter()
            .any(|s| host.strip_prefix(s).is_some_and(|a| !a.is_empty()));
    if !ok {
        p.push(
            at,
            "expected unix:///path/to/docker.sock or tcp://HOST:PORT",
        );
        return None;
    }
    Some(host.clone())
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
    p.found
        .into_iter()
        .map(|(field, message)| Problem {
            field,
            location: None,
            message,
        })
        .collect()
}

fn name(s: &str, at: &FieldPath, p: &mut Problems) -> Option<Name> {
    Name::new(s).map_err(|e| p.push(at, e)).ok()
}

/// A timeout-like duration, at most [`MAX_TIMEOUT`].
fn duration(
    s: Option<&String>,
    at: &FieldPath,
    default: std::time::Duration,
    p: &mut Problems,
) -> std::time::Duration {
    duration_at_most(s, at, default, MAX_TIMEOUT, p)
}

/// A duration of at most `max`; `default` when absent or invalid.
fn duration_at_most(
    s: Option<&String>,
    at: &FieldPath,
    default: std::time::Duration,
    max: std::time::Duration,
    p: &mut Problems,
) -> std::time::Duration {
    p.expect(at, expected_duration(max));
    match s {
        None => default,
        Some(s) => parse_duration_at_most(s, max).unwrap_or_else(|e| {
            p.push(at, e);
            default
        }),
    }
}

/// An optional duration of at most `max`; `None` when absent or invalid.
fn optional_duration(
    s: Option<&String>,
    at: &FieldPath,
    max: std::time::Duration,
    p: &mut Problems,
) -> Option<std::time::Duration> {
    p.expect(at, expected_duration(max));
    parse_duration_at_most(s?, max)
        .map_err(|e| p.push(at, e))
        .ok()
}

/// An integer from `min` to `max`, declared as such for wrong-type errors.
fn integer(v: i64, at: &FieldPath, min: i64, max: i64, p: &mut Problems) -> Option<i64> {
    let expected = format!("an integer from {min} to {max}");
    let ok = (min..=max).contains(&v);
    if !ok {
        p.push(at, format!("{v} out of range: expected {expected}"));
    }
    p.expect(at, expected);
    ok.then_some(v)
}

fn positive(v: Option<i64>, at: &FieldPath, default: usize, max: i64, p: &mut Problems) -> usize {
    p.expect(at, format!("an integer from 1 to {max}"));
    match v {
        None => default,
        Some(n) => integer(n, at, 1, max, p).map_or(default, |n| n as usize),
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
    let scheduler = match r.and_then(|r| r.scheduler.as_deref()) {
        None | Some("thread-per-core") => Scheduler::ThreadPerCore,
        Some("work-stealing") => Scheduler::WorkStealing,
        Some(o) => {
            p.push(
                &at.key("scheduler"),
                format!("unknown value {o:?}: expected \"thread-per-core\" or \"work-stealing\""),
            );
            Scheduler::default()
        }
    };
    Runtime {
        worker_threads,
        scheduler,
    }
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
        // The HTTP/1 parser keeps its field slots on the stack (`proxy::server::head`).
        max_headers: positive(l.max_headers, &at.key("max_headers"), d.max_headers, 256, p),
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
    let mut webhooks = Vec::new();
    for (i, w) in c.webhooks.iter().enumerate() {
        match crate::webhook::webhook(w) {
            Ok(w) => webhooks.push(w),
            Err(problems) => {
                for (field, message) in problems {
                    let hook = at.key("webhooks").index(i);
                    let path = match field.split_once('[') {
                        Some((k, n)) => hook
                            .key(k)
                            .index(n.trim_end_matches(']').parse().unwrap_or(0)),
                        None => hook.key(&field),
                    };
                    p.push(&path, message);
                }
            }
        }
    }
    ControlSpec {
        listen,
        state_dir,
        tls,
        webhooks,
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
