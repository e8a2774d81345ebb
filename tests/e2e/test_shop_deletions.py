"""Issue 22: the shop's deletions, completely. Orders deleted outright and lines deleted
without touching their order leave the warehouse on the next incremental run (a key scan of
the source), only the source's own lines go, and a shop without deletion flags loads."""

from __future__ import annotations

import json

import pytest

from retail_etl.config import FilesSource, PostgresSource
from retail_etl.generate.oltp import create_oltp
from tests.helpers import (
    assert_mart_as_if_recomputed,
    execute,
    rows,
    run,
    shop,
    source_lines,
    warehouse_lines,
    write_drop,
)


@pytest.fixture
def small_shop(oltp_dsn):
    create_oltp(oltp_dsn, 600, seed=5)
    return oltp_dsn


def orders_with_lines(src: str, k: int, skip: int = 0) -> list[int]:
    return [r[0] for r in rows(src, f"""
        SELECT order_id FROM order_items i JOIN orders o USING (order_id)
        WHERE o.status <> 'cancelled' GROUP BY order_id HAVING count(*) >= 2
        ORDER BY order_id LIMIT {k} OFFSET {skip}""")]


def ledger(dsn: str, run_id: int) -> dict:
    (by,), = rows(dsn, f"SELECT deleted_by::text FROM etl.run_entities WHERE run_id = {run_id} "
                       f"AND entity = 'sales'")
    return json.loads(by)


def test_orders_deleted_outright_and_lines_deleted_silently_leave(settings, small_shop):
    s = shop(settings, small_shop)
    run(s)
    *gone, touched = orders_with_lines(small_shop, 4)
    n_gone = rows(small_shop, f"SELECT count(*) FROM order_items WHERE order_id IN "
                              f"({', '.join(map(str, gone))})")[0][0]
    execute(small_shop, f"DELETE FROM orders WHERE order_id IN ({', '.join(map(str, gone))})",
            f"DELETE FROM order_items WHERE order_id = {touched} AND line_number = 2")
    day = run(s)
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    assert day.counts["sales"].deleted_by == {"order_deleted": n_gone, "line_deleted": 1}
    assert ledger(settings.dsn, day.run_id) == day.counts["sales"].deleted_by
    assert_mart_as_if_recomputed(settings.dsn)  # the deleted lines' days were recomputed
    quiet = run(s)  # found once: the next run has nothing to delete
    assert quiet.counts["sales"].deleted == 0
    before = rows(settings.dsn, "SELECT * FROM dw.fact_sales ORDER BY order_id, line_number")
    full = run(s, full=True)  # a snapshot agrees with the incremental runs
    assert full.counts["sales"].deleted == 0
    assert rows(settings.dsn, "SELECT * FROM dw.fact_sales ORDER BY order_id, line_number"
                ) == before


def test_a_deleted_order_recreated_with_its_id_is_the_new_order(settings, small_shop):
    s = shop(settings, small_shop)
    run(s)
    (o,) = orders_with_lines(small_shop, 1)
    execute(small_shop, f"DELETE FROM orders WHERE order_id = {o}")
    run(s)
    assert rows(settings.dsn, f"SELECT count(*) FROM dw.fact_sales WHERE order_id = '{o}'"
                ) == [(0,)]
    product = rows(small_shop, "SELECT min(product_id) FROM products WHERE NOT is_deleted")[0][0]
    execute(small_shop,  # the same id, another order: one line, placed today
            f"INSERT INTO orders (order_id, customer_id, store_id, order_ts, status) "
            f"VALUES ({o}, NULL, NULL, now(), 'placed')",
            f"INSERT INTO order_items (order_id, line_number, product_id, quantity, unit_price) "
            f"VALUES ({o}, 1, {product}, 7, 3.50)")
    again = run(s)
    assert again.counts["sales"].deleted == 0
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    assert rows(settings.dsn, f"SELECT line_number, quantity, total_amount::text FROM "
                              f"dw.fact_sales WHERE order_id = '{o}'") == [(1, 7, "24.50")]
    assert_mart_as_if_recomputed(settings.dsn)


def test_a_drops_lines_are_untouched_by_the_shops_deletions(settings, small_shop, tmp_path):
    a, b = orders_with_lines(small_shop, 2)
    # the drop sells under an id the shop also uses (line 9: the shop has none), and its own
    drop = write_drop(tmp_path / "d", sales=[
        [str(a), "9", "2024-03-01T10:00:00Z", "", "", "P-FILE", "1", "2.00", "", ""],
        ["900001", "1", "2024-03-01T10:00:00Z", "", "", "P-FILE", "2", "2.00", "", ""]])
    s = settings.model_copy(update={"sources": {
        "files": FilesSource(kind="files", dir=drop),
        "shop": PostgresSource(kind="postgres", dsn=small_shop)}})
    run(s)
    assert rows(settings.dsn, "SELECT source, count(*) FROM dw.fact_sales GROUP BY 1 ORDER BY 1"
                ) == [("files", 2), ("shop", len(source_lines(small_shop)))]
    execute(small_shop, f"DELETE FROM orders WHERE order_id IN ({a}, {b})")
    run(s)
    assert rows(settings.dsn, f"SELECT order_id, line_number, source FROM dw.fact_sales WHERE "
                              f"order_id IN ('{a}', '{b}', '900001') ORDER BY 1, 2") == sorted(
        [(str(a), 9, "files"), ("900001", 1, "files")])
    shop_only = [r for r in warehouse_lines(settings.dsn) if r[0] not in (str(a), "900001")]
    assert shop_only == source_lines(small_shop)


def test_the_scan_can_run_every_n_runs(settings, small_shop):
    s = shop(settings, small_shop, line_scan_every=2, overlap_seconds=0)
    run(s)
    (o,) = orders_with_lines(small_shop, 1)
    execute(small_shop, f"DELETE FROM order_items WHERE order_id = {o} AND line_number = 2")
    assert run(s).counts["sales"].deleted == 0  # 1 run since the last scan: not yet
    assert run(s).counts["sales"].deleted_by == {"line_deleted": 1}
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    never = shop(settings, small_shop, line_scan_every=0, overlap_seconds=0)
    execute(small_shop, f"DELETE FROM order_items WHERE order_id = {o} AND line_number = 1")
    assert run(never).counts["sales"].deleted == 0
    assert run(never, full=True).counts["sales"].deleted_by == {"line_deleted": 1}


def test_auto_scans_every_run_while_the_scans_are_cheap(settings, small_shop):
    # (no overlap: an order re-read inside the window would find its lost line by itself)
    s = shop(settings, small_shop, line_scan_every="auto", overlap_seconds=0)
    run(s)
    a, b, c, d = orders_with_lines(small_shop, 4)

    def drop_line(order: int, cost: float | None = None) -> int:
        if cost is not None:  # what the last scan cost, as the ledger remembers it
            execute(settings.dsn, f"UPDATE etl.source_scans SET last_seconds = {cost}")
        execute(small_shop, f"DELETE FROM order_items WHERE order_id = {order} AND line_number = 2")
        return run(s).counts["sales"].deleted

    assert drop_line(a) == 1  # no cost known yet: scan
    assert drop_line(b, cost=1e6) == 0  # a scan dearer than 15% of the run waits
    assert rows(settings.dsn, "SELECT runs_since FROM etl.source_scans") == [(1,)]
    assert drop_line(c, cost=0.0) == 2  # a cheap one runs, and finds both
    assert drop_line(d, cost=0.9) == 1  # under a second: every run, whatever the run took
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)


def test_a_shop_without_deletion_flags_or_discounts_loads(settings, small_shop):
    execute(small_shop, *[f"ALTER TABLE {t} DROP COLUMN is_deleted"
                          for t in ("products", "customers", "stores")],
            "ALTER TABLE order_items DROP COLUMN discount")
    s = shop(settings, small_shop)
    first = run(s)
    live = ("SELECT count(*) FROM order_items i JOIN orders o USING (order_id) "
            "WHERE o.status <> 'cancelled'")
    assert first.counts["sales"].loaded == rows(small_shop, live)[0][0]
    never = rows(small_shop, "SELECT customer_id FROM customers c WHERE NOT EXISTS "
                             "(SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id) "
                             "ORDER BY 1 LIMIT 1")[0][0]
    (o,) = orders_with_lines(small_shop, 1)
    execute(small_shop, f"DELETE FROM customers WHERE customer_id = {never}",
            f"DELETE FROM orders WHERE order_id = {o}")
    day = run(s)  # deletions found by the key scans alone
    assert day.counts["customers"].deleted_by == {"key_gone": 1}
    assert day.counts["sales"].deleted_by["order_deleted"] >= 2
    assert rows(settings.dsn, "SELECT count(*) FROM dw.fact_sales") == rows(small_shop, live)
    assert rows(settings.dsn, "SELECT count(*) FROM dw.fact_sales WHERE discount <> 0"
                ) == [(0,)]
    assert rows(settings.dsn, f"SELECT is_deleted FROM dw.dim_customer WHERE is_current AND "
                              f"customer_id = '{never}'") == [(True,)]


# ---- a GDPR-style erasure ----------------------------------------------------------------

PERSONAL = "customer_name, email, city, state"


def test_forget_erases_a_customers_personal_data_everywhere_and_for_good(
        settings, dsn, tmp_path):
    from tests.helpers import cli, load

    drop = write_drop(tmp_path / "d", customers=[
        ["C-1", "Ann", "Lee", "ann@x.org", "retail", "Oslo", "Oslo", "NO", "2020-01-01",
         "2024-01-01T00:00:00Z"],
        ["C-1", "Ann", "Lee", "ann@y.org", "retail", "Bergen", "Vestland", "NO", "2020-01-01",
         "2024-02-01T00:00:00Z"],
        ["C-1", "Ann", "Lee", "ann@r.org", "retail", "Oslo", "Oslo", "NO", "not-a-date",
         "2024-03-01T00:00:00Z"],  # a reject that holds her data too
        ["C-2", "Bo", "Ek", "bo@x.org", "retail", "Lund", "Skane", "SE", "2020-01-01",
         "2024-01-01T00:00:00Z"]],
        sales=[["O-1", "1", "2024-02-15T10:00:00Z", "C-1", "", "P-1", "2", "5.00", "", ""]])
    load(settings, drop)
    done = cli("forget", "--customer", "C-1", "--reason", "request 118", "--dsn", dsn)
    assert done.exit_code == 0, done.output
    assert "erased from 2 versions" in done.output
    assert rows(dsn, f"SELECT {PERSONAL}, segment, country FROM dw.dim_customer "
                     f"WHERE customer_id = 'C-1'") == [(None,) * 4 + ("retail", "NO")] * 2
    assert rows(dsn, f"SELECT DISTINCT {PERSONAL} FROM etl.dim_customer_observed "
                     f"WHERE customer_id = 'C-1'") == [(None,) * 4]
    (row,), = rows(dsn, "SELECT row::text FROM etl.rejects WHERE entity = 'customers'")
    assert "Ann" not in row and "Oslo" not in row and "ann@r.org" not in row
    assert "not-a-date" in row  # what is not personal stays, for the data steward
    assert rows(dsn, "SELECT key, reason, erased_by IS NOT NULL AS who, changed->>'dw.dim_customer' AS n "
                     "FROM etl.erasures") == [("C-1", "request 118", True, "2")]
    # the sale and the other customer stay as they were
    assert rows(dsn, "SELECT total_amount::text FROM dw.fact_sales") == [("10.00",)]
    assert rows(dsn, "SELECT email FROM dw.dim_customer WHERE customer_id = 'C-2'") == [
        ("bo@x.org",)]
    # the same drop again, and a new version of her: nothing personal comes back
    later = write_drop(tmp_path / "e", customers=[
        ["C-1", "Ann", "Lee", "ann@z.org", "vip", "Oslo", "Oslo", "NO", "2020-01-01",
         "2024-04-01T00:00:00Z"],
        ["C-1", "Ann", "Lee", "bad@z.org", "vip", "Oslo", "Oslo", "NO", "bad-date",
         "2024-05-01T00:00:00Z"]])
    load(settings, drop)
    load(settings, later)
    assert rows(dsn, f"SELECT DISTINCT {PERSONAL} FROM dw.dim_customer "
                     f"WHERE customer_id = 'C-1'") == [(None,) * 4]
    assert rows(dsn, "SELECT segment FROM dw.dim_customer WHERE customer_id = 'C-1' "
                     "AND is_current") == [("vip",)]
    stored = " ".join(r[0] for r in rows(dsn, "SELECT row::text FROM etl.rejects"))
    assert "bad-date" in stored
    assert "Ann" not in stored and "Oslo" not in stored and "bad@z.org" not in stored
    unknown = cli("forget", "--customer", "C-404", "--dsn", dsn)
    assert unknown.exit_code == 0 and "is not in this warehouse" in unknown.output
