//! Rows into objects: the assembler both backends feed, column by column,
//! into the live state a plan compares with.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::{
    parse_digest, Budget, Canonical, Key, KeyMap, Kind, Member, Object, Organization,
};
use crate::plan::{Claim, LedgerEntry, LiveRow, LiveState, RowMap};

use super::query::LiveTable;

/// One row as a backend reads it: its columns by position, text borrowed
/// from the backend's buffer where it can be.
pub trait Columns {
    fn optional(&self, column: usize) -> Result<Option<Cow<'_, str>>, String>;

    fn integer(&self, column: usize) -> Result<Option<i64>, String>;

    fn text(&self, column: usize) -> Result<Cow<'_, str>, String> {
        self.optional(column)?.ok_or_else(|| {
            format!(
                "column {}: NULL where accord always writes a value",
                column + 1
            )
        })
    }

    fn owned(&self, column: usize) -> Result<Option<String>, String> {
        Ok(self.optional(column)?.map(Cow::into_owned))
    }
}

/// A stored JSON list as a sorted set; anything else as a one-element list
/// holding the raw text, so a broken hand edit shows up in the diff. Borrows
/// from `text` unless an element has escapes.
pub fn list_from_json(text: &str) -> Vec<Cow<'_, str>> {
    let mut list: Vec<Cow<'_, str>> = match compact_list(text) {
        Some(list) => list,
        None => match serde_json::from_str::<Vec<&str>>(text) {
            Ok(list) => list.into_iter().map(Cow::Borrowed).collect(),
            Err(_) => match serde_json::from_str::<Vec<String>>(text) {
                Ok(list) => list.into_iter().map(Cow::Owned).collect(),
                Err(_) => vec![Cow::Borrowed(text)],
            },
        },
    };
    list.sort_unstable();
    list.dedup();
    list
}

/// The elements of a list as `list_to_json` writes one without escapes
/// (`["a","b"]`, no spaces), read without a JSON parser, which two lists
/// per permit row made a large part of reading the table. `None` for
/// anything else (escapes, control characters, spacing, a stray quote),
/// which the parser then reads: what is accepted here is valid JSON whose
/// elements are exactly the pieces between `","`.
fn compact_list(text: &str) -> Option<Vec<Cow<'_, str>>> {
    if text == "[]" {
        return Some(Vec::new());
    }
    let inner = text.strip_prefix("[\"")?.strip_suffix("\"]")?;
    if !inner.bytes().all(|b| b >= 0x20 && b != b'\\') {
        return None;
    }
    let mut list = Vec::new();
    for element in inner.split("\",\"") {
        if element.contains('"') {
            return None;
        }
        list.push(Cow::Borrowed(element));
    }
    Some(list)
}

pub fn list_to_json<S: serde::Serialize>(list: &[S]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Builds a `LiveState` from rows as they are read, borrowing each row's
/// text: members before their organizations.
pub struct Assembler {
    rows: RowMap,
    /// Whether rows bring their ledger entries (`LiveTable::query` with a join).
    joined: bool,
    /// Where the row after the last one a ledger entry found is: accord
    /// writes rows and entries in one order, which a table read whole mostly
    /// keeps, so the next entry's row is usually there and a comparison
    /// saves a lookup in a map too large for the cache.
    cursor: usize,
    /// Rows whose key is in the source's ledger.
    in_ledger: usize,
    members_by_org: FxHashMap<(String, String), Vec<Member>>,
    orphans: KeyMap<LedgerEntry>,
    /// A few sources own a hundred thousand rows: one shared copy of each
    /// owner (and of each file a claim names).
    shared: FxHashMap<String, Arc<str>>,
    /// The last owner shared: rows come in the order accord wrote them, so
    /// neighbours mostly name the same one, and one comparison saves hashing
    /// the text.
    last_owner: Option<Arc<str>>,
    /// The source a load is for: the owner of its `LiveTable::Unread` rows.
    source: Option<Arc<str>>,
    /// Whether the permits and enrollments read exactly as accord last
    /// wrote them for `source` keep their content (`leave_applied_unread`).
    keep_applied: bool,
    claims: KeyMap<Vec<Claim>>,
}

impl Assembler {
    /// Sized up front when the store knows how many rows come (SQLite
    /// counts them), else as they come (`reserve`): growing a map of 100k
    /// rows one row at a time rehashes it many times. `joined`: the rows
    /// come with their ledger entries, which SQLite finds cheaply by an
    /// index probe per row; PostgreSQL's server spends more on that join
    /// than on sending the ledger, which then comes after the rows as
    /// `LiveTable::Ledger`.
    pub fn with_capacity(rows: usize, joined: bool) -> Assembler {
        let mut assembler = Assembler {
            rows: RowMap::default(),
            joined,
            cursor: 0,
            in_ledger: 0,
            members_by_org: FxHashMap::default(),
            orphans: KeyMap::default(),
            shared: FxHashMap::default(),
            last_owner: None,
            source: None,
            keep_applied: true,
            claims: KeyMap::default(),
        };
        assembler.rows.reserve(rows);
        assembler
    }

    /// Rows are read for `source`, which owns the `Unread` ones.
    pub fn for_source(mut self, source: &str) -> Assembler {
        self.source = Some(self.shared(source));
        self
    }

    /// For a plan: a permit or enrollment read exactly as accord last wrote
    /// it for the source (`for_source`) is kept without its content
    /// (`LiveRow::leave_unread_if_applied`), as PostgreSQL's unedited rows
    /// are never read. A plan that changes it reads it again whole.
    pub fn leave_applied_unread(mut self) -> Assembler {
        self.keep_applied = false;
        self
    }

    /// Room for `rows` more rows of `table` (nothing for other tables).
    pub fn reserve(&mut self, table: LiveTable, rows: usize) {
        if table.rows_of().is_some() || matches!(table, LiveTable::Unread(_)) {
            self.rows.reserve(rows);
        }
    }

    /// How many rows brought a ledger entry: when the ledger holds more of
    /// the source's keys, the rest are `LiveTable::Orphans`.
    pub fn in_ledger(&self) -> usize {
        self.in_ledger
    }

    /// Adds one row of `table`.
    pub fn add(&mut self, table: LiveTable, row: &impl Columns) -> Result<(), String> {
        match table {
            LiveTable::Members => self.member(row),
            LiveTable::Organizations => self.organization(row),
            LiveTable::Permits => {
                let (app, id) = (row.text(0)?, row.text(1)?);
                let content = Canonical::permit(
                    &id,
                    &app,
                    &row.text(2)?,
                    &list_from_json(&row.text(3)?),
                    &list_from_json(&row.text(4)?),
                );
                self.insert(Kind::Permit, &app, &id, content, row)
            }
            LiveTable::Enrollments => {
                let (app, id) = (row.text(0)?, row.text(1)?);
                let content = Canonical::enrollment(
                    &id,
                    &app,
                    &row.text(2)?,
                    row.optional(3)?.as_deref(),
                    row.optional(4)?.as_deref(),
                );
                self.insert(Kind::Enrollment, &app, &id, content, row)
            }
            LiveTable::Claims => self.claim(row),
            LiveTable::Orphans | LiveTable::Ledger => self.ledger(row),
            LiveTable::Unread(kind) => self.unread(kind, row),
        }
    }

    /// A row known to be as accord wrote it for the source: key, applied hash.
    fn unread(&mut self, kind: Kind, row: &impl Columns) -> Result<(), String> {
        let owner = self
            .source
            .clone()
            .ok_or("rows read as accord wrote them, but not for a source")?;
        let key = Key {
            kind,
            app: row.text(0)?.as_ref().into(),
            id: row.text(1)?.as_ref().into(),
        };
        let applied = row.text(2)?;
        // Only accord's own form gets here (the row is as accord wrote
        // it), unless someone forged its transaction id by hand too.
        let applied = parse_digest(&applied)
            .ok_or_else(|| format!("column 3: `{applied}` is not an applied hash accord writes"))?;
        self.rows.insert(key, LiveRow::unread(owner, applied));
        Ok(())
    }

    fn member(&mut self, row: &impl Columns) -> Result<(), String> {
        let org = (row.text(0)?.into_owned(), row.text(1)?.into_owned());
        let member = Member {
            user_id: row.owned(2)?,
            contact_id: row.owned(3)?,
            role: row.text(4)?.into_owned(),
            token_limit: row.integer(5)?.map(unsigned),
        };
        self.members_by_org.entry(org).or_default().push(member);
        Ok(())
    }

    fn organization(&mut self, row: &impl Columns) -> Result<(), String> {
        let app = row.text(0)?.into_owned();
        let slug = row.text(1)?.into_owned();
        let members = self
            .members_by_org
            .remove(&(app.clone(), slug.clone()))
            .unwrap_or_default();
        let mut object = Object::Organization(Organization {
            slug,
            app,
            name: row.owned(2)?,
            budget: row.integer(3)?.map(|t| Budget {
                monthly_tokens: unsigned(t),
            }),
            allowed_models: list_from_json(&row.text(4)?)
                .into_iter()
                .map(Cow::into_owned)
                .collect(),
            members,
        });
        object.normalize();
        let gitops = row.integer(5)? != Some(0);
        let key = object.key();
        let mut live = LiveRow::new(
            object,
            self.owner(row, 6)?,
            row.optional(7)?.as_deref().and_then(parse_digest),
            gitops,
        );
        self.ledger_entry(&mut live, row, 8)?;
        self.rows.insert(key, live);
        Ok(())
    }

    /// A permit's or enrollment's row: its owner and applied hash are
    /// columns 5 and 6, its ledger entry the two after them.
    fn insert(
        &mut self,
        kind: Kind,
        app: &str,
        id: &str,
        content: Canonical,
        row: &impl Columns,
    ) -> Result<(), String> {
        let key = Key {
            kind,
            app: app.into(),
            id: id.into(),
        };
        let owner = self.owner(row, 5)?;
        let applied = row.optional(6)?.as_deref().and_then(parse_digest);
        let mut live = LiveRow::from_canonical(content, owner, applied, true);
        if let (false, Some(source)) = (self.keep_applied, &self.source) {
            live.leave_unread_if_applied(source);
        }
        self.ledger_entry(&mut live, row, 7)?;
        self.rows.insert(key, live);
        Ok(())
    }

    /// The ledger entry a source's load reads with a row, from `column` on:
    /// whether there is one, and its reported hash.
    fn ledger_entry(
        &mut self,
        live: &mut LiveRow,
        row: &impl Columns,
        column: usize,
    ) -> Result<(), String> {
        if self.joined && row.integer(column)? == Some(1) {
            live.set_ledger(LedgerEntry {
                reported_hash: row.owned(column + 1)?,
            });
            self.in_ledger += 1;
        }
        Ok(())
    }

    /// A key in the source's ledger (`Ledger` or `Orphans`), put on its row
    /// when it has one and kept apart otherwise; entries of kinds other than
    /// accord's are skipped.
    fn ledger(&mut self, row: &impl Columns) -> Result<(), String> {
        let Some(kind) = Kind::parse(&row.text(0)?) else {
            return Ok(());
        };
        // Inline strings (`Key`): building the key allocates nothing.
        let key = Key {
            kind,
            app: row.text(1)?.as_ref().into(),
            id: row.text(2)?.as_ref().into(),
        };
        let entry = LedgerEntry {
            reported_hash: row.owned(3)?,
        };
        let index = match self.rows.get_index(self.cursor) {
            Some((next, _)) if *next == key => Some(self.cursor),
            _ => self.rows.get_index_of(&key),
        };
        match index {
            Some(index) => {
                self.rows[index].set_ledger(entry);
                self.cursor = index + 1;
                self.in_ledger += 1;
            }
            None => {
                self.orphans.insert(key, entry);
            }
        }
        Ok(())
    }

    fn claim(&mut self, row: &impl Columns) -> Result<(), String> {
        if let Some(kind) = Kind::parse(&row.text(1)?) {
            let key = Key {
                kind,
                app: row.text(2)?.as_ref().into(),
                id: row.text(3)?.as_ref().into(),
            };
            let claim = Claim {
                source: row.text(0)?.into_owned(),
                declared_in: row.optional(4)?.map(|file| self.shared(&file)),
            };
            self.claims.entry(key).or_default().push(claim);
        }
        Ok(())
    }

    fn shared(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.shared.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.shared.insert(text.to_owned(), shared.clone());
        shared
    }

    /// The owner in `column`, shared.
    fn owner(&mut self, row: &impl Columns, column: usize) -> Result<Option<Arc<str>>, String> {
        let Some(owner) = row.optional(column)? else {
            return Ok(None);
        };
        if let Some(last) = self.last_owner.as_ref().filter(|last| ***last == *owner) {
            return Ok(Some(last.clone()));
        }
        let shared = self.shared(&owner);
        self.last_owner = Some(shared.clone());
        Ok(Some(shared))
    }

    pub fn finish(self) -> LiveState {
        LiveState {
            rows: self.rows,
            ledger: self.orphans,
            claims: self.claims,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row of text columns, `None` for NULL.
    struct Row(Vec<Option<&'static str>>);

    impl Columns for Row {
        fn optional(&self, column: usize) -> Result<Option<Cow<'_, str>>, String> {
            Ok(self.0[column].map(Cow::Borrowed))
        }

        fn integer(&self, column: usize) -> Result<Option<i64>, String> {
            self.optional(column)?
                .map(|text| text.parse().map_err(|_| format!("`{text}`")))
                .transpose()
        }
    }

    fn permit_row(id: &'static str) -> Row {
        Row(vec![
            Some("app"),
            Some(id),
            Some("svc:read"),
            Some("[]"),
            Some("[\"svc:viewer\"]"),
            Some("git"),
            None,
        ])
    }

    fn entry(id: &'static str, reported: Option<&'static str>) -> Row {
        Row(vec![Some("Permit"), Some("app"), Some(id), reported])
    }

    #[test]
    fn unedited_rows_come_without_content_and_only_with_accords_hashes() {
        let hash = "00112233445566778899aabbccddeeff";
        let mut assembler = Assembler::with_capacity(1, false).for_source("git");
        let row = Row(vec![Some("app"), Some("pay"), Some(hash)]);
        assembler
            .add(LiveTable::Unread(Kind::Permit), &row)
            .expect("row");
        let live = assembler.finish();
        let row = &live.rows[&Key {
            kind: Kind::Permit,
            app: "app".into(),
            id: "pay".into(),
        }];
        assert!(!row.is_read());
        assert_eq!(row.object(), None);
        assert_eq!(row.applied, parse_digest(hash));
        assert_eq!(Some(row.digest()), row.applied);
        assert_eq!(row.managed_by.as_deref(), Some("git"));

        let mut assembler = Assembler::with_capacity(1, false).for_source("git");
        let error = assembler
            .add(
                LiveTable::Unread(Kind::Enrollment),
                &Row(vec![Some("app"), Some("pay"), Some("not-a-hash")]),
            )
            .expect_err("refused");
        assert!(error.starts_with("column 3: "), "{error}");
        // Their owner is the source a load is for: without one, refused.
        let error = Assembler::with_capacity(1, false)
            .add(
                LiveTable::Unread(Kind::Permit),
                &Row(vec![Some("app"), Some("pay"), Some(hash)]),
            )
            .expect_err("refused");
        assert!(error.contains("not for a source"), "{error}");
    }

    #[test]
    fn ledger_entries_find_their_rows_in_any_order() {
        let mut assembler = Assembler::with_capacity(4, false);
        for id in ["a", "b", "c", "d"] {
            assembler
                .add(LiveTable::Permits, &permit_row(id))
                .expect("row");
        }
        // In the rows' order at first, then out of it, then a key whose row
        // is gone, then the order again.
        for (id, reported) in [
            ("a", None),
            ("b", Some("1")),
            ("d", None),
            ("gone", Some("2")),
            ("c", None),
        ] {
            assembler
                .add(LiveTable::Ledger, &entry(id, reported))
                .expect("entry");
        }
        assert_eq!(assembler.in_ledger(), 4);
        let live = assembler.finish();
        let reported = |id: &str| {
            let key = Key {
                kind: Kind::Permit,
                app: "app".into(),
                id: id.into(),
            };
            live.ledger_entry(&key, live.rows.get(&key))
                .map(|m| m.reported_hash.clone())
        };
        assert_eq!(reported("a"), Some(None));
        assert_eq!(reported("b"), Some(Some("1".into())));
        assert_eq!(reported("c"), Some(None));
        assert_eq!(reported("d"), Some(None));
        assert_eq!(reported("gone"), Some(Some("2".into())));
        assert_eq!(
            live.ledger.len(),
            1,
            "only the entry without a row stays apart"
        );
        assert_eq!(live.ledger_len(), 5);
    }

    /// What the JSON parser alone makes of a list (the reading before the
    /// fast path).
    fn parsed(text: &str) -> Vec<String> {
        let mut list =
            serde_json::from_str::<Vec<String>>(text).unwrap_or_else(|_| vec![text.into()]);
        list.sort_unstable();
        list.dedup();
        list
    }

    #[test]
    fn lists_read_the_same_with_or_without_the_json_parser() {
        let texts = [
            "[]",
            "[\"a\"]",
            "[\"\"]",
            "[\"b\",\"a\",\"b\"]",
            "[\"svc:admin\",\"svc:viewer\"]",
            "[\"ünï\",\"çødé\"]",
            "[\"a\", \"b\"]",
            "[ \"a\"]",
            "[\"a\",\"b\" ]",
            "[\"a\"\",\"b\"]",
            "[\"a\\\"b\"]",
            "[\"a\\nb\"]",
            "[\"a\tb\"]",
            "[\"a\",\"\"]",
            "[\",\"]",
            "[\"]",
            "[\"a\",]",
            "[1,2]",
            "not json",
            "",
            "[\"a\"][\"b\"]",
        ];
        for text in texts {
            let read: Vec<String> = list_from_json(text)
                .into_iter()
                .map(Cow::into_owned)
                .collect();
            assert_eq!(read, parsed(text), "{text:?}");
        }
        assert!(
            compact_list("[\"a\",\"b\"]").is_some(),
            "accord's own lists skip the parser"
        );
    }
}
