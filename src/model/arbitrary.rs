//! Random source trees for property tests: small files of valid objects,
//! objects another file may declare too, and broken documents, changed by
//! random writes, removals and renames.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::SourceFile;

pub fn file(path: &str, text: &str) -> SourceFile {
    SourceFile {
        path: Arc::from(path),
        bytes: text.as_bytes().to_vec(),
    }
}

/// One small document: valid objects, an object another file may
/// declare too, and broken ones.
fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..6u8).prop_map(|n| format!("- permissionId: svc:p{n}\n  slugs: [s{n}]\n")),
        (0..6u8, 0..3u8)
            .prop_map(|(n, r)| format!("- id: e{n}\n  role: svc:r{r}\n  userId: u{n}\n")),
        (0..4u8).prop_map(|n| format!("- slug: org{n}\n  name: Org {n}\n")),
        Just("- permissionId: [not, a, string]\n".to_owned()),
        Just("- role: svc:r\n  userId: u\n  contactId: c@d\n".to_owned()),
        Just("key: [unclosed\n".to_owned()),
        Just("- unknownField: 1\n".to_owned()),
    ]
}

fn contents() -> impl Strategy<Value = String> {
    prop::collection::vec(document(), 1..4).prop_map(|docs| docs.concat())
}

/// A change to a tree of at most six files.
#[derive(Clone, Debug)]
pub enum Change {
    Write(u8, String),
    Remove(u8),
    Rename(u8, u8),
}

pub fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..6u8, contents()).prop_map(|(n, text)| Change::Write(n, text)),
        1 => (0..6u8).prop_map(Change::Remove),
        1 => (0..6u8, 0..6u8).prop_map(|(a, b)| Change::Rename(a, b)),
    ]
}

pub fn apply(tree: &mut BTreeMap<String, String>, change: &Change) {
    let path = |n: &u8| format!("f{n}.yaml");
    match change {
        Change::Write(n, text) => {
            tree.insert(path(n), text.clone());
        }
        Change::Remove(n) => {
            tree.remove(&path(n));
        }
        Change::Rename(a, b) => {
            if let Some(text) = tree.remove(&path(a)) {
                tree.insert(path(b), text);
            }
        }
    }
}
