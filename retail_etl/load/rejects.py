"""Quarantined rows, stored with the run that met them (etl.rejects)."""

from __future__ import annotations

import polars as pl

from retail_etl.forget import erased_rows_sql
from retail_etl.load.copy import copy_temp
from retail_etl.spec import Project


def store(cur, project: Project, run_id: int, rejects: pl.DataFrame) -> None:
    """rejects: [entity, file, line, rules, row]. A reload's rejects are counted in its
    ledger but stored once: the same row of the same file and line, quarantined by an
    earlier run, is not stored again; the personal data of a key erased by `retail-etl
    forget` is not stored again either."""
    copy_temp(cur.connection, "stg_rejects", rejects)
    cur.execute(f"""
        INSERT INTO etl.rejects (run_id, entity, file, line, rules, row)
        SELECT $1, s.entity, s.file, s.line, s.rules, s.row
        FROM (SELECT entity, file, line, rules, {erased_rows_sql(project, 't')} AS row
              FROM stg_rejects t) s
        WHERE NOT EXISTS (SELECT 1 FROM etl.rejects r WHERE r.entity = s.entity
                          AND r.file = s.file AND r.line = s.line AND r.row = s.row)
    """, parameters=(run_id,))
