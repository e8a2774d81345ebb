"""`retail-etl doctor`: is the warehouse healthy? One check per line, each `ok`, `warning`
or `problem`, from read-only queries: connection and versions, schema state, each source's
last success against its freshness threshold, the last run's outcome, the rejects trend,
month partitions for the coming months, table and index bloat, free disk on the server's
data directory and on data_dir, locks, the newest backup and restore drill (from
etl.maintenance). Exit 1 on a problem (and with --strict on a warning), so a scheduler or a
monitoring probe can act on it."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import adbc_driver_manager

from retail_etl import __version__, kinds
from retail_etl.config import SQL_DIR, Settings
from retail_etl.db import locks
from retail_etl.db.connect import connect, redact, schema_digest
from retail_etl.spec import Project

OK, WARNING, PROBLEM = "ok", "warning", "problem"


@dataclass
class Check:
    check: str
    status: str
    detail: str


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} days"


def _months_ahead(today: datetime, n: int) -> list[int]:
    y, m = today.year, today.month
    out = []
    for _ in range(n + 1):
        out.append(y * 100 + m)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def examine(settings: Settings, project: Project, dsn: str, *, months_ahead: int = 2,
            now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(UTC)
    checks: list[Check] = []
    add = lambda *a: checks.append(Check(*a))  # noqa: E731
    try:
        conn = connect(dsn, autocommit=True)
    except Exception as e:
        add("connection", PROBLEM, getattr(e, "message", str(e)).splitlines()[0])
        return checks + _local_disk(settings)
    try:
        with conn.cursor() as cur:
            t0 = time.perf_counter()
            cur.execute("SELECT current_setting('server_version')")
            version = cur.fetchone()[0]
            add("connection", OK, f"{redact(dsn.split('?')[0])}: PostgreSQL {version}, "
                f"answered in {(time.perf_counter() - t0) * 1000:.0f} ms; retail-etl {__version__}")
            cur.execute("SELECT to_regclass('etl.runs') IS NOT NULL")
            if not cur.fetchone()[0]:
                add("schema", PROBLEM, "no warehouse here yet (no etl.runs): load something "
                    "first (`retail-etl load`)")
                return checks + _server_disk(cur, settings) + _local_disk(settings)
            checks += _schema(cur, project)
            checks += _freshness(cur, settings, now)
            checks += _last_run(cur)
            checks += _rejects(cur)
            checks += _partitions(cur, project, _months_ahead(now, months_ahead))
            checks += _bloat(cur)
            checks += _server_disk(cur, settings)
            checks += _local_disk(settings)
            checks += _locks(cur)
            checks += _backups(cur, settings, now)
    except adbc_driver_manager.Error as e:
        add("queries", PROBLEM, redact(str(e).splitlines()[0]))
    finally:
        conn.close()
    return checks


def _schema(cur, project: Project) -> list[Check]:
    cur.execute("SELECT digest FROM etl.schema_state")
    row = cur.fetchone()
    if row and row[0] == schema_digest(SQL_DIR, kinds.schema(project)):
        return [Check("schema", OK, "the warehouse has this version's DDL")]
    return [Check("schema", WARNING, "the warehouse's DDL differs from this version's: the "
                  "next load applies it (idempotent, under the schema lock)")]


def _freshness(cur, settings: Settings, now: datetime) -> list[Check]:
    """Every configured source, and every source the ledger has seen, by its last success."""
    cur.execute("""
        SELECT s, max(r.ended_at) FILTER (WHERE r.status IN ('ok', 'warning')),
               (array_agg(r.status ORDER BY r.run_id DESC))[1]
        FROM etl.runs r, unnest(coalesce(r.sources, ARRAY[r.source])) AS s
        GROUP BY s ORDER BY s
    """)
    seen = {s: (at, last) for s, at, last in cur.fetchall()}
    out = []
    for name in dict.fromkeys([*settings.sources, *seen]):
        limit = settings.freshness.get(name, settings.freshness_hours)
        at, last = seen.get(name, (None, None))
        if at is None:
            out.append(Check(f"source {name}", PROBLEM, "never loaded successfully"
                             + (f" (its last run: {last})" if last else "")))
            continue
        age = (now - at).total_seconds()
        status = PROBLEM if age > limit * 3600 else OK
        tail = "" if last in ("ok", "warning") else f"; its last run since: {last}"
        out.append(Check(f"source {name}", status, f"last success {_age(age)} ago "
                         f"({at:%Y-%m-%d %H:%M} UTC), threshold {limit:g} h"
                         + (" : STALE" if status == PROBLEM else "") + tail))
    return out


def _last_run(cur) -> list[Check]:
    cur.execute("SELECT run_id, status, left(error, 160), started_at FROM etl.runs "
                "ORDER BY run_id DESC LIMIT 1")
    row = cur.fetchone()
    if row is None:
        return [Check("last run", WARNING, "no run yet")]
    run_id, status, error, started = row
    detail = f"run {run_id} {status}, started {started:%Y-%m-%d %H:%M} UTC"
    if status in ("failed", "killed"):
        return [Check("last run", WARNING, f"{detail}: {error}")]
    if status == "warning":
        cur.execute("SELECT warnings::text FROM etl.runs WHERE run_id = $1", parameters=(run_id,))
        return [Check("last run", WARNING, f"{detail}: {cur.fetchone()[0]}")]
    return [Check("last run", OK, detail)]


def _rejects(cur) -> list[Check]:
    """The reject rate of each entity over its last 5 runs: a latest rate at least twice
    the earlier median (and above 1%) is a warning."""
    cur.execute("""
        SELECT entity, array_agg(round(rate, 4)::float8 ORDER BY run_id) FROM (
            SELECT e.entity, e.run_id, e.rows_rejected::numeric / nullif(e.rows_read, 0) AS rate,
                   row_number() OVER (PARTITION BY e.entity ORDER BY e.run_id DESC) AS k
            FROM etl.run_entities e JOIN etl.runs r USING (run_id)
            WHERE r.status IN ('ok', 'warning') AND e.rows_read > 0) t
        WHERE k <= 5 GROUP BY entity ORDER BY entity
    """)
    out = []
    for entity, rates in cur.fetchall():
        latest, earlier = rates[-1], sorted(rates[:-1])
        median = earlier[len(earlier) // 2] if earlier else None
        trend = " -> ".join(f"{r:.2%}" for r in rates)
        rising = median is not None and latest > 0.01 and latest >= 2 * max(median, 0.001)
        out.append(Check(f"rejects {entity}", WARNING if rising else OK,
                         f"reject rate over the last runs: {trend}"
                         + (" (rising)" if rising else "")))
    return out


def _partitions(cur, project: Project, months: list[int]) -> list[Check]:
    out = []
    for fact in project.facts:
        missing = []
        for m in months:
            cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(f"{fact.table}_{m}",))
            if not cur.fetchone()[0]:
                missing.append(f"{m // 100}-{m % 100:02d}")
        out.append(Check(f"partitions {fact.table}", WARNING if missing else OK,
                         f"no partition yet for {', '.join(missing)} (a load creates a "
                         "month when its first lines arrive; one made ahead lets readers "
                         "and other writers rely on it)" if missing else
                         f"the months {months[0]}..{months[-1]} exist"))
    return out


def _bloat(cur) -> list[Check]:
    """Dead tuples of the warehouse's tables (autovacuum's view), and the leaf density of
    its big B-tree indexes when the pgstattuple extension is installed."""
    cur.execute("""
        SELECT schemaname || '.' || relname, n_dead_tup, n_live_tup FROM pg_stat_user_tables
        WHERE schemaname IN ('dw', 'etl') AND n_dead_tup > 10000
          AND n_dead_tup > 0.2 * (n_live_tup + n_dead_tup) ORDER BY n_dead_tup DESC LIMIT 5
    """)
    dead = cur.fetchall()
    out = [Check("table bloat", WARNING if dead else OK,
                 "; ".join(f"{t}: {d} dead rows of {d + live}" for t, d, live in dead)
                 + " (VACUUM them)" if dead else "no table above 20% dead rows")]
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgstattuple'")
    if cur.fetchone() is None:
        out.append(Check("index bloat", OK, "not measured: CREATE EXTENSION pgstattuple "
                         "lets doctor measure it"))
        return out
    cur.execute("""
        SELECT i.indexrelid::regclass::text, (pgstatindex(i.indexrelid::regclass)).avg_leaf_density
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'dw' AND a.amname = 'btree' AND c.relkind = 'i'
          AND pg_relation_size(c.oid) > 10 * 1024 * 1024
    """)
    thin = [(name, d) for name, d in cur.fetchall() if d is not None and d < 50]
    out.append(Check("index bloat", WARNING if thin else OK,
                     "; ".join(f"{n}: leaf density {d:.0f}%" for n, d in thin)
                     + " (REINDEX CONCURRENTLY)" if thin else "B-tree leaf density at least 50%"))
    return out


def _disk(what: str, path: Path, min_free: float) -> Check:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    u = shutil.disk_usage(probe)
    free = 100 * u.free / u.total
    return Check(f"disk {what}", PROBLEM if free < min_free else OK,
                 f"{path}: {u.free / 2**30:.1f} GiB free of {u.total / 2**30:.1f} GiB "
                 f"({free:.0f}%, threshold {min_free:g}%)")


def _server_disk(cur, settings: Settings) -> list[Check]:
    try:
        cur.execute("SELECT current_setting('data_directory')")
        path = Path(cur.fetchone()[0])
    except adbc_driver_manager.Error:
        return [Check("disk server", OK, "not measured: this role may not read the server's "
                      "data_directory")]
    if not path.exists():
        return [Check("disk server", OK, f"not measured: {path} is on the server's machine, "
                      "not this one")]
    return [_disk("server", path, settings.min_free_disk_pct)]


def _local_disk(settings: Settings) -> list[Check]:
    return [_disk("data_dir", settings.data_dir.resolve(), settings.min_free_disk_pct)]


def _locks(cur) -> list[Check]:
    cur.execute("""
        SELECT a.pid, extract(epoch FROM now() - a.xact_start)::float8
        FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1
    """, parameters=(locks.WAREHOUSE,))
    holder = cur.fetchone()
    cur.execute("""
        SELECT count(*), coalesce(max(extract(epoch FROM now() - a.state_change)), 0)::float8
        FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' AND a.datname = current_database()
    """)
    waiting, longest = cur.fetchone()
    parts = [f"a run holds the warehouse lock (pid {holder[0]}, {_age(holder[1] or 0)})"
             if holder else "no run holds the warehouse lock"]
    if waiting:
        parts.append(f"{waiting} session(s) waiting on locks, the longest {_age(longest)}")
    return [Check("locks", WARNING if waiting and longest > 300 else OK, "; ".join(parts))]


def _backups(cur, settings: Settings, now: datetime) -> list[Check]:
    """The newest backup against the RPO threshold, the newest restore drill: a backup
    nobody restored is not known to restore (both from etl.maintenance)."""
    cur.execute("SELECT to_regclass('etl.maintenance') IS NOT NULL")
    if not cur.fetchone()[0]:
        return []
    newest = {}
    for action in ("backup", "restore-drill"):
        cur.execute("SELECT at, target, detail::text FROM etl.maintenance WHERE action = $1 "
                    "ORDER BY id DESC LIMIT 1", parameters=(action,))
        newest[action] = cur.fetchone()
    b = settings.backup
    out = []
    if newest["backup"] is None:
        out.append(Check("backup", WARNING, "no backup recorded: `retail-etl backup --init`, "
                         "then `retail-etl backup` nightly (`retail-etl backup --schedule`)"))
    else:
        at, label, _ = newest["backup"]
        age = (now - at).total_seconds()
        out.append(Check("backup", WARNING if age > b.max_rpo_seconds else OK,
                         f"newest {label}, {_age(age)} ago (RPO threshold "
                         f"{_age(b.max_rpo_seconds)})"))
    if newest["restore-drill"] is None:
        out.append(Check("restore drill", WARNING, "no restore drill recorded: a backup "
                         "never restored is not known to restore (`retail-etl restore-drill`)"))
    else:
        at, label, detail = newest["restore-drill"]
        d = json.loads(detail)
        age = (now - at).total_seconds()
        if not d.get("ok"):
            out.append(Check("restore drill", PROBLEM, f"the last drill ({label}, {_age(age)} "
                             f"ago) failed: {'; '.join(d.get('problems') or [])}"))
        else:
            out.append(Check("restore drill", WARNING if age > 8 * 86400 else OK,
                             f"{label} restored and verified {_age(age)} ago: RTO "
                             f"{d['rto_seconds']:.0f}s, RPO {d['rpo_seconds']:.0f}s"))
    return out


def as_dicts(checks: list[Check]) -> list[dict]:
    return [asdict(c) for c in checks]
