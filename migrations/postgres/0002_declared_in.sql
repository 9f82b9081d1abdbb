-- The file that declared each managed object, so a delete can be credited
-- to the author of the commit that removed it.
ALTER TABLE managed_objects ADD COLUMN declared_in TEXT;
