//! Where declared state comes from. A `Source` yields a snapshot: the files of
//! one revision (read whole, once) and any problems met while reading them.

pub mod directory;
pub mod git;
pub mod kubernetes;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::incremental::{ContentId, Held, ParseCache, Reuse, Tree, Unread};
use crate::model::{parse_tree, parse_tree_for_plan, DesiredState, Diagnostic, Limits, SourceFile};

pub use directory::DirectorySource;
pub use git::GitSource;

/// The default cap on one file's size.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// The files of one revision of a source.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// A content hash of the tree for a folder, the commit id for Git.
    pub revision: String,
    pub files: Vec<SourceFile>,
    /// Every file of the tree by path and content id, sorted by path, when
    /// the source names content without reading it (Git): `files` then
    /// holds only those read, and the rest are the ones a `Held` named.
    pub listing: Option<Vec<(Arc<str>, ContentId)>>,
    /// Files that could not be taken (too large, unreadable, a symlink out of
    /// the root), located like parse errors. Any of them rejects the revision.
    pub problems: Vec<Diagnostic>,
    /// Things an operator should know that do not stop the sync, such as a
    /// force-push.
    pub notes: Vec<String>,
    /// Declarations made object by object (Kubernetes) instead of from
    /// files: the valid ones apply, each rejection stays with its object.
    pub declared: Option<Declared>,
    /// The commit the revision is (Git): who made it, when and why.
    pub commit: Option<Commit>,
}

/// A Git commit as an operator reads it beside its revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    /// The author's name.
    pub author: String,
    pub authored_at: DateTime<Utc>,
    /// The whole message, up to `Commit::MAX_MESSAGE` bytes.
    pub message: String,
}

impl Commit {
    /// A message is kept whole up to this size (a status carries it on
    /// every answer of `/api/v1/status`); a longer one is cut and says so.
    pub const MAX_MESSAGE: usize = 8 * 1024;

    /// The message's first line: what a list shows.
    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }
}

/// A source's declarations taken one object at a time.
#[derive(Clone, Debug, Default)]
pub struct Declared {
    /// Shared with the snapshots read from it, not copied.
    pub desired: Arc<DesiredState>,
    /// Objects that were not taken, each located by the object's own name.
    pub rejected: Vec<Diagnostic>,
}

/// A revision's desired state, or every problem with it.
pub type Checked = Result<Arc<DesiredState>, Vec<Diagnostic>>;

impl Snapshot {
    /// The declared state of this revision, or every problem with it: files
    /// that could not be taken and parse errors together, sorted by place.
    pub fn desired(&self, limits: Limits) -> Result<DesiredState, Vec<Diagnostic>> {
        self.parsed(limits, parse_tree).map(Arc::unwrap_or_clone)
    }

    /// `desired`, with each object's content hash for the plan to compare
    /// (`Declaration::digest`; a Kubernetes source's objects come without).
    pub fn desired_for_plan(&self, limits: Limits) -> Checked {
        self.parsed(limits, parse_tree_for_plan)
    }

    /// `desired_for_plan`, parsing only the files `cache` does not hold
    /// (same path, same content) and keeping this revision's files in it.
    /// `Unread` when the snapshot left out a file the cache no longer holds.
    pub fn desired_incremental(&self, cache: &mut ParseCache) -> Result<(Checked, Reuse), Unread> {
        if let Some(declared) = &self.declared {
            return Ok((Ok(declared.desired.clone()), Reuse::default()));
        }
        let tree = match &self.listing {
            Some(listing) => Tree::Listed {
                listing,
                read: &self.files,
            },
            None => Tree::Read(&self.files),
        };
        let (parsed, reuse) = cache.parse(tree)?;
        Ok((self.with_problems(parsed).map(Arc::new), reuse))
    }

    fn parsed(
        &self,
        limits: Limits,
        parse: fn(&[SourceFile], Limits) -> Result<DesiredState, Vec<Diagnostic>>,
    ) -> Checked {
        if let Some(declared) = &self.declared {
            return Ok(declared.desired.clone());
        }
        self.with_problems(parse(&self.files, limits)).map(Arc::new)
    }

    /// A parse's outcome with the files that could not be taken: any of
    /// them rejects the revision.
    fn with_problems(
        &self,
        parsed: Result<DesiredState, Vec<Diagnostic>>,
    ) -> Result<DesiredState, Vec<Diagnostic>> {
        match parsed {
            Ok(desired) if self.problems.is_empty() => Ok(desired),
            parsed => {
                let mut errors = self.problems.clone();
                errors.extend(parsed.err().unwrap_or_default());
                errors.sort();
                Err(errors)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the source reader stopped unexpectedly")]
    Task(#[source] tokio::task::JoinError),
    /// libgit2 failed on the local cache of a Git source.
    #[error("git: cannot read the fetched repository")]
    Repository(#[source] git2::Error),
    /// libgit2's error may quote the remote URL, secrets and all: it is kept
    /// only as `reason`, scrubbed, and never as a source.
    #[error("git: cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("git: the remote URL is not usable: {reason}")]
    Remote { reason: String },
    #[error("git: path `{path}` does not exist at commit {commit}")]
    MissingPath { path: String, commit: String },
    #[error("git: path `{path}` at commit {commit} is not a folder")]
    NotAFolder { path: String, commit: String },
    #[error("git: commit {0} is not on any branch or tag of the remote")]
    UnknownCommit(String),
    #[error(
        "git: ref `{0}` is not a branch or tag of the remote (deleted?); keeping the last applied state"
    )]
    UnknownRef(String),
    #[error("git: caFile {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    /// The watch cache has not listed every kind (and namespace) yet:
    /// syncing a half-listed cache would prune what it has not seen.
    #[error("waiting for the first list of {0}")]
    NotListed(String),
}

pub trait Source: Send + Sync {
    /// The current revision, read whole.
    fn read(&self) -> impl Future<Output = Result<Snapshot, SourceError>> + Send;

    /// The current revision when it differs from `known`, else `None`; a
    /// source that can tell cheaply (Git: the commit id) skips reading files.
    fn poll(
        &self,
        known: Option<&str>,
    ) -> impl Future<Output = Result<Option<Snapshot>, SourceError>> + Send {
        async move {
            let snapshot = self.read().await?;
            Ok((known != Some(snapshot.revision.as_str())).then_some(snapshot))
        }
    }

    /// `poll`, leaving out of the snapshot the files `held` names when the
    /// source can tell them without reading them (Git: by blob id).
    fn poll_holding(
        &self,
        known: Option<&str>,
        held: Held,
    ) -> impl Future<Output = Result<Option<Snapshot>, SourceError>> + Send {
        let _ = held;
        self.poll(known)
    }

    /// Drops from `plan` what the source keeps as it was (Kubernetes: the
    /// rows of objects that became invalid stay until they are fixed).
    fn hold(&self, _plan: &mut crate::plan::Plan) {}

    /// Whether each declared object stands alone (Kubernetes), so that
    /// when the deletion guard refuses a plan's deletions the rest of it
    /// is still applied; a revision of files is applied whole or not at all.
    fn objects_stand_alone(&self) -> bool {
        false
    }

    /// Where each of `files` (the `declared_in` of changes) is, as the audit
    /// log names it, when more than the file's name: a Kubernetes object's
    /// uid and resourceVersion.
    fn origins(&self, _files: &[Arc<str>]) -> HashMap<Arc<str>, String> {
        HashMap::new()
    }

    /// Who last changed each of `files` at `revision`, for the audit log.
    fn authors(
        &self,
        _revision: &str,
        _files: Vec<Arc<str>>,
    ) -> impl Future<Output = HashMap<Arc<str>, String>> + Send {
        async { HashMap::new() }
    }
}
