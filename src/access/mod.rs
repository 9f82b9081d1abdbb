//! What the objects mean: who holds which permission in which app, and
//! through what. The model of DESIGN.md's "What access means", implemented
//! once for every query command, access test, lint rule and pull-request
//! preview. Pure: it takes objects with the place each was declared, and
//! answers from an index built once. No I/O here.

pub mod check;
pub mod impact;
mod index;
pub mod lint;
mod subject;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::model::{Key, Origin};

pub use index::{Access, Decision, GrantRef, Holding, Path, PermitRef, SubjectAccess, WhoCan};
pub use subject::{Holder, Subject, SubjectError};

/// The app of an enrollment that holds in every app (the 1Backend
/// server's `appHost: "*"`).
pub const EVERY_APP: &str = "*";

/// The role a member of organization `slug` holds: `user-svc:org:<slug>:<role>`.
pub fn member_role(slug: &str, role: &str) -> String {
    format!("user-svc:org:{slug}:{role}")
}

/// Whether a held role matches a permit's role pattern: the same number of
/// `:`-separated segments, each equal or `*` in the pattern (a `*` matches
/// exactly one segment).
pub fn role_matches(pattern: &str, role: &str) -> bool {
    let mut pattern = pattern.split(':');
    let mut role = role.split(':');
    loop {
        match (pattern.next(), role.next()) {
            (None, None) => return true,
            (Some(p), Some(r)) if p == "*" || p == r => {}
            _ => return false,
        }
    }
}

/// Where an object that grants something was declared: a file position, or
/// a database row (for state read from a database, where rows accord does
/// not manage count too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    Declared(Origin),
    Row(Key),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Declared(origin) => origin.fmt(f),
            Place::Row(key) => write!(
                f,
                "database row {} (app `{}`, id `{}`)",
                table(key.kind),
                key.app,
                key.id
            ),
        }
    }
}

impl Serialize for Place {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Place::Declared(origin) => {
                map.serialize_entry("file", &*origin.file)?;
                map.serialize_entry("line", &origin.mark.line)?;
                map.serialize_entry("column", &origin.mark.col)?;
            }
            Place::Row(key) => {
                map.serialize_entry("table", table(key.kind))?;
                map.serialize_entry("app", key.app.as_str())?;
                map.serialize_entry("id", key.id.as_str())?;
            }
        }
        map.end()
    }
}

/// How a `Place` reads in JSON: a file position, or a database row.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the JSON `Place` writes; never built
pub struct PlaceDoc {
    /// The file, for an object read from files.
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    /// The table (`permits`, `enrollments`, `organizations`), for a row.
    table: Option<String>,
    app: Option<String>,
    id: Option<String>,
}

fn table(kind: crate::model::Kind) -> &'static str {
    match kind {
        crate::model::Kind::Organization => "organizations",
        crate::model::Kind::Permit => "permits",
        crate::model::Kind::Enrollment => "enrollments",
    }
}

/// An object of a state with where it came from: what `Access::build` takes.
pub type Placed = (Arc<crate::model::Object>, Place);

/// The rows of a database as placed objects: every row, managed by accord
/// or not, each placed by its table and key.
pub fn placed_rows(rows: crate::plan::RowMap) -> Vec<Placed> {
    rows.into_iter()
        .filter_map(|(key, row)| Some((Arc::new(row.object()?), Place::Row(key))))
        .collect()
}
