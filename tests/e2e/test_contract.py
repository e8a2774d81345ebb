"""CONTRACT.md rule by rule, as drawn tables: the input drops, then the warehouse after."""

import gzip
from datetime import UTC, datetime

import polars as pl
import pytest

from retail_etl.errors import InputError
from tests.helpers import HEADERS, database_of, dim, load, query, rows, write_drop

T0 = "2024-01-01T00:00:00Z"
INF = None  # valid_to of the current version


def prod(pid, price="10.00", at=T0, name="Widget", cat="Tools"):
    return [pid, name, cat, "Hand", "Acme", price, at]


def sale(oid, line, ts, pid="P-1", cust="", store="", qty=1, price="10.00", disc="", upd=""):
    return [oid, line, ts, cust, store, pid, qty, price, disc, upd]


# ---- files ---------------------------------------------------------------------------------

def test_several_files_gzip_parquet_and_bom(settings, dsn, tmp_path):
    d = tmp_path / "d"
    write_drop(d, sales_a=[sale("O-1", 1, "2024-01-05T00:00:00Z")])
    # gzip-compressed CSV with a BOM
    text = "\ufeff" + HEADERS["sales"] + "\nO-2,1,2024-01-06T00:00:00Z,,,P-1,1,10.00,,\n"
    (d / "sales_b.csv.gz").write_bytes(gzip.compress(text.encode()))
    pl.DataFrame({"order_id": ["O-3"], "line_number": [1],
                  "order_ts": [datetime(2024, 1, 7, tzinfo=UTC)], "product_id": ["P-1"],
                  "quantity": [2], "unit_price": ["10.00"]}).write_parquet(d / "sales_c.parquet")
    write_drop(d, products=[prod("P-1")])
    run = load(settings, d)
    assert run.counts["sales"].read == 3
    assert rows(dsn, "SELECT order_id, quantity FROM dw.fact_sales ORDER BY 1") == [
        ("O-1", 1), ("O-2", 1), ("O-3", 2)]


def test_unknown_columns_are_ignored_and_reported(settings, dsn, tmp_path, capsys):
    d = write_drop(tmp_path / "d", products=HEADERS["products"] + ",colour\n"
                   "P-1,W,T,H,A,1.00,2024-01-01,red\n")
    load(settings, d)
    assert "products: ignoring unknown columns: colour (1 of 1 files)" in capsys.readouterr().err
    assert dim(dsn, "product", "product_id, price::text") == [("P-1", "1.00")]


def test_missing_required_column_names_file_and_column(settings, dsn, tmp_path):
    d = write_drop(tmp_path / "d", products="product_id,product_name\nP-1,W\n")
    with pytest.raises(InputError, match=r"products.csv: missing required column 'updated_at'"):
        load(settings, d)
    assert rows(dsn, "SELECT count(*) FROM dw.dim_product") == [(1,)]  # the unknown member only


# ---- cleaning ------------------------------------------------------------------------------

def test_a_difference_cleaning_removes_creates_no_version(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", name="Big Widget")]))
    load(settings, write_drop(tmp_path / "d2", products=[
        prod(" P-1 ", name="  Big   Widget ", at="2024-02-01T00:00:00Z")]))
    assert dim(dsn, "product", "product_id, product_name, valid_from, vt") == [
        ("P-1", "Big Widget", datetime(2024, 1, 1, tzinfo=UTC), INF)]


def test_id_of_only_white_space_is_a_reject(settings, dsn, tmp_path):
    run = load(settings, write_drop(tmp_path / "d", products=[prod("   ")]))
    assert run.counts["products"].rejected == 1
    assert rows(dsn, "SELECT file, line, rules FROM etl.rejects") == [
        ("products.csv", 2, ["product_id:required"])]


# ---- rejects ---------------------------------------------------------------------------------

def test_rejects_keep_the_whole_row_file_line_and_rules(settings, dsn, tmp_path):
    d = write_drop(tmp_path / "d", sales_2024=[
        sale("O-1", 1, T0),
        sale("O-2", 0, T0, qty=0),
        sale("O-3", 1, "not-a-date", price="-1"),
    ], products=[prod("P-1")])
    run = load(settings, d)
    assert run.counts["sales"].rejected == 2
    got = query(dsn, "SELECT file, line, rules, row->>'order_id' AS oid, row->>'quantity' AS q "
                     "FROM etl.rejects ORDER BY line")
    assert got.rows() == [
        ("sales_2024.csv", 3, ["line_number:below_1", "quantity:zero"], "O-2", "0"),
        ("sales_2024.csv", 4, ["order_ts:not_a_timestamp", "unit_price:below_0"], "O-3", "1"),
    ]


# ---- versions and duplicates ---------------------------------------------------------------

def test_scd2_versions_and_a_no_change_version(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[
        prod("P-1", "10.00", "2024-01-01T00:00:00Z"),
        prod("P-1", "12.00", "2024-02-01T00:00:00Z"),
        prod("P-1", "12.00", "2024-03-01T00:00:00Z"),  # no change: nothing, valid_from kept
    ]))
    assert dim(dsn, "product", "price::text, valid_from, vt, is_current") == [
        ("10.00", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC), False),
        ("12.00", datetime(2024, 2, 1, tzinfo=UTC), INF, True),
    ]


def test_same_updated_at_last_in_load_order_wins_also_against_stored(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products_a=[prod("P-1", "10.00")],
                              products_b=[prod("P-1", "11.00")]))
    assert dim(dsn, "product", "price::text") == [("11.00",)]
    key = rows(dsn, "SELECT product_key FROM dw.dim_product WHERE product_id = 'P-1'")
    load(settings, write_drop(tmp_path / "d2", products=[prod("P-1", "13.00")]))
    # overwritten in place: same key, one version
    assert dim(dsn, "product", "price::text, valid_from") == [
        ("13.00", datetime(2024, 1, 1, tzinfo=UTC))]
    assert rows(dsn, "SELECT product_key FROM dw.dim_product WHERE product_id = 'P-1'") == key


def test_identical_rows_count_once(settings, dsn, tmp_path):
    run = load(settings, write_drop(tmp_path / "d", products=[prod("P-1")] * 3,
                                    sales=[sale("O-1", 1, T0)] * 2))
    c = run.counts
    assert (c["products"].loaded, c["products"].duplicate) == (1, 2)
    assert (c["sales"].loaded, c["sales"].duplicate) == (1, 1)


def test_sales_latest_updated_at_wins_then_last_in_load_order(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d", products=[prod("P-1")], sales_a=[
        sale("O-1", 1, T0, qty=5, upd="2024-01-03T00:00:00Z"),
        sale("O-1", 1, T0, qty=2, upd="2024-01-02T00:00:00Z"),
        sale("O-2", 1, T0, qty=1, upd=""),  # NULL counts as order_ts
        sale("O-2", 1, T0, qty=7, upd=T0),  # tie: last in load order
    ]))
    assert rows(dsn, "SELECT order_id, quantity FROM dw.fact_sales ORDER BY 1") == [
        ("O-1", 5), ("O-2", 7)]


def test_later_drop_corrects_a_line_and_an_older_state_is_ignored(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1")],
                              sales=[sale("O-1", 1, T0, qty=2, upd="2024-01-02T00:00:00Z")]))
    run = load(settings, write_drop(tmp_path / "d2", sales=[
        sale("O-1", 1, T0, qty=3, upd="2024-01-05T00:00:00Z")]))
    assert run.counts["sales"].loaded == 1
    assert rows(dsn, "SELECT count(*), sum(quantity) FROM dw.fact_sales") == [(1, 3)]
    run = load(settings, write_drop(tmp_path / "d3", sales=[
        sale("O-1", 1, T0, qty=9, upd="2024-01-03T00:00:00Z")]))
    assert (run.counts["sales"].loaded, run.counts["sales"].merged) == (0, 1)
    assert rows(dsn, "SELECT count(*), sum(quantity) FROM dw.fact_sales") == [(1, 3)]


def test_conservation_is_recorded_per_run_and_entity(settings, dsn, tmp_path):
    # every count different, so that two of them swapped fails (issue 20)
    load(settings, write_drop(tmp_path / "d", products=[prod("P-1"), prod("P-1"), prod("P-1"),
                                                        prod(""), prod("P-2")],
                              sales=[sale("O-1", 1, T0), sale("O-1", 1, T0), sale("O-2", 0, T0),
                                     sale("O-3", 0, T0), sale("O-4", 1, T0)]))
    load(settings, write_drop(tmp_path / "d2", products=[prod("P-1"), prod("P-3")]))
    got = rows(dsn, "SELECT run_id, entity, rows_read, rows_loaded, rows_merged, rows_rejected, "
                    "rows_duplicate FROM etl.run_entities WHERE rows_read > 0 ORDER BY 1, 2")
    assert got == [(1, "products", 5, 2, 0, 1, 2), (1, "sales", 5, 2, 0, 2, 1),
                   (2, "products", 2, 1, 1, 0, 0)]


# ---- the warehouse ---------------------------------------------------------------------------

def test_dim_date_and_fiscal_year_starting_in_february(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d", products=[prod("P-1")],
                              sales=[sale("O-1", 1, "2024-01-31T12:00:00Z")]))
    got = rows(dsn, "SELECT date_key, day_name, day_of_week, month_name, quarter, iso_week, "
                    "is_weekend, fiscal_year, fiscal_quarter FROM dw.dim_date "
                    "WHERE date_key IN (20240131, 20240203, 20241231) ORDER BY 1")
    assert got == [
        (20240131, "Wednesday", 3, "January", 1, 5, False, 2024, 4),
        (20240203, "Saturday", 6, "February", 1, 5, True, 2025, 1),
        (20241231, "Tuesday", 2, "December", 4, 1, False, 2025, 4),
    ]


def test_date_key_is_the_utc_date_whatever_the_time_zones(settings, dsn, tmp_path, monkeypatch):
    db = database_of(dsn)
    rows(dsn, f"ALTER DATABASE \"{db}\" SET timezone = 'Pacific/Kiritimati'")
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    load(settings, write_drop(tmp_path / "d", products=[prod("P-1")], sales=[
        sale("O-1", 1, "2024-01-31T23:30:00-02:00"),  # 2024-02-01 01:30 UTC
        sale("O-2", 1, "2024-02-29T23:59:59"),  # no offset: UTC
    ]))
    assert rows(dsn, "SELECT order_id, date_key FROM dw.fact_sales ORDER BY 1") == [
        ("O-1", 20240201), ("O-2", 20240229)]
    assert rows(dsn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'dw.fact_sales'::regclass") == [(1,)]


def test_sales_point_to_the_version_valid_at_order_ts(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d", products=[
        prod("P-1", "10.00", "2024-01-10T00:00:00Z"), prod("P-1", "12.00", "2024-02-01T00:00:00Z"),
    ], sales=[
        sale("O-0", 1, "2024-01-01T00:00:00Z"),  # before the first version: the first version
        sale("O-1", 1, "2024-01-31T23:59:59Z"),
        sale("O-2", 1, "2024-02-01T00:00:00Z"),
    ]))
    got = rows(dsn, "SELECT f.order_id, p.price::text FROM dw.fact_sales f "
                    "JOIN dw.dim_product p USING (product_key) ORDER BY 1")
    assert got == [("O-0", "10.00"), ("O-1", "10.00"), ("O-2", "12.00")]


def test_a_new_version_re_points_the_sales_after_it(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "10.00")], sales=[
        sale("O-1", 1, "2024-01-15T00:00:00Z"), sale("O-2", 1, "2024-03-15T00:00:00Z")]))
    load(settings, write_drop(tmp_path / "d2", products=[
        prod("P-1", "12.00", "2024-02-01T00:00:00Z")]))
    got = rows(dsn, "SELECT f.order_id, p.price::text, p.is_current FROM dw.fact_sales f "
                    "JOIN dw.dim_product p USING (product_key) ORDER BY 1")
    assert got == [("O-1", "10.00", False), ("O-2", "12.00", True)]


def test_null_parties_point_to_unknown_and_unknown_ids_to_inferred_members(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", sales=[
        sale("O-1", 1, "2024-01-15T00:00:00Z", pid="P-9", cust="C-9", store="")]))
    assert rows(dsn, "SELECT store_key FROM dw.fact_sales") == [(-1,)]
    inferred = dim(dsn, "customer", "customer_key, customer_id, customer_name, is_inferred")
    assert [r[1:] for r in inferred] == [("C-9", None, True)]
    assert dim(dsn, "product", "product_id, is_inferred") == [("P-9", True)]
    fact_before = rows(dsn, "SELECT customer_key, product_key, run_id FROM dw.fact_sales")
    # the real row arrives: completed in place, same key, one version, sales untouched
    load(settings, write_drop(tmp_path / "d2", customers=[
        ["C-9", "Ann", "Lee", "a@x.com", "Consumer", "Austin", "TX", "US", "", "2024-02-01"]]))
    assert dim(dsn, "customer", "customer_key, customer_id, customer_name, is_inferred, vt") == [
        (inferred[0][0], "C-9", "Ann Lee", False, INF)]
    assert rows(dsn, "SELECT customer_key, product_key, run_id FROM dw.fact_sales") == fact_before


def test_an_inferred_member_a_correction_leaves_unused_goes_away(settings, dsn, tmp_path):
    """Found by the split-drop property: the warehouse must be the one the corrected line
    alone would have made. One still used by another line stays."""
    load(settings, write_drop(tmp_path / "d1", sales=[
        sale("O-1", 1, "2024-01-15T00:00:00Z", pid="P-9"),
        sale("O-2", 1, "2024-01-15T00:00:00Z", pid="P-8"),
        sale("O-3", 1, "2024-01-15T00:00:00Z", pid="P-8")]))
    load(settings, write_drop(tmp_path / "d2", products=[prod("P-1")], sales=[
        sale("O-1", 1, "2024-01-15T00:00:00Z", pid="P-1", upd="2024-01-16T00:00:00Z"),
        sale("O-2", 1, "2024-01-15T00:00:00Z", pid="P-1", upd="2024-01-16T00:00:00Z")]))
    assert dim(dsn, "product", "product_id, is_inferred") == [("P-1", False), ("P-8", True)]


def test_total_amount_is_exact_numeric(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d", products=[prod("P-1")], sales=[
        sale("O-1", 1, T0, qty=3, price="0.10", disc="0.20"),
        sale("O-1", 2, T0, qty=-2, price="19.99", disc=""),
        sale("O-1", 3, T0, qty=1000000, price="9999999.99", disc="0.01"),
    ]))
    assert rows(dsn, "SELECT total_amount::text, discount::text FROM dw.fact_sales "
                     "ORDER BY line_number") == [
        ("0.10", "0.20"), ("-39.98", "0.00"), ("9999999989999.99", "0.01")]
    assert rows(dsn, "SELECT data_type FROM information_schema.columns WHERE table_schema = 'dw' "
                     "AND table_name = 'fact_sales' AND column_name = 'total_amount'") == [("numeric",)]


def test_change_detection_keeps_fields_apart(settings, dsn, tmp_path):
    cust = ["C-1", "a", "bc", "", "", "", "", "", "", "2024-01-01"]
    moved = ["C-1", "ab", "c", "", "", "", "", "", "", "2024-02-01"]
    load(settings, write_drop(tmp_path / "d", customers=[cust, moved]))
    # customer_name is 'a bc' vs 'ab c'; first/last also differ in the source
    assert len(dim(dsn, "customer", "customer_id")) == 2


def test_every_row_records_the_run_that_wrote_it_last(settings, dsn, tmp_path):
    r1 = load(settings, write_drop(tmp_path / "d1", products=[prod("P-1"), prod("P-2")],
                                   sales=[sale("O-1", 1, T0), sale("O-2", 1, T0)]))
    r2 = load(settings, write_drop(tmp_path / "d2", products=[prod("P-2", "20.00")],
                                   sales=[sale("O-2", 1, T0, qty=4, upd="2024-01-02")]))
    assert dim(dsn, "product", "product_id, run_id") == [("P-1", r1.run_id), ("P-2", r2.run_id)]
    assert rows(dsn, "SELECT order_id, run_id FROM dw.fact_sales ORDER BY 1") == [
        ("O-1", r1.run_id), ("O-2", r2.run_id)]


def test_runs_are_recorded_with_stages(settings, dsn, tmp_path):
    r = load(settings, write_drop(tmp_path / "d", products=[prod("P-1")]))
    assert rows(dsn, "SELECT status, ended_at IS NOT NULL FROM etl.runs") == [("ok", True)]
    stages = [s for (s,) in rows(dsn, f"SELECT stage FROM etl.run_stages WHERE run_id = {r.run_id} ORDER BY seq")]
    assert stages[:3] == ["extract", "validate", "dedup"] and "analyze" in stages


def test_real_world_csv_shapes(settings, dsn, tmp_path):
    """CRLF line ends, a BOM, header names in another case and order with spaces, quoted
    fields holding commas, quotes and a newline, non-ASCII text, and typed Parquet."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "Products_2024.CSV").write_bytes((
        "\ufeff UPDATED_AT ,Product_ID,unit_price,Product_Name,category\r\n"
        '2024-01-01T00:00:00+01:00,P-1,"1,5",x,Tools\r\n'
        '2024-01-01,P-2,2.50,"Caf\u00e9 ""Cr\u00e8me"", 1 kg",Grocery\r\n'
        '2024-01-01,P-3,3.00,"two\r\nlines",Grocery\r\n').encode())
    pl.DataFrame({
        "product_id": ["P-4"], "unit_price": [pl.Series([1.25]).cast(pl.Decimal(12, 2))[0]],
        "updated_at": [datetime(2024, 1, 1, 12, tzinfo=UTC)],
    }).write_parquet(d / "products_typed.parquet")
    run = load(settings, d)
    assert (run.counts["products"].read, run.counts["products"].rejected) == (4, 1)
    assert rows(dsn, "SELECT rules FROM etl.rejects") == [(["unit_price:not_a_decimal_12_2"],)]
    assert dim(dsn, "product", "product_id, product_name, price::text, valid_from") == [
        ("P-2", 'Caf\u00e9 "Cr\u00e8me", 1 kg', "2.50", datetime(2024, 1, 1, tzinfo=UTC)),
        ("P-3", "two lines", "3.00", datetime(2024, 1, 1, tzinfo=UTC)),
        ("P-4", None, "1.25", datetime(2024, 1, 1, 12, tzinfo=UTC)),
    ]


def test_one_run_moving_edges_far_apart_re_points_every_sale_between(settings, dsn, tmp_path):
    """A late version (February) and a new current one (May) in the same run: the sales
    from February on are re-pointed, not only those after the latest edge."""
    load(settings, write_drop(tmp_path / "d1", products=[
        prod("P-1", "10.00", "2024-01-01T00:00:00Z"), prod("P-1", "30.00", "2024-03-01T00:00:00Z")],
        sales=[sale(f"O-{m}", 1, f"2024-{m:02d}-15T00:00:00Z") for m in (1, 2, 3, 4, 5, 6)]))
    load(settings, write_drop(tmp_path / "d2", products=[
        prod("P-1", "20.00", "2024-02-01T00:00:00Z"), prod("P-1", "50.00", "2024-05-01T00:00:00Z")]))
    got = rows(dsn, "SELECT f.order_id, p.price::text FROM dw.fact_sales f "
                    "JOIN dw.dim_product p USING (product_key) ORDER BY 1")
    assert got == [("O-1", "10.00"), ("O-2", "20.00"), ("O-3", "30.00"), ("O-4", "30.00"),
                   ("O-5", "50.00"), ("O-6", "50.00")]
