"""The run: the unit of work and of atomicity. It has an id, a staging directory, a row in
etl.runs (written through its own autocommit connection, so a failed run is recorded even
though its work is rolled back) and a timer that records rows, seconds and peak memory of
every stage."""

from __future__ import annotations

import json
import logging
import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from retail_etl import console
from retail_etl.load.copy import ingest
from retail_etl.monitor.log import log as events
from retail_etl.profile import Profile
from retail_etl.staging import Staging

log = logging.getLogger("retail_etl")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Stage:
    name: str
    seconds: float
    rows: int | None
    peak_rss_mb: float


@dataclass
class EntityCounts:
    entity: str
    read: int = 0
    loaded: int = 0
    merged: int = 0
    rejected: int = 0
    duplicate: int = 0
    inferred: int = 0
    deleted: int = 0  # fact lines removed, keys closed: not rows read
    deleted_by: dict[str, int] = field(default_factory=dict)  # the same, by reason
    unmatched: int = 0  # lines written whose link names no row (FactByPartition.links)

    def count_deleted(self, reason: str, n: int) -> None:
        """reason: order_deleted, line_deleted, order_cancelled (fact lines), key_gone."""
        if n:
            self.deleted += n
            self.deleted_by[reason] = self.deleted_by.get(reason, 0) + n

    def balanced(self) -> bool:
        return self.read == self.loaded + self.merged + self.rejected + self.duplicate


@dataclass
class Run:
    run_id: int
    staging: Path
    stages: list[Stage] = field(default_factory=list)
    counts: dict[str, EntityCounts] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    analyze: list[str] = field(default_factory=list)  # tables whose statistics went stale
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    profile: Profile = field(default_factory=lambda: Profile(None))
    dsn: str = ""  # the warehouse, for sessions beside the run's (partition builds)
    built_aside: bool = False  # months were built in etl_build (dropped if the run fails)
    scratch: Staging | None = None  # the private staging directory (removed at the end)
    ended: float | None = None  # seconds from started_at to ended_at, as the ledger holds them
    failed_stage: str | None = None  # the innermost stage an exception left, for its message

    bars: console.Bars | None = None  # progress on a terminal (see console.Bars)
    refreshed: list = field(default_factory=list)  # load/refresh.Refreshed, after the commit
    sources: list[str] = field(default_factory=list)  # the configured sources it read
    inputs: list[dict] = field(default_factory=list)  # what it read, for lineage: files, tables
    rejected_by: dict[tuple[str, str], int] = field(default_factory=dict)  # (entity, rule)
    warnings: list[str] = field(default_factory=list)  # data-quality alerts (monitor/alerts.py)

    @contextmanager
    def stage(self, name: str, rows: int | None = None):
        """Time a stage; the block may set `box['rows']`, and call `box['advance'](n)` as
        it goes (else the progress advances by `box['done']` or the rows at the end). A
        stage run again (once per partition, say) adds to its first entry."""
        if self.bars is None:
            self.bars = console.Bars(f"run {self.run_id}")
        bars = self.bars
        task = bars.enter(name)
        moved = {"n": 0}

        def advance(n: int) -> None:
            moved["n"] += n
            bars.advance(task, n)

        box: dict = {"rows": rows, "advance": advance}
        events.info("stage_start", stage=name, rows=rows)
        t0 = time.perf_counter()
        try:
            yield box
        except BaseException as e:
            self.failed_stage = self.failed_stage or name
            events.error("stage_failed", stage=name, seconds=round(time.perf_counter() - t0, 3),
                         error=type(e).__name__)
            raise
        finally:
            if not moved["n"]:
                bars.advance(task, box.get("done", box["rows"]) or 0)
            bars.leave(name)
        seconds = time.perf_counter() - t0
        events.info("stage_end", stage=name, rows=box["rows"], seconds=round(seconds, 3),
                    peak_rss_mb=round(peak_rss_mb(), 1))
        same = next((s for s in self.stages if s.name == name), None)
        if same is None:
            self.stages.append(Stage(name, seconds, box["rows"], peak_rss_mb()))
        else:
            same.seconds += seconds
            same.rows = None if same.rows is None and box["rows"] is None else (
                (same.rows or 0) + (box["rows"] or 0))
            same.peak_rss_mb = peak_rss_mb()

    def entity(self, name: str) -> EntityCounts:
        return self.counts.setdefault(name, EntityCounts(name))

    @property
    def seconds(self) -> float:
        """The ledger's duration once the run has ended (so the summary and `runs` agree)."""
        return self.ended if self.ended is not None else time.perf_counter() - self.started

    def summary(self) -> dict:
        return {
            "run_id": self.run_id,
            "seconds": round(self.seconds, 3),
            "entities": {k: vars(v) for k, v in self.counts.items()},
            "partitions": self.partitions,
            "stages": [vars(s) for s in self.stages],
            "refreshed": [vars(r) for r in self.refreshed],
            "sources": self.sources,
            "warnings": self.warnings,
        }

    @property
    def status(self) -> str:
        return "warning" if self.warnings else "ok"


def open_run(ledger, source: str, staging_root: Path, *, dsn: str,
             profile_root: Path | None = None, sources: list[str] = ()) -> Run:
    """Insert the run's row (status running) and make its private staging directory (see
    staging.py). Runs left `running` by a killed process are marked `killed` by the next
    run that holds the lock. profile_root: write the run's profile under it (--profile)."""
    with ledger.cursor() as cur:
        cur.execute(
            "INSERT INTO etl.runs (source, sources, ledger_pid) VALUES ($1, ARRAY(SELECT "
            "jsonb_array_elements_text($2::jsonb)), pg_backend_pid()) RETURNING run_id",
            parameters=(source, json.dumps(list(sources))))
        run_id = cur.fetchone()[0]
        scratch = Staging(staging_root, run_id)
        cur.execute("UPDATE etl.runs SET staging_dir = $1 WHERE run_id = $2",
                    parameters=(str(scratch.path), run_id))
    profile = Profile(profile_root / f"run_{run_id:06d}" if profile_root else None)
    return Run(run_id, scratch.path, scratch=scratch, dsn=dsn, profile=profile,
               bars=console.Bars(f"run {run_id}"), sources=list(sources))


def record_success(cur, run: Run) -> None:
    """Inside the run's transaction: the counts, the stages and status ok commit with the data."""
    for c in run.counts.values():
        cur.execute(
            "INSERT INTO etl.run_entities (run_id, entity, rows_read, rows_loaded, "
            "rows_merged, rows_rejected, rows_duplicate, rows_inferred, rows_deleted, "
            "deleted_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
            parameters=(run.run_id, c.entity, c.read, c.loaded, c.merged, c.rejected,
                        c.duplicate, c.inferred, c.deleted, json.dumps(c.deleted_by)),
        )
    record_stages(cur, run)
    beat(cur)
    cur.execute(
        "UPDATE etl.runs SET status = $3, ended_at = clock_timestamp(), summary = $1::jsonb, "
        "warnings = $4::jsonb WHERE run_id = $2",
        parameters=(json.dumps(run.summary()), run.run_id, run.status,
                    json.dumps(run.warnings) if run.warnings else None),
    )


def beat(cur) -> None:
    """The heartbeat: a change commits now (ops/drill.py reads it from a restored copy)."""
    cur.execute("INSERT INTO etl.heartbeat (id, at) VALUES (1, clock_timestamp()) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at")


def record_end(cur, run: Run) -> None:
    """The run's end is after its statistics are fresh: the summary and `runs` read it."""
    cur.execute("UPDATE etl.runs SET ended_at = clock_timestamp() WHERE run_id = $1 "
                "RETURNING extract(epoch FROM ended_at - started_at)::float8",
                parameters=(run.run_id,))
    run.ended = cur.fetchone()[0]


def record_stages(cur, run: Run) -> None:
    if not run.stages:
        return
    df = pl.DataFrame({
        "run_id": [run.run_id] * len(run.stages),
        "seq": list(range(1, len(run.stages) + 1)),
        "stage": [s.name for s in run.stages],
        "rows": [s.rows for s in run.stages],
        "seconds": [s.seconds for s in run.stages],
        "peak_rss_mb": [s.peak_rss_mb for s in run.stages],
    }, schema_overrides={"rows": pl.Int64, "seq": pl.Int32})
    cur.execute("DELETE FROM etl.run_stages WHERE run_id = $1", parameters=(run.run_id,))
    ingest(cur, df, "run_stages", schema="etl")


def record_failure(ledger, run: Run, message: str) -> None:
    with ledger.cursor() as cur:
        cur.execute(
            "UPDATE etl.runs SET status = 'failed', ended_at = clock_timestamp(), error = $1 "
            "WHERE run_id = $2", parameters=(message, run.run_id))
        try:
            record_stages(cur, run)
        except Exception as e:  # the ledger of a failed run is best effort
            log.warning("run %s: could not record the stages of the failed run: %s",
                        run.run_id, e)


def mark_killed(cur, current_run: int) -> None:
    """Runs still `running` whose ledger connection is gone were killed."""
    cur.execute(
        "UPDATE etl.runs r SET status = 'killed', error = 'the process ended before the run "
        "committed' WHERE status = 'running' AND run_id <> $1 AND NOT EXISTS "
        "(SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.ledger_pid)", parameters=(current_run,))
