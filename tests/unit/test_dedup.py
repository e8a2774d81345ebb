"""retail_etl/transform/dedup on in-memory frames and local Parquet files (DuckDB, no
server): which row of a key wins, and that every loser is counted."""

from __future__ import annotations

from polars.testing import assert_frame_equal

from retail_etl.spec import Column, DimensionReference, Entity, FactByPartition, id_
from retail_etl.transform.dedup import dimension_versions, fact_duplicates
from tests.helpers import DIM_THING as DIM
from tests.helpers import table

LINES = Entity("lines", (id_("order_id"), Column("line_number", "int"), id_("id"),
                         Column("order_ts", "timestamp"), Column("updated_at", "timestamp")))
FACT = FactByPartition(name="fact_line", entity=LINES, table="dw.fact_line",
                       natural_key=("order_id", "line_number"), event_ts="order_ts",
                       version="updated_at", references=(DimensionReference(DIM, "id", "key"),),
                       measures={}, dtypes={})


def test_one_dimension_row_per_key_and_instant_the_last_in_load_order_wins():
    rows = table("""
        | id  | name | valid_from | _seq |
        | P-1 | a    | 2024-01-01 | 3    |
        | P-1 | b    | 2024-01-01 | 1    |
        | P-1 | c    | 2024-02-01 | 2    |
        | P-2 | d    | 2024-01-01 | 4    |""")
    dim = DIM.__class__(**{**{f: getattr(DIM, f) for f in ("name", "entity", "table",
                           "surrogate_key", "business_key", "attributes", "dtypes")},
                           "valid_from": "valid_from"})
    got = dimension_versions(rows.lazy(), dim).collect().sort("id", "valid_from")
    assert_frame_equal(got, table("""
        | id  | name | valid_from | _seq |
        | P-1 | a    | 2024-01-01 | 3    |
        | P-1 | c    | 2024-02-01 | 2    |
        | P-2 | d    | 2024-01-01 | 4    |"""))


def _month_file(tmp_path, m: int, text: str):
    path = tmp_path / "valid" / f"m={m}" / "part.parquet"
    path.parent.mkdir(parents=True)
    table(text).write_parquet(path)
    return path


def test_the_latest_version_of_a_line_wins_then_the_last_in_load_order(tmp_path):
    jan = _month_file(tmp_path, 202401, """
        | order_id | line_number | id  | order_ts   | updated_at | _seq |
        | O-1      | 1           | P-1 | 2024-01-05 | 2024-01-06 | 1    |
        | O-1      | 1           | P-2 | 2024-01-05 | 2024-01-09 | 2    |
        | O-2      | 1           | P-3 | 2024-01-07 | -          | 3    |
        | O-2      | 1           | P-4 | 2024-01-07 | -          | 4    |
        | O-3      | 1           | P-1 | 2024-01-08 | 2024-01-08 | 5    |""")
    feb = _month_file(tmp_path, 202402, """
        | order_id | line_number | id  | order_ts   | updated_at | _seq |
        | O-3      | 1           | P-5 | 2024-02-01 | 2024-01-07 | 6    |""")  # older state
    dups = fact_duplicates([jan, feb], FACT, threads=1, memory_limit="256MB",
                           spill_to=tmp_path / "spill")
    # O-1: the later version (seq 2); O-2 without versions: the last loaded (seq 4);
    # O-3: January's newer state beats February's older one, wherever it lies
    assert sorted(dups.losers["_seq"].to_list()) == [1, 3, 6]
    assert dups.month_rows == {202401: 3}  # February keeps no line
    assert sorted(dups.ids["id"].to_list()) == ["P-1", "P-2", "P-4"]


def test_a_drop_without_duplicates_loses_nothing(tmp_path):
    only = _month_file(tmp_path, 202401, """
        | order_id | line_number | id  | order_ts   | updated_at | _seq |
        | O-1      | 1           | P-1 | 2024-01-05 | -          | 1    |
        | O-1      | 2           | P-1 | 2024-01-05 | -          | 2    |""")
    dups = fact_duplicates([only], FACT, threads=1, memory_limit="256MB",
                           spill_to=tmp_path / "spill")
    assert dups.losers.is_empty() and dups.month_rows == {202401: 2}
