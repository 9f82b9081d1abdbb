//! A folder of YAML files as a source. Hidden entries are skipped, only
//! `*.yaml`/`*.yml` are read, files over the size cap are refused, and
//! symlinks are never followed: one that leads out of the root is an error,
//! one that stays inside is skipped because its target is read where it is.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Snapshot, Source, SourceError};
use crate::model::{Diagnostic, Mark, SourceFile};

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
    let mut walk = Walk {
        max_file_size,
        snapshot: Snapshot::default(),
        files: Vec::new(),
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
    walk.files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut snapshot = walk.snapshot;
    snapshot.revision = tree_hash(&walk.files);
    snapshot.files = walk.files.into_iter().map(|(_, file)| file).collect();
    Ok(snapshot)
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
    snapshot: Snapshot,
    /// Files read, by path relative to their root.
    files: Vec<(String, SourceFile)>,
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
        // Read at most one byte past the cap: the file may grow after stat.
        let mut bytes = Vec::with_capacity(len as usize);
        let read = fs::File::open(path)
            .and_then(|f| f.take(self.max_file_size + 1).read_to_end(&mut bytes));
        match read {
            Err(e) => self.problem(path, format!("cannot read file: {e}")),
            Ok(_) if bytes.len() as u64 > self.max_file_size => self.problem(
                path,
                format!(
                    "file is over the {} byte limit (--max-file-size)",
                    self.max_file_size
                ),
            ),
            Ok(_) => self.files.push((
                relative,
                SourceFile {
                    path: Arc::from(path.display().to_string()),
                    bytes,
                },
            )),
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}
