//! The planner: from what a source declares and what the database holds to the
//! changes that make them agree, and the guard that refuses mass deletion.

// Only the builders: the planner is pure, so this test needs no database.
mod common {
    pub mod builders;
}

use accord::model::{DesiredState, Key, Kind, Object};
use accord::plan::{guard, plan, Action, Change, LiveState, Plan, PlanOptions, Summary, DELETED};
use serde_json::json;

use common::builders::{
    declared, desired, desired_objects, enrollment, hashed, key, ledger_on_rows, live, org, origin,
    permit,
};

const GIT: &str = "git";
const KUBERNETES: &str = "kubernetes";

fn plan_git(desired: &DesiredState, live: &LiveState) -> Plan {
    plan_both_ways(desired, live, PlanOptions::default())
}

fn without_prune(desired: &DesiredState, live: &LiveState) -> Plan {
    plan_both_ways(desired, live, PlanOptions { prune: false })
}

/// Plans `live` as built (every ledger entry in `LiveState::managed`), again
/// with the entries of keys that have rows carried by those rows, as a store
/// loads them, and again with each declaration's hash taken, as a parse for a
/// plan leaves them; all must give the same plan.
fn plan_both_ways(desired: &DesiredState, live: &LiveState, options: PlanOptions) -> Plan {
    let apart = plan(desired, live, GIT, options);
    let on_rows = ledger_on_rows(live);
    for other in [
        plan(desired, &on_rows, GIT, options),
        plan(&hashed(desired), &on_rows, GIT, options),
    ] {
        assert_eq!(apart.changes, other.changes, "changes");
        assert_eq!(apart.forget, other.forget, "forget");
        assert_eq!(
            (apart.managed, apart.managed_by_kind, apart.claims_changed),
            (other.managed, other.managed_by_kind, other.claims_changed)
        );
    }
    apart
}

/// The plan's only change; fails when there is not exactly one.
fn only_change(plan: &Plan) -> &Change {
    assert_eq!(
        plan.changes.len(),
        1,
        "expected exactly one change, got {:#?}",
        plan.changes
    );
    &plan.changes[0]
}

fn actions(plan: &Plan) -> Vec<(Action, String)> {
    plan.changes
        .iter()
        .map(|c| (c.action, c.key.id.to_string()))
        .collect()
}

fn field_names(change: &Change) -> Vec<&str> {
    change.fields.iter().map(|f| f.field.as_str()).collect()
}

/// `n` permits `p000`, `p001`, … each as `git` wrote it.
fn synced_permits(n: usize) -> (Vec<Object>, LiveState) {
    let objects: Vec<Object> = (0..n)
        .map(|i| permit(&format!("p{i:03}")).build())
        .collect();
    let live = objects
        .iter()
        .cloned()
        .fold(live(), |live, object| live.synced(GIT, object))
        .build();
    (objects, live)
}

// ---- nothing to do -------------------------------------------------------------

#[test]
fn nothing_changed_gives_an_empty_plan() {
    let objects = [
        org("acme")
            .name("Acme")
            .member("ann@acme.com", "admin")
            .build(),
        permit("pay").roles(["pay-svc:processor"]).build(),
        enrollment("ann").contact("ann@acme.com").build(),
    ];
    let live = objects
        .iter()
        .cloned()
        .fold(live(), |live, object| live.synced(GIT, object))
        .build();

    let plan = plan_git(&desired_objects(objects), &live);

    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
    assert!(plan.forget.is_empty());
    assert!(!plan.is_pending());
    assert_eq!(plan.summary(), Summary::default());
    assert_eq!(plan.managed, 3);
}

#[test]
fn empty_source_against_empty_database_gives_an_empty_plan() {
    let plan = plan_git(&desired_objects([]), &live().build());

    assert!(plan.changes.is_empty());
    assert!(plan.forget.is_empty());
    assert_eq!(plan.managed, 0);
    assert!(!plan.is_pending());
}

// ---- create --------------------------------------------------------------------

#[test]
fn declared_object_without_a_row_is_created() {
    let pay = permit("pay").roles(["pay-svc:processor"]).build();
    let desired = desired([declared(pay.clone()).at("permits/pay.yaml", 7)]);

    let plan = plan_git(&desired, &live().build());

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Create);
    assert_eq!(change.key, key(Kind::Permit, "pay"));
    assert_eq!(change.before, None);
    assert_eq!(change.after.as_deref(), Some(&pay));
    assert_eq!(change.origin, Some(origin("permits/pay.yaml", 7)));
    assert!(plan.is_pending());
    assert_eq!(plan.managed, 0);
}

#[test]
fn same_id_in_another_app_is_another_object() {
    let in_default_app = permit("pay").build();
    let in_production = permit("pay").app("production.acme.com").build();
    let live = live().synced(GIT, in_default_app.clone()).build();

    let plan = plan_git(&desired_objects([in_production.clone()]), &live);

    assert_eq!(plan.changes.len(), 2, "{:#?}", plan.changes);
    let create = plan
        .changes
        .iter()
        .find(|c| c.action == Action::Create)
        .unwrap();
    assert_eq!(create.key, in_production.key());
    let delete = plan
        .changes
        .iter()
        .find(|c| c.action == Action::Delete)
        .unwrap();
    assert_eq!(delete.key, in_default_app.key());
}

// ---- rows loaded without their content -------------------------------------------

#[test]
fn an_unread_row_is_compared_by_its_applied_hash() {
    let pay = permit("pay").roles(["pay-svc:processor"]).build();
    let live = live().unread(GIT, &pay).build();

    let plan = plan_git(&desired_objects([pay.clone()]), &live);

    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
    assert!(plan.unread_rows(&live).is_empty());
    assert_eq!(plan.managed, 1);
}

#[test]
fn changes_to_unread_rows_name_the_rows_to_read_and_then_show_them() {
    let pay = permit("pay").roles(["pay-svc:processor"]).build();
    let old = permit("old").build();
    let kept = permit("kept").build();
    let changed = permit("pay").roles(["pay-svc:auditor"]).build();
    let desired = desired_objects([changed.clone(), kept.clone()]);
    let unread = live()
        .unread(GIT, &pay)
        .unread(GIT, &old)
        .unread(GIT, &kept)
        .build();

    let plan = plan_git(&desired, &unread);

    assert_eq!(
        actions(&plan),
        vec![
            (Action::Delete, "old".into()),
            (Action::Update, "pay".into())
        ]
    );
    assert!(plan.changes.iter().all(|c| c.before.is_none()));
    assert_eq!(
        plan.unread_rows(&unread),
        vec![key(Kind::Permit, "old"), key(Kind::Permit, "pay")],
        "only the rows a change shows"
    );
    // Read whole, as the store then reads them: the same plan, with what
    // each row was.
    let read = live()
        .synced(GIT, pay.clone())
        .synced(GIT, old.clone())
        .unread(GIT, &kept)
        .build();
    let plan = plan_git(&desired, &read);
    assert!(plan.unread_rows(&read).is_empty());
    assert_eq!(plan.changes[0].before.as_deref(), Some(&old));
    assert_eq!(plan.changes[1].before.as_deref(), Some(&pay));
    assert_eq!(plan.changes[1].after.as_deref(), Some(&changed));
}

// ---- update --------------------------------------------------------------------

#[test]
fn new_declared_value_for_an_untouched_managed_row_is_an_update() {
    let before = permit("pay").roles(["pay-svc:processor"]).build();
    let after = permit("pay")
        .roles(["pay-svc:processor", "pay-svc:auditor"])
        .build();
    let live = live().synced(GIT, before.clone()).build();
    let desired = desired([declared(after.clone()).at("permits/pay.yaml", 3)]);

    let plan = plan_git(&desired, &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.before.as_deref(), Some(&before));
    assert_eq!(change.after.as_deref(), Some(&after));
    assert_eq!(change.origin, Some(origin("permits/pay.yaml", 3)));
    assert!(plan.is_pending());
}

#[test]
fn update_lists_exactly_the_changed_top_level_fields() {
    let before = permit("pay")
        .permission("pay-svc:read")
        .slugs(["orders"])
        .roles(["pay-svc:processor"])
        .build();
    let after = permit("pay")
        .permission("pay-svc:write")
        .slugs(["orders"])
        .roles(["pay-svc:auditor", "pay-svc:processor"])
        .build();
    let live = live().synced(GIT, before).build();

    let plan = plan_git(&desired_objects([after]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(field_names(change), ["permissionId", "roles"]);
    assert_eq!(change.fields[0].before, json!("pay-svc:read"));
    assert_eq!(change.fields[0].after, json!("pay-svc:write"));
    assert_eq!(change.fields[1].before, json!(["pay-svc:processor"]));
    assert_eq!(
        change.fields[1].after,
        json!(["pay-svc:auditor", "pay-svc:processor"])
    );
}

#[test]
fn update_of_one_organization_field_lists_only_that_field() {
    let before = org("acme")
        .name("Acme")
        .models(["gpt-4o"])
        .member("ann@acme.com", "admin")
        .build();
    let after = org("acme")
        .name("Acme Inc.")
        .models(["gpt-4o"])
        .member("ann@acme.com", "admin")
        .build();
    let live = live().synced(GIT, before).build();

    let plan = plan_git(&desired_objects([after]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(field_names(change), ["name"]);
    assert_eq!(change.fields[0].before, json!("Acme"));
    assert_eq!(change.fields[0].after, json!("Acme Inc."));
}

#[test]
fn field_added_or_removed_shows_null_on_the_missing_side() {
    let before = org("acme").models(["gpt-4o"]).build();
    let after = org("acme").budget(5000).build();
    let live = live().synced(GIT, before).build();

    let plan = plan_git(&desired_objects([after]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(field_names(change), ["allowedModels", "budget"]);
    assert_eq!(change.fields[0].before, json!(["gpt-4o"]));
    assert_eq!(change.fields[0].after, json!(null));
    assert_eq!(change.fields[1].before, json!(null));
    assert_eq!(change.fields[1].after, json!({ "monthlyTokens": 5000 }));
}

#[test]
fn enrollment_moved_from_user_to_contact_lists_both_subject_fields() {
    let before = enrollment("e1").user("alice").build();
    let after = enrollment("e1").contact("*@acme.com").build();
    let live = live().synced(GIT, before).build();

    let plan = plan_git(&desired_objects([after]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(field_names(change), ["contactId", "userId"]);
}

// ---- lists are sets ------------------------------------------------------------

#[test]
fn objects_normalized_from_differently_ordered_lists_compare_equal() {
    let written_one_way = permit("pay")
        .slugs(["orders", "billing"])
        .roles(["b:reader", "a:admin", "b:reader"])
        .written();
    let written_another_way = permit("pay")
        .slugs(["billing", "orders", "orders"])
        .roles(["a:admin", "b:reader"])
        .written();
    assert_ne!(written_one_way, written_another_way);
    assert_ne!(
        written_one_way.content_hash(),
        written_another_way.content_hash()
    );

    let (mut one, mut another) = (written_one_way, written_another_way);
    one.normalize();
    another.normalize();

    assert_eq!(one, another);
    assert_eq!(one.content_hash(), another.content_hash());
}

/// The hashes accord recorded in `applied_hash` by earlier releases: if the
/// way an object is hashed changes, every managed row in every database
/// reads as edited by hand after an upgrade.
#[test]
fn content_hashes_stay_what_earlier_releases_recorded() {
    let objects = [
        (
            permit("pay")
                .app("shop")
                .permission("payments:write")
                .slugs(["orders", "billing"])
                .roles(["admin"])
                .build(),
            "2d1b25320dd2c18d48b42a2d1d3d9894",
        ),
        (
            enrollment("ann").role("admin").user("u-1").build(),
            "6d04dd60cbd44437e46c0da7319925aa",
        ),
        (
            enrollment("bob")
                .app("shop")
                .contact("bob@acme.com")
                .build(),
            "ca6da475e88001b9052a33f9bb147f18",
        ),
        (
            org("acme")
                .name("Acme")
                .budget(5_000)
                .models(["o3", "gpt-4o"])
                .member("ann@acme.com", "admin")
                .build(),
            "2c30b3f4aea2dd43b96cce71f0b3b6eb",
        ),
        (org("empty").build(), "0d090049df582c3ce492b4c8d5cdb08b"),
    ];
    let hashes: Vec<String> = objects.iter().map(|(o, _)| o.content_hash()).collect();
    let recorded: Vec<&str> = objects.iter().map(|(_, hash)| *hash).collect();
    assert_eq!(hashes, recorded);
}

#[test]
fn organizations_normalized_from_differently_ordered_members_compare_equal() {
    let mut one = org("acme")
        .models(["o3", "gpt-4o"])
        .member("bob@acme.com", "user")
        .member("ann@acme.com", "admin")
        .written();
    let mut another = org("acme")
        .models(["gpt-4o", "o3", "gpt-4o"])
        .member("ann@acme.com", "admin")
        .member("bob@acme.com", "user")
        .member("ann@acme.com", "admin")
        .written();
    assert_ne!(one, another);

    one.normalize();
    another.normalize();

    assert_eq!(one, another);
    assert_eq!(one.content_hash(), another.content_hash());
}

#[test]
fn list_order_and_duplicates_never_produce_a_change() {
    let applied = permit("pay")
        .slugs(["orders", "billing"])
        .roles(["b:reader", "a:admin"])
        .build();
    let reordered = permit("pay")
        .slugs(["billing", "orders", "billing"])
        .roles(["a:admin", "b:reader", "a:admin"])
        .build();
    let acme_applied = org("acme")
        .member("bob@acme.com", "user")
        .member("ann@acme.com", "admin")
        .build();
    let acme_reordered = org("acme")
        .member("ann@acme.com", "admin")
        .member("bob@acme.com", "user")
        .member("bob@acme.com", "user")
        .build();
    let live = live()
        .synced(GIT, applied)
        .synced(GIT, acme_applied)
        .build();

    let plan = plan_git(&desired_objects([reordered, acme_reordered]), &live);

    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
    assert!(!plan.is_pending());
}

// ---- delete (prune) ------------------------------------------------------------

#[test]
fn managed_row_no_longer_declared_is_deleted() {
    let kept = permit("kept").build();
    let dropped = permit("dropped").build();
    let live = live()
        .synced(GIT, kept.clone())
        .synced(GIT, dropped.clone())
        .build();

    let plan = plan_git(&desired_objects([kept]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Delete);
    assert_eq!(change.key, dropped.key());
    assert_eq!(change.before.as_deref(), Some(&dropped));
    assert_eq!(change.after, None);
    assert!(change.fields.is_empty());
    assert!(plan.forget.is_empty());
    assert_eq!(plan.managed, 2);
}

#[test]
fn changes_name_the_file_that_declares_them() {
    let dropped = permit("dropped").build();
    let created = permit("created").build();
    let live = live().synced(GIT, dropped.clone()).build();
    let desired = desired([declared(created).at("permits/new.yaml", 1)]);

    let plan = plan_git(&desired, &live);

    assert_eq!(
        plan.changes
            .iter()
            .map(|c| (c.action, c.declared_in.as_deref()))
            .collect::<Vec<_>>(),
        // A delete's file is the ledger's, which `store::explain` reads.
        [
            (Action::Create, Some("permits/new.yaml")),
            (Action::Delete, None)
        ]
    );
}

#[test]
fn row_owned_by_the_source_is_pruned_even_without_a_ledger_entry() {
    let dropped = permit("dropped").build();
    let live = live().row(dropped.clone()).owned_by(GIT).applied().build();

    let plan = plan_git(&desired_objects([]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Delete);
    assert_eq!(change.key, dropped.key());
}

#[test]
fn prune_off_leaves_undeclared_managed_rows_in_place() {
    let kept = permit("kept").build();
    let dropped = permit("dropped").build();
    let live = live()
        .synced(GIT, kept.clone())
        .synced(GIT, dropped)
        .build();

    let pruning = plan_git(&desired_objects([kept.clone()]), &live);
    let not_pruning = without_prune(&desired_objects([kept]), &live);

    assert_eq!(pruning.count(Action::Delete), 1);
    assert!(not_pruning.changes.is_empty(), "{:#?}", not_pruning.changes);
    assert!(
        not_pruning.forget.is_empty(),
        "the row still exists, so the source keeps managing it"
    );
    assert_eq!(not_pruning.managed, 2);
}

#[test]
fn prune_off_still_creates_and_updates() {
    let before = permit("pay").build();
    let after = permit("pay").roles(["pay-svc:processor"]).build();
    let new = permit("new").build();
    let live = live().synced(GIT, before).build();

    let plan = without_prune(&desired_objects([after, new]), &live);

    assert_eq!(
        actions(&plan),
        [
            (Action::Create, "new".to_owned()),
            (Action::Update, "pay".to_owned())
        ]
    );
}

// ---- rows this source does not manage ------------------------------------------

#[test]
fn undeclared_unmanaged_row_produces_nothing() {
    let live = live()
        .row(permit("by-api").build())
        .row(org("made-by-hand").build())
        .build();

    let plan = plan_git(&desired_objects([]), &live);

    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
    assert!(plan.forget.is_empty());
    assert_eq!(plan.managed, 0);
}

#[test]
fn undeclared_row_of_another_source_is_never_deleted() {
    let theirs = permit("theirs").build();
    let live = live().row(theirs).owned_by(KUBERNETES).applied().build();

    let plan = plan_git(&desired_objects([]), &live);

    assert!(plan.changes.is_empty(), "{:#?}", plan.changes);
    assert!(plan.forget.is_empty());
    assert_eq!(plan.managed, 0);
}

#[test]
fn declared_key_whose_row_nobody_manages_is_a_conflict() {
    let by_api = permit("pay").roles(["pay-svc:processor"]).build();
    let declared_value = permit("pay").roles(["pay-svc:auditor"]).build();
    let live = live().row(by_api.clone()).build();
    let desired = desired([declared(declared_value.clone()).at("permits/pay.yaml", 2)]);

    let plan = plan_git(&desired, &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Conflict);
    assert_eq!(change.before.as_deref(), Some(&by_api));
    assert_eq!(change.after.as_deref(), Some(&declared_value));
    assert!(
        change.note.contains("no source manages"),
        "note: {}",
        change.note
    );
    assert_eq!(change.origin, Some(origin("permits/pay.yaml", 2)));
    assert!(plan.is_pending());
}

#[test]
fn unmanaged_row_with_exactly_the_declared_content_is_still_a_conflict() {
    let same = permit("pay").build();
    let live = live().row(same.clone()).build();

    let plan = plan_git(&desired_objects([same]), &live);

    assert_eq!(only_change(&plan).action, Action::Conflict);
}

#[test]
fn declared_key_owned_by_another_source_is_a_conflict_naming_it() {
    let theirs = permit("pay").roles(["pay-svc:processor"]).build();
    let ours = permit("pay").roles(["pay-svc:auditor"]).build();
    let live = live()
        .row(theirs.clone())
        .owned_by(KUBERNETES)
        .applied()
        .build();

    let plan = plan_git(&desired_objects([ours.clone()]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Conflict);
    assert_eq!(change.before.as_deref(), Some(&theirs));
    assert_eq!(change.after.as_deref(), Some(&ours));
    assert!(change.note.contains(KUBERNETES), "note: {}", change.note);
}

#[test]
fn conflict_over_another_sources_row_is_a_claim_to_record_once() {
    let theirs = permit("pay").roles(["pay-svc:processor"]).build();
    let ours = permit("pay").roles(["pay-svc:auditor"]).build();
    let desired = desired([declared(ours).at("perms/pay.yaml", 3)]);
    let unrecorded = live()
        .row(theirs.clone())
        .owned_by(KUBERNETES)
        .applied()
        .build();

    let plan = plan_git(&desired, &unrecorded);
    assert_eq!(only_change(&plan).owner.as_deref(), Some(KUBERNETES));
    assert!(plan.claims_changed, "a new claim must be written");
    assert!(plan.is_pending());

    let recorded = live()
        .row(theirs)
        .owned_by(KUBERNETES)
        .applied()
        .claimed_by(key(Kind::Permit, "pay"), GIT, "perms/pay.yaml")
        .build();
    assert!(
        !plan_git(&desired, &recorded).claims_changed,
        "the same claim is not written again"
    );
}

#[test]
fn claim_no_longer_made_is_dropped() {
    let (objects, synced) = synced_permits(1);
    let stale = live()
        .synced(GIT, objects[0].clone())
        .claimed_by(key(Kind::Permit, "elsewhere"), GIT, "old.yaml")
        .build();
    assert!(!plan_git(&desired_objects(objects.clone()), &synced).claims_changed);
    assert!(plan_git(&desired_objects(objects), &stale).claims_changed);
}

#[test]
fn owned_key_another_source_also_declares_is_a_conflict_on_the_owners_side_too() {
    let applied = permit("pay").roles(["pay-svc:processor"]).build();
    let changed = permit("pay").roles(["pay-svc:auditor"]).build();
    let live = live()
        .synced(GIT, applied.clone())
        .claimed_by(key(Kind::Permit, "pay"), KUBERNETES, "team-a/Permit/pay")
        .build();

    let plan = plan_git(&desired_objects([changed]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Conflict, "held, not updated");
    assert_eq!(change.owner, None, "the owner makes no claim");
    assert!(
        change.note.contains(KUBERNETES) && change.note.contains("team-a/Permit/pay"),
        "note: {}",
        change.note
    );
    assert!(!plan.claims_changed);
}

#[test]
fn owner_still_prunes_a_contested_key_it_stops_declaring() {
    let applied = permit("pay").build();
    let keep = permit("keep").build();
    let live = live()
        .synced(GIT, applied)
        .synced(GIT, keep.clone())
        .synced(GIT, permit("keep2").build())
        .synced(GIT, permit("keep3").build())
        .synced(GIT, permit("keep4").build())
        .claimed_by(key(Kind::Permit, "pay"), KUBERNETES, "team-a/Permit/pay")
        .build();
    let desired = desired_objects([
        keep,
        permit("keep2").build(),
        permit("keep3").build(),
        permit("keep4").build(),
    ]);

    let plan = plan_git(&desired, &live);

    assert_eq!(actions(&plan), vec![(Action::Delete, "pay".to_owned())]);
}

#[test]
fn row_of_another_source_with_the_same_content_is_still_a_conflict() {
    let same = permit("pay").build();
    let live = live()
        .row(same.clone())
        .owned_by(KUBERNETES)
        .applied()
        .build();

    let plan = plan_git(&desired_objects([same]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Conflict);
    assert!(change.note.contains(KUBERNETES), "note: {}", change.note);
}

// ---- drift ---------------------------------------------------------------------

#[test]
fn managed_row_edited_by_hand_is_drift() {
    let applied = permit("pay").roles(["pay-svc:processor"]).build();
    let edited = permit("pay")
        .roles(["pay-svc:processor", "*:admin"])
        .build();
    let live = live()
        .row(edited.clone())
        .owned_by(GIT)
        .applied_as(&applied)
        .in_ledger()
        .build();
    let desired = desired([declared(applied.clone()).at("permits/pay.yaml", 4)]);

    let plan = plan_git(&desired, &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert_eq!(change.before.as_deref(), Some(&edited));
    assert_eq!(change.after.as_deref(), Some(&applied));
    assert_eq!(field_names(change), ["roles"]);
    assert_eq!(change.drift_hash, Some(edited.content_hash()));
    assert!(!change.drift_reported);
    assert!(change.note.contains("by hand"), "note: {}", change.note);
    assert_eq!(change.origin, Some(origin("permits/pay.yaml", 4)));
    assert!(plan.is_pending());
}

#[test]
fn managed_row_deleted_by_hand_is_drift_with_the_deleted_hash() {
    let applied = org("acme").name("Acme").build();
    let live = live().ledger(applied.key()).build();

    let plan = plan_git(&desired_objects([applied.clone()]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert_eq!(change.key, applied.key());
    assert_eq!(change.before, None);
    assert_eq!(change.after.as_deref(), Some(&applied));
    assert_eq!(change.drift_hash.as_deref(), Some(DELETED));
    assert!(!change.drift_reported);
    assert!(plan.forget.is_empty(), "a declared key is not forgotten");
    assert_eq!(plan.managed, 1);
}

#[test]
fn drift_already_reported_at_the_current_live_hash_is_marked_reported() {
    let applied = permit("pay").build();
    let edited = permit("pay").roles(["*:admin"]).build();
    let live = live()
        .row(edited.clone())
        .owned_by(GIT)
        .applied_as(&applied)
        .reported(edited.key(), &edited.content_hash())
        .build();

    let plan = plan_git(&desired_objects([applied]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert!(change.drift_reported);
    assert_eq!(change.drift_hash, Some(edited.content_hash()));
}

#[test]
fn drift_reported_at_an_earlier_edit_is_not_marked_reported() {
    let applied = permit("pay").build();
    let first_edit = permit("pay").roles(["*:admin"]).build();
    let second_edit = permit("pay").roles(["*:admin", "*:owner"]).build();
    let live = live()
        .row(second_edit.clone())
        .owned_by(GIT)
        .applied_as(&applied)
        .reported(second_edit.key(), &first_edit.content_hash())
        .build();

    let plan = plan_git(&desired_objects([applied]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert!(!change.drift_reported);
    assert_eq!(change.drift_hash, Some(second_edit.content_hash()));
}

#[test]
fn deletion_by_hand_already_reported_is_marked_reported() {
    let applied = permit("pay").build();
    let reported_deleted = live().reported(applied.key(), DELETED).build();
    let reported_edited = live()
        .reported(
            applied.key(),
            &permit("pay").roles(["*:admin"]).build().content_hash(),
        )
        .build();

    let already = plan_git(&desired_objects([applied.clone()]), &reported_deleted);
    let after_an_edit = plan_git(&desired_objects([applied]), &reported_edited);

    let already = only_change(&already);
    assert_eq!(already.action, Action::Drift);
    assert!(already.drift_reported);
    let after_an_edit = only_change(&after_an_edit);
    assert_eq!(after_an_edit.action, Action::Drift);
    assert!(
        !after_an_edit.drift_reported,
        "the edit was reported, the deletion was not"
    );
}

#[test]
fn hand_edit_plus_a_new_declared_value_is_still_drift() {
    let applied = permit("pay").roles(["pay-svc:processor"]).build();
    let edited = permit("pay").roles(["*:admin"]).build();
    let new_declared = permit("pay").roles(["pay-svc:auditor"]).build();
    let live = live()
        .row(edited.clone())
        .owned_by(GIT)
        .applied_as(&applied)
        .in_ledger()
        .build();

    let plan = plan_git(&desired_objects([new_declared.clone()]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert_eq!(change.before.as_deref(), Some(&edited));
    assert_eq!(change.after.as_deref(), Some(&new_declared));
    assert_eq!(change.drift_hash, Some(edited.content_hash()));
    assert_eq!(plan.count(Action::Update), 0);
}

#[test]
fn row_hand_edited_to_exactly_the_declared_content_is_an_update_with_a_note() {
    let applied = permit("pay").roles(["pay-svc:processor"]).build();
    let declared_now = permit("pay").roles(["pay-svc:auditor"]).build();
    // Someone made the commit's change by hand before the commit was synced.
    let live = live()
        .row(declared_now.clone())
        .owned_by(GIT)
        .applied_as(&applied)
        .in_ledger()
        .build();

    let plan = plan_git(&desired_objects([declared_now.clone()]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.before.as_deref(), Some(&declared_now));
    assert_eq!(change.after.as_deref(), Some(&declared_now));
    assert!(change.fields.is_empty(), "{:#?}", change.fields);
    assert!(
        !change.note.is_empty(),
        "the update says why it has no fields"
    );
    assert_eq!(change.drift_hash, None);
    assert_eq!(plan.count(Action::Drift), 0);
}

#[test]
fn ledger_key_whose_row_lost_its_owner_by_hand_is_drift_not_conflict() {
    let applied = permit("pay").roles(["pay-svc:processor"]).build();
    let edited = permit("pay").roles(["*:admin"]).build();
    let live = live().row(edited.clone()).in_ledger().build();

    let plan = plan_git(&desired_objects([applied]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert_eq!(change.drift_hash, Some(edited.content_hash()));
}

#[test]
fn ledger_key_whose_row_lost_its_owner_is_drift_even_with_the_declared_content() {
    let applied = permit("pay").build();
    let live = live().row(applied.clone()).in_ledger().build();

    let plan = plan_git(&desired_objects([applied.clone()]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Drift);
    assert!(change.note.contains("ownership"), "note: {}", change.note);
    assert_eq!(change.drift_hash, Some(applied.content_hash()));
}

// ---- suspended -----------------------------------------------------------------

#[test]
fn declaration_with_gitops_false_is_suspended_even_when_content_differs() {
    let applied = org("acme").name("Acme").build();
    let declared_value = org("acme").name("Acme Inc.").budget(10).build();
    let live = live().synced(GIT, applied.clone()).build();
    let desired = desired([declared(declared_value.clone()).suspended()]);

    let plan = plan_git(&desired, &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Suspended);
    assert_eq!(change.before.as_deref(), Some(&applied));
    assert_eq!(change.after.as_deref(), Some(&declared_value));
    assert_eq!(plan.count(Action::Update), 0);
    assert!(!plan.is_pending());
}

#[test]
fn declaration_with_gitops_false_is_suspended_instead_of_created_or_drift() {
    let acme = org("acme").build();
    let suspended = desired([declared(acme.clone()).suspended()]);
    let never_written = live().build();
    let deleted_by_hand = live().ledger(acme.key()).build();
    let edited_by_hand = live()
        .row(org("acme").name("edited").build())
        .owned_by(GIT)
        .applied_as(&acme)
        .in_ledger()
        .build();

    for live in [never_written, deleted_by_hand, edited_by_hand] {
        let plan = plan_git(&suspended, &live);
        assert_eq!(only_change(&plan).action, Action::Suspended);
    }
}

#[test]
fn organization_suspended_in_the_database_is_suspended_when_declared() {
    let applied = org("acme").name("Acme").build();
    let declared_value = org("acme").name("Acme Inc.").build();
    let live = live()
        .row(applied.clone())
        .owned_by(GIT)
        .applied()
        .in_ledger()
        .suspended_in_database()
        .build();

    let plan = plan_git(&desired_objects([declared_value]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Suspended);
    assert_eq!(change.before.as_deref(), Some(&applied));
    assert!(!plan.is_pending());
}

#[test]
fn organization_suspended_in_the_database_is_never_pruned() {
    let acme = org("acme").build();
    let live = live()
        .row(acme.clone())
        .owned_by(GIT)
        .applied()
        .in_ledger()
        .suspended_in_database()
        .build();

    let plan = plan_git(&desired_objects([]), &live);

    let change = only_change(&plan);
    assert_eq!(change.action, Action::Suspended);
    assert_eq!(change.key, acme.key());
    assert_eq!(change.before.as_deref(), Some(&acme));
    assert_eq!(plan.count(Action::Delete), 0);
    assert!(plan.forget.is_empty());
    assert!(guard(&plan, 0, 0).is_ok());
}

// ---- forget and managed --------------------------------------------------------

#[test]
fn forget_lists_managed_keys_whose_row_is_gone_and_no_longer_declared() {
    let gone = key(Kind::Permit, "gone");
    let declared_gone = permit("declared-gone").build();
    let taken_over = permit("taken-over").build();
    let still_there = permit("still-there").build();
    let live = live()
        .ledger(gone.clone())
        .ledger(declared_gone.key())
        .row(taken_over.clone())
        .owned_by(KUBERNETES)
        .applied()
        .in_ledger()
        .synced(GIT, still_there.clone())
        .build();

    let plan = plan_git(&desired_objects([declared_gone.clone()]), &live);

    assert_eq!(plan.forget, [gone, taken_over.key()]);
    assert_eq!(
        actions(&plan),
        [
            (Action::Drift, "declared-gone".to_owned()),
            (Action::Delete, "still-there".to_owned())
        ]
    );
}

#[test]
fn forget_is_sorted_by_key() {
    let ids = ["zeta", "alpha", "mid"];
    let live = ids
        .iter()
        .fold(live(), |live, id| live.ledger(key(Kind::Enrollment, id)))
        .ledger(key(Kind::Organization, "zzz"))
        .build();

    let plan = plan_git(&desired_objects([]), &live);

    assert_eq!(
        plan.forget,
        [
            key(Kind::Organization, "zzz"),
            key(Kind::Enrollment, "alpha"),
            key(Kind::Enrollment, "mid"),
            key(Kind::Enrollment, "zeta"),
        ]
    );
    assert!(plan.changes.is_empty());
}

#[test]
fn managed_counts_ledger_keys_and_rows_owned_by_the_source_once_each() {
    let live = live()
        .ledger(key(Kind::Permit, "ledger-only"))
        .synced(GIT, permit("both").build())
        .row(permit("owned-only").build())
        .owned_by(GIT)
        .applied()
        .row(permit("theirs").build())
        .owned_by(KUBERNETES)
        .applied()
        .row(permit("nobodys").build())
        .build();
    let declare_all =
        desired_objects(["ledger-only", "both", "owned-only"].map(|id| permit(id).build()));

    let plan = plan_git(&declare_all, &live);

    assert_eq!(plan.managed, 3);
}

// ---- the plan as a whole -------------------------------------------------------

#[test]
fn changes_are_sorted_by_key() {
    let live = live()
        .synced(GIT, org("a-dropped").build())
        .synced(GIT, permit("m-dropped").build())
        .row(permit("b-kept").roles(["*:admin"]).build())
        .owned_by(GIT)
        .applied_as(&permit("b-kept").build())
        .in_ledger()
        .build();
    let desired = desired_objects([
        enrollment("a-new").build(),
        permit("z-new").build(),
        permit("b-kept").build(),
        permit("c-new").app("another.app").build(),
        org("b-new").build(),
    ]);

    let plan = plan_git(&desired, &live);

    let keys: Vec<Key> = plan.changes.iter().map(|c| c.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(
        plan.changes
            .iter()
            .map(|c| (c.action, c.key.to_string()))
            .collect::<Vec<_>>(),
        [
            (Action::Delete, "Organization unnamed/a-dropped".to_owned()),
            (Action::Create, "Organization unnamed/b-new".to_owned()),
            (Action::Create, "Permit another.app/c-new".to_owned()),
            (Action::Drift, "Permit unnamed/b-kept".to_owned()),
            (Action::Delete, "Permit unnamed/m-dropped".to_owned()),
            (Action::Create, "Permit unnamed/z-new".to_owned()),
            (Action::Create, "Enrollment unnamed/a-new".to_owned()),
        ]
    );
}

#[test]
fn plan_with_only_suspended_changes_is_not_pending() {
    let acme = org("acme").name("Acme").build();
    let beta = org("beta").build();
    let live = live()
        .synced(GIT, acme.clone())
        .row(beta)
        .owned_by(GIT)
        .applied()
        .in_ledger()
        .suspended_in_database()
        .build();
    let desired = desired([declared(org("acme").name("changed").build()).suspended()]);

    let plan = plan_git(&desired, &live);

    assert_eq!(plan.count(Action::Suspended), 2);
    assert_eq!(plan.changes.len(), 2);
    assert!(!plan.is_pending());
}

#[test]
fn plan_with_a_conflict_or_drift_is_pending() {
    let theirs = live()
        .row(permit("pay").build())
        .owned_by(KUBERNETES)
        .build();
    let deleted_by_hand = live().ledger(key(Kind::Permit, "pay")).build();

    let conflict = plan_git(&desired_objects([permit("pay").build()]), &theirs);
    let drift = plan_git(&desired_objects([permit("pay").build()]), &deleted_by_hand);

    assert_eq!(only_change(&conflict).action, Action::Conflict);
    assert!(conflict.is_pending());
    assert_eq!(only_change(&drift).action, Action::Drift);
    assert!(drift.is_pending());
}

#[test]
fn summary_counts_each_action() {
    let edited = permit("drifted").roles(["*:admin"]).build();
    let live = live()
        .synced(GIT, permit("updated").build())
        .synced(GIT, permit("deleted").build())
        .row(edited)
        .owned_by(GIT)
        .applied_as(&permit("drifted").build())
        .in_ledger()
        .ledger(key(Kind::Permit, "deleted-by-hand"))
        .row(permit("theirs").build())
        .owned_by(KUBERNETES)
        .synced(GIT, org("paused").build())
        .build();
    let desired = desired([
        declared(permit("created").build()),
        declared(enrollment("created-too").build()),
        declared(permit("updated").roles(["pay-svc:auditor"]).build()),
        declared(permit("drifted").build()),
        declared(permit("deleted-by-hand").build()),
        declared(permit("theirs").build()),
        declared(org("paused").name("changed").build()).suspended(),
    ]);

    let plan = plan_git(&desired, &live);

    assert_eq!(
        plan.summary(),
        Summary {
            create: 2,
            update: 1,
            delete: 1,
            drift: 2,
            conflict: 1,
            suspended: 1,
        }
    );
    assert_eq!(plan.count(Action::Create), 2);
    assert_eq!(plan.count(Action::Drift), 2);
    assert_eq!(plan.count(Action::Delete), 1);
}

// ---- the deletion guard --------------------------------------------------------

/// A plan that deletes `deletes` of `managed` permits `git` manages.
fn plan_deleting(deletes: usize, managed: usize) -> Plan {
    let (objects, live) = synced_permits(managed);
    let kept = objects.into_iter().skip(deletes);
    let plan = plan_git(&desired_objects(kept), &live);
    assert_eq!(plan.count(Action::Delete), deletes);
    assert_eq!(plan.managed, managed);
    plan
}

#[test]
fn guard_refuses_deleting_more_than_the_allowed_percent() {
    let refusal = guard(&plan_deleting(26, 100), 25, 0).unwrap_err();

    assert_eq!(refusal.deletes, 26);
    assert_eq!(refusal.managed, 100);
    assert_eq!(refusal.max_percent, 25);
}

#[test]
fn guard_allows_deleting_exactly_the_limit() {
    assert_eq!(guard(&plan_deleting(25, 100), 25, 0), Ok(()));
}

#[test]
fn guard_allows_deleting_under_the_limit() {
    assert_eq!(guard(&plan_deleting(1, 4), 25, 0), Ok(()));
}

#[test]
fn guard_with_zero_percent_refuses_any_delete() {
    assert!(guard(&plan_deleting(1, 100), 0, 0).is_err());
}

#[test]
fn guard_refuses_deleting_every_managed_row_even_one_of_one() {
    let refusal = guard(&plan_deleting(1, 1), 100, 0).unwrap_err();
    assert_eq!((refusal.deletes, refusal.managed), (1, 1));

    assert!(guard(&plan_deleting(3, 3), 100, 0).is_err());
}

#[test]
fn guard_allows_a_plan_without_deletes_even_with_nothing_managed() {
    let plan = plan_git(&desired_objects([permit("new").build()]), &live().build());
    assert_eq!(plan.managed, 0);

    assert_eq!(guard(&plan, 0, 0), Ok(()));
    assert_eq!(guard(&Plan::default(), 0, 0), Ok(()));
}

#[test]
fn guard_ignores_changes_that_are_not_deletes() {
    let (objects, live) = synced_permits(2);
    let changed: Vec<Object> = objects
        .iter()
        .map(|p| permit(p.id()).roles(["*:admin"]).build())
        .collect();

    let plan = plan_git(&desired_objects(changed), &live);

    assert_eq!(plan.count(Action::Update), 2);
    assert_eq!(guard(&plan, 0, 0), Ok(()));
}

#[test]
fn guard_refusal_names_the_counts() {
    let too_many = guard(&plan_deleting(26, 100), 25, 0)
        .unwrap_err()
        .to_string();
    let all = guard(&plan_deleting(4, 4), 100, 0).unwrap_err().to_string();

    assert!(too_many.contains("26 of 100"), "{too_many}");
    assert!(too_many.contains("25%"), "{too_many}");
    assert!(all.contains("all 4"), "{all}");
}

#[test]
fn guard_counts_deletions_made_earlier_in_the_window() {
    // 36 managed before the window's deletions; 8 deleted since, one more now: 25 %.
    assert_eq!(guard(&plan_deleting(1, 28), 25, 8), Ok(()));

    // A tenth deletion of the 36 is over the limit, though alone it is 1 of 27.
    let refusal = guard(&plan_deleting(1, 27), 25, 9).unwrap_err();
    assert_eq!(
        (refusal.deletes, refusal.earlier, refusal.managed),
        (1, 9, 36)
    );
    let text = refusal.to_string();
    assert!(text.contains("10 of the 36"), "{text}");
    assert!(text.contains("deleted earlier"), "{text}");
    assert!(
        !text.contains("--force"),
        "the caller names the way out: {text}"
    );
}

#[test]
fn guard_refuses_a_whole_source_disappearing_whatever_the_window_says() {
    let refusal = guard(&plan_deleting(4, 4), 100, 0).unwrap_err();
    assert_eq!(refusal.deletes, 4);
    assert!(guard(&plan_deleting(4, 4), 100, 1000).is_err());
}

#[test]
fn the_refused_set_names_exactly_the_keys_deleted() {
    let three = guard(&plan_deleting(3, 4), 25, 0).unwrap_err();
    let again = guard(&plan_deleting(3, 4), 25, 0).unwrap_err();
    let two = guard(&plan_deleting(2, 4), 25, 0).unwrap_err();

    assert_eq!(three.set, again.set, "the same keys, the same set");
    assert_ne!(three.set, two.set, "other keys, another set");
    assert_eq!(three.set.len(), 16);
}
