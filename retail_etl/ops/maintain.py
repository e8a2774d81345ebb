"""`retail-etl maintain`: the warehouse's routine care, each action recorded in
etl.maintenance (what, on what, the figures that called for it, how long it took).

- VACUUM (ANALYZE) of each table (a month partition on its own) whose dead rows pass
  maintenance thresholds (at least `min_dead` and `dead_ratio` of its rows);
- REINDEX INDEX CONCURRENTLY of each B-tree index bigger than `min_index_mb` whose leaf
  density (pgstattuple, created here when the role may) is below `min_leaf_density`;
- the month partitions of the coming `months_ahead` months created (empty, indexed), so
  readers and other writers can rely on them;
- free disk on the server's data directory and on data_dir against min_free_disk_pct: a
  warning, in the ledger and on the console.
VACUUM and REINDEX CONCURRENTLY run outside a transaction: the session is autocommit, and
each action commits its own ledger row. Nothing here blocks a load for long: REINDEX
CONCURRENTLY and VACUUM take no lock that stops reads or writes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import adbc_driver_manager

from retail_etl.config import Settings
from retail_etl.db import locks
from retail_etl.db.connect import connect, resolve_dsn
from retail_etl.load import partitions
from retail_etl.monitor import doctor
from retail_etl.spec import Project


@dataclass(frozen=True)
class Limits:
    min_dead: int = 10_000
    dead_ratio: float = 0.2
    min_index_mb: float = 10
    min_leaf_density: float = 50
    months_ahead: int = 2


def maintain(settings: Settings, project: Project, limits: Limits = Limits(),
             dry_run: bool = False, now: datetime | None = None) -> list[dict]:
    """What it did (or, dry_run, would do): one dict per action."""
    done: list[dict] = []
    conn = connect(resolve_dsn(settings), autocommit=True)
    try:
        with conn.cursor() as cur:
            for table, dead, live in _dead(cur, limits):
                done.append(_act(cur, dry_run, "vacuum", table, {"dead": dead, "live": live},
                                 f"VACUUM (ANALYZE) {table}"))
            for index, density, mb in _thin_indexes(cur, limits):
                done.append(_act(cur, dry_run, "reindex", index,
                                 {"leaf_density": round(density, 1), "mb": round(mb, 1)},
                                 f"REINDEX INDEX CONCURRENTLY {index}"))
            months = doctor._months_ahead(now or datetime.now(UTC), limits.months_ahead)
            for fact in project.facts:
                for m in months:
                    name = f"{fact.table}_{m}"
                    cur.execute("SELECT to_regclass($1) IS NULL", parameters=(name,))
                    if cur.fetchone()[0]:
                        done.append(_create_month(cur, settings, dry_run, fact, name, m))
            for check in (doctor._server_disk(cur, settings) + doctor._local_disk(settings)):
                if check.status != doctor.OK:
                    done.append(_act(cur, dry_run, "disk", check.check,
                                     {"warning": check.detail}, None))
    finally:
        conn.close()
    return done


def _act(cur, dry_run: bool, action: str, target: str, detail: dict, sql: str | None) -> dict:
    t0 = time.perf_counter()
    if sql and not dry_run:
        cur.execute(sql)
    seconds = round(time.perf_counter() - t0, 3)
    if not dry_run:
        cur.execute("INSERT INTO etl.maintenance (action, target, detail, seconds) "
                    "VALUES ($1, $2, $3::jsonb, $4)",
                    parameters=(action, target, json.dumps(detail), seconds))
    return {"action": action, "target": target, "detail": detail,
            "seconds": None if dry_run else seconds}


def _create_month(cur, settings: Settings, dry_run: bool, fact, name: str, m: int) -> dict:
    """An empty month, made the way a load makes one (built aside, indexed, attached), in
    one transaction under the warehouse lock (a load may be making the same month)."""
    t0 = time.perf_counter()
    if not dry_run:
        cur.execute("BEGIN")
        try:
            locks.hold_warehouse(cur, settings.lock_wait_seconds)
            cur.execute("SELECT to_regclass($1) IS NULL", parameters=(name,))
            if cur.fetchone()[0]:
                partitions.create_aside(cur, fact.table, name)
                partitions.index_and_check(cur, fact.table, name, m,
                                           partitions.index_definitions(cur, fact.table),
                                           fact.date_key)
                partitions.attach(cur, fact.table, name, m)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    return _act(cur, dry_run, "partition", name,
                {"month": f"{m // 100}-{m % 100:02d}",
                 "build_seconds": round(time.perf_counter() - t0, 3)}, None)


def _dead(cur, limits: Limits) -> list[tuple[str, int, int]]:
    cur.execute("""
        SELECT schemaname || '.' || relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables
        WHERE schemaname IN ('dw', 'etl', 'mart') AND n_dead_tup >= $1
          AND n_dead_tup >= $2 * (n_live_tup + n_dead_tup)
        ORDER BY n_dead_tup DESC
    """, parameters=(limits.min_dead, limits.dead_ratio))
    return cur.fetchall()


def _thin_indexes(cur, limits: Limits) -> list[tuple[str, float, float]]:
    """B-tree indexes of dw whose leaves are mostly empty (pgstatindex), big ones only."""
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple'")
    if cur.fetchone() is None:
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        except adbc_driver_manager.Error:
            return []  # (not this role's to create: doctor says how to measure it)
    cur.execute("""
        SELECT c.oid::regclass::text, (pgstatindex(c.oid::regclass)).avg_leaf_density,
               pg_relation_size(c.oid) / 1048576.0
        FROM pg_class c JOIN pg_am a ON a.oid = c.relam
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'dw' AND a.amname = 'btree' AND c.relkind = 'i'
          AND pg_relation_size(c.oid) >= $1 * 1048576
    """, parameters=(limits.min_index_mb,))
    return [(n, float(d), float(mb)) for n, d, mb in cur.fetchall()
            if d is not None and float(d) < limits.min_leaf_density]


def record(dsn: str, action: str, target: str, detail: dict, seconds: float | None) -> None:
    """One row of etl.maintenance from another command (backup, restore-drill): doctor
    reads the newest of each from there."""
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO etl.maintenance (action, target, detail, seconds) "
                        "VALUES ($1, $2, $3::jsonb, $4)",
                        parameters=(action, target, json.dumps(detail, default=str), seconds))
    finally:
        conn.close()


def history(settings: Settings, limit: int = 50) -> list[dict]:
    conn = connect(resolve_dsn(settings))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT at, action, target, detail::text, seconds::float8 "
                        "FROM etl.maintenance ORDER BY id DESC LIMIT $1", parameters=(limit,))
            rows = cur.fetchall()
    finally:
        conn.close()
    return [{"at": a, "action": act, "target": t, "detail": json.loads(d), "seconds": s}
            for a, act, t, d, s in rows]
