"""The first end-to-end checks: a drop loads, counts balance, a second load changes nothing."""

import pytest

from retail_etl.load import merge
from tests.helpers import checksum, dim, load, rows, write_drop


def test_drop_loads_into_star_schema(settings, dsn, tmp_path):
    d = write_drop(
        tmp_path / "d1",
        products=[["P-1", "Widget", "Tools", "Hand", "Acme", "10.00", "2024-01-01T00:00:00Z"]],
        customers=[["C-1", "Ann", "Lee", "ANN@X.COM", "Consumer", "Austin", "TX", "usa",
                    "2023-05-01", "2024-01-01"]],
        sales_2024_01=[["O-1", 1, "2024-01-15T10:00:00Z", "C-1", "", "P-1", 2, "10.00", "", ""]],
    )
    run = load(settings, d)
    assert all(c.balanced() for c in run.counts.values())
    assert dim(dsn, "customer", "customer_id, customer_name, email, country") == [
        ("C-1", "Ann Lee", "ann@x.com", "US")]
    assert rows(dsn, "SELECT order_id, date_key, quantity, total_amount::text, store_key "
                     "FROM dw.fact_sales") == [("O-1", 20240115, 2, "20.00", -1)]
    # the stages say how many rows each handled (runs --show, the progress bars)
    handled = {s.name: s.rows for s in run.stages}
    assert (handled["validate"], handled["lookup"], handled["copy"]) == (3, 1, 1)


def test_second_load_of_same_drop_changes_nothing(settings, dsn, tmp_path):
    d = write_drop(
        tmp_path / "d1",
        products=[["P-1", "Widget", "Tools", "Hand", "Acme", "10.00", "2024-01-01T00:00:00Z"],
                  ["P-1", "Widget", "Tools", "Hand", "Acme", "12.00", "2024-02-01T00:00:00Z"]],
        sales=[["O-1", 1, "2024-01-15T10:00:00Z", "", "S-1", "P-1", 2, "10.00", "1.00", ""],
               ["O-2", 1, "2024-03-15T10:00:00Z", "C-9", "", "P-1", 1, "12.00", "", ""]],
    )
    load(settings, d)
    before = checksum(dsn)
    run = load(settings, d)
    assert checksum(dsn) == before
    assert run.counts["sales"].loaded == 0 and run.counts["sales"].merged == 2


@pytest.mark.parametrize("overlap", [2.0, -1.0], ids=["by key range", "one join"])
def test_corrections_find_their_stored_lines_either_way(settings, dsn, tmp_path, monkeypatch,
                                                        overlap):
    """Stored lines are found month by month within each month's key range, or by one join
    (merge._by_key_range picks by cost): both find a line at its range's ends and one
    that moves to another month, so no line is ever stored twice."""
    monkeypatch.setattr(merge, "OVERLAP", overlap)
    ts = {1: "2024-01-10T10:00:00Z", 2: "2024-02-10T10:00:00Z"}
    line = lambda o, m, q, up="": [o, 1, ts[m], "C-1", "S-1", "P-1", q, "1.00", "", up]  # noqa: E731
    load(settings, write_drop(tmp_path / "d1", sales=[
        line("O-10", 1, 1), line("O-15", 1, 1), line("O-19", 1, 1), line("O-20", 2, 1)]))
    load(settings, write_drop(tmp_path / "d2", sales=[
        line("O-10", 1, 2, "2024-03-01"),   # its month's lowest key
        line("O-19", 2, 3, "2024-03-01"),   # its month's highest key, moved to February
        line("O-20", 2, 4, "2024-03-01"),
        line("O-99", 2, 5)]))               # new: inside no month's range
    assert rows(dsn, "SELECT order_id, date_key / 100, quantity FROM dw.fact_sales "
                     "ORDER BY order_id") == [
        ("O-10", 202401, 2), ("O-15", 202401, 1), ("O-19", 202402, 3), ("O-20", 202402, 4),
        ("O-99", 202402, 5)]
