//! `accord diff`: the preview of a pull request. Two declared states — two
//! revisions of a repository (read from its objects, no checkout) or two
//! folders — their object changes, and who gains or loses which permission.
//! No database. Also the Markdown of `accord plan --output markdown`, which
//! shares the comment's shape.

use std::fmt::Write as _;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use serde_json::json;

use super::markdown::{self, code, counted, Entry, Report, Section, TEXT};
use super::output::{self, Style};
use super::state::{tree_prefix, StateError};
use super::{ERROR, OK};
use crate::access::impact::{self, Direction, Impact, ObjectChange};
use crate::access::{Place, Placed};
use crate::model::parse::{assemble, parse_file};
use crate::model::{Declaration, DesiredState, Diagnostic, Key, KeyMap, Limits, SourceFile};
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

    fn read(&self, max_file_size: u64) -> Result<Snapshot, StateError> {
        match self {
            Tree::Folder(path) => Ok(directory::read_paths(
                std::slice::from_ref(path),
                max_file_size,
            )?),
            Tree::Revision { repo, rev, path } => {
                let [read] = read_revisions(repo, [rev], path.as_deref(), max_file_size)?;
                read
            }
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

/// Revisions of one repository, read together: each blob once, however
/// many of them hold it. The repository that cannot be opened fails all;
/// a revision that is not there, only its side.
fn read_revisions<const N: usize>(
    repo: &FsPath,
    revs: [&String; N],
    path: Option<&str>,
    max_file_size: u64,
) -> Result<[Result<Snapshot, StateError>; N], StateError> {
    let repository = git2::Repository::open(repo).map_err(|source| StateError::Open {
        path: repo.to_owned(),
        source,
    })?;
    let commits = revs.map(|rev| {
        repository
            .revparse_single(rev)
            .and_then(|object| object.peel_to_commit())
            .map(|commit| commit.id())
            .map_err(|source| StateError::Revision {
                rev: rev.clone(),
                path: repo.to_owned(),
                source,
            })
    });
    let found: Vec<git2::Oid> = commits.iter().flatten().copied().collect();
    let mut read =
        git::read_trees(&repository, &found, tree_prefix(path), max_file_size).into_iter();
    Ok(commits.map(|commit| {
        commit.and_then(|_| match read.next() {
            Some(snapshot) => snapshot.map_err(StateError::from),
            None => unreachable!("read_trees reads every commit it is given"),
        })
    }))
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
    tracing::debug!(elapsed = ?started.elapsed(), changes = changes.len(), "object changes");
    let impact = impact::impact(&head.objects, &changes, app);
    tracing::debug!(elapsed = ?started.elapsed(), permissions = impact.permissions.len(), "access impact");
    let code = super::print(&match args.output {
        ReportFormat::Text => diff_text(&base, &head, &changes, &impact, style),
        ReportFormat::Json => diff_json(&base, &head, &changes, &impact),
        ReportFormat::Markdown => diff_markdown(&base, &head, &changes, &impact, app),
    });
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
    let [read_base, read_head] = match (&base, &head) {
        (Tree::Revision { repo, rev, path }, Tree::Revision { rev: other, .. }) => {
            match read_revisions(repo, [rev, other], path.as_deref(), max_file_size) {
                Ok(read) => read,
                Err(error) => {
                    eprintln!("error: {}", sync::explain(&error));
                    return None;
                }
            }
        }
        _ => std::thread::scope(|scope| {
            let read_base = scope.spawn(|| base.read(max_file_size));
            let read_head = head.read(max_file_size);
            let read_base = read_base
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            [read_base, read_head]
        }),
    };
    for (side, tree, read) in [("base", &base, &read_base), ("head", &head, &read_head)] {
        if let Err(error) = read {
            eprintln!(
                "error: the {side} `{}`: {}",
                tree.name(),
                sync::explain(error)
            );
        }
    }
    let (Ok(base_snapshot), Ok(head_snapshot)) = (read_base, read_head) else {
        return None;
    };
    tracing::debug!(elapsed = ?started.elapsed(), "both sides read");
    let mut failed = false;
    let ([parsed_base, parsed_head], candidates) = parse_pair(
        (&base, &base_snapshot),
        (&head, &head_snapshot),
        Limits::default(),
    );
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
    let (Ok(base_state), Ok(head_state)) = (parsed_base, parsed_head) else {
        return None;
    };
    tracing::debug!(elapsed = ?started.elapsed(), "both sides parsed");
    let (base_objects, head_objects) = rayon::join(|| placed(base_state), || placed(head_state));
    Some(Pair {
        base: Loaded {
            tree: base,
            revision: base_snapshot.revision,
            objects: base_objects,
        },
        head: Loaded {
            tree: head,
            revision: head_snapshot.revision,
            objects: head_objects,
        },
        candidates,
    })
}

type Parsed = (Vec<Declaration>, Vec<Diagnostic>);

/// Parses both sides in parallel. A file with the same name and bytes on
/// both sides (most of them, in a pull request) is parsed once, its
/// objects shared. Also the keys of the objects declared in the other
/// files: an object of a shared file is the same on both sides (were it
/// declared elsewhere on one side, that side would declare it twice).
fn parse_pair(
    (base_tree, base): (&Tree, &Snapshot),
    (head_tree, head): (&Tree, &Snapshot),
    limits: Limits,
) -> ([Result<DesiredState, Vec<Diagnostic>>; 2], Vec<Key>) {
    let by_name: FxHashMap<&str, usize> = base
        .files
        .iter()
        .enumerate()
        .map(|(n, file)| (base_tree.relative(file), n))
        .collect();
    let shared: Vec<Option<usize>> = head
        .files
        .iter()
        .map(|file| {
            by_name
                .get(head_tree.relative(file))
                .copied()
                .filter(|&n| base.files[n].bytes == file.bytes)
        })
        .collect();
    let parse = |file: &SourceFile| parse_file(&file.path, &file.bytes, limits);
    let (parsed_base, parsed_head): (Vec<Parsed>, Vec<Option<Parsed>>) = rayon::join(
        || base.files.par_iter().map(parse).collect(),
        || {
            head.files
                .par_iter()
                .zip(&shared)
                .map(|(file, shared)| shared.is_none().then(|| parse(file)))
                .collect()
        },
    );
    let parsed_head: Vec<Parsed> = parsed_head
        .into_par_iter()
        .zip(&shared)
        .zip(&head.files)
        .map(|((parsed, shared), file)| match (parsed, shared) {
            (Some(parsed), _) => parsed,
            (None, Some(n)) => relocated(&parsed_base[*n], &file.path),
            (None, None) => parse(file),
        })
        .collect();
    let mut kept = vec![false; base.files.len()];
    for &n in shared.iter().flatten() {
        kept[n] = true;
    }
    let keys = |parsed: &Parsed| -> Vec<Key> { parsed.0.iter().map(|d| d.object.key()).collect() };
    let mut candidates: Vec<Key> = parsed_base
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| !**kept)
        .flat_map(|(parsed, _)| keys(parsed))
        .collect();
    candidates.extend(
        parsed_head
            .iter()
            .zip(&shared)
            .filter(|(_, shared)| shared.is_none())
            .flat_map(|(parsed, _)| keys(parsed)),
    );
    let (base, head) = rayon::join(
        || with_problems(base, assemble(parsed_base)),
        || with_problems(head, assemble(parsed_head)),
    );
    ([base, head], candidates)
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

/// The files that could not be taken count as errors too (as
/// `Snapshot::desired` counts them).
fn with_problems(
    snapshot: &Snapshot,
    parsed: Result<DesiredState, Vec<Diagnostic>>,
) -> Result<DesiredState, Vec<Diagnostic>> {
    match parsed {
        Ok(state) if snapshot.problems.is_empty() => Ok(state),
        parsed => {
            let mut errors = snapshot.problems.clone();
            errors.extend(parsed.err().unwrap_or_default());
            errors.sort();
            Err(errors)
        }
    }
}

fn placed(state: DesiredState) -> KeyMap<Placed> {
    state
        .objects
        .into_iter()
        .map(|(key, d)| (key, (d.object, Place::Declared(d.origin))))
        .collect()
}

fn symbol(action: &str) -> (&'static str, &'static str) {
    match action {
        "create" => ("+", "32"),
        "update" => ("~", "33"),
        "delete" => ("-", "31"),
        _ => ("?", "0"),
    }
}

fn diff_text(
    base: &Loaded,
    head: &Loaded,
    changes: &[ObjectChange],
    impact: &Impact,
    style: Style,
) -> String {
    let mut out = format!("Diff from {} to {}:\n", base.shown(), head.shown());
    if changes.is_empty() {
        out.push_str("No object changes.\n");
    }
    for change in changes {
        let (mark, color) = symbol(change.action.as_str());
        let _ = writeln!(
            out,
            "{} {} {} {}/{}{}",
            style.paint(color, mark),
            style.paint(color, &format!("{:<9}", change.action.as_str())),
            change.key.kind,
            change.key.app,
            change.key.id,
            style.paint("2", &format!("  {}", change.place()))
        );
        if change.action == impact::Action::Update {
            let fields: Vec<String> = change.fields().into_iter().map(|f| f.field).collect();
            let _ = writeln!(out, "    fields: {}", fields.join(", "));
        }
        out.push_str(&style.diff(&change.diff(), "    "));
    }
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    let _ = writeln!(
        out,
        "Summary: {} to create, {} to update, {} to delete.",
        count(impact::Action::Create),
        count(impact::Action::Update),
        count(impact::Action::Delete)
    );
    out.push_str(&impact_text(impact, style));
    out
}

/// The access impact for a terminal: each permission with who gains and
/// who loses it, the role grants, and a warning line for each grant to a
/// pattern of contacts.
fn impact_text(impact: &Impact, style: Style) -> String {
    let mut out = String::new();
    if impact.is_empty() {
        out.push_str("Access: no permission or role changes hands.\n");
        return out;
    }
    out.push_str("\nAccess impact:\n");
    for permission in &impact.permissions {
        let _ = writeln!(
            out,
            "  {} in app {}:",
            style.paint("1", &permission.permission_id),
            permission.app
        );
        for (changes, direction, mark, color) in [
            (&permission.gained, Direction::Gained, "+", "32"),
            (&permission.lost, Direction::Lost, "-", "31"),
        ] {
            for change in changes {
                let sentence = TEXT.holder_change(
                    &permission.app,
                    &permission.permission_id,
                    change,
                    direction,
                );
                let _ = writeln!(out, "    {} {sentence}", style.paint(color, mark));
            }
        }
    }
    if !impact.roles.is_empty() {
        let _ = writeln!(out, "  {}", style.paint("1", "role grants:"));
        for role in &impact.roles {
            let (mark, color) = match role.change {
                Direction::Gained => ("+", "32"),
                Direction::Lost => ("-", "31"),
            };
            let _ = writeln!(
                out,
                "    {} {}",
                style.paint(color, mark),
                TEXT.role_change(role)
            );
        }
    }
    let _ = writeln!(
        out,
        "Access: {} gaining holders, {} losing holders, {} gained or lost.",
        counted(impact.gaining(), "permission", "permissions"),
        counted(impact.losing(), "permission", "permissions"),
        counted(impact.roles.len(), "role grant", "role grants")
    );
    for warning in TEXT.warnings(&impact.warnings()) {
        let _ = writeln!(out, "{}: {warning}", style.paint("33;1", "warning"));
    }
    out
}

fn diff_json(base: &Loaded, head: &Loaded, changes: &[ObjectChange], impact: &Impact) -> String {
    let side = |loaded: &Loaded| {
        json!({
            "name": loaded.tree.name(),
            "revision": loaded.revision,
            "objects": loaded.objects.len(),
        })
    };
    let count = |action| changes.iter().filter(|c| c.action == action).count();
    let changes: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| {
            json!({
                "action": c.action,
                "kind": c.key.kind.as_str(),
                "app": c.key.app.as_str(),
                "id": c.key.id.as_str(),
                "place": c.place(),
                "fields": c.fields(),
                "diff": c.diff(),
            })
        })
        .collect();
    let warnings: Vec<String> = impact.warnings().iter().map(|w| TEXT.warning(w)).collect();
    let value = json!({
        "base": side(base),
        "head": side(head),
        "summary": {
            "create": count(impact::Action::Create),
            "update": count(impact::Action::Update),
            "delete": count(impact::Action::Delete),
            "permissionsGaining": impact.gaining(),
            "permissionsLosing": impact.losing(),
            "roleGrants": impact.roles.len(),
            "warnings": warnings.len(),
        },
        "changes": changes,
        "access": impact,
        "warnings": warnings,
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// An object change as a report entry; its diff only when it will be shown.
fn entry(change: &ObjectChange, with_diff: bool) -> Entry {
    Entry {
        action: change.action.as_str(),
        kind: change.key.kind.as_str(),
        app: change.key.app.to_string(),
        id: change.key.id.to_string(),
        place: Some(change.place().clone()),
        note: String::new(),
        fields: change.fields().into_iter().map(|f| f.field).collect(),
        diff: if with_diff {
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
                .map(|(n, c)| entry(c, n < markdown::DIFFS_SHOWN))
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
            None => match planned.desired.objects.get(key) {
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
