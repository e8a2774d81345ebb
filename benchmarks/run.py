"""The benchmark suite: `python -m benchmarks.run [--volumes 100k,1m] [--smoke]`.

For each volume: generate (or reuse) a drop, load it into a fresh warehouse database, then
measure the references (benchmarks/references.py) on the same machine and database. Every
measurement runs in its own worker process (`--one KIND`), so its peak RSS is its own."""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks import report
from benchmarks.references import REFERENCES

HERE = Path(__file__).resolve().parent
SMOKE_LINES = 5_000
SEED = 42


def parse_volume(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- workers: one measurement each, JSON on the last line of stdout -----------------------


def measure_load(dsn: str, drop: Path, work: Path) -> dict:
    from pipelines import PROJECT
    from retail_etl.config import Settings
    from retail_etl.db.connect import connect
    from retail_etl.flow import load_drop
    from retail_etl.schema import apply_schema

    conn = connect(dsn)
    apply_schema(conn, PROJECT)  # the schema is not part of the load being measured
    conn.close()
    t0 = time.perf_counter()
    run = load_drop(PROJECT, Settings(dsn=dsn, data_dir=work), drop)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": run.counts["sales"].loaded + run.counts["sales"].merged,
        "lines_read": run.counts["sales"].read,
        "stages": [vars(s) for s in run.stages],
        "counts": {k: vars(v) for k, v in run.counts.items()},
    }


def worker(kind: str, dsn: str, drop: Path, work: Path) -> None:
    result = measure_load(dsn, drop, work) if kind == "load" else REFERENCES[kind](dsn, drop)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(kind: str, dsn: str, drop: Path, work: Path) -> dict:
    argv = [sys.executable, "-m", "benchmarks.run", "--one", kind, "--dsn", dsn,
            "--drop", str(drop), "--work", str(work)]
    r = subprocess.run(argv, check=False, capture_output=True, text=True, cwd=HERE.parent)
    if r.returncode != 0:
        raise SystemExit(f"benchmark worker {kind!r} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- orchestration -----------------------------------------------------------------------


def ensure_drop(cache: Path, lines: int, seed: int) -> Path:
    """The cached drop directory for this volume, generated once, in a process of its own:
    Linux carries a process's peak RSS over exec, so a parent that had generated 10M lines
    (5.8 GB) would lend that peak to every measurement it starts afterwards."""
    target = cache / "drops" / f"{lines}_{seed}"
    if not (target / "drop_001").is_dir():
        tmp = target.with_name(target.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "retail_etl", "generate", "--out", str(tmp),
                        "--lines", str(lines), "--seed", str(seed), "--drops", "1"],
                       check=True, capture_output=True)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target / "drop_001"


def bench_volume(cluster, cache: Path, lines: int, seed: int, with_pandas: bool) -> dict:
    log(f"{lines:,} lines: drop")
    t0 = time.perf_counter()
    drop = ensure_drop(cache, lines, seed)
    generate_seconds = time.perf_counter() - t0
    db = f"bench_{lines}"
    cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    dsn = cluster.create_database(db)
    work = cache / "work"
    kinds = ["load", "raw_copy", "bare"]
    if with_pandas:
        kinds += ["pandas_executemany", "pandas_copy"]
    results = {"lines": lines, "seed": seed, "drop": str(drop),
               "generate_seconds": generate_seconds}
    try:
        for kind in kinds:
            cluster._psql("CHECKPOINT")  # no measurement pays for the previous one's writes
            log(f"{lines:,} lines: {kind}")
            results[kind] = measure(kind, dsn, drop, work)
            log(f"  {results[kind]['seconds']:.2f} s, {results[kind]['rows']:,} rows")
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)
    return results


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def bench_cluster(cache: Path):
    """The benchmark cluster in the cache (started if needed, stopped after if we started
    it) and the machine's description."""
    from retail_etl.db.cluster import Cluster

    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)  # the server runs as `postgres` when we are root
    cluster = Cluster(cache / "pg")
    was_running = cluster.is_running()
    cluster.up()
    try:
        yield cluster, report.machine(cluster)
    finally:
        if not was_running:
            cluster.down()


@contextmanager
def own_cluster(name: str, keep: bool = False):
    """(root, cluster): a fresh PostgreSQL cluster of a benchmark's own under
    benchmarks/cache/<name>, stopped afterwards and removed unless keep."""
    from retail_etl.db.cluster import Cluster

    root = HERE / "cache" / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    root.chmod(0o755)  # the server runs as `postgres` when we are root
    cluster = Cluster(root / "pg")
    cluster.up()
    try:
        yield root, cluster
    finally:
        try:
            cluster.down()
        finally:
            if not keep:
                shutil.rmtree(root, ignore_errors=True)


def vm_hwm_mib() -> float:
    """This process's own peak RSS: VmHWM belongs to the address space exec made, whereas
    getrusage's ru_maxrss carries the parent's peak over the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--volumes", default="100k,1m", help="sales lines per drop, e.g. 100k,1m")
    p.add_argument("--baseline-max", default="1m",
                   help="run the (slow) pandas baselines only up to this volume")
    p.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    p.add_argument("--cache", type=Path, default=HERE / "cache",
                   help="drops and the PostgreSQL cluster live here")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--smoke", action="store_true",
                   help=f"{SMOKE_LINES:,} lines, every reference, results in a temp dir")
    # internal: one measurement in a worker process
    p.add_argument("--one", choices=["load", *REFERENCES], help=argparse.SUPPRESS)
    p.add_argument("--dsn", help=argparse.SUPPRESS)
    p.add_argument("--drop", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.one:
        worker(a.one, a.dsn, a.drop, a.work)
        return


    if a.smoke:
        volumes, baseline_max = [SMOKE_LINES], SMOKE_LINES
        out = a.out or Path(tempfile.mkdtemp(prefix="retail-etl-bench-"))
    else:
        volumes = [parse_volume(v) for v in a.volumes.split(",") if v.strip()]
        baseline_max = parse_volume(a.baseline_max)
        out = a.out or HERE / "results"
    cache = a.cache.absolute()
    started = time.perf_counter()
    with bench_cluster(cache) as (cluster, machine):
        runs = [bench_volume(cluster, cache, n, a.seed, n <= baseline_max) for n in volumes]
    doc = {"machine": machine, "command": "python -m benchmarks.run "
           + " ".join(sys.argv[1:] if argv is None else argv),
           "wall_seconds": time.perf_counter() - started,
           "volumes": [report.summarise(r) for r in runs]}
    paths = report.write(out, doc)
    log("wrote " + ", ".join(str(x) for x in paths))


if __name__ == "__main__":
    main()
