-- Sync runs are history, like the audit log whose rows refer to them: the
-- database refuses to change or delete them. (SQLite also keeps the audit
-- log's foreign key, which it checks cheaply; PostgreSQL drops it, see its
-- migration 0004.)
CREATE TRIGGER sync_runs_no_update BEFORE UPDATE ON sync_runs
BEGIN
    SELECT RAISE(ABORT, 'sync_runs is append-only');
END;
CREATE TRIGGER sync_runs_no_delete BEFORE DELETE ON sync_runs
BEGIN
    SELECT RAISE(ABORT, 'sync_runs is append-only');
END;
