-- Monitoring (retail_etl/monitor): a run past a data-quality threshold commits as
-- `warning` with what it found; the sources a run read give each one's last success.
ALTER TABLE etl.runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE etl.runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'ok', 'warning', 'failed', 'killed'));
ALTER TABLE etl.runs ADD COLUMN IF NOT EXISTS sources text[];
ALTER TABLE etl.runs ADD COLUMN IF NOT EXISTS warnings jsonb;
