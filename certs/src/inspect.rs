//! `switchyard certs inspect FILE`: the facts an operator checks about a certificate file.
//!
//! Reads the first certificate of a PEM file (or a raw DER file) and never loads a key.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::load::{
    CertLoadError, fingerprint_sha256, parse_x509, read_chain, seconds_until, system_time,
};

/// What `certs inspect` shows about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject distinguished name, e.g. `CN=example.test`.
    pub subject: String,
    /// Subject alternative names: DNS names as written, IP addresses in text form.
    pub sans: Vec<String>,
    /// Issuer distinguished name.
    pub issuer: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Whole days until `not_after`, negative once expired.
    pub days_left: i64,
    /// Public key type, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_type: String,
    /// SHA-256 fingerprint, openssl's form.
    pub fingerprint_sha256: String,
}

/// Reads the first certificate of `path` (PEM, or DER when the file holds no PEM block).
pub fn inspect(path: &Path) -> Result<CertInfo, CertLoadError> {
    let der = match read_chain(path) {
        Ok(mut chain) => chain.swap_remove(0),
        Err(CertLoadError::NoCertificate { .. }) => {
            let bytes = std::fs::read(path).map_err(|source| CertLoadError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            CertificateDer::from(bytes)
        }
        Err(err) => return Err(err),
    };
    let cert = parse_x509(der.as_ref()).map_err(|source| CertLoadError::Certificate {
        path: path.to_path_buf(),
        source,
    })?;
    let mut sans = Vec::new();
    let san = cert
        .subject_alternative_name()
        .map_err(|source| CertLoadError::Certificate {
            path: path.to_path_buf(),
            source,
        })?;
    for name in san.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::DNSName(dns) => sans.push((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => sans.push(ip_text(bytes)),
            _ => {}
        }
    }
    let not_after = system_time(cert.validity().not_after.timestamp());
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        sans,
        issuer: cert.issuer().to_string(),
        not_before: system_time(cert.validity().not_before.timestamp()),
        not_after,
        days_left: seconds_until(not_after).div_euclid(86_400),
        key_type: key_type(cert.public_key()),
        fingerprint_sha256: fingerprint_sha256(der.as_ref()),
    })
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "subject: {}", self.subject)?;
        writeln!(f, "sans: {}", self.sans.join(", "))?;
        writeln!(f, "issuer: {}", self.issuer)?;
        writeln!(f, "not_before: {}", Utc(self.not_before))?;
        writeln!(f, "not_after: {}", Utc(self.not_after))?;
        writeln!(f, "days_left: {}", self.days_left)?;
        writeln!(f, "key_type: {}", self.key_type)?;
        writeln!(f, "fingerprint_sha256: {}", self.fingerprint_sha256)
    }
}

/// Formats a `SystemTime` as RFC 3339 UTC, e.g. `2030-01-31T12:00:00Z`.
pub(crate) struct Utc(pub(crate) SystemTime);

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

fn ip_text(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        IpAddr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        IpAddr::from(v6).to_string()
    } else {
        format!("invalid ip ({} bytes)", bytes.len())
    }
}

/// Human name of a public key: algorithm plus curve or modulus size.
fn key_type(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let algorithm = &spki.algorithm.algorithm;
    if *algorithm == OID_PKCS1_RSAENCRYPTION || *algorithm == OID_PKCS1_RSASSAPSS {
        let name = if *algorithm == OID_PKCS1_RSAENCRYPTION {
            "RSA"
        } else {
            "RSA-PSS"
        };
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                format!("{name} {}", modulus_bits(rsa.modulus))
            }
            _ => name.to_owned(),
        };
    }
    if *algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => "ECDSA P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
            Some(c) if c == OID_NIST_EC_P521 => "ECDSA P-521".to_owned(),
            Some(c) => format!("ECDSA {c}"),
            None => "ECDSA".to_owned(),
        };
    }
    if *algorithm == OID_SIG_ED25519 {
        return "Ed25519".to_owned();
    }
    if *algorithm == OID_SIG_ED448 {
        return "Ed448".to_owned();
    }
    format!("unknown ({algorithm})")
}

/// Bit length of a big-endian unsigned modulus, ignoring DER's leading zero bytes.
fn modulus_bits(modulus: &[u8]) -> usize {
    let significant = modulus
        .iter()
        .position(|b| *b != 0)
        .map_or(&[][..], |i| &modulus[i..]);
    match significant.first() {
        Some(first) => significant.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}
