//! A Git repository as a source: fetched into a bare cache repository and
//! read straight from the fetched commit's objects — never a checkout. The
//! revision is the full commit id; audit rows name the author of the newest
//! commit that touched each object's file.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{
    Cred, CredentialType, ErrorClass, ErrorCode, FetchOptions, ObjectType, Oid, RemoteCallbacks,
    Repository, Sort, TreeWalkMode, TreeWalkResult,
};

use serde::Deserialize;

use super::{Commit, Snapshot, Source, SourceError};
use crate::model::incremental::{ContentId, Held};
use crate::model::{Diagnostic, Mark, SourceFile};

mod trust;

use trust::RemoteTrust;

#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitConfig {
    /// https://, ssh://, git@host:path or file:// URL.
    pub url: String,
    /// A branch, a tag or a full commit id.
    #[serde(default = "default_ref", rename = "ref")]
    pub reference: String,
    /// A folder inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_file: Option<PathBuf>,
    /// PEM certificates that an https remote's certificate must chain to,
    /// instead of the system's CA store: for a server behind a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// An OpenSSH known_hosts file that must list an ssh remote's host key,
    /// instead of `~/.ssh/known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_file: Option<PathBuf>,
}

fn default_ref() -> String {
    "main".into()
}

#[derive(Clone, Debug)]
pub struct GitSource {
    pub config: GitConfig,
    /// The bare repository fetched into.
    pub cache: PathBuf,
    pub max_file_size: u64,
    /// The commit last read, to notice force-pushes.
    last: Arc<Mutex<Option<Oid>>>,
}

impl GitSource {
    pub fn new(config: GitConfig, cache_root: &Path, name: &str, max_file_size: u64) -> GitSource {
        // One cache per source and URL, so changing the URL starts clean.
        let id = &blake3::hash(config.url.as_bytes()).to_hex()[..12];
        GitSource {
            cache: cache_root.join(format!("{name}-{id}.git")),
            config,
            max_file_size,
            last: Arc::default(),
        }
    }

    fn open(&self) -> Result<Repository, SourceError> {
        let repo = match Repository::open_bare(&self.cache) {
            Ok(repo) => repo,
            Err(_) => {
                std::fs::create_dir_all(&self.cache).map_err(|source| SourceError::Io {
                    path: self.cache.clone(),
                    source,
                })?;
                Repository::init_bare(&self.cache).map_err(git_error)?
            }
        };
        Ok(repo)
    }

    /// Fetches branches and tags and resolves `ref` to a commit.
    pub fn fetch_blocking(&self) -> Result<(Repository, Oid), SourceError> {
        let repo = self.open()?;
        {
            let mut remote =
                repo.remote_anonymous(&self.config.url)
                    .map_err(|e| SourceError::Remote {
                        reason: crate::redact::scrub(e.message(), &self.config.url),
                    })?;
            let trust = Arc::new(RemoteTrust::load(&self.config)?);
            let offered = Arc::new(Mutex::new(None));
            let mut options = FetchOptions::new();
            options.remote_callbacks(self.callbacks(&trust, &offered)?);
            options.prune(git2::FetchPrune::On);
            options.download_tags(git2::AutotagOption::All);
            remote
                .fetch(
                    &[
                        "+refs/heads/*:refs/remotes/origin/*",
                        "+refs/tags/*:refs/tags/*",
                    ],
                    Some(&mut options),
                    None,
                )
                .map_err(|e| {
                    let offered = offered.lock().unwrap_or_else(|e| e.into_inner());
                    let why = match (trust.explain(&e), offered.as_ref()) {
                        (Some(why), _) => why,
                        (None, Some(what)) if e.code() == ErrorCode::Auth => {
                            format!("{}: the remote refused {what}", e.message())
                        }
                        (None, _) => e.message().to_owned(),
                    };
                    SourceError::Fetch {
                        url: crate::redact::url(&self.config.url),
                        reason: crate::redact::scrub(&why, &self.config.url),
                    }
                })?;
        }
        let oid = resolve(&repo, &self.config.reference)?;
        Ok((repo, oid))
    }

    /// Credentials and the checks of `trust`; `offered` says which
    /// credential was last offered, so a refusal names the file to fix.
    fn callbacks(
        &self,
        trust: &Arc<RemoteTrust>,
        offered: &Arc<Mutex<Option<String>>>,
    ) -> Result<RemoteCallbacks<'static>, SourceError> {
        let read = |path: &Option<PathBuf>| -> Result<Option<String>, SourceError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .map(|s| s.trim().to_owned())
                        .map_err(|source| SourceError::Io {
                            path: p.clone(),
                            source,
                        })
                })
                .transpose()
        };
        let token = read(&self.config.token_file)?;
        let key = self.config.ssh_key_file.clone();
        let token_file = self.config.token_file.clone();
        let mut attempts = 0;
        let offered = Arc::clone(offered);
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, username, allowed| {
            // libgit2 asks again after a refusal; give up instead of looping.
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::new(
                    ErrorCode::Auth,
                    ErrorClass::Callback,
                    "authentication failed",
                ));
            }
            let mut offered = offered.lock().unwrap_or_else(|e| e.into_inner());
            if allowed.contains(CredentialType::SSH_KEY) {
                if let Some(key) = &key {
                    *offered = Some(format!("the key in sshKeyFile {}", key.display()));
                    return Cred::ssh_key(username.unwrap_or("git"), None, key, None);
                }
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                if let (Some(token), Some(file)) = (&token, &token_file) {
                    *offered = Some(format!("the token in tokenFile {}", file.display()));
                    return Cred::userpass_plaintext(username.unwrap_or("x-access-token"), token);
                }
            }
            Err(git2::Error::from_str(
                "no credentials configured for this remote",
            ))
        });
        let trust = Arc::clone(trust);
        callbacks.certificate_check(move |cert, host| trust.check(cert, host));
        Ok(callbacks)
    }

    /// Reads the tree under `path` of `commit`.
    pub fn read_commit(
        &self,
        repo: &Repository,
        commit: Oid,
        held: &Held,
    ) -> Result<Snapshot, SourceError> {
        read_tree_holding(
            repo,
            commit,
            self.prefix().as_deref(),
            self.max_file_size,
            held,
        )
    }

    fn prefix(&self) -> Option<String> {
        self.config
            .path
            .as_deref()
            .map(|p| p.trim_matches('/').to_owned())
            .filter(|p| !p.is_empty() && p != ".")
    }

    /// Fetches, and reads the tree when the commit differs from `known`.
    /// Blobs `held` names (same path, same id) are listed but not read.
    pub fn poll_blocking(
        &self,
        known: Option<&str>,
        held: &Held,
    ) -> Result<Option<Snapshot>, SourceError> {
        let (repo, oid) = self.fetch_blocking()?;
        let mut notes = Vec::new();
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(previous) = *last {
                if previous != oid && !repo.graph_descendant_of(oid, previous).unwrap_or(false) {
                    notes.push(format!(
                        "`{}` moved to {oid}, which does not descend from {previous} (force-push or rewritten history)",
                        self.config.reference
                    ));
                }
            }
            *last = Some(oid);
        }
        if known == Some(oid.to_string().as_str()) {
            return Ok(None);
        }
        let mut snapshot = self.read_commit(&repo, oid, held)?;
        snapshot.notes = notes;
        Ok(Some(snapshot))
    }

    /// `Name <email>` of the author of the newest commit that touched each file.
    pub fn authors_blocking(
        &self,
        revision: &str,
        files: &[Arc<str>],
    ) -> HashMap<Arc<str>, String> {
        let mut found = HashMap::new();
        let Ok(repo) = self.open() else {
            return found;
        };
        let Ok(head) = Oid::from_str(revision) else {
            return found;
        };
        let mut wanted: HashSet<&str> = files.iter().map(|f| &**f).collect();
        let Ok(mut walk) = repo.revwalk() else {
            return found;
        };
        let _ = walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME);
        if walk.push(head).is_err() {
            return found;
        }
        // Bounded: a very old file is credited to the oldest commit looked at.
        for oid in walk.take(10_000).flatten() {
            if wanted.is_empty() {
                break;
            }
            let Ok(commit) = repo.find_commit(oid) else {
                break;
            };
            let author = commit.author();
            let name = format!(
                "{} <{}>",
                author.name().unwrap_or("unknown"),
                author.email().unwrap_or("")
            );
            let Ok(tree) = commit.tree() else { break };
            let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
            let mut options = git2::DiffOptions::new();
            for path in &wanted {
                options.pathspec(*path);
            }
            options.disable_pathspec_match(true);
            let Ok(diff) =
                repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut options))
            else {
                break;
            };
            for delta in diff.deltas() {
                if let Some(path) = delta.new_file().path().and_then(|p| p.to_str()) {
                    if let Some(&file) = wanted.get(path) {
                        found.insert(Arc::from(file), name.clone());
                        wanted.remove(file);
                    }
                }
            }
        }
        found
    }
}

impl Source for GitSource {
    async fn read(&self) -> Result<Snapshot, SourceError> {
        self.poll(None)
            .await?
            .ok_or_else(|| SourceError::UnknownRef(self.config.reference.clone()))
    }

    async fn poll(&self, known: Option<&str>) -> Result<Option<Snapshot>, SourceError> {
        self.poll_holding(known, Held::nothing()).await
    }

    async fn poll_holding(
        &self,
        known: Option<&str>,
        held: Held,
    ) -> Result<Option<Snapshot>, SourceError> {
        let known = known.map(str::to_owned);
        blocking(self, move |this| {
            this.poll_blocking(known.as_deref(), &held)
        })
        .await?
    }

    async fn authors(&self, revision: &str, files: Vec<Arc<str>>) -> HashMap<Arc<str>, String> {
        let revision = revision.to_owned();
        blocking(self, move |this| this.authors_blocking(&revision, &files))
            .await
            .unwrap_or_default()
    }
}

/// Runs git2 work off the async runtime.
async fn blocking<T: Send + 'static>(
    source: &GitSource,
    work: impl FnOnce(&GitSource) -> T + Send + 'static,
) -> Result<T, SourceError> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || work(&source))
        .await
        .map_err(SourceError::Task)
}

fn resolve(repo: &Repository, reference: &str) -> Result<Oid, SourceError> {
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        let oid = Oid::from_str(reference).map_err(git_error)?;
        return repo
            .find_commit(oid)
            .map(|c| c.id())
            .map_err(|_| SourceError::UnknownCommit(reference.to_owned()));
    }
    for name in [
        format!("refs/remotes/origin/{reference}"),
        format!("refs/tags/{reference}"),
    ] {
        if let Ok(r) = repo.find_reference(&name) {
            if let Ok(commit) = r.peel_to_commit() {
                return Ok(commit.id());
            }
        }
    }
    Err(SourceError::UnknownRef(reference.to_owned()))
}

/// Reads the YAML files of `commit`'s tree under `prefix` (a folder of the
/// repository), straight from the object database: the same files, skipped
/// and refused alike, whether a Git source or a query reads the revision.
/// The blobs are read in parallel.
pub fn read_tree(
    repo: &Repository,
    commit: Oid,
    prefix: Option<&str>,
    max_file_size: u64,
) -> Result<Snapshot, SourceError> {
    read_tree_holding(repo, commit, prefix, max_file_size, &Held::nothing())
}

/// `read_tree`, with every file listed by blob id and only the blobs `held`
/// does not name read: a commit that changed a few files reads a few blobs.
pub fn read_tree_holding(
    repo: &Repository,
    commit: Oid,
    prefix: Option<&str>,
    max_file_size: u64,
    held: &Held,
) -> Result<Snapshot, SourceError> {
    use rayon::prelude::*;
    let walked = walk(repo, commit, prefix)?;
    let path = repo.path().to_owned();
    let ids: Vec<ContentId> = walked.blobs.iter().map(|(_, id)| content_id(*id)).collect();
    let read: Vec<Option<Blob>> = walked
        .blobs
        .par_iter()
        .zip(&ids)
        .map_init(
            || Repository::open(&path),
            |opened, ((path, oid), id)| {
                if held.contains(path, id) {
                    return Ok(None);
                }
                read_blob(opened.as_ref().map_err(copy_error)?, *oid, max_file_size).map(Some)
            },
        )
        .collect::<Result<_, git2::Error>>()
        .map_err(git_error)?;
    let mut snapshot = Snapshot {
        revision: walked.revision,
        problems: walked.problems,
        commit: Some(walked.commit),
        ..Snapshot::default()
    };
    let mut listing = Vec::with_capacity(ids.len());
    for (((path, _), id), blob) in walked.blobs.into_iter().zip(ids).zip(read) {
        match blob {
            None => listing.push((path, id)),
            Some(Blob::Bytes(bytes)) => {
                listing.push((path.clone(), id));
                snapshot.files.push(SourceFile { path, bytes });
            }
            Some(Blob::TooLarge(size)) => {
                snapshot
                    .problems
                    .push(too_large(&path, size, max_file_size))
            }
        }
    }
    snapshot.files.sort_by(|a, b| a.path.cmp(&b.path));
    listing.sort_by(|a, b| a.0.cmp(&b.0));
    snapshot.listing = Some(listing);
    Ok(snapshot)
}

/// A blob's id as a parse cache names content.
fn content_id(oid: Oid) -> ContentId {
    let mut id = [0; 20];
    id.copy_from_slice(oid.as_bytes());
    id
}

/// A libgit2 error, again (they cannot be cloned).
fn copy_error(e: &git2::Error) -> git2::Error {
    git2::Error::new(e.code(), e.class(), e.message())
}

/// A commit's tree walked: its YAML blobs by path (as shown), and the
/// entries refused on sight (symlinks leading out of the tree).
pub struct Walked {
    pub revision: String,
    pub commit: Commit,
    pub blobs: Vec<(Arc<str>, Oid)>,
    pub problems: Vec<Diagnostic>,
}

/// Walks `commit`'s tree under `prefix` for the YAML files `read_tree`
/// reads, without reading them.
pub fn walk(repo: &Repository, commit: Oid, prefix: Option<&str>) -> Result<Walked, SourceError> {
    let commit = repo.find_commit(commit).map_err(git_error)?;
    let mut tree = commit.tree().map_err(git_error)?;
    if let Some(path) = prefix {
        let entry = tree
            .get_path(Path::new(path))
            .map_err(|_| SourceError::MissingPath {
                path: path.to_owned(),
                commit: commit.id().to_string(),
            })?;
        tree = repo
            .find_tree(entry.id())
            .map_err(|_| SourceError::NotAFolder {
                path: path.to_owned(),
                commit: commit.id().to_string(),
            })?;
    }
    let mut walked = Walked {
        revision: commit.id().to_string(),
        commit: described(&commit),
        blobs: Vec::new(),
        problems: Vec::new(),
    };
    let shown = |dir: &str, name: &str| match prefix {
        Some(p) => format!("{p}/{dir}{name}"),
        None => format!("{dir}{name}"),
    };
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name().unwrap_or_default();
        if name.starts_with('.') {
            return TreeWalkResult::Skip;
        }
        if entry.kind() != Some(ObjectType::Blob) || !is_yaml(name) {
            return TreeWalkResult::Ok;
        }
        let path: Arc<str> = Arc::from(shown(dir, name));
        if entry.filemode() == 0o120000 {
            // Symlinks are never followed; one leading out of the tree is an error.
            let target = repo
                .find_blob(entry.id())
                .map(|b| String::from_utf8_lossy(b.content()).into_owned())
                .unwrap_or_default();
            if escapes(dir, &target) {
                walked.problems.push(Diagnostic::new(
                    &path,
                    Mark::START,
                    "symlink leads out of the source root; it is not followed",
                ));
            }
            return TreeWalkResult::Ok;
        }
        walked.blobs.push((path, entry.id()));
        TreeWalkResult::Ok
    })
    .map_err(git_error)?;
    Ok(walked)
}

/// The author, time and message of `commit`, each read as text even when
/// it is not UTF-8, the message cut at `Commit::MAX_MESSAGE`.
fn described(commit: &git2::Commit<'_>) -> Commit {
    let author = commit.author();
    let mut message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    if message.len() > Commit::MAX_MESSAGE {
        let mut end = Commit::MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("\n[…message cut]");
    }
    Commit {
        author: String::from_utf8_lossy(author.name_bytes()).into_owned(),
        authored_at: chrono::DateTime::from_timestamp(author.when().seconds(), 0)
            .unwrap_or_default(),
        message: message.trim_end().to_owned(),
    }
}

/// A blob as `read_tree` takes it: its bytes, or its size when over the
/// limit (then it is not read).
pub enum Blob {
    Bytes(Vec<u8>),
    TooLarge(usize),
}

/// Reads blob `id`, unless it is over `max_file_size`.
pub fn read_blob(repo: &Repository, id: Oid, max_file_size: u64) -> Result<Blob, git2::Error> {
    let (size, _) = repo.odb()?.read_header(id)?;
    if size as u64 > max_file_size {
        return Ok(Blob::TooLarge(size));
    }
    Ok(Blob::Bytes(repo.find_blob(id)?.content().to_vec()))
}

/// The error of a file over the size limit.
pub fn too_large(path: &Arc<str>, size: usize, max_file_size: u64) -> Diagnostic {
    Diagnostic::new(
        path,
        Mark::START,
        format!("file is {size} bytes, over the {max_file_size} byte limit (maxFileSize)"),
    )
}

fn git_error(e: git2::Error) -> SourceError {
    SourceError::Repository(e)
}

fn is_yaml(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// Whether a symlink in `dir` (relative to the source root) pointing at
/// `target` leads out of the root.
fn escapes(dir: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return true;
    }
    let mut depth: i64 = 0;
    for component in Path::new(dir).join(target).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => depth -= 1,
            Component::CurDir => {}
            _ => return true,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::model::arbitrary::{apply, change};
    use crate::model::incremental::ParseCache;
    use crate::model::Limits;
    use crate::source::DEFAULT_MAX_FILE_SIZE;

    /// Commits `tree` (flat: file name to text) on top of `parent`.
    fn commit(repo: &Repository, tree: &BTreeMap<String, String>, parent: Option<Oid>) -> Oid {
        let mut builder = repo.treebuilder(None).unwrap();
        for (path, text) in tree {
            let blob = repo.blob(text.as_bytes()).unwrap();
            builder.insert(path, blob, 0o100644).unwrap();
        }
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        let who = git2::Signature::new("A", "a@example.com", &git2::Time::new(0, 0)).unwrap();
        let parents: Vec<git2::Commit<'_>> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &who, &who, "change", &tree, &parents)
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        /// Every commit of a random sequence, read by blob id with only the
        /// blobs the cache lacks read and parsed through the cache, gives
        /// what reading and parsing the whole tree gives, and reads exactly
        /// the blobs that are new at their path.
        #[test]
        fn a_commit_read_by_blob_id_parses_as_the_whole_tree(
            changes in prop::collection::vec(change(), 1..10)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            let mut tree = BTreeMap::new();
            let mut parent = None;
            let mut cache = ParseCache::new(Limits::default());
            let mut before = BTreeMap::new();
            for change in &changes {
                apply(&mut tree, change);
                let id = commit(&repo, &tree, parent);
                parent = Some(id);
                let whole = read_tree(&repo, id, None, DEFAULT_MAX_FILE_SIZE).unwrap();
                let full = whole.desired_for_plan(Limits::default());
                let held = cache.held();
                let read = read_tree_holding(&repo, id, None, DEFAULT_MAX_FILE_SIZE, &held).unwrap();
                let (incremental, _) = read.desired_incremental(&mut cache).unwrap();
                prop_assert_eq!(&incremental, &full);
                let new = tree.iter().filter(|(p, t)| before.get(*p) != Some(*t)).count();
                prop_assert_eq!(read.files.len(), new);
                before = tree.clone();
            }
        }
    }
}
