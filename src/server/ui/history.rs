//! The sync history on a source's page: the source's recorded syncs,
//! newest first, a page at a time by key (`before` the last run shown),
//! each opening onto its changes with their diffs. A page reads its runs
//! and their changes in two queries, shows a few changes of each run and a
//! budget of diff text, and links the rest to the audit log, so it stays
//! small however long the history and however large a run.

use std::cell::Cell;

use chrono::TimeDelta;
use maud::{html, Markup};

use super::audit::{entries_table, Diffs};
use super::{revision, time, urlencode};
use crate::store::{AnyStore, RunQuery, Store, SyncRun};

/// Runs per page.
pub const RUNS: u32 = 20;
/// Changes shown with each run; the audit log has the rest.
pub const CHANGES: u32 = 5;
/// Bytes of one diff shown, and of all the diffs of a page.
const DIFF_EACH: usize = 2 * 1024;
const DIFF_PAGE: usize = 32 * 1024;

/// The history of `source`, from the run before `before` (the newest
/// when none).
pub async fn section(store: &AnyStore, source: &str, before: Option<i64>) -> Markup {
    let query = RunQuery {
        source: source.to_owned(),
        before,
        // One more than shown of each: whether there is more.
        limit: RUNS + 1,
        changes: CHANGES + 1,
    };
    let runs = store.sync_runs(&query).await;
    let here = format!("/sources/{}", urlencode(source));
    let diffs = Diffs::Budget {
        each: DIFF_EACH,
        left: Cell::new(DIFF_PAGE),
    };
    html! {
        section aria-labelledby="history" {
            h2 id="history" { "Sync history" }
            @match &runs {
                Err(error) => p class="alert error" role="alert" { "The database does not answer: " (error.to_string()) },
                Ok(runs) if runs.is_empty() => p class="muted" {
                    @if before.is_some() { "No older syncs." } @else { "No sync of this source is recorded yet." }
                },
                Ok(runs) => {
                    div class="scroll" {
                        table id="runs" {
                            caption class="visually-hidden" { "This source's recorded syncs, newest first" }
                            thead { tr {
                                th scope="col" { "Run" } th scope="col" { "Finished" } th scope="col" { "Revision" }
                                th scope="col" { "Trigger" } th scope="col" { "Run by" } th scope="col" { "Outcome" } th scope="col" { "Created" }
                                th scope="col" { "Updated" } th scope="col" { "Deleted" } th scope="col" { "Drift" }
                                th scope="col" { "Took" }
                            } }
                            @for run in runs.iter().take(RUNS as usize) {
                                (run_rows(run, source, &diffs))
                            }
                        }
                    }
                },
            }
            nav class="pages" aria-label="Sync history pages" {
                @if before.is_some() {
                    a href=(format!("{here}#history")) { "Newest syncs" }
                }
                @if let Ok(runs) = &runs {
                    @if runs.len() > RUNS as usize {
                        @if let Some(last) = runs.get(RUNS as usize - 1) {
                            " " a href=(format!("{here}?before={}#history", last.id)) rel="next" { "Older syncs" }
                        }
                    }
                }
            }
        }
    }
}

/// One run: a row of what it did, and a row that opens onto its changes.
fn run_rows(run: &SyncRun, source: &str, diffs: &Diffs) -> Markup {
    let shown = &run.changes[..run.changes.len().min(CHANGES as usize)];
    let cut = run.changes.len() > shown.len();
    let in_audit = format!("/audit?source={}&run={}", urlencode(source), run.id);
    let total = match run.audited {
        Some(total) => total.to_string(),
        None if cut => format!("more than {}", shown.len()),
        None => shown.len().to_string(),
    };
    let summary = &run.summary;
    html! {
        tbody data-run=(run.id) {
            tr {
                th scope="row" { "#" (run.id) }
                td { (time(Some(run.finished_at))) }
                td { (revision(Some(&run.revision))) }
                td { (run.cause.as_deref().unwrap_or("—")) }
                td { (run.actor) }
                td {
                    (run.outcome)
                    @if !run.message.is_empty() { br; span class="muted" { (run.message) } }
                }
                td { (summary.create) }
                td { (summary.update) }
                td { (summary.delete) }
                td { (summary.drift) }
                td { (took(run.finished_at - run.started_at)) }
            }
            @if !shown.is_empty() {
                tr class="changes" {
                    td colspan="11" {
                        details {
                            summary {
                                @if cut { "Changes: the newest " (shown.len()) " of " (total) } @else { "Changes: " (total) }
                            }
                            (entries_table(None, shown, diffs))
                            p {
                                a href=(in_audit) {
                                    @if cut { "All " (total) " changes of run #" (run.id) " in the audit log" }
                                    @else { "The changes of run #" (run.id) " in the audit log" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How long applying a run took.
fn took(span: TimeDelta) -> String {
    let ms = span.num_milliseconds().max(0);
    match ms {
        0..=999 => format!("{ms} ms"),
        1_000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_reads_in_the_unit_that_fits_it() {
        assert_eq!(took(TimeDelta::milliseconds(42)), "42 ms");
        assert_eq!(took(TimeDelta::milliseconds(1_240)), "1.2 s");
        assert_eq!(took(TimeDelta::seconds(125)), "2 min 5 s");
        assert_eq!(took(TimeDelta::milliseconds(-3)), "0 ms");
    }
}
