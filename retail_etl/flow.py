"""One run of `retail-etl load`: extract -> validate -> each pipeline's prepare (dedup) ->
(under the warehouse lock, in one transaction) each pipeline's write, in the project's
dependency order (SCD2 diff, as-of lookup, COPY, merge) -> ledger -> commit. The runner
receives the project and knows no pipeline: what a kind does lives in retail_etl/kinds."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import adbc_driver_manager
import polars as pl

from retail_etl import kinds, staging
from retail_etl.config import EventsSource, FilesSource, Settings, Source
from retail_etl.db import locks
from retail_etl.db.connect import connect, db_error, resolve_dsn
from retail_etl.errors import ConfigError, EtlError, InputError, Terminated, UsageError
from retail_etl.extract import oltp
from retail_etl.extract.sources import extract_all
from retail_etl.hooks import checkpoint
from retail_etl.kinds import dim_scd2, fact_by_partition
from retail_etl.kinds.handoff import Handoff
from retail_etl.load import partitions, refresh, rejects
from retail_etl.monitor import alerts
from retail_etl.monitor import log as joblog
from retail_etl.monitor.log import log as events
from retail_etl.monitor.watch import Watch
from retail_etl.run import (
    Run,
    mark_killed,
    open_run,
    record_end,
    record_failure,
    record_stages,
    record_success,
)
from retail_etl.schema import apply_schema
from retail_etl.spec import Project
from retail_etl.staging import group_up_to, parquet_rows
from retail_etl.transform import quality

log = logging.getLogger("retail_etl")

VALIDATE_ROWS = 250_000  # rows validated at once: bounds the memory of the file stages


def load_drop(project: Project, settings: Settings, source_dir: Path, *,
              profile: bool = False) -> Run:
    """Load one file drop (`retail-etl load --source-dir DIR`)."""
    return load(project, settings, {"files": FilesSource(kind="files", dir=source_dir)},
                profile=profile)


def load(project: Project, settings: Settings, sources: dict[str, Source], *,
         full: bool = False, profile: bool = False) -> Run:
    """One run over the given sources (in this order), in one transaction."""
    if not sources:
        raise UsageError("no sources to load", hint="pass --source-dir DIR, or declare "
                          "[sources.NAME] in retail_etl.toml (see README)")
    for cfg in sources.values():  # a mistyped directory is no run at all
        if isinstance(cfg, (FilesSource, EventsSource)) and not cfg.dir.is_dir():
            what = "is not a directory" if cfg.dir.exists() else "does not exist"
            raise InputError(f"{'events' if cfg.kind == 'events' else 'source'} directory "
                             f"{cfg.dir} {what}")
    dsn = resolve_dsn(settings)
    pl.Config.set_engine_affinity(settings.polars_engine)
    label = (f"files:{sources['files'].dir}" if list(sources) == ["files"]
             else "+".join(sources) + (" (full)" if full else ""))
    watch = Watch(settings, project, dsn, list(sources), label)
    run = conn = ledger = None
    try:
        ledger = connect(dsn, autocommit=True)
        conn = connect(dsn)
        with _sigterm_as_interrupt():
            apply_schema(conn, project)
            staging.sweep(settings.staging_dir)  # left by killed runs: their locks died with them
            run = open_run(ledger, label, settings.staging_dir, dsn=dsn, sources=list(sources),
                           profile_root=settings.data_dir / "profiles" if profile else None)
            watch.started(run)
            _transaction(conn, ledger, run, project, settings, sources, full)
            _analyze(ledger, dsn, run, project)
            if settings.refresh_mart == "after_load":
                _refresh(ledger, run)
            with ledger.cursor() as cur:
                record_stages(cur, run)
                record_end(cur, run)  # after the ANALYZE and the refresh, as the summary says
            run.profile.write(run)
        watch.succeeded(run, ledger)
        return run
    except BaseException as e:
        watch.failed(run, _message(e), ledger)
        raise
    finally:
        if run is not None:
            run.bars.close()
            run.scratch.close(keep=settings.keep_staging)
        for c in (conn, ledger):
            if c is not None:
                c.close()


def _transaction(conn, ledger, run: Run, project: Project, settings: Settings,
                 sources: dict[str, Source], full: bool) -> None:
    """The run's stages in one transaction: committed whole, or rolled back and recorded."""
    try:
        with run.profile.cursor(conn.cursor()) as cur:
            locks.hold_warehouse(cur, settings.lock_wait_seconds)
            cur.execute("SELECT set_config('random_page_cost', $1, true)",  # SET LOCAL, bound
                        parameters=(f"{float(settings.random_page_cost):g}",))
            mark_killed(cur, run.run_id)
            handoff = prepare(run, cur, project, settings, sources, full)
            write(cur, run, project, handoff, settings)
            alerts.check(cur, run, settings)  # a warning commits; fail_on_warning fails here
            alerts.enforce(run, settings)
            checkpoint("commit")
            record_success(cur, run)
        conn.commit()
    except BaseException as e:
        _rollback(conn)
        if run.built_aside:  # (only a run that holds the warehouse lock builds)
            _drop_builds(ledger)
        err = _named(e, run)
        try:
            record_failure(ledger, run, _message(err))
        except adbc_driver_manager.Error as lost:  # the next run marks it killed
            log.info("run %s: could not record the failure in the ledger: %s", run.run_id, lost)
        if err is e:
            raise
        raise err from None


def _named(e: BaseException, run: Run) -> BaseException:
    """A failure of the run, named `run N, stage S: ...`: a database error becomes one
    EtlError line (lost connection or not: db/faults.py decides), a bug keeps its type
    (and traceback under --debug) with the name as a note. The user's own mistakes (a bad
    file, a bad setting) already name what to fix and stay as they are."""
    where = f"run {run.run_id}" + (f", stage {run.failed_stage}" if run.failed_stage else "")
    if isinstance(e, (KeyboardInterrupt, InputError, ConfigError, UsageError)):
        return e
    if isinstance(e, adbc_driver_manager.Error):
        err = db_error(e, where, dsn=run.dsn)
    elif isinstance(e, EtlError):
        e.message, err = f"{where}: {e.message}", e
    else:
        e.add_note(where)
        e.run_stage = where
        return e
    err.step = run.failed_stage
    return err


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a scheduler stopping the job) unwinds the run like Ctrl-C: rollback, the run
    marked failed, staging removed. Only the main thread may set a signal handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---- file stages: no database -----------------------------------------------------------


def prepare(run: Run, cur, project: Project, settings: Settings, sources: dict[str, Source],
            full: bool = False) -> Handoff:
    """Extract, validate, then each pipeline's prepare (dedup). Validation goes file by
    file and writes the valid rows back to staging (a fact's rows split by partition
    month), so memory holds one file at a time."""
    with run.stage("extract") as st:
        bytes_read = SimpleNamespace(  # files report their bytes: rows are unknown yet
            expect=lambda n: run.bars.expect("extract", n, unit="bytes"), advance=st["advance"])
        apis: list = []
        extracted, pulls, origins = extract_all(run.staging / "extract", cur, project,
                                                 settings, sources, full, bytes_read,
                                                 inputs=run.inputs, apis=apis)
        st["rows"] = sum(x.rows for x in extracted.values())
    run.bars.expect("validate", st["rows"])
    h = Handoff(project.dates, origins, pulls, apis)
    split_of = {f.entity.name: f for f in project.facts}
    window = quality.Window.around(settings.plausible_from, run.started_at,
                                   settings.plausible_days_ahead)
    valid: dict[str, list[Path]] = {}
    with run.stage("validate") as st:
        st["rows"] = 0
        for entity in project.entities:
            ex = extracted[entity.name]
            counts = run.entity(entity.name)
            counts.read = ex.rows
            for bad in ex.malformed:  # rejected before any row was made of them
                counts.rejected += bad.height
                h.rejects.append(bad.select("file", "line", "rules", "row",
                                            entity=pl.lit(entity.name)))
            out = run.staging / "valid" / entity.name
            for batch in _batches(ex.staged, VALIDATE_ROWS):
                path, raw = batch[0], pl.scan_parquet(batch)
                plan = run.profile.plan(f"validate_{entity.name}", quality.validate(raw, entity, window))
                good, bad = quality.split(plan.collect(), raw, entity, window)
                counts.rejected += bad.height
                st["rows"] += good.height
                st["advance"](good.height + bad.height)
                h.rejects.append(bad.with_columns(entity=pl.lit(entity.name)))
                fact = split_of.get(entity.name)
                parts = fact_by_partition.split(fact, good) if fact else {None: good}
                for m, g in parts.items():
                    target = out / (f"m={m}" if m else "") / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    g.write_parquet(target, compression="zstd")
                    valid.setdefault(entity.name, []).append(target)
    with run.stage("dedup") as st:
        for p in project.pipelines:
            entity = getattr(p, "entity", None)
            kinds.of(p).prepare(p, valid.get(entity.name) if entity else None, run, settings, h)
        st["rows"] = (sum(d.height for d in h.incoming.values())
                      + sum(f.height for f in h.lines.values()))
    return h


def _batches(paths: list[Path], max_rows: int) -> list[list[Path]]:
    """Consecutive staged files grouped up to max_rows rows (a bigger file alone): a drop of
    many small files is validated in a few passes, not one per file (each costs ~20 ms)."""
    return group_up_to([(p, parquet_rows(p)) for p in paths], max_rows)


# ---- database stages: one transaction, under the warehouse lock --------------------------


def write(cur, run: Run, project: Project, h: Handoff, settings: Settings) -> None:
    """Each pipeline's write in dependency order (the test hook `merge:<pipeline>` after
    each), then what spans pipelines: inferred members no fact uses any more, the sources'
    bookkeeping, the rejects."""
    for p in project.pipelines:
        joblog.bind(pipeline=p.name)  # its stages' log lines name it
        try:
            kinds.of(p).write(cur, run, p, h, settings)
            checkpoint(f"merge:{p.name}")
        except BaseException:
            run.failed_stage = run.failed_stage or p.name  # between its stages: the pipeline
            raise
        finally:
            joblog.unbind("pipeline")
    with run.stage("orphans"):
        for dim in project.dimensions:
            dim_scd2.drop_orphans(cur, run, dim, project.facts, h)
    with run.stage("watermarks"):
        oltp.remember(cur, run, h.pulls, h.gone)
        for api in h.apis:
            oltp.save_marks(cur, api.source, api.marks, run.run_id)
    if h.rejects:
        found = pl.concat(h.rejects)
        if found.height:
            _count_rules(run, found)
            with run.stage("rejects", found.height):
                rejects.store(cur, project, run.run_id, found)


def _count_rules(run: Run, found: pl.DataFrame) -> None:
    """Rejects by entity and rule (a row breaking two rules counts for each), for the job
    log and the metrics."""
    by = found.select("entity", "rules").explode("rules").group_by("entity", "rules").len()
    for entity, rule, n in by.sort("entity", "rules").iter_rows():
        run.rejected_by[(entity, rule or "unknown")] = n
        events.info("rejects", entity=entity, rule=rule, rows=n)


def _drop_builds(ledger) -> None:
    """Months a failed run built in parallel sessions (committed there, never attached)."""
    try:
        with ledger.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {partitions.BUILD_SCHEMA} CASCADE")
    except Exception as e:  # the next run that builds drops them too
        log.info("could not drop the failed run's builds (the next run will): %s", e)


def _rollback(conn) -> None:
    try:
        conn.rollback()
    except Exception as e:  # the connection may be gone; the server rolls back on its own
        log.info("rollback failed (the server rolls back a lost session): %s", e)


def _analyze(ledger, dsn: str, run: Run, project: Project, streams: int = 2) -> None:
    """Fresh statistics for what the run wrote, after the commit: the ledger session and
    `streams - 1` more sessions share the tables (ANALYZE is CPU-bound in the server). A
    dimension the run did not write keeps its statistics (a run of events only, say)."""
    wrote = {c.entity for c in run.counts.values() if c.loaded or c.inferred or c.deleted}
    tables = [d.table for d in project.dimensions if d.entity.name in wrote] + run.analyze

    def analyze(conn, share: list[str]) -> None:
        with conn.cursor() as cur:
            for table in share:
                cur.execute(f"ANALYZE {table}")

    with run.stage("analyze", len(tables)):
        extra = [connect(dsn, autocommit=True) for _ in range(min(streams, len(tables)) - 1)]
        try:
            conns = [ledger, *extra]
            with ThreadPoolExecutor(len(conns)) as pool:
                list(pool.map(analyze, conns, [tables[i::len(conns)] for i in range(len(conns))]))
        finally:
            for c in extra:
                c.close()


def _refresh(ledger, run: Run) -> None:
    """The mart, after the commit, when days changed (this run's, or earlier ones a failed
    refresh left) or it was never filled (a new warehouse, or a new mart schema)."""
    with ledger.cursor() as cur:
        if not refresh.pending(cur):
            return
    with run.stage("refresh") as st:
        try:
            run.refreshed = refresh.refresh(ledger, run.run_id, st["advance"])
        except Exception as e:  # the load is committed: a refresh never makes it a failure
            log.warning("run %s: the mart's refresh failed (the next run retries): %s",
                        run.run_id, e)
            run.refreshed = [refresh.Refreshed("mart", 0.0, str(e).splitlines()[0])]
            refresh.owe(ledger, run.run_id, run.refreshed[0].error)
        st["rows"] = len(run.refreshed)


def _message(e: BaseException) -> str:
    if isinstance(e, EtlError):
        return e.message
    if isinstance(e, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    where = getattr(e, "run_stage", None)
    return f"{where + ': ' if where else ''}{type(e).__name__}: {first}"
