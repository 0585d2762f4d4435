use super::*;
use crate::api::routes;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;
use switchyard_config::raw;

fn doc() -> Value {
    serde_json::to_value(ApiDoc::openapi()).expect("document serializes")
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
