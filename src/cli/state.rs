//! The state an access query, test or preview reads: a folder, a Git
//! revision (read from the repository's objects, no checkout, as the Git
//! source reads it) or the live rows of a database (every row, managed by
//! accord or not: that is where real access is).

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use crate::access::{Access, Place, Placed};
use crate::model::{Diagnostic, KeyMap, Limits};
use crate::source::{directory, git, Snapshot, SourceError, DEFAULT_MAX_FILE_SIZE};
use crate::store::{AnyStore, Store, StoreError};

/// Where a command reads its state from: exactly one of them.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("state").required(true).args(["source", "repo", "database"])))]
pub struct StateArgs {
    /// A folder (or file) of YAML.
    #[arg(long, env = "ACCORD_SOURCE")]
    pub source: Option<PathBuf>,
    /// A Git repository (working copy or bare) to read `--rev` from.
    #[arg(long, requires = "rev")]
    pub repo: Option<PathBuf>,
    /// A commit, branch or tag of `--repo`.
    #[arg(long, requires = "repo")]
    pub rev: Option<String>,
    /// The folder inside `--repo` that holds the YAML.
    #[arg(long, requires = "repo")]
    pub path: Option<String>,
    /// The live database: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long)]
    pub database: Option<String>,
    /// Largest YAML file accepted, in bytes.
    #[arg(long, env = "ACCORD_MAX_FILE_SIZE", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

impl StateArgs {
    pub fn spec(&self) -> StateSpec {
        match (&self.source, &self.repo, &self.rev, &self.database) {
            (Some(path), ..) => StateSpec::Folder(path.clone()),
            (None, Some(repo), Some(rev), _) => StateSpec::Git {
                repo: repo.clone(),
                rev: rev.clone(),
                path: self.path.clone(),
            },
            (.., Some(url)) => StateSpec::Database(url.clone()),
            // clap's group requires one; a folder of the current directory
            // is the harmless reading of none.
            _ => StateSpec::Folder(PathBuf::from(".")),
        }
    }
}

/// One state to read.
#[derive(Clone, Debug)]
pub enum StateSpec {
    Folder(PathBuf),
    Git {
        repo: PathBuf,
        rev: String,
        path: Option<String>,
    },
    Database(String),
}

impl std::fmt::Display for StateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSpec::Folder(path) => write!(f, "{}", path.display()),
            StateSpec::Git { repo, rev, path } => match path {
                Some(path) => write!(f, "{rev}:{path} of {}", repo.display()),
                None => write!(f, "{rev} of {}", repo.display()),
            },
            StateSpec::Database(url) => f.write_str(&crate::redact::url(url)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Parse errors, each located; the caller prints them.
    #[error("{} is not valid ({} errors)", .spec, .diagnostics.len())]
    Invalid {
        spec: String,
        diagnostics: Vec<Diagnostic>,
    },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot open the Git repository {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("`{rev}` is not a commit of {path}")]
    Revision {
        rev: String,
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    #[error("the reader stopped unexpectedly")]
    Task(#[from] tokio::task::JoinError),
}

/// The objects of a state, by key, each with the place it came from.
#[derive(Debug, Default)]
pub struct State {
    pub objects: KeyMap<Placed>,
}

impl State {
    /// The access index of the state, which takes its objects over.
    pub fn into_access(self) -> Access {
        Access::build(self.objects.into_values())
    }

    fn from_snapshot(spec: &StateSpec, snapshot: &Snapshot) -> Result<State, StateError> {
        let desired =
            snapshot
                .desired(Limits::default())
                .map_err(|diagnostics| StateError::Invalid {
                    spec: spec.to_string(),
                    diagnostics,
                })?;
        let objects = desired
            .objects
            .into_iter()
            .map(|(key, declaration)| {
                let placed = (declaration.object, Place::Declared(declaration.origin));
                (key, placed)
            })
            .collect();
        Ok(State { objects })
    }
}

/// Reads the state `spec` names, whole.
pub async fn load(spec: &StateSpec, max_file_size: u64) -> Result<State, StateError> {
    match spec {
        StateSpec::Folder(path) => {
            let (spec, path) = (spec.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                let snapshot = directory::read_paths(&[path], max_file_size)?;
                State::from_snapshot(&spec, &snapshot)
            })
            .await?
        }
        StateSpec::Git { repo, rev, path } => {
            let (spec, repo, rev, path) = (spec.clone(), repo.clone(), rev.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                let snapshot = read_revision(&repo, &rev, path.as_deref(), max_file_size)?;
                State::from_snapshot(&spec, &snapshot)
            })
            .await?
        }
        StateSpec::Database(url) => {
            let store = AnyStore::connect_existing(url).await?;
            let live = store.load(None).await;
            store.close().await;
            let objects = crate::access::placed_rows(live?.rows)
                .into_iter()
                .map(|placed| (placed.0.key(), placed))
                .collect();
            Ok(State { objects })
        }
    }
}

/// Reads revision `rev` of the repository at `repo` (under `path`).
pub fn read_revision(
    repo: &std::path::Path,
    rev: &str,
    path: Option<&str>,
    max_file_size: u64,
) -> Result<Snapshot, StateError> {
    let repository = git2::Repository::open(repo).map_err(|source| StateError::Open {
        path: repo.to_owned(),
        source,
    })?;
    let commit = repository
        .revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map_err(|source| StateError::Revision {
            rev: rev.to_owned(),
            path: repo.to_owned(),
            source,
        })?;
    Ok(git::read_tree(
        &repository,
        commit.id(),
        tree_prefix(path),
        max_file_size,
    )?)
}

/// The folder inside a repository that `--path` names; none for its root.
pub fn tree_prefix(path: Option<&str>) -> Option<&str> {
    path.map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty() && *p != ".")
}

/// Reads a state, printing what went wrong: parse errors located, others
/// explained. `None` when it could not be read.
pub async fn load_or_report(spec: &StateSpec, max_file_size: u64) -> Option<State> {
    match load(spec, max_file_size).await {
        Ok(state) => Some(state),
        Err(error) => {
            report(&error);
            None
        }
    }
}

/// Prints why a state could not be read: parse errors located, others
/// explained.
pub fn report(error: &StateError) {
    if let StateError::Invalid { diagnostics, .. } = error {
        super::output::print_diagnostics(diagnostics);
    }
    eprintln!("error: {}", crate::sync::explain(error));
}
