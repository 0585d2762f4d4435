//! Reading JSON request bodies into [`ApiError`]-shaped failures.
//!
//! Handlers authorize first and read the body after, so this is a function over the request
//! rather than an extractor: a token without the role gets 403 whatever it sent. The size limit
//! (64 KiB) comes from the `DefaultBodyLimit` layer the router installs; syntax errors are 400,
//! shape errors (unknown field, wrong type) are 422 with the path of the offending field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted, in bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Reads and decodes the JSON body of `request`.
pub(crate) async fn read<T: DeserializeOwned>(request: Request) -> Result<T, ApiError> {
    if !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::MalformedJson(rejection.body_text())
            }
        })?;
    decode(&bytes)
}

/// Decodes JSON text, naming the field at fault. An object with a key twice is refused
/// (422) wherever it is, before the typed decoding: serde would keep the last value of a
/// map silently. A number with a zero fraction (`100.0`) counts as the integer it equals, as
/// in JSON Schema, so every integer field accepts what the OpenAPI document calls an integer.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    unique::check(bytes)?;
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    integral(&mut value);
    serde_path_to_error::deserialize(value).map_err(classify)
}

/// Turns every number with a zero fraction that fits an `i64` into that integer.
fn integral(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // The range check keeps the cast exact: every such f64 with no fraction is an i64.
            if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral),
        _ => {}
    }
}

fn classify(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            if path == "." {
                ApiError::InvalidBody(inner.to_string())
            } else {
                ApiError::InvalidBody(format!("{path}: {inner}"))
            }
        }
        _ => ApiError::MalformedJson(inner.to_string()),
    }
}

/// `application/json`, with or without parameters, or any `+json` media type.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

mod unique;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only the decoding is under test
    struct Body {
        weights: BTreeMap<String, i64>,
    }

    #[test]
    fn wrong_type_names_the_field() {
        let e = decode::<Body>(br#"{"weights":{"green":1.5}}"#).expect_err("float");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(e.to_string().starts_with("weights.green: "), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_in_any_object() {
        let e = decode::<Body>(br#"{"weights":{"blue":80,"blue":90}}"#).expect_err("twice");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.to_string().starts_with("weights: duplicate key \"blue\""),
            "{e}"
        );
        let e =
            decode::<serde_json::Value>(br#"[{"a":{"b":[1,{"c":1,"c":2}]}}]"#).expect_err("deep");
        assert!(
            e.to_string().starts_with("[0].a.b[1]: duplicate key \"c\""),
            "{e}"
        );
        let e = decode::<serde_json::Value>(br#"{"a":1,"\u0061":2}"#).expect_err("escaped");
        assert!(e.to_string().starts_with("duplicate key \"a\""), "{e}");
        decode::<serde_json::Value>(br#"{"a":{"x":1},"b":{"x":1}}"#)
            .expect("same key, two objects");
    }

    #[test]
    fn integral_numbers_count_as_integers() {
        let b = decode::<Body>(br#"{"weights":{"blue":100.0,"green":1e2}}"#).expect("integral");
        assert_eq!(b.weights["blue"], 100);
        assert_eq!(b.weights["green"], 100);
        // Parsed exactly (serde_json's `float_roundtrip`): the best-effort parser read this
        // as 4209441612084241.5 and refused it as a fraction (found by schemathesis).
        let b = decode::<Body>(br#"{"weights":{"blue":4209441612084242.0}}"#).expect("exact");
        assert_eq!(b.weights["blue"], 4_209_441_612_084_242);
        let e = decode::<Body>(br#"{"weights":{"blue":1e19}}"#).expect_err("beyond i64");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn syntax_error_is_malformed_json() {
        let e = decode::<Body>(br#"{"weights":"#).expect_err("truncated");
        assert_eq!(e.code(), "malformed_json");
        let e = decode::<Body>(br#"{"weights":{}} x"#).expect_err("trailing");
        assert_eq!(e.code(), "malformed_json");
    }

    #[test]
    fn content_type_accepts_json_with_charset_only() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8"
                .parse()
                .expect("valid header"),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "text/plain".parse().expect("valid header"),
        );
        assert!(!is_json(&h));
    }
}
