//! serde's access traits over the document's arrays, tables and enum values.

use super::Escaped;
use super::node::De;
use serde::de::{self, IntoDeserializer, Visitor};

pub(super) struct Seq<I> {
    pub(super) items: I,
}

impl<'de, 'a, 'i: 'a, I: Iterator<Item = De<'a, 'i>>> de::SeqAccess<'de> for Seq<I> {
    type Error = Escaped;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Escaped> {
        self.items.next().map(|d| seed.deserialize(d)).transpose()
    }
}

pub(super) struct Map<'a, 'i, I> {
    pub(super) entries: I,
    pub(super) value: Option<De<'a, 'i>>,
}

impl<'de, 'a, 'i: 'a, I: Iterator<Item = (String, De<'a, 'i>)>> de::MapAccess<'de>
    for Map<'a, 'i, I>
{
    type Error = Escaped;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Escaped> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Escaped> {
        let value = self
            .value
            .take()
            .expect("serde asks for a value only after its key");
        seed.deserialize(value)
    }
}

pub(super) struct Enum<'a, 'i> {
    pub(super) variant: String,
    pub(super) content: De<'a, 'i>,
}

impl<'de, 'a, 'i: 'a> de::EnumAccess<'de> for Enum<'a, 'i> {
    type Error = Escaped;
    type Variant = De<'a, 'i>;

    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Escaped> {
        let content = self.content;
        let v = seed
            .deserialize(self.variant.into_deserializer())
            .map_err(|e| content.locate(e))?;
        Ok((v, content))
    }
}

impl<'de, 'a, 'i: 'a> de::VariantAccess<'de> for De<'a, 'i> {
    type Error = Escaped;

    fn unit_variant(self) -> Result<(), Escaped> {
        Ok(())
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, Escaped> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Escaped> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Escaped> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}
