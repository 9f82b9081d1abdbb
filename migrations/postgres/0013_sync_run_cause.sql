-- What started each recorded sync (start, interval, webhook, a request
-- through the API, `accord apply`): the source page's history shows it.
-- Older rows have none; the history's hash covers it when present.
ALTER TABLE sync_runs ADD COLUMN cause text;
