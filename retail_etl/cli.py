"""The command line: parse, call the engine, render. No SQL or dataframe code here."""

from __future__ import annotations

import inspect
import json
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated

import typer

from retail_etl import __version__, console
from retail_etl.config import config_file, load_settings
from retail_etl.errors import EtlError, Terminated, UsageError

app = typer.Typer(
    name="retail-etl",
    help="Load retail file drops into a partitioned PostgreSQL star schema.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The local PostgreSQL cluster (the default warehouse).",
                     no_args_is_help=True)
app.add_typer(db_app, name="db")

_state = {"debug": False}

DsnOpt = Annotated[str | None, typer.Option(
    "--dsn", help="Warehouse DSN (postgresql://user@host:port/db); default: the local cluster. "
    "Env: RETAIL_ETL_DSN.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"retail-etl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    import os

    from retail_etl.monitor import log

    _state["debug"] = debug
    # the job log (and the engine's warnings) on stderr; a command that reads the settings
    # configures it again from them (log_format, log_file)
    fmt = os.environ.get("RETAIL_ETL_LOG_FORMAT", "auto")
    log.configure(fmt if fmt in ("json", "console") else "auto", debug=debug)


def terminal_help(doc: str | None) -> str | None:
    """A command's docstring for the terminal: the line breaks of a paragraph go (the
    terminal wraps it at its width), an example block keeps its lines."""
    if not doc:
        return doc
    out = []
    for para in inspect.cleandoc(doc).split("\n\n"):
        lines = para.splitlines()
        keep = lines[0].startswith("Example") or any(ln.startswith(" ") for ln in lines)
        out.append(para if keep else " ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def handled(fn: Callable) -> Callable:
    """`Error: <message>` (and a hint) with exit 1 instead of a traceback; --debug shows it."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.BadParameter):  # usage errors: typer prints them, exit 2
            raise
        except EtlError as e:
            if _state["debug"]:
                traceback.print_exc()
            console.error(e.message, e.hint)
            # 75 (EX_TEMPFAIL): the same command may succeed later; a scheduler can retry
            raise typer.Exit(75 if e.transient and e.exit_code == 1 else e.exit_code) from None
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (errors.Terminated)
            term = isinstance(e, Terminated)
            console.error(f"{'terminated' if term else 'interrupted'}; the run was rolled back")
            raise typer.Exit(143 if term else 130) from None
        except Exception as e:  # a bug, not the user's mistake: still one line by default
            if _state["debug"]:
                traceback.print_exc()
            where = getattr(e, "run_stage", None)  # set by the run (flow._named)
            console.error(f"{where + ': ' if where else ''}internal error: "
                          f"{type(e).__name__}: {e}".splitlines()[0],
                          "run again with --debug for the traceback")
            raise typer.Exit(1) from None

    wrapper.__doc__ = terminal_help(fn.__doc__)
    return wrapper


def _dsn(dsn: str | None) -> str:
    from retail_etl.db.connect import resolve_dsn

    return resolve_dsn(load_settings(dsn=dsn))


@app.command()
@handled
def load(
    source_dir: Annotated[Path | None, typer.Option(
        "--source-dir", "-s", help="Load this drop directory only.", show_default=False)] = None,
    encoding: Annotated[str, typer.Option(
        "--encoding", help="The --source-dir drop's CSV text encoding (latin-1, cp1252, ...); "
        "a configured source has its own `encoding` setting.")] = "utf-8",
    events_dir: Annotated[Path | None, typer.Option(
        "--events-dir", help="Load this web-analytics export directory (GA4 shape: .ndjson, "
        ".ndjson.gz, .parquet), alone or with --source-dir.", show_default=False)] = None,
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="Load this configured source only (repeatable).",
        show_default=False)] = None,
    full: Annotated[bool, typer.Option(
        "--full", help="Database sources: read every row, not only the changes since the "
        "watermark (a snapshot; always scans for deleted orders and lines).")] = False,
    dsn: DsnOpt = None,
    keep_staging: Annotated[bool, typer.Option(help="Keep data/staging/<run> afterwards.")] = False,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Write stage timings, Polars plans, the DuckDB profile and "
        "PostgreSQL statement timings to data/profiles/<run>/.")] = False,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="The job log on stderr: json or console (default: console on "
        "a terminal, else JSON; setting log_format).", show_default=False)] = None,
    metrics_file: Annotated[Path | None, typer.Option(
        "--metrics-file", help="Write the run's Prometheus metrics to this file "
        "(setting metrics_file).", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load the configured sources, or one file drop, in one run.

    Load every configured source (retail_etl.toml), or the ones named, or one file drop
    (products*, customers*, stores*, sales* as CSV, CSV.gz or Parquet), into the warehouse
    in one run and one transaction.

    Every row read is counted once: loaded (new, or a change of what is stored),
    unchanged (equal to what is stored), rejected (broke a rule: see `retail-etl rejects`)
    or a duplicate (the same row again in the input). Inferred: members made for ids the
    sales use that no file or source described yet (their attributes arrive later).
    Deleted: fact lines and keys removed because their source no longer has them.

    Example:
        retail-etl load
        retail-etl load --source shop --full
        retail-etl load --source-dir data/raw/drop_001
    """
    import pipelines
    from retail_etl.config import EventsSource, FilesSource
    from retail_etl.flow import load as load_sources

    console.quiet(as_json)  # a program reads the output: no progress bars

    from retail_etl.monitor import log

    if log_format not in (None, "json", "console"):
        raise typer.BadParameter("must be json or console", param_hint="--log-format")
    settings = load_settings(dsn=dsn, keep_staging=keep_staging or None,
                             log_format=log_format, metrics_file=metrics_file)
    log.configure_from(settings, debug=_state["debug"])
    if (source_dir is not None or events_dir is not None) and source:
        raise typer.BadParameter("give --source-dir / --events-dir or --source, not both")
    if source_dir is not None or events_dir is not None:
        sources = {}
        try:
            if source_dir is not None:
                sources["files"] = FilesSource(kind="files", dir=source_dir, encoding=encoding)
        except ValueError as e:  # pydantic's error names the setting; a flag is the user's
            raise typer.BadParameter(e.errors()[0]["msg"].removeprefix("Value error, "),
                                     param_hint="--encoding") from None
        if events_dir is not None:
            sources["web"] = EventsSource(kind="events", dir=events_dir)
    else:
        unknown = [n for n in source or [] if n not in settings.sources]
        if unknown:
            raise EtlError(f"no source named {unknown[0]!r} in {config_file()}",
                           hint="configured: " + (", ".join(settings.sources) or "none"))
        sources = {n: c for n, c in settings.sources.items() if not source or n in source}
    run = load_sources(pipelines.PROJECT, settings, sources, full=full, profile=profile)
    summary = run.summary()
    if as_json:
        console.out.print_json(json.dumps(summary, default=str))
    console.info(_summary_line(run))
    for r in run.refreshed:
        if r.error:
            console.warn(f"the mart was not refreshed ({r.error}); the load is "
                         "committed, and the next run (or `retail-etl refresh`) retries it")
    if any(c.inferred for c in run.counts.values()):
        console.info("inferred: members made for ids the sales use that no source described "
                     "yet; their attributes fill in when a source describes them")
    if profile:
        console.info(f"profile: {run.profile.dir}")


def _summary_line(run) -> str:
    parts = []
    for c in run.counts.values():
        if c.read or c.inferred or c.deleted:
            why = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(c.deleted_by.items()))
            extra = (f", {c.inferred} inferred" if c.inferred else "") + (
                f", {c.deleted} deleted ({why})" if c.deleted else "") + (
                f", {c.unmatched} for orders the sales lack" if c.unmatched else "")
            parts.append(f"{c.entity} {c.read} read: {c.loaded} loaded, {c.merged} unchanged, "
                         f"{c.rejected} rejected, {c.duplicate} duplicates{extra}")
    return (f"run {run.run_id} ok in {run.seconds:.1f}s; {'; '.join(parts)}; "
            f"{len(run.partitions)} partitions touched")


@app.command()
@handled
def generate(
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Directory to write drops into.", show_default=False)] = None,
    lines: Annotated[int, typer.Option(min=1, help="Sales lines over all drops.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 42,
    drops: Annotated[int, typer.Option(min=1, help="Number of drops (drop_001, ...).")] = 1,
    clean: Annotated[bool, typer.Option("--clean", help="No dirt: every row obeys the rules.")] = False,
    oltp: Annotated[bool, typer.Option(
        "--oltp", help="Create and fill an operational shop database instead of drops.")] = False,
    mutate: Annotated[bool, typer.Option(
        "--mutate", help="With --oltp: apply one business day of changes to it.")] = False,
    database: Annotated[str, typer.Option(
        help="With --oltp: the database on the local cluster.")] = "retail_oltp",
    oltp_dsn: Annotated[str | None, typer.Option(
        "--oltp-dsn", help="With --oltp: a DSN instead of the local cluster's database.",
        show_default=False)] = None,
    api: Annotated[bool, typer.Option(
        "--api", help="Write a payments and shipping history (charges.json, events.json, "
        "trackers.json) for the orders of --from DIR (a drop) or of the warehouse (--dsn).")] = False,
    events: Annotated[bool, typer.Option(
        "--events", help="Write GA4-shaped web-analytics exports (events_YYYYMMDD.ndjson"
        "[.gz]) in which the online orders of --from DIR (a drop) or of the warehouse "
        "(--dsn) are bought.")] = False,
    sessions: Annotated[int | None, typer.Option(
        min=1, help="With --events: sessions to make (default: as many as make 2.5% of "
        "them buy every online order of the window).", show_default=False)] = None,
    days: Annotated[int, typer.Option(
        min=1, help="With --events: the window, the drop's last N days.")] = 31,
    from_dir: Annotated[Path | None, typer.Option(
        "--from", help="With --api or --events: the drop whose sales are paid and shipped, "
        "or bought on the site.", show_default=False)] = None,
    dsn: DsnOpt = None,
) -> None:
    """Generate synthetic drops, a shop database, or API histories.

    Generate deterministic synthetic drops in the contract's format, with dirt at known
    rates; or, with --oltp, an operational shop database (products, customers, stores,
    orders, order_items), and with --mutate one business day of changes to it; or, with
    --api, what the payments and shipping APIs would hold for a drop's (or the warehouse's)
    orders: most paid, some failed, some refunded, most shipped, a few lost, 2% of the
    charges for order ids the sales lack (the fake servers of `retail-etl demo` serve it);
    or, with --events, a month of the shop site's GA4 exports in which the drop's online
    orders are bought: 10-20 events a session, 2.5% buying, events late and sent twice,
    dirt at known rates (listed in the directory's .generated.json).

    Example:
        retail-etl generate --out data/raw --lines 1000000 --drops 3 --seed 7
        retail-etl generate --oltp --lines 1000000
        retail-etl generate --oltp --mutate --seed 2
        retail-etl generate --api --from data/raw/drop_001 --out data/api
        retail-etl generate --events --from data/raw/drop_001 --out data/web
        retail-etl generate --events --dsn postgresql://... --days 7 --out data/web
    """
    if api:
        _generate_api(out, from_dir, dsn, seed)
        return
    if events:
        _generate_events(out, from_dir, dsn, sessions, days, seed, dirt=not clean)
        return
    if not oltp:
        if mutate:
            raise typer.BadParameter("--mutate needs --oltp")
        if out is None:
            raise typer.BadParameter("--out is required (or --oltp)")
        from retail_etl.generate.drops import describe, generate_drops

        summary = generate_drops(out, lines, seed, drops, dirt=not clean)
        console.info(describe(summary))
        return
    import time

    from retail_etl.db.connect import redact
    from retail_etl.generate.oltp import create_oltp, mutate_day

    dsn = oltp_dsn or _local_database(database, create=not mutate)
    t0 = time.perf_counter()
    counts = mutate_day(dsn, seed) if mutate else create_oltp(dsn, lines, seed)
    what = "one business day applied to" if mutate else "created"
    console.info(f"{what} {redact(dsn)} in {time.perf_counter() - t0:.1f}s: "
                 + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def _generate_api(out: Path | None, from_dir: Path | None, dsn: str | None, seed: int) -> None:
    from retail_etl import queries
    from retail_etl.generate import api

    if out is None:
        raise UsageError("--out is required with --api", hint="e.g. --out data/api")
    if from_dir is not None and not from_dir.is_dir():
        raise UsageError(f"--from {from_dir}: no such directory")
    try:
        orders = api.read_orders(from_dir) if from_dir else queries.orders(_dsn(dsn))
    except FileNotFoundError as e:
        raise UsageError(f"--from: {e}") from None
    made = api.history(orders, seed)
    paths = api.write(made, out)
    console.info(f"{orders.height:,} orders: {len(made['charges']):,} charges, "
                 f"{len(made['events']):,} events, {len(made['trackers']):,} trackers in "
                 + ", ".join(str(p) for p in paths))


def _generate_events(out: Path | None, from_dir: Path | None, dsn: str | None,
                     sessions: int | None, days: int, seed: int, dirt: bool) -> None:
    from retail_etl import queries
    from retail_etl.generate.events import describe, generate_events

    if out is None:
        raise UsageError("--out is required with --events", hint="e.g. --out data/web")
    if from_dir is not None and not from_dir.is_dir():
        raise UsageError(f"--from {from_dir}: no such directory")
    try:
        source = from_dir if from_dir is not None else queries.web_sales(_dsn(dsn))
        made = generate_events(source, out, sessions, seed, days, dirt=dirt)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"--from: {e}") from None
    console.info(describe(made))


def _local_database(name: str, create: bool) -> str:
    """The local cluster's database `name` (created if asked and missing)."""
    from retail_etl.db.cluster import Cluster

    settings = load_settings()
    cluster = Cluster(settings.pg_dir)
    cluster.up()
    if create:
        cluster.ensure_database(name)
    return cluster.dsn(name)


@app.command()
@handled
def demo(
    lines: Annotated[int, typer.Option(min=1000, help="Sales lines to generate.")] = 200_000,
    drops: Annotated[int, typer.Option(min=1, help="Drops to load one after the other.")] = 3,
) -> None:
    """The whole story on generated data: drops, a shop, its payments.

    Start the local cluster; generate a few drops and an operational shop database
    (retail_oltp); load the drops in order, the last one together with the shop in one run
    (the sources of retail_etl.toml), then a business day of changes; then the last
    quarter's payments and parcels from fake payments and shipping APIs on loopback and
    their reconciliation with the sales; show monthly revenue by category.

    Example:
        retail-etl demo --lines 200000 --drops 3
    """
    import pipelines
    from retail_etl.demo import run_demo

    settings = load_settings()
    shop_dsn = _local_database("retail_oltp", create=True)
    console.info(_server_note(settings))
    kpis = run_demo(pipelines.PROJECT, settings, shop_dsn, "retail_oltp", lines, drops, console.info, _summary_line)
    console.table("Monthly revenue by category (last 3 months)", *_rows(kpis))
    console.info("next: the report above; `retail-etl runs` (what each run did), "
                 "`retail-etl runs --show N` (where its time went), `retail-etl rejects` (what "
                 "was quarantined and why); notebooks/sales_analysis.ipynb (questions to the "
                 "mart, see the README); `retail-etl db down` stops the server")


def _server_note(settings) -> str:
    from retail_etl.db.cluster import Cluster

    c = Cluster(settings.pg_dir)
    return (f"PostgreSQL runs in {c.root} at {c.dsn()} and stays up for the commands below "
            "(`retail-etl db status`; `retail-etl db down` stops it)")


@app.command()
@handled
def sources(
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the configured sources and their watermarks.

    List the configured sources (retail_etl.toml) and the watermarks the warehouse holds
    for each table of the database sources.

    Example:
        retail-etl sources
    """
    import polars as pl

    from retail_etl import queries
    from retail_etl.config import EventsSource, FilesSource, HttpSource
    from retail_etl.db.connect import redact

    settings = load_settings(dsn=dsn)
    marks = queries.watermarks(_dsn(dsn))
    rows = []
    for name, cfg in settings.sources.items():
        where = (str(cfg.dir) if isinstance(cfg, (FilesSource, EventsSource))
                 else f"{cfg.api} API at {cfg.base_url}" if isinstance(cfg, HttpSource)
                 else redact(cfg.dsn) if cfg.dsn else f"local:{cfg.database}")
        mine = marks.filter(pl.col("source") == name)
        for i, m in enumerate(mine.iter_rows(named=True) if mine.height else [{}]):
            first = as_json or i == 0  # a table shows the source once
            rows.append({"source": name if first else "", "kind": cfg.kind if first else "",
                         "location": where if first else "", "table": m.get("table"),
                         "watermark": m.get("watermark"), "tiebreak": m.get("tiebreak"),
                         "run": m.get("run")})
    if not rows:
        console.info(f"no sources configured in {config_file()}")
        return
    _render(pl.DataFrame(rows), f"Sources ({config_file()})", as_json)


@app.command()
@handled
def report(
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="The HTML file to write (self-contained: opens offline).",
        show_default=False)] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", help="First month of the period, YYYY-MM (default: the --to month).",
        show_default=False)] = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Last month, YYYY-MM (default: the warehouse's last month with sales).",
        show_default=False)] = None,
    png: Annotated[Path | None, typer.Option(
        "--png", help="Also write each chart as a PNG into this directory.",
        show_default=False)] = None,
    currency: Annotated[str, typer.Option(help="Currency symbol for amounts.")] = "$",
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the KPI report: a period against the prior one, with charts.

    KPIs for the period and the prior period of the same length, the revenue trend, top 10
    products, stores, cohort retention, RFM segments and the last runs' rejects, from the
    mart. --json prints the figures (the same warehouse gives the same bytes).

    Example:
        retail-etl report --out report.html --from 2024-01 --to 2024-03
    """
    from retail_etl import report as kpi_report

    if out is None and png is None and not as_json:
        raise UsageError("nothing to write", hint="pass --out FILE.html, --png DIR or --json")
    first = kpi_report.month(from_, "--from") if from_ else None
    last = kpi_report.month(to, "--to") if to else None
    fig = kpi_report.write(_dsn(dsn), out, first, last, png, currency)
    if as_json:
        sys.stdout.write(kpi_report.to_json(fig) + "\n")
    for what, path in (("report", out), ("charts", png)):
        if path is not None:
            console.info(f"{what}: {path}")


@app.command()
@handled
def backup(
    kind: Annotated[str | None, typer.Option(
        "--type", help="full or incr (default: by the calendar, full weekly).",
        show_default=False)] = None,
    logical: Annotated[bool, typer.Option(
        "--logical", help="A portable pg_dump (directory format) instead.")] = False,
    init: Annotated[bool, typer.Option(
        "--init", help="Set pgBackRest and WAL archiving up on the local cluster "
        "(once; restarts it).")] = False,
    show_schedule: Annotated[bool, typer.Option(
        "--schedule", help="Print the backup calendar as cron lines.")] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Back the warehouse up, with a manifest to verify restores against.

    Physical (pgBackRest, local cluster, point-in-time recovery): full on
    backup.full_weekday or when the last full is a week old, else incremental; into
    repo1, then repo2 (the off-site copy); encrypted when backup.cipher_pass is set.
    --logical: pg_dump of any server. Each writes a manifest: row counts and checksums
    per table, the month partitions, the KPI totals.

    Example:
        retail-etl backup --init
        retail-etl backup
        retail-etl backup --logical
    """
    from retail_etl.ops import backup as ops

    if show_schedule:
        typer.echo(ops.schedule(load_settings()), nl=False)
        return
    if kind not in (None, "full", "incr"):
        raise typer.BadParameter("must be full or incr", param_hint="--type")
    settings = load_settings(dsn=dsn)
    if init:
        for line in ops.init(settings):
            console.info(line)
        return
    done = ops.logical(settings) if logical else ops.physical(settings, kind)
    if as_json:
        console.out.print_json(json.dumps(done))
    else:
        console.info(f"{done['type']} backup {done['label']}: {done['size_bytes'] / 2**20:,.1f} "
                     f"MB in {done['seconds']:.1f}s ({done['tables']} tables measured)")


@app.command()
@handled
def backups(dsn: DsnOpt = None, as_json: JsonOpt = False) -> None:
    """List the backups: type, start, size, duration, WAL range.

    Example:
        retail-etl backups
    """
    import polars as pl

    from retail_etl.ops import backup as ops

    found = ops.listing(load_settings(dsn=dsn))
    if not found and not as_json:
        console.info("no backups yet: `retail-etl backup --init`, then `retail-etl backup`")
        return
    _render(pl.DataFrame(found, infer_schema_length=None), "Backups", as_json)


@app.command("restore-drill")
@handled
def restore_drill(
    target_time: Annotated[str | None, typer.Option(
        "--target-time", help="Restore the state at this instant (ISO 8601 with a time "
        "zone) by WAL replay, not the newest backup.", show_default=False)] = None,
    repo: Annotated[int, typer.Option(min=1, max=2, help="The repository: 2 is the "
                                      "off-site copy.")] = 1,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the restored copy running, for a look inside.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore into a scratch cluster, verify it, report RTO and RPO.

    The newest backup (or --target-time) is restored on a free loopback port, never over
    the live server; the copy is compared with the backup's manifest (counts, checksums,
    attached partitions), a KPI query must answer, then it is removed. Exit 1 on any
    mismatch, or an RTO or RPO above backup.max_rto_seconds / max_rpo_seconds.

    Example:
        retail-etl restore-drill
        retail-etl restore-drill --target-time 2026-12-01T08:00:00Z --json
    """
    from datetime import datetime

    from retail_etl.ops import drill

    when = None
    if target_time is not None:
        try:
            when = datetime.fromisoformat(target_time.replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter("not an ISO 8601 time", param_hint="--target-time") from None
        if when.tzinfo is None:
            raise typer.BadParameter("give its time zone (Z or +HH:MM)",
                                     param_hint="--target-time")
    report = drill.summary(drill.drill(load_settings(), when, repo, keep=keep))
    if as_json:
        console.out.print_json(json.dumps(report, default=str))
    else:
        console.info(f"restored {report['label']} ({report['repo']}"
                     + (f", to {report['target_time']}" if when else "")
                     + f"): {report['tables']} tables, {report['rows']:,} rows, "
                     f"{report['partitions']} partitions; RTO {report['rto_seconds']:.1f}s "
                     f"(max {report['max_rto_seconds']:.0f}s), RPO "
                     + (f"{report['rpo_seconds']:.0f}s" if report['rpo_seconds'] is not None
                        else "unknown") + f" (max {report['max_rpo_seconds']:.0f}s)")
    if keep:
        console.info(f"the restored copy runs at {report['dsn']}; remove it with "
                     f"`pg_ctl stop -D {report['scratch']}/data` and `rm -rf {report['scratch']}`")
    for problem in report["problems"]:
        console.error(problem)
    if report["problems"]:
        raise typer.Exit(1)


@app.command()
@handled
def archive(
    older_than_months: Annotated[int | None, typer.Option(
        "--older-than-months", min=1, help="Archive the month partitions older than this "
        "many whole months.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say which months would go, and change nothing.")] = False,
    listing: Annotated[bool, typer.Option("--list", help="List the archived months.")] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move old fact months to verified Parquet files (data_dir/archive).

    Each month is exported (zstd), re-read and compared with PostgreSQL (rows, sums,
    key range, checksum), then detached CONCURRENTLY and dropped. Rerun after a crash:
    it resumes where it stopped. Archived months stay queryable with
    `retail-etl query --include-archive`; a load into one fails, naming it.

    Example:
        retail-etl archive --older-than-months 24 --dry-run
        retail-etl archive --older-than-months 24
    """
    import polars as pl

    import pipelines
    from retail_etl.ops import archive as ops

    settings = load_settings(dsn=dsn)
    if listing:
        _render(pl.DataFrame(ops.archived(settings), infer_schema_length=None),
                "Archived months", as_json)
        return
    if older_than_months is None:
        raise UsageError("archive needs --older-than-months N (or --list)")
    if dry_run:
        todo = ops.plan(settings, pipelines.PROJECT, older_than_months)
        if not todo and not as_json:
            console.info(f"no month is older than {older_than_months} months")
            return
        _render(pl.DataFrame(todo, infer_schema_length=None).drop("yyyymm"),
                "Would archive", as_json)
        return
    done = ops.archive(settings, pipelines.PROJECT, older_than_months)
    if as_json:
        console.out.print_json(json.dumps(done))
        return
    for d in done:
        console.info(f"archived {d['fact']} {d['month']}"
                     + (f": {d['rows']:,} rows, {d['parquet_bytes'] / 2**20:,.1f} MB of Parquet "
                        f"for {d['partition_bytes'] / 2**20:,.1f} MB in PostgreSQL"
                        if d.get("parquet_bytes") is not None else " (resumed)")
                     + f" in {d['seconds']:.1f}s")
    if not done:
        console.info(f"no month is older than {older_than_months} months")


@app.command()
@handled
def unarchive(
    month: Annotated[str, typer.Option("--month", help="The month to bring back, YYYY-MM.")],
    dsn: DsnOpt = None,
) -> None:
    """Bring an archived month back, checked against its manifest.

    Example:
        retail-etl unarchive --month 2023-01
    """
    import pipelines
    from retail_etl.ops import archive as ops

    for d in ops.unarchive(load_settings(dsn=dsn), pipelines.PROJECT, month):
        console.info(f"brought {d['fact']} {d['month']} back: {d['rows']:,} rows in "
                     f"{d['seconds']:.1f}s, equal to its manifest")


@app.command()
@handled
def query(
    sql: Annotated[str, typer.Argument(help="One read-only SQL query.")],
    include_archive: Annotated[bool, typer.Option(
        "--include-archive", help="Answer over PostgreSQL and the Parquet archive together "
        "(DuckDB; the tables the query names are read whole).")] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Query the warehouse (read-only), and its archive if asked.

    Example:
        retail-etl query "SELECT count(*) FROM dw.fact_sales"
        retail-etl query --include-archive "SELECT sum(total_amount) FROM dw.fact_sales"
    """
    import pipelines
    from retail_etl.ops import archive as ops

    df = ops.query(load_settings(dsn=dsn), pipelines.PROJECT, sql, include_archive)
    _render(df, None, as_json)


@app.command()
@handled
def maintain(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Say what it would do, and do nothing.")] = False,
    months_ahead: Annotated[int, typer.Option(
        "--months-ahead", min=0, help="Month partitions made ahead of this one.")] = 2,
    show_history: Annotated[bool, typer.Option(
        "--history", help="List what earlier runs of maintain did.")] = False,
    dsn: DsnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Vacuum, reindex, make coming months, check disk; all logged.

    VACUUM (ANALYZE) of tables whose dead rows pass 20% (and 10,000), REINDEX
    CONCURRENTLY of B-tree indexes over 10 MB with a leaf density under 50% (pgstattuple),
    the month partitions of the coming months, and a warning when free disk is under
    min_free_disk_pct. Each action is a row of etl.maintenance.

    Example:
        retail-etl maintain --dry-run
        retail-etl maintain
    """
    import polars as pl

    import pipelines
    from retail_etl.ops import maintain as ops

    settings = load_settings(dsn=dsn)
    if show_history:
        rows = [{**r, "detail": json.dumps(r["detail"])} for r in ops.history(settings)]
        _render(pl.DataFrame(rows, infer_schema_length=None), "Maintenance", as_json)
        return
    done = ops.maintain(settings, pipelines.PROJECT, ops.Limits(months_ahead=months_ahead),
                        dry_run=dry_run)
    if as_json:
        console.out.print_json(json.dumps(done, default=str))
        return
    for d in done:
        say = console.warn if d["action"] == "disk" else console.info
        say(f"{'would ' if dry_run else ''}{d['action']} {d['target']}: "
            + ", ".join(f"{k} {v}" for k, v in d["detail"].items())
            + (f" ({d['seconds']:.1f}s)" if d["seconds"] is not None else ""))
    if not done:
        console.info("nothing to do: no table or index past its threshold, the coming "
                     "months exist, disk space is fine")


@app.command()
@handled
def doctor(
    dsn: DsnOpt = None,
    months_ahead: Annotated[int, typer.Option(
        "--months-ahead", min=0, help="Month partitions expected ahead of this one.")] = 2,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Exit 1 on a warning too, not only on a problem.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Say whether the warehouse is healthy: exit 0, or 1 on a problem.

    One line per check: the connection and versions, the schema, each source's last
    success against its freshness threshold (freshness_hours), the last run, the rejects
    trend, month partitions for the coming months, table and index bloat, free disk on
    the server's data directory and on data_dir (min_free_disk_pct), locks, the newest
    backup and restore drill. Read-only.

    Example:
        retail-etl doctor
        retail-etl doctor --json --strict
    """
    import polars as pl

    import pipelines
    from retail_etl.db.connect import resolve_dsn
    from retail_etl.monitor import doctor as health

    settings = load_settings(dsn=dsn)
    checks = health.examine(settings, pipelines.PROJECT, resolve_dsn(settings),
                            months_ahead=months_ahead)
    bad = [c for c in checks if c.status == health.PROBLEM
           or (strict and c.status == health.WARNING)]
    if as_json:
        console.out.print_json(json.dumps({"healthy": not bad,
                                           "checks": health.as_dicts(checks)}))
    else:
        _render(pl.DataFrame(health.as_dicts(checks)), "Warehouse health", False)
        console.info("healthy" if not bad else
                     f"not healthy: {', '.join(c.check for c in bad)}")
    if bad:
        raise typer.Exit(1)


@app.command()
@handled
def refresh(dsn: DsnOpt = None, as_json: JsonOpt = False,
            full: Annotated[bool, typer.Option(
                "--full", help="Recompute every day, not only those changed since the last "
                "refresh.")] = False) -> None:
    """Bring the mart's aggregations up to date now.

    Every load refreshes them after its commit (the days it changed only); this is for a
    refresh that failed, for `refresh_mart = "manual"`, or after `--full` rebuilds them.

    Example:
        retail-etl refresh
    """
    import polars as pl

    from retail_etl.db.connect import connect
    from retail_etl.load import refresh as mart_refresh
    from retail_etl.queries import require_warehouse

    url = _dsn(dsn)
    conn = connect(url, autocommit=True)
    try:
        with conn.cursor() as cur:
            require_warehouse(cur, url, "nothing to refresh")
        done = mart_refresh.refresh(conn, None, full=full)
    finally:
        conn.close()
    df = pl.DataFrame({"table": [r.view for r in done],
                       "seconds": [round(r.seconds, 3) for r in done],
                       "error": [r.error for r in done]}, schema_overrides={"error": pl.String})
    _render(df, "Mart refreshed", as_json)
    failed = [r for r in done if r.error]
    if failed:
        raise EtlError(f"the mart could not be refreshed: {failed[0].error}")


@app.command()
@handled
def runs(
    dsn: DsnOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    show: Annotated[int | None, typer.Option(help="One run's per-stage breakdown.")] = None,
    chart: Annotated[bool, typer.Option(
        "--chart", help="With --show: also draw where the time went as a PNG.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List runs and their row counts, or one run's stages.

    List runs with per-entity rows read, loaded, unchanged, rejected and duplicates, or one
    run's stages with --show.

    Example:
        retail-etl runs --limit 5
        retail-etl runs --show 12 --chart
    """
    from retail_etl import queries

    if chart and show is None:
        raise UsageError("--chart draws one run's stages", hint="add --show RUN")
    url = _dsn(dsn)
    df = queries.stages(url, show) if show is not None else queries.runs(url, limit)
    if show is not None and df.height == 0:
        raise EtlError(f"no run {show} with recorded stages", hint="see `retail-etl runs`")
    if df.height == 0 and not as_json:
        console.info("no runs yet: `retail-etl load --source-dir DIR` makes the first")
        return
    _render(df, f"Run {show}: stages" if show is not None else "Runs", as_json)
    if show is not None and not as_json:
        for w in queries.run_warnings(url, show):
            console.warn(f"data quality: {w}")
    if chart:
        from retail_etl.profile import waterfall

        png = load_settings().data_dir / "profiles" / f"run_{show:06d}" / "waterfall.png"
        console.info(f"waterfall: {waterfall(df, f'run {show}: where the time went', png)}")


@app.command()
@handled
def rejects(
    dsn: DsnOpt = None,
    run: Annotated[int | None, typer.Option(help="Run id (default: the latest with rejects).")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    whole: Annotated[bool, typer.Option(
        "--whole", help="Show each original row whole (default: cut at 200 characters).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show quarantined rows with their file, line and rules.

    Show quarantined rows: file, line, the rules they broke and the original row.

    Example:
        retail-etl rejects --run 3 --limit 20
        retail-etl rejects --run 3 --whole --json
    """
    from retail_etl import queries

    df = queries.rejects(_dsn(dsn), run, limit, None if whole else 200)
    if df.height == 0 and not as_json:
        console.info("no rejects: every row read so far was valid" if run is None
                     else f"run {run} rejected nothing")
        return
    _render(df, "Rejects", as_json)


@app.command()
@handled
def forget(
    customer: Annotated[str, typer.Option("--customer", help="The customer id to forget.",
                                          show_default=False)],
    reason: Annotated[str | None, typer.Option(help="Recorded with the erasure (e.g. the "
                                               "request's reference).")] = None,
    dsn: DsnOpt = None,
) -> None:
    """Erase a customer's personal data from the warehouse (GDPR).

    Erase a customer's personal data (name, email, city, state) from every version in
    the warehouse, the observed versions and the rejects, and keep later loads from
    storing it again; the sales stay. Recorded in etl.erasures (who, when, what).

    Example:
        retail-etl forget --customer C-00042 --reason "GDPR request 2026-118"
    """
    import pipelines
    from retail_etl.forget import forget as erase

    changed = erase(_dsn(dsn), pipelines.PROJECT, "customers", customer, reason,
                    load_settings(dsn=dsn).lock_wait_seconds)
    versions = changed["dw.dim_customer"]
    found = sum(changed.values())
    console.info(f"customer {customer}: personal data erased from {versions} versions, "
                 f"{changed['etl.dim_customer_observed']} observed versions, "
                 f"{changed['etl.rejects']} rejects; recorded in etl.erasures"
                 if found else
                 f"customer {customer} is not in this warehouse; the erasure is recorded: "
                 "later loads will not store their personal data")


@app.command()
@handled
def clean(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would go.")] = False,
) -> None:
    """Remove staging left by killed runs or kept on purpose.

    Remove the staging that no running load holds: what killed runs left, and what
    keep_staging kept. Reports each directory and its size. A running load is never touched.

    Example:
        retail-etl clean --dry-run
        retail-etl clean
    """
    from retail_etl import staging

    root = load_settings().staging_dir
    found = staging.leftovers(root) if dry_run else staging.sweep(root, include_kept=True)
    for left in found:
        console.info(f"{'would remove' if dry_run else 'removed'} {left.path} "
                     f"({_size(left.bytes)}{', kept on purpose' if left.kept else ''})")
    total = _size(sum(left.bytes for left in found))
    console.info(f"{len(found)} staging directories, {total}"
                 + (" (dry run: nothing removed)" if dry_run else " removed")
                 if found else f"nothing to clean in {root}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@db_app.command("up")
@handled
def db_up() -> None:
    """Start the local cluster in data/pg (made once); print its DSN.

    Example:
        retail-etl db up
    """
    import pipelines
    from retail_etl.db import roles
    from retail_etl.db.cluster import Cluster
    from retail_etl.db.connect import connect
    from retail_etl.schema import apply_schema

    settings = load_settings()
    cluster = Cluster(settings.pg_dir)
    dsn = cluster.up()
    conn = connect(dsn)
    try:
        apply_schema(conn, pipelines.PROJECT)
        _apply_roles(conn, dsn)
    finally:
        conn.close()
    cluster.require_passwords(roles.hba_lines())
    typer.echo(dsn)
    console.info(_server_note(settings))


def _apply_roles(conn, dsn: str):
    from urllib.parse import urlparse

    from retail_etl.db import roles

    database = urlparse(dsn).path.lstrip("/") or "postgres"
    with conn.cursor() as cur:
        done = roles.apply(cur, database)
    conn.commit()
    return done


@db_app.command("roles")
@handled
def db_roles(dsn: DsnOpt = None) -> None:
    """Create or update the warehouse's roles and grants.

    Run it as an administrator. retail_owner owns everything; retail_loader loads (as
    retail_owner); retail_reporting and retail_analyst read the mart only. Passwords are
    read from RETAIL_ETL_LOADER_PASSWORD, RETAIL_ETL_REPORTING_PASSWORD and
    RETAIL_ETL_ANALYST_PASSWORD, never printed.
    Idempotent: run it again after a load made by another login.

    Example:
        RETAIL_ETL_LOADER_PASSWORD=... retail-etl db roles --dsn postgresql://admin@host/retail
    """
    import pipelines
    from retail_etl.db import roles
    from retail_etl.db.connect import connect
    from retail_etl.schema import apply_schema

    url = _dsn(dsn)
    conn = connect(url)
    try:
        apply_schema(conn, pipelines.PROJECT)
        done = _apply_roles(conn, url)
    finally:
        conn.close()
    for login in roles.LOGINS:
        how = ("password set from " if login in done.passwords_set else
               "no password: set ") + roles.password_variable(login)
        console.info(f"{login}: {how}")
    console.info(f"{roles.OWNER} owns dw, etl and mart ({done.objects_owned} objects handed over)")


@db_app.command("mask-copy")
@handled
def db_mask_copy(
    to: Annotated[str, typer.Option("--to", metavar="DSN", show_default=False,
                                    help="The database to copy into (empty, or --replace).")],
    dsn: DsnOpt = None,
    replace: Annotated[bool, typer.Option(help="Overwrite a copy the target already holds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A non-production copy, every personal value pseudonymised.

    Names, emails, cities and states (in the dimensions, their observed versions and the
    rejects' raw rows) hold their keyed pseudonyms; keys, facts and the mart are copied as
    they are, so the KPIs match to the cent. One transaction: before it commits, the copy is
    searched for every original name and email of the source, in every table of every
    schema; one found, and nothing is committed. The audit log and the masking key are not
    copied.

    Example:
        retail-etl db mask-copy --to postgresql://dev@devhost:5432/retail_masked
    """
    import dataclasses
    import re

    import pipelines
    from retail_etl.db.connect import redact
    from retail_etl.db.mask_copy import mask_copy
    from retail_etl.errors import ConfigError

    source = _dsn(dsn)
    if not re.match(r"^postgres(ql)?://", to):
        raise ConfigError(f"--to {redact(to)!r} is not a postgresql:// URL",
                          hint="e.g. --to postgresql://user@host:5432/retail_masked")
    done = mask_copy(source, to, pipelines.PROJECT, replace=replace)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(done)))
        return
    masked = "; ".join(f"{t} ({', '.join(cs)})" for t, cs in done.masked.items())
    console.info(f"copied {done.tables} tables ({done.rows:,} rows) to {redact(to)} in "
                 f"{done.seconds:.1f}s; pseudonymised: {masked}")
    console.info(f"checked {done.columns_checked} text columns of the copy against "
                 f"{done.originals:,} original names and emails: none left")


@db_app.command("down")
@handled
def db_down() -> None:
    """Stop the local cluster (its data stays in data/pg).

    Example:
        retail-etl db down
    """
    from retail_etl.db.cluster import Cluster

    stopped = Cluster(load_settings().pg_dir).down()
    console.info("stopped" if stopped else "not running")


@db_app.command("status")
@handled
def db_status() -> None:
    """Say whether the local cluster runs, and its DSN.

    Exits with 1 when it does not run.

    Example:
        retail-etl db status
    """
    from retail_etl.db.cluster import Cluster

    c = Cluster(load_settings().pg_dir)
    if not c.is_initialised():
        console.info(f"no local cluster in {c.root}")
        raise typer.Exit(1)
    if not c.is_running():
        console.info(f"stopped ({c.root})")
        raise typer.Exit(1)
    typer.echo(f"running: {c.dsn()}")


def _rows(df) -> tuple[list[str], list[list]]:
    return df.columns, [list(r) for r in df.iter_rows()]


def _render(df, title: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(df.write_json() + "\n")
    else:
        console.table(title, df.columns, [list(r) for r in df.iter_rows()])
