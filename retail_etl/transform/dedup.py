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


def fact_winners(valid: pl.LazyFrame, fact: FactByPartition) -> pl.LazyFrame:
    """One row per natural key: the latest version wins (a NULL version is the event time);
    on a tie, the last in load order. Decided on narrow columns only:
    [natural key..., _seq, _m (the event month, YYYYMM)]."""
    version = pl.col(fact.version).fill_null(pl.col(fact.event_ts))
    return (
        valid.select(*fact.natural_key, version.alias("_v"), "_seq", fact.month())
        .sort(["_v", "_seq"])
        .unique(list(fact.natural_key), keep="last", maintain_order=False)
        .drop("_v")
    )
