"""The operations benchmark (issue 13): what backups, restore drills and archival cost at
volume, on a local cluster of its own (benchmarks/cache/ops, removed at the end).

    python -m benchmarks.ops --lines 1m [--out benchmarks/results]

A generated drop (seed 42, cached in benchmarks/cache/drops) is split: its newest 1% (the
next days' sales) and the base. The steps, each timed:
  1. the base loaded on the cluster as `db up` makes it (wal_level=minimal: bulk COPY into
     new month partitions skips the WAL);
  2. `backup --init` (wal_level=replica, WAL archived by pgBackRest, encrypted), the
     database dropped and the base loaded again: the price archiving puts on a load;
  3. a full backup (both repositories; size on disk and pgBackRest's own figures), the next
     days loaded, an incremental backup;
  4. a restore drill of the newest backup: RTO, RPO, what it verified; a logical backup;
  5. `archive` of the older half of the months: rows/s, Parquet bytes against the
     partitions' bytes; the KPI total from PostgreSQL alone before, and with
     --include-archive after; `unarchive` of one month.
Results: ops_<lines>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.mart import split_drop
from benchmarks.run import HERE, ensure_drop, log, parse_volume

KEY = "benchmark-only-key-not-a-secret"
TOTAL = "SELECT count(*) AS lines, sum(total_amount) AS revenue FROM dw.fact_sales"


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", default="1m")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--keep", action="store_true", help="leave benchmarks/cache/ops behind")
    args = ap.parse_args(argv)
    lines = parse_volume(args.lines)

    from benchmarks import report as bench_report
    from pipelines import PROJECT
    from retail_etl.config import Backup, Settings
    from retail_etl.db.cluster import Cluster
    from retail_etl.db.connect import connect, resolve_dsn
    from retail_etl.flow import load_drop
    from retail_etl.ops import archive, backup, drill

    cache = HERE / "cache"
    root = cache / "ops"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.chmod(0o755)
    drop = ensure_drop(cache, lines, 42)
    base, nxt = root / "base", root / "next"
    shutil.copytree(drop, base)
    next_lines = split_drop(base, nxt, newest=True)
    settings = Settings(data_dir=root / "data", backup=Backup(cipher_pass=KEY))
    cluster = Cluster(settings.pg_dir)
    cluster.up()
    r: dict = {"lines": lines, "next_lines": next_lines}
    try:
        r["machine"] = bench_report.machine(cluster)
        dsn = resolve_dsn(settings)

        def fresh_load() -> float:
            cluster.drop_database("retail")
            cluster.create_database("retail")
            cluster._psql("CHECKPOINT")
            run, s = _timed(load_drop, PROJECT, settings, base)
            return s

        log(f"{lines:,} lines: load, wal_level=minimal")
        r["load_minimal_s"] = fresh_load()
        log("backup --init")
        _, r["init_s"] = _timed(backup.init, settings)
        log("load again, WAL archived")
        r["load_archived_s"] = fresh_load()
        conn = connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size('retail')")
            r["database_bytes"] = cur.fetchone()[0]
        conn.close()

        log("full backup")
        full, _ = _timed(backup.physical, settings, "full")
        r["full"] = full
        r["repo_bytes_after_full"] = {k: _du(p) for k, p in
                                      zip(("repo1", "repo2"), _repos(settings), strict=True)}
        log("next days, incremental backup")
        r["next_load_s"] = _timed(load_drop, PROJECT, settings, nxt)[1]
        r["incr"] = backup.physical(settings, "incr")
        r["repo_bytes_after_incr"] = {k: _du(p) for k, p in
                                      zip(("repo1", "repo2"), _repos(settings), strict=True)}

        log("restore drill")
        report = drill.drill(settings)
        r["drill"] = drill.summary(report) | {"restored": None}
        log("logical backup")
        r["logical"] = backup.logical(settings)

        conn = connect(dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT date_key / 100 FROM dw.fact_sales ORDER BY 1")
            months = [m for (m,) in cur.fetchall()]
            cur.execute("SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid) "
                        "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = 'dw.fact_sales'::regclass")
            sizes = cur.fetchall()
        conn.close()
        half = months[len(months) // 2]  # archive the months before it
        now = datetime.now(UTC)
        older = (now.year * 12 + now.month - 1) - ((half // 100) * 12 + half % 100 - 1)
        r["months"], r["archived_before"] = len(months), archive.month_label(half)
        before, r["kpi_pg_s"] = _timed(archive.query, settings, PROJECT, TOTAL, False)
        log(f"archive the {len(months) // 2} months before {archive.month_label(half)}")
        done, r["archive_s"] = _timed(archive.archive, settings, PROJECT, older)
        r["archive"] = done
        after, r["kpi_with_archive_s"] = _timed(archive.query, settings, PROJECT, TOTAL, True)
        r["kpi_equal"] = before.rows() == after.rows()
        r["kpi"] = [str(v) for v in after.row(0)]
        first = archive.month_label(months[0])
        log(f"unarchive {first}")
        back, r["unarchive_s"] = _timed(archive.unarchive, settings, PROJECT, first)
        r["unarchive"] = back
        r["partitions_bytes"] = [sum(s[0] for s in sizes), sum(s[1] for s in sizes)]
    finally:
        try:
            cluster.down()
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ops_{args.lines}.json").write_text(json.dumps(r, indent=2, default=str))
    md = _markdown(r, args.lines)
    (args.out / f"ops_{args.lines}.md").write_text(md)
    print(md)
    return 0


def _repos(settings) -> tuple[Path, Path]:
    from retail_etl.ops.pgbackrest import repo_paths

    return repo_paths(settings)


def _mb(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def _markdown(r: dict, volume: str) -> str:
    m, full, incr, d, lg = r["machine"], r["full"], r["incr"], r["drill"], r["logical"]
    arch = [a for a in r["archive"] if a.get("parquet_bytes") is not None]
    rows = sum(a["rows"] for a in arch)
    pq_bytes = sum(a["parquet_bytes"] for a in arch)
    pg_bytes = sum(a["partition_bytes"] for a in arch)
    back = r["unarchive"][0]
    return f"""# Operations at {r['lines']:,} lines (`python -m benchmarks.ops --lines {volume}`)

{m['date']}; {m['cpu']}, {m['cores']} cores; PostgreSQL {m['postgresql']}; pgBackRest,
zstd, aes-256-cbc, process-max 2. One run while other work shared the machine: read the
ratios within this run.

| step | figure |
|---|--:|
| load of the base ({r['lines'] - r['next_lines']:,} lines), wal_level=minimal | {r['load_minimal_s']:.1f} s |
| the same load with WAL archived (wal_level=replica) | {r['load_archived_s']:.1f} s ({r['load_archived_s'] / r['load_minimal_s']:.2f}x) |
| `backup --init` (archiving on, restart, stanza, check) | {r['init_s']:.1f} s |
| database size | {_mb(r['database_bytes'])} MB |
| full backup, both repositories | {full['seconds']:.1f} s |
| full backup: database size / in repo1 (compressed, encrypted) | {_mb(full['size_bytes'])} MB / {_mb(full['repo_bytes'])} MB |
| repo1 / repo2 on disk after it (backup + WAL) | {_mb(r['repo_bytes_after_full']['repo1'])} / {_mb(r['repo_bytes_after_full']['repo2'])} MB |
| the next days' load ({r['next_lines']:,} lines) | {r['next_load_s']:.1f} s |
| incremental backup after it, both repositories | {incr['seconds']:.1f} s, {_mb(incr['repo_bytes'])} MB in repo1 |
| restore drill of the newest backup: RTO (restore start to verified) | {d['rto_seconds']:.1f} s |
| restore drill: RPO, ok | {d['rpo_seconds']:.0f} s, {d['ok']} ({d['tables']} tables, {d['rows']:,} rows, {d['partitions']} partitions verified) |
| logical backup (pg_dump -Fd -j2, gzip) | {lg['seconds']:.1f} s, {_mb(lg['size_bytes'])} MB |
| archive of {len(arch)} of {r['months']} months (before {r['archived_before']}) | {r['archive_s']:.1f} s, {rows / r['archive_s']:,.0f} rows/s |
| archive size: Parquet / the partitions in PostgreSQL (with indexes) | {_mb(pq_bytes)} / {_mb(pg_bytes)} MB ({pq_bytes / pg_bytes:.2f}x) |
| KPI total, PostgreSQL alone before / with --include-archive after | {r['kpi_pg_s']:.2f} s / {r['kpi_with_archive_s']:.2f} s; equal: {r['kpi_equal']} |
| unarchive of {back['month']} ({back['rows']:,} rows) | {r['unarchive_s']:.1f} s |
"""


if __name__ == "__main__":
    raise SystemExit(main())
