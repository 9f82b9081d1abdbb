//! Both stores against real databases: SQLite in a temp file and a real
//! PostgreSQL server. Every scenario runs on each backend.

mod common;

use accord::model::{DesiredState, Kind, Object};
use accord::plan::{self, Action, Plan, PlanOptions};
use accord::policy::DriftPolicy;
use accord::store::{AnyStore, ApplyRequest, AuditQuery, RunQuery, Store, SyncRecord};
use common::builders::*;
use common::db::{locked, Backend, TestDb};
use serde_json::json;

async fn open(backend: Backend) -> (TestDb, AnyStore) {
    let db = TestDb::new(backend).await;
    let store = AnyStore::connect(&db.url)
        .await
        .expect("connect and migrate");
    (db, store)
}

/// Plans as a sync does: rows loaded for a plan, and those it changes that
/// came without their content read whole before it is made again.
async fn plan_for(store: &AnyStore, desired: &DesiredState, source: &str) -> Plan {
    let mut live = store.load_for_plan(source).await.expect("load");
    let plan = plan::plan(desired, &live, source, PlanOptions::default());
    if accord::store::read_unread(store, &mut live, &plan)
        .await
        .expect("read unread rows")
    {
        return plan::plan(desired, &live, source, PlanOptions::default());
    }
    plan
}

async fn sync_with(
    store: &AnyStore,
    desired: &DesiredState,
    source: &str,
    drift: DriftPolicy,
) -> (Plan, SyncRecord) {
    let plan = plan_for(store, desired, source).await;
    let record = store
        .apply(
            locked(store, source).await,
            ApplyRequest::new(source, "rev-1", "tester@host", drift, &plan),
        )
        .await
        .expect("apply");
    (plan, record)
}

/// The ids of the plan's changes of `action`, in the plan's order.
fn ids(plan: &Plan, action: Action) -> Vec<&str> {
    plan.changes
        .iter()
        .filter(|c| c.action == action)
        .map(|c| c.key.id.as_str())
        .collect()
}

async fn sync(store: &AnyStore, desired: &DesiredState) -> (Plan, SyncRecord) {
    sync_with(store, desired, "git", DriftPolicy::Correct).await
}

fn sample() -> Vec<Object> {
    vec![
        org("acme")
            .name("Acme")
            .budget(1000)
            .models(["gpt-4o", "llama"])
            .member("jane@acme.com", "admin")
            .member("bob@acme.com", "user")
            .build(),
        permit("pay")
            .slugs(["order-service"])
            .roles(["payment-svc:processor"])
            .build(),
        permit("pay").app("tenant.example.com").build(),
        enrollment("admin")
            .role("payment-svc:admin")
            .user("usr_1")
            .build(),
        enrollment("everyone")
            .role("docs-svc:reader")
            .contact("*")
            .build(),
    ]
}

/// How many audit rows have `action`.
async fn audited(store: &AnyStore, action: &str) -> usize {
    audit(store)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

async fn audit(store: &AnyStore) -> Vec<accord::store::AuditEntry> {
    store
        .audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("audit")
}

both_backends!(
    the_change_mark_moves_with_every_write_by_anyone,
    |backend| async move {
        let (db, store) = open(backend).await;
        let mark = || async {
            store
                .change_mark()
                .await
                .expect("mark")
                .expect("both backends keep one")
        };
        let first = mark().await;
        if backend == Backend::Sqlite {
            // Reading is not writing (a PostgreSQL server's snapshot also moves
            // with the other tests' writes, so only SQLite's can be held still).
            store.load(None).await.expect("load");
            assert_eq!(mark().await, first);
        }
        sync(&store, &desired_objects(sample())).await;
        let synced = mark().await;
        assert_ne!(synced, first, "accord's own write");
        db.exec("UPDATE organizations SET name = 'Hand' WHERE slug = 'acme'")
            .await
            .expect("hand edit");
        let edited = mark().await;
        assert_ne!(edited, synced, "a hand edit on another connection");
        db.exec("DELETE FROM permits").await.expect("hand delete");
        assert_ne!(mark().await, edited, "a hand deletion");
    }
);

both_backends!(
    a_write_under_way_when_the_mark_is_taken_moves_it_once_committed,
    |backend| async move {
        use sqlx::Connection as _;
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let mark = || async { store.change_mark().await.expect("mark").expect("a mark") };
        // The edit is made, not yet committed, when the mark is taken: a
        // read then does not see it, so its commit must move the mark.
        let edit = "UPDATE organizations SET name = 'Hand' WHERE slug = 'acme'";
        let before = match backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url)
                    .await
                    .expect("connect");
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query(edit).execute(&mut *tx).await.expect("edit");
                let before = mark().await;
                tx.commit().await.expect("commit");
                before
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query(edit).execute(&mut *tx).await.expect("edit");
                let before = mark().await;
                tx.commit().await.expect("commit");
                before
            }
        };
        assert_ne!(mark().await, before);
    }
);

both_backends!(
    applied_objects_load_back_identical_and_owned,
    |backend| async move {
        let (db, store) = open(backend).await;
        let desired = desired_objects(sample());
        let (plan, record) = sync(&store, &desired).await;
        assert_eq!(plan.summary().create, 5);
        assert_eq!(record.audited, 5);

        let live = store.load(Some("git")).await.expect("load");
        assert_eq!(live.rows.len(), 5);
        assert_eq!(live.ledger_len(), 5);
        assert!(
            live.ledger.is_empty(),
            "every ledger entry comes with its row"
        );
        for (key, declaration) in &desired.objects {
            let row = live.rows.get(key).expect("row written");
            assert_eq!(row.object().as_ref(), Some(&*declaration.object), "{key}");
            assert_eq!(row.managed_by.as_deref(), Some("git"));
            assert_eq!(row.applied, Some(declaration.object.digest()));
        }
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM organization_members").await,
            2
        );
        // A second plan has nothing to do.
        assert!(plan_for(&store, &desired, "git").await.changes.is_empty());
    }
);

both_backends!(
    text_the_read_formats_escape_loads_back_unchanged,
    |backend| async move {
        // Tabs, newlines, backslashes and quotes are what PostgreSQL's COPY
        // and JSON escape; every one must come back as written.
        let (_db, store) = open(backend).await;
        let awkward = "tab\there, line\nbreak, back\\slash \\N, \"quoted\", ünïcode";
        let desired = desired_objects(vec![
            org("acme")
                .name(awkward)
                .models([awkward, "\\"])
                .member("jane@acme.com", awkward)
                .build(),
            permit("pay").roles([awkward]).build(),
            enrollment("admin").role(awkward).user("\\N").build(),
        ]);
        sync(&store, &desired).await;
        let live = store.load(Some("git")).await.expect("load");
        for (key, declaration) in &desired.objects {
            assert_eq!(
                live.rows[key].object().as_ref(),
                Some(&*declaration.object),
                "{key}"
            );
        }
        assert!(plan_for(&store, &desired, "git").await.changes.is_empty());
    }
);

both_backends!(
    migrations_are_applied_once_and_reconnecting_is_harmless,
    |backend| async move {
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        drop(store);
        let again = AnyStore::connect(&db.url).await.expect("reconnect");
        assert_eq!(again.load(None).await.expect("load").rows.len(), 5);
        let folder = match backend {
            Backend::Sqlite => "migrations/sqlite",
            Backend::Postgres => "migrations/postgres",
        };
        let files = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder))
            .expect("migrations folder")
            .count() as i64;
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM _sqlx_migrations").await,
            files
        );
    }
);

both_backends!(
    updates_replace_content_and_members_and_deletes_prune,
    |backend| async move {
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let mut changed = sample();
        changed[0] = org("acme")
            .name("Acme Corp")
            .member("carol@acme.com", "admin")
            .build();
        changed[1] = permit("pay")
            .slugs(["order-service", "refund-worker"])
            .build();
        changed.pop(); // drop the `everyone` enrollment
        let desired = desired_objects(changed);
        let (plan, _) = sync(&store, &desired).await;
        let s = plan.summary();
        assert_eq!((s.create, s.update, s.delete), (0, 2, 1));
        let live = store.load(Some("git")).await.expect("load");
        for (key, declaration) in &desired.objects {
            assert_eq!(
                live.rows
                    .get(key)
                    .and_then(accord::plan::LiveRow::object)
                    .as_ref(),
                Some(&*declaration.object)
            );
        }
        assert_eq!(live.rows.len(), 4);
        assert_eq!(live.ledger_len(), 4, "the pruned key is no longer managed");
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM organization_members").await,
            1
        );
        let actions: Vec<String> = audit(&store)
            .await
            .iter()
            .map(|e| e.action.clone())
            .collect();
        assert_eq!(actions.iter().filter(|a| *a == "update").count(), 2);
        assert_eq!(actions.iter().filter(|a| *a == "delete").count(), 1);
    }
);

both_backends!(
    audit_rows_carry_who_what_when_and_a_diff,
    |backend| async move {
        let (_db, store) = open(backend).await;
        sync(&store, &desired_objects(vec![permit("pay").build()])).await;
        sync(
            &store,
            &desired_objects(vec![permit("pay").roles(["svc:admin"]).build()]),
        )
        .await;
        let entries = audit(&store).await;
        assert_eq!(entries.len(), 2);
        let update = &entries[0];
        assert!(update.seq > entries[1].seq, "newest first");
        assert_eq!(update.action, "update");
        assert_eq!(
            (
                update.kind.as_str(),
                update.app.as_str(),
                update.id.as_str()
            ),
            ("Permit", "unnamed", "pay")
        );
        assert_eq!(update.actor, "tester@host");
        assert_eq!(update.source, "git");
        assert_eq!(update.revision, "rev-1");
        assert_eq!(
            update.before.as_ref().and_then(|b| b["roles"][0].as_str()),
            Some("svc:reader")
        );
        assert_eq!(
            update.after.as_ref().and_then(|a| a["roles"][0].as_str()),
            Some("svc:admin")
        );
        assert!(
            update.diff.contains("-- svc:reader\n+- svc:admin"),
            "{}",
            update.diff
        );
        assert!(entries[1].before.is_none());
    }
);

both_backends!(
    the_database_refuses_to_change_the_audit_log,
    |backend| async move {
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let update = db.exec("UPDATE audit_log SET actor = 'someone-else'").await;
        assert!(update.is_err_and(|e| e.to_string().contains("append-only")));
        let delete = db.exec("DELETE FROM audit_log").await;
        assert!(delete.is_err_and(|e| e.to_string().contains("append-only")));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM audit_log").await, 5);
        // The runs the audit rows refer to are history too.
        let update = db.exec("UPDATE sync_runs SET actor = 'someone-else'").await;
        assert!(update.is_err_and(|e| e.to_string().contains("append-only")));
        let delete = db.exec("DELETE FROM sync_runs").await;
        assert!(delete.is_err_and(|e| e.to_string().contains("append-only")));
        assert_eq!(db.scalar("SELECT COUNT(*) FROM sync_runs").await, 1);
        if backend == Backend::Postgres {
            assert!(db.exec("TRUNCATE audit_log CASCADE").await.is_err());
            let truncate = db.exec("TRUNCATE sync_runs").await;
            assert!(truncate.is_err_and(|e| e.to_string().contains("append-only")));
        }
    }
);

both_backends!(
    a_failure_mid_apply_leaves_the_database_unchanged,
    |backend| async move {
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let before = store.load(Some("git")).await.expect("load");
        // Rows, members and ownership records are written before the audit rows;
        // failing the audit insert must roll all of them back.
        db.fail_inserts_into("audit_log").await;
        let mut changed = sample();
        changed[1] = permit("pay").roles(["svc:admin"]).build();
        changed.remove(0);
        changed.push(permit("new").build());
        let desired = desired_objects(changed);
        let plan = plan_for(&store, &desired, "git").await;
        assert_eq!(plan.summary().create, 1);
        let result = store
            .apply(
                locked(&store, "git").await,
                ApplyRequest::new("git", "rev-2", "tester", DriftPolicy::Correct, &plan),
            )
            .await;
        let error = result.expect_err("the injected failure surfaces");
        let told = accord::sync::explain(&error);
        assert!(told.contains("injected failure"), "{told}");
        let after = store.load(Some("git")).await.expect("load");
        assert_eq!(after.rows, before.rows);
        assert_eq!(after.ledger, before.ledger);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM sync_runs").await, 1);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM organization_members").await,
            2
        );
        // Once the fault is gone the same plan applies whole.
        db.stop_failing("audit_log").await;
        sync(&store, &desired).await;
        assert_eq!(store.load(Some("git")).await.expect("load").rows.len(), 5);
    }
);

both_backends!(
    hand_edits_and_hand_deletes_are_drift_and_get_corrected,
    |backend| async move {
        let (db, store) = open(backend).await;
        let desired = desired_objects(sample());
        sync(&store, &desired).await;
        db.exec("UPDATE permits SET roles = '[\"payment-svc:admin\"]' WHERE id = 'pay' AND app = 'unnamed'")
        .await
        .expect("edit");
        db.exec("DELETE FROM enrollments WHERE id = 'everyone'")
            .await
            .expect("delete");
        db.exec("UPDATE organization_members SET role = 'admin' WHERE contact_id = 'bob@acme.com'")
            .await
            .expect("edit member");
        db.exec("UPDATE permits SET managed_by = NULL WHERE app = 'tenant.example.com'")
            .await
            .expect("disown");
        let (plan, _) = sync(&store, &desired).await;
        let drifted: Vec<(Kind, &str, &str)> = plan
            .changes
            .iter()
            .filter(|c| c.action == Action::Drift)
            .map(|c| (c.key.kind, c.key.app.as_str(), c.note.as_str()))
            .collect();
        assert_eq!(
            drifted,
            [
                (Kind::Organization, "unnamed", "edited by hand"),
                (
                    Kind::Permit,
                    "tenant.example.com",
                    "ownership removed by hand"
                ),
                (Kind::Permit, "unnamed", "edited by hand"),
                (Kind::Enrollment, "unnamed", "deleted by hand"),
            ]
        );
        assert!(
            plan_for(&store, &desired, "git").await.changes.is_empty(),
            "all corrected"
        );
        let corrected = audited(&store, "drift_corrected").await;
        assert_eq!(corrected, 4);
    }
);

both_backends!(
    values_accord_never_writes_load_as_drift_and_get_corrected,
    |backend| async move {
        // Rows are read leniently: a list that is not JSON, a number where
        // text belongs, or (SQLite keeps them as written) bytes in a text
        // column are drift to show and put back, not an error that stops
        // every sync.
        let (db, store) = open(backend).await;
        let desired = desired_objects(sample());
        sync(&store, &desired).await;
        db.exec(
            "UPDATE permits SET slugs = 'orders, billing' WHERE id = 'pay' AND app = 'unnamed'",
        )
        .await
        .expect("edit list");
        db.exec("UPDATE enrollments SET role = 5 WHERE id = 'everyone'")
            .await
            .expect("edit role");
        let mut expected = vec!["pay", "everyone"];
        if backend == Backend::Sqlite {
            db.exec("UPDATE enrollments SET user_id = x'752d39' WHERE id = 'admin'")
                .await
                .expect("edit user");
            expected.insert(1, "admin");
        }
        let live = store.load(Some("git")).await.expect("load");
        let pay = live.rows[&key(Kind::Permit, "pay")].object().expect("read");
        assert_eq!(pay.to_json()["slugs"], json!(["orders, billing"]));
        let everyone = live.rows[&key(Kind::Enrollment, "everyone")]
            .object()
            .expect("read");
        assert_eq!(everyone.to_json()["role"], json!("5"));
        if backend == Backend::Sqlite {
            let admin = live.rows[&key(Kind::Enrollment, "admin")]
                .object()
                .expect("read");
            assert_eq!(admin.to_json()["userId"], json!("u-9"));
        }

        let (plan, _) = sync(&store, &desired).await;
        assert_eq!(ids(&plan, Action::Drift), expected);
        assert!(plan_for(&store, &desired, "git").await.changes.is_empty());
    }
);

both_backends!(
    reordering_a_list_by_hand_is_not_drift,
    |backend| async move {
        let (db, store) = open(backend).await;
        let desired = desired_objects(vec![permit("p").roles(["a:a", "b:b"]).build()]);
        sync(&store, &desired).await;
        db.exec("UPDATE permits SET roles = '[\"b:b\",\"a:a\",\"a:a\"]'")
            .await
            .expect("edit");
        assert!(plan_for(&store, &desired, "git").await.changes.is_empty());
    }
);

both_backends!(
    a_load_brings_only_its_own_sources_ledger,
    |backend| async move {
        let (db, store) = open(backend).await;
        let ours = desired_objects(sample());
        let theirs = desired_objects(vec![
            org("globex").name("Globex").build(),
            permit("ship").roles(["ship-svc:admin"]).build(),
            enrollment("ops")
                .role("ship-svc:admin")
                .user("usr_9")
                .build(),
        ]);
        sync(&store, &ours).await;
        sync_with(&store, &theirs, "other", DriftPolicy::Correct).await;

        let live = store.load(Some("git")).await.expect("load");
        assert_eq!(live.rows.len(), 8, "every row is read");
        assert_eq!(live.ledger_len(), 5, "only git's ledger");
        let plan = plan_for(&store, &ours, "git").await;
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);
        assert!(plan.forget.is_empty(), "{:?}", plan.forget);
        assert_eq!(plan.managed, 5);

        // Rows deleted by hand from each source: each sees its own only.
        db.exec("DELETE FROM permits WHERE id IN ('pay', 'ship')")
            .await
            .expect("delete");
        for (desired, source, expected) in [(&ours, "git", 2), (&theirs, "other", 1)] {
            let plan = plan_for(&store, desired, source).await;
            let drifted: Vec<&str> = plan
                .changes
                .iter()
                .filter(|c| c.action == Action::Drift && c.note == "deleted by hand")
                .map(|c| c.key.id.as_str())
                .collect();
            assert_eq!(drifted.len(), expected, "{source}: {drifted:?}");
            assert_eq!(plan.changes.len(), expected, "{source}: {:?}", plan.changes);
            let live = store.load(Some(source)).await.expect("load");
            assert_eq!(
                live.ledger.len(),
                expected,
                "{source}: the deleted rows' entries"
            );
        }
    }
);

both_backends!(
    report_mode_audits_drift_once_and_leaves_it,
    |backend| async move {
        let (db, store) = open(backend).await;
        let desired = desired_objects(sample());
        sync(&store, &desired).await;
        db.exec("UPDATE enrollments SET role = 'payment-svc:root' WHERE id = 'admin'")
            .await
            .expect("edit");
        for _ in 0..3 {
            let (plan, _) = sync_with(&store, &desired, "git", DriftPolicy::Report).await;
            assert_eq!(plan.summary().drift, 1, "still listed until it goes away");
        }
        let detected = audited(&store, "drift_detected").await;
        assert_eq!(detected, 1);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM enrollments WHERE role = 'payment-svc:root'")
                .await,
            1
        );
        // A different hand edit is new drift, reported again.
        db.exec("UPDATE enrollments SET role = 'payment-svc:god' WHERE id = 'admin'")
            .await
            .expect("edit");
        sync_with(&store, &desired, "git", DriftPolicy::Report).await;
        let detected = audited(&store, "drift_detected").await;
        assert_eq!(detected, 2);
        // A row deleted by hand, whose ledger entry has no row to come
        // with, is reported once too.
        db.exec("DELETE FROM permits WHERE id = 'pay' AND app = 'unnamed'")
            .await
            .expect("delete");
        for _ in 0..2 {
            let (plan, _) = sync_with(&store, &desired, "git", DriftPolicy::Report).await;
            assert_eq!(plan.summary().drift, 2);
            let live = store.load(Some("git")).await.expect("load");
            assert_eq!(live.ledger.len(), 1, "the deleted row's entry");
            assert_eq!(live.ledger_len(), 5);
        }
        let detected = audited(&store, "drift_detected").await;
        assert_eq!(detected, 3);
    }
);

both_backends!(unmanaged_rows_are_never_touched, |backend| async move {
    let (db, store) = open(backend).await;
    db.exec("INSERT INTO permits (app, id, permission_id, slugs, roles) VALUES ('unnamed', 'manual', 'x:y', '[]', '[\"a:b\"]'), ('unnamed', 'pay', 'x:y', '[]', '[\"a:b\"]')")
        .await
        .expect("insert");
    let desired = desired_objects(vec![permit("pay").build(), permit("other").build()]);
    let (plan, _) = sync(&store, &desired).await;
    let s = plan.summary();
    assert_eq!((s.create, s.conflict), (1, 1));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM permits WHERE id = 'pay' AND managed_by IS NULL AND permission_id = 'x:y'").await,
        1
    );
    // Pruning everything this source manages never reaches the manual rows.
    let (plan, _) = sync(&store, &desired_objects(vec![permit("pay").build()])).await;
    assert_eq!(plan.summary().delete, 1);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 2);
});

both_backends!(two_sources_conflict_on_one_key, |backend| async move {
    let (_db, store) = open(backend).await;
    sync_with(
        &store,
        &desired_objects(vec![permit("shared").build()]),
        "git",
        DriftPolicy::Correct,
    )
    .await;
    let desired = desired_objects(vec![permit("shared").roles(["svc:admin"]).build()]);
    let (plan, _) = sync_with(&store, &desired, "kubernetes", DriftPolicy::Correct).await;
    assert_eq!(plan.summary().conflict, 1);
    assert!(plan.changes[0].note.contains("`git`"));
    let live = store.load(Some("git")).await.expect("load");
    let row = live.rows.values().next().expect("row");
    assert_eq!(row.managed_by.as_deref(), Some("git"), "the owner keeps it");
});

both_backends!(
    a_conflict_is_reported_on_both_sides_with_the_other_sides_file,
    |backend| async move {
        let (_db, store) = open(backend).await;
        let git_desired = desired([declared(permit("shared").build()).at("perms/shared.yaml", 1)]);
        sync_with(&store, &git_desired, "git", DriftPolicy::Correct).await;
        let kube_desired =
            desired([declared(permit("shared").roles(["svc:admin"]).build())
                .at("team-a/Permit/shared", 1)]);

        let mut kube_plan = plan_for(&store, &kube_desired, "kubernetes").await;
        accord::store::explain(&store, &mut kube_plan, "kubernetes")
            .await
            .expect("owners");
        assert_eq!(
            kube_plan.changes[0].note,
            "owned by source `git` (declared in perms/shared.yaml)"
        );
        assert!(kube_plan.claims_changed);
        store
            .apply(
                locked(&store, "kubernetes").await,
                ApplyRequest::new("kubernetes", "rv-9", "t", DriftPolicy::Correct, &kube_plan),
            )
            .await
            .expect("claim recorded");
        assert!(
            !plan_for(&store, &kube_desired, "kubernetes")
                .await
                .claims_changed,
            "the claim is stored"
        );

        // The owner now sees the conflict too, and holds the row.
        let git_plan = plan_for(&store, &git_desired, "git").await;
        assert_eq!(git_plan.summary().conflict, 1);
        assert!(
            git_plan.changes[0]
                .note
                .contains("`kubernetes` in team-a/Permit/shared"),
            "{}",
            git_plan.changes[0].note
        );

        // Once Kubernetes stops declaring it, its claim goes and Git is clear.
        let (resolved, _) = sync_with(
            &store,
            &desired_objects(Vec::new()),
            "kubernetes",
            DriftPolicy::Correct,
        )
        .await;
        assert!(resolved.claims_changed);
        assert!(plan_for(&store, &git_desired, "git")
            .await
            .changes
            .is_empty());
    }
);

both_backends!(
    a_delete_names_the_file_that_last_declared_it,
    |backend| async move {
        let (_db, store) = open(backend).await;
        let kept = || declared(permit("kept").build()).at("perms/kept.yaml", 1);
        let old = declared(permit("old").build()).at("perms/old.yaml", 1);
        sync(&store, &desired([kept(), old])).await;
        // Another source's key that this source never managed.
        let theirs = declared(permit("theirs").build()).at("elsewhere.yaml", 1);
        sync_with(
            &store,
            &desired([theirs]),
            "kubernetes",
            DriftPolicy::Correct,
        )
        .await;

        let mut plan = plan_for(&store, &desired([kept()]), "git").await;
        let delete = &plan.changes[0];
        assert_eq!(
            (delete.action, delete.key.id.as_str()),
            (Action::Delete, "old")
        );
        assert_eq!(delete.declared_in, None, "a load does not read the files");
        accord::store::explain(&store, &mut plan, "git")
            .await
            .expect("explain");
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(
            plan.changes[0].declared_in.as_deref(),
            Some("perms/old.yaml")
        );

        // A key's file is credited only to the source that owns it.
        let mut other = plan_for(&store, &desired_objects(Vec::new()), "kubernetes").await;
        accord::store::explain(&store, &mut other, "git")
            .await
            .expect("explain");
        assert_eq!(other.changes[0].key.id, "theirs");
        assert_eq!(other.changes[0].declared_in, None);
    }
);

both_backends!(
    large_applies_are_chunked_under_the_bind_limits,
    |backend| async move {
        let (db, store) = open(backend).await;
        let objects: Vec<Object> = (0..12_000)
            .map(|i| {
                permit(&format!("p{i:05}"))
                    .slugs([format!("svc-{i}")])
                    .build()
            })
            .chain((0..500).map(|i| {
                let mut o = org(&format!("org-{i}"));
                for m in 0..10 {
                    o = o.member(&format!("u{m}@org{i}.com"), "user");
                }
                o.build()
            }))
            .collect();
        let desired = desired_objects(objects);
        let (_, record) = sync(&store, &desired).await;
        assert_eq!(record.audited, 12_500);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 12_000);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM organization_members").await,
            5_000
        );
        assert_eq!(db.scalar("SELECT COUNT(*) FROM ledger").await, 12_500);
        assert!(plan_for(&store, &desired, "git").await.changes.is_empty());
        // And a prune of all of them (forced past the guard by calling the store directly).
        let (plan, _) = sync(&store, &desired_objects(vec![])).await;
        assert_eq!(plan.summary().delete, 12_500);
        assert_eq!(db.scalar("SELECT COUNT(*) FROM permits").await, 0);
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM organization_members").await,
            0
        );
    }
);

both_backends!(
    audit_can_be_filtered_by_source_and_kind,
    |backend| async move {
        let (_db, store) = open(backend).await;
        sync_with(
            &store,
            &desired_objects(sample()),
            "git",
            DriftPolicy::Correct,
        )
        .await;
        sync_with(
            &store,
            &desired_objects(vec![permit("k8s").build()]),
            "kubernetes",
            DriftPolicy::Correct,
        )
        .await;
        let query = |source: Option<&str>, kind: Option<Kind>, limit: u32| AuditQuery {
            source: source.map(str::to_owned),
            kind,
            limit,
            ..AuditQuery::default()
        };
        assert_eq!(
            store
                .audit(&query(Some("kubernetes"), None, 100))
                .await
                .expect("audit")
                .len(),
            1
        );
        assert_eq!(
            store
                .audit(&query(Some("git"), Some(Kind::Permit), 100))
                .await
                .expect("audit")
                .len(),
            2
        );
        assert_eq!(
            store
                .audit(&query(None, None, 3))
                .await
                .expect("audit")
                .len(),
            3
        );
    }
);

/// The change `plan` makes to `id` of `kind`.
fn change_of<'p>(plan: &'p Plan, kind: Kind, id: &str) -> &'p accord::plan::Change {
    plan.changes
        .iter()
        .find(|c| c.key == key(kind, id))
        .unwrap_or_else(|| panic!("no change to {id}: {:?}", plan.changes))
}

both_backends!(
    rows_as_accord_wrote_them_are_planned_without_reading_their_content,
    |backend| async move {
        let (db, store) = open(backend).await;
        let desired = desired_objects(sample());
        sync(&store, &desired).await;
        let live = store.load_for_plan("git").await.expect("load");
        for (key, row) in &live.rows {
            // Permits and enrollments as accord wrote them come without
            // content: PostgreSQL tells them by their row version, SQLite by
            // their content's hash. Organizations (members in another table)
            // are read whole.
            let unread = key.kind != Kind::Organization;
            assert_eq!(row.is_read(), !unread, "{key}");
        }
        assert_eq!(live.ledger_len(), 5);
        let plan = plan::plan(&desired, &live, "git", PlanOptions::default());
        assert!(plan.changes.is_empty(), "{:?}", plan.changes);

        // A write that changes nothing still makes a new row version: on
        // PostgreSQL read whole, and its content shows it is as applied; on
        // SQLite its hash is still the applied one. A real edit is drift,
        // planned from the content it has now.
        db.exec("UPDATE permits SET roles = roles WHERE app = 'unnamed' AND id = 'pay'")
            .await
            .expect("rewrite");
        db.exec("UPDATE enrollments SET role = 'docs-svc:admin' WHERE id = 'admin'")
            .await
            .expect("hand edit");
        let live = store.load_for_plan("git").await.expect("load");
        assert_eq!(
            live.rows[&key(Kind::Permit, "pay")].is_read(),
            backend == Backend::Postgres
        );
        assert!(live.rows[&key(Kind::Enrollment, "admin")].is_read());
        assert!(!live.rows[&key(Kind::Enrollment, "everyone")].is_read());
        let plan = plan_for(&store, &desired, "git").await;
        assert_eq!(plan.changes.len(), 1, "{:?}", plan.changes);
        let drift = change_of(&plan, Kind::Enrollment, "admin");
        assert_eq!(drift.action, Action::Drift);
        assert_eq!(
            drift.before.as_ref().map(|b| b.to_json()["role"].clone()),
            Some(json!("docs-svc:admin"))
        );
    }
);

both_backends!(
    changes_to_rows_loaded_without_content_show_what_they_were,
    |backend| async move {
        let (_db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let mut changed = sample();
        changed[1] = permit("pay").slugs(["refund-worker"]).build();
        changed.pop(); // the `everyone` enrollment goes
        let desired = desired_objects(changed);
        let mut live = store.load_for_plan("git").await.expect("load");
        let first = plan::plan(&desired, &live, "git", PlanOptions::default());
        let unread = first.unread_rows(&live);
        assert_eq!(
            unread,
            vec![key(Kind::Permit, "pay"), key(Kind::Enrollment, "everyone")]
        );
        assert!(first.changes.iter().all(|c| c.before.is_none()));
        let read = accord::store::read_unread(&store, &mut live, &first)
            .await
            .expect("read");
        assert!(read, "{backend:?}");
        let plan = plan::plan(&desired, &live, "git", PlanOptions::default());
        assert!(plan.unread_rows(&live).is_empty());
        let update = change_of(&plan, Kind::Permit, "pay");
        assert_eq!(update.action, Action::Update);
        assert_eq!(
            update.before.as_ref().map(|b| b.to_json()["slugs"].clone()),
            Some(json!(["order-service"]))
        );
        assert!(
            update.diff().contains("-- order-service\n+- refund-worker"),
            "{}",
            update.diff()
        );
        let delete = change_of(&plan, Kind::Enrollment, "everyone");
        assert_eq!(delete.action, Action::Delete);
        assert_eq!(
            delete
                .before
                .as_ref()
                .map(|b| b.to_json()["contactId"].clone()),
            Some(json!("*"))
        );
        assert_eq!(
            live.ledger_len(),
            5,
            "reading rows keeps their ledger entries"
        );
    }
);

// Rows are read again after the load, in a transaction of their own: what
// happened to them in between is what the plan then goes by.
both_backends!(
    rows_edited_between_the_load_and_reading_them_are_planned_as_they_are_now,
    |backend| async move {
        let (db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let mut changed = sample();
        changed[1] = permit("pay").slugs(["refund-worker"]).build();
        changed[3] = enrollment("admin")
            .role("payment-svc:owner")
            .user("usr_1")
            .build();
        let desired = desired_objects(changed);
        let mut live = store.load_for_plan("git").await.expect("load");
        let first = plan::plan(&desired, &live, "git", PlanOptions::default());
        assert_eq!(first.unread_rows(&live).len(), 2);

        db.exec(
            "UPDATE permits SET permission_id = 'svc:hacked' WHERE app = 'unnamed' AND id = 'pay'",
        )
        .await
        .expect("hand edit");
        db.exec("DELETE FROM enrollments WHERE id = 'admin'")
            .await
            .expect("hand delete");
        assert!(accord::store::read_unread(&store, &mut live, &first)
            .await
            .expect("read"));
        let plan = plan::plan(&desired, &live, "git", PlanOptions::default());
        let edited = change_of(&plan, Kind::Permit, "pay");
        assert_eq!(
            (edited.action, edited.note.as_str()),
            (Action::Drift, "edited by hand")
        );
        assert_eq!(
            edited
                .before
                .as_ref()
                .map(|b| b.to_json()["permissionId"].clone()),
            Some(json!("svc:hacked"))
        );
        let deleted = change_of(&plan, Kind::Enrollment, "admin");
        assert_eq!(
            (deleted.action, deleted.note.as_str()),
            (Action::Drift, "deleted by hand")
        );
        assert_eq!(
            live.ledger_len(),
            5,
            "the deleted row's key is still managed"
        );
    }
);

both_backends!(
    read_rows_reads_the_rows_of_the_keys_given_whole,
    |backend| async move {
        let (_db, store) = open(backend).await;
        sync(&store, &desired_objects(sample())).await;
        let whole = store.load(None).await.expect("load");
        let keys = [
            key(Kind::Organization, "acme"),
            key(Kind::Permit, "pay"),
            key(Kind::Enrollment, "everyone"),
            key(Kind::Permit, "missing"),
        ];
        let rows = store.read_rows(&keys).await.expect("read rows");
        assert_eq!(rows.len(), 3);
        for key in &keys[..3] {
            let row = &rows[key];
            assert!(row.is_read(), "{key}");
            assert!(row.ledger().is_none(), "{key}");
            assert_eq!(row.object(), whole.rows[key].object(), "{key}");
            assert_eq!(row.digest(), whole.rows[key].digest(), "{key}");
            assert_eq!(row.applied, whole.rows[key].applied, "{key}");
            assert_eq!(row.managed_by, whole.rows[key].managed_by, "{key}");
        }
        let acme = rows[&keys[0]].object().expect("read");
        assert_eq!(acme.to_json()["members"].as_array().map(Vec::len), Some(2));
        assert!(store.read_rows(&[]).await.expect("nothing").is_empty());
    }
);

both_backends!(
    a_sources_runs_read_back_newest_first_by_key_each_with_its_newest_changes,
    |backend| async move {
        let (_db, store) = open(backend).await;
        // Sources `a` and `b` take turns, so neither's runs nor audit rows
        // are contiguous; `a`'s run n declares 3n + 1 permits (3 new ones a
        // run after the first), and its third run is recorded unchanged.
        let mut a_runs = Vec::new();
        for n in 0..6usize {
            let declared = if n == 2 { 3 * (n - 1) + 1 } else { 3 * n + 1 };
            let permits = (0..declared).map(|i| permit(&format!("a{i}")).build());
            let (_, record) =
                sync_with(&store, &desired_objects(permits), "a", DriftPolicy::Correct).await;
            a_runs.push(record);
            let permits = (0..=n).map(|i| permit(&format!("b{i}")).app("b").build());
            sync_with(&store, &desired_objects(permits), "b", DriftPolicy::Correct).await;
        }
        assert_eq!(a_runs[2].audited, 0);
        let page = |before: Option<i64>| {
            let store = &store;
            async move {
                store
                    .sync_runs(&RunQuery {
                        source: "a".into(),
                        before,
                        limit: 4,
                        changes: 2,
                    })
                    .await
                    .expect("sync runs")
            }
        };
        let first = page(None).await;
        let second = page(first.last().map(|r| r.id)).await;
        let ids: Vec<i64> = first.iter().chain(&second).map(|r| r.id).collect();
        let expected: Vec<i64> = a_runs.iter().rev().map(|r| r.id).collect();
        assert_eq!(ids, expected, "newest first, by key, none lost or repeated");
        assert!(page(Some(a_runs[0].id)).await.is_empty());

        for run in first.iter().chain(&second) {
            let record = a_runs.iter().find(|r| r.id == run.id).expect("a's run");
            assert_eq!(run.source, "a");
            assert_eq!(run.summary, record.summary);
            assert_eq!(run.audited, Some(record.audited as i64));
            assert_eq!(
                run.outcome,
                if record.audited == 0 {
                    "unchanged"
                } else {
                    "applied"
                }
            );
            // Its own rows, the newest first, two at most.
            let all = store
                .audit(&AuditQuery {
                    source: Some("a".into()),
                    run: Some(run.id),
                    limit: 100,
                    ..AuditQuery::default()
                })
                .await
                .expect("the run's audit rows");
            assert_eq!(all.len(), record.audited, "run {}", run.id);
            let newest: Vec<i64> = all.iter().take(2).map(|e| e.seq).collect();
            let shown: Vec<i64> = run.changes.iter().map(|e| e.seq).collect();
            assert_eq!(shown, newest, "run {}", run.id);
            assert!(run
                .changes
                .iter()
                .all(|e| e.source == "a" && !e.diff.is_empty()));
            // The run filter alone finds the same rows.
            let unscoped = store
                .audit(&AuditQuery {
                    run: Some(run.id),
                    limit: 100,
                    ..AuditQuery::default()
                })
                .await
                .expect("the run's audit rows");
            assert_eq!(
                unscoped.iter().map(|e| e.seq).collect::<Vec<_>>(),
                all.iter().map(|e| e.seq).collect::<Vec<_>>()
            );
        }
    }
);

/// Syncs the folder `folder` as source `git` through the one pipeline a
/// sync takes, with rows read ahead when given.
async fn sync_folder(
    store: &AnyStore,
    folder: &std::path::Path,
    preloaded: Option<accord::sync::Preloaded>,
) -> accord::sync::Synced {
    use accord::source::{DirectorySource, DEFAULT_MAX_FILE_SIZE};
    let source = DirectorySource::new(folder, DEFAULT_MAX_FILE_SIZE);
    let settings = accord::sync::Settings::new("git", "tester@host");
    let desired = accord::sync::read_desired(&source, accord::model::Limits::default());
    let mode = accord::sync::Mode::Apply(accord::store::LockMode::Wait(
        std::time::Duration::from_secs(30),
    ));
    accord::sync::sync(store, &source, desired, &settings, mode, preloaded)
        .await
        .expect("sync")
}

both_backends!(
    rows_read_ahead_serve_a_sync_only_while_nothing_was_written_since,
    |backend| async move {
        let (db, store) = open(backend).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("all.yaml");
        std::fs::write(&file, common::controller::documents(&sample())).expect("write");
        let first = sync_folder(&store, dir.path(), None).await;
        assert_eq!(first.planned.plan.count(Action::Create), 5);
        assert!(matches!(first.outcome, accord::sync::Outcome::Applied(_)));

        let ahead = accord::sync::preload(&store, "git").await;
        let quiet = sync_folder(&store, dir.path(), Some(ahead.expect("a change mark"))).await;
        assert!(!quiet.planned.plan.is_pending(), "{:?}", quiet.planned.plan);
        assert!(matches!(quiet.outcome, accord::sync::Outcome::Unchanged));
        // PostgreSQL's mark is the server's snapshot, which writes to other
        // databases on the same server (the other tests) move as well: there
        // the rows read ahead may be read again, which is only slower.
        if backend == Backend::Sqlite {
            assert!(quiet.planned.preloaded, "nothing was written since");
        }

        // A hand edit committed after the rows were read ahead: they are
        // stale, so the sync reads them again and corrects the edit.
        let ahead = accord::sync::preload(&store, "git").await;
        db.exec("UPDATE permits SET roles = '[\"payment-svc:admin\"]' WHERE id = 'pay' AND app = 'unnamed'")
            .await
            .expect("edit");
        let corrected = sync_folder(&store, dir.path(), Some(ahead.expect("a change mark"))).await;
        assert!(!corrected.planned.preloaded);
        assert_eq!(ids(&corrected.planned.plan, Action::Drift), ["pay"]);
        assert!(matches!(
            corrected.outcome,
            accord::sync::Outcome::Applied(_)
        ));

        // A new declaration planned over rows read ahead of it.
        let ahead = accord::sync::preload(&store, "git").await;
        let mut more = sample();
        more.push(permit("audit").build());
        std::fs::write(&file, common::controller::documents(&more)).expect("write");
        let added = sync_folder(&store, dir.path(), Some(ahead.expect("a change mark"))).await;
        if backend == Backend::Sqlite {
            assert!(added.planned.preloaded);
        }
        assert_eq!(ids(&added.planned.plan, Action::Create), ["audit"]);
    }
);
