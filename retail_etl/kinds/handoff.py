"""What the pipelines of one run hand each other: filled by the file stages (prepare), then
by each pipeline's write, read by the pipelines after it. Every channel between kinds is a
field here, named for what it carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from retail_etl.spec import DimensionDate


@dataclass
class Handoff:
    dates: DimensionDate | None  # the project's date dimension: facts grow it
    origins: list[tuple[int, str]]  # (first file number, source name): see extract/sources.extract_all
    pulls: list  # [extract.oltp.OltpExtract]: what the database sources said beyond rows
    apis: list = field(default_factory=list)  # [extract.http.ApiExtract]: their watermarks
    rejects: list[pl.DataFrame] = field(default_factory=list)  # [entity, file, line, rules, row]
    # prepare
    incoming: dict[str, pl.DataFrame] = field(default_factory=dict)  # dimension -> versions
    lines: dict = field(default_factory=dict)  # fact -> fact_by_partition.FactInput
    # sessions pipeline -> [key, lo, hi]: the sessions the run's events belong to
    sessions: dict[str, pl.DataFrame] = field(default_factory=dict)
    # write: dimensions -> facts
    versions: dict[str, pl.DataFrame] = field(default_factory=dict)  # for the as-of lookup
    repoint_since: dict[str, datetime | None] = field(default_factory=dict)
    history: dict[str, str] = field(default_factory=dict)  # dimension -> its stg prefix
    # dimension -> keys of stored versions whose attributes changed in place
    changed_in_place: dict[str, pl.Series] = field(default_factory=dict)
    # write: facts -> dimensions (inferred members to check once every fact is in)
    left: dict[str, list[pl.Series]] = field(default_factory=dict)
    made: dict[str, pl.Series] = field(default_factory=dict)  # inferred members made now
    # write: dimensions -> the sources' bookkeeping: keys closed per (source, entity)
    gone: dict[tuple[str, str], pl.Series] = field(default_factory=dict)

    def leave(self, dimension: str, keys: pl.Series) -> None:
        """Surrogate keys of `dimension` that may no longer be used by any fact."""
        if keys.len():
            self.left.setdefault(dimension, []).append(keys.cast(pl.Int64))
