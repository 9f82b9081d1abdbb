//! Rows read from PostgreSQL's `COPY … TO STDOUT` text format, decoded into
//! the same row tuples the JSON reader produces. For a whole table `COPY`
//! costs the server a fraction of building one JSON value, and its format is
//! cheaper to read: one line per row, tab-separated, `\N` for NULL.

use std::borrow::Cow;

use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

/// Every row of `text` as a `T` (a tuple of the selected columns' types).
pub fn rows<T: DeserializeOwned>(text: &[u8]) -> Result<Vec<T>, String> {
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    let mut rows = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count());
    for (number, line) in text.lines().enumerate() {
        let row = T::deserialize(Row {
            fields: line.split('\t'),
        })
        .map_err(|e: Error| format!("row {}: {}", number + 1, e.0))?;
        rows.push(row);
    }
    Ok(rows)
}

/// The value of one field: `None` for NULL, else the text with the format's
/// backslash escapes undone (borrowed when there are none).
fn field(raw: &str) -> Option<Cow<'_, str>> {
    if raw == "\\N" {
        return None;
    }
    if !raw.contains('\\') {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(Cow::Owned(out))
}

#[derive(Debug)]
struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<M: std::fmt::Display>(message: M) -> Self {
        Error(message.to_string())
    }
}

struct Row<'a> {
    fields: std::str::Split<'a, char>,
}

impl<'de> de::Deserializer<'de> for Row<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(self)
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> SeqAccess<'de> for Row<'de> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.fields.next() {
            Some(raw) => seed.deserialize(Field(field(raw))).map(Some),
            None => Ok(None),
        }
    }
}

struct Field<'a>(Option<Cow<'a, str>>);

impl Field<'_> {
    fn text(&self) -> Result<&str, Error> {
        self.0
            .as_deref()
            .ok_or_else(|| Error("unexpected NULL".into()))
    }
}

impl<'de> de::Deserializer<'de> for Field<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            None => visitor.visit_none(),
            Some(Cow::Borrowed(text)) => visitor.visit_borrowed_str(text),
            Some(Cow::Owned(text)) => visitor.visit_string(text),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            None => visitor.visit_none(),
            Some(_) => visitor.visit_some(self),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.text()? {
            "t" => visitor.visit_bool(true),
            "f" => visitor.visit_bool(false),
            other => Err(Error(format!("`{other}` is not a boolean"))),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let text = self.text()?;
        let value = text
            .parse()
            .map_err(|_| Error(format!("`{text}` is not an integer")))?;
        visitor.visit_i64(value)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            None => Err(Error("unexpected NULL".into())),
            Some(text) => visitor.visit_string(text.into_owned()),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    forward_to_deserialize_any! {
        i8 i16 i32 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_text_nulls_numbers_booleans_and_escapes() {
        type Row = (String, Option<String>, Option<i64>, bool, Option<i64>);
        let text = b"a\\tb\\\\c\\nd\t\\N\t42\tt\t\\N\nplain\tx\t-1\tf\t7\n";
        let rows: Vec<Row> = super::rows(text).expect("rows");
        assert_eq!(
            rows,
            vec![
                ("a\tb\\c\nd".into(), None, Some(42), true, None),
                ("plain".into(), Some("x".into()), Some(-1), false, Some(7)),
            ]
        );
    }

    #[test]
    fn a_bad_value_names_its_row() {
        let error = super::rows::<(String, i64)>(b"a\t1\nb\tmany\n").expect_err("not a number");
        assert_eq!(error, "row 2: `many` is not an integer");
        let error = super::rows::<(String, String)>(b"a\t\\N\n").expect_err("null");
        assert_eq!(error, "row 1: unexpected NULL");
    }
}
