//! The database behind a `Store` trait: SQLite (embedded, the default) and
//! PostgreSQL, with the same schema, migrations applied on connect, and every
//! sync applied in one transaction together with its audit rows.

mod rows;
mod sql;

use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::Kind;
use crate::plan::{LiveState, Plan, Summary};

pub use sql::{PostgresStore, SqliteStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL `{0}`: expected sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    UnsupportedUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// What the drift policy does with a managed row edited or deleted by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Put it back and audit `drift_corrected`.
    #[default]
    Correct,
    /// Leave it, audit `drift_detected` once.
    Report,
}

impl std::str::FromStr for DriftPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "correct" => Ok(DriftPolicy::Correct),
            "report" => Ok(DriftPolicy::Report),
            other => Err(format!(
                "unknown drift policy `{other}`, expected correct or report"
            )),
        }
    }
}

/// Who applies what, from where.
#[derive(Clone, Debug)]
pub struct ApplyRequest<'a> {
    pub source: &'a str,
    pub revision: &'a str,
    pub actor: &'a str,
    pub drift: DriftPolicy,
    pub plan: &'a Plan,
}

/// The record of one applied sync (a `sync_runs` row).
#[derive(Clone, Debug, Serialize)]
pub struct SyncRecord {
    pub id: i64,
    pub source: String,
    pub revision: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub summary: Summary,
    /// Audit rows written.
    pub audited: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    DriftCorrected,
    DriftDetected,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::DriftCorrected => "drift_corrected",
            AuditAction::DriftDetected => "drift_detected",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the append-only audit log.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub source: String,
    pub revision: String,
    pub action: String,
    pub kind: String,
    pub app: String,
    pub id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub diff: String,
}

#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub source: Option<String>,
    pub kind: Option<Kind>,
    pub since: Option<DateTime<Utc>>,
    pub limit: u32,
}

/// The database accord reconciles.
pub trait Store: Send + Sync {
    /// The rows in scope and the keys `source` manages. With `source` = None,
    /// every row and no ownership records (for export).
    fn load(
        &self,
        source: Option<&str>,
    ) -> impl Future<Output = Result<LiveState, StoreError>> + Send;

    /// Applies the plan, its audit rows and the sync record in one transaction.
    fn apply(
        &self,
        request: ApplyRequest<'_>,
    ) -> impl Future<Output = Result<SyncRecord, StoreError>> + Send;

    /// The newest audit rows first.
    fn audit(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditEntry>, StoreError>> + Send;
}

/// A store chosen by URL at run time.
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Connects to `sqlite://PATH` (created when missing) or `postgres://…`,
    /// and applies pending migrations.
    pub async fn connect(url: &str) -> Result<AnyStore, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(AnyStore::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(AnyStore::Postgres(PostgresStore::connect(url).await?))
        } else {
            Err(StoreError::UnsupportedUrl(redact(url)))
        }
    }
}

impl Store for AnyStore {
    async fn load(&self, source: Option<&str>) -> Result<LiveState, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.load(source).await,
            AnyStore::Postgres(s) => s.load(source).await,
        }
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<SyncRecord, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.apply(request).await,
            AnyStore::Postgres(s) => s.apply(request).await,
        }
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.audit(query).await,
            AnyStore::Postgres(s) => s.audit(query).await,
        }
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_appear_in_database_urls_shown_to_users() {
        assert_eq!(
            redact("postgres://accord:s3cret@db:5432/accord"),
            "postgres://accord:***@db:5432/accord"
        );
        assert_eq!(
            redact("postgres://accord@db/accord"),
            "postgres://accord@db/accord"
        );
        assert_eq!(redact("sqlite://accord.db"), "sqlite://accord.db");
    }
}
