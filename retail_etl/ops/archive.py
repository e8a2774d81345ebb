"""`retail-etl archive` / `unarchive`: a fact's old month partitions leave PostgreSQL for
Parquet (`<data_dir>/archive/<fact>/month=YYYY-MM/part-0.parquet`, zstd) and come back.

A month is archived in steps, each safe to rerun after a crash at any point:
  1. export: the partition streamed to Parquet (written aside, then renamed), re-read with
     DuckDB and compared with PostgreSQL (rows, the measures' sums, the key range, a content
     checksum); only then the manifest is written beside it and the month recorded as
     'exported' in etl.archived_months. A month already exported and unchanged is not
     exported again.
  2. DETACH PARTITION ... CONCURRENTLY (readers are not blocked); a detach left pending by a
     crash is FINALIZEd.
  3. the detached table dropped and the month recorded 'archived', in one transaction.
The whole archive holds the warehouse lock (session-scoped), so no load changes a month
between its export and its detach. Dimensions are never archived.

A load whose lines fall into an archived month fails naming it (`guard`): it never re-opens
a month behind the archive's back, and never drops the lines. `unarchive` brings a month
back, checked against its manifest.

The checksum is the sum over the rows of a 60-bit slice of md5 of a canonical row text
(timestamps as epoch microseconds, numbers at their scale, NULL as \\N), computed the same
way by PostgreSQL and by DuckDB: so the Parquet is compared with the partition, and a month
brought back with the manifest, without trusting the path in between."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import adbc_driver_manager
import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retail_etl import hooks
from retail_etl.config import Settings
from retail_etl.db import locks
from retail_etl.db.connect import connect, db_error, resolve_dsn
from retail_etl.errors import EtlError
from retail_etl.load import partitions
from retail_etl.load.copy import ingest
from retail_etl.ops import manifest
from retail_etl.spec import FactByPartition, Project

ROW_GROUP = 1 << 20


class ArchiveError(EtlError):
    """An archive step found what it must not go on from."""


@dataclass(frozen=True)
class Col:
    name: str
    type: str  # format_type(): text, integer, numeric(12,2), timestamp with time zone, ...

    @property
    def pg_text(self) -> str:
        if self.type.startswith("timestamp"):
            v = f"(extract(epoch FROM {self.name}) * 1000000)::bigint::text"
        else:
            v = f"{self.name}::text"
        return f"coalesce({v}, '\\N')"

    @property
    def duck_text(self) -> str:
        v = (f"epoch_us({self.name})::VARCHAR" if self.type.startswith("timestamp")
             else f"{self.name}::VARCHAR")
        return f"coalesce({v}, '\\N')"

    @property
    def decimal(self) -> pa.DataType | None:
        if not self.type.startswith("numeric"):
            return None
        if "(" not in self.type:
            raise ArchiveError(f"column {self.name} is numeric without a scale: its archive "
                               "would not be exact")
        p, s = self.type[self.type.index("(") + 1:-1].split(",")
        return pa.decimal128(int(p), int(s))


def month_label(yyyymm: int) -> str:
    return f"{yyyymm // 100:04d}-{yyyymm % 100:02d}"


def month_dir(settings: Settings, fact: FactByPartition, yyyymm: int) -> Path:
    return (settings.data_dir / "archive" / fact.table.split(".")[-1]
            / f"month={month_label(yyyymm)}")


def columns(cur, table: str) -> list[Col]:
    cur.execute(f"SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                f"WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped "
                f"ORDER BY attnum")
    return [Col(n, t) for n, t in cur.fetchall()]


def _measure_sql(fact: FactByPartition, cols: list[Col], source: str, duck: bool) -> str:
    """rows, the measures' sums, the key range and the checksum of `source` (a table or a
    Parquet scan), in PostgreSQL's dialect or DuckDB's: the same figures either way."""
    row = " || '|' || ".join(c.duck_text if duck else c.pg_text for c in cols)
    h = ("('0x' || left(md5(r), 15))::BIGINT::HUGEINT" if duck
         else "('x' || left(md5(r), 15))::bit(60)::bigint::numeric")
    txt = "VARCHAR" if duck else "text"
    key = " || '|' || ".join(f"{k}::{txt}" for k in fact.natural_key)
    # (no coalesce: an empty month's NULL sums read the same in both; the key's range in
    # byte order, as DuckDB compares)
    sums = "".join(f", sum({m})::{txt}" for m in _summable(fact))
    c = "" if duck else ' COLLATE "C"'
    return (f"SELECT count(*), sum({h})::{txt}, min(k{c}), max(k{c}){sums} FROM "
            f"(SELECT {row} AS r, {key} AS k, * FROM {source}) x")


def _summable(fact: FactByPartition) -> list[str]:
    """The measures that add up (numbers, not a status or an id)."""
    return [m for m in fact.measures if fact.dtypes.get(m) is not None
            and (fact.dtypes[m].is_numeric() or isinstance(fact.dtypes[m], pl.Decimal))]


def _figures(fact: FactByPartition, values: tuple) -> dict:
    n, checksum, lo, hi, *sums = values
    return {"rows": int(n), "checksum": str(checksum), "key_range": [lo, hi],
            "sums": dict(zip(_summable(fact), (str(s) for s in sums), strict=True))}


def measure_pg(cur, fact: FactByPartition, cols: list[Col], table: str) -> dict:
    cur.execute(_measure_sql(fact, cols, table, duck=False))
    return _figures(fact, cur.fetchone())


def measure_parquet(fact: FactByPartition, cols: list[Col], files: list[Path]) -> dict:
    scan = "read_parquet([" + ", ".join(f"'{p}'" for p in files) + "])"
    con = duckdb.connect()
    try:
        return _figures(fact, con.execute(_measure_sql(fact, cols, scan, duck=True)).fetchone())
    finally:
        con.close()




def _partition_state(cur, fact: FactByPartition, name: str) -> str:
    """attached, pending (a detach a crash left half done), detached, or gone."""
    cur.execute(f"SELECT to_regclass('{name}') IS NOT NULL")
    if not cur.fetchone()[0]:
        return "gone"
    cur.execute(f"SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = '{name}'::regclass "
                f"AND inhparent = '{fact.table}'::regclass")
    row = cur.fetchone()
    return "detached" if row is None else ("pending" if row[0] else "attached")


def _recorded(cur, fact: FactByPartition) -> dict[int, str]:
    cur.execute("SELECT month, state FROM etl.archived_months WHERE fact = $1",
                parameters=(fact.table,))
    return dict(cur.fetchall())


def _attached_months(cur, fact: FactByPartition) -> dict[int, str]:
    prefix = f"{fact.table}_"
    return {int(n[len(prefix):]): n for n in partitions.existing_partitions(cur, fact.table)
            if n.startswith(prefix) and n[len(prefix):].isdigit()}


def cutoff(now: datetime, older_than_months: int) -> int:
    """The first month kept: months before it are older than N whole months."""
    total = now.year * 12 + (now.month - 1) - older_than_months
    return (total // 12) * 100 + total % 12 + 1


def plan(settings: Settings, project: Project, older_than_months: int,
         now: datetime | None = None) -> list[dict]:
    """The months to archive (attached, older than the cutoff) and those a crash left
    half archived, with their row counts."""
    keep_from = cutoff(now or datetime.now(UTC), older_than_months)
    out = []
    conn = connect(resolve_dsn(settings))
    try:
        with conn.cursor() as cur:
            for fact in project.facts:
                recorded = _recorded(cur, fact)
                attached = _attached_months(cur, fact)
                todo = {m for m in attached if m < keep_from}
                todo |= {m for m, s in recorded.items() if s != "archived"}
                for m in sorted(todo):
                    name = f"{fact.table}_{m}"
                    state = _partition_state(cur, fact, name)
                    rows = None
                    if state != "gone":
                        cur.execute(f"SELECT count(*) FROM {name}")
                        rows = cur.fetchone()[0]
                    out.append({"fact": fact.table, "month": month_label(m), "yyyymm": m,
                                "partition": state, "recorded": recorded.get(m), "rows": rows})
    finally:
        conn.close()
    return out


def archive(settings: Settings, project: Project, older_than_months: int,
            now: datetime | None = None) -> list[dict]:
    """Archive what `plan` lists; one result per month."""
    todo = plan(settings, project, older_than_months, now)
    facts = {f.table: f for f in project.facts}
    done = []
    conn = connect(resolve_dsn(settings), autocommit=True)
    try:
        with conn.cursor() as cur:
            locks.hold_warehouse_session(cur, settings.lock_wait_seconds)
            for item in todo:
                done.append(_archive_month(cur, settings, facts[item["fact"]], item["yyyymm"]))
    finally:
        conn.close()  # (the session lock goes with it)
    return done


def _archive_month(cur, settings: Settings, fact: FactByPartition, m: int) -> dict:
    name = f"{fact.table}_{m}"
    t0 = time.perf_counter()
    cols = columns(cur, fact.table)
    state = _partition_state(cur, fact, name)
    recorded = _recorded(cur, fact).get(m)
    out = {"fact": fact.table, "month": month_label(m), "rows": None}
    if recorded is None and state in ("pending", "detached"):
        raise ArchiveError(f"{name} is detached but was never exported: nothing is dropped",
                           hint="attach it back, or look at it: it is not the archive's")
    if state == "gone" and recorded == "exported":  # dropped by hand after the export
        if _manifest_if_valid(month_dir(settings, fact, m)) is None:
            raise ArchiveError(f"{name} is gone and its archive does not match its manifest")
        _mark_archived(cur, fact, m)
    if state == "attached":
        doc = _exported(cur, settings, fact, cols, m, name)
        out |= {"rows": doc["rows"], "export_seconds": doc["export_seconds"],
                "parquet_bytes": sum(f["bytes"] for f in doc["files"].values()),
                "partition_bytes": doc["partition_bytes"], "exported": doc["exported_now"]}
        hooks.checkpoint("archive:exported")
        cur.execute(f"ALTER TABLE {fact.table} DETACH PARTITION {name} CONCURRENTLY")
        state = "detached"
        hooks.checkpoint("archive:detached")
    if state == "pending":
        cur.execute(f"ALTER TABLE {fact.table} DETACH PARTITION {name} FINALIZE")
        state = "detached"
    if state == "detached":
        doc = json.loads((month_dir(settings, fact, m) / "manifest.json").read_text())
        cur.execute(f"SELECT count(*) FROM {name}")
        (n,) = cur.fetchone()
        if n != doc["rows"]:
            raise ArchiveError(f"{name}: {n} rows detached where the archive has "
                               f"{doc['rows']}: nothing is dropped")
        cur.execute("BEGIN")
        cur.execute(f"DROP TABLE {name}")
        _mark_archived(cur, fact, m)
        cur.execute("COMMIT")
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _mark_archived(cur, fact: FactByPartition, m: int) -> None:
    cur.execute("UPDATE etl.archived_months SET state = 'archived', archived_at = now() "
                "WHERE fact = $1 AND month = $2", parameters=(fact.table, m))


def _exported(cur, settings: Settings, fact: FactByPartition, cols: list[Col], m: int,
              name: str) -> dict:
    """The month's verified export and manifest: the one on disk when it still matches the
    partition, else a new one."""
    d = month_dir(settings, fact, m)
    t0 = time.perf_counter()
    in_pg = measure_pg(cur, fact, cols, name)
    doc = _manifest_if_valid(d)
    if doc is not None and _same(doc, in_pg):
        doc["exported_now"] = False
    else:
        doc = _export(cur, fact, cols, name, d, in_pg)
        doc["month"], doc["fact"] = month_label(m), fact.table
        cur.execute(f"SELECT pg_total_relation_size('{name}')")
        doc["partition_bytes"] = cur.fetchone()[0]
        doc["export_seconds"] = round(time.perf_counter() - t0, 3)
        tmp = d / "manifest.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.rename(d / "manifest.json")
        doc["exported_now"] = True
    cur.execute("INSERT INTO etl.archived_months (fact, month, state, path, manifest) "
                "VALUES ($1, $2, 'exported', $3, $4::jsonb) ON CONFLICT (fact, month) DO "
                "UPDATE SET state = 'exported', path = excluded.path, "
                "manifest = excluded.manifest, exported_at = now()",
                parameters=(fact.table, m, str(d), json.dumps(doc)))
    return doc


def _same(doc: dict, figures: dict) -> bool:
    return all(doc[k] == figures[k] for k in ("rows", "checksum", "key_range", "sums"))


def _manifest_if_valid(d: Path) -> dict | None:
    """The manifest on disk, if every file it lists is there with its sha256."""
    path = d / "manifest.json"
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    for f, meta in doc["files"].items():
        p = d / f
        if not p.exists() or manifest.sha256_of(p) != meta["sha256"]:
            return None
    return doc


def _export(cur, fact: FactByPartition, cols: list[Col], name: str, d: Path,
            in_pg: dict) -> dict:
    """Stream the partition (in natural key order) to Parquet, then compare the file,
    re-read, with what PostgreSQL holds."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    tmp, final = d / "part-0.parquet.tmp", d / "part-0.parquet"
    select = ", ".join(f"{c.name}::text AS {c.name}" if c.decimal else c.name for c in cols)
    cur.execute(f"SELECT {select} FROM {name} ORDER BY {', '.join(fact.natural_key)}")
    reader = cur.fetch_record_batch()
    schema = pa.schema([pa.field(c.name, c.decimal) if c.decimal else reader.schema.field(c.name)
                        for c in cols])
    group, held = [], 0
    with pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for batch in reader:  # buffered to row groups of ~1M rows (the batches are small)
            group.append(pa.record_batch(
                [pc.cast(batch.column(c.name), c.decimal) if c.decimal else batch.column(c.name)
                 for c in cols], schema=schema))
            held += batch.num_rows
            if held >= ROW_GROUP:
                w.write_table(pa.Table.from_batches(group, schema), row_group_size=ROW_GROUP)
                group, held = [], 0
        if group:
            w.write_table(pa.Table.from_batches(group, schema), row_group_size=ROW_GROUP)
    tmp.rename(final)
    in_file = measure_parquet(fact, cols, [final])
    if not _same(in_file, in_pg):
        shutil.rmtree(d, ignore_errors=True)
        raise ArchiveError(f"{name}: the Parquet read back differs from PostgreSQL "
                           f"({in_file} where PostgreSQL has {in_pg}): nothing is detached")
    return {**in_pg, "schema": {c.name: c.type for c in cols},
            "files": {final.name: {"sha256": manifest.sha256_of(final),
                                   "bytes": final.stat().st_size}}}


def unarchive(settings: Settings, project: Project, month: str) -> list[dict]:
    """Bring `month` (YYYY-MM) of every fact archived there back into PostgreSQL, built
    aside, checked against the manifest, attached and recorded in one transaction; its
    Parquet is removed after the commit."""
    m = _parse_month(month)
    done = []
    conn = connect(resolve_dsn(settings))
    try:
        with conn.cursor() as cur:
            locks.hold_warehouse(cur, settings.lock_wait_seconds)
            for fact in project.facts:
                state = _recorded(cur, fact).get(m)
                if state is None:
                    continue
                if state != "archived":
                    raise ArchiveError(f"{month_label(m)} of {fact.table} is half archived",
                                       hint="finish it first: `retail-etl archive "
                                       "--older-than-months N` (it resumes)")
                done.append(_bring_back(cur, settings, fact, m))
            if not done:
                raise ArchiveError(f"no fact has {month_label(m)} archived",
                                   hint="see `retail-etl archive --list`")
        conn.commit()
    finally:
        conn.close()
    for item in done:
        shutil.rmtree(item.pop("dir"), ignore_errors=True)
    return done


def _bring_back(cur, settings: Settings, fact: FactByPartition, m: int) -> dict:
    t0 = time.perf_counter()
    d = month_dir(settings, fact, m)
    doc = _manifest_if_valid(d)
    if doc is None:
        raise ArchiveError(f"the archive of {month_label(m)} in {d} is missing or does not "
                           "match its manifest (sha256)")
    name = f"{fact.table}_{m}"
    cols = columns(cur, fact.table)
    if {c.name: c.type for c in cols} != doc["schema"]:
        raise ArchiveError(f"{fact.table}'s columns changed since {month_label(m)} was "
                           f"archived ({doc['schema']})")
    partitions.create_aside(cur, fact.table, name)
    table = pq.read_table([d / f for f in doc["files"]])
    ingest(cur, table.select([c.name for c in cols]), name.split(".")[-1],
           schema=name.split(".")[0])
    back = measure_pg(cur, fact, cols, name)
    if not _same(doc, back):
        raise ArchiveError(f"{name} brought back differs from its manifest ({back} where "
                           f"the archive has {doc}): nothing changed")
    partitions.index_and_check(cur, fact.table, name, m,
                               partitions.index_definitions(cur, fact.table), fact.date_key)
    partitions.attach(cur, fact.table, name, m)
    cur.execute(f"ANALYZE {name}")
    cur.execute("DELETE FROM etl.archived_months WHERE fact = $1 AND month = $2",
                parameters=(fact.table, m))
    return {"fact": fact.table, "month": month_label(m), "rows": back["rows"],
            "seconds": round(time.perf_counter() - t0, 3), "dir": d}


def _parse_month(month: str) -> int:
    try:
        dt = datetime.strptime(month, "%Y-%m")
    except ValueError:
        raise ArchiveError(f"--month {month!r} is not YYYY-MM") from None
    return dt.year * 100 + dt.month


def guard(cur, fact: FactByPartition, months: list[int]) -> None:
    """A load's lines in an archived month: fail, naming the months (never drop them)."""
    cur.execute("SELECT month FROM etl.archived_months WHERE fact = $1 ORDER BY month",
                parameters=(fact.table,))
    hit = sorted({r[0] for r in cur.fetchall()} & set(months))
    if hit:
        names = ", ".join(month_label(x) for x in hit)
        raise ArchiveError(f"lines of {fact.table} fall into archived month(s) {names}",
                           hint=f"bring them back first: `retail-etl unarchive --month "
                           f"{month_label(hit[0])}`, then load again")


def archived(settings: Settings) -> list[dict]:
    conn = connect(resolve_dsn(settings))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT fact, month, state, path, (manifest->>'rows')::bigint, "
                        "exported_at, archived_at FROM etl.archived_months ORDER BY 1, 2")
            rows = cur.fetchall()
    finally:
        conn.close()
    return [{"fact": f, "month": month_label(m), "state": s, "path": p, "rows": n,
             "exported_at": e, "archived_at": a} for f, m, s, p, n, e, a in rows]


def query(settings: Settings, project: Project, sql: str, include_archive: bool):
    """A read-only query as an exact frame. include_archive: answered by DuckDB over the
    tables it names, each read from PostgreSQL (numeric exact), a fact's archived months
    (its Parquet) added to it, so totals are the same before and after archiving."""
    import re

    from retail_etl.report import exact_frame

    conn = connect(resolve_dsn(settings))
    try:
        with conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            if not include_archive:
                try:
                    cur.execute(sql)
                except adbc_driver_manager.Error as e:
                    raise db_error(e, "the query failed") from None
                return exact_frame(cur.fetch_arrow_table())
            con = duckdb.connect()
            con.execute("SET TimeZone = 'UTC'")
            facts = {f.table: f for f in project.facts}
            named = {(s.lower(), t.lower()) for s, t in
                     re.findall(r"\b(dw|mart|etl)\s*\.\s*(\w+)", sql, flags=re.I)}
            for schema, table in sorted(named):
                cur.execute(f"SELECT to_regclass('{schema}.{table}') IS NOT NULL")
                if not cur.fetchone()[0]:
                    continue  # (DuckDB will name it in its error)
                cur.execute(f"SELECT * FROM {schema}.{table}")
                frame = exact_frame(cur.fetch_arrow_table())
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                con.register(f"pg_{schema}_{table}", frame)
                union = ""
                fact = facts.get(f"{schema}.{table}")
                parts = []
                if fact:  # archived months only: a half-archived one is still in PostgreSQL
                    cur.execute("SELECT path, manifest FROM etl.archived_months WHERE "
                                "fact = $1 AND state = 'archived' ORDER BY month",
                                parameters=(fact.table,))
                    parts = [Path(d) / f for d, doc in cur.fetchall()
                             for f in json.loads(doc)["files"]]
                if parts:
                    union = (" UNION ALL BY NAME SELECT * FROM read_parquet(["
                             + ", ".join(f"'{p}'" for p in parts) + "])")
                con.execute(f"CREATE VIEW {schema}.{table} AS SELECT * FROM "
                            f"pg_{schema}_{table}{union}")
        conn.rollback()
    finally:
        conn.close()
    try:
        return pl.from_arrow(con.sql(sql).to_arrow_table())
    except duckdb.Error as e:
        raise ArchiveError(f"the query failed in DuckDB: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
