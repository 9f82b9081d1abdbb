//! Parsing a source's next revision by what changed. A file's declarations
//! and errors depend on its path and content alone, so a file seen before
//! (same path, same content) is taken from the cache instead of parsed
//! again; the whole-tree checks (keys declared twice across files) run on
//! every revision, over every file, as a full parse runs them.
//!
//! Content is named by a `ContentId`: a Git blob id, or a hash of a folder
//! file's bytes. A source that names content without reading it (Git) lists
//! its tree by id and reads only the blobs the cache does not hold (`Held`).

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::parse::{assemble_shared, parse_source_file, Diagnostic, SourceFile};
use super::yaml::Limits;
use super::{Declaration, DesiredState};

/// What a file holds, by name: 20 bytes, a Git blob id (SHA-1 of the blob)
/// or the first 20 bytes of the BLAKE3 hash of a folder file's bytes.
pub type ContentId = [u8; 20];

/// What parsing one file gave, shared between the cache and a parse.
#[derive(Debug)]
struct Parsed {
    declarations: Vec<Declaration>,
    diagnostics: Vec<Diagnostic>,
}

/// The last revision's files: by path, each with its content's id.
type Files = HashMap<Arc<str>, (ContentId, Arc<Parsed>)>;

/// One file of a parse: its path, content and what it gave, and whether
/// that came from the cache.
type Taken = (Arc<str>, (ContentId, Arc<Parsed>), bool);

/// The files of the last revision parsed. Bounded by that revision: a parse
/// keeps only the files of the tree it was given, so the cache never holds
/// more than one tree's declarations (which the desired state shares:
/// objects are `Arc`s).
#[derive(Debug)]
pub struct ParseCache {
    limits: Limits,
    files: Arc<Files>,
}

/// Which files a cache holds, for a source deciding which to read; taken
/// before a read and valid until the cache's next parse.
#[derive(Clone, Debug, Default)]
pub struct Held(Option<Arc<Files>>);

impl Held {
    /// Holds nothing: every file is read.
    pub fn nothing() -> Held {
        Held(None)
    }

    pub fn contains(&self, path: &str, id: &ContentId) -> bool {
        self.0
            .as_ref()
            .and_then(|files| files.get(path))
            .is_some_and(|(held, _)| held == id)
    }
}

/// A revision's files as a source gives them to a parse.
pub enum Tree<'a> {
    /// Every file, read.
    Read(&'a [SourceFile]),
    /// Every file by path and content id, sorted by path; `read` holds the
    /// ones the cache did not (`Held`), the rest are taken from it.
    Listed {
        listing: &'a [(Arc<str>, ContentId)],
        read: &'a [SourceFile],
    },
}

/// How much of a tree a parse reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reuse {
    pub parsed: usize,
    pub reused: usize,
}

/// A listed file neither read nor in the cache: the source was told the
/// cache held it, and it no longer does. Read the tree whole instead.
#[derive(Debug, PartialEq, Eq)]
pub struct Unread(pub Arc<str>);

impl ParseCache {
    pub fn new(limits: Limits) -> ParseCache {
        ParseCache {
            limits,
            files: Arc::default(),
        }
    }

    /// The files this cache holds, for `Tree::Listed`'s reader.
    pub fn held(&self) -> Held {
        Held(Some(Arc::clone(&self.files)))
    }

    /// `parse_tree_for_plan` of `tree`, parsing only the files the cache
    /// does not hold; the cache then holds exactly this tree's files. The
    /// cache is left as it was when a listed file is missing.
    pub fn parse(
        &mut self,
        tree: Tree<'_>,
    ) -> Result<(Result<DesiredState, Vec<Diagnostic>>, Reuse), Unread> {
        let limits = self.limits;
        let cached = &*self.files;
        let parse = |path: &Arc<str>, id: ContentId, file: Option<&SourceFile>| match cached
            .get(path)
        {
            Some((held, parsed)) if *held == id => Ok((path.clone(), (id, parsed.clone()), true)),
            _ => {
                let file = file.ok_or_else(|| Unread(path.clone()))?;
                let (declarations, diagnostics) = parse_source_file(file, limits, true);
                let parsed = Parsed {
                    declarations,
                    diagnostics,
                };
                Ok((path.clone(), (id, Arc::new(parsed)), false))
            }
        };
        let parsed: Vec<Taken> = match tree {
            Tree::Read(files) => files
                .par_iter()
                .map(|file| parse(&file.path, content_id(&file.bytes), Some(file)))
                .collect::<Result<_, Unread>>()?,
            Tree::Listed { listing, read } => {
                let read: HashMap<&str, &SourceFile> = read.iter().map(|f| (&*f.path, f)).collect();
                listing
                    .par_iter()
                    .map(|(path, id)| parse(path, *id, read.get(&**path).copied()))
                    .collect::<Result<_, Unread>>()?
            }
        };
        let reused = parsed.iter().filter(|(_, _, hit)| *hit).count();
        let reuse = Reuse {
            parsed: parsed.len() - reused,
            reused,
        };
        let state = assemble_shared(
            parsed
                .iter()
                .map(|(_, (_, p), _)| (&p.declarations[..], &p.diagnostics[..])),
        );
        self.files = Arc::new(
            parsed
                .into_iter()
                .map(|(path, entry, _)| (path, entry))
                .collect(),
        );
        Ok((state, reuse))
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// A folder file's content id: 160 bits of BLAKE3, so a changed file is
/// never mistaken for the old one.
pub fn content_id(bytes: &[u8]) -> ContentId {
    let hash = blake3::hash(bytes);
    let mut out = [0; 20];
    out.copy_from_slice(&hash.as_bytes()[..20]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::arbitrary::{apply, change, file};
    use crate::model::parse::parse_tree_for_plan;

    type Outcome = (Result<DesiredState, Vec<Diagnostic>>, Reuse);

    /// A folder's way: every file read.
    fn read(cache: &mut ParseCache, files: &[SourceFile]) -> Outcome {
        cache.parse(Tree::Read(files)).expect("every file was read")
    }

    /// Git's way: every file listed by blob id, only those the cache does
    /// not hold read.
    fn listed(cache: &mut ParseCache, files: &[SourceFile]) -> Outcome {
        let held = cache.held();
        let listing: Vec<(Arc<str>, ContentId)> = files
            .iter()
            .map(|f| (f.path.clone(), blob_id(&f.bytes)))
            .collect();
        let read: Vec<SourceFile> = files
            .iter()
            .zip(&listing)
            .filter(|(_, (path, id))| !held.contains(path, id))
            .map(|(f, _)| f.clone())
            .collect();
        cache
            .parse(Tree::Listed {
                listing: &listing,
                read: &read,
            })
            .expect("every file not held was read")
    }

    fn blob_id(bytes: &[u8]) -> ContentId {
        let oid = git2::Oid::hash_object(git2::ObjectType::Blob, bytes).unwrap();
        let mut id = [0; 20];
        id.copy_from_slice(oid.as_bytes());
        id
    }

    proptest! {
        /// Every revision of a random commit sequence parses incrementally to
        /// exactly what a full parse gives: the same declarations from the
        /// same places with the same hashes, or the same errors; whether
        /// every file is read (a folder) or the tree is listed by blob id
        /// and only the blobs the cache lacks are read (a Git source).
        #[test]
        fn an_incremental_parse_is_a_full_parse(
            changes in prop::collection::vec(change(), 1..12)
        ) {
            let mut tree = std::collections::BTreeMap::new();
            let ways: [fn(&mut ParseCache, &[SourceFile]) -> Outcome; 2] = [read, listed];
            let mut caches = ways.map(|_| ParseCache::new(Limits::default()));
            for change in &changes {
                apply(&mut tree, change);
                let files: Vec<SourceFile> = tree.iter().map(|(p, t)| file(p, t)).collect();
                let full = parse_tree_for_plan(&files, Limits::default());
                for (parse, cache) in ways.iter().zip(&mut caches) {
                    let (incremental, reuse) = parse(cache, &files);
                    prop_assert_eq!(&incremental, &full);
                    prop_assert_eq!(reuse.parsed + reuse.reused, files.len());
                    prop_assert_eq!(cache.len(), files.len());
                }
            }
        }
    }

    #[test]
    fn only_changed_files_are_parsed_and_a_moved_file_is_parsed_at_its_new_path() {
        let mut cache = ParseCache::new(Limits::default());
        let a = file("a.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let b = file("b.yaml", "- permissionId: svc:b\n  slugs: [x]\n");
        let (_, reuse) = read(&mut cache, &[a.clone(), b.clone()]);
        assert_eq!(
            reuse,
            Reuse {
                parsed: 2,
                reused: 0
            }
        );
        let b2 = file("b.yaml", "- permissionId: svc:b2\n  slugs: [x]\n");
        let (state, reuse) = read(&mut cache, &[a.clone(), b2]);
        assert_eq!(
            reuse,
            Reuse {
                parsed: 1,
                reused: 1
            }
        );
        assert_eq!(state.unwrap().len(), 2);
        // The same bytes at another path are another file: its places differ.
        let moved = file("c.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let (state, reuse) = read(&mut cache, &[moved]);
        assert_eq!(
            reuse,
            Reuse {
                parsed: 1,
                reused: 0
            }
        );
        let state = state.unwrap();
        let declared = state.objects.values().next().unwrap();
        assert_eq!(&*declared.origin.file, "c.yaml");
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_key_declared_again_in_an_unchanged_file_is_still_caught() {
        let mut cache = ParseCache::new(Limits::default());
        let a = file("a.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let (state, _) = read(&mut cache, std::slice::from_ref(&a));
        assert!(state.is_ok());
        let b = file("b.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let (state, reuse) = read(&mut cache, &[a, b]);
        assert_eq!(
            reuse,
            Reuse {
                parsed: 1,
                reused: 1
            }
        );
        let errors = state.unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("declared twice"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn a_listed_file_neither_read_nor_held_is_named_and_the_cache_kept() {
        let mut cache = ParseCache::new(Limits::default());
        let a = file("a.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let (state, _) = listed(&mut cache, std::slice::from_ref(&a));
        assert!(state.is_ok());
        let b = file("b.yaml", "- permissionId: svc:b\n  slugs: [x]\n");
        let listing = [
            (a.path.clone(), blob_id(&a.bytes)),
            (b.path.clone(), blob_id(&b.bytes)),
        ];
        let unread = cache.parse(Tree::Listed {
            listing: &listing,
            read: &[],
        });
        assert_eq!(unread.unwrap_err(), Unread(b.path.clone()));
        assert!(cache.held().contains("a.yaml", &blob_id(&a.bytes)));
        assert!(!cache.held().contains("b.yaml", &blob_id(&b.bytes)));
        // Held by path and content: the old content of a path is not held.
        assert!(!cache.held().contains("a.yaml", &blob_id(&b.bytes)));
    }
}
