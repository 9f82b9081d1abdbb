//! A serde `Deserializer` over the located YAML tree, so the derived spec types
//! are the one definition of each object and every error still says where.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::yaml::{Mark, Node, Resolved, Value};

/// A deserialization error at the innermost node that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    pub mark: Option<Mark>,
    pub message: String,
}

impl DeError {
    fn at(mut self, mark: Mark) -> Self {
        self.mark.get_or_insert(mark);
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            mark: None,
            message: tidy(msg.to_string()),
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            mark: None,
            message: format!(
                "unknown field `{field}`{}, expected one of: {}",
                super::suggest::hint(field, expected),
                expected.join(", ")
            ),
        }
    }
}

/// serde's messages read well, apart from its "invalid type" prefix and Rust
/// type names.
fn tidy(message: String) -> String {
    message
        .replacen("invalid type: ", "wrong type: found ", 1)
        .replacen("invalid value: ", "wrong value: found ", 1)
        .replace("expected u64", "expected a whole number (0 or more)")
}

/// Deserializes `T` from `node`.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.at(node.mark))
}

struct NodeDe<'a>(&'a Node);

impl<'a> NodeDe<'a> {
    fn wrong_type(&self, expected: &dyn de::Expected) -> DeError {
        let found = self.0.describe();
        DeError {
            mark: Some(self.0.mark),
            message: format!("wrong type: found {found}, expected {expected}"),
        }
    }
}

macro_rules! forward_to_any {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let node = self.0.target();
        let mark = self.0.mark;
        let result = match &node.value {
            Value::Seq(items) => visitor.visit_seq(Seq {
                items: items.iter(),
            }),
            Value::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
            Value::Scalar { .. } => match node.resolve() {
                Some(Resolved::Null) => visitor.visit_unit(),
                Some(Resolved::Bool(b)) => visitor.visit_bool(b),
                Some(Resolved::Int(i)) => visitor.visit_i64(i),
                Some(Resolved::Float(f)) => visitor.visit_f64(f),
                Some(Resolved::Str(s)) => visitor.visit_borrowed_str(s),
                None => visitor.visit_unit(),
            },
            Value::Alias(_) => unreachable!("target() follows aliases"),
        };
        result.map_err(|e| e.at(mark))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Only strings are strings: `id: 42` is a type error, as in the schema.
        match self.0.resolve() {
            Some(Resolved::Str(s)) => visitor
                .visit_borrowed_str(s)
                .map_err(|e: DeError| e.at(self.0.mark)),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.0.resolve() {
            Some(Resolved::Str(s)) => visitor
                .visit_enum(s.into_deserializer())
                .map_err(|e: DeError| e.at(self.0.mark)),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
        deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.0.target().value {
            Value::Map(_) => self.deserialize_any(visitor),
            _ => Err(self.wrong_type(&visitor)),
        }
    }
}

struct Seq<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e| e.at(node.mark)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(NodeDe(key))
                    .map(Some)
                    .map_err(|e| e.at(key.mark))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.value.take().ok_or_else(|| DeError {
            mark: None,
            message: "value requested before key".into(),
        })?;
        seed.deserialize(NodeDe(node)).map_err(|e| e.at(node.mark))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
