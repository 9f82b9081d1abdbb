//! The pure part of the Kubernetes source: objects to declarations (one bad
//! object rejects only itself) and a sync's result to each object's status.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::object::KubeObject;
use super::resources;
use super::status::{self, reasons, AppliesAs, Outcome};
use crate::model::parse::parse_file;
use crate::model::{Declaration, DesiredState, Diagnostic, Key, Kind, Limits, DEFAULT_APP};
use crate::plan::{Action, Change, Plan};
use crate::policy::DriftPolicy;
use crate::source::Declared;

/// Turns objects into declarations with the same parser as files: each is
/// rendered as the typed manifest it is and parsed alone, so an invalid
/// object is rejected without stopping the others. Of objects declaring the
/// same key, the oldest is taken and the others rejected.
pub fn declare(objects: &[KubeObject], limits: Limits) -> Declared {
    let mut order: Vec<&KubeObject> = objects.iter().collect();
    order.sort_by(|a, b| {
        (a.created, &a.namespace, &a.name, a.kind).cmp(&(b.created, &b.namespace, &b.name, b.kind))
    });
    let mut desired = DesiredState::default();
    let mut rejected = Vec::new();
    for object in order {
        let file: Arc<str> = Arc::from(object.id());
        let mut spec = object.spec.clone();
        if let (Value::Object(fields), Some(app)) = (&mut spec, &object.namespace_app) {
            if !fields.contains_key("app") && !fields.contains_key("appHost") {
                fields.insert("app".into(), Value::String(app.to_string()));
            }
        }
        let manifest = serde_json::json!({
            "apiVersion": format!("{}/{}", resources::GROUP, resources::VERSION),
            "kind": object.kind.as_str(),
            "metadata": {"name": object.name},
            "spec": spec,
        });
        let text = crate::model::render::to_yaml(&manifest);
        let (declarations, errors) = parse_file(&file, text.as_bytes(), limits);
        if !errors.is_empty() {
            rejected.extend(errors);
            continue;
        }
        for declaration in declarations {
            let key = declaration.object.key();
            if let Some(first) = desired.objects.get(&key) {
                rejected.push(Diagnostic::new(
                    &file,
                    declaration.origin.mark,
                    format!(
                        "{} `{}` in app `{}` is already declared by {}; rename one of them",
                        key.kind, key.id, key.app, first.origin.file
                    ),
                ));
            } else {
                desired.objects.insert(key, declaration);
            }
        }
    }
    Declared {
        desired: Arc::new(desired),
        rejected,
    }
}

/// Keeps what a rejected object applied before: a delete of a key last
/// declared by an object that is now invalid is dropped from the plan, so a
/// bad edit leaves the previous grant in place instead of revoking it.
/// Returns the objects whose previous version was kept.
pub fn hold_rejected(plan: &mut Plan, declared: &Declared) -> HashSet<Arc<str>> {
    let rejected: HashSet<&str> = declared.rejected.iter().map(|d| &*d.file).collect();
    let mut held = HashSet::new();
    plan.changes.retain(|change| {
        let file = change
            .declared_in
            .as_ref()
            .filter(|f| rejected.contains(&***f));
        match (change.action, file) {
            (Action::Delete, Some(file)) => {
                held.insert(file.clone());
                false
            }
            _ => true,
        }
    });
    held
}

/// How a sync ended, as the objects' statuses report it.
pub enum SyncResult<'a> {
    Applied(&'a Plan),
    /// The deletion guard refused the plan.
    Refused(&'a Plan, String),
    /// The database could not be read or written; `plan` when it got that far.
    Failed(Option<&'a Plan>, String),
}

/// What each object's status should say after a sync, in object order.
pub fn outcomes(
    objects: &[KubeObject],
    declared: &Declared,
    held: &HashSet<Arc<str>>,
    result: &SyncResult<'_>,
    drift: DriftPolicy,
) -> Vec<Outcome> {
    let keys: HashMap<&str, (&Key, &Declaration)> = declared
        .desired
        .objects
        .iter()
        .map(|(key, d)| (&*d.origin.file, (key, d)))
        .collect();
    let rejections: HashMap<&str, &Diagnostic> = declared
        .rejected
        .iter()
        .rev()
        .map(|d| (&*d.file, d))
        .collect();
    let plan = match result {
        SyncResult::Applied(plan) | SyncResult::Refused(plan, _) => Some(*plan),
        SyncResult::Failed(plan, _) => *plan,
    };
    let changes: HashMap<&Key, &Change> = plan
        .map(|p| p.changes.iter().map(|c| (&c.key, c)).collect())
        .unwrap_or_default();
    let mut outcomes: Vec<Outcome> = objects
        .iter()
        .map(|object| {
            let id = object.id();
            if let Some(error) = rejections.get(id.as_str()) {
                let database = if held.contains(id.as_str()) {
                    "not applied: the version applied before stays in the database"
                } else {
                    "not applied: this generation is invalid (see Synced)"
                };
                return Outcome::rejected(reasons::INVALID, error.message.clone(), database);
            }
            let Some((key, _)) = keys.get(id.as_str()) else {
                return Outcome::rejected(
                    reasons::INVALID,
                    "not declared".into(),
                    "not applied: this generation is invalid (see Synced)",
                );
            };
            let change = changes.get(key).copied();
            let pending = change.is_some_and(|c| {
                matches!(c.action, Action::Create | Action::Update | Action::Drift)
            });
            // A conflict or suspension is what the object should show, whether
            // or not the rest of the sync went through.
            let held_back = change.is_some_and(|c| {
                matches!(c.action, Action::Conflict | Action::Suspended)
            });
            let already_applied = object.status.as_ref().is_some_and(|s| {
                s.observed_generation == object.generation
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == status::READY && c.reason == reasons::APPLIED)
            });
            match result {
                _ if held_back => {}
                SyncResult::Failed(_, message) if pending || !already_applied => {
                    return Outcome::not_applied(
                        reasons::DATABASE_ERROR,
                        format!("not applied: {message}; the database keeps its previous state and accord retries"),
                    )
                }
                SyncResult::Refused(_, message) if pending || !already_applied => {
                    return Outcome::not_applied(reasons::DELETION_REFUSED, message.clone())
                }
                SyncResult::Failed(..) | SyncResult::Refused(..) => return Outcome::applied(),
                SyncResult::Applied(_) => {}
            }
            let Some(change) = change else {
                return Outcome::applied();
            };
            match change.action {
                Action::Create | Action::Update | Action::Delete => Outcome::applied(),
                Action::Drift => match drift {
                    DriftPolicy::Correct => Outcome::drift_corrected(&change.note),
                    DriftPolicy::Report => Outcome::not_applied(
                        reasons::DRIFTED,
                        format!(
                            "the row was {} and the drift policy is report, so accord leaves it; changed: {}",
                            change.note,
                            change.fields.iter().map(|f| f.field.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                },
                Action::Conflict => Outcome::rejected(
                    reasons::CONFLICT,
                    format!("conflict: {}", change.note),
                    "not applied: the database holds another owner's row, or none (see Synced)",
                ),
                Action::Suspended => Outcome::suspended(&change.note),
            }
        })
        .collect();
    for (object, outcome) in objects.iter().zip(&mut outcomes) {
        outcome.applies_as = Some(match keys.get(object.id().as_str()) {
            Some((key, _)) => AppliesAs {
                app: key.app.to_string(),
                id: key.id.to_string(),
            },
            None => named(object),
        });
    }
    outcomes
}

/// The app and id an object names, resolved as [`declare`] and the parser
/// resolve them: for an object they rejected, which has no key, so that
/// `kubectl get` still shows what it would apply as.
fn named(object: &KubeObject) -> AppliesAs {
    let field = |name: &str| object.spec.get(name).and_then(Value::as_str);
    let app = field("app")
        .or_else(|| field("appHost"))
        .or(object.namespace_app.as_deref())
        .unwrap_or(DEFAULT_APP);
    let id = match object.kind {
        Kind::Organization => field("slug"),
        Kind::Permit | Kind::Enrollment => field("id"),
    };
    AppliesAs {
        app: app.to_owned(),
        id: id.unwrap_or(&object.name).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{LiveRow, LiveState, PlanOptions};
    use crate::source::kubernetes::object::Watched;

    fn permit(name: &str) -> KubeObject {
        let watched = Watched {
            kind: Kind::Permit,
            namespace: "team-a".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            generation: Some(1),
            created: Some(0),
            spec: serde_json::json!({"permissionId": "svc:act", "slugs": ["caller"]}),
            status: None,
            resource_version: 1,
            field_manager: None,
            reconcile_requested: None,
        };
        KubeObject::new(Arc::new(watched), None)
    }

    #[test]
    fn an_object_with_a_control_character_is_rejected_alone() {
        let mut bad = permit("bad");
        bad.kind = Kind::Organization;
        bad.spec = serde_json::json!({"name": "Acme\u{0}Corp"});
        let objects = vec![permit("good"), bad];

        let declared = declare(&objects, Limits::default());

        assert_eq!(
            declared.desired.len(),
            1,
            "the good object is still declared"
        );
        assert_eq!(declared.rejected.len(), 1);
        let rejection = declared.rejected[0].to_string();
        assert!(
            rejection.starts_with("team-a/Organization/bad:") && rejection.contains("invalid name"),
            "{rejection}"
        );
        assert!(!rejection.chars().any(char::is_control), "{rejection:?}");
    }

    #[test]
    fn a_conflicting_object_shows_the_conflict_even_when_the_sync_is_refused() {
        let objects = vec![permit("pay"), permit("new")];
        let declared = declare(&objects, Limits::default());
        let (key, declaration) = declared
            .desired
            .objects
            .iter()
            .find(|(k, _)| k.id == "pay")
            .expect("declared");
        let mut live = LiveState::default();
        live.rows.insert(
            key.clone(),
            LiveRow::new(
                (*declaration.object).clone(),
                Some("git".into()),
                None,
                true,
            ),
        );
        let plan = crate::plan::plan(
            &declared.desired,
            &live,
            "kubernetes",
            PlanOptions::default(),
        );
        let refused = SyncResult::Refused(&plan, "too many deletes".into());

        let outcomes = outcomes(
            &objects,
            &declared,
            &HashSet::new(),
            &refused,
            DriftPolicy::Correct,
        );

        assert_eq!(
            outcomes[0].synced.reason,
            reasons::CONFLICT,
            "`pay` is in conflict either way"
        );
        assert_eq!(
            outcomes[1].ready.reason,
            reasons::DELETION_REFUSED,
            "`new` was not applied"
        );
        assert_eq!(
            outcomes[1].synced.reason,
            reasons::ACCEPTED,
            "though nothing is wrong with `new` itself"
        );
    }

    #[test]
    fn each_object_shows_the_app_and_id_it_applies_as_even_when_rejected() {
        let mut inherited = permit("inherited");
        inherited.namespace_app = Some("team-a.example.com".into());
        let mut own = permit("own");
        own.spec["id"] = serde_json::json!("own-id");
        own.spec["app"] = serde_json::json!("own.example.com");
        let mut rejected = permit("rejected");
        rejected.namespace_app = Some("team-a.example.com".into());
        rejected.spec["slugs"] = serde_json::json!(["not a slug"]);
        let objects = vec![inherited, own, permit("plain"), rejected];
        let declared = declare(&objects, Limits::default());
        assert_eq!(declared.rejected.len(), 1, "{:?}", declared.rejected);
        let plan = Plan::default();

        let outcomes = outcomes(
            &objects,
            &declared,
            &HashSet::new(),
            &SyncResult::Applied(&plan),
            DriftPolicy::Correct,
        );

        let shown: Vec<(&str, &str)> = outcomes
            .iter()
            .map(|o| {
                let name = o.applies_as.as_ref().expect("every object is named");
                (name.app.as_str(), name.id.as_str())
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("team-a.example.com", "inherited"),
                ("own.example.com", "own-id"),
                ("unnamed", "plain"),
                ("team-a.example.com", "rejected"),
            ]
        );
    }
}
