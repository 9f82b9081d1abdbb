//! `accord export`: the database's current state as a tree of app bundles,
//! one file per app, that `accord plan` reads back as unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::{Map, Value};

use super::{connect, ERROR, OK};
use crate::model::{render, Kind};
use crate::plan::LiveRow;
use crate::store::Store;

pub async fn export(args: &super::ExportArgs) -> u8 {
    let Some(store) = connect(&args.database).await else {
        return ERROR;
    };
    let live = store.load(None).await;
    store.close().await;
    let live = match live {
        Ok(live) => live,
        Err(e) => {
            eprintln!("error: {}", crate::sync::explain(&e));
            return ERROR;
        }
    };
    let rows = live.rows.values().filter(|row| match &args.managed_by {
        Some(source) => row.managed_by.as_deref() == Some(source.as_str()),
        None => true,
    });
    let bundles = bundles(rows);
    match bundles.and_then(|bundles| write_tree(&args.out, &bundles).map(|()| bundles)) {
        Ok(bundles) => {
            eprintln!(
                "wrote {} objects in {} app bundles to {}",
                bundles.values().map(|b| b.len()).sum::<usize>(),
                bundles.len(),
                args.out.display()
            );
            OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            ERROR
        }
    }
}

/// Rows grouped by app, each kind sorted by id, as YAML-ready values.
fn bundles<'a>(rows: impl Iterator<Item = &'a LiveRow>) -> Result<Bundles, String> {
    let mut by_app = Bundles::new();
    for row in rows {
        // `Store::load` reads every row whole; a row without its content
        // here is a store's bug, not something to export as empty.
        let object = row
            .object()
            .ok_or("the database was read without the rows' content")?;
        let mut value = object.to_json();
        if let Value::Object(map) = &mut value {
            // Items inherit the bundle's app.
            map.remove("app");
            if !row.gitops {
                map.insert("gitops".into(), Value::Bool(false));
            }
        }
        by_app.entry(object.app().to_owned()).or_default().push((
            object.kind(),
            object.id().to_owned(),
            value,
        ));
    }
    for items in by_app.values_mut() {
        items.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    }
    Ok(by_app)
}

/// Each app's objects: kind, id and YAML-ready value.
type Bundles = BTreeMap<String, Vec<(Kind, String, Value)>>;

fn write_tree(out: &Path, bundles: &Bundles) -> Result<(), String> {
    if out.exists() {
        let mut entries =
            fs::read_dir(out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
        if entries.next().is_some() {
            return Err(format!(
                "{} is not empty; export writes a fresh tree and will not mix with existing files",
                out.display()
            ));
        }
    }
    fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for (app, items) in bundles {
        let mut bundle = Map::new();
        bundle.insert("app".into(), Value::String(app.clone()));
        for (kind, field) in [
            (Kind::Organization, "organizations"),
            (Kind::Permit, "permits"),
            (Kind::Enrollment, "enrollments"),
        ] {
            let list: Vec<Value> = items
                .iter()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, _, v)| v.clone())
                .collect();
            if !list.is_empty() {
                bundle.insert(field.into(), Value::Array(list));
            }
        }
        let text = format!(
            "# Exported by accord from the database; app `{app}`.\n{}",
            render::to_yaml(&Value::Object(bundle))
        );
        // App names are host-like; `:` (a port) is the one character to avoid in file names.
        let path = out.join(format!("{}.yaml", app.replace(':', "_")));
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
