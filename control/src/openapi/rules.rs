//! What the server enforces that the derived document does not say, added to it in one place.
//!
//! Path and header parameters get their patterns, query parameters their bounds, request
//! schemas `additionalProperties: false` (every body refuses unknown fields), and a few fields
//! the types cannot describe (`expect_json.equals` takes any JSON value; a stack needs
//! endpoints or DNS). Each rule names the code that enforces it.

use serde_json::{Map, Value, json};

/// A name of a service or stack (`switchyard_config::Name`).
pub(crate) const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// `If-Match` as `api::if_match` reads it: `*`, or a revision, quoted, weak or bare. At most
/// 19 digits, so every value that matches fits a `u64`.
pub(crate) const IF_MATCH_PATTERN: &str = r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#;

/// Every request body schema, and the objects nested in them.
const REQUEST_SCHEMAS: &[&str] = &[
    "WeightsBody",
    "EndpointsBody",
    "ServiceBody",
    "StackBody",
    "DnsBody",
    "HealthCheckBody",
    "OutlierDetectionBody",
    "UpstreamTlsBody",
    "CertPairBody",
    "ServiceTimeoutsBody",
    "StickyBody",
    "ShadowBody",
    "DeploymentSpec",
    "ProcessSpec",
    "StepSpec",
    "CheckSpec",
    "HttpCheckSpec",
    "JsonExpectation",
    "RetireSpec",
    "SourceSpec",
    "StrategySpec",
];

/// Completes `doc` (the serialized derived document).
pub(super) fn apply(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(ops) = item.as_object_mut() else {
                continue;
            };
            for op in ops.values_mut() {
                if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                    params.iter_mut().for_each(parameter);
                }
            }
        }
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for name in REQUEST_SCHEMAS {
        if let Some(schema) = schemas.get_mut(*name) {
            closed(schema);
        }
    }
    // `JsonExpectation::equals` is a `serde_json::Value`.
    if let Some(equals) = schemas
        .get_mut("JsonExpectation")
        .and_then(|s| s.pointer_mut("/properties/equals"))
    {
        *equals = json!({"description": "Any JSON value (object, array, string, number, boolean or null); the value at the pointer must equal it."});
    }
    // `change::set_weights`: at least one stack; `Weight::new`: 0..=10000. `json::decode`
    // reads `100.0` as 100, as JSON Schema's `integer` does.
    if let Some(Value::Object(weights)) = schemas
        .get_mut("WeightsBody")
        .and_then(|s| s.pointer_mut("/properties/weights"))
    {
        weights.insert("minProperties".into(), json!(1));
        weights.insert(
            "additionalProperties".into(),
            json!({"type": "integer", "minimum": 0, "maximum": 10000}),
        );
    }
    // `change::routable`, for a deployment's endpoints.
    if let Some(Value::Array(variants)) = schemas
        .get_mut("SourceSpec")
        .and_then(|s| s.get_mut("oneOf"))
    {
        for v in variants {
            if let Some(eps) = v.pointer_mut("/properties/endpoints") {
                eps["minItems"] = json!(1);
            }
        }
    }
    // `change::routable`: at least one endpoint or a DNS source.
    if let Some(Value::Object(stack)) = schemas.get_mut("StackBody") {
        stack.insert(
            "anyOf".into(),
            json!([
                {"required": ["endpoints"], "properties": {"endpoints": {"minItems": 1}}},
                {"required": ["dns"]}
            ]),
        );
    }
}

/// `additionalProperties: false` on every object schema inside `schema` (variants and nested
/// objects included) that does not say what extra keys it takes (maps do).
fn closed(schema: &mut Value) {
    match schema {
        Value::Object(obj) => {
            let object = obj.contains_key("properties")
                || obj.get("type").and_then(Value::as_str) == Some("object");
            if object && !obj.contains_key("additionalProperties") {
                obj.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, value) in obj.iter_mut() {
                if key != "anyOf" && key != "additionalProperties" {
                    closed(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(closed),
        _ => {}
    }
}

/// Patterns and bounds of one operation parameter, by where it is and its name.
fn parameter(param: &mut Value) {
    let Some(p) = param.as_object_mut() else {
        return;
    };
    let place = p
        .get("in")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let name = p
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let schema = match (place.as_str(), name.as_str()) {
        // `api::check_name`.
        ("path", "service" | "stack") | ("query", "service") => {
            json!({"type": "string", "pattern": NAME_PATTERN})
        }
        // Axum's `Path<u64>`.
        ("path", "id") => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": u64::MAX})
        }
        // `api::if_match`.
        ("header", "If-Match") => json!({"type": "string", "pattern": IF_MATCH_PATTERN}),
        // `api::history::list`.
        ("query", "limit") => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
        _ => return,
    };
    p.insert("schema".into(), schema);
    if place == "query" {
        append_description(p, "An empty value is refused (400).");
    }
}

fn append_description(p: &mut Map<String, Value>, text: &str) {
    let d = match p.get("description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{d} {text}"),
        _ => text.to_owned(),
    };
    p.insert("description".into(), Value::String(d));
}
