"""kind dim_scd2: a slowly changing dimension (type 2). The table and its observed versions
(every distinct version the sources showed, changed or not: a late version can make an
"unchanged" one a change again, which keeps history independent of arrival order) are
rendered from the declaration; the run diffs the incoming versions against both in memory
(transform/scd2.py) and merges the result set-based (load/merge.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from retail_etl import forget
from retail_etl.kinds.handoff import Handoff
from retail_etl.load.copy import copy_temp
from retail_etl.load.merge import drop_orphan_inferred, merge_dimension, merge_observed
from retail_etl.spec import DimensionSCD2, FactByPartition, sql_type
from retail_etl.transform import dedup, scd2


def _short(table: str) -> str:
    return table.split(".")[-1]


def _attribute_columns(dim: DimensionSCD2) -> list[str]:
    return [f"{a} boolean NOT NULL DEFAULT false" if a == dim.deleted_flag
            else f"{a} {sql_type(dim.dtypes.get(a))}" for a in dim.attribute_names]


def ddl(dim: DimensionSCD2) -> list[str]:
    K, B, t, o = dim.surrogate_key, dim.business_key, dim.table, dim.observed_table
    attrs = _attribute_columns(dim)
    unknown = {K: str(dim.unknown_key), **{a: _literal(v) for a, v in dim.unknown_attributes.items()},
               "valid_from": "'-infinity'", "valid_to": "'infinity'", "is_current": "true"}
    return [
        f"""CREATE TABLE IF NOT EXISTS {t} (
            {K} int PRIMARY KEY, {B} text, {', '.join(attrs)},
            valid_from timestamptz NOT NULL, valid_to timestamptz NOT NULL,
            is_current boolean NOT NULL, is_inferred boolean NOT NULL DEFAULT false,
            run_id bigint, CHECK (valid_from < valid_to))""",
        # a warehouse made before an attribute was declared gets it (NULL in old versions)
        *[f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {a}" for a in attrs],
        f"CREATE UNIQUE INDEX IF NOT EXISTS {_short(t)}_version_uq ON {t} ({B}, valid_from)",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {_short(t)}_current_uq ON {t} ({B}) WHERE is_current",
        f"INSERT INTO {t} ({', '.join(unknown)}) VALUES ({', '.join(unknown.values())}) "
        "ON CONFLICT DO NOTHING",
        f"""CREATE TABLE IF NOT EXISTS {o} (
            {B} text NOT NULL, valid_from timestamptz NOT NULL, {', '.join(attrs)},
            run_id bigint, PRIMARY KEY ({B}, valid_from))""",
        *[f"ALTER TABLE {o} ADD COLUMN IF NOT EXISTS {a}" for a in attrs],
    ]


def _literal(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


# ---- file stages --------------------------------------------------------------------------


def prepare(dim: DimensionSCD2, valid: list[Path] | None, run, settings, h: Handoff) -> None:
    """The distinct incoming versions of the drop's valid rows (a duplicate is counted)."""
    if not valid:
        return
    rows = pl.read_parquet(valid)
    versions = dedup.dimension_versions(rows.lazy(), dim).collect()
    run.entity(dim.entity.name).duplicate = rows.height - versions.height
    h.incoming[dim.name] = versions.select(
        dim.business_key,
        *[expr.cast(dim.dtypes.get(a, pl.String)).alias(a) for a, expr in dim.attributes.items()],
        pl.col(dim.valid_from).alias("valid_from"),
        "_seq",
    )


# ---- database stages ----------------------------------------------------------------------


def write(cur, run, dim: DimensionSCD2, h: Handoff, settings) -> None:
    with run.stage("closed keys") as st:
        st["rows"] = _close_gone_keys(cur, run, dim, h)
    with run.stage("scd2") as st:
        st["rows"] = _merge(cur, run, dim, h)


def _merge(cur, run, dim: DimensionSCD2, h: Handoff) -> int:
    """Diff and merge; hands the versions (and where re-pointing starts) to the facts."""
    incoming, referenced = h.incoming.get(dim.name), _referenced(dim, h)
    if incoming is None and referenced.height == 0:
        return 0
    if incoming is None:
        incoming = pl.DataFrame(schema={dim.business_key: pl.String,
                                        **{a: dim.dtypes.get(a, pl.String) for a in dim.attributes},
                                        "valid_from": pl.Datetime("us", "UTC"), "_seq": pl.Int64})
    incoming = _without_erased(cur, dim, incoming)
    conn = cur.connection
    stg = f"stg_{dim.name}"
    ids = pl.concat([incoming.select(dim.business_key), referenced.select(dim.business_key)]).unique()
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {dim.table} WHERE {dim.surrogate_key} <> $1) "
                f"OR EXISTS (SELECT 1 FROM {dim.observed_table})", parameters=(dim.unknown_key,))
    if not cur.fetchone()[0]:  # a new warehouse: no ids to look up (the queries still type)
        ids = ids.clear()
    copy_temp(conn, f"{stg}_ids", ids)
    stored, observed = _stored(cur, dim, f"{stg}_ids"), _observed(cur, dim, f"{stg}_ids")
    cur.execute(f"SELECT greatest(max({dim.surrogate_key}), 0) + 1 FROM {dim.table}")
    next_key = cur.fetchone()[0]
    res = scd2.diff(dim, incoming, stored, referenced, next_key, observed)
    copy_temp(conn, f"{stg}_incoming", incoming.drop("_seq"))
    merge_observed(cur, dim, run.run_id, stg)
    copy_temp(conn, f"{stg}_upserts", res.upserts)
    copy_temp(conn, f"{stg}_deletes", res.deletes)
    # the new history of the keys whose sales are re-pointed (all repoint_facts reads)
    copy_temp(conn, f"{stg}_history",
              res.history.join(res.repoint.select(dim.business_key), on=dim.business_key,
                               how="semi"))
    copy_temp(conn, f"{stg}_repoint", res.repoint)
    h.changed_in_place[dim.name] = merge_dimension(cur, dim, run.run_id, stg)
    counts = run.entity(dim.entity.name)
    counts.loaded, counts.merged, counts.inferred = res.loaded, res.merged, res.inferred
    made = res.upserts.filter(pl.col("is_inferred"))[dim.surrogate_key].cast(pl.Int64)
    h.made[dim.name] = made
    h.leave(dim.name, made)
    h.versions[dim.name] = res.versions
    if res.repoint.height:
        h.repoint_since[dim.name] = res.repoint_since
        h.history[dim.name] = stg
    return res.upserts.height


def _referenced(dim: DimensionSCD2, h: Handoff) -> pl.DataFrame:
    """[business key]: the ids the run's facts use."""
    ids = [lines.ids[ref.source_column].alias(dim.business_key)
           for lines in h.lines.values() for ref in lines.fact.references
           if ref.dimension is dim]
    if not ids:
        return pl.DataFrame(schema={dim.business_key: pl.String})
    return pl.concat(ids).unique().to_frame()


def _without_erased(cur, dim: DimensionSCD2, incoming: pl.DataFrame) -> pl.DataFrame:
    """The incoming versions, personal attributes blanked for keys `retail-etl forget`
    erased: a re-delivered row does not bring them back."""
    if not dim.personal or not incoming.height:
        return incoming
    erased = forget.erased_keys(cur, dim.entity.name)
    if not erased.len():
        return incoming
    hit = pl.col(dim.business_key).is_in(erased.implode())
    return incoming.with_columns(pl.when(~hit).then(pl.col(a)).alias(a) for a in dim.personal)


def _attrs_sql(dim: DimensionSCD2, alias: str) -> list[str]:
    """The attribute columns, numeric ones as text (ADBC reads numeric as an opaque type)."""
    return [f"{alias}.{a}::text AS {a}" if isinstance(dim.dtypes.get(a), pl.Decimal)
            else f"{alias}.{a}" for a in dim.attribute_names]


def _typed(dim: DimensionSCD2, df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(*[pl.col(a).cast(t) for a, t in dim.dtypes.items()],
                           pl.col("^valid_.*$").dt.convert_time_zone("UTC"))


def _observed(cur, dim: DimensionSCD2, ids: str) -> pl.DataFrame:
    """Every version the sources showed for the keys in the staging table `ids`."""
    B = dim.business_key
    cur.execute(f"""
        SELECT o.{B}, {', '.join(_attrs_sql(dim, 'o'))}, o.valid_from
        FROM {dim.observed_table} o JOIN {ids} i ON i.{B} = o.{B}
    """)
    return _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))


def _stored(cur, dim: DimensionSCD2, ids: str) -> pl.DataFrame:
    """The stored versions of the keys in the staging table `ids` (valid_to infinity as NULL)."""
    B = dim.business_key
    cur.execute(f"""
        SELECT d.{dim.surrogate_key}::bigint AS {dim.surrogate_key}, d.{B},
               {', '.join(_attrs_sql(dim, 'd'))},
               d.valid_from, nullif(d.valid_to, 'infinity') AS valid_to, d.is_inferred
        FROM {dim.table} d JOIN {ids} i ON i.{B} = d.{B}
    """)
    return _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))


def _close_gone_keys(cur, run, dim: DimensionSCD2, h: Handoff) -> int:
    """Keys a database source delivered before and no longer has (hard deletes): each gets
    a version that says so (the deletion flag), with the attributes of its current one,
    from the moment the source was read (no row says when it went). The keys closed go to
    h.gone per (source, entity), for the sources' bookkeeping."""
    entity, B, flag = dim.entity.name, dim.business_key, dim.deleted_flag
    closed = 0
    for pull in h.pulls:
        if flag is None or entity not in pull.present:
            continue
        copy_temp(cur.connection, "stg_present", pull.present[entity].to_frame("key"))
        cur.execute(f"""
            SELECT d.{B}, {', '.join(_attrs_sql(dim, 'd'))}, d.valid_from
            FROM etl.source_keys k JOIN {dim.table} d ON d.{B} = k.key
            WHERE k.source = $1 AND k.entity = $2
              AND NOT EXISTS (SELECT 1 FROM stg_present p WHERE p.key = k.key)
              AND d.is_current AND NOT d.is_inferred AND NOT d.{flag}
        """, parameters=(pull.source, entity))
        current = _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))
        h.gone[(pull.source, entity)] = current[B]
        if current.height == 0:
            continue
        one_us = pl.duration(microseconds=1)
        tombstones = current.with_columns(
            pl.lit(True).alias(flag),
            valid_from=pl.max_horizontal(pl.lit(pull.hi).dt.convert_time_zone("UTC"),
                                         pl.col("valid_from") + one_us),
            _seq=pl.int_range(pl.len(), dtype=pl.Int64) + (1 << 62),  # last in load order
        )
        incoming = h.incoming.get(dim.name)
        h.incoming[dim.name] = (tombstones if incoming is None else
                                pl.concat([incoming, tombstones.select(incoming.columns)]))
        counts = run.entity(entity)
        counts.read += tombstones.height
        counts.count_deleted("key_gone", tombstones.height)
        closed += tombstones.height
    return closed


def drop_orphans(cur, run, dim: DimensionSCD2, facts: tuple[FactByPartition, ...],
                 h: Handoff) -> None:
    """Inferred members no fact line points to any more (see merge.drop_orphan_inferred);
    those this run made are taken off its inferred count."""
    keys = h.left.get(dim.name, [])
    if not keys:
        return
    uses = [(f.table, r.fact_column) for f in facts for r in f.references if r.dimension is dim]
    dropped = drop_orphan_inferred(cur, dim, uses, pl.concat(keys))
    made = h.made.get(dim.name, pl.Series([], dtype=pl.Int64))
    run.entity(dim.entity.name).inferred -= int(dropped.is_in(made.implode()).sum())
