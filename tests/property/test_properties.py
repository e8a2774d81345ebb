"""Hypothesis properties of the load, each against a real PostgreSQL (a fresh database per
example): SCD2 history reproduces every snapshot, conservation, idempotency, and a drop
split into several drops gives the warehouse of the whole drop."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    assert_scd2_invariants,
    checksum,
    database_of,
    fresh_warehouse,
    load,
    rows,
    scaled,
    ts,
    warehouse_content,
    write_drop,
)

PROPS = settings(max_examples=scaled(12), deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow, HealthCheck.data_too_large])

spaced = st.sampled_from(["", " ", "  "])


def noisy(values):
    """A value from `values`, sometimes with white space that cleaning removes."""
    return st.builds(lambda v, a, b: f"{a}{v}{b}" if v else v, st.sampled_from(values), spaced, spaced)

product_row = st.tuples(noisy(["Widget", "Gadget", "Big Widget"]), st.sampled_from(["Tools", "Toys", ""]),
                        st.sampled_from(["1.00", "2.50", "2.5", ""]))
snapshot = st.dictionaries(st.sampled_from(["P-1", "P-2", "P-3"]), product_row, min_size=1)


@PROPS
@given(snapshots=st.lists(snapshot, min_size=1, max_size=4))
def test_in_order_snapshots_give_scd2_history_that_reproduces_each(cluster, tmp_path, snapshots):
    with fresh_warehouse(cluster, tmp_path) as s:
        for i, snap in enumerate(snapshots):
            write_drop(tmp_path / database_of(s.dsn) / f"d{i}", products=[
                [pid, name, cat, "", "", price, ts(i * 10)] for pid, (name, cat, price) in snap.items()])
            load(s, tmp_path / database_of(s.dsn) / f"d{i}")
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
        d = write_drop(tmp_path / database_of(s.dsn) / "d", **drop_files(*parts))
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

@PROPS
@given(parts=drop, cuts=st.lists(st.integers(0, 25), max_size=3))
def test_a_drop_split_in_order_gives_the_warehouse_of_the_whole_drop(cluster, tmp_path, parts, cuts):
    products, customers, sales = parts
    with fresh_warehouse(cluster, tmp_path) as whole:
        load(whole, write_drop(tmp_path / database_of(whole.dsn) / "d", **drop_files(*parts)))
        expected = warehouse_content(whole.dsn)
    with fresh_warehouse(cluster, tmp_path) as split:
        bounds = sorted({0, len(sales), *[min(c, len(sales)) for c in cuts]})
        chunks = [sales[a:b] for a, b in itertools.pairwise(bounds)]
        # dimension rows travel with the first chunk; sales keep their order across drops
        for i, chunk in enumerate(chunks):
            files = drop_files(products if i == 0 else [], customers if i == 0 else [], chunk)
            files = {k: v for k, v in files.items() if v}
            load(split, write_drop(tmp_path / database_of(split.dsn) / f"d{i}", **files))
        assert warehouse_content(split.dsn) == expected
