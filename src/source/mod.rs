//! Where declared state comes from. A `Source` yields a snapshot: the files of
//! one revision (read whole, once) and any problems met while reading them.

pub mod directory;

use std::future::Future;
use std::path::PathBuf;

use crate::model::{Diagnostic, SourceFile};

pub use directory::DirectorySource;

/// The default cap on one file's size.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// The files of one revision of a source.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// A content hash of the tree for a folder, the commit id for Git.
    pub revision: String,
    pub files: Vec<SourceFile>,
    /// Files that could not be taken (too large, unreadable, a symlink out of
    /// the root), located like parse errors. Any of them rejects the revision.
    pub problems: Vec<Diagnostic>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the source reader stopped unexpectedly: {0}")]
    Task(String),
}

pub trait Source: Send + Sync {
    /// The current revision, read whole.
    fn read(&self) -> impl Future<Output = Result<Snapshot, SourceError>> + Send;
}
