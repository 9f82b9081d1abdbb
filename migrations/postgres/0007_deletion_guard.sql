-- What the deletion guard last refused for each source, and an operator's
-- approval of exactly that set.
CREATE TABLE deletion_guard (
    source        TEXT PRIMARY KEY,
    refused_set   TEXT,
    refused_count BIGINT,
    refused_at    TIMESTAMPTZ,
    approved_set  TEXT,
    approved_by   TEXT,
    approved_at   TIMESTAMPTZ,
    -- Deletions before this sync run no longer count (an approved or
    -- forced apply starts a new window).
    window_after_run BIGINT
);
-- The guard sums a source's recent sync runs.
CREATE INDEX sync_runs_by_source_time ON sync_runs (source, finished_at);
