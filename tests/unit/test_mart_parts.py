"""The mart's additive KPI parts and customer days, computed by the refresh from a day's
lines (load/refresh.py), on literal lines with the expected figures written out."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import polars as pl

from retail_etl.load.refresh import customer_days, kpi_parts

D1, D2 = date(2024, 3, 1), date(2024, 3, 2)


def lines() -> pl.DataFrame:
    # order, day, store, category, customer, quantity, unit price, discount, total
    raw = [("O-1", D1, "S-1", "Toys", "C-1", 2, "10.00", "1.00", "19.00"),
           ("O-1", D1, "S-1", "Games", "C-1", 1, "5.00", None, "5.00"),
           ("O-2", D1, "S-2", "Toys", None, 3, "10.00", "0.00", "30.00"),
           ("O-3", D1, "S-1", "Toys", "C-2", -1, "10.00", None, "-10.00"),  # a return
           ("O-4", D2, "S-1", "Toys", "C-1", 1, "99999999.99", None, "99999999.99")]
    df = pl.DataFrame(raw, orient="row", schema=[
        "order_id", "date", "store_id", "category", "customer_id", "quantity", "unit_price",
        "discount", "total_amount"])
    return df.with_columns(pl.col("unit_price", "discount", "total_amount").cast(pl.Decimal(38, 2)),
                           segment=pl.lit("Retail"), country=pl.lit("US"))


def row(parts: pl.DataFrame, day: date, breakdown: str, **members) -> dict:
    hit = parts.filter(pl.col("date") == day, pl.col("breakdown") == breakdown,
                       *[pl.col(c) == v for c, v in members.items()])
    assert hit.height == 1, hit
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in hit.row(0, named=True).items()}


def test_the_days_total_counts_orders_once_and_returns_apart():
    total = row(kpi_parts(lines()), D1, "total")
    assert total == {
        "date": D1, "breakdown": "total", "store_id": None, "category": None, "segment": None,
        "country": None, "revenue": "44.00", "gross_sales": "54.00", "returns": "10.00",
        "orders": 3, "lines": 4, "units": 5, "units_sold": 6, "units_returned": 1,
        "discount": "1.00", "list_sales": "55.00"}


def test_an_order_across_two_categories_counts_in_each_and_once_in_its_store():
    parts = kpi_parts(lines())
    assert row(parts, D1, "category", category="Toys")["orders"] == 3
    assert row(parts, D1, "category", category="Games")["orders"] == 1
    assert row(parts, D1, "store", store_id="S-1")["orders"] == 2
    both = row(parts, D1, "store,category", store_id="S-1", category="Toys")
    assert (both["store_id"], both["category"], both["segment"], both["orders"],
            both["revenue"]) == ("S-1", "Toys", None, 2, "9.00")
    # every breakdown of a day adds up to its total
    sums = parts.filter(pl.col("date") == D1).group_by("breakdown").agg(pl.col("revenue").sum())
    assert set(sums["revenue"].cast(pl.String)) == {"44.00"} and sums.height == 6


def test_a_day_without_returns_has_zero_returns_not_null():
    d2 = row(kpi_parts(lines()), D2, "total")
    assert (d2["returns"], d2["units_returned"], d2["discount"], d2["revenue"]) == (
        "0.00", 0, "0.00", "99999999.99")


def test_customer_days_leave_out_lines_without_a_customer():
    got = customer_days(lines()).sort("customer_id", "date")
    assert [(c, d, o, n, str(r)) for c, d, o, n, r in got.iter_rows()] == [
        ("C-1", D1, 1, 2, "24.00"), ("C-1", D2, 1, 1, "99999999.99"), ("C-2", D1, 1, 1, "-10.00")]
