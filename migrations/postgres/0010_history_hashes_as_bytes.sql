-- The history's hashes as bytes rather than hex: half the bytes per audit
-- row (a first sync writes one per object). A row's content hash keeps its
-- first 16 bytes; the chain hash all 32.
ALTER TABLE sync_runs ALTER COLUMN row_hash TYPE bytea USING substring(decode(row_hash, 'hex') FROM 1 FOR 16);
ALTER TABLE sync_runs ALTER COLUMN chain_hash TYPE bytea USING decode(chain_hash, 'hex');
ALTER TABLE audit_log ALTER COLUMN row_hash TYPE bytea USING substring(decode(row_hash, 'hex') FROM 1 FOR 16);
ALTER TABLE audit_log ALTER COLUMN chain_hash TYPE bytea USING decode(chain_hash, 'hex');
