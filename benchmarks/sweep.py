"""Tuning sweeps: one knob at a time, the others at their defaults, each value a fresh load
of the same cached drop into a fresh database, in a worker process of its own (so its peak
memory is its own). Writes benchmarks/results/sweeps.md.

    python -m benchmarks.sweep [--lines 1m]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmarks.run import HERE, SEED, ensure_drop, log, measure, parse_volume

# knob (environment variable) -> values; the first listed default is the shipped one
KNOBS = {
    "RETAIL_ETL_COPY_STREAMS": ["2", "0", "1", "3"],
    "RETAIL_ETL_FACT_CHUNK_ROWS": ["250000", "1000000", "4000000", "50000"],
    "RETAIL_ETL_DUCKDB_THREADS": ["2", "1"],
    "RETAIL_ETL_DUCKDB_MEMORY_LIMIT": ["1GB", "4GB"],
    "RETAIL_ETL_POLARS_ENGINE": ["auto", "streaming", "in-memory"],
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__)
    p.add_argument("--lines", default="1m")
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args(argv)
    from retail_etl.db.cluster import Cluster

    lines = parse_volume(a.lines)
    cache = (HERE / "cache").absolute()
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    cluster = Cluster(cache / "pg")
    was_running = cluster.is_running()
    cluster.up()
    drop = ensure_drop(cache, lines, SEED)
    rows = []
    try:
        for knob, values in KNOBS.items():
            for value in values:
                db = "sweep"
                cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                dsn = cluster.create_database(db)
                cluster._psql("CHECKPOINT")
                os.environ[knob] = value
                try:
                    log(f"{knob}={value}")
                    r = measure("load", dsn, drop, cache / "work")
                finally:
                    del os.environ[knob]
                stages = {s["name"]: s["seconds"] for s in r["stages"]}
                rows.append((knob, value, r["seconds"], r["peak_rss_mb"],
                             *(stages.get(s, 0.0) for s in ("validate", "dedup", "lookup", "copy", "index", "analyze"))))
                log(f"  {r['seconds']:.2f} s, {r['peak_rss_mb']:.0f} MiB")
        cluster._psql('DROP DATABASE IF EXISTS "sweep" WITH (FORCE)')
    finally:
        if not was_running:
            cluster.down()
    a.out.mkdir(parents=True, exist_ok=True)
    md = [f"# Tuning sweeps ({lines:,} lines, seed {SEED}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
          "", "One knob at a time; the first value of each knob is the shipped default. "
          "One run per value on a shared 2-core machine: differences under ~10% are noise.", "",
          "| knob | value | load seconds | peak RSS (MiB) | validate s | dedup s | lookup s | copy s "
          "| index s | analyze s |",
          "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    md += [f"| `{k}` | {v} | {s:.2f} | {m:.0f} | " + " | ".join(f"{x:.2f}" for x in st) + " |"
           for k, v, s, m, *st in rows]
    (a.out / "sweeps.md").write_text("\n".join(md) + "\n")
    log(f"wrote {a.out / 'sweeps.md'}")


if __name__ == "__main__":
    main()
