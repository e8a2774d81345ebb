"""The first end-to-end checks: a drop loads, counts balance, a second load changes nothing."""

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
