"""The set-based merge, inside the run's one transaction: dimension versions replaced,
fact lines inserted or replaced, facts of re-ranged versions re-pointed."""

from __future__ import annotations

from dataclasses import dataclass

from retail_etl.load import partitions
from retail_etl.spec import DimensionSCD2, FactByPartition


def merge_dimension(cur, dim: DimensionSCD2, run_id: int, stg: str) -> None:
    """stg_upserts: versions to write; stg_deletes: versions absorbed. Changed rows are
    deleted and re-inserted so the uniqueness of (id, valid_from) and of the current
    version never sees a half-applied state."""
    K, B = dim.surrogate_key, dim.business_key
    cols = [K, B, *dim.attribute_names, "valid_from", "valid_to", "is_current", "is_inferred"]
    cur.execute(f"""
        DELETE FROM {dim.table} d
        WHERE d.{K} IN (SELECT {K} FROM {stg}_upserts UNION ALL SELECT {K} FROM {stg}_deletes)
    """)
    select = [f"coalesce(valid_to, 'infinity')" if c == "valid_to" else c for c in cols]
    cur.execute(f"""
        INSERT INTO {dim.table} ({', '.join(cols)}, run_id)
        SELECT {', '.join(select)}, {run_id} FROM {stg}_upserts
    """)


def merge_observed(cur, dim: DimensionSCD2, run_id: int, stg: str) -> None:
    """Remember the run's versions (stg_incoming), changed or not, for later late versions.
    The last in load order wins at the same instant, as in the dimension."""
    B, A = dim.business_key, dim.attribute_names
    cur.execute(f"""
        INSERT INTO etl.{dim.name}_observed AS t ({B}, valid_from, {', '.join(A)}, run_id)
        SELECT {B}, valid_from, {', '.join(A)}, {run_id} FROM {stg}_incoming
        ON CONFLICT ({B}, valid_from) DO UPDATE
            SET {', '.join(f'{a} = excluded.{a}' for a in A)}, run_id = excluded.run_id
            WHERE ({', '.join('t.' + a for a in A)})
                  IS DISTINCT FROM ({', '.join('excluded.' + a for a in A)})
    """)


def repoint_facts(cur, fact: FactByPartition, dim: DimensionSCD2, column: str, run_id: int,
                  stg: str) -> int:
    """Facts that pointed to a version whose range moved (or that was absorbed) get the
    version valid at their event time. Touches only those facts."""
    K, B = dim.surrogate_key, dim.business_key
    cur.execute(f"""
        UPDATE {fact.table} f SET {column} = h.{K}, run_id = {run_id}
        FROM {stg}_repoint r
        JOIN {stg}_history h ON h.{B} = r.{B}
        WHERE f.{column} = r.{K}
          AND f.{fact.event_ts} >= h.lookup_from
          AND f.{fact.event_ts} < coalesce(h.valid_to, 'infinity')
          AND f.{column} <> h.{K}
    """)
    return cur.rowcount


@dataclass
class FactCounts:
    inserted: int  # new lines and replacements
    unchanged: int  # equal to what is stored
    stale: int  # an older state of a stored line: ignored
    partitions: list[str]  # the month partitions the run's lines fall in


def merge_facts(cur, fact: FactByPartition, columns: list[str], run_id: int, stg: str,
                months: list[int]) -> FactCounts:
    """stg: the run's final fact rows. A line already stored is replaced when the run's
    version is at least as new and differs; it may move to another partition."""
    nk = list(fact.natural_key)
    join = " AND ".join(f"f.{c} = s.{c}" for c in nk)
    content = [c for c in columns if c not in nk]
    cur.execute(f"DROP TABLE IF EXISTS {stg}_existing")
    cur.execute(f"""
        CREATE TEMP TABLE {stg}_existing AS
        SELECT {', '.join('s.' + c for c in nk)}, f.date_key AS old_date_key,
               s.{fact.version} < f.{fact.version} AS stale,
               ({', '.join('f.' + c for c in content)}) IS NOT DISTINCT FROM
               ({', '.join('s.' + c for c in content)}) AS same
        FROM {stg} s JOIN {fact.table} f ON {join}
    """)
    cur.execute(f"""
        SELECT count(*) FILTER (WHERE stale), count(*) FILTER (WHERE same AND NOT stale)
        FROM {stg}_existing
    """)
    stale, unchanged = cur.fetchone()
    ejoin = " AND ".join(f"f.{c} = e.{c}" for c in nk)
    cur.execute(f"""
        DELETE FROM {fact.table} f USING {stg}_existing e
        WHERE {ejoin} AND f.date_key = e.old_date_key AND NOT e.same AND NOT e.stale
    """)
    # the lines to write; months without a partition are built aside, then attached
    sjoin = " AND ".join(f"e.{c} = s.{c}" for c in nk)
    cur.execute(f"DROP TABLE IF EXISTS {stg}_write")
    cur.execute(f"""
        CREATE TEMP TABLE {stg}_write AS
        SELECT {', '.join('s.' + c for c in columns)}, {run_id}::bigint AS run_id
        FROM {stg} s LEFT JOIN {stg}_existing e ON {sjoin}
        WHERE e.{nk[0]} IS NULL OR NOT (e.same OR e.stale)
    """)
    inserted = cur.rowcount
    have = partitions.existing_partitions(cur, fact.table)
    new = {m: f"{fact.table}_{m}" for m in months if f"{fact.table}_{m}" not in have}
    cols = f"{', '.join(columns)}, run_id"
    old_ranges = " OR ".join(
        f"(date_key >= {partitions.bounds(m)[0]} AND date_key < {partitions.bounds(m)[1]})"
        for m in months if m not in new)
    if old_ranges:
        cur.execute(f"INSERT INTO {fact.table} ({cols}) SELECT {cols} FROM {stg}_write "
                    f"WHERE {old_ranges}")
    for m, name in new.items():
        lo, hi = partitions.bounds(m)
        partitions.create_detached(cur, fact.table, m)
        cur.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {stg}_write "
                    f"WHERE date_key >= {lo} AND date_key < {hi}")
        partitions.attach(cur, fact.table, name, m)
    return FactCounts(inserted=inserted, unchanged=unchanged, stale=stale,
                      partitions=[f"{fact.table}_{m}" for m in months])
