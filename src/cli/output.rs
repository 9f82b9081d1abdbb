//! What the commands print: readable text (colored only on a terminal) and
//! JSON for scripts.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::json;

use crate::model::Diagnostic;
use crate::plan::{Action, Change, Summary};
use crate::policy::DriftPolicy;
use crate::store::{AuditEntry, SyncRecord};
use crate::sync::Planned;

#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// A unified diff, with added lines green and removed lines red.
    pub fn diff(&self, diff: &str, indent: &str) -> String {
        let mut out = String::new();
        for line in diff.lines() {
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                self.paint("1", line)
            } else if line.starts_with('+') {
                self.paint("32", line)
            } else if line.starts_with('-') {
                self.paint("31", line)
            } else if line.starts_with("@@") {
                self.paint("36", line)
            } else {
                line.to_owned()
            };
            out.push_str(indent);
            out.push_str(&painted);
            out.push('\n');
        }
        out
    }
}

pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    let mut err = io::stderr().lock();
    for d in diagnostics {
        let _ = writeln!(err, "{d}");
    }
}

fn symbol(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("+", "32"),
        Action::Update => ("~", "33"),
        Action::Delete => ("-", "31"),
        Action::Drift => ("!", "35"),
        Action::Conflict => ("x", "31;1"),
        Action::Suspended => ("=", "2"),
    }
}

fn headline(change: &Change, style: Style) -> String {
    let (mark, color) = symbol(change.action);
    let mut line = format!(
        "{} {} {} {}/{}",
        style.paint(color, mark),
        style.paint(color, &format!("{:<9}", change.action.as_str())),
        change.key.kind,
        change.key.app,
        change.key.id
    );
    if !change.note.is_empty() {
        line.push_str(&format!(" ({})", change.note));
    }
    if let Some(origin) = &change.origin {
        line.push_str(&style.paint("2", &format!("  {origin}")));
    }
    line
}

pub fn print_plan(prepared: &Planned, source: &str, style: Style) {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let _ = writeln!(
        out,
        "Plan for source `{source}` at revision {}:",
        prepared.revision
    );
    if prepared.plan.changes.is_empty() {
        let _ = writeln!(out, "No changes. The database matches the source.");
    }
    for change in &prepared.plan.changes {
        let _ = writeln!(out, "{}", headline(change, style));
        if !change.fields.is_empty() && change.action != Action::Create {
            let fields: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
            let _ = writeln!(out, "    fields: {}", fields.join(", "));
        }
        if change.action != Action::Suspended {
            let _ = write!(out, "{}", style.diff(&change.diff(), "    "));
        }
    }
    let _ = out.flush();
    drop(out);
    print_summary(&prepared.plan.summary(), "to");
}

pub fn print_summary(s: &Summary, verb: &str) {
    println!(
        "Summary: {} {verb} create, {} {verb} update, {} {verb} delete, {} drifted, {} in conflict, {} suspended.",
        s.create, s.update, s.delete, s.drift, s.conflict, s.suspended
    );
}

/// After an apply: one line per change (the first few hundred), then the summary.
pub fn print_applied(prepared: &Planned, record: &SyncRecord, drift: DriftPolicy, style: Style) {
    const SHOWN: usize = 200;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for change in prepared.plan.changes.iter().take(SHOWN) {
        let _ = writeln!(out, "{}", headline(change, style));
    }
    if prepared.plan.changes.len() > SHOWN {
        let _ = writeln!(
            out,
            "… and {} more (accord audit shows every one)",
            prepared.plan.changes.len() - SHOWN
        );
    }
    let s = &record.summary;
    let drift_verb = match drift {
        DriftPolicy::Correct => "corrected",
        DriftPolicy::Report => "reported",
    };
    let _ = writeln!(
        out,
        "Applied revision {} as sync #{}: {} created, {} updated, {} deleted, {} drift {drift_verb}, {} in conflict, {} suspended.",
        record.revision, record.id, s.create, s.update, s.delete, s.drift, s.conflict, s.suspended
    );
    let _ = out.flush();
}

#[derive(Serialize)]
struct JsonChange<'a> {
    action: Action,
    kind: &'a str,
    app: &'a str,
    id: &'a str,
    diff: String,
    fields: &'a [crate::plan::FieldChange],
    #[serde(skip_serializing_if = "str::is_empty")]
    note: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<String>,
}

pub fn print_plan_json(prepared: &Planned) {
    let changes: Vec<JsonChange> = prepared
        .plan
        .changes
        .iter()
        .map(|c| JsonChange {
            action: c.action,
            kind: c.key.kind.as_str(),
            app: &c.key.app,
            id: &c.key.id,
            diff: c.diff(),
            fields: &c.fields,
            note: &c.note,
            origin: c.origin.as_ref().map(|o| o.to_string()),
        })
        .collect();
    print_json(&json!({
        "revision": prepared.revision,
        "summary": prepared.plan.summary(),
        "changes": changes,
    }));
}

pub fn print_json(value: &impl Serialize) {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}

pub fn print_audit(entries: &[AuditEntry], style: Style) {
    let mut out = io::BufWriter::new(io::stdout().lock());
    if entries.is_empty() {
        let _ = writeln!(out, "The audit log is empty.");
    }
    for e in entries {
        let _ = writeln!(
            out,
            "{} {}  {}  {}@{}  {} {} {}/{}",
            style.paint("1", &format!("#{}", e.seq)),
            e.at.format("%Y-%m-%d %H:%M:%S UTC"),
            e.actor,
            e.source,
            e.revision,
            style.paint("33", &e.action),
            e.kind,
            e.app,
            e.id
        );
        if let Some(origin) = &e.origin {
            let _ = writeln!(
                out,
                "    {}",
                style.paint("2", &format!("declared in {origin}"))
            );
        }
        let _ = write!(out, "{}", style.diff(&e.diff, "    "));
    }
    let _ = out.flush();
}

/// A verified chain, for people.
pub fn chain_text(report: &crate::store::chain::Report) -> String {
    let head = |at: Option<(i64, [u8; 32])>| {
        at.map_or("none".to_owned(), |(id, hash)| {
            format!("{id} ({})", &hex::encode(hash)[..16])
        })
    };
    let mut text = format!(
        "ok: the history's hash chain holds: {} sync run(s), {} audit row(s)",
        report.sync_runs, report.audit_rows
    );
    if report.legacy > 0 {
        text.push_str(&format!(
            " (and {} row(s) written before the chain began, which carry no hash)",
            report.legacy
        ));
    }
    text.push_str(&format!(
        "; newest sync run {}, audit row {}",
        head(report.head.sync_runs),
        head(report.head.audit_log)
    ));
    text
}

/// A verified chain, for scripts.
pub fn chain_json(report: &crate::store::chain::Report) -> serde_json::Value {
    let head = |at: Option<(i64, [u8; 32])>| {
        at.map(|(id, hash)| json!({"id": id, "chainHash": hex::encode(hash)}))
    };
    json!({
        "ok": report.problem.is_none(),
        "problem": report.problem.as_ref().map(ToString::to_string),
        "syncRuns": report.sync_runs,
        "auditRows": report.audit_rows,
        "legacy": report.legacy,
        "head": {"syncRuns": head(report.head.sync_runs), "auditLog": head(report.head.audit_log)},
    })
}
