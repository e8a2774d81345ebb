"""The operational database as a source (issue 3), against a real source database and a real
warehouse: watermarks and their edge cases, deletions, schema drift, faults, configured
sources, and the property that daily loads end where one full load does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from retail_etl.config import FilesSource, PostgresSource, Settings
from retail_etl.errors import DatabaseUnavailable, InputError
from retail_etl.extract import oltp
from retail_etl.generate.oltp import create_oltp, mutate_day
from tests.helpers import (
    TEMPLATE,
    assert_mart_as_if_recomputed,
    database_of,
    execute,
    fresh_database,
    query,
    rows,
    run,
    shop,
    source_lines,
    warehouse_lines,
    write_drop,
)


def current(dsn: str, table: str, cols: str, where: str = "true") -> list[tuple]:
    id_ = table.split("_")[1] + "_id"
    return rows(dsn, f"SELECT {id_}, {cols} FROM dw.{table} WHERE is_current AND "
                     f"{id_} IS NOT NULL AND {where} ORDER BY {id_}::bigint")


@pytest.fixture
def small_shop(oltp_dsn):
    create_oltp(oltp_dsn, 600, seed=3)
    return oltp_dsn


# ---- loads ---------------------------------------------------------------------------------


def test_first_load_then_a_day_then_again(settings, small_shop):
    s = shop(settings, small_shop)
    first = run(s)
    assert first.counts["sales"].loaded == len(source_lines(small_shop))
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)

    changed = mutate_day(small_shop, seed=11)
    second = run(s)
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    assert second.counts["sales"].deleted >= changed["deleted_lines"] + changed["cancelled_orders"]
    # incremental: the day's rows, not the database
    assert second.counts["sales"].read < first.counts["sales"].read / 5
    # current dimension rows follow the source; deleted ones say so
    assert current(settings.dsn, "dim_product", "price::text", "NOT is_deleted") == rows(
        small_shop, "SELECT product_id::text, unit_price::text FROM products "
                    "WHERE NOT is_deleted ORDER BY products.product_id")
    assert {r[0] for r in current(settings.dsn, "dim_product", "1", "is_deleted")} >= {
        r[0] for r in rows(small_shop, "SELECT product_id::text FROM products WHERE is_deleted")}

    before = query(settings.dsn, "SELECT * FROM dw.fact_sales ORDER BY order_id, line_number")
    third = run(s)  # nothing new: nothing changes, not even run ids
    assert third.counts["sales"].loaded == 0 and third.counts["sales"].deleted == 0
    assert query(settings.dsn, "SELECT * FROM dw.fact_sales ORDER BY order_id, line_number"
                 ).equals(before)


def test_hard_and_soft_deletes_close_the_current_version(settings, small_shop):
    s = shop(settings, small_shop)
    run(s)
    never = rows(small_shop, "SELECT customer_id::text FROM customers c WHERE NOT EXISTS "
                             "(SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id) "
                             "ORDER BY 1 LIMIT 1")[0][0]
    sold = rows(small_shop, "SELECT product_id::text FROM order_items ORDER BY 1 LIMIT 1")[0][0]
    execute(small_shop, f"DELETE FROM customers WHERE customer_id = {never}",
            f"UPDATE products SET is_deleted = true WHERE product_id = {sold}")
    r = run(s)
    assert r.counts["customers"].deleted == 1
    hist = rows(settings.dsn, f"SELECT is_deleted, is_current, valid_to = 'infinity', run_id "
                              f"FROM dw.dim_customer WHERE customer_id = '{never}' ORDER BY valid_from")
    assert [h[:3] for h in hist] == [(False, False, False), (True, True, True)]
    soft = rows(settings.dsn, f"SELECT is_deleted, valid_from = (SELECT max(valid_to) FROM "
                              f"dw.dim_product WHERE product_id = '{sold}' AND NOT is_current) "
                              f"FROM dw.dim_product WHERE product_id = '{sold}' AND is_current")
    assert soft == [(True, True)]
    # its sales keep the version they were sold under
    assert rows(settings.dsn, f"""SELECT count(*) FROM dw.fact_sales f JOIN dw.dim_product p
        USING (product_key) WHERE p.product_id = '{sold}' AND p.is_deleted""") == [(0,)]
    again = run(s)  # closed once, not again
    assert again.counts["customers"].deleted == 0


def test_a_key_from_a_drop_is_not_closed_by_the_database_source(settings, small_shop, tmp_path):
    drop = write_drop(tmp_path / "d", customers=[["C-FILE", "A", "B", "", "", "", "", "",
                                                  "", "2024-01-01"]])
    s = settings.model_copy(update={"sources": {
        "files": FilesSource(kind="files", dir=drop),
        "shop": PostgresSource(kind="postgres", dsn=small_shop)}})
    first = run(s)
    assert first.counts["customers"].loaded > 1
    run(s)
    assert rows(settings.dsn, "SELECT is_deleted FROM dw.dim_customer WHERE is_current "
                              "AND customer_id = 'C-FILE'") == [(False,)]


def test_cancelled_orders_and_deleted_lines_leave_the_fact_table(settings, small_shop):
    s = shop(settings, small_shop)
    run(s)
    o1, o2, o3 = [r[0] for r in rows(small_shop, """
        SELECT order_id FROM order_items GROUP BY order_id HAVING count(*) >= 2
        ORDER BY order_id LIMIT 3""")]
    execute(small_shop, f"UPDATE orders SET status = 'cancelled' WHERE order_id = {o1}",
            # an application removing a line touches its order
            f"DELETE FROM order_items WHERE order_id = {o2} AND line_number = 1",
            f"UPDATE orders SET updated_at = now() WHERE order_id = {o2}",
            # a line removed behind the application's back: found by the key scan
            f"DELETE FROM order_items WHERE order_id = {o3} AND line_number = 1")
    day = run(s)
    left = dict(rows(settings.dsn, f"SELECT order_id, count(*) FROM dw.fact_sales WHERE "
                                   f"order_id IN ('{o1}', '{o2}', '{o3}') GROUP BY 1"))
    n = dict(rows(small_shop, f"SELECT order_id::text, count(*) FROM order_items WHERE "
                              f"order_id IN ({o1}, {o2}, {o3}) GROUP BY 1"))
    assert str(o1) not in left
    assert left[str(o2)] == n[str(o2)]
    assert left[str(o3)] == n[str(o3)]
    assert day.counts["sales"].deleted_by == {"order_cancelled": n[str(o1)], "line_deleted": 2}
    assert_mart_as_if_recomputed(settings.dsn)  # the days of the deleted lines, recomputed
    full = run(s, full=True)
    assert full.counts["sales"].deleted == 0
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)


# ---- watermark edge cases ------------------------------------------------------------------


def _stamp(src: str, table: str, where: str, ts: str) -> None:
    execute(src, f"UPDATE {table} SET updated_at = '{ts}' WHERE {where}")


def test_equal_timestamps_across_the_mark_are_not_lost(settings, small_shop):
    """Rows sharing the mark's updated_at (one transaction's now()) but with a greater key
    come after it: only the key tells them apart."""
    s = shop(settings, small_shop, overlap_seconds=0)
    execute(small_shop, "UPDATE products SET updated_at = '2020-01-01'")
    run(s)
    T = rows(small_shop, "SELECT (now() - interval '1 hour')::text")[0][0]
    _stamp(small_shop, "products", "product_id IN (3, 5)", T)
    assert run(s).counts["products"].read == 2
    assert rows(settings.dsn, "SELECT tiebreak FROM etl.watermarks WHERE entity = 'products'"
                ) == [("[5]",)]
    # the same instant again, committed after that run, on both sides of the mark's key
    execute(small_shop, f"UPDATE products SET unit_price = 999, updated_at = '{T}' "
                        f"WHERE product_id IN (4, 7)")
    assert run(s).counts["products"].read == 1
    prices = dict(current(settings.dsn, "dim_product", "price::text", "product_id IN ('4', '7')"))
    assert prices["7"] == "999.00"
    assert prices["4"] != "999.00"  # it sorts before the mark: a late commit, see below


def test_a_late_commit_inside_the_overlap_window_is_read(settings, small_shop):
    run(shop(settings, small_shop, overlap_seconds=600))
    mark = rows(settings.dsn, "SELECT watermark FROM etl.watermarks WHERE entity = 'customers'"
                )[0][0]
    late = (mark - timedelta(seconds=30)).isoformat()
    # a transaction that began before the mark and committed after the run
    execute(small_shop, f"UPDATE customers SET city = 'Late Town', updated_at = '{late}' "
                        f"WHERE customer_id = 2")
    run(shop(settings, small_shop, overlap_seconds=0))
    assert current(settings.dsn, "dim_customer", "city", "customer_id = '2'")[0][1] != "Late Town"
    run(shop(settings, small_shop, overlap_seconds=600))
    assert current(settings.dsn, "dim_customer", "city", "customer_id = '2'")[0][1] == "Late Town"


def test_a_row_updated_during_the_extraction_is_read_by_the_next_run(settings, small_shop,
                                                                     monkeypatch):
    s = shop(settings, small_shop, overlap_seconds=0)
    read = oltp.Reader.stream
    calls = []

    def read_then_update(self, sql, *a, **kw):
        yield from read(self, sql, *a, **kw)
        calls.append(sql)
        if len(calls) == 1:  # products are read: now someone changes one
            execute(small_shop, "UPDATE products SET brand = 'Changed Meanwhile' "
                                "WHERE product_id = 1")

    monkeypatch.setattr(oltp.Reader, "stream", read_then_update)
    run(s)
    monkeypatch.setattr(oltp.Reader, "stream", read)
    assert current(settings.dsn, "dim_product", "brand", "product_id = '1'")[0][1] != \
        "Changed Meanwhile"
    run(s)
    assert current(settings.dsn, "dim_product", "brand", "product_id = '1'")[0][1] == \
        "Changed Meanwhile"


def test_a_failed_run_does_not_advance_the_watermark(settings, small_shop, monkeypatch):
    s = shop(settings, small_shop)
    run(s)
    before = rows(settings.dsn, "SELECT * FROM etl.watermarks ORDER BY entity")
    mutate_day(small_shop, seed=5)
    monkeypatch.setenv("RETAIL_ETL_FAIL_AT", "commit")
    with pytest.raises(Exception, match="injected"):
        run(s)
    assert rows(settings.dsn, "SELECT * FROM etl.watermarks ORDER BY entity") == before
    monkeypatch.delenv("RETAIL_ETL_FAIL_AT")
    run(s)
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)


# ---- schema drift and faults ---------------------------------------------------------------


def test_a_lost_or_retyped_column_fails_before_anything_is_written(settings, small_shop):
    s = shop(settings, small_shop)
    execute(small_shop, "ALTER TABLE products DROP COLUMN brand")
    with pytest.raises(InputError, match=r"column products\.brand is missing"):
        run(s)
    assert rows(settings.dsn, "SELECT count(*) FROM dw.fact_sales") == [(0,)]
    assert rows(settings.dsn, "SELECT count(*) FROM etl.watermarks") == [(0,)]
    execute(small_shop, "ALTER TABLE products ADD COLUMN brand text",
            "ALTER TABLE customers ALTER COLUMN join_date TYPE text")
    with pytest.raises(InputError, match=r"column customers\.join_date is text, expected date"):
        run(s)


def test_a_new_column_is_reported_and_the_load_goes_on(settings, small_shop, capsys):
    execute(small_shop, "ALTER TABLE customers ADD COLUMN loyalty_tier text")
    run(shop(settings, small_shop))
    assert "customers has columns the load does not use: loyalty_tier" in capsys.readouterr().err


def test_a_source_that_refuses_connections_fails_cleanly_without_the_password(settings):
    from retail_etl.db.cluster import free_port

    s = shop(settings, f"postgresql://shop:s3cret@127.0.0.1:{free_port()}/shop")
    with pytest.raises(DatabaseUnavailable) as e:
        run(s)
    assert "s3cret" not in e.value.message and "***" in e.value.message
    assert rows(settings.dsn, "SELECT status, error FROM etl.runs")[0][0] == "failed"
    assert "s3cret" not in rows(settings.dsn, "SELECT error FROM etl.runs")[0][0]


def test_renamed_tables_and_columns_are_configurable(settings, small_shop):
    execute(small_shop, "ALTER TABLE products RENAME TO catalogue",
            "ALTER TABLE catalogue RENAME COLUMN unit_price TO list_price")
    s = shop(settings, small_shop, tables={"products": "catalogue"},
             columns={"products": {"unit_price": "list_price"}})
    run(s)
    assert rows(settings.dsn, "SELECT count(*) FROM dw.dim_product WHERE price IS NOT NULL"
                )[0][0] == rows(small_shop, "SELECT count(*) FROM catalogue")[0][0]


HOSTILE = 'x"; drop table dw.fact_sales; --'  # a column name that would end a statement


def test_source_names_that_need_quoting_are_read_as_written(settings, small_shop):
    """Issues 11 and 12: identifiers from the configuration are quoted, values are bound or
    rendered as literals: a schema and table with spaces and capitals, a column with a
    double quote in its name, a column named to inject SQL, a cancelled status with an
    apostrophe and one that would close the list."""
    hostile_status = "x'); drop table dw.dim_product; --"
    execute(small_shop, 'CREATE SCHEMA "Shop Data"',
            'ALTER TABLE order_items SET SCHEMA "Shop Data"',
            'ALTER TABLE "Shop Data".order_items RENAME TO "Order Items"',
            'ALTER TABLE "Shop Data"."Order Items" RENAME COLUMN product_id TO "Product ""ID"""',
            'ALTER TABLE "Shop Data"."Order Items" RENAME COLUMN line_number TO "Line No."',
            'ALTER TABLE "Shop Data"."Order Items" RENAME COLUMN discount TO "x""; drop table '
            'dw.fact_sales; --"',
            "ALTER TABLE orders DROP CONSTRAINT orders_status_check",
            "UPDATE orders SET status = 'void''ed' WHERE order_id IN "
            "(SELECT order_id FROM orders ORDER BY order_id LIMIT 3)")
    s = shop(settings, small_shop, tables={"order_items": "Shop Data.Order Items"},
             columns={"order_items": {"product_id": 'Product "ID"', "line_number": "Line No.",
                                      "discount": HOSTILE}},
             cancelled_statuses=["cancelled", "void'ed", hostile_status])
    run(s)
    (want,), = rows(small_shop, """
        SELECT count(*) FROM "Shop Data"."Order Items" i JOIN orders o USING (order_id)
        WHERE o.status NOT IN ('cancelled', 'void''ed')""")
    assert rows(settings.dsn, "SELECT count(*) FROM dw.fact_sales")[0][0] == want
    # the hostile column was read as a column (the discounts arrived), nothing was dropped
    (discounts,), = rows(small_shop, """
        SELECT sum(i."x""; drop table dw.fact_sales; --")::text FROM "Shop Data"."Order Items" i
        JOIN orders o USING (order_id) WHERE o.status NOT IN ('cancelled', 'void''ed')""")
    assert rows(settings.dsn, "SELECT sum(discount)::text FROM dw.fact_sales") == [(discounts,)]
    assert rows(settings.dsn, "SELECT count(*) FROM dw.dim_product") != [(0,)]
    assert rows(settings.dsn, """SELECT count(*) FROM dw.fact_sales f JOIN dw.dim_product p
        USING (product_key) WHERE NOT p.is_inferred""")[0][0] == want  # products joined
    execute(small_shop, 'DELETE FROM "Shop Data"."Order Items" WHERE "Line No." = 1 AND '
            "order_id = (SELECT min(order_id) FROM orders WHERE status NOT IN ('cancelled', 'void''ed'))")
    run(shop(settings, small_shop, tables={"order_items": "Shop Data.Order Items"},
             columns={"order_items": {"product_id": 'Product "ID"', "line_number": "Line No.",
                                      "discount": HOSTILE}},
             cancelled_statuses=["cancelled", "void'ed", hostile_status]))  # the scan finds the gone line
    assert rows(settings.dsn, "SELECT count(*) FROM dw.fact_sales")[0][0] == want - 1


# ---- the property: daily loads end where one full load does -------------------------------

def live_members(dsn: str) -> dict[str, list[tuple]]:
    """Current, not deleted members of each dimension, by business attributes."""
    return {
        "product": rows(dsn, "SELECT product_id, product_name, category, subcategory, brand, "
                             "price::text FROM dw.dim_product WHERE is_current AND NOT "
                             "is_deleted AND product_key > 0 ORDER BY 1"),
        "customer": rows(dsn, "SELECT customer_id, customer_name, email, segment, city, state, "
                              "country, join_date FROM dw.dim_customer WHERE is_current AND "
                              "NOT is_deleted AND customer_key > 0 ORDER BY 1"),
        "store": rows(dsn, "SELECT store_id, store_name, store_type, city, state, country, "
                           "manager, opened_date FROM dw.dim_store WHERE is_current AND NOT "
                           "is_deleted AND store_key > 0 ORDER BY 1"),
    }


def facts(dsn: str) -> list[tuple]:
    return rows(dsn, """
        SELECT f.order_id, f.line_number, f.date_key, p.product_id, c.customer_id, s.store_id,
               f.quantity, f.unit_price::text, f.discount::text, f.total_amount::text,
               f.updated_at
        FROM dw.fact_sales f JOIN dw.dim_product p USING (product_key)
        JOIN dw.dim_customer c USING (customer_key) JOIN dw.dim_store s USING (store_key)
        ORDER BY 1, 2""")


def deleted_ids(dsn: str, dim: str) -> set[str]:
    return {r[0] for r in rows(dsn, f"SELECT {dim}_id FROM dw.dim_{dim} WHERE is_current "
                                    f"AND is_deleted")}


@examples(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(1, 10_000), days=st.lists(st.integers(1, 10_000), min_size=1,
                                                 max_size=3),
       overlap=st.sampled_from([0, 300]))
def test_daily_loads_equal_one_full_load_at_the_end(cluster, tmp_path, seed, days, overlap):
    with fresh_database(cluster) as src, fresh_database(cluster, TEMPLATE) as daily, \
            fresh_database(cluster, TEMPLATE) as once:
        create_oltp(src, 300, seed=seed)
        every_day = shop(Settings(dsn=daily, data_dir=tmp_path / "daily"), src,
                         overlap_seconds=overlap)
        run(every_day)
        for day in days:
            mutate_day(src, seed=day)
            run(every_day)
        run(shop(Settings(dsn=once, data_dir=tmp_path / "once"), src), full=True)
        assert facts(daily) == facts(once)
        assert live_members(daily) == live_members(once)
        for dim in ("product", "customer", "store"):
            # a key deleted from the source before the one load was never seen by it
            assert deleted_ids(once, dim) <= deleted_ids(daily, dim)


# ---- the command line ----------------------------------------------------------------------


def test_configured_sources_from_the_command_line(tmp_path, dsn, oltp_dsn, monkeypatch):
    from tests.helpers import cli
    from tests.helpers import error_line as _one_error_line

    assert cli("generate", "--oltp", "--oltp-dsn", oltp_dsn, "--lines", "400").exit_code == 0
    drop = write_drop(tmp_path / "drop", products=[["F-1", "File", "", "", "", "1.00",
                                                    "2024-01-01"]])
    config = tmp_path / "retail_etl.toml"
    config.write_text(f'[sources.drops]\nkind = "files"\ndir = "{drop}"\n\n'
                      f'[sources.shop]\nkind = "postgres"\ndsn = "{oltp_dsn}"\n')
    env = {"RETAIL_ETL_CONFIG": str(config), "RETAIL_ETL_DSN": dsn,
           "RETAIL_ETL_DATA_DIR": str(tmp_path / "data")}
    both = cli("load", **env)
    assert both.exit_code == 0, both.output
    assert rows(dsn, "SELECT source FROM etl.runs") == [("drops+shop",)]
    assert rows(dsn, "SELECT count(*) FROM dw.dim_product WHERE product_id = 'F-1'") == [(1,)]
    listed = cli("sources", "--json", **env)
    marks = {(r["source"], r["table"]) for r in __import__("json").loads(listed.stdout)}
    assert ("drops", None) in marks and ("shop", "order_items") in marks
    assert cli("generate", "--oltp", "--mutate", "--oltp-dsn", oltp_dsn).exit_code == 0
    one = cli("load", "--source", "shop", **env)
    assert one.exit_code == 0 and "deleted" in one.output
    assert "no source named 'nope'" in _one_error_line(cli("load", "--source", "nope", **env))
    monkeypatch.setenv("RETAIL_ETL_SOURCES__SHOP__DSN", "postgresql://u:hunter2@127.0.0.1:1/x")
    refused = cli("load", "--source", "shop", **env)
    assert "hunter2" not in refused.output
    assert _one_error_line(refused, 75).startswith(
        "Error: run 3, stage extract: source shop: cannot connect to postgresql://u:***@127.0.0.1:1/x")


def test_a_source_that_refuses_a_statement_is_named(settings, small_shop, cluster):
    cluster._psql("CREATE ROLE reader LOGIN")
    try:
        reader = small_shop.replace("postgres@", "reader@")
        with pytest.raises(Exception) as e:
            run(shop(settings, reader))
        assert type(e.value).__name__ == "DatabaseError"
        assert e.value.message.startswith("run 1, stage extract: source shop: ")
        assert "permission denied" in e.value.message
    finally:
        cluster._psql("DROP OWNED BY reader CASCADE", database=database_of(small_shop))
        cluster._psql("DROP ROLE reader")


def test_an_order_moved_to_another_month_loses_its_deleted_line_there(settings, small_shop):
    s = shop(settings, small_shop)
    run(s)
    oid = rows(small_shop, "SELECT order_id FROM order_items GROUP BY order_id "
                           "HAVING count(*) >= 3 ORDER BY order_id LIMIT 1")[0][0]
    execute(small_shop, f"UPDATE orders SET order_ts = order_ts - interval '40 days' "
                        f"WHERE order_id = {oid}",
            f"DELETE FROM order_items WHERE order_id = {oid} AND line_number = 1")
    r = run(s)
    assert r.counts["sales"].deleted == 1  # found in the month the order left
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    assert rows(settings.dsn, f"SELECT DISTINCT date_key FROM dw.fact_sales "
                              f"WHERE order_id = '{oid}'") == rows(
        small_shop, f"SELECT to_char(order_ts AT TIME ZONE 'UTC', 'YYYYMMDD')::int FROM orders "
                    f"WHERE order_id = {oid}")


def test_text_keys_are_read_unpartitioned(settings, small_shop):
    """A shop whose store ids are text ('S-1'): ConnectorX cannot split the read on them, so
    it reads in one piece; marks and deletes work on the text key."""
    execute(small_shop,
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_store_id_fkey",
            "ALTER TABLE orders ALTER COLUMN store_id TYPE text USING 'S-' || store_id",
            "ALTER TABLE stores ALTER COLUMN store_id TYPE text USING 'S-' || store_id",
            "ALTER TABLE orders ADD FOREIGN KEY (store_id) REFERENCES stores")
    s = shop(settings, small_shop, overlap_seconds=0)
    run(s)
    assert warehouse_lines(settings.dsn) == source_lines(small_shop)
    execute(small_shop, "UPDATE stores SET manager = 'New Boss' WHERE store_id = 'S-2'")
    assert run(s).counts["stores"].read == 1
    assert rows(settings.dsn, "SELECT manager FROM dw.dim_store WHERE is_current AND "
                              "store_id = 'S-2'") == [("New Boss",)]
    assert rows(settings.dsn, "SELECT tiebreak FROM etl.watermarks WHERE entity = 'stores'"
                ) == [('["S-2"]',)]


def test_a_drop_can_soft_delete_too(settings, dsn, tmp_path):
    from tests.helpers import load

    header = "product_id,product_name,unit_price,updated_at,is_deleted"
    load(settings, write_drop(tmp_path / "d1", products=f"{header}\nP-1,W,1.00,2024-01-01,\n"))
    r = load(settings, write_drop(tmp_path / "d2", products=(
        f"{header}\nP-1,W,1.00,2024-02-01,TRUE\nP-2,V,1.00,2024-02-01,maybe\n")))
    assert r.counts["products"].rejected == 1
    assert rows(dsn, "SELECT rules FROM etl.rejects")[0][0] == ["is_deleted:not_a_boolean"]
    assert rows(dsn, "SELECT is_deleted, is_current FROM dw.dim_product WHERE product_id = "
                     "'P-1' ORDER BY valid_from") == [(False, False), (True, True)]


def test_timestamps_without_time_zone_are_utc(settings, small_shop):
    execute(small_shop, "ALTER TABLE products ALTER COLUMN updated_at TYPE timestamp "
                        "USING updated_at AT TIME ZONE 'UTC'",
            "ALTER DATABASE " + database_of(small_shop) + " SET timezone = 'America/New_York'")
    s = shop(settings, small_shop, overlap_seconds=0)
    run(s)
    stored = rows(settings.dsn, "SELECT valid_from::text FROM dw.dim_product "
                                "WHERE product_id = '1' AND is_current")
    assert stored == rows(small_shop, "SELECT (updated_at::text || '+00') FROM products "
                                      "WHERE product_id = 1")
    execute(small_shop, "UPDATE products SET brand = 'Later', updated_at = "
                        "(now() AT TIME ZONE 'UTC') - interval '1 minute' WHERE product_id = 1")
    assert run(s).counts["products"].read == 1
    assert run(s).counts["products"].read == 0


def test_a_row_without_updated_at_is_rejected_not_skipped(settings, small_shop):
    execute(small_shop, "ALTER TABLE products ALTER COLUMN updated_at DROP NOT NULL",
            "ALTER TABLE products DISABLE TRIGGER USER",
            "UPDATE products SET updated_at = NULL WHERE product_id = 1")
    r = run(shop(settings, small_shop))
    assert r.counts["products"].rejected == 1
    assert rows(settings.dsn, "SELECT file, rules FROM etl.rejects") == [
        ("shop:products", ["updated_at:required"])]
