-- The run ledger: one row per run, per-entity counts, per-stage timings, rejects, watermarks.
CREATE TABLE IF NOT EXISTS etl.runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'warning', 'failed', 'killed')),
    source      text,
    staging_dir text,
    ledger_pid  int,          -- backend of the run's ledger connection: gone = killed
    error       text,
    summary     jsonb
);

-- Conservation, per run and entity: rows_read = loaded + merged + rejected + duplicate.
CREATE TABLE IF NOT EXISTS etl.run_entities (
    run_id         bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
    entity         text NOT NULL,
    rows_read      bigint NOT NULL,
    rows_loaded    bigint NOT NULL,
    rows_merged    bigint NOT NULL,
    rows_rejected  bigint NOT NULL,
    rows_duplicate bigint NOT NULL,
    rows_inferred  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, entity),
    CHECK (rows_read = rows_loaded + rows_merged + rows_rejected + rows_duplicate)
);

CREATE TABLE IF NOT EXISTS etl.run_stages (
    run_id       bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
    seq          int NOT NULL,
    stage        text NOT NULL,
    rows         bigint,
    seconds      double precision NOT NULL,
    peak_rss_mb  double precision,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE IF NOT EXISTS etl.rejects (
    run_id  bigint NOT NULL REFERENCES etl.runs (run_id) ON DELETE CASCADE,
    entity  text NOT NULL,
    file    text NOT NULL,
    line    bigint NOT NULL,
    rules   text[] NOT NULL,
    row     jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS rejects_run_idx ON etl.rejects (run_id);
-- a reload finds the rejects it would repeat (and stores them once)
CREATE INDEX IF NOT EXISTS rejects_line_idx ON etl.rejects (entity, file, line);

-- High-water marks of incremental sources, advanced only by the run that commits.
CREATE TABLE IF NOT EXISTS etl.watermarks (
    source     text NOT NULL,
    entity     text NOT NULL,
    watermark  timestamptz,
    tiebreak   text,
    run_id     bigint REFERENCES etl.runs (run_id),
    PRIMARY KEY (source, entity)
);

-- The digest of the sql/ files last applied: the DDL runs again only when they change.
CREATE TABLE IF NOT EXISTS etl.schema_state (
    digest     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- The mart's refresh (load/refresh.py): when it last succeeded, by which run, how long it
-- took, and the error of the last attempt if it failed (the next run retries it). One row,
-- 'mart'; none yet: the mart was never filled (the next refresh fills it whole).
CREATE TABLE IF NOT EXISTS etl.mart_refresh (
    view_name    text PRIMARY KEY,
    refreshed_at timestamptz,
    run_id       bigint,
    seconds      double precision,
    error        text
);

-- The days whose lines a run changed in a fact table (written, replaced, deleted or
-- re-pointed; or pointing to a dimension version changed in place), written in the run's
-- transaction; the mart's refresh recomputes those days and deletes the rows it read.
-- Not unique: a run writing while a refresh reads adds rows the refresh does not see.
CREATE TABLE IF NOT EXISTS etl.touched_days (
    fact     text NOT NULL,
    date_key int NOT NULL,
    run_id   bigint
);

-- The key of the mart's pseudonyms (mart.customers): one row, made at random once, replaced
-- by `retail-etl db roles` from RETAIL_ETL_MASKING_KEY. Only the owner reads it.
CREATE TABLE IF NOT EXISTS etl.masking_key (key bytea NOT NULL);
INSERT INTO etl.masking_key SELECT gen_random_bytes(32)
WHERE NOT EXISTS (SELECT 1 FROM etl.masking_key);

-- A personal value's pseudonym under `key` (etl.masking_key): `prefix` and 12 hex digits of
-- its HMAC (SHA-256); an email's is 16 hex digits @masked.invalid (case-blind). Stable across
-- runs and joinable, changed with the key, not reversible; NULL stays NULL. mart.customers
-- and `retail-etl db mask-copy` show these. The key is an argument, not read here: a reader
-- of mart.customers may run these, but never read etl. (A standard SQL body: inlined.)
CREATE OR REPLACE FUNCTION etl.pseudonym(value text, prefix text, key bytea) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN prefix || left(encode(public.hmac(convert_to(value, 'UTF8'), key, 'sha256'), 'hex'), 12);
CREATE OR REPLACE FUNCTION etl.pseudonym_email(value text, key bytea) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN left(encode(public.hmac(convert_to(lower(value), 'UTF8'), key, 'sha256'), 'hex'), 16) || '@masked.invalid';
