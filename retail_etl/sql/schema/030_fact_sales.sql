-- One row per order line, range-partitioned by the month of the sale (UTC date of order_ts).
-- Partitions are created by the load as data needs them (dw.fact_sales_YYYYMM).
-- (order_id, line_number) is unique by construction of the merge; a partitioned table
-- cannot enforce it without the partition key.
CREATE TABLE IF NOT EXISTS dw.fact_sales (
    order_id      text NOT NULL,
    line_number   int NOT NULL CHECK (line_number >= 1),
    order_ts      timestamptz NOT NULL,
    date_key      int NOT NULL,
    product_key   int NOT NULL,
    customer_key  int NOT NULL,
    store_key     int NOT NULL,
    quantity      int NOT NULL CHECK (quantity <> 0),
    unit_price    numeric(12, 2) NOT NULL CHECK (unit_price >= 0),
    discount      numeric(12, 2) NOT NULL CHECK (discount >= 0),
    total_amount  numeric(22, 2) NOT NULL,  -- int32 x decimal(12,2) always fits
    updated_at    timestamptz NOT NULL,
    run_id        bigint
) PARTITION BY RANGE (date_key);

CREATE INDEX IF NOT EXISTS fact_sales_line_idx ON dw.fact_sales (order_id, line_number);
CREATE INDEX IF NOT EXISTS fact_sales_product_idx ON dw.fact_sales (product_key);
CREATE INDEX IF NOT EXISTS fact_sales_customer_idx ON dw.fact_sales (customer_key);
CREATE INDEX IF NOT EXISTS fact_sales_store_idx ON dw.fact_sales (store_key);
CREATE INDEX IF NOT EXISTS fact_sales_date_product_idx ON dw.fact_sales (date_key, product_key);
