"""Read-only questions to the warehouse for the CLI: runs, rejects, KPI views."""

from __future__ import annotations

from datetime import date

import polars as pl

from retail_etl.db.connect import connect, redact
from retail_etl.errors import EtlError


def require_warehouse(cur, dsn: str, why: str = "nothing was loaded into it") -> None:
    """A one-line error for a database that holds no warehouse (a mistyped --dsn, say)."""
    cur.execute("SELECT to_regclass('etl.runs') IS NOT NULL")
    if not cur.fetchone()[0]:
        raise EtlError(f"{redact(dsn)} holds no warehouse yet: {why}",
                       hint="load something first: `retail-etl load --source-dir DIR`")


def _frame(dsn: str, sql: str, params: tuple = ()) -> pl.DataFrame:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            require_warehouse(cur, dsn)
            cur.execute(sql, parameters=params or None)
            return pl.from_arrow(cur.fetch_arrow_table())
    finally:
        conn.close()


def runs(dsn: str, limit: int = 20) -> pl.DataFrame:
    return _frame(dsn, """
        SELECT r.run_id AS run, r.status, to_char(r.started_at, 'YYYY-MM-DD HH24:MI:SS') AS started,
               round(extract(epoch FROM r.ended_at - r.started_at)::numeric, 1)::float8 AS seconds,
               coalesce(e.entity, left(r.error, 60)) AS entity, e.rows_read AS read,
               e.rows_loaded AS loaded, e.rows_merged AS unchanged, e.rows_rejected AS rejected,
               e.rows_duplicate AS duplicates, e.rows_inferred AS inferred,
               e.rows_deleted AS deleted,
               (SELECT string_agg(replace(k, '_', ' ') || ' ' || v, ', ' ORDER BY k)
                FROM jsonb_each_text(e.deleted_by) AS d(k, v)) AS deleted_why
        FROM (SELECT * FROM etl.runs ORDER BY run_id DESC LIMIT $1) r
        LEFT JOIN etl.run_entities e USING (run_id)
        ORDER BY r.run_id DESC, e.entity
    """, (limit,))


def stages(dsn: str, run_id: int) -> pl.DataFrame:
    return _frame(dsn, """
        SELECT stage, rows, round(seconds::numeric, 3)::float8 AS seconds,
               CASE WHEN seconds > 0 AND rows IS NOT NULL THEN round(rows / seconds) END::bigint AS rows_per_s,
               round(peak_rss_mb::numeric, 1)::float8 AS peak_rss_mb
        FROM etl.run_stages WHERE run_id = $1 ORDER BY seq
    """, (run_id,))


def run_warnings(dsn: str, run_id: int) -> list[str]:
    """A run's data-quality alerts (monitor/alerts.py), as it recorded them."""
    df = _frame(dsn, "SELECT w FROM etl.runs, jsonb_array_elements_text(coalesce(warnings, "
                "'[]')) AS w WHERE run_id = $1", (run_id,))
    return df["w"].to_list() if df.height else []


def rejects(dsn: str, run_id: int | None, limit: int, width: int | None) -> pl.DataFrame:
    """The quarantined rows of one run (default: the latest with rejects); `width`: each
    original row cut to that many characters (None: whole)."""
    if run_id is not None and _frame(dsn, "SELECT 1 FROM etl.runs WHERE run_id = $1",
                                     (run_id,)).height == 0:
        raise EtlError(f"no run {run_id} in this warehouse", hint="see `retail-etl runs`")
    row = ("row::text" if width is None else
           f"CASE WHEN length(row::text) > {int(width)} "
           f"THEN left(row::text, {int(width)}) || '...' ELSE row::text END")
    return _frame(dsn, f"""
        SELECT run_id, entity, file, line, array_to_string(rules, ', ') AS rules, {row} AS row
        FROM etl.rejects
        WHERE run_id = coalesce($1, (SELECT max(run_id) FROM etl.rejects))
        ORDER BY entity, file, line LIMIT $2
    """, (run_id, limit))


def kpi_monthly_revenue(dsn: str, limit: int = 24) -> pl.DataFrame:
    return _frame(dsn, """
        SELECT year, month, category, order_lines, units, revenue::text AS revenue
        FROM (SELECT * FROM dw.v_monthly_revenue_by_category v
              WHERE (year, month) IN (SELECT DISTINCT year, month
                                      FROM dw.v_monthly_revenue_by_category
                                      ORDER BY 1 DESC, 2 DESC LIMIT 3)
              ORDER BY year, month, revenue DESC LIMIT $1) t
    """, (limit,))


def watermarks(dsn: str) -> pl.DataFrame:
    """Every stored watermark; empty for a warehouse no run has touched yet."""
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('etl.watermarks') IS NOT NULL")
            if not cur.fetchone()[0]:
                return pl.DataFrame(schema={"source": pl.String, "table": pl.String,
                                            "watermark": pl.String, "tiebreak": pl.String,
                                            "run": pl.Int64, "stored": pl.String})
            cur.execute("""
                SELECT source, entity AS table,
                       to_char(watermark AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'
                           AS watermark,
                       tiebreak, run_id AS run,
                       to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || 'Z'
                           AS stored
                FROM etl.watermarks ORDER BY source, entity
            """)
            return pl.from_arrow(cur.fetch_arrow_table())
    finally:
        conn.close()


def orders(dsn: str) -> pl.DataFrame:
    """order_id, order_ts, revenue per order of fact_sales (what the API generator pays and
    ships: `generate --api --dsn`, the demo)."""
    # (numeric as text: ADBC hands it over as an extension type Polars does not cast)
    return _frame(dsn, "SELECT order_id, min(order_ts) AS order_ts, "
                       "sum(total_amount)::text AS revenue "
                       "FROM dw.fact_sales GROUP BY order_id ORDER BY 2, 1").with_columns(
        pl.col("revenue").cast(pl.Decimal(22, 2)))


def reconciliation(dsn: str, since: date | None = None) -> pl.DataFrame:
    """The days of mart.payment_reconciliation_daily from `since` (all by default) in one row
    (orders for unknown ids included), and the payment and parcel counts behind it."""
    where = "" if since is None else f"WHERE date >= '{since.isoformat()}' OR date IS NULL"
    return _frame(dsn, f"""
        SELECT sum(orders)::bigint AS orders, sum(revenue) AS revenue, sum(captured) AS captured,
               sum(refunded) AS refunded, sum(difference) AS difference,
               sum(orders_differing)::bigint AS orders_differing,
               (SELECT count(*) FROM mart.orders_paid_not_shipped) AS paid_not_shipped,
               (SELECT round(avg(hours_to_ship), 1) FROM mart.order_milestones) AS avg_hours_to_ship
        FROM mart.payment_reconciliation_daily {where}""")


def web_funnel(dsn: str) -> pl.DataFrame:
    """mart.web_funnel: sessions at each step, the rate from the step before."""
    return _frame(dsn, "SELECT step, name, sessions, rate_from_previous::text AS rate_from_previous, "
                       "share_of_sessions::text AS share_of_sessions FROM mart.web_funnel "
                       "ORDER BY step")


def web_link(dsn: str) -> pl.DataFrame:
    """mart.web_purchases_vs_sales over all months, in one row."""
    return _frame(dsn, """
        SELECT sum(web_purchases)::bigint AS web_purchases,
               sum(purchases_without_sale)::bigint AS purchases_without_sale,
               sum(online_orders)::bigint AS online_orders,
               sum(online_orders_without_purchase)::bigint AS online_orders_without_purchase,
               (SELECT count(*) FROM mart.customer_channels WHERE channel = 'both')
                   AS customers_online_and_in_store
        FROM mart.web_purchases_vs_sales""")


def web_sales(dsn: str) -> pl.DataFrame:
    """fact_sales lines shaped like generate.events.drop_sales (ids, not keys), `online` at
    a store of type Online at the sale: what `generate --events --dsn` buys on the site."""
    return _frame(dsn, """
        SELECT f.order_id, f.line_number::text AS line_number, f.order_ts,
               nullif(c.customer_id, '') AS customer_id, st.store_id, p.product_id,
               f.quantity::bigint AS quantity, f.unit_price::text AS unit_price,
               f.discount::text AS discount,
               coalesce(lower(st.store_type) = 'online', false) AS online
        FROM dw.fact_sales f
        LEFT JOIN dw.dim_customer c ON c.customer_key = f.customer_key AND f.customer_key <> -1
        LEFT JOIN dw.dim_store st ON st.store_key = f.store_key
        LEFT JOIN dw.dim_product p ON p.product_key = f.product_key AND f.product_key <> -1
    """).with_columns(pl.col("unit_price", "discount").cast(pl.Decimal(12, 2)))
