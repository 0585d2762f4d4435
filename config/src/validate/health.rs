//! Endpoint health settings: active health checks, passive health (outlier detection) and
//! slow start, for a service or a stack.

use super::{duration, duration_at_most, integer, optional_duration, positive};
use crate::duration::{MAX_PERIOD, MAX_TIMEOUT};
use crate::error::{FieldPath, Problems};
use crate::raw;
use crate::service::{CheckKind, HealthCheckSpec, OutlierSpec};
use std::time::Duration;

/// The check's kind; fields that mean nothing for it are reported.
fn kind(h: &raw::HealthCheck, at: &FieldPath, p: &mut Problems) -> CheckKind {
    let kind = match h.kind.as_deref() {
        None | Some("http") => CheckKind::Http,
        Some("tcp") => CheckKind::Tcp,
        Some("none") => CheckKind::None,
        Some(o) => {
            p.push(
                &at.key("kind"),
                format!("unknown value {o:?}: expected \"http\", \"tcp\" or \"none\""),
            );
            return CheckKind::Http;
        }
    };
    let http_only = [
        ("path", h.path.is_some()),
        ("request_line", h.request_line.is_some()),
        ("method", h.method.is_some()),
        ("host", h.host.is_some()),
        ("expect_status", h.expect_status.is_some()),
    ];
    let checked = [
        ("port", h.port.is_some()),
        ("interval", h.interval.is_some()),
        ("timeout", h.timeout.is_some()),
        ("healthy_threshold", h.healthy_threshold.is_some()),
        ("unhealthy_threshold", h.unhealthy_threshold.is_some()),
        ("initial", h.initial.is_some()),
    ];
    let (refused, why) = match kind {
        CheckKind::Http => (Vec::new(), ""),
        CheckKind::Tcp => (http_only.to_vec(), "applies to http checks only"),
        CheckKind::None => (
            [&http_only[..], &checked[..]].concat(),
            "means nothing with kind = \"none\"",
        ),
    };
    for (field, _) in refused.into_iter().filter(|(_, given)| *given) {
        p.push(&at.key(field), format!("{field} {why}"));
    }
    kind
}

pub(super) fn health_check(
    h: &raw::HealthCheck,
    at: &FieldPath,
    p: &mut Problems,
) -> HealthCheckSpec {
    let kind = kind(h, at, p);
    let mut method = h
        .method
        .clone()
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    let mut path = h.path.clone().unwrap_or_else(|| "/health".into());
    let mut http10 = false;
    if let Some(line) = &h.request_line {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [m, pth, v] if pth.starts_with('/') && (*v == "HTTP/1.0" || *v == "HTTP/1.1") => {
                method = (*m).to_owned();
                path = (*pth).to_owned();
                http10 = *v == "HTTP/1.0";
            }
            _ => p.push(
                &at.key("request_line"),
                format!("invalid request line {line:?}: expected e.g. \"GET /health HTTP/1.0\""),
            ),
        }
        if h.path.is_some() {
            p.push(
                &at.key("path"),
                "give either path or request_line, not both",
            );
        }
    }
    if !path.starts_with('/') {
        p.push(
            &at.key("path"),
            format!("invalid path {path:?}: expected it to start with /"),
        );
    }
    if method.is_empty() || !method.bytes().all(|c| c.is_ascii_uppercase()) {
        p.push(&at.key("method"), format!("invalid method {method:?}"));
    }
    p.expect(&at.key("port"), "an integer from 1 to 65535");
    let port = h.port.and_then(|n| {
        u16::try_from(n).ok().filter(|n| *n > 0).or_else(|| {
            p.push(
                &at.key("port"),
                format!("port {n} out of range: expected 1 to 65535"),
            );
            None
        })
    });
    let expect_status = match h.expect_status.as_deref() {
        None => (200, 399),
        Some(s) => parse_status_range(s).unwrap_or_else(|| {
            p.push(
                &at.key("expect_status"),
                format!("invalid status range {s:?}: expected e.g. \"200\" or \"200-399\""),
            );
            (200, 399)
        }),
    };
    let interval = duration(
        h.interval.as_ref(),
        &at.key("interval"),
        Duration::from_secs(2),
        p,
    );
    let timeout = duration(
        h.timeout.as_ref(),
        &at.key("timeout"),
        Duration::from_secs(2),
        p,
    );
    if interval.is_zero() {
        p.push(&at.key("interval"), "expected a duration above zero");
    }
    if timeout.is_zero() {
        p.push(&at.key("timeout"), "expected a duration above zero");
    }
    let initially_healthy = match h.initial.as_deref() {
        None | Some("unknown") => false,
        Some("healthy") => true,
        Some(o) => {
            p.push(
                &at.key("initial"),
                format!("unknown value {o:?}: expected \"unknown\" or \"healthy\""),
            );
            false
        }
    };
    HealthCheckSpec {
        kind,
        method,
        path,
        http10,
        port,
        host: h.host.clone(),
        expect_status,
        interval,
        timeout,
        healthy_threshold: positive(h.healthy_threshold, &at.key("healthy_threshold"), 2, 100, p)
            as u32,
        unhealthy_threshold: positive(
            h.unhealthy_threshold,
            &at.key("unhealthy_threshold"),
            3,
            100,
            p,
        ) as u32,
        initially_healthy,
    }
}

fn parse_status_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    ((100..=599).contains(&a) && (a..=599).contains(&b)).then_some((a, b))
}

/// Passive health settings; absent fields take [`OutlierSpec::default`].
pub(super) fn outlier(o: &raw::OutlierDetection, at: &FieldPath, p: &mut Problems) -> OutlierSpec {
    let d = OutlierSpec::default();
    let consecutive_failures = positive(
        o.consecutive_failures,
        &at.key("consecutive_failures"),
        d.consecutive_failures as usize,
        10_000,
        p,
    ) as u32;
    let base_ejection = duration_at_most(
        o.base_ejection.as_ref(),
        &at.key("base_ejection"),
        d.base_ejection,
        MAX_PERIOD,
        p,
    );
    if base_ejection.is_zero() {
        p.push(&at.key("base_ejection"), "expected a duration above zero");
    }
    let max_ejection = match &o.max_ejection {
        // An explicit short base without an explicit maximum keeps the ratio of the defaults.
        None => d.max_ejection.max(base_ejection),
        Some(_) => duration_at_most(
            o.max_ejection.as_ref(),
            &at.key("max_ejection"),
            d.max_ejection,
            MAX_PERIOD,
            p,
        ),
    };
    if max_ejection < base_ejection {
        p.push(
            &at.key("max_ejection"),
            "expected a duration at least as long as base_ejection",
        );
    }
    let max_ejection_percent = o
        .max_ejection_percent
        .and_then(|n| integer(n, &at.key("max_ejection_percent"), 0, 100, p))
        .map_or(d.max_ejection_percent, |n| n as u32);
    p.expect(&at.key("max_ejection_percent"), "an integer from 0 to 100");
    OutlierSpec {
        enabled: o.enabled.unwrap_or(d.enabled),
        consecutive_failures,
        base_ejection,
        max_ejection,
        max_ejection_percent,
    }
}

/// A slow-start window; `"0s"` is kept as zero, which turns it off (also on a stack whose
/// service has one).
pub(super) fn slow_start(s: Option<&String>, at: &FieldPath, p: &mut Problems) -> Option<Duration> {
    optional_duration(s, at, MAX_TIMEOUT, p)
}

#[cfg(test)]
mod tests;
