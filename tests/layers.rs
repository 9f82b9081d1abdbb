//! Dependencies point down: each top-level module of `src/` uses only the
//! modules below it, so there is no import cycle and a module's floor is
//! what its `crate::` paths say. `cli` and `server` → `controller` → `sync`
//! → `source` / `store` → `plan` → `model`; `access` (what the objects
//! mean) sits on `plan` and `model`; what two layers share
//! (`policy`, `redact`, `config`, `metrics`) lives below both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module with the modules it may use.
const ALLOWED: [(&str, &[&str]); 15] = [
    ("model", &[]),
    ("redact", &[]),
    ("policy", &[]),
    ("metrics", &[]),
    ("plan", &["model"]),
    ("access", &["model", "plan"]),
    ("store", &["model", "plan", "policy", "redact"]),
    ("source", &["model", "plan", "policy", "redact"]),
    ("sync", &["model", "plan", "policy", "source", "store"]),
    ("config", &["model", "policy", "redact", "source"]),
    (
        "controller",
        &[
            "access", "config", "metrics", "model", "plan", "policy", "redact", "source", "store",
            "sync",
        ],
    ),
    (
        "server",
        &[
            "access",
            "config",
            "controller",
            "metrics",
            "model",
            "plan",
            "policy",
            // A Git source's commit, shown on the pages.
            "source",
            "store",
            "sync",
        ],
    ),
    (
        "cli",
        &[
            "access",
            "config",
            "controller",
            "model",
            "plan",
            "policy",
            "redact",
            "server",
            "source",
            "store",
            "sync",
        ],
    ),
    ("main", &["cli"]),
    ("lib", &[]),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            rust_files(&entry.path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The top-level modules each module's files name through `crate::`.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|c| c.trim_end_matches(".rs").to_owned())
            .expect("a module");
        let text = std::fs::read_to_string(&file).expect("read");
        let entry = uses.entry(module.clone()).or_default();
        for (at, _) in text.match_indices("crate::") {
            let name: String = text[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
        // `accord::` in main.rs is the library seen from the binary.
        if module == "main" && text.contains("accord::cli") {
            entry.insert("cli".into());
        }
    }
    uses
}

#[test]
fn every_module_uses_only_the_modules_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.into_iter().collect();
    let mut wrong = Vec::new();
    for (module, used) in uses() {
        let Some(floor) = allowed.get(module.as_str()) else {
            wrong.push(format!(
                "`{module}` has no place in the layering (add it to ALLOWED)"
            ));
            continue;
        };
        for name in used {
            if !floor.contains(&name.as_str()) {
                wrong.push(format!("`{module}` uses `crate::{name}`"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_layering_has_no_cycle() {
    // A module's allowed floor must itself sit lower: depth-first, no revisit.
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.into_iter().collect();
    fn visit<'a>(
        module: &'a str,
        allowed: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
    ) {
        assert!(
            !path.contains(&module),
            "cycle: {} -> {module}",
            path.join(" -> ")
        );
        path.push(module);
        for next in allowed.get(module).copied().unwrap_or_default() {
            visit(next, allowed, path);
        }
        path.pop();
    }
    for module in allowed.keys() {
        visit(module, &allowed, &mut Vec::new());
    }
}
