"""A synthetic operational (OLTP) shop database in PostgreSQL, generated and mutated set-based.

create_oltp(dsn, lines) (re)creates sql/oltp/schema.sql's tables in schema public and fills
them with INSERT ... SELECT over generate_series; mutate_day(dsn, seed) applies one business
day of changes. Each runs in one transaction.

Draws are not random(): each is a hash of (seed, a draw name, the row's key) made by
hashint8extended, PostgreSQL's portable hash for hash partitioning. A draw thus depends only
on the seed and the row, never on the order a plan yields rows in, so a seed gives the same
rows whatever the plan, the physical row order (mutate_day samples existing tables) or the
server version (random() changed its generator in PostgreSQL 15).

Products and customers whose id is a multiple of NEVER_ORDERED (about 3 %) are never
ordered, so that mutate_day always finds some to hard-delete: foreign keys forbid deleting
referenced ones.
"""

from __future__ import annotations

import math
import re
import zlib
from datetime import datetime

from retail_etl.config import SQL_DIR
from retail_etl.db.connect import connect
from retail_etl.generate.drops import (
    CATALOG,
    DOMAINS,
    FIRST,
    HOUR_W,
    LAST,
    MODELS,
    REGIONS,
    STORE_TYPE_P,
    STORE_TYPES,
)

SCHEMA = SQL_DIR / "oltp" / "schema.sql"
POST_DATA = r"^-- post-data:.*$"  # the schema file's marker: what follows comes after the fill
TABLES = ("stores", "products", "customers", "orders", "order_items")
NEVER_ORDERED = 33
LINES_PER_ORDER = 2.5  # 1..4 lines, uniform


def oltp_sizes(lines: int) -> dict[str, int]:
    """Master table sizes for `lines` order lines (orders come out near lines / 2.5)."""
    return {"stores": max(5, min(200, lines // 5000)), "products": max(50, lines // 200),
            "customers": max(100, lines // 20)}


def create_oltp(dsn: str, lines: int, seed: int = 7, *,
                as_of: datetime | None = None) -> dict[str, int]:
    """Drop, recreate and fill the OLTP tables: exactly `lines` order lines, orders over the
    730 days ending a day before `as_of` (default: the server's now()). Returns rows per table.
    With the same seed and as_of the contents are identical; as_of must not be in the future
    (mutate_day's rows must come after every stored updated_at); naive means UTC."""
    if lines < 1:
        raise ValueError("lines must be at least 1")
    u = _draws(seed)
    t0 = "now()" if as_of is None else f"{_q(as_of.isoformat())}::timestamptz"

    def master(table: str) -> str:  # before the first order, a few hours apart
        return f"{t0} - interval '800 days' + {u('id', table + '.updated')} * interval '12 hours'"
    n = oltp_sizes(lines)
    pre, post = re.split(POST_DATA, SCHEMA.read_text(), maxsplit=1, flags=re.M)
    steps = [
        *split_statements(pre),
        _stores_sql(u, n["stores"], t0, updated=master("stores")),
        _products_sql(u, n["products"], updated=master("products")),
        _customers_sql(u, n["customers"], updated=master("customers"),
                       joined=f"({t0} - interval '800 days' - {u('id', 'c.joined')}"
                              " * interval '2000 days')::date"),
        _orders_sql(u, lines, n, t0),
        f"ANALYZE {', '.join(TABLES)}",  # before the foreign keys: their checks are joins
        *split_statements(post),
    ]
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            for sql in steps:
                cur.execute(sql)
            cur.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES))
            counts = dict(zip(TABLES, cur.fetchone(), strict=True))
        conn.commit()
        return counts
    finally:
        conn.close()


def mutate_day(dsn: str, seed: int, *, as_of: datetime | None = None) -> dict[str, int]:
    """One business day of changes, in one transaction; every changed or new row gets
    updated_at = now() (the transaction time). New orders are placed in the 24 hours before
    `as_of` and new customers join on its day (the business clock; default: now()), so a
    shop made with create_oltp(as_of=...) gets the same business data on any date.
    Returns the rows changed per kind."""
    u = _draws(seed)
    clock = "now()" if as_of is None else f"{_q(as_of.isoformat())}::timestamptz"
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES))
            n = dict(zip(TABLES, cur.fetchone(), strict=True))
            counts = {}
            for kind, sql in _day_sql(u, n, clock):
                cur.execute(sql)
                row = cur.fetchone()
                if kind == "new_orders":
                    counts["new_orders"], counts["new_lines"] = row
                else:
                    counts[kind] = row[0]
        conn.commit()
        return counts
    finally:
        conn.close()


# ------------------------------------------------------------------ SQL text
def split_statements(text: str) -> list[str]:
    """Statements of a SQL file, split at `;` outside quotes, comments and $$ bodies (ADBC
    prepares each statement, so they go one at a time)."""
    out, cur = [], []
    for m in re.finditer(r"\$\$.*?\$\$|'(?:[^']|'')*'|--[^\n]*|;|[^$';-]+|.", text, re.S):
        tok = m.group()
        if tok == ";":
            out.append("".join(cur).strip())
            cur = []
        elif not tok.startswith("--"):
            cur.append(tok)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def _draws(seed: int):
    """u(key, name): SQL for a uniform draw in [0, 1) fixed by (seed, name, the key's value)."""
    def u(key: str, name: str) -> str:
        salt = zlib.crc32(f"{seed}/{name}".encode())
        return f"((hashint8extended(({key})::bigint, {salt}) & 16777215)::float8 / 16777216)"
    return u


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _arr(values) -> str:
    return "(ARRAY[" + ", ".join(_q(v) if isinstance(v, str) else str(v) for v in values) + "])"


def _pick(values, draw: str) -> str:
    """SQL: the element of `values` (a Python list) that a draw in [0, 1) selects."""
    return f"{_arr(values)}[1 + floor({draw} * {len(values)})::int]"


def _weighted(values, weights, scale: float = 1) -> list:
    """values repeated by weight: a uniform pick from the result is a weighted pick."""
    return [v for v, w in zip(values, weights, strict=True) for _ in range(round(w * scale))]


# regions weighted by REGIONS' weights (about 80 % US); a pick index ri selects all three
_REG = _weighted(REGIONS, [r[3] for r in REGIONS])
_CITY, _STATE, _COUNTRY = (_arr(r[i] for r in _REG) for i in range(3))
_REG_ONCE = [r[:3] for r in REGIONS]  # for moves: the next region is always another city
_HOURS = _weighted(range(24), HOUR_W, 10)  # shop hours: busy afternoons, quiet nights
_SEGMENTS = _weighted(["consumer", "home office", "corporate"], [7, 2, 1])
_STORE_TYPES = _weighted(STORE_TYPES, STORE_TYPE_P, 20)


def _ordered_id(index: str) -> str:
    """SQL: the index-th (0-based) id that is not a multiple of NEVER_ORDERED."""
    return f"(1 + {index} + {index} / {NEVER_ORDERED - 1})"


def _stores_sql(u, n: int, t0: str, updated: str) -> str:
    return f"""
WITH x AS (SELECT g AS id, 1 + floor({u('g', 's.region')} * {len(_REG)})::int AS ri,
                  {_pick(_STORE_TYPES, u('g', 's.type'))} AS store_type
           FROM generate_series(1, {n}) g)
INSERT INTO stores (store_id, store_name, store_type, city, state, country, manager,
                    opened_date, updated_at)
SELECT id, {_CITY}[ri] || ' ' || store_type || ' #' || id, store_type,
       {_CITY}[ri], {_STATE}[ri], {_COUNTRY}[ri],
       {_pick(FIRST, u('id', 's.first'))} || ' ' || {_pick(LAST, u('id', 's.last'))},
       ({t0} - interval '800 days' - {u('id', 's.opened')} * interval '3650 days')::date,
       {updated}
FROM x"""


def _products_sql(u, n: int, updated: str) -> str:
    """n new products, ids after the current max; `updated` is SQL (may use column id)."""
    cats = ", ".join(f"({i}, {_q(c)}, {typical}, {_arr(subs)}, {_arr(brands)})"
                     for i, (c, (typical, subs, brands)) in enumerate(CATALOG.items(), 1))
    # a log-normal price around the category's typical one (sum of 3 uniforms ~ normal)
    z = " + ".join(u("d.id", f"p.price{k}") for k in range(3))
    return f"""
WITH base AS (SELECT coalesce(max(product_id), 0) AS b FROM products),
cat (c, category, typical, subs, brands) AS (VALUES {cats}),
d AS (SELECT b + g AS id FROM base, generate_series(1, {n}) g),
x AS (SELECT d.id, cat.category,
             cat.subs[1 + floor({u('d.id', 'p.sub')} * cardinality(cat.subs))::int] AS sub,
             cat.brands[1 + floor({u('d.id', 'p.brand')} * cardinality(cat.brands))::int]
                 AS brand,
             (cat.typical * exp({z} - 1.5))::numeric AS price
      FROM d JOIN cat ON cat.c = 1 + floor({u('d.id', 'p.category')} * {len(CATALOG)})::int)
INSERT INTO products (product_id, product_name, category, subcategory, brand, unit_price,
                      updated_at)
SELECT id, brand || ' ' || sub || ' ' || {_pick(MODELS, u('id', 'p.model'))}, category, sub,
       brand,
       greatest(0.50, least(500.00, CASE WHEN price >= 2 AND {u('id', 'p.99')} < 0.7
                                         THEN round(price) - 0.01 ELSE round(price, 2) END)),
       {updated}
FROM x"""


def _customers_sql(u, n: int, updated: str, joined: str) -> str:
    """n new customers, ids after the current max; updated/joined are SQL (may use id)."""
    return f"""
WITH base AS (SELECT coalesce(max(customer_id), 0) AS b FROM customers),
x AS (SELECT b + g AS id, {_pick(FIRST, u('b + g', 'c.first'))} AS f,
             {_pick(LAST, u('b + g', 'c.last'))} AS l,
             1 + floor({u('b + g', 'c.region')} * {len(_REG)})::int AS ri
      FROM base, generate_series(1, {n}) g)
INSERT INTO customers (customer_id, first_name, last_name, email, segment, city, state,
                       country, join_date, updated_at)
SELECT id, f, l,
       regexp_replace(translate(lower(f || '.' || l), 'éüö', 'euo'), '[^a-z.]', '', 'g')
           || id || '@' || {_pick(DOMAINS, u('id', 'c.domain'))},
       {_pick(_SEGMENTS, u('id', 'c.segment'))}, {_CITY}[ri], {_STATE}[ri], {_COUNTRY}[ri],
       {joined}, {updated}
FROM x"""


def _orders_sql(u, lines: int, n: dict[str, int], t0: str) -> str:
    """Orders and exactly `lines` order lines, one statement (the lines need each order's
    line count and updated_at). Order sizes are drawn for a few more orders than needed and
    cut where the running sum of lines reaches `lines`."""
    n_gen = math.ceil(lines / LINES_PER_ORDER * 1.1) + 10
    mp = n["products"] - n["products"] // NEVER_ORDERED
    mc = n["customers"] - n["customers"] // NEVER_ORDERED
    end = f"({t0} - interval '1 day')"
    # a day among the last 730, an hour by HOUR_W; times after `end` wrap to the window's
    # first (partial) day
    ts = (f"date_trunc('day', {end}) - floor({u('order_id', 'o.day')} * 730) * interval '1 day'"
          f" + ({_pick(_HOURS, u('order_id', 'o.hour'))} + {u('order_id', 'o.minute')})"
          " * interval '1 hour'")
    return f"""
WITH d AS (SELECT g AS order_id, 1 + floor({u('g', 'o.lines')} * 4)::int AS k
           FROM generate_series(1, {n_gen}) g),
o AS (SELECT order_id, least(k, {lines} - (cum - k)) AS k
      FROM (SELECT d.*, sum(k) OVER (ORDER BY order_id) AS cum FROM d) w
      WHERE cum - k < {lines}),
t AS MATERIALIZED (
    SELECT order_id, k, ts,
           least(ts + {u('order_id', 'o.updated')} * interval '4 hours',
                 {t0} - interval '1 hour') AS upd
    FROM (SELECT order_id, k, CASE WHEN ts > {end} THEN ts - interval '730 days' ELSE ts END AS ts
          FROM (SELECT order_id, k, {ts} AS ts FROM o) a) b),
ins AS (
    INSERT INTO orders (order_id, customer_id, store_id, order_ts, status, updated_at)
    SELECT order_id,
           CASE WHEN {u('order_id', 'o.anonymous')} >= 0.02 THEN {_ordered_id('ci')} END,
           CASE WHEN {u('order_id', 'o.no_store')} >= 0.01
                THEN 1 + floor({u('order_id', 'o.store')} * {n['stores']})::int END,
           ts,
           CASE WHEN rs < 0.02 THEN 'cancelled'
                WHEN ts > {t0} - interval '2 days' THEN CASE WHEN rs < 0.5 THEN 'placed'
                                                             ELSE 'paid' END
                WHEN ts > {t0} - interval '5 days' THEN CASE WHEN rs < 0.4 THEN 'paid'
                                                             ELSE 'shipped' END
                ELSE 'shipped' END,
           upd
    FROM (SELECT t.*, floor({u('order_id', 'o.customer')} * {mc})::bigint AS ci,
                 {u('order_id', 'o.status')} AS rs
          FROM t) c),
l AS (SELECT t.order_id, g AS line_number, t.upd, t.order_id * 16 + g AS lk
      FROM t CROSS JOIN LATERAL generate_series(1, t.k) g),
-- quantities mostly 1, 1 % returns; a few lines at a price other than today's; low
-- product ids sell most
m AS (SELECT l.*, p.product_id,
             (1 + floor(5 * power({u('lk', 'i.quantity')}, 2)))::int
                 * CASE WHEN {u('lk', 'i.return')} < 0.01 THEN -1 ELSE 1 END AS quantity,
             CASE WHEN {u('lk', 'i.repriced')} < 0.03
                  THEN round(p.unit_price * (0.9 + 0.2 * {u('lk', 'i.reprice')})::numeric, 2)
                  ELSE p.unit_price END AS price
      FROM l JOIN products p ON p.product_id =
          {_ordered_id(f"floor(power({u('lk', 'i.product')}, 2) * {mp})::bigint")})
INSERT INTO order_items (order_id, line_number, product_id, quantity, unit_price, discount,
                         updated_at)
SELECT order_id, line_number, product_id, quantity, price,
       -- 10 % of sales lines get 5, 10, 15 or 20 % off
       CASE WHEN quantity < 0 OR {u('lk', 'i.discounted')} >= 0.1 THEN 0
            ELSE round(price * quantity * 0.05 * (1 + floor({u('lk', 'i.discount')} * 4)::int), 2)
       END,
       upd
FROM m"""


def _rate(n: int, rate: float, at_least: int) -> int:
    return max(at_least, round(n * rate))


def _count(sql: str) -> str:
    """A data-modifying statement (ending in RETURNING 1) as one that returns its row count."""
    return f"WITH changed AS ({sql}) SELECT count(*) FROM changed"


def _day_sql(u, n: dict[str, int], clock: str = "now()") -> list[tuple[str, str]]:
    """(kind, statement) pairs of mutate_day, in order; each returns its row count(s).
    Rows are picked by ORDER BY a draw of their key (LIMIT k): the same picks for the same
    logical contents."""
    orders, lines, products, customers = (n[t] for t in ("orders", "order_items", "products",
                                                         "customers"))
    line = "order_id * 16 + line_number"
    soft = {t: f"""
UPDATE {t} SET is_deleted = true WHERE {key} IN (
    SELECT {key} FROM {t} WHERE NOT is_deleted
    ORDER BY {u(key, f'{t}.soft_delete')}, {key} LIMIT {_rate(size, 0.005, 1)})
RETURNING 1""" for t, key, size in (("products", "product_id", products),
                                       ("customers", "customer_id", customers))}
    # never referenced (by any order), so the foreign keys allow the DELETE
    hard = {t: f"""
DELETE FROM {t} WHERE {key} IN (
    SELECT {key} FROM {t} x WHERE NOT EXISTS (SELECT 1 FROM {ref} r WHERE r.{key} = x.{key})
    ORDER BY {u(key, f'{t}.hard_delete')}, {key} LIMIT {_rate(size, 0.001, 1)})
RETURNING 1""" for t, key, size, ref in (("products", "product_id", products, "order_items"),
                                            ("customers", "customer_id", customers, "orders"))}
    ri = f"1 + floor({u('customer_id', 'move.region')} * {len(_REG_ONCE)})::int"
    return [
        # placed -> paid -> shipped, one step for about half the open orders
        ("status_changes", _count(f"""
UPDATE orders SET status = CASE status WHEN 'placed' THEN 'paid' ELSE 'shipped' END
WHERE status IN ('placed', 'paid') AND {u('order_id', 'day.progress')} < 0.5
RETURNING 1""")),
        ("cancelled_orders", _count(f"""
UPDATE orders SET status = 'cancelled' WHERE order_id IN (
    SELECT order_id FROM orders WHERE status <> 'cancelled'
    ORDER BY {u('order_id', 'day.cancel')}, order_id LIMIT {_rate(orders, 0.001, 1)})
RETURNING 1""")),
        # only lines 2+ go: line 1 always stays, so an order never loses its last line; the
        # order's updated_at moves too, as the application edits the order
        ("deleted_lines", f"""
WITH del AS (
    DELETE FROM order_items WHERE (order_id, line_number) IN (
        SELECT order_id, line_number FROM order_items WHERE line_number >= 2
        ORDER BY {u(line, 'day.delete_line')}, order_id, line_number
        LIMIT {_rate(lines, 0.0005, 1)})
    RETURNING order_id),
bump AS (UPDATE orders SET updated_at = now() WHERE order_id IN (SELECT order_id FROM del))
SELECT count(*) FROM del"""),
        # orders deleted outright (test orders, fraud, erasure), their lines with them (ON
        # DELETE CASCADE); no row is left for a watermark to see
        ("deleted_orders", _count(f"""
DELETE FROM orders WHERE order_id IN (
    SELECT order_id FROM orders WHERE updated_at < now()  -- not edited today
    ORDER BY {u('order_id', 'day.delete_order')}, order_id
    LIMIT {_rate(orders, 0.0005, 1)})
RETURNING 1""")),
        # a back-office fix that removes a line without touching its order
        ("silently_deleted_lines", _count(f"""
DELETE FROM order_items WHERE (order_id, line_number) IN (
    SELECT order_id, line_number FROM order_items WHERE line_number >= 2
      AND order_id IN (SELECT order_id FROM orders WHERE updated_at < now())
    ORDER BY {u(line, 'day.silent_delete')}, order_id, line_number
    LIMIT {_rate(lines, 0.0002, 1)})
RETURNING 1""")),
        # half get another quantity (same sign, never 0; the discount keeps its share), half a
        # discount set or removed
        ("corrected_lines", _count(f"""
UPDATE order_items i SET quantity = x.q, discount = x.d
FROM (SELECT order_id, line_number, q,
             CASE WHEN q <> quantity THEN round(discount * abs(q) / abs(quantity), 2)
                  WHEN discount > 0 THEN 0
                  ELSE round(unit_price * quantity * 0.1, 2) END AS d
      FROM (SELECT *, CASE WHEN quantity > 0 AND {u(line, 'day.fix_kind')} >= 0.5 THEN quantity
                           ELSE sign(quantity)::int * (1 + (abs(quantity)
                                + floor({u(line, 'day.fix_qty')} * 4)::int) % 5) END AS q
            FROM order_items
            ORDER BY {u(line, 'day.fix')}, order_id, line_number
            LIMIT {_rate(lines, 0.002, 1)}) s) x
WHERE (i.order_id, i.line_number) = (x.order_id, x.line_number)
RETURNING 1""")),
        # -15 % .. +15 %, at least a cent off the old price
        ("price_changes", _count(f"""
UPDATE products p SET unit_price = CASE WHEN x.price <> p.unit_price THEN x.price
                                        WHEN x.price < 500 THEN x.price + 0.01
                                        ELSE x.price - 0.01 END
FROM (SELECT product_id, greatest(0.50, least(500.00, round(unit_price
             * (0.85 + 0.3 * {u('product_id', 'day.price')})::numeric, 2))) AS price
      FROM products WHERE NOT is_deleted
      ORDER BY {u('product_id', 'day.reprice')}, product_id
      LIMIT {_rate(products, 0.02, 1)}) x
WHERE p.product_id = x.product_id
RETURNING 1""")),
        ("customers_moved", _count(f"""
UPDATE customers c SET city = {_arr(r[0] for r in _REG_ONCE)}[x.ri],
                       state = {_arr(r[1] for r in _REG_ONCE)}[x.ri],
                       country = {_arr(r[2] for r in _REG_ONCE)}[x.ri]
FROM (SELECT customer_id,
             CASE WHEN {_arr(r[0] for r in _REG_ONCE)}[{ri}] IS DISTINCT FROM city THEN {ri}
                  ELSE {ri} % {len(_REG_ONCE)} + 1 END AS ri
      FROM customers WHERE NOT is_deleted
      ORDER BY {u('customer_id', 'day.move')}, customer_id
      LIMIT {_rate(customers, 0.01, 1)}) x
WHERE c.customer_id = x.customer_id
RETURNING 1""")),
        ("soft_deleted_products", _count(soft["products"])),
        ("soft_deleted_customers", _count(soft["customers"])),
        ("hard_deleted_products", _count(hard["products"])),
        ("hard_deleted_customers", _count(hard["customers"])),
        ("new_products", _count(_products_sql(u, _rate(products, 0.001, 1), "now()")
                                + " RETURNING 1")),
        ("new_customers", _count(_customers_sql(u, _rate(customers, 0.001, 2), "now()",
                                                f"({clock})::date") + " RETURNING 1")),
        ("new_orders", _new_orders_sql(u, _rate(orders, 0.005, 3), clock)),
    ]


def _new_orders_sql(u, k: int, clock: str = "now()") -> str:
    """k orders placed in the last 24 hours, 1..4 lines each at today's prices, from
    non-deleted products, customers (2 % anonymous) and stores; returns (orders, lines).
    Products and customers whose id is a multiple of NEVER_ORDERED stay never ordered, so
    that later days still find some to hard-delete."""
    live = {t: f"""{t[0]}s AS MATERIALIZED (
    SELECT {key}{extra}, row_number() OVER (ORDER BY {key}) AS rn FROM {t}
    WHERE NOT is_deleted{skip})"""
            for t, key, extra, skip in (
                ("products", "product_id", ", unit_price", f" AND product_id % {NEVER_ORDERED} <> 0"),
                ("customers", "customer_id", "", f" AND customer_id % {NEVER_ORDERED} <> 0"),
                ("stores", "store_id", "", ""))}
    return f"""
WITH {live['products']}, {live['customers']}, {live['stores']},
n AS (SELECT (SELECT count(*) FROM ps) AS np, (SELECT count(*) FROM cs) AS nc,
             (SELECT count(*) FROM ss) AS ns,
             (SELECT coalesce(max(order_id), 0) FROM orders) AS base),
o AS MATERIALIZED (SELECT base + g AS order_id, np, nc, ns FROM n, generate_series(1, {k}) g),
ins AS (
    INSERT INTO orders (order_id, customer_id, store_id, order_ts, status)
    SELECT o.order_id, cs.customer_id, ss.store_id,
           {clock} - {u('o.order_id', 'new.age')} * interval '24 hours', 'placed'
    FROM o LEFT JOIN cs ON cs.rn = 1 + floor({u('o.order_id', 'new.customer')} * o.nc)
                       AND {u('o.order_id', 'new.anonymous')} >= 0.02
           LEFT JOIN ss ON ss.rn = 1 + floor({u('o.order_id', 'new.store')} * o.ns)
    RETURNING 1),
li AS (
    INSERT INTO order_items (order_id, line_number, product_id, quantity, unit_price)
    SELECT l.order_id, l.line_number, ps.product_id,
           (1 + floor(5 * power({u('l.lk', 'new.quantity')}, 2)))::int, ps.unit_price
    FROM (SELECT o.order_id, g AS line_number, o.order_id * 16 + g AS lk, o.np
          FROM o CROSS JOIN LATERAL
               generate_series(1, 1 + floor({u('o.order_id', 'new.lines')} * 4)::int) g) l
    JOIN ps ON ps.rn = 1 + floor({u('l.lk', 'new.product')} * l.np)
    RETURNING 1)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM li)"""
