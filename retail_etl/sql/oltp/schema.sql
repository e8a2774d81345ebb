-- The synthetic operational (OLTP) shop database, in schema public (retail_etl.generate.oltp).
-- Running the whole file on an empty database gives the full schema. The generator runs the part
-- above the post-data marker, bulk-fills the tables, then runs the rest (pg_restore order).
DROP TABLE IF EXISTS order_items, orders, customers, products, stores CASCADE;

CREATE TABLE stores (
    store_id    int PRIMARY KEY,
    store_name  text,
    store_type  text,
    city        text,
    state       text,
    country     text,
    manager     text,
    opened_date date,
    is_deleted  boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    product_id   bigint PRIMARY KEY,
    product_name text,
    category     text,
    subcategory  text,
    brand        text,
    unit_price   numeric(12, 2) CHECK (unit_price >= 0),
    is_deleted   boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    customer_id bigint PRIMARY KEY,
    first_name  text,
    last_name   text,
    email       text,
    segment     text,
    city        text,
    state       text,
    country     text,
    join_date   date,
    is_deleted  boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    order_id    bigint PRIMARY KEY,
    customer_id bigint NULL,        -- NULL: anonymous (guest) order
    store_id    int NULL,
    order_ts    timestamptz NOT NULL,
    status      text NOT NULL CHECK (status IN ('placed', 'paid', 'shipped', 'cancelled')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE order_items (
    order_id    bigint NOT NULL,
    line_number int NOT NULL CHECK (line_number >= 1),
    product_id  bigint NOT NULL,
    quantity    int NOT NULL CHECK (quantity <> 0),      -- negative: a return
    unit_price  numeric(12, 2) NOT NULL CHECK (unit_price >= 0),
    discount    numeric(12, 2) NOT NULL DEFAULT 0 CHECK (discount >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, line_number)
);

-- post-data: secondary indexes, foreign keys and triggers. Built after a bulk fill, each index
-- is one sort and each foreign key one anti-join instead of per-row upkeep and checks.

-- updated_at: incremental extraction reads "changed since the watermark".
CREATE INDEX stores_updated_at_idx ON stores (updated_at);
CREATE INDEX products_updated_at_idx ON products (updated_at);
CREATE INDEX customers_updated_at_idx ON customers (updated_at);
CREATE INDEX orders_updated_at_idx ON orders (updated_at);
CREATE INDEX order_items_updated_at_idx ON order_items (updated_at);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_order_ts_idx ON orders (order_ts);
CREATE INDEX order_items_product_id_idx ON order_items (product_id);

ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES customers;
ALTER TABLE orders ADD CONSTRAINT orders_store_id_fkey
    FOREIGN KEY (store_id) REFERENCES stores;
ALTER TABLE order_items ADD CONSTRAINT order_items_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders ON DELETE CASCADE;
ALTER TABLE order_items ADD CONSTRAINT order_items_product_id_fkey
    FOREIGN KEY (product_id) REFERENCES products;

-- Like the application would: an UPDATE that does not set updated_at gets the transaction
-- time; one that sets it explicitly keeps its value.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER stores_set_updated_at BEFORE UPDATE ON stores
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER products_set_updated_at BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER customers_set_updated_at BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER orders_set_updated_at BEFORE UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
CREATE TRIGGER order_items_set_updated_at BEFORE UPDATE ON order_items
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
