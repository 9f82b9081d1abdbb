-- Where each audited change was declared: the file of a folder or Git
-- source; for the Kubernetes source `namespace/Kind/name`, with the
-- object's uid and resourceVersion.
ALTER TABLE audit_log ADD COLUMN origin TEXT;
