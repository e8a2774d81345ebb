-- Dimensions. Surrogate keys are owned by the warehouse and assigned by the run that holds
-- the warehouse lock; -1 is the "unknown" member. valid_to = 'infinity' for current rows.
CREATE TABLE IF NOT EXISTS dw.dim_date (
    date_key       int PRIMARY KEY,            -- YYYYMMDD
    date           date NOT NULL UNIQUE,
    day_of_week    smallint NOT NULL,          -- ISO: 1 = Monday
    day_name       text NOT NULL,
    month          smallint NOT NULL,
    month_name     text NOT NULL,
    quarter        smallint NOT NULL,
    year           int NOT NULL,
    iso_week       smallint NOT NULL,
    is_weekend     boolean NOT NULL,
    fiscal_year    int NOT NULL,               -- named after the calendar year it ends in
    fiscal_quarter smallint NOT NULL,
    run_id         bigint
);

CREATE TABLE IF NOT EXISTS dw.dim_product (
    product_key  int PRIMARY KEY,
    product_id   text,
    product_name text,
    category     text,
    subcategory  text,
    brand        text,
    price        numeric(12, 2),
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz NOT NULL,
    is_current   boolean NOT NULL,
    is_inferred  boolean NOT NULL DEFAULT false,
    run_id       bigint,
    CHECK (valid_from < valid_to)
);
CREATE UNIQUE INDEX IF NOT EXISTS dim_product_version_uq ON dw.dim_product (product_id, valid_from);
CREATE UNIQUE INDEX IF NOT EXISTS dim_product_current_uq ON dw.dim_product (product_id) WHERE is_current;

CREATE TABLE IF NOT EXISTS dw.dim_customer (
    customer_key  int PRIMARY KEY,
    customer_id   text,
    customer_name text,
    email         text,
    segment       text,
    city          text,
    state         text,
    country       text,
    join_date     date,
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz NOT NULL,
    is_current    boolean NOT NULL,
    is_inferred   boolean NOT NULL DEFAULT false,
    run_id        bigint,
    CHECK (valid_from < valid_to)
);
CREATE UNIQUE INDEX IF NOT EXISTS dim_customer_version_uq ON dw.dim_customer (customer_id, valid_from);
CREATE UNIQUE INDEX IF NOT EXISTS dim_customer_current_uq ON dw.dim_customer (customer_id) WHERE is_current;

CREATE TABLE IF NOT EXISTS dw.dim_store (
    store_key    int PRIMARY KEY,
    store_id     text,
    store_name   text,
    store_type   text,
    city         text,
    state        text,
    country      text,
    manager      text,
    opened_date  date,
    valid_from   timestamptz NOT NULL,
    valid_to     timestamptz NOT NULL,
    is_current   boolean NOT NULL,
    is_inferred  boolean NOT NULL DEFAULT false,
    run_id       bigint,
    CHECK (valid_from < valid_to)
);
CREATE UNIQUE INDEX IF NOT EXISTS dim_store_version_uq ON dw.dim_store (store_id, valid_from);
CREATE UNIQUE INDEX IF NOT EXISTS dim_store_current_uq ON dw.dim_store (store_id) WHERE is_current;

-- The unknown members: sales with a NULL customer or store point here.
INSERT INTO dw.dim_product (product_key, valid_from, valid_to, is_current)
VALUES (-1, '-infinity', 'infinity', true) ON CONFLICT DO NOTHING;
INSERT INTO dw.dim_customer (customer_key, customer_name, valid_from, valid_to, is_current)
VALUES (-1, 'Unknown', '-infinity', 'infinity', true) ON CONFLICT DO NOTHING;
INSERT INTO dw.dim_store (store_key, store_name, valid_from, valid_to, is_current)
VALUES (-1, 'Unknown', '-infinity', 'infinity', true) ON CONFLICT DO NOTHING;
