-- The replace guards look up a key only when the insert names one: an
-- insert that lets SQLite assign the key sees NEW.seq (NEW.id) = -1, cannot
-- replace anything, and was paying an index lookup per audit row.
DROP TRIGGER audit_log_no_replace;
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN NEW.seq > 0 AND EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
DROP TRIGGER sync_runs_no_replace;
CREATE TRIGGER sync_runs_no_replace BEFORE INSERT ON sync_runs
WHEN NEW.id > 0 AND EXISTS (SELECT 1 FROM sync_runs WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'sync_runs is append-only');
END;
