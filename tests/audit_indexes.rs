//! Every read the pages make is answered from an index, on both backends:
//! the audit log under each filter and the common combinations of them, one
//! object's history, the organizations list and one organization. The plan
//! is the database's own (`EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN` on
//! PostgreSQL) for exactly the statement the page runs (`AnyStore::query_plan`).
//! The overview and a source's page read no database: they show the
//! controller's state.

mod common;

use accord::model::Kind;
use accord::store::{AnyStore, AuditQuery, Read, Store};
use chrono::{TimeZone, Utc};
use common::builders::{org, permit};
use common::db::{sync_objects, Backend, TestDb};

/// A store whose PostgreSQL plans show the index it would use: a table
/// this small is read most cheaply whole, so sequential scans are priced
/// out (a read no index serves still shows one).
async fn open(db: &TestDb) -> AnyStore {
    let url = match db.backend {
        Backend::Sqlite => db.url.clone(),
        Backend::Postgres => {
            let joint = if db.url.contains('?') { '&' } else { '?' };
            format!("{}{joint}options=-c%20enable_seqscan%3Doff", db.url)
        }
    };
    AnyStore::connect(&url).await.expect("connect and migrate")
}

/// A few audit rows, so that no plan is made for an empty table.
async fn fill(store: &AnyStore) {
    sync_objects(
        store,
        "git",
        vec![org("acme").build(), permit("pay").build()],
    )
    .await;
}

fn query() -> AuditQuery {
    AuditQuery {
        limit: 51,
        ..AuditQuery::default()
    }
}

fn at(hour: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, hour, 0, 0).unwrap()
}

/// The audit page's reads that must come from an index, and the indexes
/// (any one of them) that serve each.
fn audit_reads() -> Vec<(&'static str, AuditQuery, &'static [&'static str])> {
    let object = AuditQuery {
        kind: Some(Kind::Permit),
        app: Some("unnamed".into()),
        id: Some("pay".into()),
        ..query()
    };
    vec![
        (
            "source",
            AuditQuery {
                source: Some("git".into()),
                ..query()
            },
            &["audit_log_by_source"],
        ),
        (
            "source, next page",
            AuditQuery {
                source: Some("git".into()),
                before: Some(1000),
                ..query()
            },
            &["audit_log_by_source"],
        ),
        (
            "actor",
            AuditQuery {
                actor: Some("jane".into()),
                ..query()
            },
            &["audit_log_by_actor"],
        ),
        (
            "action",
            AuditQuery {
                action: Some("drift_detected".into()),
                ..query()
            },
            &["audit_log_by_action"],
        ),
        (
            "since",
            AuditQuery {
                since: Some(at(10)),
                ..query()
            },
            &["audit_log_by_time"],
        ),
        (
            "until",
            AuditQuery {
                until: Some(at(12)),
                ..query()
            },
            &["audit_log_by_time"],
        ),
        (
            "since and until",
            AuditQuery {
                since: Some(at(10)),
                until: Some(at(12)),
                ..query()
            },
            &["audit_log_by_time"],
        ),
        ("object", object.clone(), &["audit_log_by_object"]),
        (
            "object, next page",
            AuditQuery {
                before: Some(1000),
                ..object
            },
            &["audit_log_by_object"],
        ),
        (
            "source and actor",
            AuditQuery {
                source: Some("git".into()),
                actor: Some("jane".into()),
                ..query()
            },
            &["audit_log_by_source", "audit_log_by_actor"],
        ),
        (
            "source and action",
            AuditQuery {
                source: Some("git".into()),
                action: Some("delete".into()),
                ..query()
            },
            &["audit_log_by_source", "audit_log_by_action"],
        ),
        (
            "actor and time range",
            AuditQuery {
                actor: Some("jane".into()),
                since: Some(at(10)),
                until: Some(at(12)),
                ..query()
            },
            &["audit_log_by_actor", "audit_log_by_time"],
        ),
        (
            "source, kind and time range",
            AuditQuery {
                source: Some("git".into()),
                kind: Some(Kind::Organization),
                since: Some(at(10)),
                ..query()
            },
            &["audit_log_by_source", "audit_log_by_time"],
        ),
        (
            "one entry",
            AuditQuery {
                seq: Some(7),
                ..query()
            },
            &["INTEGER PRIMARY KEY", "audit_log_pkey"],
        ),
    ]
}

/// What is wrong with `plan` for a read of `table` that `indexes` should
/// serve: a table read whole, rows sorted rather than read in order, or
/// none of the indexes named.
fn problems(backend: Backend, table: &str, plan: &str, indexes: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    if !indexes.iter().any(|index| plan.contains(index)) {
        problems.push(format!("uses none of {indexes:?}"));
    }
    match backend {
        Backend::Sqlite => {
            // Every step over the table is a SEARCH (an index bounds it),
            // never a SCAN of all of it, and nothing is sorted afterwards.
            for step in plan.lines().filter(|l| l.contains(table)) {
                if !step.trim_start().starts_with("SEARCH") {
                    problems.push(format!("reads it whole: {step}"));
                }
            }
            if plan.contains("TEMP B-TREE") {
                problems.push("sorts the rows".into());
            }
        }
        Backend::Postgres => {
            // Every scan of the table is an index scan bounded by an index
            // condition (a scan without one reads the whole index).
            let lines: Vec<&str> = plan.lines().collect();
            for (n, line) in lines.iter().enumerate() {
                if !line.contains(&format!(" on {table}")) {
                    continue;
                }
                if line.contains("Seq Scan") {
                    problems.push(format!("reads it whole: {line}"));
                    continue;
                }
                let bounded = lines[n + 1..]
                    .iter()
                    .take_while(|next| !next.contains("->"))
                    .any(|next| next.contains("Index Cond"));
                if !bounded && !line.contains("Bitmap Heap Scan") {
                    problems.push(format!("reads a whole index: {line}"));
                }
            }
        }
    }
    problems
}

both_backends!(
    every_filter_of_the_audit_page_is_served_by_an_index,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let store = open(&db).await;
        fill(&store).await;
        let mut failures = Vec::new();
        for (what, query, indexes) in audit_reads() {
            let plan = store
                .query_plan(&Read::Audit(&query))
                .await
                .expect("explain");
            let found = problems(backend, "audit_log", &plan, indexes);
            if !found.is_empty() {
                failures.push(format!("{what}: {}\n{plan}", found.join("; ")));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));

        // An id in any kind and app: the index finds its rows, which are
        // few, and the database sorts them.
        let id = AuditQuery {
            id: Some("pay".into()),
            ..query()
        };
        let plan = store.query_plan(&Read::Audit(&id)).await.expect("explain");
        assert!(plan.contains("audit_log_by_object"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
);

both_backends!(the_organization_pages_read_by_key, |backend| async move {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    fill(&store).await;
    let pk = ["sqlite_autoindex_organizations_1", "organizations_pkey"];
    for (what, read, indexes) in [
        (
            "a later page of the list",
            Read::Organizations {
                after: Some(("unnamed", "acme")),
                limit: 201,
            },
            &pk[..],
        ),
        (
            "one organization in every app",
            Read::Organization {
                slug: "acme",
                app: None,
            },
            &["organizations_by_slug"][..],
        ),
    ] {
        let plan = store.query_plan(&read).await.expect("explain");
        let found = problems(backend, "organizations", &plan, indexes);
        assert!(found.is_empty(), "{what}: {}\n{plan}", found.join("; "));
    }
    // The first page reads the key's index in order and stops at the
    // limit: no sort, nothing else read.
    let plan = store
        .query_plan(&Read::Organizations {
            after: None,
            limit: 201,
        })
        .await
        .expect("explain");
    assert!(pk.iter().any(|index| plan.contains(index)), "{plan}");
    assert!(
        !plan.contains("TEMP B-TREE") && !plan.contains("Sort") && !plan.contains("Seq Scan"),
        "{plan}"
    );
});

both_backends!(
    the_filter_indexes_are_added_to_an_existing_database,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let store = open(&db).await;
        fill(&store).await;
        drop(store);
        // The database as the release before them left it, with the
        // object index an operator may have created by hand (migration 0005
        // dropped it and said how).
        for index in [
            "audit_log_by_object",
            "audit_log_by_actor",
            "audit_log_by_action",
            "audit_log_by_time",
            "organizations_by_slug",
        ] {
            db.exec(&format!("DROP INDEX {index}"))
                .await
                .expect("drop index");
        }
        db.exec("CREATE INDEX audit_log_by_object ON audit_log (kind, app, object_id)")
            .await
            .expect("the operator's index");
        // The migration that adds them, by its number on each backend.
        let version = match backend {
            Backend::Sqlite => 11,
            Backend::Postgres => 12,
        };
        db.exec(&format!(
            "DELETE FROM _sqlx_migrations WHERE version = {version}"
        ))
        .await
        .expect("the migration pending");

        let store = open(&db).await;
        let history = store.audit(&query()).await.expect("the history is kept");
        assert_eq!(history.len(), 2);
        let object = AuditQuery {
            kind: Some(Kind::Permit),
            app: Some("unnamed".into()),
            id: Some("pay".into()),
            ..query()
        };
        let plan = store
            .query_plan(&Read::Audit(&object))
            .await
            .expect("explain");
        let found = problems(backend, "audit_log", &plan, &["audit_log_by_object"]);
        assert!(found.is_empty(), "{}\n{plan}", found.join("; "));
        let verified = store
            .verify_chain(Default::default())
            .await
            .expect("verify");
        assert!(verified.problem.is_none(), "{:?}", verified.problem);
    }
);

both_backends!(
    a_time_range_finds_every_row_in_it_even_when_clocks_disagree_by_minutes,
    |backend| async move {
        // Rows 40 minutes to 10 hours apart, two of them written earlier
        // than the row before them (15 and 30 minutes: two writers whose
        // clocks disagree), by hand, with the times chosen.
        let db = TestDb::new(backend).await;
        let store = open(&db).await;
        let minutes = [-600, -480, -360, -300, -180, -210, -120, -60, -30, -45, 0];
        let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 12, 0, 0).unwrap();
        let stamp = |m: i64| (t0 + chrono::Duration::minutes(m)).to_rfc3339();
        db.exec(&format!(
            "INSERT INTO sync_runs (source, revision, actor, started_at, finished_at, outcome, \
             created, updated, deleted, drift, conflict, suspended) \
             VALUES ('hand', 'r', 'a', '{0}', '{0}', 'applied', 0, 0, 0, 0, 0, 0)",
            stamp(0)
        ))
        .await
        .expect("a sync run");
        for (n, m) in minutes.iter().enumerate() {
            db.exec(&format!(
                "INSERT INTO audit_log (at, actor, source, revision, sync_run, action, kind, app, \
                 object_id, diff) VALUES ('{}', 'a', 'hand', 'r', 1, 'update', 'Permit', \
                 'unnamed', 'row-{n}', '')",
                stamp(*m)
            ))
            .await
            .expect("an audit row");
        }
        let grid = [-700, -480, -400, -300, -200, -190, -100, -40, -30, 0, 60];
        let bounds = std::iter::once(None).chain(grid.iter().map(|m| Some(*m)));
        let mut wrong = Vec::new();
        for since in bounds.clone() {
            for until in bounds.clone() {
                let found: Vec<String> = store
                    .audit(&AuditQuery {
                        since: since.map(|m| t0 + chrono::Duration::minutes(m)),
                        until: until.map(|m| t0 + chrono::Duration::minutes(m)),
                        limit: 100,
                        ..AuditQuery::default()
                    })
                    .await
                    .expect("audit")
                    .into_iter()
                    .map(|e| e.id)
                    .collect();
                let expected: Vec<String> = minutes
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, m)| {
                        since.is_none_or(|s| **m >= s) && until.is_none_or(|u| **m < u)
                    })
                    .map(|(n, _)| format!("row-{n}"))
                    .collect();
                if found != expected {
                    wrong.push(format!("{since:?}..{until:?}: {found:?}, not {expected:?}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
);
