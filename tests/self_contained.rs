//! The repository needs nothing outside itself: no tracked file names a
//! path outside it (the workspace it was developed in, a sibling folder),
//! so a fresh clone on a machine that has only the repository runs its
//! tests and benchmarks.

use std::path::Path;
use std::process::Command;

/// Paths that lead out of a clone: the development workspace and its
/// sibling folders. Spelled in pieces, so this file names no such path
/// itself and the same check, run by anyone over the tree, finds none here.
const OUTSIDE: [&str; 3] = [
    concat!("/", "work", "/"),
    concat!("..", "/", "shared"),
    concat!("shared", "/", "bench", "/"),
];

#[test]
fn no_tracked_file_names_a_path_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root)
        .output()
        .expect("git ls-files");
    assert!(listed.status.success(), "the tests run from a Git clone");
    let files: Vec<String> = listed
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(files.len() > 50, "{} files listed", files.len());
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue; // binary, or deleted in the work tree
        };
        for (n, line) in text.lines().enumerate() {
            if let Some(pattern) = OUTSIDE.iter().find(|p| line.contains(*p)) {
                found.push(format!(
                    "{file}:{}: names `{pattern}`: {}",
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "paths outside the repository:\n{}",
        found.join("\n")
    );
}
