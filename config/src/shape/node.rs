//! The `Deserializer` over one node of the document: reads what the visitor asks for, reports
//! a wrong type in user words and answers with a placeholder, and locates escaping errors.

use super::access::{Enum, Map, Seq};
use super::suggest::{quoted, unknown_key};
use super::{Ctx, Escaped, Node, ShapeProblem};
use crate::error::FieldPath;
use serde::de::{self, IntoDeserializer, Visitor};
use std::ops::Range;
use toml::Spanned;
use toml::de::DeValue;

pub(super) struct De<'a, 'i> {
    pub(super) node: Node<'a, 'i>,
    pub(super) path: FieldPath,
    pub(super) span: Range<usize>,
    pub(super) ctx: &'a Ctx,
}

impl<'a, 'i: 'a> De<'a, 'i> {
    fn child(&self, value: &'a Spanned<DeValue<'i>>, path: FieldPath) -> Self {
        let node = if self.ctx.placeholders.contains(&path) {
            Node::Placeholder
        } else {
            match value.get_ref() {
                DeValue::Table(t) => Node::Table(t),
                v => Node::Value(v),
            }
        };
        Self {
            node,
            path,
            span: value.span(),
            ctx: self.ctx,
        }
    }

    fn placeholder(self) -> Self {
        Self {
            node: Node::Placeholder,
            ..self
        }
    }

    /// Records a wrong type and goes on with a placeholder.
    fn mismatch(self, expected: &str) -> Self {
        let found = self.found();
        self.ctx.problems.borrow_mut().push(ShapeProblem {
            field: self.path.clone(),
            span: self.span.clone(),
            message: format!("expected {expected}, found {found}"),
            wrong_type: Some(found),
        });
        self.placeholder()
    }

    fn found(&self) -> String {
        match self.node {
            Node::Value(DeValue::String(s)) => format!("{:?}", s.as_ref()),
            Node::Value(DeValue::Integer(n)) => format!("{n}"),
            Node::Value(DeValue::Float(x)) => format!("{x}"),
            Node::Value(DeValue::Boolean(b)) => format!("{b}"),
            Node::Value(DeValue::Datetime(d)) => format!("the date {d}"),
            Node::Value(DeValue::Array(_)) => "an array".to_owned(),
            Node::Value(DeValue::Table(_)) | Node::Table(_) => "a table".to_owned(),
            Node::Placeholder => "nothing".to_owned(),
        }
    }

    fn integer(&self) -> Option<i128> {
        match self.node {
            Node::Value(DeValue::Integer(n)) => i128::from_str_radix(n.as_str(), n.radix()).ok(),
            _ => None,
        }
    }

    /// Fills in where an escaping error happened, unless a deeper level already did.
    pub(super) fn locate(&self, mut e: Escaped) -> Escaped {
        if e.at.is_none() {
            let field = match e.missing {
                Some(k) => self.path.key(k),
                None => self.path.clone(),
            };
            e.at = Some((field, self.span.clone()));
        }
        e
    }

    fn int<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        min: i128,
        max: i128,
    ) -> Result<V::Value, Escaped> {
        let n = match (self.node, self.integer()) {
            (Node::Placeholder, _) => 0,
            (_, Some(n)) if (min..=max).contains(&n) => n,
            (Node::Value(DeValue::Integer(_)), _) => {
                let range = if max >= i128::from(i64::MAX) {
                    "an integer".to_owned()
                } else {
                    format!("an integer from {min} to {max}")
                };
                return self.mismatch(&range).int(visitor, min, max);
            }
            _ => return self.mismatch("an integer").int(visitor, min, max),
        };
        let r = match i64::try_from(n) {
            Ok(n) => visitor.visit_i64(n),
            Err(_) => visitor.visit_u64(u64::try_from(n).unwrap_or(u64::MAX)),
        };
        r.map_err(|e| self.locate(e))
    }
}

macro_rules! ints {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
            self.int(visitor, i128::from(<$ty>::MIN), i128::from(<$ty>::MAX))
        }
    )*};
}

impl<'de, 'a, 'i: 'a> de::Deserializer<'de> for De<'a, 'i> {
    type Error = Escaped;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_unit(),
            Node::Value(DeValue::String(s)) => visitor.visit_str(s),
            Node::Value(DeValue::Integer(_)) => {
                return self.int(visitor, i128::from(i64::MIN), i128::from(u64::MAX));
            }
            Node::Value(DeValue::Float(x)) => {
                visitor.visit_f64(x.as_str().parse().unwrap_or(f64::NAN))
            }
            Node::Value(DeValue::Boolean(b)) => visitor.visit_bool(*b),
            Node::Value(DeValue::Datetime(d)) => visitor.visit_string(d.to_string()),
            Node::Value(DeValue::Array(_)) => return self.deserialize_seq(visitor),
            Node::Value(DeValue::Table(_)) | Node::Table(_) => {
                return self.deserialize_map(visitor);
            }
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_bool(false),
            Node::Value(DeValue::Boolean(b)) => visitor.visit_bool(*b),
            _ => return self.mismatch("true or false").deserialize_bool(visitor),
        };
        r.map_err(|e| self.locate(e))
    }

    ints!(deserialize_i8: i8, deserialize_i16: i16, deserialize_i32: i32, deserialize_i64: i64,
          deserialize_u8: u8, deserialize_u16: u16, deserialize_u32: u32, deserialize_u64: u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let x = match self.node {
            Node::Placeholder => 0.0,
            Node::Value(DeValue::Float(x)) => x.as_str().parse().unwrap_or(f64::NAN),
            Node::Value(DeValue::Integer(_)) => self.integer().map_or(f64::NAN, |n| n as f64),
            _ => return self.mismatch("a number").deserialize_f64(visitor),
        };
        visitor.visit_f64(x).map_err(|e| self.locate(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let r = match self.node {
            Node::Placeholder => visitor.visit_str(""),
            Node::Value(DeValue::String(s)) => visitor.visit_str(s),
            _ => return self.mismatch("a string").deserialize_str(visitor),
        };
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        // TOML has no null: a present value is `Some`.
        match self.node {
            Node::Placeholder => visitor.visit_none().map_err(|e| self.locate(e)),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        visitor.visit_unit().map_err(|e| self.locate(e))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let items: Vec<De<'a, 'i>> = match self.node {
            Node::Placeholder => Vec::new(),
            Node::Value(DeValue::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| self.child(v, self.path.index(i)))
                .collect(),
            _ => return self.mismatch("an array").deserialize_seq(visitor),
        };
        let r = visitor.visit_seq(Seq {
            items: items.into_iter(),
        });
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        let entries = match self.node {
            Node::Placeholder => Vec::new(),
            Node::Table(t) => t
                .iter()
                .map(|(k, v)| {
                    let key = k.get_ref().to_string();
                    let de = self.child(v, self.path.key(&key));
                    (key, de)
                })
                .collect(),
            _ => return self.mismatch("a table").deserialize_map(visitor),
        };
        let r = visitor.visit_map(Map {
            entries: entries.into_iter(),
            value: None,
        });
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        let mut entries = Vec::new();
        match self.node {
            Node::Placeholder => {
                for f in fields {
                    entries.push((f.to_string(), self.nested_placeholder(f)));
                }
            }
            Node::Table(t) => {
                for (k, v) in t.iter() {
                    let key = k.get_ref().as_ref();
                    let path = self.path.key(key);
                    if fields.contains(&key) {
                        entries.push((key.to_owned(), self.child(v, path)));
                    } else {
                        self.ctx.problems.borrow_mut().push(ShapeProblem {
                            field: path,
                            span: k.span(),
                            message: unknown_key(key, fields),
                            wrong_type: None,
                        });
                    }
                }
                // Required keys found missing in an earlier round.
                for f in fields {
                    let path = self.path.key(f);
                    if self.ctx.placeholders.contains(&path)
                        && !t.iter().any(|(k, _)| k.get_ref() == f)
                    {
                        entries.push((f.to_string(), self.nested_placeholder(f)));
                    }
                }
            }
            _ => {
                return self
                    .mismatch("a table")
                    .deserialize_struct(_name, fields, visitor);
            }
        }
        let r = visitor.visit_map(Map {
            entries: entries.into_iter(),
            value: None,
        });
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        let (variant, content) = match self.node {
            Node::Value(DeValue::String(s)) => (s.to_string(), self.nested_placeholder("")),
            Node::Table(t) if t.len() == 1 => {
                let (k, v) = t.iter().next().expect("one entry");
                let key = k.get_ref().to_string();
                let de = self.child(v, self.path.key(&key));
                (key, de)
            }
            Node::Placeholder => (
                variants.first().copied().unwrap_or_default().to_owned(),
                self.nested_placeholder(""),
            ),
            _ => {
                let expected = format!("one of {}", quoted(variants));
                return self
                    .mismatch(&expected)
                    .deserialize_enum(_name, variants, visitor);
            }
        };
        let r = visitor.visit_enum(Enum { variant, content });
        r.map_err(|e| self.locate(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Escaped> {
        visitor.visit_unit()
    }
}

impl<'a, 'i: 'a> De<'a, 'i> {
    fn nested_placeholder(&self, key: &str) -> Self {
        Self {
            node: Node::Placeholder,
            path: if key.is_empty() {
                self.path.clone()
            } else {
                self.path.key(key)
            },
            span: self.span.clone(),
            ctx: self.ctx,
        }
    }
}

impl<'de, 'a, 'i: 'a> IntoDeserializer<'de, Escaped> for De<'a, 'i> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}
