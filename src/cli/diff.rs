//! `accord diff`: the preview of a pull request. Two declared states — two
//! revisions of a repository (read from its objects, no checkout) or two
//! folders — their object changes, and who gains or loses which permission.
//! No database. Also the Markdown of `accord plan --output markdown`, which
//! shares the comment's shape.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde_json::json;

use super::markdown::{self, code, counted, Entry, Report, Section, TEXT};
use super::output::{self, Style};
use super::state::{tree_prefix, StateError};
use super::{ERROR, OK};
use crate::access::impact::{self, Direction, Impact, ObjectChange};
use crate::access::{Place, Placed};
use crate::model::parse::{assemble, parse_file};
use crate::model::{Declaration, Diagnostic, Key, KeyMap, Limits, Origin, SourceFile};
use crate::plan::Action;
use crate::source::{directory, git, Snapshot, DEFAULT_MAX_FILE_SIZE};
use crate::sync::{self, Planned};

/// How `accord diff` and `accord plan` print their result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    /// A pull-request comment: a summary, then collapsed details.
    Markdown,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The state before: a revision of --repo (e.g. `origin/main`), or a
    /// folder without --repo.
    #[arg(long)]
    pub base: String,
    /// The state after: a revision of --repo (e.g. `HEAD`), or a folder
    /// without --repo.
    #[arg(long)]
    pub head: String,
    /// Read --base and --head as revisions of this Git repository (working
    /// copy or bare), from its objects: nothing is checked out.
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The folder inside --repo that holds the YAML.
    #[arg(long, requires = "repo")]
    pub path: Option<String>,
    /// Only this app (with the enrollments that hold in every app).
    #[arg(long)]
    pub app: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
    /// Largest YAML file accepted, in bytes.
    #[arg(long, env = "ACCORD_MAX_FILE_SIZE", default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
}

/// One side of a diff.
#[derive(Clone, Debug)]
enum Tree {
    Folder(PathBuf),
    Revision {
        repo: PathBuf,
        rev: String,
        path: Option<String>,
    },
}

impl Tree {
    fn of(args: &DiffArgs, what: &str) -> Tree {
        match &args.repo {
            Some(repo) => Tree::Revision {
                repo: repo.clone(),
                rev: what.to_owned(),
                path: args.path.clone(),
            },
            None => Tree::Folder(PathBuf::from(what)),
        }
    }

    /// As the user named it: the revision, or the folder.
    fn name(&self) -> String {
        match self {
            Tree::Folder(path) => path.display().to_string(),
            Tree::Revision { rev, .. } => rev.clone(),
        }
    }

    /// A file's name within the tree: the same for the same file on both
    /// sides (two folders show their files under different roots).
    fn relative<'a>(&self, file: &'a SourceFile) -> &'a str {
        match self {
            Tree::Folder(root) => FsPath::new(&*file.path)
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .unwrap_or(&file.path),
            Tree::Revision { .. } => &file.path,
        }
    }
}

/// A side's files, read: the revision, each file's path (in the order of
/// its parses), and the files that could not be taken.
struct Files {
    revision: String,
    paths: Vec<Arc<str>>,
    problems: Vec<Diagnostic>,
}

fn report(side: &str, tree: &Tree, error: &StateError) {
    eprintln!(
        "error: the {side} `{}`: {}",
        tree.name(),
        sync::explain(error)
    );
}

/// Two folders, read at once and parsed.
fn read_folders(
    base: &Tree,
    head: &Tree,
    max_file_size: u64,
    limits: Limits,
) -> Option<([Files; 2], Parses)> {
    let read = |tree: &Tree| -> Result<Snapshot, StateError> {
        match tree {
            Tree::Folder(path) => Ok(directory::read_paths(
                std::slice::from_ref(path),
                max_file_size,
            )?),
            Tree::Revision { .. } => unreachable!("both sides are folders"),
        }
    };
    let (read_base, read_head) = std::thread::scope(|scope| {
        let read_base = scope.spawn(|| read(base));
        let read_head = read(head);
        let read_base = read_base
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (read_base, read_head)
    });
    for (side, tree, read) in [("base", base, &read_base), ("head", head, &read_head)] {
        if let Err(error) = read {
            report(side, tree, error);
        }
    }
    let (Ok(mut base_snapshot), Ok(mut head_snapshot)) = (read_base, read_head) else {
        return None;
    };
    let files = |snapshot: &mut Snapshot| {
        let files = std::mem::take(&mut snapshot.files);
        let read = Files {
            revision: std::mem::take(&mut snapshot.revision),
            paths: files.iter().map(|file| file.path.clone()).collect(),
            problems: std::mem::take(&mut snapshot.problems),
        };
        (read, files)
    };
    let (base_files, base_bytes) = files(&mut base_snapshot);
    let (head_files, head_bytes) = files(&mut head_snapshot);
    let parses = parse_pair((base, base_bytes), (head, head_bytes), limits);
    Some(([base_files, head_files], parses))
}

/// Two revisions of one repository, read from its objects and parsed as
/// they are read: a file with the same path and blob on both sides is read
/// and parsed once.
fn read_revisions(
    trees: [&Tree; 2],
    repo: &FsPath,
    path: Option<&str>,
    max_file_size: u64,
    limits: Limits,
) -> Option<([Files; 2], Parses)> {
    // Each object read would be hashed again to check it against its id, a
    // twentieth of a large diff's time; `git` does not check on reading
    // either. (A setting of the process, which reads nothing else.)
    git2::opts::strict_hash_verification(false);
    let repository = match git2::Repository::open(repo) {
        Ok(repository) => repository,
        Err(source) => {
            let error = StateError::Open {
                path: repo.to_owned(),
                source,
            };
            eprintln!("error: {}", sync::explain(&error));
            return None;
        }
    };
    let walk = |tree: &Tree| -> Result<git::Walked, StateError> {
        let Tree::Revision { rev, .. } = tree else {
            unreachable!("both sides are revisions")
        };
        let commit = repository
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map_err(|source| StateError::Revision {
                rev: rev.clone(),
                path: repo.to_owned(),
                source,
            })?;
        let mut walked = git::walk(&repository, commit.id(), tree_prefix(path))?;
        // In path order, as `read_tree` gives them.
        walked.blobs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(walked)
    };
    let walked = trees.map(walk);
    for ((side, tree), walked) in ["base", "head"].into_iter().zip(trees).zip(&walked) {
        if let Err(error) = walked {
            report(side, tree, error);
        }
    }
    let [Ok(base), Ok(head)] = walked else {
        return None;
    };
    let by_path: FxHashMap<&str, (usize, git2::Oid)> = base
        .blobs
        .iter()
        .enumerate()
        .map(|(n, (path, id))| (&**path, (n, *id)))
        .collect();
    let shared: Vec<Option<usize>> = head
        .blobs
        .iter()
        .map(|(path, id)| {
            by_path
                .get(&**path)
                .filter(|(_, base_id)| base_id == id)
                .map(|(n, _)| *n)
        })
        .collect();
    let work: Vec<&(Arc<str>, git2::Oid)> = base
        .blobs
        .iter()
        .chain(
            head.blobs
                .iter()
                .zip(&shared)
                .filter(|(_, shared)| shared.is_none())
                .map(|(blob, _)| blob),
        )
        .collect();
    // Each worker opens the repository for itself: a libgit2 repository is
    // not to be shared between threads.
    let git_dir = repository.path().to_owned();
    let done: Result<Vec<(Parsed, Option<Diagnostic>)>, git2::Error> = work
        .par_iter()
        .map_init(
            || git2::Repository::open(&git_dir),
            |opened, (path, id)| {
                let repo = opened
                    .as_ref()
                    .map_err(|e| git2::Error::new(e.code(), e.class(), e.message()))?;
                Ok(match git::read_blob(repo, *id, max_file_size)? {
                    git::Blob::Bytes(bytes) => (parse_file(path, &bytes, limits), None),
                    git::Blob::TooLarge(size) => (
                        (Vec::new(), Vec::new()),
                        Some(git::too_large(path, size, max_file_size)),
                    ),
                })
            },
        )
        .collect();
    let done = match done {
        Ok(done) => done,
        Err(e) => {
            let error = StateError::Source(crate::source::SourceError::Repository(e));
            eprintln!("error: {}", sync::explain(&error));
            return None;
        }
    };
    let mut done = done.into_iter();
    let mut side = |walked: git::Walked, parsed: &mut Vec<Parsed>| {
        let mut problems = walked.problems;
        let mut paths = Vec::with_capacity(walked.blobs.len());
        for (path, _) in walked.blobs {
            paths.push(path);
            if let Some((parses, problem)) = done.next() {
                parsed.push(parses);
                problems.extend(problem);
            }
        }
        Files {
            revision: walked.revision,
            paths,
            problems,
        }
    };
    let mut parsed_base = Vec::new();
    let base_files = side(base, &mut parsed_base);
    // The head's own files come after the base's, in its order.
    let mut head_own: Vec<Parsed> = Vec::new();
    let head_paths: Vec<Arc<str>> = head.blobs.iter().map(|(path, _)| path.clone()).collect();
    let mut head_problems = head.problems;
    for (_, shared) in head.blobs.iter().zip(&shared) {
        if shared.is_none() {
            if let Some((parses, problem)) = done.next() {
                head_own.push(parses);
                head_problems.extend(problem);
            }
        }
    }
    let mut own = head_own.into_iter();
    let parsed_head: Vec<Option<Parsed>> = shared
        .iter()
        .map(|shared| if shared.is_none() { own.next() } else { None })
        .collect();
    let head_files = Files {
        revision: head.revision,
        paths: head_paths,
        problems: head_problems,
    };
    Some((
        [base_files, head_files],
        Parses {
            base: parsed_base,
            head: parsed_head,
            shared,
        },
    ))
}

/// A side read and parsed.
struct Loaded {
    tree: Tree,
    /// The commit for a revision, a content hash for a folder.
    revision: String,
    objects: KeyMap<Placed>,
}

/// Both sides, and the keys declared in files that differ between them:
/// only those objects can differ.
struct Pair {
    base: Loaded,
    head: Loaded,
    candidates: Vec<Key>,
}

impl Loaded {
    fn shown(&self) -> String {
        match &self.tree {
            Tree::Revision { rev, .. } if !self.revision.starts_with(rev.as_str()) => {
                let short = &self.revision[..self.revision.len().min(12)];
                format!("{rev} ({short})")
            }
            tree => tree.name(),
        }
    }
}

/// Exit 0 with the preview (it informs, it does not judge); 1 when a side
/// cannot be read or is not valid.
pub fn diff(args: &DiffArgs, style: Style) -> u8 {
    let (base, head) = (Tree::of(args, &args.base), Tree::of(args, &args.head));
    let Some(Pair {
        base,
        head,
        candidates,
    }) = load(base, head, args.max_file_size)
    else {
        return ERROR;
    };
    let started = std::time::Instant::now();
    let app = args.app.as_deref();
    let mut changes = impact::object_changes_among(&base.objects, &head.objects, &candidates);
    if let Some(app) = app {
        changes.retain(|c| impact::concerns(c, app));
    }
    let compared = started.elapsed();
    let impact = impact::impact(&head.objects, &changes, app);
    // Timings go to the log at debug level under `accord::timing`, as the
    // access commands' do.
    tracing::debug!(
        target: "accord::timing",
        compare_s = compared.as_secs_f64(),
        impact_s = (started.elapsed() - compared).as_secs_f64(),
        changes = changes.len(),
        permissions = impact.permissions.len(),
        "states compared"
    );
    let code = match args.output {
        ReportFormat::Text => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = diff_text(&mut out, &base, &head, &changes, &impact, style)
                .and_then(|()| out.flush());
            match written {
                Ok(()) => OK,
                // `accord diff | head` is not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => OK,
                Err(e) => {
                    eprintln!("error: {}", sync::explain(&e));
                    ERROR
                }
            }
        }
        ReportFormat::Json => {
            diff_json(&base, &head, &changes, &impact);
            OK
        }
        ReportFormat::Markdown => {
            super::print(&diff_markdown(&base, &head, &changes, &impact, app))
        }
    };
    // The process ends here; freeing two whole states is wasted time.
    std::mem::forget((base, head, changes, impact));
    if code == OK {
        OK
    } else {
        ERROR
    }
}

/// Reads both sides at once and parses them, each file that is the same on
/// both sides once. Errors are printed, each naming its side.
fn load(base: Tree, head: Tree, max_file_size: u64) -> Option<Pair> {
    let started = std::time::Instant::now();
    let limits = Limits::default();
    let ([base_read, head_read], parses) = match (&base, &head) {
        (Tree::Revision { repo, path, .. }, Tree::Revision { .. }) => {
            read_revisions([&base, &head], repo, path.as_deref(), max_file_size, limits)?
        }
        _ => read_folders(&base, &head, max_file_size, limits)?,
    };
    let read = started.elapsed();
    let (base_paths, head_paths) = (&base_read.paths, &head_read.paths);
    let candidates = parses.candidates();
    let base_files: Vec<(&Parsed, &Arc<str>)> = parses.base.iter().zip(base_paths).collect();
    let head_files: Vec<(&Parsed, &Arc<str>)> = (0..head_paths.len())
        .map(|n| (parses.head_file(n), &head_paths[n]))
        .collect();
    let (parsed_base, parsed_head) = rayon::join(
        || state(&base_read.problems, &base_files),
        || state(&head_read.problems, &head_files),
    );
    let mut failed = false;
    for (side, tree, parsed) in [("base", &base, &parsed_base), ("head", &head, &parsed_head)] {
        if let Err(diagnostics) = parsed {
            eprintln!(
                "error: the {side} `{}` is not valid ({}):",
                tree.name(),
                counted(diagnostics.len(), "error", "errors")
            );
            output::print_diagnostics(diagnostics);
            failed = true;
        }
    }
    if failed {
        return None;
    }
    let (Ok(base_objects), Ok(head_objects)) = (parsed_base, parsed_head) else {
        return None;
    };
    tracing::debug!(
        target: "accord::timing",
        read_s = read.as_secs_f64(),
        states_s = (started.elapsed() - read).as_secs_f64(),
        "both sides read, parsed and built"
    );
    // Each state holds its objects; the parses are no longer needed, and
    // the process ends before freeing them would pay.
    drop((base_files, head_files));
    std::mem::forget(parses);
    Some(Pair {
        base: Loaded {
            tree: base,
            revision: base_read.revision,
            objects: base_objects,
        },
        head: Loaded {
            tree: head,
            revision: head_read.revision,
            objects: head_objects,
        },
        candidates,
    })
}

type Parsed = (Vec<Declaration>, Vec<Diagnostic>);

/// Both sides' files parsed: every file of the base, and the files of the
/// head that the base does not have with the same name and bytes.
struct Parses {
    base: Vec<Parsed>,
    /// `None` for a file the base shares.
    head: Vec<Option<Parsed>>,
    /// For each file of the head, the base's file it shares.
    shared: Vec<Option<usize>>,
}

impl Parses {
    /// The parse of the head's file `n` (shared or its own).
    fn head_file(&self, n: usize) -> &Parsed {
        match (&self.head[n], self.shared[n]) {
            (Some(parsed), _) => parsed,
            (None, Some(shared)) => &self.base[shared],
            (None, None) => unreachable!("a head file is parsed or shared"),
        }
    }

    /// The keys of the objects declared in files that are not shared: an
    /// object of a shared file is the same on both sides (were it declared
    /// elsewhere on one side, that side would declare it twice), so only
    /// these can differ.
    fn candidates(&self) -> Vec<Key> {
        let mut kept = vec![false; self.base.len()];
        for &n in self.shared.iter().flatten() {
            kept[n] = true;
        }
        let unshared_base = self
            .base
            .iter()
            .zip(&kept)
            .filter(|(_, kept)| !**kept)
            .map(|(parsed, _)| parsed);
        let unshared_head = self.head.iter().flatten();
        unshared_base
            .chain(unshared_head)
            .flat_map(|(declarations, _)| declarations.iter().map(|d| d.object.key()))
            .collect()
    }
}

/// Parses both sides in parallel; a file with the same name and bytes on
/// both sides (most of them, in a pull request) is parsed once, and its
/// objects are shared by the two states. The files are taken: each one's
/// bytes are freed once parsed, for the objects to reuse.
fn parse_pair(
    (base_tree, base): (&Tree, Vec<SourceFile>),
    (head_tree, mut head): (&Tree, Vec<SourceFile>),
    limits: Limits,
) -> Parses {
    let by_name: FxHashMap<&str, usize> = base
        .iter()
        .enumerate()
        .map(|(n, file)| (base_tree.relative(file), n))
        .collect();
    let shared: Vec<Option<usize>> = head
        .iter()
        .map(|file| {
            by_name
                .get(head_tree.relative(file))
                .copied()
                .filter(|&n| base[n].bytes == file.bytes)
        })
        .collect();
    drop(by_name);
    for (file, shared) in head.iter_mut().zip(&shared) {
        if shared.is_some() {
            file.bytes = Vec::new();
        }
    }
    let parse = |file: SourceFile| parse_file(&file.path, &file.bytes, limits);
    let (parsed_base, parsed_head) = rayon::join(
        || base.into_par_iter().map(parse).collect(),
        || {
            head.into_par_iter()
                .zip(&shared)
                .map(|(file, shared)| shared.is_none().then(|| parse(file)))
                .collect()
        },
    );
    Parses {
        base: parsed_base,
        head: parsed_head,
        shared,
    }
}

/// A side's objects by key from its files' parses (each with the path it
/// has on this side), or every error: files that could not be taken,
/// parse errors and keys declared twice, sorted, as `accord validate`
/// reports them.
fn state(
    problems: &[Diagnostic],
    files: &[(&Parsed, &Arc<str>)],
) -> Result<KeyMap<Placed>, Vec<Diagnostic>> {
    if problems.is_empty()
        && files
            .iter()
            .all(|((_, diagnostics), _)| diagnostics.is_empty())
    {
        let mut objects: KeyMap<Placed> = KeyMap::default();
        objects.reserve(
            files
                .iter()
                .map(|((declarations, _), _)| declarations.len())
                .sum(),
        );
        let mut twice = false;
        'files: for ((declarations, _), path) in files {
            for d in declarations {
                let origin = Origin {
                    file: Arc::clone(path),
                    mark: d.origin.mark,
                };
                let placed = (Arc::clone(&d.object), Place::Declared(origin));
                if objects.insert(d.object.key(), placed).is_some() {
                    twice = true;
                    break 'files;
                }
            }
        }
        if !twice {
            return Ok(objects);
        }
    }
    // Something is wrong: the errors, told as the whole tree's parse tells
    // them.
    let parsed = files
        .iter()
        .map(|(parsed, path)| relocated(parsed, path))
        .collect();
    let mut errors = problems.to_vec();
    if let Err(found) = assemble(parsed) {
        errors.extend(found);
    }
    errors.sort();
    Err(errors)
}

/// A file's parse, as the same bytes read under `path` parse.
fn relocated((declarations, diagnostics): &Parsed, path: &Arc<str>) -> Parsed {
    let declarations = declarations
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.origin.file = path.clone();
            d
        })
        .collect();
    let diagnostics = diagnostics
        .iter()
        .map(|d| Diagnostic {
            file: path.clone(),
            ..d.clone()
        })
        .collect();
    (declarations, diagnostics)
}

fn symbol(action: &str) -> (&'static str, &'static str) {
    match action {
        "create" => ("+", "32"),
        "update" => ("~", "33"),
        "delete" => ("-", "31"),
        _ => ("?", "0"),
    }
}

/// The preview for a terminal, written as it is made (a large diff's
/// text is never all in memory): the changes with their diffs, the
/// summary, then the access impact.
fn diff_text(
    out: &mut impl Write,
    base: &Loaded,
    head: &Loaded,
    changes: &[ObjectChange],
    impact: &Impact,
    style: Style,
) -> std::io::Result<()> {
    writeln!(out, "Diff from {} to {}:", base.shown(), head.shown())?;
    if changes.is_empty() {
        writeln!(out, "No object changes.")?;
    }
    for change in changes {
        let (mark, color) = symbol(change.action.as_str());
        writeln!(
            out,
            "{} {} {} {}/{}{}",
            style.paint(color, mark),
            style.paint(color, &format!("{:<9}", change.action.as_str())),
            change.key.kind,
            change.key.app,
            change.key.id,
            style.paint("2", &format!("  {}", change.place()))
        )?;
        if change.action == impact::Action::Update {
            let fields: Vec<String> = change.fields().into_iter().map(|f| f.field).collect();
            writeln!(out, "    fields: {}", fields.join(", "))?;
        }
        out.write_all(style.diff(&change.diff(), "    ").as_bytes())?;
    }
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    writeln!(
        out,
        "Summary: {} to create, {} to update, {} to delete.",
        count(impact::Action::Create),
        count(impact::Action::Update),
        count(impact::Action::Delete)
    )?;
    impact_text(out, impact, style)
}

/// The access impact for a terminal: each permission with who gains and
/// who loses it, the role grants, and a warning line for each grant to a
/// pattern of contacts.
fn impact_text(out: &mut impl Write, impact: &Impact, style: Style) -> std::io::Result<()> {
    if impact.is_empty() {
        return writeln!(out, "Access: no permission or role changes hands.");
    }
    writeln!(out, "\nAccess impact:")?;
    for permission in &impact.permissions {
        writeln!(
            out,
            "  {} in app {}:",
            style.paint("1", &permission.permission_id),
            permission.app
        )?;
        for (holders, direction, mark, color) in [
            (&permission.gained, Direction::Gained, "+", "32"),
            (&permission.lost, Direction::Lost, "-", "31"),
        ] {
            let ways = impact.ways(permission, direction, holders);
            for holder in holders {
                let sentence = TEXT.holder_change(
                    &permission.app,
                    &permission.permission_id,
                    holder,
                    ways.get(holder).map_or(&[][..], Vec::as_slice),
                    direction,
                );
                writeln!(out, "    {} {sentence}", style.paint(color, mark))?;
            }
        }
    }
    if !impact.roles.is_empty() {
        writeln!(out, "  {}", style.paint("1", "role grants:"))?;
        for role in &impact.roles {
            let (mark, color) = match role.change {
                Direction::Gained => ("+", "32"),
                Direction::Lost => ("-", "31"),
            };
            writeln!(
                out,
                "    {} {}",
                style.paint(color, mark),
                TEXT.role_change(role)
            )?;
        }
    }
    writeln!(
        out,
        "Access: {} gaining holders, {} losing holders, {} gained or lost.",
        counted(impact.gaining(), "permission", "permissions"),
        counted(impact.losing(), "permission", "permissions"),
        counted(impact.roles.len(), "role grant", "role grants")
    )?;
    for warning in TEXT.warnings(&impact.warnings()) {
        writeln!(out, "{}: {warning}", style.paint("33;1", "warning"))?;
    }
    Ok(())
}

/// `--output json`, written as it is made: a large diff's changes (each
/// with its diff) are never all in memory at once.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DiffJson<'a> {
    base: SideJson,
    head: SideJson,
    summary: SummaryJson,
    changes: ChangesJson<'a>,
    access: &'a Impact,
    warnings: Vec<String>,
}

#[derive(Serialize)]
struct SideJson {
    name: String,
    revision: String,
    objects: usize,
}

impl SideJson {
    fn of(loaded: &Loaded) -> SideJson {
        SideJson {
            name: loaded.tree.name(),
            revision: loaded.revision.clone(),
            objects: loaded.objects.len(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryJson {
    create: usize,
    update: usize,
    delete: usize,
    permissions_gaining: usize,
    permissions_losing: usize,
    role_grants: usize,
    warnings: usize,
}

struct ChangesJson<'a>(&'a [ObjectChange]);

impl Serialize for ChangesJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for c in self.0 {
            seq.serialize_element(&json!({
                "action": c.action,
                "kind": c.key.kind.as_str(),
                "app": c.key.app.as_str(),
                "id": c.key.id.as_str(),
                "place": c.place(),
                "fields": c.fields(),
                "diff": c.diff(),
            }))?;
        }
        seq.end()
    }
}

fn diff_json(base: &Loaded, head: &Loaded, changes: &[ObjectChange], impact: &Impact) {
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    let warnings: Vec<String> = impact.warnings().iter().map(|w| TEXT.warning(w)).collect();
    output::print_json(&DiffJson {
        base: SideJson::of(base),
        head: SideJson::of(head),
        summary: SummaryJson {
            create: count(impact::Action::Create),
            update: count(impact::Action::Update),
            delete: count(impact::Action::Delete),
            permissions_gaining: impact.gaining(),
            permissions_losing: impact.losing(),
            role_grants: impact.roles.len(),
            warnings: warnings.len(),
        },
        changes: ChangesJson(changes),
        access: impact,
        warnings,
    });
}

/// The `n`th object change as a report entry: its fields and its diff
/// only when they can be shown.
fn entry(change: &ObjectChange, n: usize) -> Entry {
    Entry {
        action: change.action.as_str(),
        kind: change.key.kind.as_str(),
        app: change.key.app.to_string(),
        id: change.key.id.to_string(),
        place: Some(change.place().clone()),
        note: String::new(),
        fields: if n < markdown::ENTRIES_SHOWN {
            change.fields().into_iter().map(|f| f.field).collect()
        } else {
            Vec::new()
        },
        diff: if n < markdown::DIFFS_SHOWN {
            change.diff()
        } else {
            String::new()
        },
    }
}

fn diff_markdown(
    base: &Loaded,
    head: &Loaded,
    changes: &[ObjectChange],
    impact: &Impact,
    app: Option<&str>,
) -> String {
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    let mut lines = Vec::new();
    if let Some(app) = app {
        lines.push(format!(
            "Only app {} (and enrollments that hold in every app).",
            code(app)
        ));
    }
    let report = Report {
        title: format!(
            "accord diff: {} → {}",
            code(&base.shown()),
            code(&head.shown())
        ),
        lines,
        counts: vec![
            (count(impact::Action::Create), "to create"),
            (count(impact::Action::Update), "to update"),
            (count(impact::Action::Delete), "to delete"),
        ],
        impact: Some(impact),
        impact_notes: Vec::new(),
        sections: vec![Section {
            title: "Object changes",
            entries: changes
                .iter()
                .enumerate()
                .map(|(n, c)| entry(c, n))
                .collect(),
        }],
    };
    markdown::render(&report)
}

/// `accord plan --output markdown`: the plan's changes, drift and
/// conflicts, and the access impact of applying it — the access of the
/// live rows against that of the rows once the plan is applied (drift put
/// back, as `--drift correct`, the default, does).
pub fn plan_markdown(planned: &Planned, source: &str, verb: &str) -> String {
    let (before, after, unread) = plan_states(planned);
    let mut keys: Vec<&Key> = planned.plan.changes.iter().map(|c| &c.key).collect();
    keys.dedup();
    let changes: Vec<ObjectChange> = keys
        .into_iter()
        .filter_map(|key| {
            let (was, is) = (before.get(key), after.get(key));
            let same = match (was, is) {
                (Some(a), Some(b)) => a.0 == b.0,
                (None, None) => true,
                _ => false,
            };
            (!same)
                .then(|| ObjectChange::new(key.clone(), was.cloned(), is.cloned()))
                .flatten()
        })
        .collect();
    let impact = impact::impact(&after, &changes, None);

    let plan = &planned.plan;
    // What someone did behind accord's back comes first.
    let sections = [
        ("Drift: edited or deleted by hand", vec![Action::Drift]),
        ("Conflicts", vec![Action::Conflict]),
        (
            "Changes",
            vec![Action::Create, Action::Update, Action::Delete],
        ),
        ("Suspended", vec![Action::Suspended]),
    ]
    .map(|(title, actions)| Section {
        title,
        entries: plan
            .changes
            .iter()
            .filter(|c| actions.contains(&c.action))
            .enumerate()
            .map(|(n, c)| Entry {
                action: c.action.as_str(),
                kind: c.key.kind.as_str(),
                app: c.key.app.to_string(),
                id: c.key.id.to_string(),
                place: c
                    .origin
                    .clone()
                    .map(Place::Declared)
                    .or_else(|| Some(Place::Row(c.key.clone()))),
                note: c.note.clone(),
                fields: c.fields.iter().map(|f| f.field.clone()).collect(),
                diff: if n < markdown::DIFFS_SHOWN && c.action != Action::Suspended {
                    c.diff()
                } else {
                    String::new()
                },
            })
            .collect(),
    });
    let s = plan.summary();
    let mut notes = vec![format!(
        "Computed on the whole database (the rows of every source, and of none), with drift put back as {} (the default) does.",
        code("--drift correct")
    )];
    if unread > 0 {
        notes.push(format!(
            "{} managed and no longer declared, read without their content, left out.",
            counted(unread, "row", "rows")
        ));
    }
    let report = Report {
        title: format!("accord {verb}: source {}", code(source)),
        lines: vec![format!("At revision {}.", code(&planned.revision))],
        counts: vec![
            (s.create, "to create"),
            (s.update, "to update"),
            (s.delete, "to delete"),
            (s.drift, "drifted"),
            (s.conflict, "in conflict"),
            (s.suspended, "suspended"),
        ],
        impact: Some(&impact),
        impact_notes: notes,
        sections: sections.into_iter().collect(),
    };
    let text = markdown::render(&report);
    std::mem::forget((before, after, changes, impact));
    text
}

/// The live rows as objects, the same once the plan is applied, and how
/// many rows could not be shown (read without content and not declared).
fn plan_states(planned: &Planned) -> (KeyMap<Placed>, KeyMap<Placed>, usize) {
    let mut unread = 0;
    let mut before = KeyMap::default();
    before.reserve(planned.live.rows.len());
    for (key, row) in &planned.live.rows {
        let object = match row.object() {
            Some(object) => Arc::new(object),
            // Left unread because it is as accord wrote it: what is
            // declared, when it still is.
            None => match (planned.desired.as_ref()).and_then(|desired| desired.objects.get(key)) {
                Some(declaration) => declaration.object.clone(),
                None => {
                    unread += 1;
                    continue;
                }
            },
        };
        before.insert(key.clone(), (object, Place::Row(key.clone())));
    }
    let mut after = before.clone();
    for change in &planned.plan.changes {
        match change.action {
            Action::Create | Action::Update | Action::Drift => {
                if let Some(object) = &change.after {
                    let place = change
                        .origin
                        .clone()
                        .map_or_else(|| Place::Row(change.key.clone()), Place::Declared);
                    after.insert(change.key.clone(), (object.clone(), place));
                }
            }
            Action::Delete => {
                after.remove(&change.key);
            }
            Action::Conflict | Action::Suspended => {}
        }
    }
    (before, after, unread)
}
