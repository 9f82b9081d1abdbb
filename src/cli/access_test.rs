//! `accord test`: access tests kept beside the objects — files of
//! assertions (who can, who cannot, exactly who holds) checked against a
//! folder, a Git revision or the live database, failures located and
//! explained.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use rayon::prelude::*;
use serde_json::json;

use super::access::{can_text, holding_text};
use super::state::{self, load, StateArgs};
use super::{output, OutputFormat, Style, ERROR, OK};
use crate::access::check::{self, Assertion, Checker, Finding, Outcome};
use crate::access::Holding;
use crate::model::Diagnostic;
use crate::source::{directory, SourceError};

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test files, or folders of them (searched for *.yaml and *.yml).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// The state the tests are checked against.
    #[command(flatten)]
    pub state: StateArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, thiserror::Error)]
enum TestsError {
    #[error(transparent)]
    Read(#[from] SourceError),
    #[error("the access tests are not valid ({} errors)", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("no test files (*.yaml, *.yml) in {0}")]
    None(String),
}

/// Exit 0 when every assertion holds, 1 when one fails or on error.
pub async fn test(args: &TestArgs, style: Style) -> u8 {
    // The tests and the state are read at once; a mistake in the tests is
    // reported alone, whatever the state holds.
    let (paths, max_file_size) = (args.paths.clone(), args.state.max_file_size);
    let reading = tokio::task::spawn_blocking(move || read_tests(&paths, max_file_size));
    let spec = args.state.spec();
    let loading = tokio::spawn(async move { load(&spec, max_file_size).await });
    let assertions = match reading.await {
        Ok(Ok(assertions)) => assertions,
        Ok(Err(error)) => {
            loading.abort();
            if let TestsError::Invalid(diagnostics) = &error {
                output::print_diagnostics(diagnostics);
            }
            eprintln!("error: {}", crate::sync::explain(&error));
            return ERROR;
        }
        Err(error) => {
            loading.abort();
            eprintln!("error: the test reader stopped unexpectedly: {error}");
            return ERROR;
        }
    };
    let state = match loading.await {
        Ok(Ok(state)) => state,
        Ok(Err(error)) => {
            state::report(&error);
            return ERROR;
        }
        Err(error) => {
            eprintln!("error: the state reader stopped unexpectedly: {error}");
            return ERROR;
        }
    };
    let access = state.into_access();
    let checker = Checker::new(&access);
    // Each assertion is answered from the index alone, so they share the cores.
    let outcomes: Vec<Outcome> = assertions.par_iter().map(|a| checker.check(a)).collect();
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    match args.output {
        OutputFormat::Text => print!("{}", report_text(&assertions, &outcomes, style)),
        OutputFormat::Json => output::print_json(&report_json(&assertions, &outcomes)),
    }
    // The process ends here; freeing a large state object by object is
    // wasted time.
    std::mem::forget((access, assertions, outcomes));
    if failed == 0 {
        OK
    } else {
        ERROR
    }
}

/// Every assertion of the test files under `paths`, in file order.
fn read_tests(paths: &[PathBuf], max_file_size: u64) -> Result<Vec<Assertion>, TestsError> {
    let snapshot = directory::read_paths(paths, max_file_size)?;
    if snapshot.files.is_empty() && snapshot.problems.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(TestsError::None(shown.join(", ")));
    }
    let parsed: Vec<_> = snapshot
        .files
        .par_iter()
        .map(|file| check::parse(&file.path, &file.bytes))
        .collect();
    let mut errors = snapshot.problems;
    let mut assertions = Vec::new();
    for (parsed, diagnostics) in parsed {
        assertions.extend(parsed);
        errors.extend(diagnostics);
    }
    if errors.is_empty() {
        Ok(assertions)
    } else {
        errors.sort();
        Err(TestsError::Invalid(errors))
    }
}

/// Failures located and explained, notes, and a summary line.
fn report_text(assertions: &[Assertion], outcomes: &[Outcome], style: Style) -> String {
    let mut out = String::new();
    for (assertion, outcome) in assertions.iter().zip(outcomes) {
        let place = &assertion.place;
        if !outcome.passed {
            let _ = writeln!(
                out,
                "{place}: {}",
                style.paint("31", &assertion.failure(outcome))
            );
            out.push_str(&explanation(outcome, style));
        }
        for note in &outcome.notes {
            let _ = writeln!(out, "{place}: {}: {note}", style.paint("33", "warning"));
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let summary = format!("{} assertions, {failed} failed", outcomes.len());
    let color = if failed == 0 { "32" } else { "31;1" };
    let _ = writeln!(out, "{}", style.paint(color, &summary));
    out
}

/// Why an assertion failed: the paths that grant what must not be held, the
/// permits that would grant what is missing, the unlisted and the missing
/// holders.
fn explanation(outcome: &Outcome, style: Style) -> String {
    let mut out = String::new();
    match &outcome.finding {
        Finding::Decision(decision) => {
            for line in can_text(decision, true, style).lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
        Finding::Holders { extra, missing } => {
            if !extra.is_empty() {
                let _ = writeln!(out, "  holders not listed:");
                for holding in extra {
                    let _ = writeln!(out, "    {}", extra_text(holding));
                }
            }
            if !missing.is_empty() {
                let _ = writeln!(out, "  listed, but not holders:");
                for holder in missing {
                    let _ = writeln!(out, "    {holder}");
                }
            }
        }
    }
    out
}

fn extra_text(holding: &Holding) -> String {
    format!("app {}: {}", holding.path.app, holding_text(holding))
}

fn report_json(assertions: &[Assertion], outcomes: &[Outcome]) -> serde_json::Value {
    let results: Vec<serde_json::Value> = assertions
        .iter()
        .zip(outcomes)
        .map(|(assertion, outcome)| {
            let mut fields = serde_json::Map::new();
            fields.insert("file".into(), json!(&*assertion.place.file));
            fields.insert("line".into(), json!(assertion.place.mark.line));
            fields.insert("column".into(), json!(assertion.place.mark.col));
            fields.insert("kind".into(), json!(assertion.kind()));
            fields.insert("permission".into(), json!(assertion.permission()));
            fields.insert("passed".into(), json!(outcome.passed));
            if let Some(name) = &assertion.name {
                fields.insert("name".into(), json!(name));
            }
            if let Some(subject) = assertion.subject() {
                fields.insert("subject".into(), json!(subject.to_string()));
            }
            if let Some(app) = &assertion.app {
                fields.insert("app".into(), json!(app));
            }
            if let check::Expect::Holders {
                holders, exactly, ..
            } = &assertion.expect
            {
                let field = if *exactly { "exactly" } else { "include" };
                fields.insert(field.into(), json!(holders));
            }
            if !outcome.notes.is_empty() {
                fields.insert("notes".into(), json!(outcome.notes));
            }
            if !outcome.passed {
                fields.insert("message".into(), json!(assertion.failure(outcome)));
                match &outcome.finding {
                    Finding::Decision(decision) => {
                        fields.insert("decision".into(), json!(decision));
                    }
                    Finding::Holders { extra, missing } => {
                        fields.insert("extra".into(), json!(extra));
                        fields.insert("missing".into(), json!(missing));
                    }
                }
            }
            serde_json::Value::Object(fields)
        })
        .collect();
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    json!({
        "assertions": outcomes.len(),
        "failed": failed,
        "results": results,
    })
}
