-- Orders beyond the sale: payments (dw.fact_payments) and parcels (dw.fact_shipments), from
-- the API sources (retail_etl/extract/http.py). Views, so they are current the moment a load
-- commits; the mart schema is made fresh by 050_mart.sql before this file runs.
--
-- Definitions (money exact, in the charge's currency; the shop sells in one):
--   captured       sum(amount) of succeeded charges
--   refunded       sum(amount_refunded) of succeeded charges
--   net_paid       captured - refunded
--   difference     revenue (fact_sales) - net_paid, per order; an order differs when it is not 0
--   failure_rate   failed charges / charges          (NULL without charges)
--   refund_rate    refunded charges (any amount) / succeeded charges
--   hours_to_ship  shipped_ts - order time; hours_to_deliver: delivered_ts - order time

-- The accumulating snapshot per order (Kimball): one row per order any source knows, its
-- milestones as they arrive, the lags between them in hours, where it stands.
CREATE VIEW mart.order_milestones AS
WITH sales AS (
    SELECT order_id, min(order_ts) AS ordered_ts, sum(total_amount) AS revenue,
           min(store_key) AS store_key
    FROM dw.fact_sales GROUP BY order_id
), paid AS (
    SELECT order_id, min(created_ts) FILTER (WHERE status = 'succeeded') AS paid_ts,
           coalesce(sum(amount) FILTER (WHERE status = 'succeeded'), 0) AS captured,
           coalesce(sum(amount_refunded) FILTER (WHERE status = 'succeeded'), 0) AS refunded,
           CASE WHEN bool_or(status = 'succeeded') THEN
                    CASE WHEN bool_and(refunded OR status <> 'succeeded') THEN 'refunded'
                         WHEN sum(amount_refunded) > 0 THEN 'partly refunded' ELSE 'paid' END
                WHEN bool_or(status = 'pending') THEN 'pending' ELSE 'failed' END AS payment_status
    FROM dw.fact_payments WHERE order_id IS NOT NULL GROUP BY order_id
), shipped AS (
    SELECT order_id, min(shipped_ts) AS shipped_ts, max(delivered_ts) AS delivered_ts,
           min(carrier) AS carrier,
           -- the furthest a parcel of the order got
           (array_agg(status ORDER BY array_position(ARRAY['failure', 'return_to_sender',
                'unknown', 'pre_transit', 'in_transit', 'out_for_delivery', 'delivered'],
                status) DESC))[1] AS shipment_status
    FROM dw.fact_shipments WHERE order_id IS NOT NULL GROUP BY order_id
)
SELECT coalesce(s.order_id, p.order_id, t.order_id) AS order_id,
       st.store_id, s.ordered_ts, p.paid_ts, t.shipped_ts, t.delivered_ts,
       round(extract(epoch FROM p.paid_ts - s.ordered_ts) / 3600, 2) AS hours_to_pay,
       round(extract(epoch FROM t.shipped_ts - s.ordered_ts) / 3600, 2) AS hours_to_ship,
       round(extract(epoch FROM t.delivered_ts - t.shipped_ts) / 3600, 2) AS hours_in_transit,
       round(extract(epoch FROM t.delivered_ts - s.ordered_ts) / 3600, 2) AS hours_to_deliver,
       s.revenue, coalesce(p.captured, 0) AS captured, coalesce(p.refunded, 0) AS refunded,
       coalesce(p.payment_status, 'unpaid') AS payment_status,
       coalesce(t.shipment_status, 'not shipped') AS shipment_status, t.carrier,
       s.order_id IS NOT NULL AS known_order
FROM sales s
FULL JOIN paid p ON p.order_id = s.order_id
FULL JOIN shipped t ON t.order_id = coalesce(s.order_id, p.order_id)
LEFT JOIN dw.dim_store st ON st.store_key = s.store_key;

-- Sales revenue against what was paid for it, per order day: the orders that differ are
-- counted (and listed by mart.payment_differences); payments for orders nobody knows are
-- the row with date NULL.
CREATE VIEW mart.payment_reconciliation_daily AS
SELECT (ordered_ts AT TIME ZONE 'UTC')::date AS date,
       count(*) FILTER (WHERE known_order) AS orders,
       coalesce(sum(revenue), 0) AS revenue,
       sum(captured) AS captured, sum(refunded) AS refunded,
       sum(captured - refunded) AS net_paid,
       coalesce(sum(revenue), 0) - sum(captured - refunded) AS difference,
       count(*) FILTER (WHERE coalesce(revenue, 0) <> captured - refunded) AS orders_differing
FROM mart.order_milestones
GROUP BY 1;

CREATE VIEW mart.payment_differences AS
SELECT order_id, ordered_ts, revenue, captured, refunded, captured - refunded AS net_paid,
       coalesce(revenue, 0) - (captured - refunded) AS difference, payment_status, known_order
FROM mart.order_milestones
WHERE coalesce(revenue, 0) <> captured - refunded;

-- Payment failure and refund rates per month of the charge.
CREATE VIEW mart.payment_rates_monthly AS
SELECT date_trunc('month', created_ts AT TIME ZONE 'UTC')::date AS month,
       count(*) AS charges,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'succeeded' AND amount_refunded > 0) AS refunded,
       round(count(*) FILTER (WHERE status = 'failed')::numeric / nullif(count(*), 0), 4)
           AS failure_rate,
       round(count(*) FILTER (WHERE status = 'succeeded' AND amount_refunded > 0)::numeric
             / nullif(count(*) FILTER (WHERE status = 'succeeded'), 0), 4) AS refund_rate
FROM dw.fact_payments
GROUP BY 1;

-- Time to ship and to deliver by store, carrier and month of the order.
CREATE VIEW mart.shipping_times_monthly AS
SELECT date_trunc('month', ordered_ts AT TIME ZONE 'UTC')::date AS month,
       coalesce(store_id, '(unknown)') AS store_id, carrier,
       count(*) AS orders_shipped,
       count(delivered_ts) AS orders_delivered,
       round(avg(hours_to_ship), 2) AS avg_hours_to_ship,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY hours_to_ship))::numeric, 2)
           AS median_hours_to_ship,
       round(avg(hours_to_deliver), 2) AS avg_hours_to_deliver,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY hours_to_deliver))::numeric, 2)
           AS median_hours_to_deliver
FROM mart.order_milestones
WHERE shipped_ts IS NOT NULL AND ordered_ts IS NOT NULL
GROUP BY 1, 2, 3;

-- Orders paid but not shipped, and for how long (filter on days_waiting > N).
CREATE VIEW mart.orders_paid_not_shipped AS
SELECT order_id, store_id, ordered_ts, paid_ts,
       round(extract(epoch FROM now() - paid_ts) / 86400, 1) AS days_waiting
FROM mart.order_milestones
WHERE paid_ts IS NOT NULL AND shipped_ts IS NULL AND payment_status <> 'refunded';
