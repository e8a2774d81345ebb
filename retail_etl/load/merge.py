"""The set-based merge, inside the run's one transaction: dimension versions replaced,
fact lines inserted or replaced, facts of re-ranged versions re-pointed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from retail_etl.load import partitions, touched
from retail_etl.load.copy import copy_temp, ingest
from retail_etl.spec import DimensionSCD2, FactByPartition, sql_type


def merge_dimension(cur, dim: DimensionSCD2, run_id: int, stg: str) -> pl.Series:
    """stg_upserts: versions to write; stg_deletes: versions absorbed. Changed rows are
    deleted and re-inserted so the uniqueness of (id, valid_from) and of the current
    version never sees a half-applied state. Returns the keys of the stored versions whose
    attributes change in place (an inferred member filled in): the facts pointing to them
    read differently now (see touched)."""
    K, B = dim.surrogate_key, dim.business_key
    cols = [K, B, *dim.attribute_names, "valid_from", "valid_to", "is_current", "is_inferred"]
    A = dim.attribute_names
    cur.execute(f"""
        SELECT d.{K}::bigint AS {K} FROM {dim.table} d JOIN {stg}_upserts u USING ({K})
        WHERE ({', '.join('d.' + a for a in A)}) IS DISTINCT FROM ({', '.join('u.' + a for a in A)})
    """)
    in_place = pl.from_arrow(cur.fetch_arrow_table())[K]
    cur.execute(f"""
        DELETE FROM {dim.table} d
        WHERE d.{K} IN (SELECT {K} FROM {stg}_upserts UNION ALL SELECT {K} FROM {stg}_deletes)
    """)
    select = ["coalesce(valid_to, 'infinity')" if c == "valid_to" else c for c in cols]
    cur.execute(f"""
        INSERT INTO {dim.table} ({', '.join(cols)}, run_id)
        SELECT {', '.join(select)}, {run_id} FROM {stg}_upserts
    """)
    return in_place


def merge_observed(cur, dim: DimensionSCD2, run_id: int, stg: str) -> None:
    """Remember the run's versions (stg_incoming), changed or not, for later late versions.
    The last in load order wins at the same instant, as in the dimension."""
    B, A = dim.business_key, dim.attribute_names
    cur.execute(f"""
        INSERT INTO {dim.observed_table} AS t ({B}, valid_from, {', '.join(A)}, run_id)
        SELECT {B}, valid_from, {', '.join(A)}, {run_id} FROM {stg}_incoming
        ON CONFLICT ({B}, valid_from) DO UPDATE
            SET {', '.join(f'{a} = excluded.{a}' for a in A)}, run_id = excluded.run_id
            WHERE ({', '.join('t.' + a for a in A)})
                  IS DISTINCT FROM ({', '.join('excluded.' + a for a in A)})
    """)


def repoint_facts(cur, fact: FactByPartition, dim: DimensionSCD2, column: str, run_id: int,
                  stg: str, since: datetime | None = None) -> int:
    """Facts that pointed to a version whose range moved (or that was absorbed) get the
    version valid at their event time. Touches only those facts, and only the months from
    `since` on (earlier sales keep their versions: see scd2.diff). Their natural keys and
    days are kept in stg_<fact>_moved for the rest of the run (what is built from the
    lines, such as sessions, follows them)."""
    K, B = dim.surrogate_key, dim.business_key
    nk = list(fact.natural_key)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS stg_{fact.name}_moved ("
                + ", ".join(f"{k} {sql_type(t)}" for k, t in fact.key_dtypes.items())
                + ", date_key int) ON COMMIT DROP")
    recent, params = "", [run_id]
    if since is not None and since.year > 1:  # bound: $2 prunes months, $3 the instant
        recent = f"AND f.{fact.date_key} >= $2 AND f.{fact.event_ts} >= $3"
        params += [int(since.strftime("%Y%m%d")), since]
    cur.execute(f"""
        WITH moved AS (
            UPDATE {fact.table} f SET {column} = h.{K}, run_id = $1
            FROM {stg}_repoint r
            JOIN {stg}_history h ON h.{B} = r.{B}
            WHERE f.{column} = r.{K}
              AND f.{fact.event_ts} >= h.lookup_from
              AND f.{fact.event_ts} < coalesce(h.valid_to, 'infinity')
              AND f.{column} <> h.{K} {recent}
            RETURNING f.{fact.date_key} AS date_key, {', '.join(f'f.{k}' for k in nk)}
        ), kept AS (
            INSERT INTO stg_{fact.name}_moved SELECT {', '.join(nk)}, date_key FROM moved
        ), {touched.cte(fact.table, "moved", run_id)}
        SELECT count(*) FROM moved
    """, parameters=tuple(params))
    return cur.fetchone()[0]


@dataclass
class FactCounts:
    inserted: int  # new lines and replacements
    unchanged: int  # equal to what is stored
    stale: int  # an older state of a stored line: ignored
    partitions: list[str]  # the month partitions the run's lines fall in
    stale_stats: list[str]  # partitions changed enough to need fresh statistics
    left_keys: dict[str, pl.Series]  # fact column -> dimension keys replaced lines pointed to


def stored_lines(cur, fact: FactByPartition, rows: pl.DataFrame, columns: list[str],
                 keep_keys: bool = False) -> pl.DataFrame:
    """The stored fact lines (`columns`) with the natural keys of `rows`, in any month.
    keep_keys: add the keys to `stg_<fact>_keys`, the lines the run carries (see
    delete_documents)."""
    nk, dtypes, stg = list(fact.natural_key), fact.dtypes, f"stg_{fact.name}"
    copy_temp(cur.connection, f"{stg}_chunk_keys", rows.select(nk))
    if keep_keys:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stg}_keys "
                    f"AS SELECT * FROM {stg}_chunk_keys WITH NO DATA")
        cur.execute(f"INSERT INTO {stg}_keys SELECT * FROM {stg}_chunk_keys")
    select = ", ".join(f"f.{c}::text AS {c}" if isinstance(dtypes.get(c), pl.Decimal)
                       else f"f.{c}" for c in columns)
    sizes = partitions.existing_partitions(cur, fact.table)
    if not sizes:
        return rows.select(columns).clear()
    cur.execute(_by_key_range(cur, fact, sizes, select) or
                f"SELECT {select} FROM {fact.table} f JOIN {stg}_chunk_keys k "
                f"USING ({', '.join(nk)})")
    return pl.from_arrow(cur.fetch_arrow_table()).with_columns(
        pl.col(pl.Datetime).dt.convert_time_zone("UTC")).with_columns(
        *[pl.col(c).cast(t) for c, t in dtypes.items() if c in columns])


# probe month by month only when at most this share of the months' key ranges overlap
# (else one join is as good: PostgreSQL plans it well, index probes for few keys, a hash
# join for many)
OVERLAP = 0.5


def _by_key_range(cur, fact: FactByPartition, sizes: dict[str, float], select: str) -> str | None:
    """A query that probes each month only with the keys inside its range of the natural
    key's first column (its min and max: two index endpoint reads, compared in the
    column's own collation), when the months' ranges are mostly apart.
    Keys that grow with time gain (a new line probes nothing, a correction mostly its own
    month); keys whose ranges overlap do not (numbers as text: '100008'..'99984').
    None: use the join. Reads stg_<fact>_chunk_keys."""
    nk, stg, first = list(fact.natural_key), f"stg_{fact.name}", fact.natural_key[0]
    parts = sorted(sizes)
    cur.execute(f"DROP TABLE IF EXISTS {stg}_ranges")
    cur.execute(f"CREATE TEMP TABLE {stg}_ranges AS " + " UNION ALL ".join(
        f"SELECT {i} AS part, (SELECT min({first}) FROM {t}) AS lo, "
        f"(SELECT max({first}) FROM {t}) AS hi" for i, t in enumerate(parts)))
    cur.execute(f"SELECT count(*) FILTER (WHERE a.lo <= b.hi AND b.lo <= a.hi), count(*) "
                f"FROM {stg}_ranges a JOIN {stg}_ranges b ON a.part < b.part")
    overlapping, pairs = cur.fetchone()
    if overlapping > OVERLAP * pairs:
        return None
    return " UNION ALL ".join(
        f"""SELECT {select} FROM {t} f JOIN {stg}_chunk_keys k USING ({', '.join(nk)})
            WHERE k.{first} BETWEEN (SELECT lo FROM {stg}_ranges WHERE part = {i})
                                AND (SELECT hi FROM {stg}_ranges WHERE part = {i})"""
        for i, t in enumerate(parts))


def merge_facts(cur, fact: FactByPartition, rows: pl.DataFrame, run_id: int, stage,
                stored: pl.DataFrame, builds, ending: set[int]) -> FactCounts:
    """rows: final fact lines; stored: the stored lines with the same natural keys
    (`stored_lines`). A line already stored is replaced when the run's version is at least
    as new and differs (it may move to another partition); an older state is ignored.
    Every written line is COPYed once, straight into its partition: months without a
    partition go to `builds` (partitions.Builders or LocalBuilds), which build them aside;
    `ending`: the months whose last lines these are. `stage(name, rows)` times the steps."""
    stg, D = f"stg_{fact.name}", fact.date_key
    with stage("compare", rows.height):
        write, replaced, cmp = compare_lines(fact, rows, stored)
    nk = list(fact.natural_key)
    conn = cur.connection
    if replaced.height:  # the old states leave their partition (each probed once)
        copy_temp(conn, f"{stg}_replaced", replaced)
        join = " AND ".join(f"f.{c} = r.{c}" for c in nk)
        for m in partitions.months(replaced["old_date_key"]):
            lo, hi = partitions.bounds(m)
            cur.execute(f"DELETE FROM {fact.table}_{m} f USING {stg}_replaced r WHERE {join} "
                        f"AND r.old_date_key >= {lo} AND r.old_date_key < {hi}")
    touched.mark(cur, fact.table, pl.concat([write[D].cast(pl.Int32),
                                             replaced["old_date_key"].cast(pl.Int32)]), run_id)
    left_keys = {r.fact_column: write.filter(pl.col(f"{r.fact_column}_old").ne(
        pl.col(r.fact_column))).get_column(f"{r.fact_column}_old").unique()
        for r in fact.references}
    write = write.select(rows.columns).with_columns(run_id=pl.lit(run_id, pl.Int64))
    # the partitions the run changes: where lines are written or replaced lines left
    months = sorted(set(partitions.months(write[D]))
                    | set(partitions.months(replaced["old_date_key"])))
    sizes = partitions.existing_partitions(cur, fact.table)
    # statistics: new partitions, and old ones where the run changes over 5% of the rows
    # (below that the planner's picture still holds; autovacuum catches up on drift)
    changed = (pl.concat([write.select(m=pl.col(D) // 100),
                          replaced.select(m=pl.col("old_date_key") // 100)])
               .group_by("m").len())
    stale_stats = [f"{fact.table}_{m}" for m, n in changed.iter_rows()
                   if n > 0.05 * max(sizes.get(f"{fact.table}_{m}", 0), 0)]
    schema, table = fact.table.split(".")
    if builds.analyses:  # the new months are analysed where they are built
        stale_stats = [t for t in stale_stats if t in sizes]
    with stage("copy", write.height) as st:
        st["done"] = rows.height  # lines handled, written or not (the progress bar)
        parts = write.with_columns(_m=pl.col(D) // 100).partition_by(
            "_m", as_dict=True)
        for (m,), part in sorted(parts.items()):
            part = part.drop("_m").to_arrow()
            if f"{fact.table}_{m}" in sizes:
                ingest(cur, part, table, schema=schema)
            else:  # a month built aside: no index maintenance while it fills, WAL skipped
                builds.add(m, part)
    with stage("index"):  # months complete: indexed (LocalBuilds) or left to their builder
        for m in sorted(ending):
            builds.finish(m)
    return FactCounts(inserted=write.height, unchanged=int(cmp["_same"].sum()),
                      stale=int(cmp["_stale"].sum()),
                      partitions=[f"{fact.table}_{m}" for m in months],
                      stale_stats=stale_stats, left_keys=left_keys)


def compare_lines(fact: FactByPartition, rows: pl.DataFrame, stored: pl.DataFrame):
    """(lines to write, stored lines they replace as [*natural key, old_date_key], the
    comparison with `_same` and `_stale`). A line is written when it is new, or differs
    from the stored one and its version is at least as new; an older state is stale."""
    nk = list(fact.natural_key)
    content = [c for c in rows.columns if c not in nk]
    cmp = rows.join(stored.select(rows.columns), on=nk, how="left", suffix="_old")
    known = pl.col(f"{fact.date_key}_old").is_not_null()  # NOT NULL in the table: stored
    stale = known & (pl.col(fact.version) < pl.col(f"{fact.version}_old"))
    same = known & pl.all_horizontal([pl.col(c).eq_missing(pl.col(f"{c}_old")) for c in content])
    cmp = cmp.with_columns(_stale=stale, _same=same & ~stale)
    write = cmp.filter(~pl.col("_stale") & ~pl.col("_same"))
    replaced = write.filter(known).select(*nk, pl.col(f"{fact.date_key}_old").alias("old_date_key"))
    return write, replaced, cmp


def delete_documents(cur, fact: FactByPartition, documents: pl.DataFrame,
                     has_lines: bool, where: pl.DataFrame | None, run_id: int) -> dict[str, int]:
    """documents: [*fact.document, version, cancelled, source], documents a source sent
    whole (an order with all its lines, or cancelled: with none). Their stored lines of that
    source (or of no known source: loaded before lines had one) that the run did not carry
    and that are not newer than the document leave the table. Returns the lines deleted by
    reason (order_cancelled, line_deleted).

    where: [*fact.document, fact.date_key], the days the documents' lines can be on (the order's
    day, and where its stored lines were found): only those partitions are probed, not
    every month. None (a snapshot) searches every partition."""
    stg = f"stg_{fact.name}"
    D, nk = list(fact.document), list(fact.natural_key)
    docs = documents.group_by([*D, "source"]).agg(pl.col("cancelled").sort_by("version").last(),
                                                  pl.col("version").max())
    if has_lines:
        cur.execute(f"ANALYZE {stg}_keys")  # filled chunk by chunk by stored_lines
    carried = (f"AND NOT EXISTS (SELECT 1 FROM {stg}_keys k WHERE "
               + " AND ".join(f"k.{c} = f.{c}" for c in nk) + ")") if has_lines else ""
    match = " AND ".join(f"f.{c} = d.{c}" for c in D) + (
        " AND coalesce(f.source, d.source) = d.source")
    deleted = {"order_cancelled": 0, "line_deleted": 0}

    def delete(table: str, days: str = "") -> None:
        cur.execute(f"""
            WITH del AS (DELETE FROM {table} f USING {stg}_documents d WHERE {match} {days}
                         AND f.{fact.version} <= d.version {carried}
                         RETURNING d.cancelled, f.{fact.date_key} AS date_key),
                 {touched.cte(fact.table, "del", run_id)}
            SELECT count(*) FILTER (WHERE cancelled), count(*) FILTER (WHERE NOT cancelled)
            FROM del""")
        cancelled, lost = cur.fetchone()
        deleted["order_cancelled"] += cancelled
        deleted["line_deleted"] += lost

    if where is None:
        copy_temp(cur.connection, f"{stg}_documents", docs)
        delete(fact.table)
        return deleted
    docs = docs.join(where.unique(), on=D).with_columns(pl.col(fact.date_key).cast(pl.Int32))
    copy_temp(cur.connection, f"{stg}_documents", docs)
    existing = partitions.existing_partitions(cur, fact.table)
    for m in partitions.months(docs[fact.date_key]):
        if f"{fact.table}_{m}" in existing:
            lo, hi = partitions.bounds(m)
            delete(f"{fact.table}_{m}",
                   f"AND d.{fact.date_key} >= {lo} AND d.{fact.date_key} < {hi}")
    return deleted


def drop_orphan_inferred(cur, dim: DimensionSCD2, uses: list[tuple[str, str]],
                         keys: pl.Series) -> pl.Series:
    """Of these inferred members (made by this run, or pointed to by lines it replaced),
    delete those no fact line points to: made for a line that lost to a newer state, or
    left by a correction. An inferred member exists because a sale needs it; so the
    warehouse stays the same whatever order drops arrive in. uses: [(fact table, column)].
    Returns the keys deleted."""
    K = dim.surrogate_key
    copy_temp(cur.connection, "stg_orphans", keys.unique().to_frame(K))
    unused = " AND ".join(f"NOT EXISTS (SELECT 1 FROM {t} f WHERE f.{c} = d.{K})" for t, c in uses)
    cur.execute(f"""
        DELETE FROM {dim.table} d USING stg_orphans o
        WHERE d.{K} = o.{K} AND d.is_inferred AND d.{K} <> {int(dim.unknown_key)} AND {unused}
        RETURNING d.{K}::bigint AS {K}
    """)
    return pl.from_arrow(cur.fetch_arrow_table())[K]
