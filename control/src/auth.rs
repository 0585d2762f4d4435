//! Tokens and roles: who is calling, and may they do this.
//!
//! A caller presents `Authorization: Bearer SECRET`; the SHA-256 of the secret is compared in
//! constant time with every configured token's hash (never the secret itself, which is neither
//! stored nor logged). Roles are ordered `read < operate < deploy < admin`; a token may also be
//! limited to services by glob (`auth-*`, `*`). With no token configured at all the API is open
//! and every caller is `anonymous` with the admin role: the configuration's validation
//! (`switchyard_config::parse`) makes sure that only happens on a loopback listener.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use rand::RngCore;
use sha2::{Digest, Sha256};
use switchyard_config::{Role, TokenSpec};

use crate::error::ApiError;
use crate::state::ControlState;

/// The name recorded for callers when the API is open (no token configured).
pub const ANONYMOUS: &str = "anonymous";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: String,
    role: Role,
    services: Vec<String>,
}

impl Caller {
    /// The token's name (`anonymous` when the API is open), as recorded in the history.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The caller's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The service globs the token is limited to; empty means every service.
    pub(crate) fn services(&self) -> &[String] {
        &self.services
    }

    /// Checks the caller has at least `need` and, when a service is concerned, may touch it.
    pub(crate) fn authorize(&self, need: Role, service: Option<&str>) -> Result<(), ApiError> {
        if self.role < need {
            return Err(ApiError::Forbidden(format!(
                "token {:?} has role {}; this needs {}",
                self.name,
                self.role.as_str(),
                need.as_str()
            )));
        }
        match service {
            Some(s) if !self.may_see(s) => Err(ApiError::Forbidden(format!(
                "token {:?} is not allowed on service {s:?}",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the token may see every service.
    pub(crate) fn may_see_all(&self) -> bool {
        self.services.is_empty() || self.services.iter().any(|g| g == "*")
    }

    /// Whether the token's service globs cover `service`.
    pub(crate) fn may_see(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|g| glob_match(g, service))
    }
}

impl FromRequestParts<ControlState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ControlState,
    ) -> Result<Self, Self::Rejection> {
        let config = state.desired();
        let caller = authenticate(config.tokens(), parts.headers.get(header::AUTHORIZATION));
        if caller.is_err() {
            tracing::warn!(method = %parts.method, path = %parts.uri.path(), "control request without a valid token");
        }
        caller
    }
}

/// Finds the token whose hash matches the bearer secret in `authorization`.
pub(crate) fn authenticate(
    tokens: &[TokenSpec],
    authorization: Option<&HeaderValue>,
) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Ok(Caller {
            name: ANONYMOUS.to_owned(),
            role: Role::Admin,
            services: Vec::new(),
        });
    }
    let secret = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim())
        .filter(|s| !s.is_empty())
        .ok_or(ApiError::Unauthorized)?;
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    // Compare against every token without stopping early, so timing tells nothing.
    let mut found = None;
    for t in tokens {
        if constant_time_eq(&t.sha256, &digest) {
            found = Some(t);
        }
    }
    let t = found.ok_or(ApiError::Unauthorized)?;
    Ok(Caller {
        name: t.name.as_str().to_owned(),
        role: t.role,
        services: t.services.clone(),
    })
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Matches `name` against a glob where `*` stands for any run of characters.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty(); // no `*`: exact match
    };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A fresh random token: the secret to hand to the client once, and the hex SHA-256 to put in
/// the configuration (`sha256 = "..."`).
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("sy_{}", hex::encode(bytes));
    let hash = hex::encode(Sha256::digest(secret.as_bytes()));
    (secret, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::Name;

    fn token(name: &str, role: Role, secret: &str, services: &[&str]) -> TokenSpec {
        TokenSpec {
            name: Name::new(name).expect("valid name"),
            role,
            sha256: Sha256::digest(secret.as_bytes()).into(),
            services: services.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn glob_matches_prefix_suffix_and_star() {
        assert!(glob_match("*", "auth"));
        assert!(glob_match("auth-*", "auth-eu"));
        assert!(!glob_match("auth-*", "auth"));
        assert!(glob_match("*-prod", "web-prod"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("auth", "auth"));
        assert!(!glob_match("auth", "auth2"));
    }

    #[test]
    fn bearer_secret_selects_its_token() {
        let tokens = [
            token("ops", Role::Operate, "s1", &[]),
            token("ci", Role::Deploy, "s2", &["auth-*"]),
        ];
        let h = HeaderValue::from_static("Bearer s2");
        let c = authenticate(&tokens, Some(&h)).expect("known");
        assert_eq!((c.name(), c.role()), ("ci", Role::Deploy));
        assert!(c.authorize(Role::Deploy, Some("auth-eu")).is_ok());
        assert!(matches!(
            c.authorize(Role::Deploy, Some("web")),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            c.authorize(Role::Admin, None),
            Err(ApiError::Forbidden(_))
        ));
        let bad = HeaderValue::from_static("Bearer nope");
        assert!(matches!(
            authenticate(&tokens, Some(&bad)),
            Err(ApiError::Unauthorized)
        ));
        let basic = HeaderValue::from_static("Basic s2");
        assert!(authenticate(&tokens, Some(&basic)).is_err());
        assert!(authenticate(&tokens, None).is_err());
    }

    #[test]
    fn no_tokens_means_anonymous_admin() {
        let c = authenticate(&[], None).expect("open");
        assert_eq!((c.name(), c.role()), (ANONYMOUS, Role::Admin));
    }

    #[test]
    fn generated_token_hash_is_sha256_of_secret() {
        let (secret, hash) = generate_token();
        let (other, _) = generate_token();
        assert_ne!(secret, other);
        assert_eq!(hash, hex::encode(Sha256::digest(secret.as_bytes())));
        assert_eq!(hash.len(), 64);
    }
}
