-- Every distinct version each dimension's sources have shown, including those that changed
-- nothing when they arrived. A late version can make such a "no change" version a change
-- again; keeping them is what makes the history independent of arrival order.
CREATE TABLE IF NOT EXISTS etl.dim_product_observed (
    product_id   text NOT NULL,
    valid_from   timestamptz NOT NULL,
    product_name text,
    category     text,
    subcategory  text,
    brand        text,
    price        numeric(12, 2),
    run_id       bigint,
    PRIMARY KEY (product_id, valid_from)
);

CREATE TABLE IF NOT EXISTS etl.dim_customer_observed (
    customer_id   text NOT NULL,
    valid_from    timestamptz NOT NULL,
    customer_name text,
    email         text,
    segment       text,
    city          text,
    state         text,
    country       text,
    join_date     date,
    run_id        bigint,
    PRIMARY KEY (customer_id, valid_from)
);

CREATE TABLE IF NOT EXISTS etl.dim_store_observed (
    store_id    text NOT NULL,
    valid_from  timestamptz NOT NULL,
    store_name  text,
    store_type  text,
    city        text,
    state       text,
    country     text,
    manager     text,
    opened_date date,
    run_id      bigint,
    PRIMARY KEY (store_id, valid_from)
);
