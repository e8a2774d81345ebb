"""`retail-etl forget`: erase one person's personal data everywhere the warehouse keeps it
(a GDPR erasure request), in one transaction under the warehouse lock, with an audit row.

- dw.<dim>: the personal attributes of every version of the key become NULL; the versions,
  their ranges and the sales pointing to them stay (revenue still adds up);
- etl.<dim>_observed: the same attributes of every observed version (a late version
  rebuilt from them must not bring the data back);
- etl.rejects: the personal source columns leave the quarantined rows of the key;
- etl.erasures: who asked, when, what; later loads blank the same attributes of the key
  on arrival (see kinds/dim_scd2.py and load/rejects.py).
"""

from __future__ import annotations

import json

import polars as pl

from retail_etl.db import locks
from retail_etl.db.connect import connect
from retail_etl.errors import UsageError
from retail_etl.spec import DimensionSCD2, Project


def dimension_of(project: Project, entity: str) -> DimensionSCD2:
    dims = {d.entity.name: d for d in project.dimensions if d.personal}
    if entity not in dims:
        raise UsageError(f"{entity} hold no personal data to forget",
                         hint="entities with personal data: " + ", ".join(dims))
    return dims[entity]


def forget(dsn: str, project: Project, entity: str, key: str, reason: str | None = None,
           lock_wait_seconds: float = 60) -> dict[str, int]:
    """Erase the personal data of `key`; returns the rows changed per table."""
    from retail_etl.schema import apply_schema

    dim = dimension_of(project, entity)
    B, source_key = dim.business_key, dim.entity.columns[0].name
    blank = ", ".join(f"{a} = NULL" for a in dim.personal)
    changed = {}
    conn = connect(dsn)
    try:
        apply_schema(conn, project)
        with conn.cursor() as cur:
            locks.hold_warehouse(cur, lock_wait_seconds)  # never half-way through a run
            def count(update: str, params: tuple) -> int:
                cur.execute(f"WITH u AS ({update} RETURNING 1) SELECT count(*) FROM u",
                            parameters=params)
                return cur.fetchone()[0]

            for table in (dim.table, dim.observed_table):
                changed[table] = count(f"UPDATE {table} SET {blank} WHERE {B} = $1", (key,))
            changed["etl.rejects"] = count(
                "UPDATE etl.rejects SET row = row - $1::text[] WHERE entity = $2 AND row->>$3 = $4",
                (dim.entity.personal, entity, source_key, key))
            cur.execute("INSERT INTO etl.erasures (entity, key, reason, columns, changed) "
                        "VALUES ($1, $2, $3, $4::text[], $5::jsonb)",
                        parameters=(entity, key, reason, dim.personal + dim.entity.personal,
                                    json.dumps(changed)))
        conn.commit()
    finally:
        conn.close()
    return changed


def erased_keys(cur, entity: str) -> pl.Series:
    """The keys of `entity` whose personal data was erased."""
    cur.execute("SELECT DISTINCT key FROM etl.erasures WHERE entity = $1", parameters=(entity,))
    return pl.from_arrow(cur.fetch_arrow_table())["key"]


def erased_rows_sql(project: Project, alias: str) -> str:
    """A reject's row (`alias`.row, text) as stored: without the personal source columns of
    an erased key."""
    row = f"{alias}.row::jsonb"
    for dim in project.dimensions:
        if not dim.personal:
            continue
        e = dim.entity
        cols = "ARRAY[" + ", ".join(f"'{c}'" for c in e.personal) + "]"
        row = (f"CASE WHEN {alias}.entity = '{e.name}' AND EXISTS (SELECT 1 FROM etl.erasures x "
               f"WHERE x.entity = '{e.name}' AND x.key = {alias}.row::jsonb->>'{e.columns[0].name}') "
               f"THEN {alias}.row::jsonb - {cols} ELSE {row} END")
    return row
