//! `Idempotency-Key` on `POST /v1/services/{service}/deployments`: a CI job that retries a
//! request (a timeout, a dropped connection) gets the deployment its first attempt started
//! instead of a second one (or a 409).
//!
//! The key is remembered durably through the [`Store`](crate::Store) for
//! [`IDEMPOTENCY_TTL`](crate::IDEMPOTENCY_TTL), with the deployment id and a digest of the
//! decoded body: the same key with the same body answers 200 with that deployment; with
//! another body, 422 `idempotency_key_reused`. Requests with a key are serialised (look-up,
//! start, remember) so two racing retries cannot both start one.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::deploy::DeploymentSpec;
use crate::error::ApiError;
use crate::store::IdempotencyRecord;

/// The header.
pub(crate) const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub(crate) const MAX_LEN: usize = 255;
/// What a key may be, for the OpenAPI document: visible ASCII, 1 to 255 characters.
pub(crate) const PATTERN: &str = "^[!-~]{1,255}$";

/// The key of the request, if it has one; 400 when it is not 1 to 255 visible ASCII
/// characters.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::Invalid(format!(
            "Idempotency-Key: expected 1 to {MAX_LEN} visible ASCII characters, such as a UUID"
        ))
    };
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_LEN || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(bad());
    }
    let text = value.to_str().map_err(|_| bad())?;
    Ok(Some(text.to_owned()))
}

/// Hex SHA-256 of the request as decoded, so a retry that only changes whitespace or key
/// order counts as the same body.
pub(crate) fn digest(spec: &DeploymentSpec) -> Result<String, ApiError> {
    let bytes = serde_json::to_vec(spec).map_err(ApiError::internal)?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// What a remembered key says about this request: `Some(id)` to answer with deployment
/// `id`, or 422 when the body differs.
pub(crate) fn replay(found: &IdempotencyRecord, digest: &str) -> Result<u64, ApiError> {
    if found.body_sha256 == digest {
        Ok(found.deployment)
    } else {
        Err(ApiError::IdempotencyKeyReused(format!(
            "Idempotency-Key {:?} was used at {} for another request body (deployment {}); use a new key for a new request",
            found.key, found.created_at, found.deployment
        )))
    }
}
