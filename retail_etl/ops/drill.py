"""`retail-etl restore-drill`: prove the backups restore. The newest backup (or the state
at --target-time, by WAL replay) is restored into a scratch cluster on a free loopback
port, never over a live one; once recovery ends, the copy is measured and compared with
the backup's manifest (row counts and checksums per table, every month partition
attached), a KPI query must answer, and the scratch cluster is torn down. It reports the
RTO (restore start to verified) and the RPO (the age of the newest change the copy holds,
from its heartbeat) against their thresholds; any mismatch is a failed drill."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import adbc_driver_manager

from retail_etl.config import Settings
from retail_etl.db.cluster import Cluster, _server_user, free_port, owner_group, pg_bindir
from retail_etl.db.connect import connect, redact, resolve_dsn
from retail_etl.errors import EtlError
from retail_etl.ops import maintain, manifest, pgbackrest
from retail_etl.ops.pgbackrest import BackupError

KPI_QUERY = ("SELECT count(*), coalesce(sum(revenue), 0)::text FROM mart.sales_kpis "
             "WHERE grain = 'month'")


def drill(settings: Settings, target_time: datetime | None = None, repo: int = 1,
          timeout: float = 3600, keep: bool = False) -> dict:
    """keep: leave the restored copy running (report["dsn"], report["scratch"]) for a look
    inside; tear_down(Path(report["scratch"])) removes it."""
    live = pgbackrest.local_cluster(settings)
    database = resolve_dsn(settings).split("?")[0].rsplit("/", 1)[1]
    backups = [b for b in pgbackrest.info(settings) if b["database"]["repo-key"] == repo]
    if not backups:
        raise BackupError(f"no backup in repo{repo} to restore",
                          hint="take one: `retail-etl backup`")
    label = backups[-1]["label"]
    expected = _manifest(settings, label) if target_time is None else None
    _archive_now(live, resolve_dsn(settings))  # WAL up to now reaches the repositories
    t0 = time.monotonic()
    scratch = Cluster(settings.backup_dir / "drills" / datetime.now(UTC).strftime(
        "drill-%Y%m%dT%H%M%S%fZ"))
    report = {"label": label, "repo": f"repo{repo}", "target_time":
              target_time.isoformat() if target_time else None, "problems": []}
    try:
        _prepare(scratch)
        # pgBackRest picks the backup set from the target only in its own time format.
        how = (["--type=time", "--target=" + target_time.astimezone(UTC).strftime(
                    "%Y-%m-%d %H:%M:%S.%f+00")] if target_time
               else ["--type=immediate", f"--set={label}"])
        pgbackrest.run(settings, f"--repo={repo}", f"--pg1-path={scratch.data}",
                       "--archive-mode=off", *how, "--target-action=promote", "restore",
                       what="restore the backup into the scratch cluster")
        port = free_port()
        scratch.port_file.write_text(f"{port}\n")
        started = scratch._run(
            [str(pg_bindir() / "pg_ctl"), "start", "-w", "-t", str(int(timeout)),
             "-D", str(scratch.data), "-l", str(scratch.log),
             "-o", f"-p {port} -k {scratch.socket_dir} -c archive_mode=off"], check=False)
        if started.returncode != 0:
            raise BackupError("the restored copy did not start: " + _last_error(scratch.log),
                              hint=f"see {settings.backup_dir / 'log' / scratch.root.name}.log")
        dsn = live.dsn(database).replace(f":{live.port}/", f":{port}/")
        got = _verified(dsn, timeout)
        report["rto_seconds"] = round(time.monotonic() - t0, 3)
        report["heartbeat"] = got.pop("heartbeat")
        report["rpo_seconds"] = (round((datetime.now(UTC) - datetime.fromisoformat(
            report["heartbeat"])).total_seconds(), 3) if report["heartbeat"] else None)
        report["kpi"], report["tables"] = got["kpi"], len(got["tables"])
        report["rows"] = sum(t["rows"] for t in got["tables"].values())
        report["partitions"] = sum(len(v) for v in got["partitions"].values())
        if expected is not None:
            report["problems"] += manifest.differences(expected, got)
        report["problems"] += _stray_partitions(got)
        report["restored"] = got  # (dropped from the printed report)
        if keep:
            report["dsn"], report["scratch"] = dsn, str(scratch.root)
    except BaseException as e:
        _tear_down(scratch, keep_log=settings.backup_dir / "log" / f"{scratch.root.name}.log")
        if isinstance(e, EtlError):  # a drill that could not restore is the one to know of
            maintain.record(resolve_dsn(settings), "restore-drill", label,
                            {"ok": False, "repo": f"repo{repo}", "problems": [str(e)]}, None)
        raise
    if not keep:
        _tear_down(scratch)
    b = settings.backup
    if report["rpo_seconds"] is None:
        report["problems"].append("the copy has no heartbeat: its RPO is unknown")
    elif report["rpo_seconds"] > b.max_rpo_seconds:
        report["problems"].append(f"RPO {report['rpo_seconds']:.0f}s is above "
                                  f"{b.max_rpo_seconds:.0f}s")
    if report["rto_seconds"] > b.max_rto_seconds:
        report["problems"].append(f"RTO {report['rto_seconds']:.0f}s is above "
                                  f"{b.max_rto_seconds:.0f}s")
    report["max_rto_seconds"], report["max_rpo_seconds"] = b.max_rto_seconds, b.max_rpo_seconds
    report["ok"] = not report["problems"]
    maintain.record(resolve_dsn(settings), "restore-drill", label, {
        k: report.get(k) for k in ("ok", "repo", "target_time", "rto_seconds", "rpo_seconds",
                                   "problems")}, report["rto_seconds"])
    return report


def _manifest(settings: Settings, label: str) -> dict:
    path = settings.backup_dir / "manifests" / f"{label}.json"
    if not path.exists():
        raise BackupError(f"backup {label} has no manifest ({path})",
                          hint="a backup taken by `retail-etl backup` writes one")
    return json.loads(path.read_text())


def _archive_now(live: Cluster, dsn: str, wait: float = 60) -> None:
    """Switch to a new WAL segment and wait until the one it closed is archived."""
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_walfile_name(pg_switch_wal())")
            segment = cur.fetchone()[0]
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                cur.execute("SELECT coalesce(last_archived_wal, '') >= $1, "
                            "coalesce(last_failed_wal, '') FROM pg_stat_archiver",
                            parameters=(segment,))
                done, failed = cur.fetchone()
                if done:
                    return
                time.sleep(0.2)
            raise BackupError(f"WAL segment {segment} was not archived within {wait:.0f}s"
                              + (f" (the last failure: {failed})" if failed else ""),
                              hint=f"see the server log, {live.log}")
    finally:
        conn.close()


def _last_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    bad = [ln for ln in lines if any(w in ln for w in ("FATAL:", "PANIC:", "ERROR:"))]
    return (bad or lines or ["no server log"])[-1].split(": ", 1)[-1].strip()


def _prepare(scratch: Cluster) -> None:
    for p in (scratch.root, scratch.data, scratch.socket_dir):
        p.mkdir(parents=True, exist_ok=True)
    scratch.data.chmod(0o700)
    owner = _server_user()
    if owner:
        for p in (scratch.root, scratch.data, scratch.socket_dir):
            shutil.chown(p, owner, owner_group(owner))


def _verified(dsn: str, timeout: float) -> dict:
    """Wait for the copy to leave recovery, then measure it and run the KPI query."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect(dsn, autocommit=True)
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                if not cur.fetchone()[0]:
                    break
            conn.close()
        except Exception as e:
            if time.monotonic() > deadline:
                raise BackupError(f"the restored copy did not come up: {redact(str(e))}") from None
        if time.monotonic() > deadline:
            raise BackupError(f"the restored copy was still recovering after {timeout:.0f}s")
        time.sleep(0.5)
    try:
        with conn.cursor() as cur:
            got = manifest.measure(cur)
            cur.execute(KPI_QUERY)
            months, revenue = cur.fetchone()
            got["kpi_query"] = {"rows": months, "revenue": revenue}
            cur.execute("SELECT at FROM etl.heartbeat")
            row = cur.fetchone()
            got["heartbeat"] = row[0].astimezone(UTC).isoformat() if row else None
    except adbc_driver_manager.Error as e:
        raise BackupError(f"the restored copy does not answer: {str(e).splitlines()[0]}") from None
    finally:
        conn.close()
    return got


def _stray_partitions(got: dict) -> list[str]:
    """A month table of a fact that is not attached (left detached, or built aside)."""
    attached = {c for months in got["partitions"].values() for c in months}
    stray = [t for t in got["tables"] if t.startswith("dw.fact_") and t[-6:].isdigit()
             and t not in attached]
    return [f"{t} exists but is not attached" for t in stray]


def tear_down(root: Path) -> None:
    """Stop and remove a copy a drill kept."""
    _tear_down(Cluster(root))


def _tear_down(scratch: Cluster, keep_log: Path | None = None) -> None:
    """keep_log: a failed drill's server log is kept there (errors point at it)."""
    if (scratch.data / "postmaster.pid").exists():
        scratch._run([str(pg_bindir() / "pg_ctl"), "stop", "-w", "-m", "immediate", "-D",
                      str(scratch.data)], what="stop the restored copy", check=False)
    if keep_log and scratch.log.exists():
        shutil.copyfile(scratch.log, keep_log)
    shutil.rmtree(scratch.root, ignore_errors=True)
    shutil.rmtree(scratch.socket_dir, ignore_errors=True)  # when it is a short one in /tmp


def summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "restored"}


