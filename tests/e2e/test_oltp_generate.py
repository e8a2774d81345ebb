"""Tests of the synthetic OLTP database generator (retail_etl.generate.oltp)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from retail_etl.db.connect import connect
from retail_etl.generate.oltp import TABLES, create_oltp, mutate_day

LINES = 2000
KEYS = {"stores": "store_id", "products": "product_id", "customers": "customer_id",
        "orders": "order_id", "order_items": "order_id, line_number"}
AS_OF = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def db(oltp_dsn):
    """One connection for a test's own queries (connecting costs ~40 ms)."""
    conn = connect(oltp_dsn)
    yield conn
    conn.close()


def q(conn, *sqls: str) -> list[tuple]:
    """Run the statements in one transaction; the last one's rows."""
    with conn.cursor() as cur:
        for sql in sqls:
            cur.execute(sql)
        rows = cur.fetchall()
    conn.commit()
    return rows


def one(conn, sql: str):
    return q(conn, sql)[0][0]


def checksums(conn, since: datetime | None = None) -> dict[str, str]:
    """md5 of each table's rows in key order. With `since` (create_oltp's as_of): updated_at
    becomes whether it is after `since`, and the order_ts of mutate_day's new orders (within
    24 hours of its now(), after all of create_oltp's) is left out."""
    cols = {t: [] for t in TABLES}
    for t, c in q(conn, "SELECT table_name::text, column_name::text FROM information_schema.columns"
                       " WHERE table_schema = 'public' ORDER BY ordinal_position"):
        cols.setdefault(t, []).append(c)
    cut = f"'{since.isoformat()}'::timestamptz" if since else None

    def row(t: str) -> str:
        if cut is None:
            return "t::text"
        return "concat_ws('|', " + ", ".join(
            f"updated_at > {cut}" if c == "updated_at"
            else f"CASE WHEN order_ts <= {cut} - interval '1 day' THEN order_ts END"
            if c == "order_ts" else c for c in cols[t]) + ")"

    sums = q(conn, "SELECT " + ", ".join(
        f"(SELECT md5(string_agg({row(t)}, E'\\n' ORDER BY {KEYS[t]})) FROM {t} t)"
        for t in TABLES))[0]
    return dict(zip(TABLES, sums, strict=True))


def test_create_counts_and_shape(oltp_dsn, db):
    counts = create_oltp(oltp_dsn, LINES, seed=7)
    assert counts == {t: one(db, f"SELECT count(*) FROM {t}") for t in TABLES}
    assert {t: counts[t] for t in ("stores", "products", "customers", "order_items")} == \
        {"stores": 5, "products": 50, "customers": 100, "order_items": LINES}
    assert LINES / 2.5 * 0.9 < counts["orders"] < LINES / 2.5 * 1.1
    # every order has lines 1..k, k <= 4
    assert q(db, "SELECT count(*), min(k), max(k), bool_and(k = top) FROM (SELECT "
             "order_id, count(*) AS k, max(line_number) AS top FROM order_items GROUP BY 1) x"
             ) == [(counts["orders"], 1, 4, True)]
    # ids that are multiples of 33 are never ordered: 1 product, 3 customers
    assert one(db, "SELECT count(*) FROM products p WHERE NOT EXISTS "
               "(SELECT 1 FROM order_items i WHERE i.product_id = p.product_id)") == 1
    assert one(db, "SELECT count(*) FROM customers c WHERE NOT EXISTS "
               "(SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id)") == 3
    anonymous, cancelled, shipped, too_old, too_new, bad_updated = q(db, """
        SELECT count(*) FILTER (WHERE customer_id IS NULL),
               count(*) FILTER (WHERE status = 'cancelled'),
               count(*) FILTER (WHERE status = 'shipped'),
               count(*) FILTER (WHERE order_ts < now() - interval '731 days'),
               count(*) FILTER (WHERE order_ts > now() - interval '1 day'),
               count(*) FILTER (WHERE updated_at < order_ts
                                   OR updated_at > now() - interval '1 hour')
        FROM orders""")[0]
    assert 0 < anonymous < counts["orders"] * 0.05 and 0 < cancelled < counts["orders"] * 0.05
    assert shipped > counts["orders"] * 0.9
    assert (too_old, too_new, bad_updated) == (0, 0, 0)
    # lines carry their order's updated_at; returns exist; prices and discounts are sane
    assert q(db, """
        SELECT count(*) FILTER (WHERE i.updated_at <> o.updated_at),
               count(*) FILTER (WHERE quantity < 0) > 0,
               count(*) FILTER (WHERE discount > 0.21 * abs(quantity * i.unit_price))
        FROM order_items i JOIN orders o USING (order_id)""") == [(0, True, 0)]
    assert q(db, "SELECT min(unit_price) >= 0.5, max(unit_price) <= 500, "
             "max(updated_at) < (SELECT min(order_ts) FROM orders) FROM products"
             ) == [(True, True, True)]
    # the post-data part ran: 4 foreign keys, 8 secondary indexes, 5 triggers
    assert one(db, "SELECT count(*) FROM pg_constraint WHERE contype = 'f'") == 4
    assert one(db, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' "
               "AND indexname NOT LIKE '%pkey'") == 8
    assert one(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 5


def test_order_ts_window(oltp_dsn, db):
    # as_of just after midnight: nearly all of the last day's draws fall after the window's
    # end and must wrap to its start
    as_of = datetime(2025, 6, 1, 0, 30, tzinfo=UTC)
    create_oltp(oltp_dsn, 20_000, seed=7, as_of=as_of)
    lo, hi, upd = q(db, "SELECT min(order_ts), max(order_ts), max(updated_at) FROM orders")[0]
    assert as_of - timedelta(days=731) < lo < as_of - timedelta(days=730, minutes=30)
    assert as_of - timedelta(days=1, hours=12) < hi <= as_of - timedelta(days=1)
    assert upd <= as_of - timedelta(hours=1)


def test_same_seed_same_contents(oltp_dsn, db):
    create_oltp(oltp_dsn, LINES, seed=7, as_of=AS_OF)
    first = checksums(db)
    create_oltp(oltp_dsn, LINES, seed=7, as_of=AS_OF)
    assert checksums(db) == first
    create_oltp(oltp_dsn, LINES, seed=8, as_of=AS_OF)
    other = checksums(db)
    assert all(other[t] != first[t] for t in TABLES)


def test_mutate_day_is_deterministic(oltp_dsn, db):
    runs = []
    for seed in (3, 3, 4):
        create_oltp(oltp_dsn, LINES, seed=7, as_of=AS_OF)
        counts = mutate_day(oltp_dsn, seed=seed)
        runs.append((counts, checksums(db, since=AS_OF)))
    assert runs[0] == runs[1]
    assert runs[2][1]["order_items"] != runs[0][1]["order_items"]


def test_mutate_day_changes_what_it_says(oltp_dsn, db):
    create_oltp(oltp_dsn, LINES, seed=7)
    snap = [f"CREATE TABLE snap_{t} AS TABLE {t}" for t in TABLES]
    before = q(db, *snap, "SELECT max(updated_at), max(order_id) FROM orders")[0]
    prev = max(before[0], *(one(db, f"SELECT max(updated_at) FROM {t}") for t in TABLES))
    max_order = before[1]

    c = mutate_day(oltp_dsn, seed=1)
    assert c["new_orders"] >= 3 and c["new_lines"] >= c["new_orders"]
    for kind in ("corrected_lines", "cancelled_orders", "deleted_lines", "deleted_orders",
                 "silently_deleted_lines", "price_changes",
                 "customers_moved", "soft_deleted_products", "soft_deleted_customers",
                 "hard_deleted_products", "hard_deleted_customers", "new_products",
                 "new_customers"):
        assert c[kind] >= 1, kind

    # rows gone, new, changed (same key, other contents) per table
    def diff(t):
        on = " AND ".join(f"a.{k} = b.{k}" for k in KEYS[t].split(", "))
        return q(db, f"""
            SELECT count(*) FILTER (WHERE b IS NULL), count(*) FILTER (WHERE a IS NULL),
                   count(*) FILTER (WHERE a IS NOT NULL AND b IS NOT NULL AND a IS DISTINCT FROM b),
                   count(*) FILTER (WHERE b IS NOT NULL AND a IS DISTINCT FROM b
                                    AND b.updated_at <= '{prev.isoformat()}'),
                   count(DISTINCT b.updated_at) FILTER (WHERE a IS DISTINCT FROM b)
            FROM snap_{t} a FULL JOIN {t} b ON {on}""")[0]

    # every new or changed row has one updated_at (the transaction's), after all earlier ones
    for t in TABLES:
        gone, new, changed, stale, stamps = diff(t)
        assert stale == 0 and stamps <= 1, t
    with_orders = one(db, "SELECT count(*) FROM snap_order_items s WHERE NOT EXISTS "
                          "(SELECT 1 FROM orders o WHERE o.order_id = s.order_id)")
    assert c["deleted_orders"] >= 1 and with_orders >= c["deleted_orders"]
    assert diff("order_items")[:3] == (
        c["deleted_lines"] + c["silently_deleted_lines"] + with_orders, c["new_lines"],
        c["corrected_lines"])
    assert diff("products")[:2] == (c["hard_deleted_products"], c["new_products"])
    assert diff("customers")[:2] == (c["hard_deleted_customers"], c["new_customers"])
    assert diff("orders")[:2] == (c["deleted_orders"], c["new_orders"])
    assert diff("products")[2] <= c["price_changes"] + c["soft_deleted_products"]

    assert one(db, "SELECT count(*) FROM orders o JOIN snap_orders s USING (order_id) "
               "WHERE o.status = 'cancelled' AND s.status <> 'cancelled'") == c["cancelled_orders"]
    assert one(db, "SELECT count(*) FROM products WHERE is_deleted") == \
        c["soft_deleted_products"]
    assert one(db, "SELECT count(*) FROM customers WHERE is_deleted") == \
        c["soft_deleted_customers"]
    # hard-deleted products were never ordered; deleted lines left every order a line
    assert one(db, "SELECT count(*) FROM snap_products s WHERE NOT EXISTS (SELECT 1 FROM "
               "products p WHERE p.product_id = s.product_id) AND EXISTS (SELECT 1 FROM "
               "snap_order_items i WHERE i.product_id = s.product_id)") == 0
    assert one(db, "SELECT count(*) FROM orders o WHERE NOT EXISTS "
               "(SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)") == 0
    # orders that lost a line were touched too, but for the lines deleted silently
    assert one(db, f"""
        SELECT count(*) FROM snap_order_items s JOIN orders o USING (order_id)
        WHERE NOT EXISTS (SELECT 1 FROM order_items i
                          WHERE (i.order_id, i.line_number) = (s.order_id, s.line_number))
          AND o.updated_at <= '{prev.isoformat()}'""") == c["silently_deleted_lines"]
    # new orders: placed in the last 24 hours, by live customers, of live products
    assert q(db, f"""
        SELECT count(*), bool_and(o.status = 'placed'),
               bool_and(o.order_ts BETWEEN now() - interval '24 hours' AND now()),
               bool_and(NOT coalesce(c.is_deleted, false) AND NOT p.is_deleted)
        FROM orders o JOIN order_items i USING (order_id) JOIN products p USING (product_id)
             LEFT JOIN customers c USING (customer_id)
        WHERE o.order_id > {max_order}""") == [(c["new_lines"], True, True, True)]


def test_deleted_lines_come_from_orders_with_more(oltp_dsn, db):
    create_oltp(oltp_dsn, 50, seed=7)
    # one order keeps two lines, all others one: only its line 2 may go
    keep = one(db, "SELECT min(order_id) FROM order_items WHERE line_number = 2")
    q(db, f"DELETE FROM order_items WHERE line_number >= 2 AND order_id <> {keep}",
      "DELETE FROM order_items WHERE line_number >= 3")
    assert mutate_day(oltp_dsn, seed=1)["deleted_lines"] == 1
    assert one(db, f"SELECT count(*) FROM order_items WHERE order_id = {keep}") == 1
    assert one(db, "SELECT count(*) FROM orders o WHERE NOT EXISTS "
               "(SELECT 1 FROM order_items i WHERE i.order_id = o.order_id)") == 0


def test_trigger_bumps_updated_at(oltp_dsn, db):
    create_oltp(oltp_dsn, 50, seed=7)
    for t, change in (("stores", "manager = 'Pat Doe'"), ("products", "brand = 'Other'"),
                      ("customers", "segment = 'corporate'"), ("orders", "status = 'paid'"),
                      ("order_items", "discount = 0.01")):
        key = KEYS[t].split(", ")[0]
        first = f"{key} = (SELECT min({key}) FROM {t})"
        old = one(db, f"SELECT updated_at FROM {t} WHERE {first} ORDER BY 1 LIMIT 1")
        bumped = q(db, f"UPDATE {t} SET {change} WHERE {first}",
                   f"SELECT bool_and(updated_at = now()) FROM {t} WHERE {first}")
        assert bumped == [(True,)], t
        assert one(db, f"SELECT min(updated_at) FROM {t} WHERE {first}") > old
        # an UPDATE that sets updated_at keeps its value
        kept = q(db, f"UPDATE {t} SET {change}, updated_at = '2001-02-03Z' WHERE {first}",
                 f"SELECT bool_and(updated_at = '2001-02-03Z') FROM {t} WHERE {first}")
        assert kept == [(True,)], t


@pytest.mark.parametrize("lines", [1, 7])
def test_tiny_sizes(oltp_dsn, lines):
    counts = create_oltp(oltp_dsn, lines, seed=1)
    assert counts["order_items"] == lines and counts["orders"] >= 1
    assert mutate_day(oltp_dsn, seed=1)["new_orders"] >= 3
