-- The transaction that last wrote each permit and enrollment for accord, as
-- the row's version (`xmin`) then carried it. While the two agree, nothing
-- has written the row since, so its content is what `applied_hash` hashes
-- and a plan need not read it; any later write (a hand edit, a restore)
-- makes a new version with another `xmin`, and the row is read whole again.
-- Rows written before this column existed are read whole until accord next
-- writes them.
ALTER TABLE permits ADD COLUMN applied_xid xid;
ALTER TABLE enrollments ADD COLUMN applied_xid xid;
