"""The days a run changes in a fact table, kept in etl.touched_days in the run's own
transaction (so they commit, or roll back, with the change): the mart's refresh recomputes
those days, and nothing else (load/refresh.py)."""

from __future__ import annotations

import polars as pl

from retail_etl.load.copy import copy_temp


def mark(cur, fact_table: str, date_keys: pl.Series, run_id: int) -> None:
    """Record these date keys (any number of repeats) as touched."""
    days = date_keys.drop_nulls().unique()
    if days.len():
        copy_temp(cur.connection, "stg_touched_days", days.cast(pl.Int32).to_frame("date_key"))
        cur.execute("INSERT INTO etl.touched_days (fact, date_key, run_id) "
                    "SELECT $1, date_key, $2 FROM stg_touched_days",
                    parameters=(fact_table, run_id))


def cte(fact_table: str, changed: str, run_id: int, date_key: str = "date_key") -> str:
    """A data-modifying WITH item recording the days of the rows of WITH item `changed` (a
    DELETE or UPDATE ... RETURNING `date_key`): add it after `changed`."""
    return (f"touched AS (INSERT INTO etl.touched_days (fact, date_key, run_id) "
            f"SELECT DISTINCT '{fact_table}', {date_key}, {int(run_id)} FROM {changed})")
