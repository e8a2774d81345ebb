-- The heartbeat (retail_etl/ops/drill.py): when the newest change was committed. Every load
-- writes it in its transaction, and `retail-etl backup` before it backs up; a restored
-- copy's heartbeat gives the drill its RPO (how old the newest change it recovered is).
CREATE TABLE IF NOT EXISTS etl.heartbeat (
    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    at timestamptz NOT NULL
);
