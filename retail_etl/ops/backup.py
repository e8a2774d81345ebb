"""`retail-etl backup` and `retail-etl backups`.

Physical (pgBackRest, point-in-time recovery): `--init` once switches WAL archiving on (a
restart of the local cluster) and creates the stanza; then each `backup` takes a full
backup on `backup.full_weekday` or when the last full is a week old, else an incremental
one, into repo1 and then repo2 (the off-site copy). Logical (`--logical`, any server):
pg_dump's directory format, two jobs, from one exported snapshot.

Either way the warehouse is measured (ops/manifest.py) at the backup's consistent point,
and the measure kept beside it: the restore drill compares a restored copy with it. A
physical backup holds the warehouse lock while it runs, so no load changes what it
measures (a load that arrives waits, up to lock_wait_seconds); a logical one reads one
snapshot and blocks nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta

from retail_etl.config import Settings
from retail_etl.db import locks
from retail_etl.db.cluster import pg_bindir
from retail_etl.db.connect import connect, redact, resolve_dsn
from retail_etl.ops import maintain, manifest, pgbackrest
from retail_etl.ops.pgbackrest import BackupError
from retail_etl.run import beat


def init(settings: Settings) -> list[str]:
    """Idempotent: what it did, one sentence each."""
    cluster = pgbackrest.local_cluster(settings)
    pgbackrest.write_config(settings, cluster)
    done = [f"wrote {pgbackrest.config_file(settings)}"]
    if not pgbackrest.archiving(settings, cluster):
        # replica: WAL enough to replay (the cluster's minimal WAL skips what a bulk COPY
        # into a new table writes; archiving trades that speed for point-in-time recovery)
        cluster.alter_system({"wal_level": "replica", "archive_mode": "on",
                              "archive_command": pgbackrest.archive_command(settings),
                              "archive_timeout": "300s", "max_wal_senders": "2"})
        cluster.restart()
        done.append("switched WAL archiving on (wal_level replica) and restarted the server")
    pgbackrest.run(settings, "stanza-create", what="create the stanza")
    pgbackrest.run(settings, "check", what="check WAL archiving", timeout=120)
    done.append("pgBackRest's check passed: WAL reaches both repositories")
    return done


def pick_type(backups: list[dict], now: datetime, full_weekday: int) -> str:
    """full on the weekly day (once), or when repo1's last full is 7 days old; else incr."""
    fulls = [datetime.fromtimestamp(b["timestamp"]["stop"], UTC) for b in backups
             if b["type"] == "full" and b["database"]["repo-key"] == 1]
    if not fulls:
        return "full"
    last = max(fulls)
    if now - last >= timedelta(days=7) or (now.weekday() == full_weekday
                                           and last.date() < now.date()):
        return "full"
    return "incr"


def physical(settings: Settings, kind: str | None = None) -> dict:
    cluster = pgbackrest.local_cluster(settings)
    pgbackrest.write_config(settings, cluster)  # (the port may have moved since --init)
    if not pgbackrest.archiving(settings, cluster):
        raise BackupError("WAL archiving is not set up for point-in-time recovery",
                          hint="run `retail-etl backup --init` once (it restarts the "
                          "local server)")
    dsn = resolve_dsn(settings)
    kind = kind or pick_type(pgbackrest.info(settings), datetime.now(UTC),
                             settings.backup.full_weekday)
    _beat(dsn)
    conn = connect(dsn)
    t0 = time.perf_counter()
    try:
        with conn.cursor() as cur:
            locks.hold_warehouse(cur, settings.lock_wait_seconds)
            for repo in (1, 2):
                pgbackrest.run(settings, f"--repo={repo}", f"--type={kind}", "backup",
                               what=f"take a {kind} backup into repo{repo}")
            measured = manifest.measure(cur)
        conn.rollback()  # (it wrote nothing: the lock goes)
    finally:
        conn.close()
    seconds = time.perf_counter() - t0
    newest = {}
    for b in pgbackrest.info(settings):
        newest[b["database"]["repo-key"]] = b  # info lists them oldest first
    out = settings.backup_dir / "manifests"
    out.mkdir(parents=True, exist_ok=True)
    for b in newest.values():
        (out / f"{b['label']}.json").write_text(json.dumps(
            {"label": b["label"], "type": b["type"], **measured}, indent=1))
    b1 = newest[1]
    done = {"kind": "physical", "type": kind, "label": b1["label"],
            "labels": {f"repo{k}": b["label"] for k, b in sorted(newest.items())},
            "seconds": round(seconds, 3), "size_bytes": b1["info"]["size"],
            "repo_bytes": b1["info"]["repository"]["delta"],
            "wal": [b1["archive"]["start"], b1["archive"]["stop"]],
            "tables": len(measured["tables"])}
    _record(dsn, done)
    return done


def logical(settings: Settings, jobs: int = 2) -> dict:
    """pg_dump -Fd from one exported snapshot, measured in the same snapshot."""
    dsn = resolve_dsn(settings)
    _beat(dsn)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = settings.backup_dir / "logical" / stamp
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cur.execute("SELECT pg_export_snapshot()")
            snapshot = cur.fetchone()[0]
            dump = subprocess.run(
                [str(pg_bindir() / "pg_dump"), "-Fd", "-j", str(jobs), "-Z", "6",  # gzip: zstd needs pg_dump 16
                 f"--snapshot={snapshot}", "-f", str(out / "dump"), "-d", dsn],
                capture_output=True, text=True)
            if dump.returncode != 0:
                shutil.rmtree(out, ignore_errors=True)
                detail = (dump.stderr.strip().splitlines() or ["pg_dump failed"])[-1]
                raise BackupError(f"could not dump the warehouse: {redact(detail)}")
            measured = manifest.measure(cur)
        conn.rollback()
    finally:
        conn.close()
    files = {str(p.relative_to(out)): manifest.sha256_of(p)
             for p in sorted((out / "dump").iterdir())}
    doc = {"label": stamp, "type": "logical", "files": files, **measured}
    (out / "manifest.json").write_text(json.dumps(doc, indent=1))
    size = sum(p.stat().st_size for p in (out / "dump").iterdir())
    done = {"kind": "logical", "type": "logical", "label": stamp,
            "seconds": round(time.perf_counter() - t0, 3), "size_bytes": size,
            "path": str(out), "tables": len(measured["tables"])}
    _record(dsn, done)
    return done


def _record(dsn: str, done: dict) -> None:
    """In etl.maintenance: doctor says how old the newest backup is."""
    maintain.record(dsn, "backup", done["label"], {k: done[k] for k in (
        "kind", "type", "size_bytes", "tables")}, done["seconds"])


def listing(settings: Settings) -> list[dict]:
    """Every backup: type, start, size, duration, WAL range (physical), path (logical)."""
    rows = []
    for b in sorted(pgbackrest.info(settings),
                    key=lambda b: (b["database"]["repo-key"], b["timestamp"]["start"])):
        start, stop = b["timestamp"]["start"], b["timestamp"]["stop"]
        rows.append({"repo": f"repo{b['database']['repo-key']}", "label": b["label"],
                     "type": b["type"], "started": _utc(start), "seconds": stop - start,
                     "size_mb": round(b["info"]["size"] / 2**20, 1),
                     "stored_mb": round(b["info"]["repository"]["delta"] / 2**20, 1),
                     "wal": f"{b['archive']['start']}..{b['archive']['stop']}"})
    for m in sorted((settings.backup_dir / "logical").glob("*/manifest.json")):
        dump = m.parent / "dump"
        size = sum(p.stat().st_size for p in dump.iterdir()) if dump.is_dir() else 0
        rows.append({"repo": "logical", "label": m.parent.name, "type": "logical",
                     "started": json.loads(m.read_text())["measured_at"][:19].replace("T", " "),
                     "seconds": None, "size_mb": round(size / 2**20, 1),
                     "stored_mb": round(size / 2**20, 1), "wal": None})
    return rows


def schedule(settings: Settings) -> str:
    """The operations calendar as cron lines and a systemd timer (the backup command picks
    full or incr by the date, so one line serves both)."""
    day = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
           "Sunday"][settings.backup.full_weekday]
    cron_day = (settings.backup.full_weekday + 1) % 7  # cron: 0 = Sunday
    return f"""# /etc/cron.d/retail-etl-ops (UTC)
30 1 * * *   etl  cd /srv/retail-etl && retail-etl backup                # full on {day}s, incr otherwise
30 4 * * {cron_day}   etl  cd /srv/retail-etl && retail-etl restore-drill --json > /var/lib/retail-etl/drill.json
0  5 * * {cron_day}   etl  cd /srv/retail-etl && retail-etl maintain
0  6 1 * *   etl  cd /srv/retail-etl && retail-etl archive --older-than-months 24

# or systemd: /etc/systemd/system/retail-etl-backup.service + .timer
[Service]
Type=oneshot
User=etl
WorkingDirectory=/srv/retail-etl
EnvironmentFile=/etc/retail-etl/env        # RETAIL_ETL_BACKUP__CIPHER_PASS
ExecStart=/usr/local/bin/retail-etl backup
[Timer]
OnCalendar=*-*-* 01:30:00 UTC
Persistent=true
[Install]
WantedBy=timers.target
"""


def _beat(dsn: str) -> None:
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            beat(cur)
    finally:
        conn.close()




def _utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")
