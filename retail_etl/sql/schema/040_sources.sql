-- Incremental sources (issue 3): deletions and the keys each source has shown.

-- Rows a run removed: fact lines of cancelled orders and deleted lines, dimension keys a
-- source no longer has. Not part of the conservation check (they are not rows read).
ALTER TABLE etl.run_entities ADD COLUMN IF NOT EXISTS rows_deleted bigint NOT NULL DEFAULT 0;

-- The business keys each incremental source has delivered, per entity: a key that leaves the
-- source is closed only if this source delivered it (a key from a file drop is left alone).
CREATE TABLE IF NOT EXISTS etl.source_keys (
    source text NOT NULL,
    entity text NOT NULL,
    key    text NOT NULL,
    PRIMARY KEY (source, entity, key)
);

ALTER TABLE etl.watermarks ADD COLUMN IF NOT EXISTS updated_at timestamptz;

-- Rows a run removed, by reason (order_deleted, line_deleted, order_cancelled, key_gone).
ALTER TABLE etl.run_entities ADD COLUMN IF NOT EXISTS deleted_by jsonb NOT NULL DEFAULT '{}';
-- How many runs of a source went by since its last scan for lines it no longer has, and
-- what that scan cost (sources.NAME.line_scan_every; "auto" keeps the scans under 15% of
-- the runs' time).
CREATE TABLE IF NOT EXISTS etl.source_scans (
    source      text NOT NULL,
    fact        text NOT NULL,
    runs_since  int NOT NULL DEFAULT 0,
    last_run_id bigint,
    PRIMARY KEY (source, fact)
);
ALTER TABLE etl.source_scans ADD COLUMN IF NOT EXISTS last_seconds float8;
