//! A folder of YAML files as a source. Hidden entries are skipped, only
//! `*.yaml`/`*.yml` are read, files over the size cap are refused, and
//! symlinks are never followed: one that leads out of the root is an error,
//! one that stays inside is skipped because its target is read where it is.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Snapshot, Source, SourceError};
use crate::model::parse::{tally_file, Counts, FileTally, Tally};
use crate::model::{Diagnostic, Limits, Mark, SourceFile};

#[derive(Clone, Debug)]
pub struct DirectorySource {
    pub root: PathBuf,
    pub max_file_size: u64,
}

impl DirectorySource {
    pub fn new(root: impl Into<PathBuf>, max_file_size: u64) -> DirectorySource {
        DirectorySource {
            root: root.into(),
            max_file_size,
        }
    }

    /// Reads the tree now, on the calling thread.
    pub fn read_blocking(&self) -> Result<Snapshot, SourceError> {
        read_paths(std::slice::from_ref(&self.root), self.max_file_size)
    }
}

impl Source for DirectorySource {
    async fn read(&self) -> Result<Snapshot, SourceError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(SourceError::Task)?
    }
}

/// Reads files and folders given on a command line into one snapshot. A file
/// named directly is read whatever its extension.
pub fn read_paths(paths: &[PathBuf], max_file_size: u64) -> Result<Snapshot, SourceError> {
    use rayon::prelude::*;
    let walk = list_paths(paths, max_file_size)?;
    let read: Vec<Result<SourceFile, Diagnostic>> = walk
        .found
        .par_iter()
        .map(|found| found.read(max_file_size))
        .collect();
    let mut snapshot = walk.snapshot;
    let mut files = Vec::with_capacity(read.len());
    for (found, file) in walk.found.into_iter().zip(read) {
        match file {
            Ok(file) => files.push((found.relative, file)),
            Err(problem) => snapshot.problems.push(problem),
        }
    }
    snapshot.revision = tree_hash(&files);
    snapshot.files = files.into_iter().map(|(_, file)| file).collect();
    Ok(snapshot)
}

/// Checks files and folders as `read_paths` and a parse would, keeping of
/// each object only its key and place (`Tally`): a million objects are
/// checked in the memory of their keys, not of their text and objects.
pub fn check_paths(
    paths: &[PathBuf],
    max_file_size: u64,
    limits: Limits,
) -> Result<Result<Counts, Vec<Diagnostic>>, SourceError> {
    use rayon::prelude::*;
    let walk = list_paths(paths, max_file_size)?;
    let mut tally = Tally::default();
    for problem in walk.snapshot.problems {
        tally.problem(problem);
    }
    // Each file is read, parsed and dropped on a worker; what is kept comes
    // back in path order, so "declared twice" names the same first place
    // as a whole parse. A batch at a time: only the batch's keys wait
    // beside the tally's.
    for batch in walk.found.chunks(CHECK_BATCH) {
        let checked: Vec<Result<FileTally, Diagnostic>> = batch
            .par_iter()
            .map(|found| Ok(tally_file(&found.read(max_file_size)?, limits)))
            .collect();
        for file in checked {
            match file {
                Ok(file) => tally.add(file),
                Err(problem) => tally.problem(problem),
            }
        }
    }
    Ok(tally.finish())
}

/// Files checked at once: enough to keep every core busy, few enough that
/// their keys are small beside the tally's.
const CHECK_BATCH: usize = 256;

/// Lists the YAML files under `paths` (and refuses what a walk refuses)
/// without reading them, in path order.
fn list_paths(paths: &[PathBuf], max_file_size: u64) -> Result<Walk, SourceError> {
    let mut walk = Walk {
        max_file_size,
        snapshot: Snapshot::default(),
        found: Vec::new(),
    };
    for path in paths {
        let meta = fs::metadata(path).map_err(|source| SourceError::Io {
            path: path.clone(),
            source,
        })?;
        if meta.is_dir() {
            let root = path.canonicalize().map_err(|source| SourceError::Io {
                path: path.clone(),
                source,
            })?;
            walk.dir(&root, path)?;
        } else {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            walk.file(path, name.unwrap_or_default(), meta.len());
        }
    }
    walk.found.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(walk)
}

/// A content hash of the tree: paths relative to the root and bytes, in path
/// order, so the same tree has the same revision wherever it is checked out.
pub fn tree_hash(files: &[(String, SourceFile)]) -> String {
    let mut hasher = blake3::Hasher::new();
    for (relative, file) in files {
        hasher.update(relative.as_bytes());
        hasher.update(&[0]);
        hasher.update(&(file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    hasher.finalize().to_hex()[..20].to_owned()
}

struct Walk {
    max_file_size: u64,
    /// The problems found on the way (the files are read later).
    snapshot: Snapshot,
    found: Vec<Found>,
}

/// A file a walk found, to be read.
struct Found {
    /// Relative to its root: the order of files, and the tree's hash.
    relative: String,
    /// As the user named it.
    path: PathBuf,
    /// When listed.
    len: u64,
}

impl Found {
    fn read(&self, max_file_size: u64) -> Result<SourceFile, Diagnostic> {
        let problem = |message: String| {
            Diagnostic::new(
                &Arc::from(self.path.display().to_string()),
                Mark::START,
                message,
            )
        };
        // Read at most one byte past the cap: the file may have grown
        // since it was listed.
        let mut bytes = Vec::with_capacity(self.len.min(max_file_size) as usize);
        let read = fs::File::open(&self.path)
            .and_then(|f| f.take(max_file_size + 1).read_to_end(&mut bytes));
        match read {
            Err(e) => Err(problem(format!("cannot read file: {e}"))),
            Ok(_) if bytes.len() as u64 > max_file_size => Err(problem(format!(
                "file is over the {max_file_size} byte limit (--max-file-size)"
            ))),
            Ok(_) => Ok(SourceFile {
                path: Arc::from(self.path.display().to_string()),
                bytes,
            }),
        }
    }
}

impl Walk {
    fn problem(&mut self, path: &Path, message: impl Into<String>) {
        self.snapshot.problems.push(Diagnostic::new(
            &Arc::from(path.display().to_string()),
            Mark::START,
            message,
        ));
    }

    /// `real` is the canonical root, `shown` the same folder as the user named it.
    fn dir(&mut self, real: &Path, shown: &Path) -> Result<(), SourceError> {
        let mut stack = vec![(real.to_path_buf(), shown.to_path_buf(), String::new())];
        while let Some((dir, shown_dir, relative_dir)) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|source| SourceError::Io {
                path: shown_dir.clone(),
                source,
            })?;
            for entry in entries {
                let entry = entry.map_err(|source| SourceError::Io {
                    path: shown_dir.clone(),
                    source,
                })?;
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let shown_path = shown_dir.join(&name);
                let relative = format!("{relative_dir}{}", name.to_string_lossy());
                let meta = fs::symlink_metadata(&path).map_err(|source| SourceError::Io {
                    path: shown_path.clone(),
                    source,
                })?;
                if meta.file_type().is_symlink() {
                    match path.canonicalize() {
                        Ok(target) if target.starts_with(real) => {}
                        Ok(_) => self.problem(
                            &shown_path,
                            "symlink leads out of the source root; it is not followed",
                        ),
                        Err(_) if is_yaml(&path) => {
                            self.problem(&shown_path, "symlink to a missing file")
                        }
                        Err(_) => {}
                    }
                } else if meta.is_dir() {
                    stack.push((path, shown_path, format!("{relative}/")));
                } else if meta.is_file() && is_yaml(&path) {
                    self.file(&shown_path, relative, meta.len());
                }
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &Path, relative: String, len: u64) {
        if len > self.max_file_size {
            self.problem(
                path,
                format!(
                    "file is {len} bytes, over the {} byte limit (--max-file-size)",
                    self.max_file_size
                ),
            );
            return;
        }
        self.found.push(Found {
            relative,
            path: path.to_path_buf(),
            len,
        });
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}
