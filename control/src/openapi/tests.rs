use super::*;
use crate::api::routes;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use switchyard_config::raw;

fn doc() -> Value {
    document_json()
}

#[test]
fn every_route_of_the_router_is_in_the_document() {
    let doc = doc();
    let routes = routes();
    for r in &routes {
        let method = r.method.as_str().to_ascii_lowercase();
        assert!(
            doc["paths"][r.path][&method].is_object(),
            "{} {} is not documented",
            r.method,
            r.path
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |o| o.len()))
        .sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document has routes the router lacks"
    );
}

#[test]
fn write_routes_document_their_errors_and_security() {
    let doc = doc();
    let put = &doc["paths"]["/v1/services/{service}/weights"]["put"];
    for status in [
        "200", "400", "401", "403", "404", "412", "413", "415", "422",
    ] {
        assert!(put["responses"][status].is_object(), "missing {status}");
    }
    assert_eq!(put["security"][0]["bearer"], serde_json::json!([]));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["WeightsBody"]["properties"]["exclusive"].is_object());
}

/// Captures the field names a derived `Deserialize` asks for, without building a value.
struct FieldProbe<'a>(&'a mut Vec<&'static str>);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.extend_from_slice(fields);
        Err(de::Error::custom("probed"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

fn fields_of<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let mut fields = Vec::new();
    assert!(T::deserialize(FieldProbe(&mut fields)).is_err());
    let mut fields: Vec<String> = fields.into_iter().map(str::to_owned).collect();
    fields.sort();
    fields
}

fn documented_fields(doc: &Value, schema: &str) -> Vec<String> {
    let mut fields: Vec<String> = doc["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema} is in the document"))
        .keys()
        .cloned()
        .collect();
    fields.sort();
    fields
}

#[test]
fn body_schemas_name_exactly_the_raw_fields() {
    let doc = doc();
    assert_eq!(
        documented_fields(&doc, "ServiceBody"),
        fields_of::<raw::Service>()
    );
    assert_eq!(
        documented_fields(&doc, "StackBody"),
        fields_of::<raw::Stack>()
    );
    let nested = [
        ("DnsBody", fields_of::<raw::Dns>()),
        ("HealthCheckBody", fields_of::<raw::HealthCheck>()),
        ("OutlierDetectionBody", fields_of::<raw::OutlierDetection>()),
        ("UpstreamTlsBody", fields_of::<raw::UpstreamTls>()),
        ("CertPairBody", fields_of::<raw::CertPair>()),
        ("ServiceTimeoutsBody", fields_of::<raw::ServiceTimeouts>()),
        ("StickyBody", fields_of::<raw::Sticky>()),
        ("ShadowBody", fields_of::<raw::Shadow>()),
    ];
    for (schema, raw_fields) in nested {
        assert_eq!(documented_fields(&doc, schema), raw_fields, "{schema}");
    }
}

/// Every object schema reachable from `schema`, following `$ref`s once each.
fn reachable<'a>(
    doc: &'a Value,
    schema: &'a Value,
    seen: &mut Vec<String>,
    out: &mut Vec<(String, &'a Value)>,
) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.trim_start_matches("#/components/schemas/").to_owned();
        if seen.contains(&name) {
            return;
        }
        seen.push(name.clone());
        let target = &doc["components"]["schemas"][&name];
        out.push((name, target));
        reachable(doc, target, seen, out);
        return;
    }
    match schema {
        Value::Object(o) => {
            for v in o.values() {
                reachable(doc, v, seen, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| reachable(doc, v, seen, out)),
        _ => {}
    }
}

#[test]
fn every_request_body_refuses_unknown_fields_and_nests_typed_objects() {
    let doc = doc();
    let mut seen = Vec::new();
    let mut schemas = Vec::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            if let Some(body) = op.get("requestBody") {
                reachable(&doc, body, &mut seen, &mut schemas);
            }
        }
    }
    assert!(schemas.len() >= 15, "{seen:?}");
    fn walk(name: &str, v: &Value) {
        if let Value::Object(o) = v {
            if o.contains_key("properties") {
                assert_eq!(
                    o.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{name}: {v}"
                );
            }
            if o.get("type") == Some(&Value::String("object".into())) {
                assert!(
                    o.contains_key("properties") || o.contains_key("additionalProperties"),
                    "{name}: a free object {v}"
                );
            }
            // `anyOf` branches add constraints to the object they sit in; they are not objects.
            o.iter()
                .filter(|(k, _)| k.as_str() != "anyOf")
                .for_each(|(_, c)| walk(name, c));
        } else if let Value::Array(a) = v {
            a.iter().for_each(|c| walk(name, c));
        }
    }
    for (name, schema) in schemas {
        walk(&name, schema);
    }
}

#[test]
fn parameters_carry_the_patterns_and_bounds_the_server_enforces() {
    let doc = doc();
    let mut checked = 0;
    for item in doc["paths"].as_object().expect("paths").values() {
        for op in item.as_object().expect("path item").values() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                let schema = &p["schema"];
                match (p["in"].as_str(), p["name"].as_str()) {
                    (Some("path"), Some("service" | "stack")) => {
                        assert_eq!(schema["pattern"], rules::NAME_PATTERN);
                    }
                    (Some("path"), Some("id")) => assert_eq!(schema["type"], "integer"),
                    (Some("header"), Some("If-Match")) => {
                        assert_eq!(schema["pattern"], rules::IF_MATCH_PATTERN);
                    }
                    (Some("query"), Some("limit")) => {
                        assert_eq!(
                            (schema["minimum"].as_u64(), schema["maximum"].as_u64()),
                            (Some(1), Some(1000))
                        );
                    }
                    _ => continue,
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "{checked}");
    let weights = &doc["components"]["schemas"]["WeightsBody"]["properties"]["weights"];
    assert_eq!(weights["additionalProperties"]["maximum"], 10000);
    let equals = &doc["components"]["schemas"]["JsonExpectation"]["properties"]["equals"];
    assert!(equals.get("type").is_none(), "any JSON value: {equals}");
}

#[test]
fn operation_ids_are_unique() {
    let doc = doc();
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .flat_map(|item| item.as_object().expect("path item").values())
        .map(|op| op["operationId"].as_str().expect("operationId"))
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate operationId in {ids:?}");
}
