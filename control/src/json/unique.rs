//! The duplicate-key check every JSON body passes before it is decoded.
//!
//! JSON (RFC 8259 §4) leaves duplicate names undefined; serde keeps the last value of a map
//! and refuses a repeated struct field, so `{"weights":{"blue":80,"blue":90}}` would mean 90
//! without a word. This walk refuses any object that names a key twice, at any depth, with the
//! path of the object. It builds nothing but the keys of the object it is in.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::ApiError;

/// Refuses `bytes` if any object in it has a key twice. Syntax errors are left to the decoding
/// that follows (which reports them with their position).
pub(super) fn check(bytes: &[u8]) -> Result<(), ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut path = Vec::new();
    match (Walk { path: &mut path }).deserialize(&mut de) {
        Err(e) if e.is_data() => Err(ApiError::InvalidBody(e.to_string())),
        _ => Ok(()),
    }
}

/// One step of the path to the value being walked.
enum Segment {
    Key(String),
    Index(usize),
}

/// Walks one value; `path` leads to it.
struct Walk<'a> {
    path: &'a mut Vec<Segment>,
}

impl Walk<'_> {
    fn duplicate<E: de::Error>(&self, key: &str) -> E {
        let mut at = String::new();
        for seg in self.path.iter() {
            match seg {
                Segment::Key(k) if at.is_empty() => at.push_str(k),
                Segment::Key(k) => {
                    at.push('.');
                    at.push_str(k);
                }
                Segment::Index(i) => at.push_str(&format!("[{i}]")),
            }
        }
        if at.is_empty() {
            E::custom(format!("duplicate key {key:?}"))
        } else {
            E::custom(format!("{at}: duplicate key {key:?}"))
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            self.path.push(Segment::Index(i));
            let more = seq.next_element_seed(Walk { path: self.path })?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(self.duplicate(&key));
            }
            self.path.push(Segment::Key(key.clone()));
            let walked = map.next_value_seed(Walk { path: self.path });
            self.path.pop();
            walked?;
            seen.insert(key);
        }
        Ok(())
    }
}
