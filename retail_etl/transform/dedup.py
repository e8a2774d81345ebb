"""Duplicates inside one run. A row identical to another counts once; among rows of one key
the winner is decided by the pipeline's rule and load order (`_seq`). Every loser is
counted as a duplicate."""

from __future__ import annotations

import polars as pl

from retail_etl.spec import DimensionSCD2, FactByPartition


def dimension_versions(valid: pl.LazyFrame, dim: DimensionSCD2) -> pl.LazyFrame:
    """One row per (business key, updated_at): the last in load order wins.
    Exact duplicates are a special case of that rule."""
    return (
        valid.sort("_seq")
        .unique([dim.business_key, dim.valid_from], keep="last", maintain_order=True)
    )


def fact_lines(valid: pl.LazyFrame, fact: FactByPartition) -> pl.LazyFrame:
    """One row per natural key: the latest version wins (a NULL version is the event time);
    on a tie, the last in load order."""
    valid = valid.with_columns(pl.col(fact.version).fill_null(pl.col(fact.event_ts)))
    # decide on the narrow columns only, then keep the winners (no sort of the wide rows)
    winners = (
        valid.select(*fact.natural_key, fact.version, "_seq")
        .sort([fact.version, "_seq"])
        .unique(list(fact.natural_key), keep="last", maintain_order=False)
        .select("_seq")
    )
    return valid.join(winners, on="_seq", how="semi")


def fact_winners(valid: pl.LazyFrame, fact: FactByPartition) -> pl.LazyFrame:
    """The winners of `fact_lines`, decided on narrow columns only:
    [natural key..., _seq, _m (the event month, YYYYMM)]."""
    version = pl.col(fact.version).fill_null(pl.col(fact.event_ts))
    return (
        valid.select(*fact.natural_key, version.alias("_v"), "_seq",
                     pl.col(fact.event_ts).dt.strftime("%Y%m").cast(pl.Int32).alias("_m"))
        .sort(["_v", "_seq"])
        .unique(list(fact.natural_key), keep="last", maintain_order=False)
        .drop("_v")
    )
