"""The mart benchmark (issue 19): dashboard questions from the mart against the same
questions asked of dw, the refresh after a 1% drop against that drop's load, the report.

    python -m benchmarks.mart --lines 1m [--out benchmarks/results]

A drop of `lines` sales (retail_etl.generate, seed 42) is split into three: the newest 1% of
its lines (whole orders: the next days' sales, what a daily load brings), a seeded 1% of the
rest (late lines of every month: the worst case for a refresh, which then touches every day),
and the base. A fresh warehouse on the benchmark cluster (benchmarks/cache/pg) loads the base,
answers each question 7 times from the mart and from dw (median of the last 5), then loads the
next days, then the late lines (each drop's `refresh` stage against the rest of its run), and
the report is written. Results: mart_<lines>.md and .json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from benchmarks.run import HERE, bench_cluster, log, parse_volume

QUESTIONS = {
    "a month's KPIs by store": (
        "SELECT store_id, revenue, orders, avg_order_value FROM mart.sales_kpis "
        "WHERE grain = 'month' AND breakdown = 'store' AND period_start = '{last}'",
        "SELECT coalesce(s.store_id, '(unknown)'), sum(f.total_amount), count(DISTINCT f.order_id),"
        " round(sum(f.total_amount) / count(DISTINCT f.order_id), 2) FROM dw.fact_sales f "
        "JOIN dw.dim_store s USING (store_key) WHERE f.order_ts >= '{last}' "
        "AND f.order_ts < '{last}'::date + interval '1 month' GROUP BY 1"),
    "a year's revenue trend": (
        "SELECT period_start, revenue FROM mart.sales_kpis WHERE grain = 'month' "
        "AND breakdown = 'total' AND period_start > '{last}'::date - interval '12 months'",
        "SELECT date_trunc('month', order_ts), sum(total_amount) FROM dw.fact_sales "
        "WHERE order_ts >= '{last}'::date - interval '11 months' GROUP BY 1"),
    "the month's top 10 products": (
        "SELECT * FROM mart.top_products_monthly WHERE month = '{last}' AND revenue_rank <= 10",
        "SELECT p.product_id, sum(f.total_amount) AS r FROM dw.fact_sales f JOIN dw.dim_product p"
        " USING (product_key) WHERE f.order_ts >= '{last}' AND f.order_ts < '{last}'::date "
        "+ interval '1 month' GROUP BY 1 ORDER BY r DESC LIMIT 10"),
}


def split_drop(drop: Path, late: Path, share: float = 0.01, seed: int = 7,
               newest: bool = False) -> int:
    """Move `share` of the drop's sale lines into the drop `late`: the newest (by order_ts,
    so whole orders), or a seeded sample of every sales file's lines."""
    late.mkdir(parents=True, exist_ok=True)
    files = sorted(drop.glob("sales*.csv*"))
    frames = {path: pl.read_csv(path, infer_schema=False).with_row_index("_i") for path in files}
    cutoff = None
    if newest:
        ts = pl.concat([df.select(_ts(pl.col("order_ts"))) for df in frames.values()])["order_ts"]
        cutoff = ts.drop_nulls().sort(descending=True)[int(ts.len() * share)]
    moved = 0
    for path, df in frames.items():
        if newest:
            pick = df.filter(_ts(pl.col("order_ts")) > cutoff)["_i"]
        else:
            pick = df.sample(fraction=share, seed=seed)["_i"]
        if not pick.len():
            continue
        name = path.name.removesuffix(".gz")
        df.filter(pl.col("_i").is_in(pick.implode())).drop("_i").write_csv(late / name)
        path.unlink()
        df.filter(~pl.col("_i").is_in(pick.implode())).drop("_i").write_csv(drop / name)
        moved += pick.len()
    return moved


def _ts(c: pl.Expr) -> pl.Expr:
    """order_ts as UTC (a line the generator made unreadable stays in the base drop)."""
    return c.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False)


def timed(cur, sql: str, n: int = 7) -> float:
    """Median milliseconds of the last n - 2 runs (two to warm the cache)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        cur.execute(sql)
        cur.fetch_arrow_table()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times[2:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", default="1m")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    lines = parse_volume(args.lines)

    from pipelines import PROJECT
    from retail_etl import report
    from retail_etl.config import Settings
    from retail_etl.db.connect import connect
    from retail_etl.flow import load_drop
    from retail_etl.generate.drops import generate_drops

    work = Path(tempfile.mkdtemp(prefix="retail-etl-mart-"))
    try:
        with bench_cluster(HERE / "cache") as (cluster, machine):
            generate_drops(work / "raw", lines, 42, 1)
            base = work / "raw" / "drop_001"
            next_days = split_drop(base, work / "next", newest=True)
            moved = split_drop(base, work / "late")
            log(f"{lines:,} lines: {next_days:,} in the next days' drop, {moved:,} late ones")
            name = f"bench_mart_{lines}"
            cluster.drop_database(name)
            dsn = cluster.create_database(name)
            settings = Settings(dsn=dsn, data_dir=work / "data")
            first = load_drop(PROJECT, settings, work / "raw" / "drop_001")
            conn = connect(dsn, autocommit=True)
            with conn.cursor() as cur:
                cur.execute("SELECT max(month)::text FROM mart.kpi_monthly")
                last = cur.fetchone()[0]
                questions = {q: {"mart_ms": timed(cur, m.format(last=last)),
                                 "dw_ms": timed(cur, d.format(last=last))}
                             for q, (m, d) in QUESTIONS.items()}
            conn.close()
            daily = load_drop(PROJECT, settings, work / "next")
            late = load_drop(PROJECT, settings, work / "late")
            t0 = time.perf_counter()
            report.write(dsn, work / "report.html", None, None)
            report_s = time.perf_counter() - t0
            cluster.drop_database(name)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def stage(run, name):
        return sum(s.seconds for s in run.stages if s.name == name)

    result = {
        "lines": lines, "late_lines": moved, "machine": machine,
        "first_load_s": first.seconds, "first_refresh_s": stage(first, "refresh"),
        "questions": questions,
        "next_lines": next_days, "next_load_s": daily.seconds,
        "next_refresh_s": stage(daily, "refresh"),
        "late_load_s": late.seconds, "late_refresh_s": stage(late, "refresh"),
        "report_s": report_s,
        # where each drop's refresh went (load/refresh.py's steps)
        "refresh_steps": {name: {r.view: r.seconds for r in run.refreshed}
                          for name, run in (("first", first), ("next", daily), ("late", late))},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"mart_{args.lines}.json").write_text(json.dumps(result, indent=2, default=str))
    rows = "\n".join(f"| {q} | {v['mart_ms']:.1f} | {v['dw_ms']:.1f} | "
                     f"{v['dw_ms'] / v['mart_ms']:.0f}x |" for q, v in questions.items())
    late_rest = late.seconds - result["late_refresh_s"]
    next_rest = daily.seconds - result["next_refresh_s"]
    m = machine
    by = result["refresh_steps"]
    steps = "\n".join(f"| {v} | " + " | ".join(f"{by[k].get(v, 0):.2f}" for k in by) + " |"
                      for v in by["first"])
    md = f"""# The mart at {lines:,} lines (`python -m benchmarks.mart --lines {args.lines}`)

{m['date']}; {m['cpu']}, {m['cores']} cores; PostgreSQL {m['postgresql']}. One run, while
other work shared the machine: compare the columns of a row, not runs.

| dashboard question | mart (ms) | dw directly (ms) | mart faster |
|---|--:|--:|--:|
{rows}

| | seconds |
|---|--:|
| first load ({lines - moved - next_days:,} lines), of which refresh | {first.seconds:.2f}, {result['first_refresh_s']:.2f} |
| the next days' drop ({next_days:,} lines, 1%), of which refresh | {daily.seconds:.2f}, {result['next_refresh_s']:.2f} |
| refresh / the rest of that run | {result['next_refresh_s'] / next_rest:.2f} |
| late lines of every month ({moved:,} lines, 1%), of which refresh | {late.seconds:.2f}, {result['late_refresh_s']:.2f} |
| refresh / the rest of that run | {result['late_refresh_s'] / late_rest:.2f} |
| the report (HTML, 5 charts) | {report_s:.2f} |

Where each refresh went (seconds):

| step | first load | the next days | late lines |
|---|--:|--:|--:|
{steps}
"""
    (args.out / f"mart_{args.lines}.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
