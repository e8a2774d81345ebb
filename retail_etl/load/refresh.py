"""The mart's refresh, after a run's commit (stage `refresh`) or by `retail-etl refresh`.

The mart keeps its heavy aggregations in tables (sql/views/050_mart.sql). Every run records
the days whose sales it changed (etl.touched_days, committed with the change: load/touched.py);
the refresh recomputes those days in kpi_daily and customer_days, their months in kpi_monthly
and product_monthly, and the customers of those days in cohort_cells and customer_summary.
Nothing else is read: a drop of the next days' sales costs what those days cost. The first
refresh (or the first after the mart's DDL changed) fills everything.

One REPEATABLE READ transaction, so the touched days it takes and the facts it reads are the
same snapshot (a run committing meanwhile leaves its days for the next refresh), and readers
see the old figures until it commits. Refreshes take turns (a session advisory lock). A
failed refresh never undoes the load: it rolls back whole, its error is kept in
etl.mart_refresh, the touched days stay, and the next run retries, whatever that run changes."""

from __future__ import annotations

import calendar
import logging
import time
from dataclasses import dataclass
from datetime import date

import adbc_driver_manager
import polars as pl

from retail_etl.load.copy import ingest

log = logging.getLogger("retail_etl")

FACT = "dw.fact_sales"  # the fact the mart is written against
TABLES = ["mart.customer_days", "mart.cohort_cells", "mart.customer_summary", "mart.kpi_daily",
          "mart.kpi_monthly", "mart.product_monthly"]
LOCK = 0x7265_6672  # pg_advisory_lock key: one refresh at a time ("refr")


@dataclass
class Refreshed:
    view: str  # a mart table, or 'mart' for the refresh as a whole (when it failed)
    seconds: float
    error: str | None = None


def pending(cur) -> bool:
    """Days changed since the last refresh, a mart never filled, or a failed refresh."""
    cur.execute("SELECT coalesce((SELECT refreshed_at IS NULL OR error IS NOT NULL "
                "FROM etl.mart_refresh WHERE view_name = 'mart'), true) "
                "OR EXISTS (SELECT 1 FROM etl.touched_days WHERE fact = $1)",
                parameters=(FACT,))
    return bool(cur.fetchone()[0])


def filled(cur) -> bool:
    """The mart was filled once since its tables were made (a refresh succeeded)."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM etl.mart_refresh "
                "WHERE view_name = 'mart' AND refreshed_at IS NOT NULL)")
    return bool(cur.fetchone()[0])


def refresh(conn, run_id: int | None, advance=lambda n: None,
            full: bool = False) -> list[Refreshed]:
    """Bring the mart up to date on `conn` (an autocommit connection); `full`: recompute
    every day. Returns each table's time, or one entry 'mart' with the error if the refresh
    failed (nothing changed then)."""
    t0 = time.perf_counter()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock($1)", parameters=(LOCK,))
        try:
            cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            try:
                done = _refresh(cur, advance, full)
                _record(cur, run_id, time.perf_counter() - t0, None)
                cur.execute("COMMIT")
                return done
            except adbc_driver_manager.Error as e:
                cur.execute("ROLLBACK")
                # the server's words, without the driver's prefix and the statement
                error = str(e).splitlines()[0].split("ERROR:", 1)[-1].strip()
                log.warning("the mart's refresh failed (the load stands; the next run "
                            "retries): %s", error)
                _record(cur, run_id, time.perf_counter() - t0, error)
                return [Refreshed("mart", time.perf_counter() - t0, error)]
        finally:
            cur.execute("SELECT pg_advisory_unlock($1)", parameters=(LOCK,))


def owe(conn, run_id: int, error: str) -> None:
    """A refresh that failed before it could record why: the next run owes one.
    Best effort: the ledger may be what failed."""
    try:
        with conn.cursor() as cur:
            _record(cur, run_id, None, error)
    except adbc_driver_manager.Error as e:
        log.info("could not record the owed refresh: %s", e)


def _record(cur, run_id, seconds, error) -> None:
    cur.execute(
        "INSERT INTO etl.mart_refresh AS r (view_name, refreshed_at, run_id, seconds, error) "
        "VALUES ('mart', CASE WHEN $3::text IS NULL THEN clock_timestamp() END, $1, $2, $3) "
        "ON CONFLICT (view_name) DO UPDATE SET refreshed_at = coalesce(excluded.refreshed_at, "
        "r.refreshed_at), run_id = excluded.run_id, seconds = coalesce(excluded.seconds, "
        "r.seconds), error = excluded.error",
        parameters=(run_id, seconds, error))


def _refresh(cur, advance, full: bool) -> list[Refreshed]:
    whole = full or not filled(cur)
    # the days to recompute: those touched (the rows this snapshot sees), or all of them
    cur.execute("DELETE FROM etl.touched_days WHERE fact = $1 RETURNING date_key",
                parameters=(FACT,))
    days = {int(d) for d, in cur.fetchall()}
    # (the other facts' days: no mart table is computed from them day by day)
    cur.execute("DELETE FROM etl.touched_days WHERE fact <> $1", parameters=(FACT,))
    if whole:
        cur.execute(f"TRUNCATE {', '.join(TABLES)}")
        cur.execute("SELECT date_key FROM dw.dim_date")
        days = {int(d) for d, in cur.fetchall()}
    if not days:
        return []
    dates = _array([_date(d).isoformat() for d in sorted(days)], "date")
    months = sorted({(d // 10000, d // 100 % 100) for d in days})
    firsts = _array([date(y, m, 1).isoformat() for y, m in months], "date")
    month_days = _array([y * 10000 + m * 100 + d for y, m in months
                         for d in range(1, calendar.monthrange(y, m)[1] + 1)], "int")
    moved = "(SELECT array_agg(customer_id) FROM refresh_customers)::text[]"
    cohort = "(SELECT array_agg(customer_id) FROM refresh_cohort_customers)::text[]"
    lo, hi = date(*months[0], 1), date(*months[-1], calendar.monthrange(*months[-1])[1])
    t0 = time.perf_counter()
    cur.execute("CREATE TEMP TABLE refresh_kpi (LIKE mart.kpi_daily) ON COMMIT DROP")
    cur.execute("CREATE TEMP TABLE refresh_days (LIKE mart.customer_days) ON COMMIT DROP")
    for y, m in months:  # a month of lines at a time: memory bounded by the month
        lines = _lines(cur, [d for d in sorted(days) if d // 100 == y * 100 + m])
        if lines.height:
            ingest(cur, kpi_parts(lines), "refresh_kpi", temporary=True)
            ingest(cur, customer_days(lines), "refresh_days", temporary=True)
    done = [Refreshed("sales lines", time.perf_counter() - t0)]
    steps = {
        "mart.customer_days": [
            f"CREATE TEMP TABLE refresh_old_days ON COMMIT DROP AS "
            f"SELECT * FROM mart.customer_days WHERE date = ANY({dates})",
            # the customers of those days, before and after
            "CREATE TEMP TABLE refresh_customers ON COMMIT DROP AS SELECT customer_id "
            "FROM refresh_old_days UNION SELECT customer_id FROM refresh_days",
            # of them, those who start or stop ordering in one of those months: their cohort
            # cells are taken out (from customer_days as it was) and put back (as it is now)
            # (all of them when the mart is filled whole: it starts empty); `lost`: a month
            # without orders now
            "CREATE TEMP TABLE refresh_cohort_customers ON COMMIT DROP AS "
            "SELECT customer_id, false AS lost FROM refresh_customers" if whole else
            f"""CREATE TEMP TABLE refresh_cohort_customers ON COMMIT DROP AS
                SELECT customer_id, bool_or(was AND NOT is_now) AS lost FROM (
                    SELECT customer_id, month, bool_or(was) AS was, bool_or(is_now) AS is_now
                    FROM (SELECT customer_id, date_trunc('month', date)::date AS month,
                                 true AS was, NOT date = ANY({dates}) AS is_now
                          FROM mart.customer_days
                          WHERE customer_id = ANY({moved})
                            AND date BETWEEN '{lo}' AND '{hi}'
                          UNION ALL
                          SELECT customer_id, date_trunc('month', date)::date, false, true
                          FROM refresh_days) p
                    GROUP BY 1, 2) m
                WHERE was <> is_now
                GROUP BY customer_id""",
            f"CREATE TEMP TABLE refresh_old_cells ON COMMIT DROP AS "
            f"SELECT * FROM mart.cohort_cells_of({cohort})",
            f"DELETE FROM mart.customer_days WHERE date = ANY({dates})",
            "INSERT INTO mart.customer_days SELECT * FROM refresh_days",
        ],
        "mart.cohort_cells": [f"""
            MERGE INTO mart.cohort_cells t
            USING (SELECT cohort_month, months_since, sum(n) AS n FROM (
                       SELECT cohort_month, months_since, customers AS n
                       FROM mart.cohort_cells_of({cohort})
                       UNION ALL
                       SELECT cohort_month, months_since, -customers FROM refresh_old_cells) c
                   GROUP BY 1, 2 HAVING sum(n) <> 0) d
            ON t.cohort_month = d.cohort_month AND t.months_since = d.months_since
            WHEN MATCHED AND t.customers + d.n = 0 THEN DELETE
            WHEN MATCHED THEN UPDATE SET customers = t.customers + d.n
            WHEN NOT MATCHED THEN INSERT VALUES (d.cohort_month, d.months_since, d.n)"""],
        "mart.customer_summary": [
            # recomputed whole: a month lost (the cohort may move later), or a last order on
            # one of the days (it may move back)
            f"""CREATE TEMP TABLE refresh_whole_customers ON COMMIT DROP AS
                SELECT customer_id FROM refresh_cohort_customers WHERE lost
                UNION SELECT s.customer_id FROM mart.customer_summary s
                JOIN refresh_customers c USING (customer_id) WHERE s.last_order = ANY({dates})""",
            "DELETE FROM mart.customer_summary s USING refresh_whole_customers c "
            "WHERE s.customer_id = c.customer_id",
            "INSERT INTO mart.customer_summary SELECT * FROM mart.customer_summary_of(("
            "SELECT array_agg(customer_id) FROM refresh_whole_customers)::text[])",
            # the others by difference: the days' new figures in, their old ones out; the
            # cohort and the last order can only move earlier and later (new customers: in)
            """MERGE INTO mart.customer_summary s
               USING (SELECT customer_id, sum(orders)::bigint AS orders, sum(revenue) AS revenue,
                             min(date) AS first_order, max(date) AS last_order
                      FROM (SELECT customer_id, date, orders, revenue FROM refresh_days
                            UNION ALL
                            SELECT customer_id, NULL, -orders, -revenue FROM refresh_old_days) x
                      WHERE NOT EXISTS (SELECT 1 FROM refresh_whole_customers w
                                        WHERE w.customer_id = x.customer_id)
                      GROUP BY customer_id) d
               ON s.customer_id = d.customer_id
               WHEN MATCHED THEN UPDATE SET
                   orders = s.orders + d.orders, revenue = s.revenue + d.revenue,
                   last_order = greatest(s.last_order, d.last_order),
                   cohort_month = least(s.cohort_month, date_trunc('month', d.first_order)::date)
               WHEN NOT MATCHED THEN INSERT VALUES (
                   d.customer_id, date_trunc('month', d.first_order)::date, d.last_order,
                   d.orders, d.revenue)""",
        ],
        "mart.kpi_daily": [
            f"DELETE FROM mart.kpi_daily WHERE date = ANY({dates})",
            "INSERT INTO mart.kpi_daily SELECT * FROM refresh_kpi",
        ],
        "mart.kpi_monthly": [
            f"DELETE FROM mart.kpi_monthly WHERE month = ANY({firsts})",
            f"INSERT INTO mart.kpi_monthly SELECT * FROM mart.kpi_monthly_of({firsts})",
        ],
        "mart.product_monthly": [
            f"DELETE FROM mart.product_monthly WHERE month = ANY({firsts})",
            f"INSERT INTO mart.product_monthly SELECT * FROM mart.product_monthly_of({month_days})",
        ],
    }
    for table, statements in steps.items():
        t0 = time.perf_counter()
        for sql in statements:
            cur.execute(sql)
        if whole:
            cur.execute(f"ANALYZE {table}")
        done.append(Refreshed(table, time.perf_counter() - t0))
        advance(1)
    return done


# the breakdowns of kpi_daily: the columns each groups by (the others are NULL)
BREAKDOWNS = {"total": [], "store": ["store_id"], "category": ["category"],
              "segment": ["segment"], "country": ["country"],
              "store,category": ["store_id", "category"]}
MEMBERS = ["store_id", "category", "segment", "country"]


def _lines(cur, days: list[int]) -> pl.DataFrame:
    """The sale lines of these days (mart.sales_lines), amounts exact."""
    cur.execute(f"SELECT date, order_id, store_id, category, segment, country, customer_id, "
                f"quantity, unit_price::text, discount::text, total_amount::text "
                f"FROM mart.sales_lines WHERE date_key = ANY({_array(days, 'int')})")
    return pl.from_arrow(cur.fetch_arrow_table()).with_columns(
        pl.col("unit_price", "discount", "total_amount").cast(pl.Decimal(38, 2)))


def kpi_parts(lines: pl.DataFrame) -> pl.DataFrame:
    """mart.kpi_daily's rows for these lines (the definitions: sql/views/050_mart.sql)."""
    sold, returned = pl.col("quantity") > 0, pl.col("quantity") < 0
    amount, qty = pl.col("total_amount"), pl.col("quantity")
    parts = [amount.sum().alias("revenue"),
             amount.filter(sold).sum().alias("gross_sales"),
             (-amount.filter(returned).sum()).alias("returns"),
             pl.col("order_id").n_unique().cast(pl.Int64).alias("orders"),
             pl.len().cast(pl.Int64).alias("lines"),
             qty.sum().alias("units"),
             qty.filter(sold).sum().alias("units_sold"),
             (-qty.filter(returned).sum()).alias("units_returned"),
             pl.col("discount").filter(sold).sum().alias("discount"),
             (qty * pl.col("unit_price")).filter(sold).sum().alias("list_sales")]
    frames = [lines.group_by("date", *cols).agg(parts).with_columns(
        breakdown=pl.lit(name), **{c: pl.lit(None, pl.String) for c in MEMBERS if c not in cols})
        for name, cols in BREAKDOWNS.items()]
    out = pl.concat([f.select("date", "breakdown", *MEMBERS, *[p.meta.output_name() for p in parts])
                     for f in frames])
    money = ["revenue", "gross_sales", "returns", "discount", "list_sales"]
    return out.with_columns(pl.col(money).fill_null(0).cast(pl.Decimal(38, 2)),
                            pl.col("units", "units_sold", "units_returned").fill_null(0)
                            .cast(pl.Int64))


def customer_days(lines: pl.DataFrame) -> pl.DataFrame:
    """mart.customer_days's rows for these lines: orders, lines, revenue per customer and day."""
    return (lines.filter(pl.col("customer_id").is_not_null())
            .group_by("customer_id", "date")
            .agg(orders=pl.col("order_id").n_unique().cast(pl.Int64),
                 lines=pl.len().cast(pl.Int64), revenue=pl.col("total_amount").sum()))


def _date(key: int) -> date:
    return date(key // 10000, key // 100 % 100, key % 100)


def _array(values: list, kind: str) -> str:
    """A literal array of ints or ISO dates (values the code made: nothing to escape)."""
    return "'{" + ",".join(str(v) for v in values) + "}'::" + kind + "[]"
