//! Self-signed certificate generation for `switchyard certs self-signed` and for tests.
//!
//! Files are written atomically (temporary file in the target directory, then rename), so a
//! watcher never reads half a file; the key file is created with mode 0600 from the start
//! rather than narrowed after its secret is on disk.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SignatureAlgorithm};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::load::fingerprint_sha256;

/// Key algorithm of a generated certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 (`ecdsa-p256`).
    #[default]
    EcdsaP256,
    /// RSA 2048-bit with PKCS#1 v1.5 SHA-256 signatures (`rsa2048`).
    Rsa2048,
    /// Ed25519 (`ed25519`).
    Ed25519,
}

impl KeyType {
    /// The name accepted by [`FromStr`] and printed by [`fmt::Display`].
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::Rsa2048 => "rsa2048",
            Self::Ed25519 => "ed25519",
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key type name other than `ecdsa-p256`, `rsa2048` or `ed25519`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key type {0:?}: the accepted key types are ecdsa-p256, rsa2048 and ed25519")]
pub struct ParseKeyTypeError(pub String);

impl FromStr for KeyType {
    type Err = ParseKeyTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "ecdsa-p256" => Ok(Self::EcdsaP256),
            "rsa2048" => Ok(Self::Rsa2048),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(ParseKeyTypeError(s.to_owned())),
        }
    }
}

/// Files written by [`self_signed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The PEM certificate.
    pub cert_path: PathBuf,
    /// The PKCS#8 PEM private key (mode 0600).
    pub key_path: PathBuf,
    /// SHA-256 fingerprint of the certificate, openssl's form.
    pub fingerprint_sha256: String,
}

/// Why a self-signed certificate could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    /// No name was given.
    #[error("at least one name is needed")]
    NoNames,
    /// A name is not a DNS name, wildcard or IP address usable in a SAN and a file name.
    #[error("invalid certificate name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
    },
    /// A validity of zero days was asked for.
    #[error("validity must be at least one day")]
    NoValidity,
    /// Key or certificate generation failed.
    #[error("cannot generate {key_type} certificate")]
    Generate {
        /// Requested key type.
        key_type: KeyType,
        /// rcgen cause.
        #[source]
        source: rcgen::Error,
    },
    /// A file or the output directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The path that failed.
        path: PathBuf,
        /// I/O cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `DIR/NAME.crt` and `DIR/NAME.key` (NAME = first name, `*` spelled `wildcard`) with
/// every name as a SAN, valid `days` days from now; the key file has mode 0600. The directory
/// is created if missing.
pub fn self_signed(
    names: &[String],
    days: u32,
    key_type: KeyType,
    out_dir: &Path,
) -> Result<SelfSigned, CertGenError> {
    let first = names.first().ok_or(CertGenError::NoNames)?;
    for name in names {
        check_name(name)?;
    }
    if days == 0 {
        return Err(CertGenError::NoValidity);
    }
    let generate_err = |source| CertGenError::Generate { key_type, source };

    let key = KeyPair::generate_for(key_type.algorithm()).map_err(generate_err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate_err)?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, first.as_str());
    params.distinguished_name = subject;
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + TimeDuration::days(i64::from(days));
    let cert = params.self_signed(&key).map_err(generate_err)?;

    std::fs::create_dir_all(out_dir).map_err(|source| CertGenError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let stem = file_stem(first);
    let cert_path = out_dir.join(format!("{stem}.crt"));
    let key_path = out_dir.join(format!("{stem}.key"));
    write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok(SelfSigned {
        fingerprint_sha256: fingerprint_sha256(cert.der()),
        cert_path,
        key_path,
    })
}

/// Accepts DNS names (optionally `*.` wildcards) and IP addresses; anything else, notably a
/// path separator, is refused before it can become part of a file name.
fn check_name(name: &str) -> Result<(), CertGenError> {
    let invalid = || CertGenError::InvalidName {
        name: name.to_owned(),
    };
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let host = name.strip_prefix("*.").unwrap_or(name);
    let labels_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if labels_ok { Ok(()) } else { Err(invalid()) }
}

fn file_stem(name: &str) -> String {
    name.replace('*', "wildcard").replace(':', "_")
}

/// Writes `content` to a temporary file created with `mode` in the same directory, then
/// renames it over `path`.
fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<(), CertGenError> {
    let write_err = |source| CertGenError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".switchyard-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode; // Only unix has permission bits to set.
    let mut file = builder.tempfile_in(dir).map_err(write_err)?;
    file.write_all(content).map_err(write_err)?;
    file.as_file().sync_all().map_err(write_err)?;
    file.persist(path).map_err(|err| write_err(err.error))?;
    Ok(())
}
