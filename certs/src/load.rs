//! Loading one configured certificate/key pair: the PEM chain and private key are read, the key
//! is checked against the leaf, and the leaf's names, expiry and fingerprint are extracted.
//!
//! Invariant: a `LoadedCert` always holds a non-empty chain whose leaf matches its key. An
//! expired certificate still loads (with a warning) so that an operator's mistake degrades
//! clients instead of taking the listener down. This module does blocking file I/O, keeps no
//! state and never decides what is served.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls::{Error as RustlsError, InconsistentKeys};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tracing::{debug, warn};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// One cert/key pair as configured.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertSource {
    /// PEM file with the leaf certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// A loaded, checked pair.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The chain and signing key handed to rustls.
    pub certified: Arc<CertifiedKey>,
    /// DNS names from the leaf's SAN list, lowercased, without trailing dot; may hold `*.x`.
    pub dns_names: Vec<String>,
    /// End of the leaf's validity.
    pub not_after: SystemTime,
    /// SHA-256 of the leaf DER, uppercase hex pairs joined by `:` like openssl prints it.
    pub fingerprint_sha256: String,
    /// The files this pair was read from.
    pub source: CertSource,
}

impl LoadedCert {
    /// Seconds from now until `not_after`; negative once the certificate has expired.
    pub fn seconds_until_expiry(&self) -> i64 {
        seconds_until(self.not_after)
    }
}

/// Why a certificate or key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertLoadError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// File that failed.
        path: PathBuf,
        /// I/O cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("cannot parse pem in {}", path.display())]
    Pem {
        /// File that failed.
        path: PathBuf,
        /// PEM cause.
        #[source]
        source: pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("no certificate found in {}", path.display())]
    NoCertificate {
        /// File that failed.
        path: PathBuf,
    },
    /// The certificate file holds a private key instead (the two files mixed up).
    #[error("{} holds a private key, not a certificate", path.display())]
    KeyNotCertificate {
        /// File that failed.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error("no private key found in {}", path.display())]
    NoKey {
        /// File that failed.
        path: PathBuf,
    },
    /// The leaf certificate is not valid X.509.
    #[error("cannot parse certificate in {}", path.display())]
    Certificate {
        /// File that failed.
        path: PathBuf,
        /// Parser cause.
        #[source]
        source: X509Error,
    },
    /// rustls refused the leaf certificate.
    #[error("certificate in {} is not usable", path.display())]
    CertificateRejected {
        /// File that failed.
        path: PathBuf,
        /// rustls cause.
        #[source]
        source: RustlsError,
    },
    /// The private key is malformed or of an unsupported type.
    #[error("unsupported or invalid private key in {}", path.display())]
    Key {
        /// File that failed.
        path: PathBuf,
        /// rustls cause.
        #[source]
        source: RustlsError,
    },
    /// The private key belongs to another certificate.
    #[error("private key in {} does not match certificate {}", key.display(), cert.display())]
    KeyMismatch {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
    },
    /// A store was asked to serve no certificate at all.
    #[error("no certificate configured")]
    NoSources,
}

impl CertLoadError {
    /// The file the error is about (the key file for a mismatch), if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::Pem { path, .. }
            | Self::NoCertificate { path }
            | Self::KeyNotCertificate { path }
            | Self::NoKey { path }
            | Self::Certificate { path, .. }
            | Self::CertificateRejected { path, .. }
            | Self::Key { path, .. } => Some(path),
            Self::KeyMismatch { key, .. } => Some(key),
            Self::NoSources => None,
        }
    }
}

/// Loads and checks one pair: PEM chain (leaf first) and private key (PKCS#8, PKCS#1 RSA or
/// SEC1 EC; RSA, ECDSA P-256/P-384 or Ed25519). The key must match the leaf. An expired
/// certificate loads with a warning. Every error names the file at fault.
pub fn load_pair(src: &CertSource) -> Result<LoadedCert, CertLoadError> {
    let chain = read_chain(&src.cert)?;
    let leaf = chain.first().ok_or_else(|| CertLoadError::NoCertificate {
        path: src.cert.clone(),
    })?;
    let facts = LeafFacts::parse(leaf.as_ref(), &src.cert)?;
    let key = read_key(&src.key)?;
    let certified = certify(chain, key, src)?;

    let now = SystemTime::now();
    if facts.not_after < now {
        warn!(cert = %src.cert.display(), not_after = %crate::inspect::Utc(facts.not_after), "certificate has expired");
    } else if facts.not_before > now {
        warn!(cert = %src.cert.display(), not_before = %crate::inspect::Utc(facts.not_before), "certificate is not yet valid");
    }
    if facts.dns_names.is_empty() {
        warn!(cert = %src.cert.display(), "certificate has no dns name in its subject alternative names");
    }

    Ok(LoadedCert {
        fingerprint_sha256: facts.fingerprint_sha256,
        dns_names: facts.dns_names,
        not_after: facts.not_after,
        certified: Arc::new(certified),
        source: src.clone(),
    })
}

/// SHA-256 fingerprint of a DER blob as uppercase hex pairs joined by `:` (openssl's form).
pub fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        write!(out, "{byte:02X}").expect("writing to a String cannot fail");
    }
    out
}

/// Reads every `CERTIFICATE` block of a PEM file, in order.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertLoadError> {
    let bytes = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CertLoadError::Pem {
            path: path.to_path_buf(),
            source,
        })?;
    if chain.is_empty() {
        let path = path.to_path_buf();
        return Err(if PrivateKeyDer::from_pem_slice(&bytes).is_ok() {
            CertLoadError::KeyNotCertificate { path }
        } else {
            CertLoadError::NoCertificate { path }
        });
    }
    Ok(chain)
}

/// Reads the first private key block (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertLoadError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| match err {
        pem::Error::NoItemsFound => CertLoadError::NoKey {
            path: path.to_path_buf(),
        },
        source => CertLoadError::Pem {
            path: path.to_path_buf(),
            source,
        },
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, CertLoadError> {
    std::fs::read(path).map_err(|source| CertLoadError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Builds the rustls `CertifiedKey` and proves the key belongs to the leaf by comparing the
/// SubjectPublicKeyInfo the key derives with the leaf's.
fn certify(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    src: &CertSource,
) -> Result<CertifiedKey, CertLoadError> {
    let signing_key = crate::crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| CertLoadError::Key {
            path: src.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        // The provider cannot derive a public key for this key type, so the check is not
        // possible; rustls itself accepts such keys (`CertifiedKey::from_der`).
        Err(RustlsError::InconsistentKeys(InconsistentKeys::Unknown)) => {
            debug!(key = %src.key.display(), "cannot check key against certificate");
            Ok(certified)
        }
        Err(RustlsError::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(CertLoadError::KeyMismatch {
                cert: src.cert.clone(),
                key: src.key.clone(),
            })
        }
        Err(source) => Err(CertLoadError::CertificateRejected {
            path: src.cert.clone(),
            source,
        }),
    }
}

/// What the store needs from a leaf certificate.
struct LeafFacts {
    dns_names: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
    fingerprint_sha256: String,
}

impl LeafFacts {
    fn parse(der: &[u8], path: &Path) -> Result<Self, CertLoadError> {
        let invalid = |source| CertLoadError::Certificate {
            path: path.to_path_buf(),
            source,
        };
        let cert = parse_x509(der).map_err(invalid)?;
        let validity = cert.validity();
        Ok(Self {
            dns_names: dns_names(&cert).map_err(invalid)?,
            not_before: system_time(validity.not_before.timestamp()),
            not_after: system_time(validity.not_after.timestamp()),
            fingerprint_sha256: fingerprint_sha256(der),
        })
    }
}

/// Parses one DER certificate, flattening nom's wrapper into the X.509 error.
pub(crate) fn parse_x509(der: &[u8]) -> Result<X509Certificate<'_>, X509Error> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(x509_parser::nom::Err::Error(err) | x509_parser::nom::Err::Failure(err)) => Err(err),
        Err(x509_parser::nom::Err::Incomplete(_)) => Err(X509Error::InvalidCertificate),
    }
}

/// DNS names of the SAN extension, lowercased and without trailing dot, deduplicated in order.
fn dns_names(cert: &X509Certificate<'_>) -> Result<Vec<String>, X509Error> {
    let mut names: Vec<String> = Vec::new();
    if let Some(san) = cert.subject_alternative_name()? {
        for general in &san.value.general_names {
            if let GeneralName::DNSName(name) = general {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    Ok(names)
}

/// Converts a Unix timestamp (possibly before 1970) into a `SystemTime`.
pub(crate) fn system_time(unix_secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_secs.unsigned_abs());
    if unix_secs >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// Whole seconds from now until `at`, negative when `at` is in the past.
pub(crate) fn seconds_until(at: SystemTime) -> i64 {
    let now = SystemTime::now();
    match at.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => i64::try_from(behind.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
