-- The keys each source manages are its ledger, in the code and the schema
-- alike (the table was named managed_objects).
ALTER TABLE managed_objects RENAME TO ledger;
ALTER INDEX managed_objects_by_source RENAME TO ledger_by_source;
ALTER INDEX managed_objects_pkey RENAME TO ledger_pkey;
