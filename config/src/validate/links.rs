//! Rules that link tables: every listener a service names exists, no two services claim one
//! route, and the control listener is open to the network only behind tokens.

use crate::error::{FieldPath, Problems};
use crate::model::{ListenerSpec, Name};
use crate::raw;
use crate::service::ServiceSpec;
use crate::settings::{ControlSpec, TokenSpec};
use std::collections::{HashMap, HashSet};

/// A control API on a non-loopback address needs tokens: without any, every caller would be
/// an anonymous admin on the network. Checked here so `check` refuses what `serve` would.
pub(super) fn check_listen_policy(
    control: &ControlSpec,
    tokens: &[TokenSpec],
    at: &FieldPath,
    p: &mut Problems,
) {
    if tokens.is_empty() && !control.listen.ip().is_loopback() {
        p.push(
            at,
            format!(
                "control listener {} is not loopback and no token is configured: add [[tokens]] (see `switchyard token new`) or listen on 127.0.0.1",
                control.listen
            ),
        );
    }
}

/// Every listener a service names exists. Checked on the raw names, so a service is checked
/// even when it or a listener has other problems.
pub(super) fn check_listener_references(
    listeners: &[raw::Listener],
    services: &[raw::Service],
    p: &mut Problems,
) {
    let known: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
    let named = services
        .iter()
        .map(|s| s.listeners.iter().map(String::as_str).collect());
    unknown_listeners(&known, named, p);
}

/// Reports each listener name not in `known`; `named` gives each service's names in order.
fn unknown_listeners<'a>(
    known: &[&str],
    named: impl Iterator<Item = Vec<&'a str>>,
    p: &mut Problems,
) {
    for (i, names) in named.enumerate() {
        for (j, l) in names.into_iter().enumerate() {
            if !known.contains(&l) {
                p.push(
                    &FieldPath::root()
                        .key("services")
                        .index(i)
                        .key("listeners")
                        .index(j),
                    format!("unknown listener {l:?}: expected one of {known:?}"),
                );
            }
        }
    }
}

/// Cross-service rules on a model that may be incomplete: known listeners and the rules of
/// [`check_routes`]. Used when the set of services changes at runtime.
pub(crate) fn check_services(
    listeners: &[ListenerSpec],
    services: &[ServiceSpec],
    p: &mut Problems,
) {
    let known: Vec<&str> = listeners.iter().map(|x| x.name.as_str()).collect();
    let named = services
        .iter()
        .map(|s| s.listeners.iter().map(Name::as_str).collect());
    unknown_listeners(&known, named, p);
    let indexed: Vec<(usize, ServiceSpec)> = services.iter().cloned().enumerate().collect();
    check_routes(&indexed, p);
}

/// Unique service names and no two services on one route; each service with its index in
/// the file.
pub(super) fn check_routes(services: &[(usize, ServiceSpec)], p: &mut Problems) {
    let mut names = HashSet::new();
    let mut routes: HashMap<(String, String, String), &str> = HashMap::new();
    for (i, s) in services {
        let at = FieldPath::root().key("services").index(*i);
        if !names.insert(s.name.as_str()) {
            p.push(
                &at.key("name"),
                format!("duplicate service name {:?}", s.name.as_str()),
            );
        }
        for l in &s.listeners {
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
