//! `accord lint PATH...`: the lint rules of `access::lint` over files and
//! folders of YAML, with severities from a configuration file and flags.
//! Exit 1 when an error (or, with `--deny warnings`, a warning) is found, or
//! when the files or the configuration cannot be read; else 0.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::output::{self, Style};
use super::{LimitArgs, OutputFormat, ERROR, OK};
use crate::access::lint::{self, Finding, Rule, Severities, Severity};
use crate::access::{Place, Placed};
use crate::model::{Kind, Limits};
use crate::source::directory;
use crate::sync;

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files or folders (folders are searched for *.yaml and *.yml).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// A YAML file of rule severities, e.g.
    /// `rules: {wildcard-admin: warning, unused-role: off}`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A rule's severity, `RULE=error|warning|off`; repeatable, and over
    /// --config. Rules: unheld-role, unused-role, wildcard-admin,
    /// org-without-admin, wildcard-service, duplicate-grant,
    /// shared-enrollment-id.
    #[arg(long = "rule", value_name = "RULE=SEVERITY", value_parser = parse_rule)]
    pub rules: Vec<(Rule, Severity)>,
    /// `warnings`: a warning fails the run too (exit 1), for CI.
    #[arg(long, value_enum)]
    pub deny: Option<Deny>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deny {
    Warnings,
}

fn parse_rule(text: &str) -> Result<(Rule, Severity), String> {
    let Some((id, severity)) = text.split_once('=') else {
        return Err(format!(
            "expected RULE=SEVERITY (e.g. wildcard-admin=warning), not `{text}`"
        ));
    };
    let rule = Rule::parse(id).ok_or_else(|| lint::unknown_rule(&format!("`{id}`"), Some(id)))?;
    let severity = Severity::parse(severity).ok_or_else(|| {
        format!("the severity of `{rule}` is error, warning or off, not `{severity}`")
    })?;
    Ok((rule, severity))
}

/// The severities the configuration file and the flags set.
fn severities(args: &LintArgs) -> Result<Severities, u8> {
    let mut severities = Severities::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|e| {
            eprintln!("error: cannot read {}: {e}", path.display());
            ERROR
        })?;
        severities
            .configure(&path.display().to_string(), &text)
            .map_err(|errors| {
                output::print_diagnostics(&errors);
                ERROR
            })?;
    }
    for &(rule, severity) in &args.rules {
        severities.set(rule, severity);
    }
    Ok(severities)
}

pub fn lint(args: &LintArgs, style: Style) -> u8 {
    let severities = match severities(args) {
        Ok(severities) => severities,
        Err(code) => return code,
    };
    let started = std::time::Instant::now();
    let snapshot = match directory::read_paths(&args.paths, args.limits.max_file_size) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("error: {}", sync::explain(&e));
            return ERROR;
        }
    };
    let desired = match snapshot.desired(Limits::default()) {
        Ok(desired) => desired,
        Err(errors) => {
            output::print_diagnostics(&errors);
            return ERROR;
        }
    };
    let objects: Vec<Placed> = desired
        .objects
        .values()
        .map(|d| (Arc::clone(&d.object), Place::Declared(d.origin.clone())))
        .collect();
    let read = started.elapsed();
    let findings = lint::lint(&objects, &severities);
    let checked = started.elapsed();
    let count = |severity| findings.iter().filter(|f| f.severity == severity).count();
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let failed = errors > 0 || (warnings > 0 && args.deny == Some(Deny::Warnings));
    let code = match args.output {
        OutputFormat::Text => {
            let mut text = String::new();
            for finding in &findings {
                text.push_str(&line(finding, style));
                text.push('\n');
            }
            let printed = super::print(&text);
            eprintln!(
                "{}: {} and {} in {} objects ({} organizations, {} permits, {} enrollments) in {} files{}",
                if failed { "lint failed" } else { "lint" },
                plural(errors, "error"),
                plural(warnings, "warning"),
                desired.len(),
                desired.count(Kind::Organization),
                desired.count(Kind::Permit),
                desired.count(Kind::Enrollment),
                snapshot.files.len(),
                if failed && errors == 0 { " (warnings denied)" } else { "" }
            );
            printed
        }
        OutputFormat::Json => {
            // Written straight from the findings: a tree may have tens of
            // thousands, and a JSON value of each would double the work.
            let report = Report {
                findings: &findings,
                summary: Summary {
                    errors,
                    warnings,
                    objects: desired.len(),
                    files: snapshot.files.len(),
                    failed,
                },
            };
            match serde_json::to_string(&report) {
                Ok(json) => super::print(&(json + "\n")),
                Err(e) => {
                    eprintln!("error: cannot write the findings as JSON: {e}");
                    ERROR
                }
            }
        }
    };
    // Timings for the benchmark, at debug level under `accord::timing`.
    tracing::debug!(
        target: "accord::timing",
        read_s = read.as_secs_f64(),
        rules_s = (checked - read).as_secs_f64(),
        output_s = (started.elapsed() - checked).as_secs_f64(),
        findings = findings.len(),
        "linted"
    );
    // The process ends here; freeing 100k objects one by one is wasted time.
    std::mem::forget((objects, desired, snapshot, findings));
    if failed || code != OK {
        ERROR
    } else {
        OK
    }
}

/// What `--output json` prints.
#[derive(Serialize)]
struct Report<'a> {
    findings: &'a [Finding],
    summary: Summary,
}

#[derive(Serialize)]
struct Summary {
    errors: usize,
    warnings: usize,
    objects: usize,
    files: usize,
    failed: bool,
}

/// `FILE:LINE:COL: severity[rule]: message`, the severity colored on a terminal.
fn line(finding: &Finding, style: Style) -> String {
    let color = match finding.severity {
        Severity::Error => "31;1",
        _ => "33",
    };
    format!(
        "{}: {}: {}",
        finding.place,
        style.paint(color, &format!("{}[{}]", finding.severity, finding.rule)),
        finding.message
    )
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
