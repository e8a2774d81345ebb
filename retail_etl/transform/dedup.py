"""Duplicates inside one run. A row identical to another counts once; among rows of one key
the winner is decided by the pipeline's rule and load order (`_seq`). Every loser is
counted as a duplicate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from retail_etl.spec import DimensionSCD2, FactByPartition


def dimension_versions(valid: pl.LazyFrame, dim: DimensionSCD2) -> pl.LazyFrame:
    """One row per (business key, updated_at): the last in load order wins.
    Exact duplicates are a special case of that rule."""
    return (
        valid.sort("_seq")
        .unique([dim.business_key, dim.valid_from], keep="last", maintain_order=True)
    )


@dataclass
class FactDuplicates:
    losers: pl.DataFrame  # [_seq, _m]: the lines that lost to a newer state of their key
    month_rows: dict[int, int]  # YYYYMM -> winning lines
    ids: dict[str, pl.Series]  # reference column -> the distinct ids the winners use


def fact_duplicates(paths: list[Path], fact: FactByPartition, *, threads: int,
                    memory_limit: str, spill_to: Path) -> FactDuplicates:
    """One line per natural key: the latest version wins (a NULL version is the event time);
    on a tie, the last in load order (`_seq`). DuckDB decides it straight from the valid
    files (`.../m=YYYYMM/*.parquet`) and spills to `spill_to` beyond `memory_limit`, so a
    drop of any size is deduplicated in bounded memory; what comes back is proportional to
    the duplicates and the dimension ids, not to the lines."""
    nk = ", ".join(fact.natural_key)
    spill_to.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit,
                                 "temp_directory": str(spill_to)})
    try:
        con.execute("SET TimeZone = 'UTC'")
        files = ", ".join(f"'{p}'" for p in paths)
        con.execute(f"""
            CREATE VIEW v AS SELECT *, coalesce({fact.version}, {fact.event_ts}) AS _v,
                                    m::INTEGER AS _m
            FROM read_parquet([{files}], hive_partitioning = true, union_by_name = true)""")
        losers = pl.from_arrow(con.sql(f"""
            WITH dup AS (SELECT {nk} FROM v GROUP BY ALL HAVING count(*) > 1)
            SELECT _seq, _m FROM (
                SELECT v._seq, v._m, row_number() OVER (
                    PARTITION BY {', '.join(f'v.{c}' for c in fact.natural_key)}
                    ORDER BY v._v DESC, v._seq DESC) AS r
                FROM v SEMI JOIN dup USING ({nk}))
            WHERE r > 1""").to_arrow_table())
        con.register("losers", losers.to_arrow())
        per_month = con.sql("SELECT _m, count(*) FROM v GROUP BY _m").fetchall()
        lost = dict(losers.group_by("_m").len().rows())
        ids = {}
        for ref in fact.references:
            c = ref.source_column
            ids[c] = pl.from_arrow(con.sql(
                f"SELECT DISTINCT {c} FROM v ANTI JOIN losers USING (_seq) "
                f"WHERE {c} IS NOT NULL").to_arrow_table())[c]
    finally:
        con.close()
    return FactDuplicates(losers.select(pl.col("_seq").cast(pl.Int64), pl.col("_m").cast(pl.Int32)),
                          {m: n - lost.get(m, 0) for m, n in per_month if n > lost.get(m, 0)}, ids)
