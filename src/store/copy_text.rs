//! Rows read from PostgreSQL's `COPY … TO STDOUT` text format: one line per
//! row, tab-separated, `\N` for NULL, backslash escapes. For a whole table
//! `COPY` costs the server a fraction of building one JSON value, and the
//! format is read in place: a field is copied only when it has escapes.

use std::borrow::Cow;

use super::rows::Columns;

/// The most columns a load selects from one table.
const MAX_COLUMNS: usize = 10;

/// Hands each row of `text` to `row`; an error names the row, counting
/// `before` rows of the same table read before this text. Returns how many
/// rows that makes.
pub fn each_row(
    text: &[u8],
    before: usize,
    mut row: impl FnMut(&Line<'_>) -> Result<(), String>,
) -> Result<usize, String> {
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    // Split on bytes with memchr: `str::lines` and `str::split(char)` call
    // memcmp for every separator they find. Both separators are ASCII, so
    // every piece is still whole UTF-8.
    let mut start = 0;
    let mut number = before;
    for end in memchr::memchr_iter(b'\n', text.as_bytes())
        .chain((!text.is_empty() && !text.ends_with('\n')).then_some(text.len()))
    {
        let line = &text[start..end];
        start = end + 1;
        let mut fields = [""; MAX_COLUMNS];
        let mut count = 0;
        let mut from = 0;
        for to in memchr::memchr_iter(b'\t', line.as_bytes()).chain([line.len()]) {
            if count == MAX_COLUMNS {
                return Err(format!(
                    "row {}: more than {MAX_COLUMNS} columns",
                    number + 1
                ));
            }
            fields[count] = &line[from..to];
            count += 1;
            from = to + 1;
        }
        row(&Line {
            fields: &fields[..count],
        })
        .map_err(|e| format!("row {}: {e}", number + 1))?;
        number += 1;
    }
    Ok(number)
}

/// One row's fields, as `COPY` wrote them.
pub struct Line<'a> {
    fields: &'a [&'a str],
}

impl Columns for Line<'_> {
    fn optional(&self, column: usize) -> Result<Option<Cow<'_, str>>, String> {
        let raw = self
            .fields
            .get(column)
            .ok_or_else(|| format!("no column {}", column + 1))?;
        Ok(field(raw))
    }

    fn integer(&self, column: usize) -> Result<Option<i64>, String> {
        match self.optional(column)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("column {}: `{text}` is not an integer", column + 1)),
        }
    }
}

/// The value of one field: `None` for NULL, else the text with the format's
/// backslash escapes undone (borrowed when there are none).
fn field(raw: &str) -> Option<Cow<'_, str>> {
    if raw == "\\N" {
        return None;
    }
    if memchr::memchr(b'\\', raw.as_bytes()).is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

    type Row = (String, Option<String>, Option<i64>, Option<i64>);

    fn rows(text: &[u8]) -> Result<Vec<Row>, String> {
        let mut rows = Vec::new();
        each_row(text, 0, |line| {
            rows.push((
                line.text(0)?.into_owned(),
                line.owned(1)?,
                line.integer(2)?,
                line.integer(3)?,
            ));
            Ok(())
        })?;
        Ok(rows)
    }

    #[test]
    fn reads_text_nulls_numbers_and_escapes() {
        let text = b"a\\tb\\\\c\\nd\t\\N\t42\t\\N\nplain\tx\t-1\t7\n";
        assert_eq!(
            rows(text).expect("rows"),
            vec![
                ("a\tb\\c\nd".into(), None, Some(42), None),
                ("plain".into(), Some("x".into()), Some(-1), Some(7)),
            ]
        );
    }

    #[test]
    fn lines_end_with_or_without_a_newline() {
        assert_eq!(rows(b"").expect("no rows"), vec![]);
        let row = ("a".into(), Some("b".into()), Some(1), None);
        assert_eq!(rows(b"a\tb\t1\t\\N").expect("rows"), vec![row.clone()]);
        assert_eq!(rows(b"a\tb\t1\t\\N\n").expect("rows"), vec![row]);
    }

    #[test]
    fn a_bad_value_names_its_row_and_column() {
        let error = rows(b"a\t\\N\t1\t2\nb\tx\tmany\t2\n").expect_err("not a number");
        assert_eq!(error, "row 2: column 3: `many` is not an integer");
        let error = rows(b"\\N\tx\t1\t2\n").expect_err("null");
        assert_eq!(
            error,
            "row 1: column 1: NULL where accord always writes a value"
        );
        let later = each_row(b"a\tb\nc\n", 40, |line| line.text(2).map(drop)).expect_err("short");
        assert_eq!(
            later, "row 41: no column 3",
            "counts the rows of earlier batches"
        );
        assert_eq!(each_row(b"a\nb\n", 40, |_| Ok(())), Ok(42));
        let error = rows(b"a\tb\t1\n").expect_err("short");
        assert_eq!(error, "row 1: no column 4");
        let error = rows(b"1\t2\t3\t4\t5\t6\t7\t8\t9\t10\t11\t12\n").expect_err("long");
        assert_eq!(error, "row 1: more than 10 columns");
    }
}
