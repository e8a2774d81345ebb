"""The mart's materialized views, refreshed after a run's commit (stage `refresh`) or by
`retail-etl refresh`. Each view refreshes in its own transaction: CONCURRENTLY once it holds
data (readers keep reading the old contents meanwhile), a plain REFRESH the first time. A
failed refresh never undoes the load: it is logged, kept in etl.mart_refresh, and retried by
the next run, whatever that run changes."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import adbc_driver_manager

log = logging.getLogger("retail_etl")


@dataclass
class Refreshed:
    view: str
    seconds: float
    error: str | None = None


def views(cur) -> list[tuple[str, bool]]:
    """(mart.view, populated) in creation order, which is dependency order: a view is made
    after the views it reads (sql/views/050_mart.sql)."""
    cur.execute("SELECT c.oid::regclass::text, m.ispopulated FROM pg_matviews m "
                "JOIN pg_class c ON c.relname = m.matviewname "
                "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = m.schemaname "
                "WHERE m.schemaname = 'mart' ORDER BY c.oid")
    return [(name, bool(populated)) for name, populated in cur.fetchall()]


def pending(cur) -> bool:
    """A view never filled, or whose last refresh failed."""
    cur.execute("SELECT count(*) FROM etl.mart_refresh WHERE error IS NOT NULL")
    failed = cur.fetchone()[0]
    return failed > 0 or any(not populated for _, populated in views(cur))


def refresh(conn, run_id: int | None, advance=lambda n: None) -> list[Refreshed]:
    """Refresh every materialized view of the mart, on an autocommit connection. A view that
    fails is recorded and the others still refresh (a dependent one then fails too)."""
    done = []
    with conn.cursor() as cur:
        for view, populated in views(cur):
            how = "CONCURRENTLY " if populated else ""
            t0 = time.perf_counter()
            error = None
            try:
                cur.execute(f"REFRESH MATERIALIZED VIEW {how}{view}")
            except adbc_driver_manager.Error as e:
                # the server's words, without the driver's prefix and the statement
                error = str(e).splitlines()[0].split("ERROR:", 1)[-1].strip()
                log.warning("refresh of %s failed (the load stands; the next run retries): %s",
                            view, error)
            seconds = time.perf_counter() - t0
            cur.execute(
                "INSERT INTO etl.mart_refresh AS r (view_name, refreshed_at, run_id, seconds, "
                "error) VALUES ($1, CASE WHEN $4::text IS NULL THEN clock_timestamp() END, $2, "
                "$3, $4) ON CONFLICT (view_name) DO UPDATE SET refreshed_at = coalesce("
                "excluded.refreshed_at, r.refreshed_at), run_id = excluded.run_id, "
                "seconds = excluded.seconds, error = excluded.error",
                parameters=(view, run_id, seconds, error))
            done.append(Refreshed(view, seconds, error))
            advance(1)
    return done
