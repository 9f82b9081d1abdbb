-- Two roles for accord on PostgreSQL: the owner, which applies migrations
-- (`accord migrate`-style: `--migrate-database` or `migrateDatabase`), and
-- `accord_app`, which `accord run` and `accord apply` connect as. The app
-- role reads and writes the reconciled tables but may only add to the
-- history (`sync_runs`, `audit_log`): it cannot update, delete or truncate
-- them, and, not owning them, cannot drop or disable their triggers.
--
-- Run as the owner after the first migration, and again after upgrading
-- accord (new tables need their grants):
--   psql "postgres://owner@db/accord" -f examples/postgres-roles.sql
-- Create the login role first if it does not exist:
--   CREATE ROLE accord_app LOGIN PASSWORD '…';
GRANT USAGE ON SCHEMA public TO accord_app;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON organizations, organization_members, permits, enrollments,
       ledger, claims, deletion_guard
    TO accord_app;
GRANT SELECT, INSERT ON sync_runs, audit_log TO accord_app;
GRANT SELECT ON audit_chain, _sqlx_migrations TO accord_app;
