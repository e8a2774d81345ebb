"""The web-analytics benchmark (issue 16): events per second a load of GA4 exports reaches
against the bare path for the same events, its peak memory, and what a day of late events
costs onto a month of sessions.

    python -m benchmarks.events --events 1m[,10m]
    python -m benchmarks.events --smoke        # 30,000 events, every step, temp output dir

Per volume N (events), on a PostgreSQL cluster of its own (benchmarks/cache/events, removed
at the end unless --keep):
  1. the exports: a month of the site's events (generate.events, seed 42) for the online
     orders of a cached 1M-line drop (benchmarks/cache/drops), written in parts of at most
     1M events each (`events_YYYYMMDD_PP.ndjson`, a part per seed, so the generator's
     memory stays bounded); then every other line of the two mid-month days' files is held
     back into a second directory: the late events, a day's worth (1/31 of the month), of
     sessions whose other events the month has;
  2. the bare path, in a process of its own: DuckDB reads each file (read_json_objects,
     the same export shape), flattens it to the same columns (the params, the items, the
     exact microsecond timestamps), and ADBC COPYs it into one plain unindexed table, one
     stream; no validation, no rejects, no dedup, no keys, no sessions: the floor a
     hand-written pipeline pays;
  3. `retail-etl load --events-dir MONTH` into a fresh warehouse whose dimensions the drop
     filled (untimed), in a worker process (flow.load, as the CLI does; its peak RSS is the
     process's VmHWM), then `--events-dir LATE`: the late day onto the month's sessions.
Results: events.md and events.json in --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import HERE, ensure_drop, log, own_cluster, parse_volume, vm_hwm_mib

SEED = 42
DROP_LINES = 1_000_000
PART_EVENTS = 1_000_000  # events per generator call (its memory)
EVENTS_PER_SESSION = 15  # generate.events: 10-20
SMOKE_EVENTS = 30_000


# ---- the data -----------------------------------------------------------------------------


def exports(cache: Path, events: int, drop: Path) -> tuple[Path, Path, dict]:
    """(the month's directory, the late day's, what was made), cached per volume."""
    import polars as pl

    from retail_etl.generate.events import generate_events

    root = cache / "events" / f"{events}_{SEED}"
    month, late = root / "month", root / "late"
    done = root / "made.json"
    if done.exists():
        return month, late, json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    parts = max(1, -(-events // PART_EVENTS))
    made = {"events": 0, "lines": 0, "sessions": 0, "purchases": 0, "parts": parts}
    for part in range(parts):
        out = root / f"part_{part:02d}"
        s = generate_events(drop, out, sessions=round(events / parts / EVENTS_PER_SESSION),
                            seed=SEED + part, days=31)
        for k in ("events", "lines", "sessions", "purchases"):
            made[k] += getattr(s, k)
        files = sorted(out.glob("events_*"))
        days = sorted({f.name.split(".")[0] for f in files})
        held_days = set(days[len(days) // 2:len(days) // 2 + 2])
        for f in files:
            stem, ext = f.name.split(".", 1)
            for target in (month, late):
                target.mkdir(parents=True, exist_ok=True)
            lines = pl.read_csv(f, has_header=False, separator="\x1f", quote_char=None,
                                schema={"raw": pl.String}).with_row_index("n")
            late_line = (pl.col("n") % 2 == 1) & pl.lit(stem in held_days)
            keep, held = lines.filter(~late_line), lines.filter(late_line)
            for frame, target in ((keep, month), (held, late)):
                if not frame.height:
                    continue
                path = target / f"{stem}_{part:02d}.ndjson"
                frame.select("raw").write_csv(path, include_header=False, quote_style="never")
            f.unlink()
        shutil.rmtree(out)
    made["late_lines"] = sum(_lines(p) for p in late.iterdir())
    made["month_lines"] = sum(_lines(p) for p in month.iterdir())
    made["month_bytes"] = sum(p.stat().st_size for p in month.iterdir())
    done.write_text(json.dumps(made))
    return month, late, made


def _lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# ---- the workers: one measured step each, in a process of its own ---------------------------


def bare_worker(dsn: str, directory: Path) -> None:
    """Read, flatten, COPY: DuckDB over each file, ADBC into one plain table."""
    import adbc_driver_postgresql.dbapi as pg
    import duckdb

    from retail_etl.extract import events as ev

    t0 = time.perf_counter()
    con = duckdb.connect(config={"threads": 2})
    con.execute("CREATE MACRO value_text(v) AS "
                "coalesce(v.string_value, v.int_value, v.double_value, v.float_value)")
    con.execute("CREATE MACRO param(ps, k) AS "
                "value_text(list_filter(ps, lambda p: p.key = k)[1].value)")
    flatten = ev._FLATTEN
    db = pg.connect(dsn)
    files = ", ".join(f"'{f}'" for f in sorted(directory.iterdir()))
    # every file in one scan, streamed: the lines as JSON objects, then the same flattening
    con.execute(f"CREATE VIEW batch AS SELECT 0 AS line, json AS raw, true AS ok, "
                f"0 AS file_no, '' AS file FROM read_json_objects([{files}], "
                "format = 'newline_delimited', ignore_errors = true)")
    with db.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bare_events")
        db.commit()
        rows = cur.adbc_ingest("bare_events", con.sql(flatten).to_arrow_reader(250_000),
                               mode="create")
        db.commit()
        wall = time.perf_counter() - t0
        cur.execute("DROP TABLE bare_events")
        db.commit()
    db.close()
    print(json.dumps({"wall_seconds": wall, "rows": rows, "peak_rss_mib": vm_hwm_mib()}))


def load_worker(dsn: str, data_dir: Path, directory: Path) -> None:
    import pipelines
    from retail_etl import flow
    from retail_etl.config import EventsSource, Settings

    settings = Settings(dsn=dsn, data_dir=data_dir)
    t0 = time.perf_counter()
    run = flow.load(pipelines.PROJECT, settings,
                    {"web": EventsSource(kind="events", dir=directory)})
    wall = time.perf_counter() - t0
    from retail_etl.db.connect import connect
    conn = connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), sum(events) FROM dw.fact_sessions")
        sessions, events = cur.fetchone()
    conn.close()
    print(json.dumps({"wall_seconds": wall, "sessions": sessions, "session_events": events,
                      "entities": {"web_events": vars(run.counts["web_events"])},
                      "stages": [vars(s) for s in run.stages],
                      "peak_rss_mib": vm_hwm_mib()}, default=str))


def _run(label: str, root: Path, *args: str) -> dict:
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.events", *args]
    env = {**os.environ, "RETAIL_ETL_CONFIG": str(root / "none.toml")}
    with open(logs / f"{label}.out", "w") as out, open(logs / f"{label}.err", "w") as err:
        proc = subprocess.run(argv, stdout=out, stderr=err, env=env, cwd=HERE.parent,
                              check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{label} failed:\n" + (logs / f"{label}.err").read_text()[-3000:])
    return json.loads((logs / f"{label}.out").read_text().strip().splitlines()[-1])


def bench_volume(cluster, root: Path, cache: Path, events: int) -> dict:
    log(f"{events:,} events: exports")
    drop = ensure_drop(cache, DROP_LINES, SEED)
    t0 = time.perf_counter()
    month, late, made = exports(cache, events, drop)
    r: dict = {"events": events, "made": made, "exports_seconds": round(time.perf_counter() - t0, 1)}
    log(f"  {made['month_lines']:,} lines in the month ({made['month_bytes'] / 2**20:,.0f} MiB), "
        f"{made['late_lines']:,} late")
    db = "events_bench"
    cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    dsn = cluster.create_database(db)
    try:
        log("  the drop's dimensions and sales (untimed)")
        env = {**os.environ, "RETAIL_ETL_DATA_DIR": str(root / "data"),
               "RETAIL_ETL_CONFIG": str(root / "none.toml")}
        subprocess.run([sys.executable, "-m", "retail_etl", "load", "--source-dir", str(drop),
                        "--dsn", dsn], check=True, capture_output=True, env=env, cwd=HERE.parent)
        log("  bare path")
        r["bare"] = _run("bare", root, "--bare", str(month), "--dsn", dsn)
        log(f"    {r['bare']['wall_seconds']:.1f} s")
        log("  load: the month")
        r["month"] = _run("month", root, "--load", str(month), "--dsn", dsn,
                          "--data-dir", str(root / "data"))
        log(f"    {r['month']['wall_seconds']:.1f} s, peak {r['month']['peak_rss_mib']:,.0f} MiB")
        log("  load: the late day")
        r["late"] = _run("late", root, "--load", str(late), "--dsn", dsn,
                         "--data-dir", str(root / "data"))
        log(f"    {r['late']['wall_seconds']:.1f} s")
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    m, b, la = r["month"]["wall_seconds"], r["bare"]["wall_seconds"], r["late"]["wall_seconds"]
    lines = made["month_lines"]
    r["figures"] = {
        "load_events_per_second": round(lines / m),
        "bare_events_per_second": round(lines / b),
        "load_vs_bare": round(m / b, 2),
        "late_day_share_of_month": round(la / m, 4),
        "peak_rss_mib": round(r["month"]["peak_rss_mib"]),
        "late_peak_rss_mib": round(r["late"]["peak_rss_mib"]),
        "stages": {s["name"]: round(s["seconds"], 2) for s in r["month"]["stages"]},
        "late_stages": {s["name"]: round(s["seconds"], 2) for s in r["late"]["stages"]},
    }
    return r


def _markdown(doc: dict) -> str:
    out = ["# Web-analytics events (issue 16)", "",
           f"`{doc['command']}`, {doc['machine']['cores']} cores, {doc['machine']['date']}; one run each, "
           "ratios within the run.", "",
           "| events (month) | load | bare path | load / bare | events/s | peak RSS | "
           "late day (1/31) | late / month |",
           "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for v in doc["volumes"]:
        f = v["figures"]
        out.append(f"| {v['made']['month_lines']:,} | {v['month']['wall_seconds']:.1f} s | "
                   f"{v['bare']['wall_seconds']:.1f} s | {f['load_vs_bare']:.2f}x | "
                   f"{f['load_events_per_second']:,} | {f['peak_rss_mib']:,} MiB | "
                   f"{v['late']['wall_seconds']:.1f} s ({v['made']['late_lines']:,}) | "
                   f"{f['late_day_share_of_month']:.1%} |")
    out += ["", "Stages of the month's load (s):", ""]
    for v in doc["volumes"]:
        out.append(f"- {v['made']['month_lines']:,}: " + ", ".join(
            f"{k} {s}" for k, s in v["figures"]["stages"].items()))
        out.append("- late day onto it: " + ", ".join(
            f"{k} {s}" for k, s in v["figures"]["late_stages"].items()))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.events",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--events", default="1m", help="events per volume, e.g. 1m,10m")
    ap.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    ap.add_argument("--keep", action="store_true", help="leave benchmarks/cache/events behind")
    ap.add_argument("--smoke", action="store_true", help=f"{SMOKE_EVENTS:,} events, temp dir")
    ap.add_argument("--bare", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--load", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--dsn", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.bare:
        bare_worker(a.dsn, a.bare)
        return 0
    if a.load:
        load_worker(a.dsn, a.data_dir, a.load)
        return 0
    if a.smoke:
        volumes = [SMOKE_EVENTS]
        out = a.out or Path(tempfile.mkdtemp(prefix="retail-etl-bench-events-"))
    else:
        volumes = [parse_volume(v) for v in a.events.split(",") if v.strip()]
        out = a.out or HERE / "results"

    from benchmarks import report as bench_report

    cache = HERE / "cache"
    started = time.perf_counter()
    with own_cluster("events_run", keep=a.keep) as (root, cluster):
        doc = {"machine": bench_report.machine(cluster),
               "command": "python -m benchmarks.events " + " ".join(
                   sys.argv[1:] if argv is None else argv),
               "volumes": [bench_volume(cluster, root, cache, n) for n in volumes]}
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "events.json").write_text(json.dumps(doc, indent=2, default=str))
    md = _markdown(doc)
    (out / "events.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
