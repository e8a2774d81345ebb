"""The as-of lookup: each sale gets, for every dimension it references, the surrogate key
of the version valid at its event time (a sale older than a key's first version gets that
first version; a NULL id gets the unknown member -1). DuckDB's ASOF join does this in one
pass over Arrow data, without copies."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

from retail_etl.spec import FactByPartition


class AsOfLookup:
    """One DuckDB session for a run's facts: the dimension versions are registered once,
    then `keys(chunk)` is called per chunk (a month) of facts."""

    def __init__(self, fact: FactByPartition, versions: dict[str, pl.DataFrame], *,
                 threads: int = 2, memory_limit: str = "1GB", profile_to: Path | None = None):
        self.fact = fact
        self.con = duckdb.connect(config={"threads": threads, "memory_limit": memory_limit})
        self.con.execute("SET TimeZone = 'UTC'")
        if profile_to:
            self.con.execute("PRAGMA enable_profiling = 'json'")
            self.con.execute(f"PRAGMA profiling_output = '{profile_to}'")
        select, joins = ["f.*"], []
        for i, ref in enumerate(fact.references):
            dim = ref.dimension
            name = f"v{i}"
            if dim.name not in versions:  # no fact names this dimension: all point to -1
                select.append(f"-1::INTEGER AS {ref.fact_column}")
                continue
            self.con.register(name, versions[dim.name].to_arrow())
            joins.append(
                f"ASOF LEFT JOIN {name} ON f.{ref.source_column} = {name}.{dim.business_key}"
                f" AND f.{fact.event_ts} >= {name}.lookup_from"
            )
            select.append(f"coalesce({name}.{dim.surrogate_key}, -1)::INTEGER AS {ref.fact_column}")
        self.sql = f"SELECT {', '.join(select)} FROM facts f {' '.join(joins)}"

    def keys(self, facts: pl.DataFrame) -> pl.DataFrame:
        """facts with one `<fact_column>` key per reference. Only the columns the joins read
        go through DuckDB (the ASOF join sorts what it carries: a wide fact, JSON and all,
        would be sorted twice for nothing); the keys come back in the facts' order."""
        sources = list(dict.fromkeys(r.source_column for r in self.fact.references))
        narrow = facts.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("_r"),
                              self.fact.event_ts, *sources)
        self.con.register("facts", narrow.to_arrow())
        out = pl.from_arrow(self.con.sql(self.sql).to_arrow_table()).sort("_r")
        self.con.unregister("facts")
        for ref in self.fact.references:  # inferred members are created first: a miss is a bug
            miss = out.filter((pl.col(ref.fact_column) == -1)
                              & pl.col(ref.source_column).is_not_null())
            if miss.height:
                raise AssertionError(f"{miss.height} facts found no {ref.dimension.name} version")
        return facts.with_columns(out.select(r.fact_column for r in self.fact.references)) \
            .with_columns(pl.col(self.fact.event_ts).dt.convert_time_zone("UTC"))

    def close(self) -> None:
        self.con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
