"""kind fact_by_partition: one row per natural key, the latest version wins, range-partitioned
by month of a date key. The run reads the valid lines from disk in groups of months (the
working set is bounded by settings.fact_chunk_rows, not by the drop), looks up each
dimension's version as of the event (DuckDB ASOF), compares with the stored lines, COPYs
what changed straight into its partition (new months built aside, load/partitions.py),
then removes what the sources deleted and re-points lines whose versions moved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from retail_etl.db.connect import connect
from retail_etl.extract.files import LINE_BITS
from retail_etl.kinds import dim_date
from retail_etl.kinds.handoff import Handoff
from retail_etl.load import gone_lines, partitions
from retail_etl.load.copy import copy_temp
from retail_etl.load.merge import delete_documents, merge_facts, repoint_facts, stored_lines
from retail_etl.ops import archive
from retail_etl.spec import FactByPartition, sql_type
from retail_etl.staging import group_up_to, parquet_rows
from retail_etl.transform import dedup
from retail_etl.transform.lookup import AsOfLookup


def _checks(fact: FactByPartition, column: str) -> str:
    """The source column's bounds (Column.min, Column.nonzero) on the warehouse column of
    the same name."""
    c = next((c for c in fact.entity.columns if c.name == column), None)
    if c is None:
        return ""
    return "".join([f" CHECK ({column} >= {int(c.min)})" if c.min is not None else "",
                    f" CHECK ({column} <> 0)" if c.nonzero else ""])


def ddl(fact: FactByPartition) -> list[str]:
    t, short, D = fact.table, fact.table.split(".")[-1], fact.date_key
    cols = [
        *[f"{k} {sql_type(dt)} NOT NULL{_checks(fact, k)}" for k, dt in fact.key_dtypes.items()],
        f"{fact.event_ts} timestamptz NOT NULL",
        f"{D} int NOT NULL",
        *[f"{r.fact_column} int NOT NULL" for r in fact.references],
        *[f"{m} {sql_type(fact.dtypes.get(m))}{'' if m in fact.nullable else ' NOT NULL'}"
          f"{_checks(fact, m)}" for m in fact.measures],
        f"{fact.version} timestamptz NOT NULL",
        "run_id bigint",
        # the source that delivered the line (its name in the configuration, `files` for
        # --source-dir): a database source's deletions touch only its own lines
        "source text",
    ]

    def index(columns: tuple[str, ...], name: str) -> str:
        return f"CREATE INDEX IF NOT EXISTS {short}_{name}_idx ON {t} ({', '.join(columns)})"

    return [
        # (the natural key is unique by construction of the merge: a partitioned table
        # cannot enforce it without the partition column)
        f"CREATE TABLE IF NOT EXISTS {t} ({', '.join(cols)}) PARTITION BY RANGE ({D})",
        f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS source text",
        # a reference declared later: the lines stored before it point to its unknown member
        *[f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {r.fact_column} int NOT NULL "
          f"DEFAULT {int(r.dimension.unknown_key)}" for r in fact.references],
        index(fact.natural_key, "line"),
        *[index((r.fact_column,), r.fact_column.removesuffix("_key")) for r in fact.references],
        *[index(ix, "_".join(c.removesuffix("_key") for c in ix)) for ix in fact.indexes],
    ]


@dataclass
class FactInput:
    """A fact's valid rows, on disk by month (`.../m=YYYYMM/*.parquet`), what the dedup
    said of them: the losing lines [_seq, _m] and the winning lines per month, and the
    distinct ids each dimension reference uses. Nothing here grows with the drop but the
    duplicates and the ids: the lines stay on disk until their months are loaded."""

    fact: FactByPartition
    paths: list[Path]
    losers: pl.DataFrame
    month_rows: dict[int, int]
    ids: dict[str, pl.Series]
    origins: list[tuple[int, str]]  # (first file number, source name), see extract/sources.extract_all

    @property
    def height(self) -> int:
        return sum(self.month_rows.values())

    def chunks(self, max_rows: int) -> list[list[Path]]:
        """The valid files in month order, grouped up to max_rows lines (a file bigger than
        that is a group of its own; a big month spans groups): the unit of work of the
        fact load, so its memory is bounded by max_rows, whatever the size of a month."""
        files = sorted((month_of(p), p) for p in self.paths)
        return group_up_to([(p, parquet_rows(p)) for _, p in files], max_rows)

    def read(self, files: list[Path]) -> pl.DataFrame:
        """The winning lines of these files, version filled in (NULL: the event time), with
        the name of the source that delivered each (from its load order)."""
        fact = self.fact
        months = list({month_of(p) for p in files})
        file_no = pl.col("_seq") // (1 << LINE_BITS)
        source = pl.lit(None, pl.String)
        for first, name in self.origins:  # in file order: the last source begun wins
            source = pl.when(file_no >= first).then(pl.lit(name)).otherwise(source)
        return (pl.scan_parquet(files)
                .join(self.losers.lazy().filter(pl.col("_m").is_in(months)).select("_seq"),
                      on="_seq", how="anti")
                .with_columns(pl.col(fact.version).fill_null(pl.col(fact.event_ts)),
                              source=source)
                .collect())


def month_of(path: Path) -> int:
    """YYYYMM of a valid fact file (`.../m=YYYYMM/NNNNN.parquet`)."""
    return int(path.parent.name.removeprefix("m="))


def split(fact: FactByPartition, good: pl.DataFrame) -> dict[int, pl.DataFrame]:
    """Valid rows by partition month: each month is written to its own staged files."""
    return {m: g for (m,), g in good.with_columns(fact.month()).partition_by(
        "_m", as_dict=True, include_key=False).items()}


# ---- file stages --------------------------------------------------------------------------


def prepare(fact: FactByPartition, valid: list[Path] | None, run, settings, h: Handoff) -> None:
    """The duplicates among the valid lines (DuckDB, losers only): the lines stay on disk."""
    if not valid:
        return
    dups = dedup.fact_duplicates(valid, fact, threads=settings.duckdb_threads,
                                 memory_limit=settings.duckdb_memory_limit,
                                 spill_to=run.staging / "duckdb")
    lines = FactInput(fact, valid, dups.losers, dups.month_rows, dups.ids, h.origins)
    counts = run.entity(fact.entity.name)
    counts.duplicate = counts.read - counts.rejected - lines.height
    h.lines[fact.name] = lines


# ---- database stages ----------------------------------------------------------------------


def write(cur, run, fact: FactByPartition, h: Handoff, settings) -> None:
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {fact.table})")
    had_lines = cur.fetchone()[0]
    lines = h.lines.get(fact.name)
    counts = run.entity(fact.entity.name)
    stored_days = None
    if lines is not None and lines.height:
        stored_days = _load(cur, run, fact, lines, h, settings, had_lines)
        counts.unmatched += _unmatched(cur, fact, run.run_id)
    docs = ([x.documents.with_columns(source=pl.lit(x.source)) for x in h.pulls
             if x.documents.height] if fact.document else [])
    if docs and had_lines:  # (else every stored line is one the run carried)
        with run.stage("deletes") as st:
            docs = pl.concat(docs).rename({"date_key": fact.date_key})
            where = None if any(x.full for x in h.pulls) else pl.concat([
                docs.select(*fact.document, fact.date_key),
                *([stored_days] if stored_days is not None else [])])
            by_reason = delete_documents(cur, fact, docs,
                                         lines is not None and lines.height > 0, where,
                                         run.run_id)
            for reason, n in by_reason.items():
                counts.count_deleted(reason, n)
            st["rows"] = sum(by_reason.values())
    for pull in h.pulls if fact.document and had_lines else []:
        if gone_lines.due(cur, pull, fact, time.perf_counter() - run.started):
            with run.stage("gone lines") as st:
                lost = gone_lines.scan(cur, fact, pull, run.run_id)
                for reason, n in lost.by_reason.items():
                    counts.count_deleted(reason, n)
                st["rows"] = sum(lost.by_reason.values())
                _leave(h, fact, lost.left_keys)
    with run.stage("repoint") as st:
        st["rows"] = 0
        for ref in fact.references:
            dim = ref.dimension
            if dim.name in h.history:
                st["rows"] += repoint_facts(cur, fact, dim, ref.fact_column, run.run_id,
                                            h.history[dim.name], h.repoint_since[dim.name])
    for ref in fact.references:  # lines whose version changed in place read differently now
        keys = h.changed_in_place.get(ref.dimension.name)
        if keys is not None and keys.len():
            _touch_lines_of(cur, fact, ref.fact_column, keys, run.run_id)


def _unmatched(cur, fact: FactByPartition, run_id: int) -> int:
    """The lines this run wrote whose links name no row (a NULL one included)."""
    if not fact.links:
        return 0
    misses = " OR ".join(
        f"f.{c} IS NULL OR NOT EXISTS (SELECT 1 FROM {table} t WHERE t.{column} = f.{c})"
        for c, (table, column) in ((c, t.rsplit(".", 1)) for c, t in fact.links.items()))
    cur.execute(f"SELECT count(*) FROM {fact.table} f WHERE f.run_id = {int(run_id)} "
                f"AND ({misses})")
    return cur.fetchone()[0]


def _touch_lines_of(cur, fact: FactByPartition, column: str, keys: pl.Series,
                    run_id: int) -> None:
    """The days of the lines pointing to these dimension keys, for the mart's refresh."""
    copy_temp(cur.connection, "stg_changed_keys", keys.to_frame("k"))
    cur.execute(f"""
        INSERT INTO etl.touched_days (fact, date_key, run_id)
        SELECT DISTINCT '{fact.table}', f.{fact.date_key}, {int(run_id)}
        FROM {fact.table} f JOIN stg_changed_keys c ON f.{column} = c.k
    """)


def _leave(h: Handoff, fact: FactByPartition, left_keys: dict[str, pl.Series]) -> None:
    """Dimension keys that lines of this fact no longer point to (replaced or deleted)."""
    for ref in fact.references:
        if ref.fact_column in left_keys:
            h.leave(ref.dimension.name, left_keys[ref.fact_column])


def _load(cur, run, fact: FactByPartition, lines: FactInput, h: Handoff, settings,
          had_lines: bool) -> pl.DataFrame | None:
    """The dates, then the lines by groups of months. Returns [*document, date key] of the
    stored lines found (the days a document's deleted lines can be on)."""
    months = sorted(lines.month_rows)
    archive.guard(cur, fact, months)  # an archived month is not re-opened behind its back
    with run.stage("dates"):
        dim_date.ensure(cur, h.dates, months[0] // 100, months[-1] // 100,
                        settings.fiscal_year_start_month, run.run_id)
    existing = partitions.existing_partitions(cur, fact.table)
    if settings.copy_streams and any(f"{fact.table}_{m}" not in existing for m in months):
        builds = partitions.Builders(
            lambda: connect(run.dsn), fact.table, fact.date_key,
            partitions.index_definitions(cur, fact.table),
            settings.copy_streams, max_rows=settings.fact_chunk_rows,
            # (the run's first: a second fact's builds share the schema, whose moved-out
            # months this run's transaction holds locked)
            leftovers=not run.built_aside)
        run.built_aside = True
    else:
        builds = partitions.LocalBuilds(cur, fact.table, fact.date_key)
    failed = True
    try:
        stored_days = _chunks(cur, run, fact, lines, h, settings, had_lines, builds)
        with run.stage("index", len(builds.months())):  # waits for the builds
            builds.attach_all(cur)
        failed = False
    finally:
        builds.close(failed)
        run.profile.builds += builds.timings
    return stored_days


def _chunks(cur, run, fact: FactByPartition, lines: FactInput, h: Handoff, settings,
            had_lines: bool, builds) -> pl.DataFrame | None:
    c = run.entity(fact.entity.name)
    D = fact.date_key
    columns = [*fact.natural_key, fact.event_ts, D, *[r.fact_column for r in fact.references],
               *fact.measures, fact.version, "source"]
    stored_days = []
    chunks = lines.chunks(settings.fact_chunk_rows)
    for stage in ("lookup", "compare", "copy"):  # the progress bars' totals
        run.bars.expect(stage, sum(lines.month_rows.values()))
    last = {month_of(f): i for i, group in enumerate(chunks) for f in group}
    with AsOfLookup(fact, h.versions, threads=settings.duckdb_threads,
                    memory_limit=settings.duckdb_memory_limit,
                    profile_to=run.profile.path("duckdb_lookup.json")) as lookup:
        for i, group in enumerate(chunks):
            with run.stage("lookup") as st:
                chunk = lines.read(group).drop("_seq")
                st["rows"] = chunk.height
                rows = lookup.keys(chunk).select(
                    *[pl.col(k).cast(t) for k, t in fact.key_dtypes.items()],
                    fact.event_ts,
                    pl.col(fact.event_ts).dt.strftime("%Y%m%d").cast(pl.Int32).alias(D),
                    *[r.fact_column for r in fact.references],
                    *[expr.cast(fact.dtypes[k]).alias(k) for k, expr in fact.measures.items()],
                    fact.version,
                    "source",
                )
            with run.stage("stored", rows.height):  # wherever they are stored: any month
                stored = (stored_lines(cur, fact, rows, columns, keep_keys=bool(fact.document))
                          if had_lines else rows.clear())
                if fact.document:
                    stored_days.append(stored.select(*fact.document, D).unique())
            counts = merge_facts(cur, fact, rows, run.run_id, run.stage, stored, builds,
                                 ending={m for m, j in last.items() if j == i})
            run.partitions += [p for p in counts.partitions if p not in run.partitions]
            run.analyze += [p for p in counts.stale_stats if p not in run.analyze]
            _leave(h, fact, counts.left_keys)
            c.loaded += counts.inserted
            c.merged += counts.unchanged + counts.stale
    return pl.concat(stored_days) if stored_days else None
