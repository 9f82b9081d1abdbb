-- accord's schema for SQLite. Lists (slugs, roles, allowed models) are JSON
-- arrays kept sorted and without duplicates; times are RFC 3339 text.

CREATE TABLE organizations (
    app            TEXT    NOT NULL,
    slug           TEXT    NOT NULL,
    name           TEXT,
    monthly_tokens BIGINT,
    allowed_models TEXT    NOT NULL DEFAULT '[]',
    -- An operator's switch: FALSE suspends reconciliation of this organization.
    gitops         BOOLEAN NOT NULL DEFAULT TRUE,
    managed_by     TEXT,
    applied_hash   TEXT,
    updated_at     TEXT,
    PRIMARY KEY (app, slug)
);

CREATE TABLE organization_members (
    app         TEXT   NOT NULL,
    org_slug    TEXT   NOT NULL,
    user_id     TEXT,
    contact_id  TEXT,
    role        TEXT   NOT NULL,
    token_limit BIGINT,
    FOREIGN KEY (app, org_slug) REFERENCES organizations (app, slug) ON DELETE CASCADE,
    CHECK ((user_id IS NULL) <> (contact_id IS NULL))
);
CREATE INDEX organization_members_by_org ON organization_members (app, org_slug);

CREATE TABLE permits (
    app           TEXT NOT NULL,
    id            TEXT NOT NULL,
    permission_id TEXT NOT NULL,
    slugs         TEXT NOT NULL DEFAULT '[]',
    roles         TEXT NOT NULL DEFAULT '[]',
    managed_by    TEXT,
    applied_hash  TEXT,
    updated_at    TEXT,
    PRIMARY KEY (app, id)
);

CREATE TABLE enrollments (
    app          TEXT NOT NULL,
    id           TEXT NOT NULL,
    role         TEXT NOT NULL,
    user_id      TEXT,
    contact_id   TEXT,
    managed_by   TEXT,
    applied_hash TEXT,
    updated_at   TEXT,
    PRIMARY KEY (app, id),
    CHECK ((user_id IS NULL) <> (contact_id IS NULL))
);

-- The keys each source manages, kept apart from the rows so that a row
-- deleted by hand is still known to be missing.
CREATE TABLE managed_objects (
    kind          TEXT NOT NULL,
    app           TEXT NOT NULL,
    object_id     TEXT NOT NULL,
    source        TEXT NOT NULL,
    -- The live hash last reported as drift, so report mode audits it once.
    reported_hash TEXT,
    PRIMARY KEY (kind, app, object_id)
);
CREATE INDEX managed_objects_by_source ON managed_objects (source);

CREATE TABLE sync_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    created     BIGINT  NOT NULL,
    updated     BIGINT  NOT NULL,
    deleted     BIGINT  NOT NULL,
    drift       BIGINT  NOT NULL,
    conflict    BIGINT  NOT NULL,
    suspended   BIGINT  NOT NULL,
    message     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX sync_runs_by_source ON sync_runs (source, id);

CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT    NOT NULL,
    actor     TEXT    NOT NULL,
    source    TEXT    NOT NULL,
    revision  TEXT    NOT NULL,
    sync_run  BIGINT  NOT NULL REFERENCES sync_runs (id),
    action    TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    app       TEXT    NOT NULL,
    object_id TEXT    NOT NULL,
    before    TEXT,
    after     TEXT,
    diff      TEXT    NOT NULL
);
CREATE INDEX audit_log_by_source ON audit_log (source, seq);
CREATE INDEX audit_log_by_object ON audit_log (kind, app, object_id);

-- The audit log is append-only, and the database itself enforces it.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
