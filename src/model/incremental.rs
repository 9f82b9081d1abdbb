//! Parsing a source's next revision by what changed. A file's declarations
//! and errors depend on its path and bytes alone, so a file seen before (same
//! path, same content) is taken from the cache instead of parsed again; the
//! whole-tree checks (keys declared twice across files) run on every
//! revision, over every file, as a full parse runs them.

use std::collections::HashMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::parse::{assemble, parse_source_file, Diagnostic, SourceFile};
use super::yaml::Limits;
use super::{Declaration, DesiredState};

/// A file by path and content: a path's old content is a different file.
type FileKey = (Arc<str>, [u8; 16]);

/// What parsing one file gave, shared between the cache and a parse.
#[derive(Debug)]
struct Parsed {
    declarations: Vec<Declaration>,
    diagnostics: Vec<Diagnostic>,
}

/// The files of the last revision parsed, by path and content. Bounded by
/// that revision: a parse keeps only the files of the tree it was given, so
/// the cache never holds more than one tree's declarations (which the
/// desired state shares: objects are `Arc`s).
#[derive(Debug)]
pub struct ParseCache {
    limits: Limits,
    files: HashMap<FileKey, Arc<Parsed>>,
}

/// How much of a tree a parse reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reuse {
    pub parsed: usize,
    pub reused: usize,
}

impl ParseCache {
    pub fn new(limits: Limits) -> ParseCache {
        ParseCache {
            limits,
            files: HashMap::new(),
        }
    }

    /// `parse_tree_for_plan` of `files`, parsing only the files not in the
    /// cache; the cache then holds exactly these files.
    pub fn parse(
        &mut self,
        files: &[SourceFile],
    ) -> (Result<DesiredState, Vec<Diagnostic>>, Reuse) {
        let limits = self.limits;
        let cached = &self.files;
        let parsed: Vec<(FileKey, Arc<Parsed>, bool)> = files
            .par_iter()
            .map(|file| {
                let key = (file.path.clone(), content_hash(&file.bytes));
                match cached.get(&key) {
                    Some(parsed) => (key, parsed.clone(), true),
                    None => {
                        let (declarations, diagnostics) = parse_source_file(file, limits, true);
                        let parsed = Parsed {
                            declarations,
                            diagnostics,
                        };
                        (key, Arc::new(parsed), false)
                    }
                }
            })
            .collect();
        let reused = parsed.iter().filter(|(_, _, hit)| *hit).count();
        let reuse = Reuse {
            parsed: parsed.len() - reused,
            reused,
        };
        let state = assemble(
            parsed
                .iter()
                .map(|(_, p, _)| (p.declarations.clone(), p.diagnostics.clone()))
                .collect(),
        );
        self.files = parsed.into_iter().map(|(key, p, _)| (key, p)).collect();
        (state, reuse)
    }

    /// Files held.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// 128 bits of BLAKE3: a changed file is never mistaken for the old one.
fn content_hash(bytes: &[u8]) -> [u8; 16] {
    let hash = blake3::hash(bytes);
    let mut out = [0; 16];
    out.copy_from_slice(&hash.as_bytes()[..16]);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::arbitrary::{apply, change, file};
    use crate::model::parse::parse_tree_for_plan;

    proptest! {
        /// Every revision of a random commit sequence parses incrementally to
        /// exactly what a full parse gives: the same declarations from the
        /// same places with the same hashes, or the same errors.
        #[test]
        fn an_incremental_parse_is_a_full_parse(
            changes in prop::collection::vec(change(), 1..12)
        ) {
            let mut tree = std::collections::BTreeMap::new();
            let mut cache = ParseCache::new(Limits::default());
            for change in &changes {
                apply(&mut tree, change);
                let files: Vec<SourceFile> = tree.iter().map(|(p, t)| file(p, t)).collect();
                let full = parse_tree_for_plan(&files, Limits::default());
                let (incremental, reuse) = cache.parse(&files);
                prop_assert_eq!(&incremental, &full);
                prop_assert_eq!(reuse.parsed + reuse.reused, files.len());
                prop_assert_eq!(cache.len(), files.len());
            }
        }
    }

    #[test]
    fn only_changed_files_are_parsed_and_a_moved_file_is_parsed_at_its_new_path() {
        let mut cache = ParseCache::new(Limits::default());
        let a = file("a.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let b = file("b.yaml", "- permissionId: svc:b\n  slugs: [x]\n");
        let (_, reuse) = cache.parse(&[a.clone(), b.clone()]);
        assert_eq!(
            reuse,
            Reuse {
                parsed: 2,
                reused: 0
            }
        );
        let b2 = file("b.yaml", "- permissionId: svc:b2\n  slugs: [x]\n");
        let (state, reuse) = cache.parse(&[a.clone(), b2]);
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
        let (state, reuse) = cache.parse(&[moved]);
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
        let (state, _) = cache.parse(std::slice::from_ref(&a));
        assert!(state.is_ok());
        let b = file("b.yaml", "- permissionId: svc:a\n  slugs: [x]\n");
        let (state, reuse) = cache.parse(&[a, b]);
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
}
