"""retail_etl/transform/scd2.diff on in-memory frames: each case drawn as the stored
versions (before), the run's versions (input) and the history it must produce (after),
with the rows to write, absorb and re-point."""

from __future__ import annotations

import polars as pl
from polars.testing import assert_frame_equal

from retail_etl.transform.scd2 import BEGINNING, diff
from tests.helpers import DIM_THING, table

DIM = DIM_THING
NOTHING_STORED = "| key | id | name | price | valid_from | valid_to | is_inferred |"
NOBODY = pl.DataFrame(schema={"id": pl.String})


def run(before: str, incoming: str, *, referenced=NOBODY, next_key: int = 10):
    return diff(DIM, table(incoming), table(before), referenced, next_key)


def history(res) -> pl.DataFrame:
    return res.history.drop("lookup_from").sort("id", "valid_from")


def after(text: str) -> pl.DataFrame:
    return table(text).sort("id", "valid_from")


def test_a_new_key_gets_one_open_version_and_a_fresh_key():
    res = run(NOTHING_STORED, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 1.00  | 2024-01-01 | 1    |""")
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to | is_current | is_inferred |
        | 10  | P-1 | Mug  | 1.00  | 2024-01-01 | -        | yes        | no          |"""))
    assert (res.loaded, res.merged, res.inferred, res.next_key) == (1, 0, 0, 11)
    assert res.deletes.is_empty() and res.repoint.is_empty()


BEFORE = """
    | key | id  | name | price | valid_from | valid_to   | is_inferred |
    | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | 2024-03-01 | no          |
    | 2   | P-1 | Mug  | 2.00  | 2024-03-01 | -          | no          |"""


def test_a_row_equal_to_the_current_version_changes_nothing():
    res = run(BEFORE, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 2.00  | 2024-04-01 | 1    |""")
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to   | is_current | is_inferred |
        | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | 2024-03-01 | no         | no          |
        | 2   | P-1 | Mug  | 2.00  | 2024-03-01 | -          | yes        | no          |"""))
    assert res.upserts.is_empty() and (res.loaded, res.merged) == (0, 1)


def test_a_change_closes_the_current_version_at_the_new_one():
    res = run(BEFORE, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 3.00  | 2024-05-01 | 1    |""")
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to   | is_current | is_inferred |
        | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | 2024-03-01 | no         | no          |
        | 2   | P-1 | Mug  | 2.00  | 2024-03-01 | 2024-05-01 | no         | no          |
        | 10  | P-1 | Mug  | 3.00  | 2024-05-01 | -          | yes        | no          |"""))
    assert sorted(res.upserts["key"]) == [2, 10]  # key 1 is untouched
    assert res.repoint["key"].to_list() == [2]  # sales after May leave version 2
    assert res.repoint_since.isoformat().startswith("2024-05-01")


def test_a_late_version_splits_history_where_it_belongs():
    res = run(BEFORE, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 1.50  | 2024-02-01 | 1    |""")
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to   | is_current | is_inferred |
        | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | 2024-02-01 | no         | no          |
        | 10  | P-1 | Mug  | 1.50  | 2024-02-01 | 2024-03-01 | no         | no          |
        | 2   | P-1 | Mug  | 2.00  | 2024-03-01 | -          | yes        | no          |"""))
    assert sorted(res.upserts["key"]) == [1, 10] and res.loaded == 1
    assert res.repoint_since.isoformat().startswith("2024-02-01")


def test_a_late_version_equal_to_the_next_absorbs_it_and_keeps_its_key():
    res = run(BEFORE, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 2.00  | 2024-02-01 | 1    |""")
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to   | is_current | is_inferred |
        | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | 2024-02-01 | no         | no          |
        | 2   | P-1 | Mug  | 2.00  | 2024-02-01 | -          | yes        | no          |"""))
    assert sorted(res.upserts["key"]) == [1, 2] and res.deletes.is_empty()
    assert sorted(res.repoint["key"]) == [1, 2]  # both ranges moved


def test_a_correction_at_the_same_instant_replaces_the_version_and_may_merge_it_away():
    res = run(BEFORE, """
        | id  | name | price | valid_from | _seq |
        | P-1 | Mug  | 1.00  | 2024-03-01 | 1    |""")  # March was 1.00 after all
    assert_frame_equal(history(res), after("""
        | key | id  | name | price | valid_from | valid_to | is_current | is_inferred |
        | 1   | P-1 | Mug  | 1.00  | 2024-01-01 | -        | yes        | no          |"""))
    assert res.deletes["key"].to_list() == [2]  # absorbed: its facts go back to key 1
    assert sorted(res.repoint["key"]) == [1, 2]


def test_an_inferred_member_is_completed_in_place_and_unknown_ids_are_inferred():
    before = """
        | key | id  | name | price | valid_from          | valid_to | is_inferred |
        | 5   | P-9 | -    | -     | 0001-01-01T00:00:00 | -        | yes         |"""
    res = run(before, """
        | id  | name | price | valid_from | _seq |
        | P-9 | Pot  | 4.00  | 2024-02-01 | 1    |""",
              referenced=pl.DataFrame({"id": ["P-9", "P-7"]}))
    got = history(res)
    assert_frame_equal(got.filter(pl.col("id") == "P-9"), after("""
        | key | id  | name | price | valid_from | valid_to | is_current | is_inferred |
        | 5   | P-9 | Pot  | 4.00  | 2024-02-01 | -        | yes        | no          |"""))
    (made,) = got.filter(pl.col("id") == "P-7").iter_rows(named=True)
    assert (made["key"], made["is_inferred"], made["name"], made["valid_from"]) == (
        10, True, None, BEGINNING)
    assert (res.loaded, res.inferred, res.next_key) == (1, 1, 11)


def test_a_value_that_became_unknown_is_a_change():
    """NULL is a value of its own in the signature, not an empty string."""
    before = """
        | key | id  | name | price | valid_from | valid_to | is_inferred |
        | 1   | P-1 | -    | 1.00  | 2024-01-01 | -        | no          |"""
    res = run(before, """
        | id  | name | price | valid_from | _seq |
        | P-1 |      | 1.00  | 2024-02-01 | 1    |""")
    assert history(res).height == 2 and res.loaded == 1
