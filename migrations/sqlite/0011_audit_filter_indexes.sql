-- The audit page (and /api/v1/audit, `accord audit`) shows the newest 50
-- entries that match its filters, and each filter needs an index that hands
-- out its rows newest first: without one, a filter that matches few of a
-- million rows (one object's history, one actor, `drift_detected`, last
-- night) reads the whole log. On SQLite every index ends with the rowid,
-- which is `seq`, so `(actor)` is in effect `(actor, seq)`.
--
-- One object's history. Its id leads, so a search by id alone (any kind, any
-- app) uses it too. It replaces the (kind, app, object_id) index that
-- migration 0005 dropped, which an operator may have created again.
DROP INDEX IF EXISTS audit_log_by_object;
CREATE INDEX audit_log_by_object ON audit_log (object_id, app, kind);
-- Few distinct values, and each new row goes to the end of its value's
-- range: cheap to keep.
CREATE INDEX audit_log_by_actor ON audit_log (actor);
CREATE INDEX audit_log_by_action ON audit_log (action);
-- Times rise with `seq` (rows are appended one writer at a time, each with
-- the time it is written), so a time range is turned into a range of `seq`
-- by two probes of this index (see `audit` in src/store/sql.rs).
CREATE INDEX audit_log_by_time ON audit_log (at);
-- An organization's page finds it by slug in every app.
CREATE INDEX organizations_by_slug ON organizations (slug, app);
