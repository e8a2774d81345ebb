-- The mart: the one schema the warehouse's readers query (analysts, reports, notebooks; the
-- reporting role sees nothing else). Views over dw, and the heavy aggregations kept in
-- tables (materialized): mart.kpi_daily, kpi_monthly, product_monthly, customer_days,
-- cohort_cells and customer_summary. Every run records the days whose sales it changed
-- (etl.touched_days, in its own transaction); the refresh (the run's `refresh` stage, after
-- its commit; `retail-etl refresh` by hand) recomputes only those days, their months and
-- their customers, in one transaction: readers see the old figures until it commits. A plain
-- REFRESH MATERIALIZED VIEW recomputes everything: 20 times a small drop's load at 10M lines.
--
-- Rebuilt whole whenever the warehouse's DDL changes (this file is applied only then, in the
-- schema's transaction): its tables are then empty, and the next refresh fills them whole.
--
-- KPI definitions (each written once, here; the README points readers to this list):
--   revenue          net sales: sum(total_amount), returns included as negative lines
--   gross_sales      sum(total_amount) of lines with quantity > 0
--   returns          -sum(total_amount) of lines with quantity < 0 (a positive amount)
--   orders           distinct order_id with at least one line in the group
--   lines            sale lines
--   units            sum(quantity) (net of returned units)
--   avg_order_value  revenue / orders
--   units_per_transaction  units / orders
--   discount_rate    sum(discount) / sum(quantity * unit_price) over lines with quantity > 0
--   return_rate      returned units / sold units: -sum(quantity < 0) / sum(quantity > 0)
--   growth           revenue / prior revenue - 1; NULL without a prior period or when the
--                    prior revenue is 0 (never 0, never a division error)
--   month over month: the calendar month before; year over year: the same fiscal month of
--   the fiscal year before (fiscal years start in February by default and are named for the
--   calendar year they end in: settings.fiscal_year_start_month).
-- Every ratio is NULL where its denominator is 0. Amounts are numeric: exact to the cent.

DROP SCHEMA IF EXISTS mart CASCADE;
CREATE SCHEMA mart;
DELETE FROM etl.mart_refresh;  -- the new tables are empty: the next refresh fills them whole
-- the readers' rights on the new schema (db/roles.py), once `retail-etl db roles` made them
DO $$ BEGIN IF to_regrole('retail_reporting') IS NOT NULL THEN
    GRANT USAGE ON SCHEMA mart TO retail_reporting, retail_analyst; ALTER DEFAULT PRIVILEGES FOR ROLE retail_owner IN SCHEMA mart GRANT SELECT ON TABLES TO retail_reporting, retail_analyst; END IF; END $$;

-- The ratios of the definitions above, from a group's additive parts: the one place they
-- are computed (the views below and `retail-etl report` call it).
CREATE FUNCTION mart.kpi_ratios(revenue numeric, orders bigint, units bigint, units_sold bigint,
                                units_returned bigint, discount numeric, list_sales numeric,
                                OUT avg_order_value numeric, OUT units_per_transaction numeric,
                                OUT discount_rate numeric, OUT return_rate numeric)
LANGUAGE sql IMMUTABLE AS $$
    SELECT round(revenue / nullif(orders, 0), 2), round(units::numeric / nullif(orders, 0), 4),
           round(discount / nullif(list_sales, 0), 4),
           round(units_returned::numeric / nullif(units_sold, 0), 4)
$$;

-- Growth against a prior period: NULL without one, or when it had no revenue.
CREATE FUNCTION mart.growth(revenue numeric, prior numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$ SELECT round(revenue / nullif(prior, 0) - 1, 4) $$;

-- One row per sale line, with what the KPIs group by: its day and fiscal period, and the
-- product, customer and store versions it points to (attributes as they were at the sale).
-- `country` is the store's (where the sale was made); a line without one is '(unknown)'.
CREATE VIEW mart.sales_lines AS
SELECT f.order_id, f.line_number, f.order_ts, f.date_key,
       d.date, date_trunc('month', d.date)::date AS month,
       d.fiscal_year, d.fiscal_quarter, d.fiscal_month,
       p.product_id, p.product_name, coalesce(p.category, '(unknown)') AS category,
       c.customer_id, coalesce(c.segment, '(unknown)') AS segment,
       coalesce(s.store_id, '(unknown)') AS store_id, s.store_name,
       coalesce(s.country, '(unknown)') AS country,
       f.quantity, f.unit_price, f.discount, f.total_amount
FROM dw.fact_sales f
JOIN dw.dim_date d ON d.date_key = f.date_key
JOIN dw.dim_product p ON p.product_key = f.product_key
JOIN dw.dim_customer c ON c.customer_key = f.customer_key
JOIN dw.dim_store s ON s.store_key = f.store_key;

-- The additive parts of every KPI per day, for the breakdowns readers ask for. A breakdown's
-- columns are set, the others NULL (breakdown 'total': all NULL). An order lies on one day,
-- so orders add up over days within a breakdown member. The refresh computes a day's rows
-- from mart.sales_lines with Polars (load/refresh.py: one pass over the lines for every
-- breakdown and for customer_days, where count(DISTINCT) over grouping sets sorts each).
CREATE TABLE mart.kpi_daily (
    date           date NOT NULL,
    breakdown      text NOT NULL,
    store_id       text, category text, segment text, country text,
    -- money at the cents of the facts' amounts (numeric(38, 2): sums of any warehouse fit)
    revenue        numeric(38, 2) NOT NULL, gross_sales numeric(38, 2) NOT NULL,
    returns        numeric(38, 2) NOT NULL,
    orders         bigint NOT NULL, lines bigint NOT NULL, units bigint NOT NULL,
    units_sold     bigint NOT NULL, units_returned bigint NOT NULL,
    discount       numeric(38, 2) NOT NULL, list_sales numeric(38, 2) NOT NULL
);
CREATE UNIQUE INDEX kpi_daily_key ON mart.kpi_daily
    (date, breakdown, store_id, category, segment, country) NULLS NOT DISTINCT;

-- The same parts per calendar month, summed from the days (the heavy work is done once).
CREATE TABLE mart.kpi_monthly (LIKE mart.kpi_daily);
ALTER TABLE mart.kpi_monthly RENAME COLUMN date TO month;
CREATE UNIQUE INDEX kpi_monthly_key ON mart.kpi_monthly
    (month, breakdown, store_id, category, segment, country) NULLS NOT DISTINCT;

CREATE FUNCTION mart.kpi_monthly_of(months date[]) RETURNS SETOF mart.kpi_monthly
LANGUAGE sql STABLE AS $$
SELECT date_trunc('month', date)::date, breakdown, store_id, category, segment, country,
       sum(revenue), sum(gross_sales), sum(returns), sum(orders)::bigint, sum(lines)::bigint,
       sum(units)::bigint, sum(units_sold)::bigint, sum(units_returned)::bigint,
       sum(discount), sum(list_sales)
FROM mart.kpi_daily
WHERE date >= (SELECT min(m) FROM unnest(months) m)
  AND date < (SELECT max(m) FROM unnest(months) m) + interval '1 month'
  AND date_trunc('month', date)::date = ANY(months)
GROUP BY 1, breakdown, store_id, category, segment, country
$$;

-- The KPIs per day and per month (grain), with the period's fiscal calendar.
CREATE VIEW mart.sales_kpis AS
WITH parts AS (
    SELECT 'day' AS grain, date AS period_start, breakdown, store_id, category, segment, country,
           revenue, gross_sales, returns, orders, lines, units, units_sold, units_returned,
           discount, list_sales
    FROM mart.kpi_daily
    UNION ALL
    SELECT 'month', month, breakdown, store_id, category, segment, country,
           revenue, gross_sales, returns, orders, lines, units, units_sold, units_returned,
           discount, list_sales
    FROM mart.kpi_monthly
)
SELECT p.grain, p.period_start, d.fiscal_year, d.fiscal_quarter, d.fiscal_month,
       p.breakdown, p.store_id, p.category, p.segment, p.country,
       p.revenue, p.gross_sales, p.returns, p.orders, p.lines, p.units,
       r.avg_order_value, r.units_per_transaction, r.discount_rate, r.return_rate,
       p.units_sold, p.units_returned, p.discount, p.list_sales
FROM parts p
JOIN dw.dim_date d ON d.date = p.period_start
CROSS JOIN LATERAL mart.kpi_ratios(p.revenue, p.orders, p.units, p.units_sold, p.units_returned,
                                   p.discount, p.list_sales) r;

-- Month over month and year over year (the same fiscal month a fiscal year before), per
-- breakdown member.
CREATE VIEW mart.sales_growth_monthly AS
SELECT k.period_start AS month, k.fiscal_year, k.fiscal_month,
       k.breakdown, k.store_id, k.category, k.segment, k.country,
       k.revenue,
       pm.revenue AS revenue_prior_month,
       mart.growth(k.revenue, pm.revenue) AS growth_month_over_month,
       py.revenue AS revenue_prior_year,
       mart.growth(k.revenue, py.revenue) AS growth_year_over_year
FROM mart.sales_kpis k
LEFT JOIN mart.sales_kpis pm
       ON pm.grain = 'month' AND pm.period_start = (k.period_start - interval '1 month')::date
      AND pm.breakdown = k.breakdown
      AND pm.store_id IS NOT DISTINCT FROM k.store_id AND pm.category IS NOT DISTINCT FROM k.category
      AND pm.segment IS NOT DISTINCT FROM k.segment AND pm.country IS NOT DISTINCT FROM k.country
LEFT JOIN mart.sales_kpis py
       ON py.grain = 'month' AND py.fiscal_year = k.fiscal_year - 1
      AND py.fiscal_month = k.fiscal_month AND py.breakdown = k.breakdown
      AND py.store_id IS NOT DISTINCT FROM k.store_id AND py.category IS NOT DISTINCT FROM k.category
      AND py.segment IS NOT DISTINCT FROM k.segment AND py.country IS NOT DISTINCT FROM k.country
WHERE k.grain = 'month';

-- Like for like, year over year: per month, the stores with sales in it and in the same
-- fiscal month a year before, opened (as they are now) at least 12 months before the month.
CREATE VIEW mart.like_for_like_monthly AS
WITH store_month AS (
    SELECT period_start AS month, fiscal_year, fiscal_month, store_id, revenue
    FROM mart.sales_kpis WHERE grain = 'month' AND breakdown = 'store'
), pairs AS (
    SELECT n.month, n.store_id, n.revenue, p.revenue AS revenue_prior_year
    FROM store_month n
    JOIN store_month p ON p.store_id = n.store_id AND p.fiscal_year = n.fiscal_year - 1
                      AND p.fiscal_month = n.fiscal_month
    JOIN dw.dim_store s ON s.store_id = n.store_id AND s.is_current
    WHERE s.opened_date <= (n.month - interval '12 months')::date
)
SELECT month, count(*) AS comparable_stores, sum(revenue) AS revenue,
       sum(revenue_prior_year) AS revenue_prior_year,
       mart.growth(sum(revenue), sum(revenue_prior_year)) AS growth_like_for_like
FROM pairs
GROUP BY month;

-- Revenue per product and month (the product as it is now names it).
CREATE TABLE mart.product_monthly (
    month date NOT NULL, product_id text NOT NULL,
    revenue numeric(38, 2) NOT NULL, units bigint NOT NULL, lines bigint NOT NULL,
    PRIMARY KEY (month, product_id)
);

-- (straight from the facts and the one dimension it needs: a month is read whole)
CREATE FUNCTION mart.product_monthly_of(days int[]) RETURNS SETOF mart.product_monthly
LANGUAGE sql STABLE AS $$
SELECT make_date(f.date_key / 10000, f.date_key / 100 % 100, 1), p.product_id,
       sum(f.total_amount), sum(f.quantity), count(*)
FROM dw.fact_sales f JOIN dw.dim_product p ON p.product_key = f.product_key
WHERE f.date_key = ANY(days) AND p.product_id IS NOT NULL
GROUP BY 1, p.product_id
$$;

-- Products ranked by revenue per month (equal revenue, equal rank; listed by product id).
CREATE VIEW mart.top_products_monthly AS
SELECT m.month, rank() OVER (PARTITION BY m.month ORDER BY m.revenue DESC) AS revenue_rank,
       m.product_id, p.product_name, p.category, m.revenue, m.units, m.lines
FROM mart.product_monthly m
LEFT JOIN dw.dim_product p ON p.product_id = m.product_id AND p.is_current;

-- Categories ranked by revenue per month.
CREATE VIEW mart.top_categories_monthly AS
SELECT period_start AS month,
       rank() OVER (PARTITION BY period_start ORDER BY revenue DESC) AS revenue_rank,
       category, revenue, units, orders
FROM mart.sales_kpis
WHERE grain = 'month' AND breakdown = 'category';

-- Per customer and day: the orders, lines and revenue (what cohorts and RFM are made of;
-- computed with kpi_daily's rows, from the same lines).
CREATE TABLE mart.customer_days (
    customer_id text NOT NULL, date date NOT NULL,
    orders bigint NOT NULL, lines bigint NOT NULL, revenue numeric(38, 2) NOT NULL,
    PRIMARY KEY (customer_id, date)
);
CREATE INDEX customer_days_date ON mart.customer_days (date);

-- Per customer: the first order's month (the cohort), the last order, orders and revenue.
CREATE TABLE mart.customer_summary (
    customer_id text PRIMARY KEY, cohort_month date NOT NULL, last_order date NOT NULL,
    orders bigint NOT NULL, revenue numeric(38, 2) NOT NULL
);

CREATE FUNCTION mart.customer_summary_of(customers text[]) RETURNS SETOF mart.customer_summary
LANGUAGE sql STABLE AS $$
SELECT customer_id, date_trunc('month', min(date))::date, max(date), sum(orders)::bigint,
       sum(revenue)
FROM mart.customer_days
WHERE customer_id = ANY(customers)
GROUP BY customer_id
$$;

-- Cohorts: how many customers of each first-order month ordered n months later (months_since
-- 0: the cohort itself). Kept as counts, so that the refresh takes out the old cells of the
-- customers it recomputes and adds their new ones.
CREATE TABLE mart.cohort_cells (
    cohort_month date NOT NULL, months_since int NOT NULL, customers bigint NOT NULL,
    PRIMARY KEY (cohort_month, months_since)
);

CREATE FUNCTION mart.cohort_cells_of(customers text[])
RETURNS TABLE (cohort_month date, months_since int, customers bigint)
LANGUAGE sql STABLE AS $$
WITH active AS (
    SELECT DISTINCT customer_id, date_trunc('month', date)::date AS month
    FROM mart.customer_days WHERE customer_id = ANY(customers)
), firsts AS (
    SELECT customer_id, min(month) AS cohort_month FROM active GROUP BY customer_id
)
SELECT f.cohort_month,
       ((extract(year FROM a.month) - extract(year FROM f.cohort_month)) * 12
        + extract(month FROM a.month) - extract(month FROM f.cohort_month))::int,
       count(*)
FROM active a JOIN firsts f USING (customer_id)
GROUP BY 1, 2
$$;

CREATE VIEW mart.customer_cohorts AS
SELECT c.cohort_month, c.months_since, s.customers AS cohort_customers,
       c.customers AS active_customers, round(c.customers::numeric / s.customers, 4) AS retention
FROM mart.cohort_cells c
JOIN mart.cohort_cells s ON s.cohort_month = c.cohort_month AND s.months_since = 0;

-- RFM as of a day: recency (days since the last order up to that day), frequency (orders),
-- monetary (revenue), each scored 1..5 by quintile (5 best), ties broken by customer id so
-- that the same warehouse always gives the same scores; segments from R and F. As of the
-- last order or later it reads customer_summary (one row per customer), else customer_days.
CREATE FUNCTION mart.rfm(as_of date)
RETURNS TABLE (customer_id text, last_order date, recency_days int, frequency bigint,
               monetary numeric, r smallint, f smallint, m smallint, rfm_segment text)
LANGUAGE sql STABLE AS $$
    WITH c AS (
        SELECT customer_id, last_order, orders AS frequency, revenue AS monetary
        FROM mart.customer_summary
        WHERE as_of >= (SELECT max(last_order) FROM mart.customer_summary)
        UNION ALL
        SELECT customer_id, max(date), sum(orders)::bigint, sum(revenue)
        FROM mart.customer_days
        WHERE date <= as_of AND as_of < (SELECT max(last_order) FROM mart.customer_summary)
        GROUP BY customer_id
    ), scored AS (
        SELECT c.*, (as_of - c.last_order) AS recency_days,
               ntile(5) OVER (ORDER BY c.last_order, c.customer_id)::smallint AS r,
               ntile(5) OVER (ORDER BY c.frequency, c.customer_id)::smallint AS f,
               ntile(5) OVER (ORDER BY c.monetary, c.customer_id)::smallint AS m
        FROM c
    )
    SELECT customer_id, last_order, recency_days, frequency, monetary, r, f, m,
           CASE WHEN r >= 4 AND f >= 4 THEN 'Champions'
                WHEN r >= 3 AND f >= 3 THEN 'Loyal'
                WHEN r >= 4 THEN 'New or promising'
                WHEN r <= 2 AND f >= 3 THEN 'At risk'
                WHEN r <= 2 THEN 'Lost'
                ELSE 'Needs attention' END
    FROM scored
$$;

-- RFM as of the warehouse's last sale day.
CREATE VIEW mart.rfm_current AS
SELECT * FROM mart.rfm((SELECT max(date) FROM mart.kpi_daily WHERE breakdown = 'total'));

-- Customers as they are now, their names and emails pseudonymised: an HMAC (SHA-256) under
-- etl.masking_key, stable across runs and joinable, changed with the key, not reversible.
-- Segment, city, state and country stay readable.
CREATE VIEW mart.customers AS
SELECT c.customer_id, etl.pseudonym(c.customer_name, 'Customer ', k.key) AS customer_name,
       etl.pseudonym_email(c.email, k.key) AS email,
       c.segment, c.city, c.state, c.country, c.join_date, c.is_deleted
FROM dw.dim_customer c CROSS JOIN (SELECT key FROM etl.masking_key LIMIT 1) k
WHERE c.is_current AND c.customer_id IS NOT NULL;

-- The same customers with their names and emails, for retail_analyst only; every call is
-- written to audit.pii_reads (who, when, how many rows), which the loader cannot read, and
-- to the server's log (which a reader's rolled-back transaction does not undo).
CREATE FUNCTION mart.customers_pii()
RETURNS TABLE (customer_id text, customer_name text, email text, segment text, city text,
               state text, country text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE n bigint; BEGIN
    RETURN QUERY SELECT c.customer_id, c.customer_name, c.email, c.segment, c.city, c.state, c.country FROM dw.dim_customer c WHERE c.is_current AND c.customer_id IS NOT NULL ORDER BY c.customer_id; GET DIAGNOSTICS n = ROW_COUNT; INSERT INTO audit.pii_reads (read_by, object, row_count) VALUES (session_user, 'mart.customers_pii', n); RAISE LOG 'retail-etl audit: % read % rows of mart.customers_pii', session_user, n; END $$;
REVOKE EXECUTE ON FUNCTION mart.customers_pii() FROM PUBLIC;

-- Stores compared per fiscal year, with the store's attributes as they were at each sale
-- (a store that moved city shows in both), and as they are now (one row per store).
CREATE VIEW mart.store_sales_as_sold AS
SELECT d.fiscal_year, s.store_id, s.store_name, s.store_type, s.city, s.country,
       count(DISTINCT f.order_id) AS orders, sum(f.total_amount) AS revenue
FROM dw.fact_sales f
JOIN dw.dim_date d ON d.date_key = f.date_key
JOIN dw.dim_store s ON s.store_key = f.store_key
GROUP BY d.fiscal_year, s.store_id, s.store_name, s.store_type, s.city, s.country;

CREATE VIEW mart.store_sales_as_now AS
SELECT d.fiscal_year, s.store_id, coalesce(now_s.store_name, s.store_name) AS store_name,
       coalesce(now_s.store_type, s.store_type) AS store_type,
       coalesce(now_s.city, s.city) AS city, coalesce(now_s.country, s.country) AS country,
       count(DISTINCT f.order_id) AS orders, sum(f.total_amount) AS revenue
FROM dw.fact_sales f
JOIN dw.dim_date d ON d.date_key = f.date_key
JOIN dw.dim_store s ON s.store_key = f.store_key
LEFT JOIN dw.dim_store now_s ON now_s.store_id = s.store_id AND now_s.is_current
GROUP BY 1, 2, 3, 4, 5, 6;

-- the readers may read every table and view above, whoever made them
DO $$ BEGIN IF to_regrole('retail_reporting') IS NOT NULL THEN
    GRANT SELECT ON ALL TABLES IN SCHEMA mart TO retail_reporting, retail_analyst; GRANT EXECUTE ON FUNCTION mart.customers_pii() TO retail_analyst; END IF; END $$;
