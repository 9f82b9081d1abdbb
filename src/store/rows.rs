//! Converting between table rows and objects, the same for both backends.
//! Rows are read leniently: a value someone wrote by hand that accord would
//! never write still becomes an object (which then differs, i.e. drift)
//! rather than an error that stops every sync.

use std::borrow::Cow;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::model::{Budget, Canonical, Key, KeyMap, Kind, Member, Object, Organization};
use crate::plan::{Claim, LiveRow, LiveState, Managed};

/// The tables a load reads, in the order it reads them: members before
/// their organizations, every row before the ledger that marks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveTable {
    Members,
    Organizations,
    Permits,
    Enrollments,
    /// The source's ledger (`managed_objects`), read only for a source.
    Ledger,
    Claims,
}

impl LiveTable {
    const LOAD_ORDER: [LiveTable; 6] = [
        LiveTable::Members,
        LiveTable::Organizations,
        LiveTable::Permits,
        LiveTable::Enrollments,
        LiveTable::Ledger,
        LiveTable::Claims,
    ];

    /// The tables a load reads, in order: the ledger only for a source.
    pub fn to_read(by_source: bool) -> impl Iterator<Item = LiveTable> {
        LiveTable::LOAD_ORDER
            .into_iter()
            .filter(move |table| by_source || *table != LiveTable::Ledger)
    }

    pub fn name(self) -> &'static str {
        match self {
            LiveTable::Members => "organization_members",
            LiveTable::Organizations => "organizations",
            LiveTable::Permits => "permits",
            LiveTable::Enrollments => "enrollments",
            LiveTable::Ledger => "managed_objects",
            LiveTable::Claims => "claims",
        }
    }

    /// The columns `Assembler::add` reads, in its order; the same SQL on
    /// both backends.
    pub fn columns(self) -> &'static str {
        match self {
            LiveTable::Members => "app, org_slug, user_id, contact_id, role, token_limit",
            LiveTable::Organizations => {
                "app, slug, name, monthly_tokens, allowed_models, \
                 CASE WHEN gitops THEN 1 ELSE 0 END, managed_by, applied_hash"
            }
            LiveTable::Permits => "app, id, permission_id, slugs, roles, managed_by, applied_hash",
            LiveTable::Enrollments => {
                "app, id, role, user_id, contact_id, managed_by, applied_hash"
            }
            LiveTable::Ledger => "kind, app, object_id, reported_hash, declared_in",
            LiveTable::Claims => "source, kind, app, object_id, declared_in",
        }
    }
}

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
    let mut list: Vec<Cow<'_, str>> = match serde_json::from_str::<Vec<&str>>(text) {
        Ok(list) => list.into_iter().map(Cow::Borrowed).collect(),
        Err(_) => match serde_json::from_str::<Vec<String>>(text) {
            Ok(list) => list.into_iter().map(Cow::Owned).collect(),
            Err(_) => vec![Cow::Borrowed(text)],
        },
    };
    list.sort_unstable();
    list.dedup();
    list
}

pub fn list_to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Builds a `LiveState` from rows as they are read, borrowing each row's
/// text: members before their organizations, every row before the ledger.
#[derive(Default)]
pub struct Assembler {
    rows: KeyMap<LiveRow>,
    members_by_org: FxHashMap<(String, String), Vec<Member>>,
    ledger: KeyMap<Managed>,
    /// A few thousand files declare a hundred thousand keys, and a few
    /// sources own them: one shared copy of each path and owner.
    shared: FxHashMap<String, Arc<str>>,
    claims: KeyMap<Vec<Claim>>,
}

impl Assembler {
    /// Sized up front: growing maps of 100k entries from nothing rehashes
    /// them many times. `ledger` is an estimate of the whole ledger table
    /// (counting one source's keys costs as much as reading them); one
    /// source's share is taken to be at most the number of rows.
    pub fn with_capacity(rows: usize, ledger: usize) -> Assembler {
        let mut assembler = Assembler::default();
        assembler.rows.reserve(rows);
        assembler.ledger.reserve(ledger.min(rows));
        assembler
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
            LiveTable::Ledger => self.managed(row),
            LiveTable::Claims => self.claim(row),
        }
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
        let live = LiveRow::new(object, self.owner(row, 6)?, row.owned(7)?, gitops);
        self.rows.insert(key, live);
        Ok(())
    }

    /// A permit's or enrollment's row, whose owner and applied hash are its
    /// last two columns.
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
            app: app.to_owned(),
            id: id.to_owned(),
        };
        let owner = self.owner(row, 5)?;
        let live = LiveRow::from_canonical(content, owner, row.owned(6)?, true);
        self.rows.insert(key, live);
        Ok(())
    }

    /// A key in the source's ledger; rows of other kinds than accord's are
    /// skipped.
    fn managed(&mut self, row: &impl Columns) -> Result<(), String> {
        let Some(kind) = Kind::parse(&row.text(0)?) else {
            return Ok(());
        };
        let declared_in = row.optional(4)?.map(|path| self.shared(&path));
        let key = Key {
            kind,
            app: row.text(1)?.into_owned(),
            id: row.text(2)?.into_owned(),
        };
        if let Some(live) = self.rows.get_mut(&key) {
            live.mark_in_ledger();
        }
        let managed = Managed {
            reported_hash: row.owned(3)?,
            declared_in,
        };
        self.ledger.insert(key, managed);
        Ok(())
    }

    fn claim(&mut self, row: &impl Columns) -> Result<(), String> {
        if let Some(kind) = Kind::parse(&row.text(1)?) {
            let key = Key {
                kind,
                app: row.text(2)?.into_owned(),
                id: row.text(3)?.into_owned(),
            };
            let claim = Claim {
                source: row.text(0)?.into_owned(),
                declared_in: row.optional(4)?.map(|path| self.shared(&path)),
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
        Ok(row.optional(column)?.map(|owner| self.shared(&owner)))
    }

    pub fn finish(self) -> LiveState {
        LiveState {
            rows: self.rows,
            managed: self.ledger,
            claims: self.claims,
        }
    }
}
