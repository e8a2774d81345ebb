"""Profiling a run (`retail-etl load --profile`): everything goes to data/profiles/<run>/:
stages.json (rows, seconds, peak memory per stage), partition_builds.json (the months
built by parallel sessions), the optimised Polars plans, DuckDB's
profile of the as-of lookup, and PostgreSQL's own timing of every statement and COPY of
the run's transaction. `retail-etl runs --show RUN` draws the waterfall."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl

from retail_etl.errors import EtlError


class Profile:
    def __init__(self, directory: Path | None):
        self.dir = directory
        self.statements: list[dict] = []
        self.builds: list[dict] = []  # months built by parallel sessions (partitions.Builders)
        if directory:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def on(self) -> bool:
        return self.dir is not None

    def plan(self, name: str, lf: pl.LazyFrame) -> pl.LazyFrame:
        if self.on:
            (self.dir / f"plan_{name}.txt").write_text(lf.explain(optimized=True))
        return lf

    def path(self, name: str) -> Path | None:
        return self.dir / name if self.on else None

    def cursor(self, cur):
        return _TimedCursor(cur, self.statements) if self.on else cur

    def write(self, run) -> None:
        if not self.on:
            return
        (self.dir / "stages.json").write_text(json.dumps(
            [vars(s) for s in run.stages], indent=2))
        (self.dir / "postgres_statements.json").write_text(json.dumps(
            self.statements, indent=2))
        (self.dir / "partition_builds.json").write_text(json.dumps(self.builds, indent=2))


class _TimedCursor:
    """A cursor that records how long PostgreSQL took for each statement and COPY."""

    def __init__(self, cur, log: list[dict]):
        self._cur, self._log = cur, log

    def execute(self, sql, parameters=None):
        t0 = time.perf_counter()
        try:
            return self._cur.execute(sql, parameters=parameters)
        finally:
            self._log.append({"sql": " ".join(str(sql).split())[:300],
                              "seconds": round(time.perf_counter() - t0, 6),
                              "rows": self._cur.rowcount})

    def adbc_ingest(self, table, data, **kw):
        t0 = time.perf_counter()
        n = self._cur.adbc_ingest(table, data, **kw)
        self._log.append({"sql": f"COPY {kw.get('db_schema_name') or ''}.{table}".replace(" .", " "),
                          "seconds": round(time.perf_counter() - t0, 6), "rows": n})
        return n

    def __getattr__(self, name):
        return getattr(self._cur, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def waterfall(stages: pl.DataFrame, title: str, out: Path) -> Path:
    """A PNG of where the time went: one bar per stage, starting where the last ended."""
    try:
        import matplotlib
    except ImportError:
        raise EtlError("--chart needs matplotlib, which is not installed",
                       hint="pip install 'retail-etl[chart]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = stages["stage"].to_list()
    secs = [float(s or 0) for s in stages["seconds"].to_list()]
    starts = [sum(secs[:i]) for i in range(len(secs))]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.2))
    ax.barh(range(len(names)), secs, left=starts, color="#3b7dd8")
    for i, (s0, s) in enumerate(zip(starts, secs, strict=True)):
        ax.text(s0 + s, i, f" {s:.2f}s", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
