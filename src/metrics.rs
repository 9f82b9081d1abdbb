//! The Prometheus metrics of `accord run`, and their two text encodings:
//! OpenMetrics for a scraper that asks for it, the classic Prometheus text
//! format (0.0.4) for everything else.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub source: String,
    /// `applied`, `unchanged`, `invalid`, `refused`, `error`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub source: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevisionLabels {
    pub source: String,
    pub revision: String,
}

/// An HTTP request, by the route template it matched (`unmatched` when
/// none did), so a path with an id in it is one series, not one per id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

/// A notification's fate: `delivered`, `failed` (an attempt; it is
/// retried), `refused` (dropped: the receiver said no for good),
/// `rate_limited` or `queue_full` (dropped before an attempt).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub provider: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabel {
    /// `idle` or `active`.
    pub state: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub syncs: Family<OutcomeLabels, Counter>,
    pub sync_duration: Family<SourceLabel, Histogram>,
    pub managed: Family<KindLabels, Gauge>,
    pub drift_open: Family<SourceLabel, Gauge>,
    pub last_success: Family<SourceLabel, Gauge<f64, AtomicU64>>,
    pub revision: Family<RevisionLabels, Gauge>,
    pub deletions_refused: Family<SourceLabel, Counter>,
    pub audit_chain_ok: Gauge,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: Family<RouteLabel, Histogram>,
    /// Set from the database pool when `/metrics` is read.
    pub db_connections: Family<ConnectionLabel, Gauge>,
    pub resource_version: Family<SourceLabel, Gauge>,
    pub notifications: Family<NotificationLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("accord");
        let syncs = Family::<OutcomeLabels, Counter>::default();
        registry.register("syncs", "Syncs by source and outcome", syncs.clone());
        let sync_duration = Family::<SourceLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "sync_duration_seconds",
            "Time one sync took, from reading the source to commit",
            sync_duration.clone(),
        );
        let managed = Family::<KindLabels, Gauge>::default();
        registry.register(
            "managed_objects",
            "Objects a source manages, by kind",
            managed.clone(),
        );
        let drift_open = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "drift_open",
            "Drifted objects left in place (report mode)",
            drift_open.clone(),
        );
        let last_success = Family::<SourceLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful sync",
            last_success.clone(),
        );
        let revision = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "source_revision",
            "The revision a Git or folder source last applied (value 1)",
            revision.clone(),
        );
        let deletions_refused = Family::<SourceLabel, Counter>::default();
        registry.register(
            "deletions_refused",
            "Syncs whose deletions the deletion guard refused",
            deletions_refused.clone(),
        );
        let audit_chain_ok = Gauge::default();
        registry.register(
            "audit_chain_ok",
            "1 while the history's hash chain holds, 0 once a row was found edited, inserted or removed",
            audit_chain_ok.clone(),
        );
        let http_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status code",
            http_requests.clone(),
        );
        // From a millisecond to about a minute: a `POST …/sync` waits for its sync.
        let http_duration = Family::<RouteLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from receiving an HTTP request to its response, by route template",
            http_duration.clone(),
        );
        let db_connections = Family::<ConnectionLabel, Gauge>::default();
        registry.register(
            "db_connections",
            "Open connections of the database pool, idle or in use (active)",
            db_connections.clone(),
        );
        let resource_version = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_revision_resource_version",
            "The resourceVersion a Kubernetes source last applied",
            resource_version.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Outbound notifications by provider and outcome (delivered, failed attempt, refused, rate_limited, queue_full)",
            notifications.clone(),
        );
        Metrics {
            registry,
            notifications,
            http_requests,
            http_duration,
            db_connections,
            deletions_refused,
            audit_chain_ok,
            syncs,
            sync_duration,
            managed,
            drift_open,
            last_success,
            revision,
            resource_version,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text format (`application/openmetrics-text`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (`text/plain; version=0.0.4`),
    /// which promtool and older scrapers read.
    pub fn encode_classic(&self) -> String {
        classic_text(&self.encode())
    }

    /// Records the database pool as it is now: `size` connections open, `idle` of them unused.
    pub fn set_db_connections(&self, size: u32, idle: usize) {
        let idle = i64::try_from(idle).unwrap_or(i64::MAX);
        let (size, idle) = (i64::from(size), idle.min(i64::from(size)));
        for (state, value) in [("idle", idle), ("active", size - idle)] {
            self.db_connections
                .get_or_create(&ConnectionLabel {
                    state: state.into(),
                })
                .set(value);
        }
    }

    /// Records a newly applied revision, dropping the previous one's series.
    pub fn set_revision(&self, source: &str, previous: Option<&str>, revision: &str) {
        if let Some(previous) = previous.filter(|p| *p != revision) {
            self.revision.remove(&RevisionLabels {
                source: source.into(),
                revision: previous.into(),
            });
        }
        self.revision
            .get_or_create(&RevisionLabels {
                source: source.into(),
                revision: revision.into(),
            })
            .set(1);
    }

    /// Records the resourceVersion a Kubernetes source applied: as a
    /// value, since it changes at every write in the cluster (accord's own
    /// status writes too), and as a label each would start a new series.
    pub fn set_resource_version(&self, source: &str, revision: &str) {
        if let Ok(version) = revision.parse::<i64>() {
            self.resource_version
                .get_or_create(&SourceLabel {
                    source: source.into(),
                })
                .set(version);
        }
    }
}

/// OpenMetrics text as the classic Prometheus text format. The two differ,
/// for what accord exposes, in three ways: a counter's family is named
/// without its `_total` suffix in OpenMetrics (`# TYPE accord_syncs
/// counter`, samples `accord_syncs_total`) but with it in the classic
/// format, where a family is named like its samples; the classic format has
/// no `# UNIT` and no `# EOF`; and `unknown` is `untyped` there.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                });
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counter_families_like_their_samples() {
        let metrics = Metrics::default();
        metrics
            .syncs
            .get_or_create(&OutcomeLabels {
                source: "local".into(),
                outcome: "applied".into(),
            })
            .inc();
        metrics.set_db_connections(3, 1);
        let text = metrics.encode_classic();
        for line in [
            "# HELP accord_syncs_total Syncs by source and outcome.",
            "# TYPE accord_syncs_total counter",
            r#"accord_syncs_total{source="local",outcome="applied"} 1"#,
            "# TYPE accord_db_connections gauge",
            r#"accord_db_connections{state="idle"} 1"#,
            r#"accord_db_connections{state="active"} 2"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "`{line}` missing from\n{text}"
            );
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(metrics.encode().ends_with("# EOF\n"));
    }
}
