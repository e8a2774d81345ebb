-- The heartbeat (retail_etl/ops/drill.py): when the newest change was committed. Every load
-- writes it in its transaction, and `retail-etl backup` before it backs up; a restored
-- copy's heartbeat gives the drill its RPO (how old the newest change it recovered is).
CREATE TABLE IF NOT EXISTS etl.heartbeat (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    at timestamptz NOT NULL
);

-- Archived months (retail_etl/ops/archive.py): a fact's month partition exported to Parquet
-- (state 'exported': verified, still attached) and then detached and dropped ('archived').
-- A load whose lines fall into a month listed here fails, naming it (`unarchive` it first).
CREATE TABLE IF NOT EXISTS etl.archived_months (
    fact        text NOT NULL,
    month       int NOT NULL,  -- YYYYMM
    state       text NOT NULL CHECK (state IN ('exported', 'archived')),
    path        text NOT NULL,
    manifest    jsonb NOT NULL,
    exported_at timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz,
    PRIMARY KEY (fact, month)
);

-- What `retail-etl maintain` did (retail_etl/ops/maintain.py), one row per action.
CREATE TABLE IF NOT EXISTS etl.maintenance (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    action  text NOT NULL,  -- vacuum, reindex, partition, disk
    target  text NOT NULL,
    detail  jsonb NOT NULL DEFAULT '{}',
    seconds numeric(12, 3)
);
