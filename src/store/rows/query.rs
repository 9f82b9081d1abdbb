//! What a load asks of each table: the queries, by table, that both
//! backends run (SQLite through its C API, PostgreSQL through `COPY`).

use crate::model::Kind;

/// The tables a load reads, in the order it reads them: members before
/// their organizations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveTable {
    Members,
    Organizations,
    Permits,
    Enrollments,
    Claims,
    /// The source's ledger entries (table `ledger`) whose rows are gone,
    /// when the rows were read with their entries: read only when the
    /// ledger holds more of the source's keys than the rows brought.
    Orphans,
    /// The source's whole ledger, read after rows that came without their
    /// entries: each entry is put on its row.
    Ledger,
    /// PostgreSQL, for a plan: the permits or enrollments known to be
    /// exactly as accord last wrote them for the source (`unedited`), read
    /// as key and applied hash only (`LiveRow::unread`; the owner is the
    /// source the assembler reads for, `Assembler::for_source`). The rest of
    /// the table is read whole (`LiveTable::edited`).
    Unread(Kind),
}

impl LiveTable {
    /// The tables every load reads, in order (`Orphans` is read on demand).
    pub const LOAD_ORDER: [LiveTable; 5] = [
        LiveTable::Members,
        LiveTable::Organizations,
        LiveTable::Permits,
        LiveTable::Enrollments,
        LiveTable::Claims,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LiveTable::Members => "organization_members",
            LiveTable::Organizations => "organizations",
            LiveTable::Permits => "permits",
            LiveTable::Enrollments => "enrollments",
            LiveTable::Claims => "claims",
            LiveTable::Orphans | LiveTable::Ledger => "ledger",
            LiveTable::Unread(kind) => LiveTable::of(kind).name(),
        }
    }

    /// PostgreSQL: whether a row is exactly as accord last wrote it for
    /// `source`. Each write accord makes records its transaction's id
    /// (`bulk::Table::stamp`), which is also the `xmin` of the row version it
    /// creates; any later write, by hand or by a restore, makes a version
    /// with another `xmin` (ids are reused only after four billion
    /// transactions). Comparing the two costs the server less than sending
    /// the content, and spares accord reading and hashing it.
    pub fn unedited(source: &str) -> String {
        format!("r.xmin = r.applied_xid AND r.managed_by = {source} AND r.applied_hash IS NOT NULL")
    }

    /// The kinds whose rows a plan may read as `Unread`: organizations have
    /// members in a table of their own, and are always read whole.
    pub const UNREAD: [Kind; 2] = [Kind::Permit, Kind::Enrollment];

    /// PostgreSQL: the query for this table's rows other than the `unedited`
    /// ones, which `LiveTable::Unread` reads.
    pub fn edited(self, source: &str) -> String {
        format!(
            "{} WHERE ({}) IS NOT TRUE",
            self.query(source, false),
            LiveTable::unedited(source)
        )
    }

    /// PostgreSQL: the query for this table's rows whose keys (members:
    /// their organizations' keys) are in the JSON array of `[app, id]`
    /// pairs held by the setting `setting`.
    pub fn keyed(self, setting: &str) -> String {
        self.keyed_among(&format!(
            "SELECT k->>0, k->>1 FROM json_array_elements(current_setting('{setting}')::json) k"
        ))
    }

    /// SQLite: `keyed`, the JSON array of `[app, id]` pairs being the
    /// query's parameter `?1`.
    pub fn keyed_sqlite(self) -> String {
        self.keyed_among(
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?1)",
        )
    }

    /// The query for this table's rows whose `(app, id)` (members: their
    /// organization's) `pairs`, a query, returns.
    fn keyed_among(self, pairs: &str) -> String {
        let id = match self {
            LiveTable::Members => "org_slug",
            _ => self.rows_of().map_or("id", |(_, id)| id),
        };
        format!(
            "{} WHERE (r.app, r.{id}) IN ({pairs})",
            self.query("NULL", false)
        )
    }

    /// The tables of rows: each with the kind it holds and its id column.
    const ROWS: [(LiveTable, Kind, &'static str); 3] = [
        (LiveTable::Organizations, Kind::Organization, "slug"),
        (LiveTable::Permits, Kind::Permit, "id"),
        (LiveTable::Enrollments, Kind::Enrollment, "id"),
    ];

    /// The kind a table of rows holds and its id column.
    pub(super) fn rows_of(self) -> Option<(Kind, &'static str)> {
        LiveTable::ROWS
            .into_iter()
            .find(|(table, _, _)| *table == self)
            .map(|(_, kind, id)| (kind, id))
    }

    /// The kind of rows the table holds, if it holds rows.
    pub fn kind(self) -> Option<Kind> {
        self.rows_of().map(|(kind, _)| kind)
    }

    /// The table of rows of `kind`.
    pub fn of(kind: Kind) -> LiveTable {
        match kind {
            Kind::Organization => LiveTable::Organizations,
            Kind::Permit => LiveTable::Permits,
            Kind::Enrollment => LiveTable::Enrollments,
        }
    }

    /// The query `Assembler::add` reads, the same SQL on both backends.
    /// `source` is the SQL of the source's name (a parameter or setting).
    /// With `join`, a row table's rows bring their ledger entries along, as
    /// their last two columns (see `Assembler::with_capacity`). The file an
    /// entry names is not read: only a plan's deletes need it
    /// (`store::explain`), and it was half of the ledger's bytes.
    pub fn query(self, source: &str, join: bool) -> String {
        let columns = match self {
            LiveTable::Members => {
                "r.app, r.org_slug, r.user_id, r.contact_id, r.role, r.token_limit"
            }
            LiveTable::Organizations => {
                "r.app, r.slug, r.name, r.monthly_tokens, r.allowed_models, \
                 CASE WHEN r.gitops THEN 1 ELSE 0 END, r.managed_by, r.applied_hash"
            }
            LiveTable::Permits => {
                "r.app, r.id, r.permission_id, r.slugs, r.roles, r.managed_by, r.applied_hash"
            }
            LiveTable::Enrollments => {
                "r.app, r.id, r.role, r.user_id, r.contact_id, r.managed_by, r.applied_hash"
            }
            LiveTable::Claims => "r.source, r.kind, r.app, r.object_id, r.declared_in",
            LiveTable::Unread(_) => {
                // No owner column: the condition makes it the source.
                return format!(
                    "SELECT r.app, r.id, r.applied_hash FROM {} r WHERE {}",
                    self.name(),
                    LiveTable::unedited(source)
                );
            }
            LiveTable::Ledger | LiveTable::Orphans => {
                let mut query = format!(
                    "SELECT r.kind, r.app, r.object_id, r.reported_hash \
                     FROM ledger r WHERE r.source = {source}"
                );
                if self == LiveTable::Orphans {
                    for (table, kind, id) in LiveTable::ROWS {
                        query.push_str(&format!(
                            " AND NOT EXISTS (SELECT 1 FROM {} t WHERE r.kind = '{kind}' \
                             AND t.app = r.app AND t.{id} = r.object_id)",
                            table.name()
                        ));
                    }
                }
                return query;
            }
        };
        match self.rows_of() {
            Some((kind, id)) if join => format!(
                "SELECT {columns}, CASE WHEN m.kind IS NULL THEN 0 ELSE 1 END, \
                 m.reported_hash FROM {} r LEFT JOIN ledger m \
                 ON m.kind = '{kind}' AND m.app = r.app AND m.object_id = r.{id} \
                 AND m.source = {source}",
                self.name()
            ),
            _ => format!("SELECT {columns} FROM {} r", self.name()),
        }
    }
}
