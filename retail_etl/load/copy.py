"""Bulk data enters PostgreSQL only here: COPY through ADBC ingest, into a staging table
that lives in the run's transaction (copy_temp) or appended to a table (ingest). A failed
COPY is one line naming the table."""

from __future__ import annotations

import adbc_driver_manager
import polars as pl
import pyarrow as pa

from retail_etl.db.connect import db_error


def ingest(cur, data: pa.Table | pl.DataFrame, table: str, *, schema: str | None = None,
           mode: str = "append", temporary: bool = False) -> int:
    """COPY Arrow data (or a frame) into [schema.]table; the rows written."""
    data = data.to_arrow() if isinstance(data, pl.DataFrame) else data
    try:
        return cur.adbc_ingest(table, data, mode=mode, temporary=temporary,
                               db_schema_name=schema)
    except adbc_driver_manager.Error as e:
        where = f"{schema}.{table}" if schema else f"staging table {table}"
        raise db_error(e, f"COPY into {where} failed") from None


def copy_temp(conn, name: str, df: pl.DataFrame) -> int:
    """COPY a frame into a fresh temporary table `name` (dropped with the session)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        n = ingest(cur, df, name, mode="create", temporary=True)
        cur.execute(f"ANALYZE {name}")  # the merge's plans depend on its size
    return n
