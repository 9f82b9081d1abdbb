-- The history is chained: each sync run and each audit row records a hash
-- of its own content (`row_hash`) and a hash of that with the previous
-- row's chain hash (`chain_hash`), so `accord audit verify` finds a row
-- edited, inserted or removed behind accord's back. `audited` is how many
-- audit rows a sync run wrote, so removing the newest audit rows shows too.
ALTER TABLE sync_runs ADD COLUMN audited BIGINT;
ALTER TABLE sync_runs ADD COLUMN row_hash TEXT;
ALTER TABLE sync_runs ADD COLUMN chain_hash TEXT;
ALTER TABLE audit_log ADD COLUMN row_hash TEXT;
ALTER TABLE audit_log ADD COLUMN chain_hash TEXT;

-- Rows written before the chain existed carry no hashes; they are the rows
-- up to `legacy_through`, and any later row without hashes was not written
-- by accord.
CREATE TABLE audit_chain (
    name           TEXT PRIMARY KEY,
    legacy_through BIGINT NOT NULL
);
INSERT INTO audit_chain (name, legacy_through)
    SELECT 'sync_runs', COALESCE(MAX(id), 0) FROM sync_runs;
INSERT INTO audit_chain (name, legacy_through)
    SELECT 'audit_log', COALESCE(MAX(seq), 0) FROM audit_log;
CREATE TRIGGER audit_chain_no_update BEFORE UPDATE ON audit_chain
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;

-- `INSERT OR REPLACE` and `REPLACE INTO` delete the row they replace
-- without firing delete triggers: refuse an insert whose key exists.
CREATE TRIGGER audit_log_no_replace BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT NULL AND EXISTS (SELECT 1 FROM audit_log WHERE seq = NEW.seq)
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER sync_runs_no_replace BEFORE INSERT ON sync_runs
WHEN NEW.id IS NOT NULL AND EXISTS (SELECT 1 FROM sync_runs WHERE id = NEW.id)
BEGIN
    SELECT RAISE(ABORT, 'sync_runs is append-only');
END;
CREATE TRIGGER audit_chain_no_replace BEFORE INSERT ON audit_chain
WHEN EXISTS (SELECT 1 FROM audit_chain WHERE name = NEW.name)
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is append-only');
END;
