"""The OLTP source benchmark: does a day of changes load in time proportional to the changes,
not to the size of the database?

    python -m benchmarks.oltp --lines 100000,1000000 --days 1,4 [--out benchmarks/results]
    python -m benchmarks.oltp --smoke        # 3,000 lines, 1 day, results in a temp dir

For each volume: a fresh operational database (retail_etl.generate.oltp.create_oltp, seed 7)
and a fresh warehouse database on the benchmark cluster (benchmarks/cache/pg), then, each as
its own `retail-etl load --json` process configured with that one `postgres` source:

- full load      the first run (no watermark: every row);
- no changes     a run right after it (the fixed cost of a run);
- N day(s)       N business days applied with mutate_day (distinct seeds), then one run.

Each run's wall time, peak RSS (of that process, from wait4), run summary (rows per entity,
stages) and the source's size are written to oltp.md and oltp.json.

The days are applied seconds apart, not a day apart, so the source is configured with
`overlap_seconds = 0` (--overlap-seconds): with the shipped 300 s window every run would
re-read the previous run's changes as well, which in production (runs a day apart) it does not.
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

from benchmarks.run import HERE, bench_cluster, log, parse_volume

SMOKE_LINES = 3_000
SMOKE_DAYS = [1]
SEED = 7  # create_oltp's seed
FACT = "sales"  # the entity of order lines
TOP = 8  # slowest statements kept per profiled run


# ---- one measured run ---------------------------------------------------------------------


def run_load(env: dict[str, str], logs: Path, label: str, profile: bool = False) -> dict:
    """`retail-etl load --json` in a process of its own: wall seconds, that process's peak
    RSS (wait4's rusage is the child's own) and its run summary. With profile, also the
    run's slowest PostgreSQL statements (`--profile`)."""
    argv = [sys.executable, "-m", "retail_etl", "load", "--json", *(["--profile"] * profile)]
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{label}.out", logs / f"{label}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=HERE.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"retail-etl load ({label}) failed with exit code {proc.returncode}:\n"
                         + err_path.read_text()[-3000:])
    summary = json.loads(out_path.read_text())
    statements = None
    if profile:
        data = Path(env["RETAIL_ETL_DATA_DIR"])
        path = data / "profiles" / f"run_{summary['run_id']:06d}" / "postgres_statements.json"
        statements = sorted(json.loads(path.read_text()), key=lambda x: -x["seconds"])[:TOP]
    return {
        "wall_seconds": wall,
        "run_seconds": summary["seconds"],
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "entities": summary["entities"],
        "stages": summary["stages"],
        "partitions_touched": len(summary.get("partitions") or []),
        "stderr_tail": err_path.read_text().strip().splitlines()[-1:],
        **({"slowest_statements": statements} if profile else {}),
    }


def load_env(config: Path, warehouse_dsn: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RETAIL_ETL_")}
    env.update(RETAIL_ETL_CONFIG=str(config), RETAIL_ETL_DSN=warehouse_dsn,
               RETAIL_ETL_DATA_DIR=str(data_dir))
    return env


def write_config(path: Path, oltp_dsn: str, overlap_seconds: float, **knobs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# written by benchmarks/oltp.py: the generated operational database as the one source\n"
        "[sources.shop]\n"
        'kind = "postgres"\n'
        f"dsn = {json.dumps(oltp_dsn)}\n"
        f"overlap_seconds = {overlap_seconds}\n"
        + "".join(f"{k} = {v}\n" for k, v in knobs.items())
    )


def source_size(dsn: str) -> dict:
    from retail_etl.db.connect import connect

    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM order_items), (SELECT count(*) FROM orders),"
                        " pg_database_size(current_database())")
            items, orders, size = cur.fetchone()
    finally:
        conn.close()
    return {"order_items": items, "orders": orders, "db_bytes": size}


def database_bytes(cluster, name: str) -> int:
    return int(cluster._psql(f"SELECT pg_database_size('{name}')").strip())


def _clean(cluster, work: Path, *databases: str) -> None:
    for db in databases:
        cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    shutil.rmtree(work, ignore_errors=True)


# ---- one volume ---------------------------------------------------------------------------


def bench_volume(cluster, cache: Path, lines: int, days: list[int],
                 overlap_seconds: float, profile: bool = False) -> dict:
    from retail_etl.generate.oltp import create_oltp, mutate_day

    oltp_db, dw_db = f"bench_oltp_{lines}", f"bench_oltp_dw_{lines}"
    work = cache / "oltp_work" / str(lines)
    for db in (oltp_db, dw_db):
        cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    shutil.rmtree(work, ignore_errors=True)
    result: dict = {"lines": lines, "seed": SEED, "scenarios": []}
    try:
        oltp_dsn = cluster.create_database(oltp_db)
        dw_dsn = cluster.create_database(dw_db)
        log(f"{lines:,} lines: create_oltp")
        t0 = time.perf_counter()
        result["tables"] = create_oltp(oltp_dsn, lines, seed=SEED)
        result["create_seconds"] = time.perf_counter() - t0
        result["source_initial"] = source_size(oltp_dsn)
        config = work / "retail_etl.toml"
        write_config(config, oltp_dsn, overlap_seconds)
        env = load_env(config, dw_dsn, work / "data")

        plan = [("full load", 0), ("no changes", 0)] + [
            (f"{n} day" + ("s" if n > 1 else ""), n) for n in days]
        next_seed = 1
        for label, n_days in plan:
            mutations: dict[str, int] = {}
            seeds = list(range(next_seed, next_seed + n_days))
            next_seed += n_days
            t0 = time.perf_counter()
            for s in seeds:
                for k, v in mutate_day(oltp_dsn, seed=s).items():
                    mutations[k] = mutations.get(k, 0) + v
            mutate_seconds = time.perf_counter() - t0
            source = source_size(oltp_dsn)
            cluster._psql("CHECKPOINT")  # no run pays for the writes before it
            log(f"{lines:,} lines: {label}")
            r = run_load(env, work / "logs", label.replace(" ", "_"),
                         profile=profile and label != "full load")
            r.update(scenario=label, days=n_days, seeds=seeds, mutations=mutations,
                     mutate_seconds=mutate_seconds, source=source,
                     warehouse_db_bytes=database_bytes(cluster, dw_db))
            result["scenarios"].append(r)
            sales = r["entities"].get(FACT, {})
            log(f"  {r['wall_seconds']:.2f} s wall ({r['run_seconds']:.2f} s run), "
                f"{r['peak_rss_mib']:.0f} MiB, {sales.get('read', 0):,} sales lines read, "
                f"{sales.get('deleted', 0):,} deleted")
    finally:
        _clean(cluster, work, oltp_db, dw_db)
    return result


# ---- sweeps of the source's knobs ---------------------------------------------------------

# knob -> values, the shipped default first: each a full load into a fresh warehouse
SWEEP = {"partitions": [2, 1, 4], "batch_rows": [250_000, 50_000, 1_000_000]}


def sweep(cluster, cache: Path, lines: int) -> list[dict]:
    from retail_etl.generate.oltp import create_oltp

    oltp_db, dw_db = f"bench_oltp_{lines}", f"bench_oltp_dw_{lines}"
    work = cache / "oltp_work" / f"sweep_{lines}"
    rows = []
    try:
        cluster._psql(f'DROP DATABASE IF EXISTS "{oltp_db}" WITH (FORCE)')
        oltp_dsn = cluster.create_database(oltp_db)
        log(f"{lines:,} lines: create_oltp")
        create_oltp(oltp_dsn, lines, seed=SEED)
        for knob, values in SWEEP.items():
            for value in values:
                cluster._psql(f'DROP DATABASE IF EXISTS "{dw_db}" WITH (FORCE)')
                shutil.rmtree(work, ignore_errors=True)
                dw_dsn = cluster.create_database(dw_db)
                config = work / "retail_etl.toml"
                write_config(config, oltp_dsn, 0, **{knob: value})
                cluster._psql("CHECKPOINT")
                log(f"{lines:,} lines: full load, {knob} = {value}")
                r = run_load(load_env(config, dw_dsn, work / "data"), work / "logs", "sweep")
                stages = {st["name"]: st["seconds"] for st in r["stages"]}
                rows.append({"knob": knob, "value": value, "wall_seconds": r["wall_seconds"],
                             "run_seconds": r["run_seconds"], "peak_rss_mib": r["peak_rss_mib"],
                             "extract_seconds": stages.get("extract", 0.0),
                             "validate_seconds": stages.get("validate", 0.0)})
                log(f"  {r['run_seconds']:.2f} s run, extract {stages.get('extract', 0):.2f} s, "
                    f"{r['peak_rss_mib']:.0f} MiB")
    finally:
        _clean(cluster, work, oltp_db, dw_db)
    return rows


def sweep_markdown(doc: dict) -> str:
    m = doc["machine"]
    out = ["# OLTP source: sweeps of ConnectorX partitions and staged batch size", "",
           f"- command: `{doc['command']}`",
           f"- machine: {m.get('cpu', '?')}; one full load of a {doc['lines']:,}-line shop "
           "into a fresh warehouse per value, one run each (the first value is the default)", "",
           "| knob | value | run s | extract s | validate s | peak RSS MiB | wall s |",
           "|---|--:|--:|--:|--:|--:|--:|"]
    for r in doc["rows"]:
        out.append(f"| {r['knob']} | {r['value']:,} | {r['run_seconds']:.2f} | "
                   f"{r['extract_seconds']:.2f} | {r['validate_seconds']:.2f} | "
                   f"{r['peak_rss_mib']:.0f} | {r['wall_seconds']:.2f} |")
    return "\n".join(out) + "\n"


# ---- the cost of the scan for deleted orders and lines (issue 22) ---------------------------


def scan_cost(cluster, cache: Path, lines: int, days: int) -> list[dict]:
    """After a full load: per business day, the warehouse is cloned and the same day is
    loaded twice, into the clone without the line scan (line_scan_every = 0) and into the
    warehouse with it; the order alternates by day (the first run warms the source's cache
    for the second). Both see the same source and the same warehouse."""
    from retail_etl.generate.oltp import create_oltp, mutate_day

    oltp_db, dw_db, twin = (f"bench_oltp_{lines}", f"bench_oltp_dw_{lines}",
                            f"bench_oltp_twin_{lines}")
    work = cache / "oltp_work" / f"scan_{lines}"
    rows: list[dict] = []
    try:
        _clean(cluster, work, oltp_db, dw_db, twin)
        oltp_dsn, dw_dsn = cluster.create_database(oltp_db), cluster.create_database(dw_db)
        log(f"{lines:,} lines: create_oltp")
        create_oltp(oltp_dsn, lines, seed=SEED)
        on, off = work / "scan.toml", work / "no_scan.toml"
        write_config(on, oltp_dsn, 0, line_scan_every=1)
        write_config(off, oltp_dsn, 0, line_scan_every=0)
        log(f"{lines:,} lines: full load")
        run_load(load_env(on, dw_dsn, work / "data"), work / "logs", "full")
        for day in range(1, days + 1):
            mutations = mutate_day(oltp_dsn, seed=day)
            cluster._psql(f'DROP DATABASE IF EXISTS "{twin}" WITH (FORCE)')
            twin_dsn = cluster.create_database(twin, template=dw_db)
            cluster._psql("CHECKPOINT")
            pair = [("no scan", off, twin_dsn), ("scan", on, dw_dsn)]
            for label, config, dsn in pair if day % 2 else pair[::-1]:
                r = run_load(load_env(config, dsn, work / "data"), work / "logs",
                             f"day{day}_{label.replace(' ', '_')}")
                stages = {st["name"]: st["seconds"] for st in r["stages"]}
                sales = r["entities"].get(FACT, {})
                rows.append({"day": day, "run": label, "wall_seconds": r["wall_seconds"],
                             "run_seconds": r["run_seconds"],
                             "scan_seconds": stages.get("gone lines", 0.0),
                             "lines_read": sales.get("read", 0),
                             "deleted": sales.get("deleted", 0),
                             "deleted_by": sales.get("deleted_by", {}),
                             "mutations": mutations})
                log(f"  day {day}, {label}: {r['run_seconds']:.2f} s run, scan "
                    f"{stages.get('gone lines', 0):.2f} s, {sales.get('deleted', 0)} deleted")
    finally:
        _clean(cluster, work, oltp_db, dw_db, twin)
    return rows


def scan_markdown(doc: dict) -> str:
    m = doc["machine"]
    out = ["# OLTP source: the cost of the scan for deleted orders and lines", "",
           f"- date: {m['date']}", f"- command: `{doc['command']}`",
           f"- machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores; source and "
           "warehouse on one local cluster",
           "- per day: the warehouse cloned, the same day loaded without the scan (into the "
           "clone) and with it; one run each, the order alternating by day",
           "- the scan runs with `line_scan_every = 1` here; the default `auto` scans every "
           "run while a scan takes at most 1 s or 15% of a run's time, else once enough runs went "
           "by that its cost is 15% of theirs (a scan of 16 s after runs of 25 s: every 5th "
           "run)", "",
           "| lines | day | lines read | deleted (with scan) | no scan: run s | scan: run s | "
           "of which scan s | scan / no scan |",
           "|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for v in doc["volumes"]:
        by_day: dict[int, dict] = {}
        for r in v["rows"]:
            by_day.setdefault(r["day"], {})[r["run"]] = r
        for day, pair in sorted(by_day.items()):
            a, b = pair["no scan"], pair["scan"]
            why = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(b["deleted_by"].items()))
            out.append(f"| {v['lines']:,} | {day} | {b['lines_read']:,} | {b['deleted']:,} "
                       f"({why}) | {a['run_seconds']:.2f} | {b['run_seconds']:.2f} | "
                       f"{b['scan_seconds']:.2f} | {b['run_seconds'] / a['run_seconds']:.3f} |")
    return "\n".join(out) + "\n"


# ---- figures and output -------------------------------------------------------------------


def summarise(v: dict) -> dict:
    """Per scenario: changed lines, seconds per 1k of them, ratio to the full load."""
    full = v["scenarios"][0]
    fixed = v["scenarios"][1] if len(v["scenarios"]) > 1 else None
    for s in v["scenarios"]:
        ent = s["entities"].get(FACT, {})
        s["sales_read"] = ent.get("read", 0)
        s["sales_deleted"] = ent.get("deleted", 0)
        s["dimension_rows_read"] = sum(e.get("read", 0) for k, e in s["entities"].items()
                                       if k != FACT)
        k = s["sales_read"] / 1000
        s["seconds_per_1k_lines"] = s["wall_seconds"] / k if k else None
        s["seconds_per_1k_lines_above_fixed"] = (
            (s["wall_seconds"] - fixed["wall_seconds"]) / k
            if k and fixed is not None and s is not full and s is not fixed else None)
        s["ratio_to_full_load"] = s["wall_seconds"] / full["wall_seconds"]
        s["stage_seconds"] = {st["name"]: st["seconds"] for st in s["stages"]}
    v["fit"] = fit(v["scenarios"])
    return v


def _line(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (intercept, slope) through (x, y) points (two or more distinct x)."""
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = (sum((x - mx) * (y - my) for x, y in points)
             / sum((x - mx) ** 2 for x, _ in points))
    return my - slope * mx, slope


def fit(scenarios: list[dict]) -> dict | None:
    """Over the day runs of one volume (needs two or more distinct line counts): each stage's
    seconds as fixed + per_1k * (1,000s of lines read). A fixed part that grows with the
    volume is a cost per database; per_1k should stay put across volumes."""
    days = [s for s in scenarios if s["days"] > 0]
    if len({s["sales_read"] for s in days}) < 2:
        return None
    names = list(dict.fromkeys(n for s in days for n in s["stage_seconds"]))
    out = {}
    for name in [*names, "run", "wall"]:
        pts = [(s["sales_read"] / 1000,
                s["run_seconds"] if name == "run" else s["wall_seconds"] if name == "wall"
                else s["stage_seconds"].get(name, 0.0)) for s in days]
        fixed, per_1k = _line(pts)
        out[name] = {"fixed_seconds": fixed, "seconds_per_1k_lines": per_1k}
    return out


def _n(x, digits=0):
    return "" if x is None else f"{x:,.{digits}f}"


def _mib(b):
    return f"{b / 2**20:,.0f}"


def markdown(doc: dict) -> str:
    m = doc["machine"]
    pg = ", ".join(f"{k}={v}" for k, v in m["postgresql_settings"].items())
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    vols = doc["volumes"]
    out = [
        "# OLTP source: a day of changes vs the size of the database", "",
        f"- date: {m['date']}",
        f"- command: `{doc['command']}` (wall time {doc['wall_seconds']:.0f} s)",
        f"- CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_gib']} GiB; {m['os']}",
        f"- PostgreSQL {m['postgresql']} (local cluster, source and warehouse in it: {pg}); "
        f"Python {m['python']}",
        f"- {pk}",
        f"- source: `create_oltp(dsn, lines, seed={SEED})`, days: `mutate_day(dsn, seed=k)` "
        f"(k = 1, 2, ... per volume); `overlap_seconds = {doc['overlap_seconds']:g}` (the days "
        "are applied seconds apart, not a day apart)", "",
        "Each run is one `retail-etl load --json` process. *wall s*: the process, start to exit "
        "(imports included); *run s*: the run's own `seconds`; peak RSS: that process's "
        "(not the server's). *Lines read*: sales lines the run read from the source (changed "
        "lines, and all lines of changed orders); *deleted*: fact lines it removed. *s/1k "
        "above fixed*: (wall - the no-change run's wall) per 1,000 lines read. One run each, "
        "on a shared machine.", "",
        "| volume | scenario | lines read | deleted | dim rows read | wall s | run s | "
        "peak RSS MiB | s / 1k lines | s / 1k above fixed | ratio to full load |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for v in vols:
        for s in v["scenarios"]:
            out.append(
                f"| {v['lines']:,} | {s['scenario']} | {s['sales_read']:,} | "
                f"{s['sales_deleted']:,} | {s['dimension_rows_read']:,} | "
                f"{s['wall_seconds']:.2f} | {s['run_seconds']:.2f} | {s['peak_rss_mib']:.0f} | "
                f"{_n(s['seconds_per_1k_lines'], 3)} | "
                f"{_n(s['seconds_per_1k_lines_above_fixed'], 3)} | "
                f"{s['ratio_to_full_load']:.3f} |")
    out += ["", "## The source and the warehouse", "",
            "| volume | create_oltp s | order_items (start) | OLTP db MiB (start) | "
            "order_items (end) | OLTP db MiB (end) | warehouse db MiB (end) |",
            "|--:|--:|--:|--:|--:|--:|--:|"]
    for v in vols:
        a, z = v["source_initial"], v["scenarios"][-1]["source"]
        out.append(f"| {v['lines']:,} | {v['create_seconds']:.1f} | {a['order_items']:,} | "
                   f"{_mib(a['db_bytes'])} | {z['order_items']:,} | {_mib(z['db_bytes'])} | "
                   f"{_mib(v['scenarios'][-1]['warehouse_db_bytes'])} |")
    out += ["", "Rows changed in the source by the days of each scenario (mutate_day's counts):",
            ""]
    kinds = sorted({k for v in vols for s in v["scenarios"] for k in s["mutations"]})
    if kinds:
        out += ["| volume | scenario | " + " | ".join(kinds) + " |",
                "|--:|---|" + "--:|" * len(kinds)]
        for v in vols:
            for s in v["scenarios"]:
                if s["mutations"]:
                    out.append(f"| {v['lines']:,} | {s['scenario']} | "
                               + " | ".join(f"{s['mutations'].get(k, 0):,}" for k in kinds)
                               + " |")
    # the incremental runs, stage by stage, across volumes: a stage whose time follows the
    # database (the no-change column grows with volume) rather than the lines read
    incremental = [s["scenario"] for s in vols[0]["scenarios"][1:]]
    out += ["", "## Stages of the incremental runs, across volumes", "",
            "Seconds per stage. The changes of a day are a fixed share of the database, so "
            "between volumes both grow; at one volume the days differ in changes only, and "
            "the no-change run has none: a stage that is slow there, or does not grow with "
            "the days, costs per database, not per change.", ""]
    for label in incremental:
        runs = [(v["lines"], next((s for s in v["scenarios"] if s["scenario"] == label), None))
                for v in vols]
        runs = [(n, s) for n, s in runs if s is not None]
        if not runs:
            continue
        names = list(dict.fromkeys(st for _, s in runs for st in s["stage_seconds"]))
        head = " | ".join(f"{n:,}" for n, _ in runs)
        ratio = len(runs) > 1
        out += [f"### {label}", "",
                f"| stage | {head} |" + (f" {runs[-1][0]:,} / {runs[0][0]:,} |" if ratio else ""),
                "|---|" + "--:|" * (len(runs) + ratio)]
        out.append("| *lines read* | " + " | ".join(f"{s['sales_read']:,}" for _, s in runs)
                   + " |" + (" |" if ratio else ""))
        for name in names:
            xs = [s["stage_seconds"].get(name) for _, s in runs]
            r = ""
            if ratio:
                a, b = xs[0], xs[-1]
                r = f" {b / a:.1f} |" if a and b is not None and a >= 0.005 else " |"
            out.append(f"| {name} | " + " | ".join(_n(x, 3) for x in xs) + " |" + r)
        out.append("")
    fitted = [v for v in vols if v.get("fit")]
    if fitted:
        names = list(dict.fromkeys(n for v in fitted for n in v["fit"]))
        out += ["## Fixed part and per-change part of each stage", "",
                "A line through each volume's day runs: stage seconds = fixed + per 1k x "
                "(thousands of sales lines read). Proportional to the changes means a small "
                "fixed part that does not grow with the volume and the same per-1k at every "
                "volume. Two points per volume (one run each): the split is rough, and "
                "tiny stages are noise.", "",
                "| stage | " + " | ".join(f"{v['lines']:,} fixed s | {v['lines']:,} s / 1k"
                                        for v in fitted) + " |",
                "|---|" + "--:|--:|" * len(fitted)]
        for name in names:
            cells = []
            for v in fitted:
                f = v["fit"].get(name)
                cells += (["", ""] if f is None else
                          [f"{f['fixed_seconds']:.3f}", f"{f['seconds_per_1k_lines']:.4f}"])
            label = f"**{name}**" if name in ("run", "wall") else name
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")
    profiled = [(v["lines"], s) for v in vols for s in v["scenarios"]
                if s.get("slowest_statements")]
    if profiled:
        out += ["## Slowest PostgreSQL statements of the incremental runs (--profile)", ""]
        for lines, s in profiled:
            out += [f"### {lines:,} lines, {s['scenario']}", "", "| seconds | rows | statement |",
                    "|--:|--:|---|"]
            for st in s["slowest_statements"]:
                sql = st["sql"][:160].replace("|", "\\|")
                rows = st.get("rows")
                out.append(f"| {st['seconds']:.3f} | {_n(rows) if rows is not None and rows >= 0 else ''}"
                           f" | `{sql}` |")
            out.append("")
    out += ["## Every run, by stage (seconds)", ""]
    for v in vols:
        sc = v["scenarios"]
        names = list(dict.fromkeys(st for s in sc for st in s["stage_seconds"]))
        out += [f"### {v['lines']:,} lines", "",
                "| stage | " + " | ".join(s["scenario"] for s in sc) + " |",
                "|---|" + "--:|" * len(sc)]
        for name in names:
            out.append(f"| {name} | "
                       + " | ".join(_n(s["stage_seconds"].get(name), 3) for s in sc) + " |")
        out.append("| **run** | " + " | ".join(f"{s['run_seconds']:.3f}" for s in sc) + " |")
        out.append("")
    return "\n".join(out)


def write(out: Path, doc: dict, name: str = "oltp") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{name}.md", out / f"{name}.json"
    md.write_text(markdown(doc))
    js.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return [md, js]


# ---- orchestration ------------------------------------------------------------------------


def _write_doc(out: Path, name: str, doc: dict, render) -> None:
    """NAME.md (render(doc)) and NAME.json in out."""
    md, js = out / f"{name}.md", out / f"{name}.json"
    out.mkdir(parents=True, exist_ok=True)
    md.write_text(render(doc))
    js.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    log(f"wrote {md}, {js}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.oltp", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", default="100k,1m",
                   help="order lines of the source database, comma-separated (k/m suffixes)")
    p.add_argument("--days", default="1,4",
                   help="business days applied before each incremental run, comma-separated")
    p.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    p.add_argument("--cache", type=Path, default=HERE / "cache",
                   help="the PostgreSQL cluster and the runs' data directories live here")
    p.add_argument("--overlap-seconds", type=float, default=0.0,
                   help="the source's re-read window (default 0: see above)")
    p.add_argument("--name", default="oltp", help="output file names: NAME.md, NAME.json")
    p.add_argument("--profile", action="store_true",
                   help="run the incremental loads with --profile and keep their slowest "
                        "PostgreSQL statements (adds a little overhead to those runs)")
    p.add_argument("--sweep", action="store_true",
                   help="instead: full loads of one --lines volume for each value of the "
                        "source's knobs (partitions, batch_rows) -> NAME_sweep.md")
    p.add_argument("--smoke", action="store_true",
                   help=f"{SMOKE_LINES:,} lines, days {SMOKE_DAYS}, results in a temp dir")
    p.add_argument("--scan-cost", action="store_true",
                   help="instead: each volume's day loads with and without the scan for "
                        "deleted orders and lines (issue 22) -> NAME_scan.md")
    a = p.parse_args(argv)

    if a.smoke:
        volumes, days = [SMOKE_LINES], SMOKE_DAYS
        out = a.out or Path(tempfile.mkdtemp(prefix="retail-etl-bench-oltp-"))
    else:
        volumes = [parse_volume(v) for v in a.lines.split(",") if v.strip()]
        days = [int(d) for d in a.days.split(",") if d.strip()]
        out = a.out or HERE / "results"
    if not volumes or any(n < 1 for n in volumes) or any(d < 1 for d in days):
        p.error("--lines and --days must be positive")
    cache = a.cache.absolute()
    started = time.perf_counter()
    command = "python -m benchmarks.oltp " + " ".join(sys.argv[1:] if argv is None else argv)
    if a.sweep:
        with bench_cluster(cache) as (cluster, machine):
            rows = sweep(cluster, cache, volumes[0])
        doc = {"machine": machine, "command": command, "lines": volumes[0], "rows": rows}
        _write_doc(out, f"{a.name}_sweep", doc, sweep_markdown)
        return
    if a.scan_cost:
        with bench_cluster(cache) as (cluster, machine):
            vols = [{"lines": n, "rows": scan_cost(cluster, cache, n, max(days))}
                    for n in volumes]
        _write_doc(out, f"{a.name}_scan", {"machine": machine, "command": command,
                                            "volumes": vols}, scan_markdown)
        return
    with bench_cluster(cache) as (cluster, machine):
        runs = [bench_volume(cluster, cache, n, days, a.overlap_seconds, a.profile)
                for n in volumes]
    doc = {"machine": machine,
           "command": "python -m benchmarks.oltp " + " ".join(sys.argv[1:] if argv is None
                                                             else argv),
           "wall_seconds": time.perf_counter() - started,
           "overlap_seconds": a.overlap_seconds,
           "volumes": [summarise(v) for v in runs]}
    paths = write(out, doc, a.name)
    log("wrote " + ", ".join(str(x) for x in paths))


if __name__ == "__main__":
    main()
