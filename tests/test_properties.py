"""Hypothesis properties of the load, each against a real PostgreSQL (a fresh database per
example): SCD2 history reproduces every snapshot, conservation, idempotency, and a drop
split into several drops gives the warehouse of the whole drop."""

from __future__ import annotations

import itertools
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from retail_etl.config import Settings
from tests.conftest import TEMPLATE
from tests.helpers import checksum, load, query, rows, scaled, write_drop

PROPS = settings(max_examples=scaled(12), deadline=None, derandomize=False,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])

DAY0 = datetime(2024, 1, 1, tzinfo=UTC)
spaced = st.sampled_from(["", " ", "  "])


def noisy(values):
    """A value from `values`, sometimes with white space that cleaning removes."""
    return st.builds(lambda v, a, b: f"{a}{v}{b}" if v else v, st.sampled_from(values), spaced, spaced)


def ts(day: int, hour: int = 0) -> str:
    return (DAY0 + timedelta(days=day, hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def fresh_warehouse(cluster, tmp_path):
    name = f"p_{uuid.uuid4().hex[:12]}"
    dsn = cluster.create_database(name, template=TEMPLATE)
    try:
        yield Settings(dsn=dsn, data_dir=tmp_path / name)
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- (a) SCD2: in-order snapshots ------------------------------------------------------------

product_row = st.tuples(noisy(["Widget", "Gadget", "Big Widget"]), st.sampled_from(["Tools", "Toys", ""]),
                        st.sampled_from(["1.00", "2.50", "2.5", ""]))
snapshot = st.dictionaries(st.sampled_from(["P-1", "P-2", "P-3"]), product_row, min_size=1)


@PROPS
@given(snapshots=st.lists(snapshot, min_size=1, max_size=4))
def test_in_order_snapshots_give_scd2_history_that_reproduces_each(cluster, tmp_path, snapshots):
    with fresh_warehouse(cluster, tmp_path) as s:
        for i, snap in enumerate(snapshots):
            write_drop(tmp_path / s.dsn[-12:] / f"d{i}", products=[
                [pid, name, cat, "", "", price, ts(i * 10)] for pid, (name, cat, price) in snap.items()])
            load(s, tmp_path / s.dsn[-12:] / f"d{i}")
        assert_scd2_invariants(s.dsn, "product")
        for i, snap in enumerate(snapshots):
            at = ts(i * 10)
            got = dict((r[0], r[1:]) for r in rows(s.dsn, f"""
                SELECT product_id, product_name, category, price FROM dw.dim_product
                WHERE product_id IS NOT NULL AND valid_from <= '{at}' AND '{at}' < valid_to"""))
            want = {pid: (" ".join(n.split()) or None, c or None,
                          None if p == "" else f"{float(p):.2f}")
                    for pid, (n, c, p) in snap.items()}
            assert {k: (a, b, None if c is None else str(c)) for k, (a, b, c) in got.items()
                    if k in want} == want


def assert_scd2_invariants(dsn: str, table: str) -> None:
    bk = f"{table}_id"
    bad = rows(dsn, f"""
        WITH v AS (SELECT {bk}, valid_from, valid_to, is_current,
                          lead(valid_from) OVER w AS next_from,
                          count(*) FILTER (WHERE is_current) OVER (PARTITION BY {bk}) AS currents
                   FROM dw.dim_{table} WHERE {bk} IS NOT NULL
                   WINDOW w AS (PARTITION BY {bk} ORDER BY valid_from))
        SELECT * FROM v
        WHERE valid_from >= valid_to                                   -- empty range
           OR (next_from IS NOT NULL AND next_from <> valid_to)        -- gap or overlap
           OR (next_from IS NULL AND (valid_to <> 'infinity' OR NOT is_current))
           OR currents <> 1""")
    assert bad == []
    # no version repeats the attributes of the one before it (history is minimal)
    attrs = (f"to_jsonb(d) - '{table}_key' - 'valid_from' - 'valid_to' - 'is_current' "
             "- 'is_inferred' - 'run_id'")
    repeats = rows(dsn, f"""
        SELECT {bk}, valid_from FROM (
            SELECT {bk}, valid_from, {attrs} AS a,
                   lag({attrs}) OVER (PARTITION BY {bk} ORDER BY valid_from) AS prev
            FROM dw.dim_{table} d WHERE {bk} IS NOT NULL) x
        WHERE a = prev""")
    assert repeats == []
    # every fact lies inside the range of the version it points to (or before the first)
    key = f"{table}_key"
    stray = rows(dsn, f"""
        SELECT f.order_id FROM dw.fact_sales f JOIN dw.dim_{table} d ON d.{key} = f.{key}
        WHERE d.{key} <> -1 AND NOT (f.order_ts < d.valid_to AND (f.order_ts >= d.valid_from
              OR d.valid_from = (SELECT min(valid_from) FROM dw.dim_{table} x WHERE x.{bk} = d.{bk})))""")
    assert stray == []


# ---- drops with dirt: (b) conservation, (c) idempotency, (d) splitting ---------------------

sale_row = st.tuples(
    st.sampled_from(["O-1", "O-2", "O-3", " O-1", ""]),      # order_id ('' is a reject)
    st.sampled_from(["1", "2", "0"]),                          # line_number (0 is a reject)
    st.integers(0, 59), st.integers(0, 23),                    # order day and hour
    st.sampled_from(["", "C-1", "C-2 "]),                      # customer
    st.sampled_from(["", "S-1"]),                              # store
    st.sampled_from(["P-1", "P-2", "P-9"]),                    # product (P-9 never described)
    st.sampled_from(["1", "2", "-1", "0"]),                    # quantity (0 is a reject)
    st.sampled_from(["1.00", "2.50", "-1.00"]),                # unit_price (< 0 is a reject)
    st.sampled_from(["", "0.10", "x"]),                        # discount (x is a reject)
    st.sampled_from(["", 0, 5, 40]),                           # updated_at: '' or a day offset
)
prod_row = st.tuples(st.sampled_from(["P-1", "P-2", " P-1"]), product_row, st.integers(0, 59))
cust_row = st.tuples(st.sampled_from(["C-1", "C-2"]), st.sampled_from(["Austin", "Boston"]),
                     st.sampled_from(["usa", "US", "Canada"]), st.integers(0, 59))


def sales_rows(drawn):
    out = []
    for oid, line, day, hour, c, s, p, q, price, disc, upd in drawn:
        updated = "" if upd == "" else ts(day + upd, hour)
        out.append([oid, line, ts(day, hour), c, s, p, q, price, disc, updated])
    return out


def drop_files(products, customers, sales):
    return dict(
        products=[[p, n, c, "", "", pr, ts(d)] for p, (n, c, pr), d in products],
        customers=[[c, "A", "B", "", "", city, "", co, "", ts(d)] for c, city, co, d in customers],
        sales=sales_rows(sales),
    )


drop = st.tuples(st.lists(prod_row, max_size=6), st.lists(cust_row, max_size=4),
                 st.lists(sale_row, min_size=1, max_size=25))


@PROPS
@given(parts=drop)
def test_conservation_and_idempotency_for_any_drop(cluster, tmp_path, parts):
    with fresh_warehouse(cluster, tmp_path) as s:
        d = write_drop(tmp_path / s.dsn[-12:] / "d", **drop_files(*parts))
        run = load(s, d)
        for c in run.counts.values():
            assert c.read == c.loaded + c.merged + c.rejected + c.duplicate, c
        sales = run.counts["sales"]
        assert sales.read == len(parts[2])
        assert rows(s.dsn, "SELECT count(*) FROM dw.fact_sales") == [(sales.loaded,)]
        assert rows(s.dsn, "SELECT count(*) FROM etl.rejects") == [
            (sum(c.rejected for c in run.counts.values()),)]
        before = checksum(s.dsn)
        again = load(s, d)
        assert checksum(s.dsn) == before
        assert again.counts["sales"].loaded == 0
        assert_scd2_invariants(s.dsn, "product")
        assert_scd2_invariants(s.dsn, "customer")


def warehouse_content(dsn: str) -> dict[str, list]:
    """The warehouse with surrogate keys replaced by business keys and validity ranges."""
    dims = {
        t: sorted(rows(dsn, f"SELECT (to_jsonb(d) - '{t}_key' - 'run_id')::text FROM dw.dim_{t} d "
                            f"WHERE {t}_id IS NOT NULL"))
        for t in ("product", "customer", "store")
    }
    facts = sorted(query(dsn, """
        SELECT f.order_id, f.line_number, f.order_ts, f.date_key, f.quantity,
               f.unit_price::text, f.discount::text, f.total_amount::text, f.updated_at,
               p.product_id, p.valid_from::text AS pf, c.customer_id, c.valid_from::text AS cf,
               s.store_id, s.valid_from::text AS sf
        FROM dw.fact_sales f JOIN dw.dim_product p USING (product_key)
        JOIN dw.dim_customer c USING (customer_key) JOIN dw.dim_store s USING (store_key)
    """).rows(), key=repr)
    return {**{k: sorted(v, key=repr) for k, v in dims.items()}, "facts": facts}


@PROPS
@given(parts=drop, cuts=st.lists(st.integers(0, 25), max_size=3))
def test_a_drop_split_in_order_gives_the_warehouse_of_the_whole_drop(cluster, tmp_path, parts, cuts):
    products, customers, sales = parts
    with fresh_warehouse(cluster, tmp_path) as whole:
        load(whole, write_drop(tmp_path / whole.dsn[-12:] / "d", **drop_files(*parts)))
        expected = warehouse_content(whole.dsn)
    with fresh_warehouse(cluster, tmp_path) as split:
        bounds = sorted({0, len(sales), *[min(c, len(sales)) for c in cuts]})
        chunks = [sales[a:b] for a, b in itertools.pairwise(bounds)]
        # dimension rows travel with the first chunk; sales keep their order across drops
        for i, chunk in enumerate(chunks):
            files = drop_files(products if i == 0 else [], customers if i == 0 else [], chunk)
            files = {k: v for k, v in files.items() if v}
            load(split, write_drop(tmp_path / split.dsn[-12:] / f"d{i}", **files))
        assert warehouse_content(split.dsn) == expected
