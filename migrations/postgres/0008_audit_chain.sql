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
CREATE FUNCTION audit_chain_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain is append-only';
END
$$;
CREATE TRIGGER audit_chain_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_chain
    FOR EACH ROW EXECUTE FUNCTION audit_chain_append_only();
CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
    FOR EACH STATEMENT EXECUTE FUNCTION audit_chain_append_only();
