//! What a plan writes, sorted out once for both backends, and its audit
//! rows rendered as they are written.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::{ApplyRequest, AuditAction};
use crate::model::{Key, Kind, Object};
use crate::plan::{Action, Change};
use crate::policy::DriftPolicy;

/// One audit row. Rendered while the rows before it are being written (the
/// database works on one chunk while accord renders the next), rather than
/// all before the transaction, which left the database idle meanwhile.
pub(super) struct AuditRow<'a> {
    pub(super) action: AuditAction,
    pub(super) change: &'a Change,
    pub(super) before: Option<String>,
    pub(super) after: Option<String>,
    pub(super) diff: String,
}

impl<'a> AuditRow<'a> {
    /// The file's author for declared changes, the change's author for
    /// deletes, and whoever runs accord for drift.
    pub(super) fn actor<'r>(&self, request: &'r ApplyRequest<'_>) -> &'r str
    where
        'a: 'r,
    {
        let author = self
            .change
            .declared_in
            .as_ref()
            .and_then(|file| request.authors.get(file));
        match self.action {
            AuditAction::Create | AuditAction::Update | AuditAction::Delete => {
                author.map_or(request.actor, String::as_str)
            }
            AuditAction::DriftCorrected | AuditAction::DriftDetected => request.actor,
        }
    }

    pub(super) fn new(action: AuditAction, change: &'a Change) -> AuditRow<'a> {
        let json = |o: Option<&Object>| o.map(|o| serde_json::to_string(o).unwrap_or_default());
        // A create's or delete's diff is every line of its one object: it
        // is made again from the object when read (`render::value_diff`),
        // not written twice (a first sync writes one per object).
        let whole = change.before.is_none() || change.after.is_none();
        AuditRow {
            action,
            change,
            before: json(change.before.as_deref()),
            after: json(change.after.as_deref()),
            diff: if whole { String::new() } else { change.diff() },
        }
    }
}

/// An object's content hash as it is stored (`Object::content_hash`),
/// kept inline: a first apply holds one for every object it writes, and a
/// `String` each was a million allocations at a million objects.
#[derive(Clone, Copy, Default)]
pub(super) struct HexHash([u8; 32]);

impl HexHash {
    fn of(object: &Object) -> HexHash {
        let mut hex = [0; 32];
        hex::encode_to_slice(object.digest(), &mut hex).expect("16 bytes are 32 hex digits");
        HexHash(hex)
    }

    pub(super) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

/// What a plan writes, sorted out once for both backends.
#[derive(Default)]
pub(super) struct Writes<'a> {
    /// Objects to insert or overwrite, with their content hashes.
    /// Objects to write with their content hashes, and whether each is new:
    /// new rows are plainly inserted (PostgreSQL: `COPY`ed), which is far
    /// cheaper than an upsert, and a racing insert fails the transaction.
    pub(super) upserts: Vec<(&'a Object, HexHash, bool)>,
    pub(super) deletes: Vec<&'a Key>,
    /// The changes whose objects are written (creates, updates, corrected drift).
    pub(super) declared: Vec<&'a Change>,
    /// Drift reported (not corrected) for the first time.
    pub(super) reported: Vec<&'a Change>,
    pub(super) audit: Vec<(AuditAction, &'a Change)>,
}

impl<'a> Writes<'a> {
    pub(super) fn sort_out(request: &ApplyRequest<'a>) -> Writes<'a> {
        let mut w = Writes::default();
        let mut audited = Vec::new();
        for change in &request.plan.changes {
            let audit_action = match (change.action, request.drift) {
                (Action::Create, _) => Some(AuditAction::Create),
                (Action::Update, _) => Some(AuditAction::Update),
                (Action::Delete, _) => Some(AuditAction::Delete),
                (Action::Drift, DriftPolicy::Correct) => Some(AuditAction::DriftCorrected),
                (Action::Drift, DriftPolicy::Report) if !change.drift_reported => {
                    Some(AuditAction::DriftDetected)
                }
                _ => None,
            };
            let Some(audit_action) = audit_action else {
                continue;
            };
            match audit_action {
                AuditAction::Delete => w.deletes.push(&change.key),
                AuditAction::DriftDetected => w.reported.push(change),
                _ => {
                    if let Some(after) = &change.after {
                        let new = change.action == Action::Create;
                        w.upserts.push((after, HexHash::default(), new));
                        w.declared.push(change);
                    }
                }
            }
            audited.push((audit_action, change));
        }
        // In the order of the log's object index, `(object_id, app, kind)`:
        // its entries are then appended instead of scattered through it,
        // which made that one index more than a third of a first apply of a
        // million objects (SQLite 24 s against 16 s without it; PostgreSQL
        // takes ascending keys on a fast path too).
        audited.sort_by(|(_, a), (_, b)| {
            (&a.key.id, &a.key.app, a.key.kind.as_str()).cmp(&(
                &b.key.id,
                &b.key.app,
                b.key.kind.as_str(),
            ))
        });
        w.audit = audited;
        let hashed: Vec<HexHash> = w
            .upserts
            .par_iter()
            .map(|(o, _, _)| HexHash::of(o))
            .collect();
        for ((_, hash, _), computed) in w.upserts.iter_mut().zip(hashed) {
            *hash = computed;
        }
        w
    }

    pub(super) fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &(&'a Object, HexHash, bool)> {
        self.upserts
            .iter()
            .filter(move |(o, _, _)| o.kind() == kind)
    }
}

/// Keys grouped by kind and app, so a delete is `app = ? AND id IN (…)`.
pub(super) fn group_keys<'a>(
    keys: impl Iterator<Item = &'a Key>,
) -> BTreeMap<(Kind, &'a str), Vec<&'a str>> {
    let mut groups: BTreeMap<(Kind, &str), Vec<&str>> = BTreeMap::new();
    for key in keys {
        groups
            .entry((key.kind, &key.app))
            .or_default()
            .push(&key.id);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::HexHash;
    use crate::model::{Object, Permit};

    #[test]
    fn an_inline_hash_is_the_stored_content_hash() {
        let permit = Object::Permit(Permit {
            id: "pay".into(),
            app: "unnamed".into(),
            permission_id: "payment-svc:process".into(),
            slugs: vec!["order-service".into()],
            roles: vec![],
        });
        assert_eq!(HexHash::of(&permit).as_str(), permit.content_hash());
    }
}
