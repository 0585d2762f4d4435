//! The `[store]` table: the local state folder (default) or an etcd cluster.

use super::{duration_at_most, resolve};
use crate::error::{FieldPath, Problems};
use crate::model::CertPaths;
use crate::raw;
use crate::settings::{EtcdSpec, EtcdTls, StoreSpec};
use std::path::Path;
use std::time::Duration;

/// Default `lease_ttl`: an instance that died stops holding its locks after this long.
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// etcd grants leases in whole seconds; an hour is plenty for any takeover.
const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);

/// Validates `[store]`; absent means [`StoreSpec::Local`].
pub(super) fn store(
    s: Option<&raw::Store>,
    at: &FieldPath,
    base: &Path,
    p: &mut Problems,
) -> StoreSpec {
    let Some(s) = s else {
        return StoreSpec::Local;
    };
    let etcd_only = [
        ("endpoints", s.endpoints.is_some()),
        ("prefix", s.prefix.is_some()),
        ("user", s.user.is_some()),
        ("password", s.password.is_some()),
        ("lease_ttl", s.lease_ttl.is_some()),
        ("tls", s.tls.is_some()),
    ];
    match s.kind.as_deref() {
        None | Some("local") => {
            for (key, given) in etcd_only {
                if given {
                    p.push(&at.key(key), "only used with kind = \"etcd\"");
                }
            }
            StoreSpec::Local
        }
        Some("etcd") => StoreSpec::Etcd(etcd(s, at, base, p)),
        Some(o) => {
            p.push(
                &at.key("kind"),
                format!("unknown store kind {o:?}: expected \"local\" or \"etcd\""),
            );
            StoreSpec::Local
        }
    }
}

fn etcd(s: &raw::Store, at: &FieldPath, base: &Path, p: &mut Problems) -> EtcdSpec {
    let endpoints = s.endpoints.clone().unwrap_or_default();
    if endpoints.is_empty() {
        p.push(
            &at.key("endpoints"),
            "expected at least one etcd URL such as \"http://127.0.0.1:2379\"",
        );
    }
    for (i, e) in endpoints.iter().enumerate() {
        let rest = e
            .strip_prefix("http://")
            .or_else(|| e.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| {
            let r = r.trim_end_matches('/');
            r.rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        });
        if !ok {
            p.push(
                &at.key("endpoints").index(i),
                format!("invalid etcd URL {e:?}: expected http://host:port or https://host:port"),
            );
        }
    }
    let prefix = s
        .prefix
        .clone()
        .unwrap_or_else(|| "/switchyard/".to_owned());
    if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2 {
        p.push(
            &at.key("prefix"),
            format!("invalid prefix {prefix:?}: expected a key prefix such as \"/switchyard/prod/\" (starts and ends with /)"),
        );
    }
    let auth = match (&s.user, &s.password) {
        (Some(u), Some(pw)) => Some((u.clone(), pw.clone())),
        (None, None) => None,
        (Some(_), None) => {
            p.push(&at.key("password"), "expected with user");
            None
        }
        (None, Some(_)) => {
            p.push(&at.key("user"), "expected with password");
            None
        }
    };
    let lease_ttl = duration_at_most(
        s.lease_ttl.as_ref(),
        &at.key("lease_ttl"),
        DEFAULT_LEASE_TTL,
        MAX_LEASE_TTL,
        p,
    );
    if lease_ttl < Duration::from_secs(1) {
        p.push(&at.key("lease_ttl"), "expected at least 1s");
    }
    let tls = s.tls.as_ref().map(|t| {
        let at = at.key("tls");
        let identity = match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => Some(CertPaths {
                cert: resolve(base, cert),
                key: resolve(base, key),
            }),
            (None, None) => None,
            (Some(_), None) => {
                p.push(&at.key("key"), "expected with cert");
                None
            }
            (None, Some(_)) => {
                p.push(&at.key("cert"), "expected with key");
                None
            }
        };
        EtcdTls {
            ca: t.ca.as_deref().map(|c| resolve(base, c)),
            identity,
        }
    });
    if tls.is_some() && endpoints.iter().any(|e| e.starts_with("http://")) {
        p.push(
            &at.key("tls"),
            "TLS is set but an endpoint is http://: use https:// endpoints",
        );
    }
    EtcdSpec {
        endpoints,
        prefix,
        auth,
        lease_ttl,
        tls,
    }
}
