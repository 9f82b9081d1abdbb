-- The index on (kind, app, object_id) served no query accord makes (the audit
-- log is read by source, kind and time, newest first, which the primary key
-- and the index on (source, seq) serve), yet every audit row paid an insert
-- into it at a random place: a tenth of a 100,000-object first sync on
-- PostgreSQL. An operator who reads one object's history often on a large
-- log can create it again:
--   CREATE INDEX audit_log_by_object ON audit_log (kind, app, object_id);
DROP INDEX IF EXISTS audit_log_by_object;
