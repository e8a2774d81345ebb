"""Bulk data enters PostgreSQL only through COPY (ADBC ingest), into staging tables that
live in the run's transaction."""

from __future__ import annotations

import adbc_driver_manager
import polars as pl

from retail_etl.db.connect import db_error


def copy_temp(conn, name: str, df: pl.DataFrame) -> int:
    """COPY a frame into a fresh temporary table `name` (dropped with the session)."""
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        try:
            n = cur.adbc_ingest(name, df.to_arrow(), mode="create", temporary=True)
        except adbc_driver_manager.Error as e:
            raise db_error(e, f"COPY into staging table {name} failed") from None
        cur.execute(f"ANALYZE {name}")  # the merge's plans depend on its size
    return n
