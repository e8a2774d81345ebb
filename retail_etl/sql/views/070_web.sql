-- Web analytics: sessions (dw.fact_sessions) and events (dw.fact_web_events) from the GA4
-- exports (retail_etl/extract/events.py), and their link to the sales. Views, so they are
-- current the moment a load commits; the mart schema is made fresh by 050_mart.sql first.
--
-- Definitions:
--   funnel step      a session reaches a step when it has at least one event of it:
--                    view_item -> add_to_cart -> begin_checkout -> purchase (an open
--                    funnel: a session that buys without an add_to_cart event counts at
--                    purchase, not at add_to_cart)
--   step rate        sessions at a step / sessions at the step before (NULL if none)
--   conversion_rate  sessions with a purchase / sessions
--   online orders    fact_sales orders at stores of type Online (dim_store.store_type,
--                    any case); the others are in-store orders
--   matched          a purchase whose transaction_id is a fact_sales order_id
--   covered days     the UTC days with at least one web event: an online order is only
--                    expected to have a purchase event on them
-- Days are UTC (the session's first event); GA4's event_date (the property's zone) is kept
-- on each event as event_date.

CREATE VIEW mart.web_funnel_daily AS
SELECT (session_start AT TIME ZONE 'UTC')::date AS date,
       coalesce(traffic_source, '(not set)') AS source,
       coalesce(traffic_medium, '(not set)') AS medium,
       coalesce(device_category, '(not set)') AS device,
       count(*) AS sessions,
       count(*) FILTER (WHERE item_views > 0) AS viewed_item,
       count(*) FILTER (WHERE add_to_carts > 0) AS added_to_cart,
       count(*) FILTER (WHERE checkouts > 0) AS began_checkout,
       count(*) FILTER (WHERE purchases > 0) AS purchased,
       round(count(*) FILTER (WHERE add_to_carts > 0)::numeric
             / nullif(count(*) FILTER (WHERE item_views > 0), 0), 4) AS view_to_cart_rate,
       round(count(*) FILTER (WHERE checkouts > 0)::numeric
             / nullif(count(*) FILTER (WHERE add_to_carts > 0), 0), 4) AS cart_to_checkout_rate,
       round(count(*) FILTER (WHERE purchases > 0)::numeric
             / nullif(count(*) FILTER (WHERE checkouts > 0), 0), 4) AS checkout_to_purchase_rate,
       round(count(*) FILTER (WHERE purchases > 0)::numeric / count(*), 4) AS conversion_rate
FROM dw.fact_sessions
GROUP BY 1, 2, 3, 4;

-- The funnel over everything loaded, one row per step: where the checkout leaks.
CREATE VIEW mart.web_funnel AS
WITH totals AS (
    SELECT count(*) AS sessions,
           count(*) FILTER (WHERE item_views > 0) AS s1,
           count(*) FILTER (WHERE add_to_carts > 0) AS s2,
           count(*) FILTER (WHERE checkouts > 0) AS s3,
           count(*) FILTER (WHERE purchases > 0) AS s4
    FROM dw.fact_sessions
)
SELECT step.n AS step, step.name, step.sessions,
       round(step.sessions::numeric / nullif(step.before, 0), 4) AS rate_from_previous,
       round(step.sessions::numeric / nullif(t.sessions, 0), 4) AS share_of_sessions
FROM totals t, LATERAL (VALUES
    (0, 'session', t.sessions, NULL::bigint),
    (1, 'view_item', t.s1, t.sessions),
    (2, 'add_to_cart', t.s2, t.s1),
    (3, 'begin_checkout', t.s3, t.s2),
    (4, 'purchase', t.s4, t.s3)) AS step(n, name, sessions, before);

-- Sessions and conversion by traffic source (GA4's traffic_source: the user's first touch).
CREATE VIEW mart.web_traffic_sources AS
SELECT coalesce(traffic_source, '(not set)') AS source,
       coalesce(traffic_medium, '(not set)') AS medium,
       coalesce(traffic_campaign, '(not set)') AS campaign,
       count(*) AS sessions, count(DISTINCT user_pseudo_id) AS users,
       count(*) FILTER (WHERE bought) AS buying_sessions,
       round(count(*) FILTER (WHERE bought)::numeric / count(*), 4) AS conversion_rate,
       sum(revenue) AS revenue,
       round(sum(revenue) / count(*), 2) AS revenue_per_session,
       round(avg(duration_seconds), 1) AS avg_duration_seconds,
       round(avg(page_views), 2) AS avg_page_views
FROM dw.fact_sessions
GROUP BY 1, 2, 3;

-- Products viewed against products bought: the catalogue as it is now, with what the site
-- saw of each (item views, sessions viewing, add-to-carts) and what its purchases held.
CREATE VIEW mart.web_products_viewed_vs_bought AS
WITH shown AS (
    SELECT p.product_id,
           count(*) FILTER (WHERE e.event_name = 'view_item') AS item_views,
           count(DISTINCT (e.user_pseudo_id, e.ga_session_id))
               FILTER (WHERE e.event_name = 'view_item') AS sessions_viewing,
           count(*) FILTER (WHERE e.event_name = 'add_to_cart') AS add_to_carts
    FROM dw.fact_web_events e JOIN dw.dim_product p ON p.product_key = e.product_key
    WHERE e.event_name IN ('view_item', 'add_to_cart') AND e.product_key <> -1
    GROUP BY 1
), bought AS (
    SELECT i.item_id AS product_id, count(DISTINCT e.transaction_id) AS purchases,
           sum(i.quantity) AS units
    FROM dw.fact_web_events e,
         LATERAL jsonb_to_recordset(e.items::jsonb) AS i(item_id text, quantity numeric)
    WHERE e.event_name = 'purchase' AND e.items IS NOT NULL
    GROUP BY 1
)
SELECT c.product_id, c.product_name, c.category, c.brand,
       coalesce(s.item_views, 0) AS item_views, coalesce(s.sessions_viewing, 0) AS sessions_viewing,
       coalesce(s.add_to_carts, 0) AS add_to_carts, coalesce(b.purchases, 0) AS purchases,
       coalesce(b.units, 0) AS units,
       round(coalesce(b.purchases, 0)::numeric / nullif(s.sessions_viewing, 0), 4)
           AS purchases_per_viewing_session,
       coalesce(s.item_views, 0) > 0 AND coalesce(b.purchases, 0) = 0 AS viewed_not_bought
FROM dw.dim_product c
LEFT JOIN shown s ON s.product_id = c.product_id
LEFT JOIN bought b ON b.product_id = c.product_id
WHERE c.is_current AND c.product_key <> -1 AND (s.product_id IS NOT NULL OR b.product_id IS NOT NULL);

-- Each web purchase against the sale of the same order: matched or not, and the difference
-- between the revenue GA4 reported and the sale's.
CREATE VIEW mart.web_purchases AS
WITH purchases AS (
    SELECT transaction_id, min(event_timestamp) AS purchased_ts, min(purchase_revenue) AS web_revenue,
           min(user_pseudo_id) AS user_pseudo_id
    FROM dw.fact_web_events WHERE event_name = 'purchase' GROUP BY transaction_id
), sales AS (
    SELECT f.order_id, min(f.order_ts) AS ordered_ts, sum(f.total_amount) AS sales_revenue,
           min(st.store_type) AS store_type
    FROM dw.fact_sales f JOIN purchases p ON p.transaction_id = f.order_id
    LEFT JOIN dw.dim_store st ON st.store_key = f.store_key
    GROUP BY f.order_id
)
SELECT p.transaction_id AS order_id, p.purchased_ts, p.user_pseudo_id, p.web_revenue,
       s.ordered_ts, s.sales_revenue, s.store_type, s.order_id IS NOT NULL AS matched,
       s.sales_revenue - p.web_revenue AS revenue_difference
FROM purchases p LEFT JOIN sales s ON s.order_id = p.transaction_id;

-- The link both ways, per month: web purchases the sales lack, and online orders (on the
-- days the events cover) without a purchase event.
CREATE VIEW mart.web_purchases_vs_sales AS
WITH covered AS (
    SELECT DISTINCT date_key FROM dw.fact_web_events
), web AS (
    SELECT date_trunc('month', purchased_ts AT TIME ZONE 'UTC')::date AS month,
           count(*) AS web_purchases, count(*) FILTER (WHERE matched) AS matched_purchases
    FROM mart.web_purchases GROUP BY 1
), online AS (
    SELECT date_trunc('month', min(f.order_ts) AT TIME ZONE 'UTC')::date AS month, f.order_id,
           bool_or(w.order_id IS NOT NULL) AS has_purchase
    FROM dw.fact_sales f
    JOIN covered c ON c.date_key = f.date_key
    JOIN dw.dim_store st ON st.store_key = f.store_key AND lower(st.store_type) = 'online'
    LEFT JOIN mart.web_purchases w ON w.order_id = f.order_id
    GROUP BY f.order_id
), sales AS (
    SELECT month, count(*) AS online_orders, count(*) FILTER (WHERE has_purchase) AS matched_orders
    FROM online GROUP BY 1
)
SELECT coalesce(w.month, s.month) AS month,
       coalesce(w.web_purchases, 0) AS web_purchases,
       coalesce(w.matched_purchases, 0) AS matched_purchases,
       coalesce(w.web_purchases - w.matched_purchases, 0) AS purchases_without_sale,
       round((w.web_purchases - w.matched_purchases)::numeric / nullif(w.web_purchases, 0), 4)
           AS purchases_unmatched_share,
       coalesce(s.online_orders, 0) AS online_orders,
       coalesce(s.online_orders - s.matched_orders, 0) AS online_orders_without_purchase,
       round((s.online_orders - s.matched_orders)::numeric / nullif(s.online_orders, 0), 4)
           AS online_orders_unmatched_share
FROM web w FULL JOIN sales s ON s.month = w.month;

-- Customers who buy online and in stores: per customer (as they are now), their web sessions
-- and online orders (purchase events) beside their in-store orders (fact_sales at stores
-- not of type Online); channel says which they use.
CREATE VIEW mart.customer_channels AS
WITH web AS (
    SELECT c.customer_id, count(*) AS web_sessions, sum(s.purchases) AS online_orders,
           sum(s.revenue) AS online_revenue
    FROM dw.fact_sessions s JOIN dw.dim_customer c ON c.customer_key = s.customer_key
    WHERE s.customer_key <> -1 GROUP BY 1
), store AS (
    SELECT c.customer_id, count(DISTINCT f.order_id) AS store_orders,
           sum(f.total_amount) AS store_revenue
    FROM dw.fact_sales f
    JOIN dw.dim_customer c ON c.customer_key = f.customer_key
    JOIN dw.dim_store st ON st.store_key = f.store_key AND lower(st.store_type) <> 'online'
    WHERE f.customer_key <> -1 GROUP BY 1
)
SELECT cur.customer_id, cur.segment, cur.country,
       coalesce(w.web_sessions, 0) AS web_sessions, coalesce(w.online_orders, 0) AS online_orders,
       coalesce(w.online_revenue, 0) AS online_revenue,
       coalesce(st.store_orders, 0) AS store_orders, coalesce(st.store_revenue, 0) AS store_revenue,
       CASE WHEN coalesce(w.online_orders, 0) > 0 AND coalesce(st.store_orders, 0) > 0 THEN 'both'
            WHEN coalesce(w.online_orders, 0) > 0 THEN 'online only'
            WHEN coalesce(st.store_orders, 0) > 0 THEN 'store only'
            ELSE 'browses only' END AS channel
FROM dw.dim_customer cur
LEFT JOIN web w ON w.customer_id = cur.customer_id
LEFT JOIN store st ON st.customer_id = cur.customer_id
WHERE cur.is_current AND cur.customer_key <> -1
  AND (w.customer_id IS NOT NULL OR st.customer_id IS NOT NULL);
