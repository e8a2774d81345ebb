"""Issue 10, defect 2: event and version times outside the plausible window, and birth or
join dates in the future, are rejects with their rule, never a bigger calendar."""

from __future__ import annotations

import datetime as dt

from tests.helpers import load, rows, write_drop


def test_impossible_dates_are_rejected_and_dim_date_stays_small(settings, dsn, tmp_path):
    sale = ["O-1", 1, "2024-01-15T00:00:00Z", "", "", "P-1", 1, "1.00", "", ""]
    d = write_drop(tmp_path / "d",
                   customers=[["C-1", "A", "B", "", "", "", "", "", "2999-01-01", "2024-01-01"]],
                   sales=[sale, ["O-2", 1, "0001-01-01", *sale[3:]],
                          ["O-3", 1, "9999-12-31T00:00:00Z", *sale[3:]],
                          ["O-4", 1, "2024-01-15", *sale[3:9], "1985-06-01"]])
    run = load(settings, d)
    assert (run.counts["sales"].read, run.counts["sales"].rejected) == (4, 3)
    assert rows(dsn, "SELECT entity, line, rules::text FROM etl.rejects ORDER BY entity, line") == [
        ("customers", 2, "{join_date:in_the_future}"),
        ("sales", 3, "{order_ts:outside_window}"), ("sales", 4, "{order_ts:outside_window}"),
        ("sales", 5, "{updated_at:outside_window}")]
    assert rows(dsn, "SELECT min(date_key), max(date_key) FROM dw.dim_date")[0][0] >= 20240101
    assert rows(dsn, "SELECT count(*) FROM dw.dim_date")[0][0] <= 366


def test_the_window_is_a_setting(settings, dsn, tmp_path):
    d = write_drop(tmp_path / "d", sales=[["O-1", 1, "1985-01-15T00:00:00Z", "", "", "P-1", 1,
                                           "1.00", "", ""]])
    load(settings.model_copy(update={"plausible_from": dt.date(1980, 1, 1)}), d)
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(1,)]
