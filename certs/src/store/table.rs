//! The immutable name table of one store generation: every loaded pair in configuration order,
//! an exact-name map and a wildcard map keyed by the suffix after `*.`.
//!
//! Invariants: keys are lowercase without trailing dot; when two pairs claim a name the one
//! configured first wins, so the table is a pure function of the ordered pairs. A table is built
//! off the handshake path and never mutated after it is published.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use tracing::debug;

use crate::load::LoadedCert;

/// Name lookup over one set of loaded pairs.
#[derive(Debug)]
pub(crate) struct Table {
    /// One entry per configured source, same order; the first is the default.
    pub(crate) certs: Vec<Arc<LoadedCert>>,
    exact: HashMap<String, usize>,
    /// `*.example.test` is stored as `example.test`.
    wildcard: HashMap<String, usize>,
}

impl Table {
    /// Indexes the SAN names of `certs`; the first pair to claim a name keeps it.
    pub(crate) fn build(certs: Vec<Arc<LoadedCert>>) -> Self {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (index, cert) in certs.iter().enumerate() {
            for name in &cert.dns_names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(suffix) => (&mut wildcard, suffix),
                    None => (&mut exact, name.as_str()),
                };
                // A `*` anywhere else (`a*.x`, `*`) is a pattern rustls clients would not
                // accept either; such names are never served.
                if key.is_empty() || key.contains('*') {
                    debug!(name = %name, cert = %cert.source.cert.display(), "ignoring unsupported name pattern");
                    continue;
                }
                match map.entry(key.to_owned()) {
                    Entry::Vacant(slot) => {
                        slot.insert(index);
                    }
                    Entry::Occupied(_) => {
                        debug!(name = %name, cert = %cert.source.cert.display(), "name already served by an earlier certificate");
                    }
                }
            }
        }
        Self {
            certs,
            exact,
            wildcard,
        }
    }

    /// The pair serving `server_name`: an exact SAN, else a wildcard covering exactly one more
    /// label. Case-insensitive; a trailing dot is ignored.
    pub(crate) fn lookup(&self, server_name: &str) -> Option<&Arc<LoadedCert>> {
        let name = server_name.strip_suffix('.').unwrap_or(server_name);
        // rustls already lowercases the SNI it hands us, so this allocation is the rare path.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup_lowercase(&name.to_ascii_lowercase());
        }
        self.lookup_lowercase(name)
    }

    fn lookup_lowercase(&self, name: &str) -> Option<&Arc<LoadedCert>> {
        let index = match self.exact.get(name) {
            Some(index) => Some(*index),
            None => match name.split_once('.') {
                Some((label, parent)) if !label.is_empty() && !parent.is_empty() => {
                    self.wildcard.get(parent).copied()
                }
                _ => None,
            },
        };
        index.and_then(|i| self.certs.get(i))
    }

    /// The pair served when no name matches: the first configured.
    pub(crate) fn default_cert(&self) -> Option<&Arc<LoadedCert>> {
        self.certs.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::CertSource;
    use rustls::sign::{CertifiedKey, SigningKey};
    use std::path::PathBuf;
    use std::time::SystemTime;

    fn cert(names: &[&str]) -> Arc<LoadedCert> {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("pkcs8");
        let signing: Arc<dyn SigningKey> =
            rustls::crypto::aws_lc_rs::sign::any_supported_type(&der).expect("signing key");
        Arc::new(LoadedCert {
            certified: Arc::new(CertifiedKey::new(Vec::new(), signing)),
            dns_names: names.iter().map(|n| (*n).to_owned()).collect(),
            not_after: SystemTime::now(),
            fingerprint_sha256: names.join(","),
            source: CertSource {
                cert: PathBuf::from("c.pem"),
                key: PathBuf::from("k.pem"),
            },
        })
    }

    fn found(table: &Table, name: &str) -> Option<String> {
        table.lookup(name).map(|c| c.fingerprint_sha256.clone())
    }

    #[test]
    fn wildcard_covers_exactly_one_label() {
        let table = Table::build(vec![cert(&["*.example.test"])]);
        assert_eq!(
            found(&table, "a.example.test").as_deref(),
            Some("*.example.test")
        );
        assert_eq!(
            found(&table, "A.Example.TEST.").as_deref(),
            Some("*.example.test")
        );
        assert_eq!(found(&table, "example.test"), None);
        assert_eq!(found(&table, "a.b.example.test"), None);
        assert_eq!(found(&table, ".example.test"), None);
    }

    #[test]
    fn exact_name_beats_wildcard_and_first_pair_wins() {
        let table = Table::build(vec![
            cert(&["*.example.test"]),
            cert(&["www.example.test"]),
            cert(&["www.example.test", "other.test"]),
        ]);
        assert_eq!(
            found(&table, "www.example.test").as_deref(),
            Some("www.example.test")
        );
        assert_eq!(
            found(&table, "other.test").as_deref(),
            Some("www.example.test,other.test")
        );
        assert_eq!(
            table.default_cert().map(|c| c.fingerprint_sha256.as_str()),
            Some("*.example.test")
        );
    }

    #[test]
    fn unsupported_patterns_are_never_served() {
        let table = Table::build(vec![cert(&["*", "a*.example.test", "*.*.test"])]);
        assert_eq!(found(&table, "ab.example.test"), None);
        assert_eq!(found(&table, "x.y.test"), None);
        assert_eq!(found(&table, "*"), None);
    }
}
