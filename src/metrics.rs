//! The Prometheus metrics of `accord run`.

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
    pub resource_version: Family<SourceLabel, Gauge>,
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
        let resource_version = Family::<SourceLabel, Gauge>::default();
        registry.register(
            "source_revision_resource_version",
            "The resourceVersion a Kubernetes source last applied",
            resource_version.clone(),
        );
        Metrics {
            registry,
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
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
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
