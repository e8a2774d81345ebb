"""retail_etl/load/merge.compare_lines on in-memory frames: which of a run's fact lines are
written, which stored lines they replace (and from which month), which are unchanged or an
older state of what is stored."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from retail_etl.load.merge import compare_lines
from retail_etl.spec import Column, Entity, FactByPartition, id_
from tests.helpers import table

LINES = Entity("lines", (id_("order_id"), Column("line_number", "int"),
                         Column("updated_at", "timestamp"), Column("total", "decimal")))
FACT = FactByPartition(name="fact_line", entity=LINES, table="dw.fact_line",
                       natural_key=("order_id", "line_number"), event_ts="updated_at",
                       version="updated_at", references=(), measures={}, dtypes={})

STORED = table("""
    | order_id | line_number | date_key | updated_at | total |
    | O-1      | 1           | 20240110 | 2024-01-10 | 5.00  |
    | O-2      | 1           | 20240110 | 2024-01-10 | 7.00  |
    | O-3      | 1           | 20240110 | 2024-01-10 | 9.00  |
    | O-4      | 1           | 20240110 | 2024-01-10 | 1.00  |""")
RUN = table("""
    | order_id | line_number | date_key | updated_at | total |
    | O-1      | 1           | 20240110 | 2024-01-10 | 5.00  |
    | O-2      | 1           | 20240205 | 2024-02-05 | 8.00  |
    | O-3      | 1           | 20240101 | 2024-01-01 | 0.50  |
    | O-4      | 1           | 20240110 | 2024-01-10 | 2.00  |
    | O-5      | 1           | 20240301 | 2024-03-01 | 3.00  |""")


def test_new_and_changed_lines_are_written_and_replace_their_stored_state():
    write, replaced, cmp = compare_lines(FACT, RUN, STORED)
    assert_frame_equal(write.select(RUN.columns).sort("order_id"), table("""
        | order_id | line_number | date_key | updated_at | total |
        | O-2      | 1           | 20240205 | 2024-02-05 | 8.00  |
        | O-4      | 1           | 20240110 | 2024-01-10 | 2.00  |
        | O-5      | 1           | 20240301 | 2024-03-01 | 3.00  |"""))
    # O-2 moved from January: the January row is the one to delete; O-4 (same version,
    # other content) is a correction and replaces its row too
    assert_frame_equal(replaced.sort("order_id"), table("""
        | order_id | line_number | old_date_key |
        | O-2      | 1           | 20240110     |
        | O-4      | 1           | 20240110     |""", old_date_key=pl.Int32))
    flags = dict(zip(cmp["order_id"], zip(cmp["_same"], cmp["_stale"], strict=True), strict=True))
    assert flags == {"O-1": (True, False), "O-2": (False, False), "O-3": (False, True),
                     "O-4": (False, False), "O-5": (False, False)}


def test_nothing_stored_means_every_line_is_new():
    write, replaced, cmp = compare_lines(FACT, RUN, STORED.clear())
    assert write.height == RUN.height and replaced.is_empty()
    assert not cmp["_same"].any() and not cmp["_stale"].any()


def test_a_stored_line_with_null_measures_is_still_known():
    """A stored line is known by its partition column, never by a nullable value."""
    order = ["order_id", "line_number", "total", "date_key", "updated_at"]  # a measure first
    stored = STORED.with_columns(total=pl.lit(None, pl.Decimal(12, 2))).select(order)
    _, replaced, cmp = compare_lines(FACT, RUN.select(order), stored)
    assert replaced.height == 3  # O-1, O-2, O-4: not inserted beside their stored rows
    assert cmp.filter(pl.col("order_id") == "O-3")["_stale"].to_list() == [True]
