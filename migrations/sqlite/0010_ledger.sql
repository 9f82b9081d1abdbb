-- The keys each source manages are its ledger, in the code and the schema
-- alike (the table was named managed_objects).
ALTER TABLE managed_objects RENAME TO ledger;
DROP INDEX IF EXISTS managed_objects_by_source;
CREATE INDEX ledger_by_source ON ledger (source);
