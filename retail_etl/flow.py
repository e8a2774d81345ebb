"""One run of `retail-etl load`: extract -> validate -> dedup -> (under the warehouse lock,
in one transaction) SCD2 diff -> as-of lookup -> COPY -> merge -> ledger -> commit."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import adbc_driver_manager
import polars as pl

import pipelines
from retail_etl import console, staging
from retail_etl.config import SQL_DIR, FilesSource, PostgresSource, Settings, Source
from retail_etl.db.cluster import Cluster
from retail_etl.db.connect import apply_schema, connect, db_error, resolve_dsn
from retail_etl.errors import (
    ConfigError,
    EtlError,
    InputError,
    LockTimeout,
    Terminated,
    UsageError,
)
from retail_etl.extract.files import LINE_BITS, Extracted, extract
from retail_etl.extract.oltp import OltpExtract, Reader, extract_oltp, read_marks
from retail_etl.forget import erased_rows_sql
from retail_etl.load import gone_lines, partitions
from retail_etl.load.copy import copy_temp
from retail_etl.load.merge import (
    delete_documents,
    drop_orphan_inferred,
    merge_dimension,
    merge_facts,
    merge_observed,
    repoint_facts,
    stored_lines,
)
from retail_etl.load.partitions import ensure_dates
from retail_etl.profile import Profile
from retail_etl.run import (
    Run,
    mark_killed,
    open_run,
    record_end,
    record_failure,
    record_stages,
    record_success,
)
from retail_etl.spec import DimensionSCD2, FactByPartition
from retail_etl.transform import dedup, quality, scd2
from retail_etl.transform.lookup import AsOfLookup

LOCK_KEY = 727000002  # the warehouse lock: one run at a time
VALIDATE_ROWS = 250_000  # rows validated at once: bounds the memory of the file stages


class InjectedFailure(Exception):
    """Raised by a test hook to prove a failed run leaves the warehouse as it was."""


def checkpoint(name: str) -> None:
    """Test hooks: RETAIL_ETL_FAIL_AT=<name> raises here, RETAIL_ETL_PAUSE_AT=<name> touches
    RETAIL_ETL_PAUSE_FILE and sleeps until that file is removed (at most 600 s), so a test
    can kill the process mid-run, or break something and let it go on."""
    if os.environ.get("RETAIL_ETL_FAIL_AT") == name:
        raise InjectedFailure(f"failure injected at {name}")
    if os.environ.get("RETAIL_ETL_PAUSE_AT") == name:
        pause = Path(os.environ["RETAIL_ETL_PAUSE_FILE"])
        pause.touch()
        deadline = time.monotonic() + 600
        while pause.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@dataclass
class Prepared:
    """What the file stages produce for the database stages."""

    dims: dict[str, pl.DataFrame]  # dimension name -> incoming versions
    facts: dict[str, FactInput]  # fact name -> deduplicated lines (on disk)
    rejects: pl.DataFrame
    pulls: list[OltpExtract]  # what the database sources said beyond rows: marks, deletes


def load_drop(settings: Settings, source_dir: Path, *, profile: bool = False) -> Run:
    """Load one file drop (`retail-etl load --source-dir DIR`)."""
    return load(settings, {"files": FilesSource(kind="files", dir=source_dir)}, profile=profile)


def source_dsn(settings: Settings, name: str, cfg: PostgresSource) -> str:
    if cfg.dsn:
        if not cfg.dsn.startswith(("postgres://", "postgresql://")):
            raise ConfigError(f"sources.{name}.dsn is not a postgresql:// URL")
        return cfg.dsn
    return Cluster(settings.pg_dir).dsn(cfg.database)


def load(settings: Settings, sources: dict[str, Source], *, full: bool = False,
         profile: bool = False) -> Run:
    """One run over the given sources (in this order), in one transaction."""
    if not sources:
        raise UsageError("no sources to load", hint="pass --source-dir DIR, or declare "
                          "[sources.NAME] in retail_etl.toml (see README)")
    for cfg in sources.values():  # a mistyped directory is no run at all
        if isinstance(cfg, FilesSource) and not cfg.dir.is_dir():
            what = "is not a directory" if cfg.dir.exists() else "does not exist"
            raise InputError(f"source directory {cfg.dir} {what}")
    dsn = resolve_dsn(settings)
    pl.Config.set_engine_affinity(settings.polars_engine)
    ledger = connect(dsn, autocommit=True)
    conn = connect(dsn)
    label = (f"files:{sources['files'].dir}" if list(sources) == ["files"]
             else "+".join(sources) + (" (full)" if full else ""))
    run = None
    try:
        with _sigterm_as_interrupt():
            apply_schema(conn, SQL_DIR)
            staging.sweep(settings.staging_dir)  # left by killed runs: their locks died with them
            run = open_run(ledger, label, settings.staging_dir)
            run.dsn = dsn
            run.profile = Profile(settings.data_dir / "profiles" / f"run_{run.run_id:06d}"
                                  if profile else None)
            _transaction(conn, ledger, run, settings, sources, full)
            _analyze(ledger, dsn, run)
            run.profile.write(run)
        return run
    finally:
        if run is not None:
            run.scratch.close(keep=settings.keep_staging)
        conn.close()
        ledger.close()


def _transaction(conn, ledger, run: Run, settings: Settings, sources: dict[str, Source],
                 full: bool) -> None:
    """The run's stages in one transaction: committed whole, or rolled back and recorded."""
    try:
        with run.profile.cursor(conn.cursor()) as cur:
            _lock(cur, settings.lock_wait_seconds)
            cur.execute(f"SET LOCAL random_page_cost = {settings.random_page_cost:g}")
            mark_killed(cur, run.run_id)
            prepared = prepare(run, cur, settings, sources, full)
            write(cur, run, prepared, settings)
            checkpoint("commit")
            record_success(cur, run)
        conn.commit()
    except BaseException as e:
        _rollback(conn)
        if run.built_aside:  # (only a run that holds the warehouse lock builds)
            _drop_builds(ledger)
        try:
            record_failure(ledger, run, _message(e))
        except adbc_driver_manager.Error:  # the ledger is lost too: the next run marks it killed
            pass
        if isinstance(e, adbc_driver_manager.Error):
            raise db_error(e, f"run {run.run_id} failed", dsn=run.dsn) from None
        raise


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


def extract_all(run: Run, cur, settings: Settings, sources: dict[str, Source],
                full: bool) -> tuple[dict[str, Extracted], list[OltpExtract], list[tuple[int, str]]]:
    """Every source staged as the contract's entities; files numbered in source order.
    Also returns [(first file number, source name)]: where each source's files begin."""
    entities = pipelines.ENTITIES
    extracted = {e.name: Extracted(e) for e in entities}
    pulls, file_no, origins = [], 1, []
    for name, cfg in sources.items():
        origins.append((file_no, name))
        stage = run.staging / "extract"
        if isinstance(cfg, FilesSource):
            got = extract(cfg.dir, entities, stage, file_no, allow_empty=len(sources) > 1,
                          encoding=cfg.encoding)
        else:
            reader = Reader(name, cfg, source_dsn(settings, name, cfg))
            pull = extract_oltp(reader, {e.name: e for e in entities}, read_marks(cur, name),
                                stage, file_no, full=full)
            pulls.append(pull)
            got = pull.extracted
        for entity, ex in got.items():
            extracted[entity].staged += ex.staged
            extracted[entity].files += ex.files
            extracted[entity].rows += ex.rows
            extracted[entity].malformed += ex.malformed
        file_no += sum(len(ex.staged) for ex in got.values())
    return extracted, pulls, origins


def prepare(run: Run, cur, settings: Settings, sources: dict[str, Source],
            full: bool = False) -> Prepared:
    """Extract, validate and deduplicate. Validation goes file by file and writes the valid
    rows back to staging (fact rows split by month), so memory holds one file at a time;
    dimensions are small and come back whole, facts stay on disk until the load."""
    entities = pipelines.ENTITIES
    fact_of = {f.entity.name: f for f in pipelines.FACTS}
    with run.stage("extract") as st:
        extracted, pulls, origins = extract_all(run, cur, settings, sources, full)
        st["rows"] = sum(x.rows for x in extracted.values())
    valid: dict[str, list[Path]] = {}
    rejects = []
    window = quality.Window.around(settings.plausible_from, run.started_at,
                                   settings.plausible_days_ahead)
    with run.stage("validate") as st:
        st["rows"] = 0
        for entity in entities:
            ex = extracted[entity.name]
            counts = run.entity(entity.name)
            counts.read = ex.rows
            for bad in ex.malformed:  # rejected before any row was made of them
                counts.rejected += bad.height
                rejects.append(bad.select("file", "line", "rules", "row",
                                          entity=pl.lit(entity.name)))
            out = run.staging / "valid" / entity.name
            for batch in _batches(ex.staged, VALIDATE_ROWS):
                path, raw = batch[0], pl.scan_parquet(batch)
                plan = run.profile.plan(f"validate_{entity.name}", quality.validate(raw, entity, window))
                good, bad = quality.split(plan.collect(), raw, entity, window)
                counts.rejected += bad.height
                st["rows"] += good.height
                rejects.append(bad.with_columns(entity=pl.lit(entity.name)))
                fact = fact_of.get(entity.name)
                parts = ({m: g for (m,), g in good.with_columns(fact.month()).partition_by(
                    "_m", as_dict=True, include_key=False).items()}
                    if fact else {None: good})
                for m, g in parts.items():
                    target = out / (f"m={m}" if m else "") / path.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    g.write_parquet(target, compression="zstd")
                    valid.setdefault(entity.name, []).append(target)
    dims, facts = {}, {}
    with run.stage("dedup") as st:
        for dim in pipelines.DIMENSIONS:
            if dim.entity.name in valid:
                rows = pl.read_parquet(valid[dim.entity.name])
                versions = dedup.dimension_versions(rows.lazy(), dim).collect()
                run.entity(dim.entity.name).duplicate = rows.height - versions.height
                dims[dim.name] = versions.select(
                    dim.business_key,
                    *[expr.cast(dim.dtypes.get(a, pl.String)).alias(a)
                      for a, expr in dim.attributes.items()],
                    pl.col(dim.valid_from).alias("valid_from"),
                    "_seq",
                )
        for fact in pipelines.FACTS:
            if fact.entity.name in valid:
                paths = valid[fact.entity.name]
                dups = dedup.fact_duplicates(paths, fact, threads=settings.duckdb_threads,
                                             memory_limit=settings.duckdb_memory_limit,
                                             spill_to=run.staging / "duckdb")
                lines = FactInput(paths, dups.losers, dups.month_rows, dups.ids, origins)
                counts = run.entity(fact.entity.name)
                counts.duplicate = counts.read - counts.rejected - lines.height
                facts[fact.name] = lines
        st["rows"] = sum(d.height for d in dims.values()) + sum(f.height for f in facts.values())
    all_rejects = pl.concat(rejects) if rejects else pl.DataFrame()
    return Prepared(dims, facts, all_rejects, pulls)


def _batches(paths: list[Path], max_rows: int) -> list[list[Path]]:
    """Consecutive staged files grouped up to max_rows rows (a bigger file alone): a drop of
    many small files is validated in a few passes, not one per file (each costs ~20 ms)."""
    return group_up_to([(p, parquet_rows(p)) for p in paths], max_rows)


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file, from its metadata."""
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def group_up_to(sizes: list[tuple], max_rows: int) -> list[list]:
    """[(item, rows)] in order -> consecutive groups of at most max_rows rows (an item
    bigger than that is a group of its own)."""
    groups: list[list] = []
    total = 0
    for item, n in sizes:
        if not groups or total + n > max_rows:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += n
    return groups


@dataclass
class FactInput:
    """A fact's valid rows, on disk by month (`.../m=YYYYMM/*.parquet`), what the dedup
    said of them: the losing lines [_seq, _m] and the winning lines per month, and the
    distinct ids each dimension reference uses. Nothing here grows with the drop but the
    duplicates and the ids: the lines stay on disk until their months are loaded."""

    paths: list[Path]
    losers: pl.DataFrame
    month_rows: dict[int, int]
    ids: dict[str, pl.Series]
    origins: list[tuple[int, str]]  # (first file number, source name), see extract_all
    left_keys: dict[str, pl.Series] = field(default_factory=dict)  # see drop_orphan_inferred
    stored_days: pl.DataFrame | None = None  # [*document, date_key] of the stored lines found

    @property
    def height(self) -> int:
        return sum(self.month_rows.values())

    def chunks(self, max_rows: int) -> list[list[Path]]:
        """The valid files in month order, grouped up to max_rows lines (a file bigger than
        that is a group of its own; a big month spans groups): the unit of work of the
        fact load, so its memory is bounded by max_rows, whatever the size of a month."""
        files = sorted((month_of(p), p) for p in self.paths)
        return group_up_to([(p, parquet_rows(p)) for _, p in files], max_rows)

    def read(self, files: list[Path], fact: FactByPartition) -> pl.DataFrame:
        """The winning lines of these files, version filled in (NULL: the event time), with
        the name of the source that delivered each (from its load order)."""
        months = list({month_of(p) for p in files})
        file_no = pl.col("_seq") // (1 << LINE_BITS)
        source = pl.lit(None, pl.String)
        for first, name in self.origins:  # in file order: the last source begun wins
            source = pl.when(file_no >= first).then(pl.lit(name)).otherwise(source)
        return (pl.scan_parquet(files)
                .join(self.losers.lazy().filter(pl.col("_m").is_in(months)).select("_seq"),
                      on="_seq", how="anti")
                .with_columns(pl.col(fact.version).fill_null(pl.col(fact.event_ts)),
                              source=source)
                .collect())


def month_of(path: Path) -> int:
    """YYYYMM of a valid fact file (`.../m=YYYYMM/NNNNN.parquet`)."""
    return int(path.parent.name.removeprefix("m="))


# ---- database stages: one transaction, under the warehouse lock --------------------------


def write(cur, run: Run, p: Prepared, settings: Settings) -> None:
    versions: dict[str, pl.DataFrame] = {}
    repoint: dict[str, datetime | None] = {}  # dimension -> where its re-pointing starts
    with run.stage("closed keys") as st:
        gone = _closed_keys(cur, run, p)
        st["rows"] = sum(g.len() for g in gone.values())
    # inferred members to check once the facts are in: made now, or left by replaced lines
    left: dict[str, list[pl.Series]] = {d.name: [] for d in pipelines.DIMENSIONS}
    with run.stage("scd2") as st:
        n = 0
        for dim in pipelines.DIMENSIONS:
            res = _dimension(cur, run, dim, p)
            if res is not None:
                made = res.upserts.filter(pl.col("is_inferred"))[dim.surrogate_key]
                left[dim.name].append(made.rename("made"))
                versions[dim.name] = res.versions
                if res.repoint.height:
                    repoint[dim.name] = res.repoint_since
                n += res.upserts.height
        st["rows"] = n
    checkpoint("merge:dimensions")
    for fact in pipelines.FACTS:
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {fact.table})")
        had_lines = cur.fetchone()[0]
        lines = p.facts.pop(fact.name, None)
        if lines is not None and lines.height:
            _fact(cur, run, fact, lines, versions, settings, had_lines)
        counts = run.entity(fact.entity.name)
        docs = ([x.documents.with_columns(source=pl.lit(x.source)) for x in p.pulls
                 if x.documents.height] if fact.document else [])
        if docs and had_lines:  # (else every stored line is one the run carried)
            with run.stage("deletes") as st:
                docs = pl.concat(docs)
                where = None if any(x.full for x in p.pulls) else pl.concat([
                    docs.select(*fact.document, "date_key"),
                    *([lines.stored_days] if lines is not None else [])])
                by_reason = delete_documents(cur, fact, docs,
                                             lines is not None and lines.height > 0, where)
                for reason, n in by_reason.items():
                    counts.count_deleted(reason, n)
                st["rows"] = sum(by_reason.values())
        for pull in p.pulls if fact.document and had_lines else []:
            if gone_lines.due(cur, pull, fact, time.perf_counter() - run.started):
                with run.stage("gone lines") as st:
                    lost = gone_lines.scan(cur, fact, pull, run.run_id)
                    for reason, n in lost.by_reason.items():
                        counts.count_deleted(reason, n)
                    st["rows"] = sum(lost.by_reason.values())
                    for ref in fact.references:
                        if ref.fact_column in lost.left_keys:
                            left[ref.dimension.name].append(lost.left_keys[ref.fact_column])
        if lines is not None:
            for ref in fact.references:
                if ref.fact_column in lines.left_keys:
                    left[ref.dimension.name].append(lines.left_keys[ref.fact_column])
        checkpoint("merge:facts")
        with run.stage("repoint") as st:
            st["rows"] = 0
            for ref in fact.references:
                if ref.dimension.name in repoint:
                    st["rows"] += repoint_facts(cur, fact, ref.dimension, ref.fact_column,
                                                run.run_id, f"stg_{ref.dimension.name}",
                                                repoint[ref.dimension.name])
    with run.stage("orphans"):
        _drop_orphans(cur, run, left)
    with run.stage("watermarks"):
        _remember_sources(cur, run, p, gone)
    if p.rejects.height:
        with run.stage("rejects", p.rejects.height):
            copy_temp(cur.connection, "stg_rejects", p.rejects)
            # a reload's rejects are counted in its ledger, but stored once: the same row of
            # the same file and line, quarantined by an earlier run, is not stored again
            # (the personal data of a key erased by `retail-etl forget` is not stored again)
            cur.execute(f"""
                INSERT INTO etl.rejects (run_id, entity, file, line, rules, row)
                SELECT {run.run_id}, s.entity, s.file, s.line, s.rules, s.row
                FROM (SELECT entity, file, line, rules, {erased_rows_sql('t')} AS row
                      FROM stg_rejects t) s
                WHERE NOT EXISTS (SELECT 1 FROM etl.rejects r WHERE r.entity = s.entity
                                  AND r.file = s.file AND r.line = s.line
                                  AND r.row = s.row)
            """)


def _drop_orphans(cur, run: Run, left: dict[str, list[pl.Series]]) -> None:
    for dim in pipelines.DIMENSIONS:
        keys = [k.cast(pl.Int64) for k in left[dim.name] if k.len()]
        if not keys:
            continue
        uses = [(f.table, r.fact_column) for f in pipelines.FACTS for r in f.references
                if r.dimension is dim]
        dropped = drop_orphan_inferred(cur, dim, uses, pl.concat(keys))
        made = next((k for k in left[dim.name] if k.name == "made"), pl.Series([], dtype=pl.Int64))
        run.entity(dim.entity.name).inferred -= int(dropped.is_in(made.cast(pl.Int64).implode()).sum())


def _closed_keys(cur, run: Run, p: Prepared) -> dict[tuple[str, str], pl.Series]:
    """Keys a database source delivered before and no longer has (hard deletes): each gets
    a version that says so, with the attributes of its current one, from the moment the
    source was read (no row says when it went). Returns them per (source, entity)."""
    gone = {}
    for pull in p.pulls:
        for dim in pipelines.DIMENSIONS:
            entity, B = dim.entity.name, dim.business_key
            if entity not in pull.present:
                continue
            copy_temp(cur.connection, "stg_present", pull.present[entity].to_frame("key"))
            cur.execute(f"""
                SELECT d.{B}, {', '.join(_attrs_sql(dim, 'd'))}, d.valid_from
                FROM etl.source_keys k JOIN {dim.table} d ON d.{B} = k.key
                WHERE k.source = '{pull.source}' AND k.entity = '{entity}'
                  AND NOT EXISTS (SELECT 1 FROM stg_present p WHERE p.key = k.key)
                  AND d.is_current AND NOT d.is_inferred AND NOT d.is_deleted
            """)
            current = _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))
            gone[(pull.source, entity)] = current[B]
            if current.height == 0:
                continue
            one_us = pl.duration(microseconds=1)
            tombstones = current.with_columns(
                is_deleted=pl.lit(True),
                valid_from=pl.max_horizontal(pl.lit(pull.hi).dt.convert_time_zone("UTC"),
                                             pl.col("valid_from") + one_us),
                _seq=pl.int_range(pl.len(), dtype=pl.Int64) + (1 << 62),  # last in load order
            )
            incoming = p.dims.get(dim.name)
            p.dims[dim.name] = (tombstones if incoming is None else
                                pl.concat([incoming, tombstones.select(incoming.columns)]))
            counts = run.entity(entity)
            counts.read += tombstones.height
            counts.count_deleted("key_gone", tombstones.height)
    return gone


def _remember_sources(cur, run: Run, p: Prepared, gone: dict) -> None:
    """The keys each database source delivered, and its new watermarks: committed with the
    data they describe, so a failed run reads the same rows again."""
    for pull in p.pulls:
        for entity, keys in pull.delivered.items():
            copy_temp(cur.connection, "stg_delivered", keys.unique().to_frame("key"))
            cur.execute(f"""
                INSERT INTO etl.source_keys (source, entity, key)
                SELECT '{pull.source}', '{entity}', key FROM stg_delivered WHERE key IS NOT NULL
                ON CONFLICT DO NOTHING
            """)
            if cur.rowcount > 1000 and "etl.source_keys" not in run.analyze:
                run.analyze.append("etl.source_keys")  # the next run's anti join plans on it
            closed = gone.get((pull.source, entity))
            if closed is not None and closed.len():
                copy_temp(cur.connection, "stg_closed", closed.to_frame("key"))
                cur.execute(f"""
                    DELETE FROM etl.source_keys k USING stg_closed c
                    WHERE k.source = '{pull.source}' AND k.entity = '{entity}' AND k.key = c.key
                """)
        for m in pull.marks:
            cur.execute("""
                INSERT INTO etl.watermarks (source, entity, watermark, tiebreak, run_id, updated_at)
                VALUES ($1, $2, $3, $4, $5, now())
                ON CONFLICT (source, entity) DO UPDATE SET watermark = excluded.watermark,
                    tiebreak = excluded.tiebreak, run_id = excluded.run_id,
                    updated_at = excluded.updated_at
                WHERE (etl.watermarks.watermark, etl.watermarks.tiebreak)
                      IS DISTINCT FROM (excluded.watermark, excluded.tiebreak)
            """, parameters=(pull.source, m.table, m.ts, json.dumps(m.key, default=str),
                             run.run_id))


def _dimension(cur, run: Run, dim: DimensionSCD2, p: Prepared):
    incoming = p.dims.get(dim.name)
    referenced = _referenced(dim, p)
    if incoming is None and referenced.height == 0:
        return None
    if incoming is None:
        incoming = pl.DataFrame(schema={dim.business_key: pl.String,
                                        **{a: dim.dtypes.get(a, pl.String) for a in dim.attributes},
                                        "valid_from": pl.Datetime("us", "UTC"), "_seq": pl.Int64})
    incoming = _without_erased(cur, dim, incoming)
    conn = cur.connection
    ids = pl.concat([incoming.select(dim.business_key), referenced.select(dim.business_key)]).unique()
    cur.execute(f"SELECT EXISTS (SELECT 1 FROM {dim.table}) "
                f"OR EXISTS (SELECT 1 FROM etl.{dim.name}_observed)")
    if not cur.fetchone()[0]:  # a new warehouse: no ids to look up (the queries still type)
        ids = ids.clear()
    stored = _stored(cur, dim, ids)
    observed = _observed(cur, dim)
    cur.execute(f"SELECT greatest(max({dim.surrogate_key}), 0) + 1 FROM {dim.table}")
    next_key = cur.fetchone()[0]
    res = scd2.diff(dim, incoming, stored, referenced, next_key, observed)
    stg = f"stg_{dim.name}"
    copy_temp(conn, f"{stg}_incoming", incoming.drop("_seq"))
    merge_observed(cur, dim, run.run_id, stg)
    copy_temp(conn, f"{stg}_upserts", res.upserts)
    copy_temp(conn, f"{stg}_deletes", res.deletes)
    # the new history of the keys whose sales are re-pointed (all repoint_facts reads)
    copy_temp(conn, f"{stg}_history",
              res.history.join(res.repoint.select(dim.business_key), on=dim.business_key,
                               how="semi"))
    copy_temp(conn, f"{stg}_repoint", res.repoint)
    merge_dimension(cur, dim, run.run_id, stg)
    counts = run.entity(dim.entity.name)
    counts.loaded, counts.merged, counts.inferred = res.loaded, res.merged, res.inferred
    return res


def _without_erased(cur, dim: DimensionSCD2, incoming: pl.DataFrame) -> pl.DataFrame:
    """The incoming versions, personal attributes blanked for keys `retail-etl forget`
    erased: a re-delivered row does not bring them back."""
    if not dim.personal or not incoming.height:
        return incoming
    cur.execute("SELECT DISTINCT key FROM etl.erasures WHERE entity = $1",
                parameters=(dim.entity.name,))
    erased = pl.from_arrow(cur.fetch_arrow_table())["key"]
    if not erased.len():
        return incoming
    hit = pl.col(dim.business_key).is_in(erased.implode())
    return incoming.with_columns(pl.when(~hit).then(pl.col(a)).alias(a) for a in dim.personal)


def _referenced(dim: DimensionSCD2, p: Prepared) -> pl.DataFrame:
    """[business key]: the ids the run's facts use."""
    ids = [
        p.facts[fact.name].ids[ref.source_column].alias(dim.business_key)
        for fact in pipelines.FACTS if fact.name in p.facts
        for ref in fact.references if ref.dimension is dim
    ]
    if not ids:
        return pl.DataFrame(schema={dim.business_key: pl.String})
    return pl.concat(ids).unique().to_frame()


def _attrs_sql(dim: DimensionSCD2, alias: str) -> list[str]:
    """The attribute columns, numeric ones as text (ADBC reads numeric as an opaque type)."""
    return [f"{alias}.{a}::text AS {a}" if isinstance(dim.dtypes.get(a), pl.Decimal)
            else f"{alias}.{a}" for a in dim.attribute_names]


def _typed(dim: DimensionSCD2, df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns(*[pl.col(a).cast(t) for a, t in dim.dtypes.items()],
                           pl.col("^valid_.*$").dt.convert_time_zone("UTC"))


def _observed(cur, dim: DimensionSCD2) -> pl.DataFrame:
    """Every version the sources showed for the keys in stg_ids (see 025_observed_versions)."""
    B = dim.business_key
    cur.execute(f"""
        SELECT o.{B}, {', '.join(_attrs_sql(dim, 'o'))}, o.valid_from
        FROM etl.{dim.name}_observed o JOIN stg_ids i ON i.{B} = o.{B}
    """)
    return _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))


def _stored(cur, dim: DimensionSCD2, ids: pl.DataFrame) -> pl.DataFrame:
    """The stored versions of the given business keys (valid_to infinity as NULL)."""
    copy_temp(cur.connection, "stg_ids", ids)
    B = dim.business_key
    cur.execute(f"""
        SELECT d.{dim.surrogate_key}::bigint AS {dim.surrogate_key}, d.{B},
               {', '.join(_attrs_sql(dim, 'd'))},
               d.valid_from, nullif(d.valid_to, 'infinity') AS valid_to, d.is_inferred
        FROM {dim.table} d JOIN stg_ids i ON i.{B} = d.{B}
    """)
    return _typed(dim, pl.from_arrow(cur.fetch_arrow_table()))


def _fact(cur, run: Run, fact: FactByPartition, lines: FactInput,
          versions: dict[str, pl.DataFrame], settings: Settings, had_lines: bool) -> None:
    """Lookup, compare and COPY by groups of months (settings.fact_chunk_rows lines at
    most): the working set is bounded by that, not by the drop."""
    months = sorted(lines.month_rows)
    with run.stage("dates"):
        ensure_dates(cur, months[0] // 100, months[-1] // 100, settings.fiscal_year_start_month,
                     run.run_id)
    existing = partitions.existing_partitions(cur, fact.table)
    if settings.copy_streams and any(f"{fact.table}_{m}" not in existing for m in months):
        run.built_aside = True
        builds = partitions.Builders(
            lambda: connect(run.dsn), fact.table, partitions.index_definitions(cur, fact.table),
            settings.copy_streams, max_rows=settings.fact_chunk_rows)
    else:
        builds = partitions.LocalBuilds(cur, fact.table)
    failed = True
    try:
        _fact_chunks(cur, run, fact, lines, versions, settings, had_lines, builds)
        with run.stage("index", len(builds.months())):  # waits for the builds
            builds.attach_all(cur)
        failed = False
    finally:
        builds.close(failed)
        run.profile.builds += builds.timings


def _fact_chunks(cur, run: Run, fact: FactByPartition, lines: FactInput,
                 versions: dict[str, pl.DataFrame], settings: Settings, had_lines: bool,
                 builds) -> None:
    c = run.entity(fact.entity.name)
    columns = [*fact.natural_key, fact.event_ts, "date_key",
               *[r.fact_column for r in fact.references], *fact.measures, fact.version,
               "source"]
    stored_days = []
    chunks = lines.chunks(settings.fact_chunk_rows)
    last = {month_of(f): i for i, group in enumerate(chunks) for f in group}
    with AsOfLookup(fact, versions, threads=settings.duckdb_threads,
                    memory_limit=settings.duckdb_memory_limit,
                    profile_to=run.profile.path("duckdb_lookup.json")) as lookup:
        for i, group in enumerate(chunks):
            with run.stage("lookup") as st:
                chunk = lines.read(group, fact).drop("_seq")
                st["rows"] = chunk.height
                rows = lookup.keys(chunk).select(
                    *fact.natural_key,
                    fact.event_ts,
                    pl.col(fact.event_ts).dt.strftime("%Y%m%d").cast(pl.Int32).alias("date_key"),
                    *[r.fact_column for r in fact.references],
                    *[expr.cast(fact.dtypes[k]).alias(k) for k, expr in fact.measures.items()],
                    fact.version,
                    "source",
                ).with_columns(pl.col(k).cast(pl.Int32) for k in fact.natural_key
                               if k == "line_number")
            with run.stage("stored", rows.height):  # wherever they are stored: any month
                stored = (stored_lines(cur, fact, rows, columns, keep_keys=bool(fact.document))
                          if had_lines else rows.clear())
                if fact.document:
                    stored_days.append(stored.select(*fact.document, "date_key").unique())
            counts = merge_facts(cur, fact, rows, run.run_id, run.stage, stored, builds,
                                 ending={m for m, j in last.items() if j == i})
            run.partitions += [p for p in counts.partitions if p not in run.partitions]
            run.analyze += [p for p in counts.stale_stats if p not in run.analyze]
            for col, keys in counts.left_keys.items():
                left = lines.left_keys.get(col)
                lines.left_keys[col] = keys if left is None else pl.concat([left, keys])
            c.loaded += counts.inserted
            c.merged += counts.unchanged + counts.stale
    if stored_days:
        lines.stored_days = pl.concat(stored_days)


def _lock(cur, wait_seconds: float) -> None:
    cur.execute(f"SELECT pg_try_advisory_xact_lock({LOCK_KEY})")
    if cur.fetchone()[0]:
        return
    console.info(f"another run holds the warehouse lock; waiting up to {wait_seconds:g}s")
    try:
        cur.execute(f"SET LOCAL lock_timeout = '{int(wait_seconds * 1000)}ms'")
        cur.execute(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        cur.execute("SET LOCAL lock_timeout = 0")
    except adbc_driver_manager.Error:
        raise LockTimeout(
            f"another run still holds the warehouse lock after {wait_seconds:g}s",
            hint="wait for it to finish (`retail-etl runs`) or raise RETAIL_ETL_LOCK_WAIT_SECONDS",
        ) from None


def _drop_builds(ledger) -> None:
    """Months a failed run built in parallel sessions (committed there, never attached)."""
    try:
        with ledger.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {partitions.BUILD_SCHEMA} CASCADE")
    except Exception:  # the next run that builds drops them too
        pass


def _rollback(conn) -> None:
    try:
        conn.rollback()
    except Exception:  # the connection may be gone; the server rolls back on its own
        pass


def _analyze(ledger, dsn: str, run: Run, streams: int = 2) -> None:
    """Fresh statistics for what the run wrote, after the commit: the ledger session and
    `streams - 1` more sessions share the tables (ANALYZE is CPU-bound in the server)."""
    tables = [d.table for d in pipelines.DIMENSIONS] + run.analyze

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
    with ledger.cursor() as cur:
        record_stages(cur, run)
        record_end(cur, run)  # after the ANALYZE, as the summary line says


def _message(e: BaseException) -> str:
    if isinstance(e, EtlError):
        return e.message
    if isinstance(e, Terminated):
        return "terminated (SIGTERM)"
    if isinstance(e, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
