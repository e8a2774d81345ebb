-- Issue 22: erasure requests (`retail-etl forget --customer ID`, GDPR art. 17): who asked,
-- when, and what was erased. A key listed here has its personal attributes (spec.Column
-- personal) blanked by every later load as well, so a re-delivered row does not bring them
-- back.
CREATE TABLE IF NOT EXISTS etl.erasures (
    entity    text NOT NULL,
    key       text NOT NULL,
    erased_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    erased_by text NOT NULL DEFAULT session_user,
    reason    text,
    columns   text[] NOT NULL,  -- the attributes and source columns erased
    changed   jsonb NOT NULL,   -- rows changed, per table
    PRIMARY KEY (entity, key, erased_at)
);
CREATE INDEX IF NOT EXISTS erasures_key_idx ON etl.erasures (entity, key);
