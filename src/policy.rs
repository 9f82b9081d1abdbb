//! The policies a source is synced under, shared by the configuration, the
//! sources, the pipeline and the store: what to do with drift, and how
//! many deletions the guard allows.

use std::time::Duration;

use serde::Serialize;

/// What the drift policy does with a managed row edited or deleted by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Put it back and audit `drift_corrected`.
    #[default]
    Correct,
    /// Leave it, audit `drift_detected` once.
    Report,
}

impl std::str::FromStr for DriftPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "correct" => Ok(DriftPolicy::Correct),
            "report" => Ok(DriftPolicy::Report),
            other => Err(format!(
                "unknown drift policy `{other}`, expected correct or report"
            )),
        }
    }
}

/// The share of a source's rows the deletion guard lets it delete within
/// the window, by default.
pub const DEFAULT_MAX_DELETE_PERCENT: u32 = 25;

/// How far back deletions add up toward that share, by default.
pub const DEFAULT_DELETION_WINDOW: Duration = Duration::from_secs(600);
