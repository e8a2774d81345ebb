"""Extract an operational PostgreSQL database into Parquet staging as the project's entities,
incrementally. Which tables make which entity is declared beside the pipelines (a Mapping,
e.g. pipelines/shop.py): dimension tables, and a fact read as orders and their lines.

- Reads go through ConnectorX, partitioned on the integer primary key, straight to Arrow.
- Incremental by watermark, per source table: the rows whose (updated_at, primary key) is
  above the stored mark minus the overlap window (for transactions that commit late), and
  not above `hi`, the source's clock when the extraction began (a row changed during the
  extraction waits for the next run). The new marks are returned, not stored: the run
  stores them in the transaction that commits its data.
- An order whose row changed brings all its lines, and its state: lines it lost, and the
  lines of a cancelled order, leave the fact table. A changed line brings itself.
- Deletions of products, customers and stores: soft deletes arrive as rows (`is_deleted`);
  hard deletes are found by a scan of the keys the source still has.
- `full`: every row, whatever the marks (a snapshot; also finds lines deleted without
  their order being touched).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import adbc_driver_manager
import connectorx as cx
import polars as pl
import pyarrow as pa
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from retail_etl import console
from retail_etl.config import PostgresSource
from retail_etl.db import faults
from retail_etl.db.connect import connect, connectorx_dsn, redact
from retail_etl.db.sqltext import ident, literal, qualified
from retail_etl.errors import DatabaseError, DatabaseUnavailable, InputError
from retail_etl.extract.files import LINE_BITS, Extracted, _as_text
from retail_etl.load.copy import copy_temp
from retail_etl.monitor.log import retried
from retail_etl.spec import Entity


@dataclass(frozen=True)
class Table:
    """An operational table: its primary key, and its columns with the kind of value each
    must hold (the schema check compares them with the source's catalogue)."""

    name: str
    key: tuple[str, ...]
    columns: dict[str, str]
    optional: tuple[str, ...] = ()  # may be absent (mapped to "")


def dimension_table(name: str, key: str, *columns: str, **kinds: str) -> Table:
    """A table that is one dimension's entity, row for row: text columns unless a kind is
    given, soft deletes (`is_deleted`, optional) and `updated_at`."""
    cols = {key: "id", **{c: "text" for c in columns}, **kinds,
            "is_deleted": "bool", "updated_at": "timestamp"}
    return Table(name, (key,), cols, optional=("is_deleted",))


@dataclass(frozen=True)
class Mapping:
    """How an operational database's tables make the project's entities (declared in
    pipelines/, e.g. pipelines/shop.py): dimension tables named as their entities, and
    one fact read as documents (`orders`: one row per order, with its status) and their
    lines (`order_items`), each line one row of the `fact` entity. The configuration's
    `tables` and `columns` rename these for a source laid out the same way."""

    dimensions: tuple[Table, ...]
    orders: Table
    order_items: Table
    fact: str = "sales"

    @property
    def tables(self) -> dict[str, Table]:
        return {t.name: t for t in (*self.dimensions, self.orders, self.order_items)}


STREAM_BATCH = 65_536  # rows per Arrow batch from ConnectorX
# PostgreSQL type names by the kind of value they can hold
_FAMILIES = {
    "int": {"int2", "int4", "int8"},
    "text": {"text", "varchar", "bpchar", "name", "citext"},
    "decimal": {"numeric", "int2", "int4", "int8"},
    "timestamp": {"timestamptz", "timestamp"},
    "date": {"date"},
    "bool": {"bool"},
}
_FAMILIES["id"] = _FAMILIES["int"] | _FAMILIES["text"] | {"uuid"}


@dataclass
class Mark:
    """A watermark: the greatest (updated_at, primary key) a run has read from a table."""

    table: str
    ts: datetime
    key: list


@dataclass
class OltpExtract:
    source: str
    extracted: dict[str, Extracted]  # entity -> staged rows
    documents: pl.DataFrame  # [order_id, version, cancelled, date_key]: orders sent whole
    delivered: dict[str, pl.Series]  # dimension entity -> keys read in this run
    present: dict[str, pl.Series]  # dimension entity -> every key the source has now
    hi: datetime  # the source's clock when the extraction began
    full: bool = False  # a snapshot: its documents are the whole truth
    marks: list[Mark] = field(default_factory=list)
    reader: Reader | None = None  # for the scan of the lines it no longer has
    first: bool = False  # the source's first run: every line it has was just read


class Reader:
    """One configured source: names resolved through the configuration, reads retried."""

    def __init__(self, name: str, cfg: PostgresSource, dsn: str, mapping: Mapping):
        self.name, self.cfg, self.dsn, self.mapping = name, cfg, dsn, mapping
        self.tables = mapping.tables
        self.dimensions = tuple(t.name for t in mapping.dimensions)
        self.int_key: dict[str, bool] = {}
        self.key_type: dict[str, str] = {}  # the first key column's type name, per table
        self.absent: set[tuple[str, str]] = set()  # optional columns the source lacks

    def table_name(self, t: str) -> str:
        """The source's name for table t, as configured (`table` or `schema.table`)."""
        return self.cfg.tables.get(t, self.tables[t].name)

    def table(self, t: str) -> str:
        return qualified(self.table_name(t))

    def col_name(self, t: str, c: str) -> str | None:
        """The source column for our column c of table t; None if mapped to "" or an
        optional column the source does not have (see check_schema)."""
        if (t, c) in self.absent:
            return None
        return self.cfg.columns.get(t, {}).get(c, c) or None

    def col(self, t: str, c: str) -> str | None:
        """The same, quoted for SQL."""
        name = self.col_name(t, c)
        return ident(name) if name else None

    def read(self, sql: str, partition_on: str | None = None,
             bounds: tuple[int, int] | None = None) -> pl.DataFrame:
        """The whole result (for narrow reads: keys, order states)."""
        return pl.concat(list(self.stream(sql, partition_on, bounds, batch_rows=None)))

    def stream(self, sql: str, partition_on: str | None = None,
               bounds: tuple[int, int] | None = None,
               batch_rows: int | None = -1) -> Iterator[pl.DataFrame]:
        """The result in frames of about cfg.batch_rows rows (None: one frame), read through
        ConnectorX's Arrow stream, so a big table never sits in memory whole. At least one
        frame, maybe empty, comes out."""
        batch_rows = self.cfg.batch_rows if batch_rows == -1 else batch_rows
        parts = self.cfg.partitions if partition_on and bounds and bounds[1] > bounds[0] else 1
        try:
            reader = _read_sql(self.dsn, sql, partition_on if parts > 1 else None, bounds, parts,
                               min(batch_rows or STREAM_BATCH, STREAM_BATCH))
            pending, n, sent = [], 0, False
            for batch in reader:
                pending.append(batch)
                n += batch.num_rows
                if batch_rows and n >= batch_rows:
                    yield pl.from_arrow(pa.Table.from_batches(pending))
                    pending, n, sent = [], 0, True
            if pending or not sent:
                yield pl.from_arrow(pa.Table.from_batches(pending, schema=reader.schema))
        except Exception as e:  # ConnectorX raises RuntimeError/PanicException with the text
            raise _source_error(self, e) from None


@retry(retry=retry_if_exception(faults.transient), stop=stop_after_attempt(4),
       wait=wait_random_exponential(multiplier=0.5, max=4), reraise=True,
       before_sleep=retried(None))  # (the source being read: monitor.log.bind)
def _read_sql(dsn: str, sql: str, partition_on: str | None,
              bounds: tuple[int, int] | None, parts: int, batch: int):
    # in UTC, like our ADBC sessions: a timestamp without time zone is UTC on both sides;
    # standard strings, as sqltext.literal renders this query's values for them
    kw = {"return_type": "arrow_stream", "batch_size": batch,
          "pre_execution_query": ["SET TIME ZONE 'UTC'", "SET standard_conforming_strings = on"]}
    dsn = connectorx_dsn(dsn)
    if partition_on:
        return cx.read_sql(dsn, sql, partition_on=partition_on, partition_range=bounds,
                           partition_num=parts, **kw)
    return cx.read_sql(dsn, sql, **kw)


def _source_error(r: Reader, e: BaseException):
    text = str(e).replace("[libpq] ", "")
    detail = redact(next((ln for ln in text.splitlines() if ln.strip()), type(e).__name__))
    detail = detail if len(detail) < 200 else detail[:200] + "..."
    if faults.transient(e):
        return DatabaseUnavailable(f"source {r.name}: cannot connect to {redact(r.dsn)}: {detail}",
                                   hint="is the source database running and reachable?")
    return DatabaseError(f"source {r.name}: {detail}")


# ---- the schema check ------------------------------------------------------------------------


def check_schema(cur, r: Reader) -> dict[str, list[str]]:
    """Fail before anything is read if a table or a column the load needs is gone or holds
    another kind of value (naming it); return the columns the load does not use, per table."""
    extra: dict[str, list[str]] = {}
    for t, spec in r.tables.items():
        name = r.table_name(t)
        cur.execute("SELECT to_regclass($1)::text", parameters=(r.table(t),))
        if cur.fetchone()[0] is None:
            raise InputError(f"source {r.name}: table {name!r} does not exist",
                             hint=f"set sources.{r.name}.tables.{t} in the configuration")
        cur.execute("""
            SELECT a.attname::text, t.typname::text FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
        """, parameters=(r.table(t),))
        have = dict(cur.fetchall())
        used = set()
        for c, kind in spec.columns.items():
            col = r.col_name(t, c)
            if col is None:
                if c in spec.optional:
                    continue
                raise InputError(f"source {r.name}: column {name}.{c} is required")
            used.add(col)
            if col not in have:
                if c in spec.optional and c not in r.cfg.columns.get(t, {}):
                    r.absent.add((t, c))  # read as NULL: no soft deletes, no discounts
                    continue
                raise InputError(f"source {r.name}: column {name}.{col} is missing",
                                 hint=f"the load needs it as {kind}; map another column with "
                                 f"sources.{r.name}.columns.{t}.{c}")
            if have[col] not in _FAMILIES[kind]:
                raise InputError(f"source {r.name}: column {name}.{col} is {have[col]}, "
                                 f"expected {kind}", hint="the source schema changed")
        r.key_type[t] = have[r.col_name(t, spec.key[0])]
        r.int_key[t] = r.key_type[t] in _FAMILIES["int"]
        if not set(have) - used:
            continue
        extra[name] = sorted(set(have) - used)
    return extra


# ---- SQL -------------------------------------------------------------------------------------


def window(r: Reader, t: str, alias: str, mark: Mark | None, hi: datetime, full: bool) -> str:
    """The rows of table t this run reads (see the module docstring)."""
    if full:
        return "TRUE"
    u = f"{alias}.{r.col(t, 'updated_at')}"
    cond = f"{u} <= {literal(hi)}"
    if mark is None:  # a row without updated_at is read once, to be judged (not skipped)
        return f"({cond} OR {u} IS NULL)"
    keys = ", ".join(f"{alias}.{r.col(t, k)}" for k in r.tables[t].key)
    lo = f"{literal(mark.ts)} - {literal(float(r.cfg.overlap_seconds))} * interval '1 second'"
    return f"{cond} AND ({u}, {keys}) > ({lo}, {', '.join(literal(v) for v in mark.key)})"


def _select(r: Reader, t: str, alias: str, entity: Entity, override: dict[str, str]) -> str:
    out = []
    for c in entity.column_names:
        if c in override:
            out.append(f"{override[c]} AS {c}")
            continue
        src = r.col(t, c) if c in r.tables[t].columns else None
        kind = r.tables[t].columns.get(c)
        out.append(f"{alias}.{src}::text AS {c}" if src and kind == "id"
                   else f"{alias}.{src} AS {c}" if src else f"NULL::text AS {c}")
    return ", ".join(out)


def dimension_sql(r: Reader, entity: Entity, w: str) -> str:
    t = entity.name
    part = f", t.{r.col(t, r.tables[t].key[0])} AS _part" if r.int_key[t] else ""
    return f"SELECT {_select(r, t, 't', entity, {})}{part} FROM {r.table(t)} t WHERE {w}"


def sales_sql(r: Reader, entity: Entity, w_items: str, w_orders: str | None,
              full: bool) -> str:
    """Lines of orders not cancelled: the changed lines, and every line of a changed order.
    A line's version is the later of its own and its order's updated_at."""
    o = lambda c: f"o.{r.col('orders', c)}"  # noqa: E731
    i = lambda c: f"i.{r.col('order_items', c)}"  # noqa: E731
    override = {
        "order_ts": o("order_ts"), "customer_id": f"{o('customer_id')}::text",
        "store_id": f"{o('store_id')}::text",
        "discount": f"coalesce({i('discount')}, 0)" if r.col("order_items", "discount")
        else "0::numeric",
        "updated_at": f"greatest({o('updated_at')}, {i('updated_at')})",
    }
    part = f", {o('order_id')} AS _part" if r.int_key["orders"] else ""
    head = (f"SELECT {_select(r, 'order_items', 'i', entity, override)}{part} "
            f"FROM {r.table('order_items')} i JOIN {r.table('orders')} o "
            f"ON {o('order_id')} = {i('order_id')} WHERE NOT {_cancelled(r)}")
    if full:
        return head
    if w_orders is None:  # a first run: every line is new anyway
        return f"{head} AND ({w_items})"
    # one SELECT for ConnectorX; each arm uses its table's updated_at index
    return f"SELECT * FROM ({head} AND ({w_items}) UNION {head} AND ({w_orders})) u"


def _cancelled(r: Reader) -> str:
    statuses = ", ".join(literal(s) for s in r.cfg.cancelled_statuses)
    return f"coalesce(o.{r.col('orders', 'status')} IN ({statuses}), false)"


def documents_sql(r: Reader, w_orders: str) -> str:
    o = lambda c: f"o.{r.col('orders', c)}"  # noqa: E731
    part = f", {o('order_id')} AS _part" if r.int_key["orders"] else ""
    return (f"SELECT {o('order_id')}::text AS order_id, {o('updated_at')} AS version, "
            f"{o('order_ts')} AS order_ts, {_cancelled(r)} AS cancelled{part} "
            f"FROM {r.table('orders')} o WHERE {w_orders}")


# ---- the extraction --------------------------------------------------------------------------


def read_marks(cur, source: str) -> dict[str, Mark]:
    cur.execute("SELECT entity, watermark, tiebreak FROM etl.watermarks WHERE source = $1",
                parameters=(source,))
    return {t: Mark(t, ts, json.loads(k)) for t, ts, k in cur.fetchall() if ts is not None}


def extract_oltp(r: Reader, entities: dict[str, Entity], marks: dict[str, Mark],
                 stage_dir: Path, first_file: int, *, full: bool) -> OltpExtract:
    """Stage the source's changed rows as entities; files are numbered from first_file (the
    load order of the run: sources in configuration order)."""
    try:
        src = connect(r.dsn, autocommit=True)
    except (DatabaseUnavailable, DatabaseError) as e:
        e.message = f"source {r.name}: {e.message}"  # which of the servers refused
        raise
    try:
        with src.cursor() as cur:
            new_columns = check_schema(cur, r)
            for name, cols in new_columns.items():
                console.warn(f"source {r.name}: {name} has columns the load does not use: "
                             + ", ".join(cols))
            cur.execute("SELECT clock_timestamp()")
            hi = cur.fetchone()[0]
            new_marks = [m for t in r.tables if (m := _top(cur, r, t, hi, marks.get(t)))]
            bounds = {t: _bounds(cur, r, t) for t in r.tables if r.int_key[t]}
    except adbc_driver_manager.Error as e:
        raise _source_error(r, e) from None
    finally:
        src.close()
    w = {t: window(r, t, alias, marks.get(t), hi, full)
         for t, alias in (*((d, "t") for d in r.dimensions), ("orders", "o"), ("order_items", "i"))}
    first = "orders" not in marks and "order_items" not in marks
    out = OltpExtract(r.name, {}, pl.DataFrame(), {}, {}, hi, full, new_marks, r, first)
    file_no = first_file
    for t in r.dimensions:
        entity = entities[t]
        frames = r.stream(dimension_sql(r, entity, w[t]), "_part", bounds.get(t))
        out.extracted[t], keys = _stage(frames, entity, stage_dir, file_no,
                                        f"{r.name}:{r.table_name(t)}")
        out.delivered[t] = keys
        out.present[t] = r.read(f"SELECT {r.col(t, r.tables[t].key[0])}::text AS key "
                                f"FROM {r.table(t)}")["key"]
        file_no += 1
    sales = entities[r.mapping.fact]
    frames = r.stream(sales_sql(r, sales, w["order_items"], None if first else w["orders"],
                                full), "_part", bounds.get("orders"))
    out.extracted[r.mapping.fact], _ = _stage(frames, sales, stage_dir, file_no,
                                       f"{r.name}:{r.table_name('order_items')}")
    docs = r.read(documents_sql(r, w["orders"]), "_part", bounds.get("orders"))
    # a snapshot is the whole truth at hi: lines it lacks go, whatever their version
    out.documents = docs.select(
        "order_id",
        pl.lit(hi).dt.convert_time_zone("UTC").alias("version") if full else _utc(docs, "version"),
        "cancelled",
        _utc(docs, "order_ts").dt.strftime("%Y%m%d").cast(pl.Int32).alias("date_key"))
    return out


# ---- the scan for lines the source no longer has (see load/gone_lines.py) -------------------

def line_hash(order_id: str, line_number: str) -> str:
    """A line's key hash, the same on both servers: the order id's text hashed with the
    line number as seed (one hash call per line, no string building)."""
    return f"hashtextextended({order_id}, {line_number})"


def _lines(r: Reader) -> tuple[str, str, str]:
    """(line hash, line number, FROM ... WHERE ...) of the lines that belong in the fact table:
    those not of a cancelled order. An anti join with the cancelled orders only: the scan
    reads order_items alone, without building a hash table of every order."""
    o, i = r.col("orders", "order_id"), r.col("order_items", "line_number")
    ik = r.col("order_items", "order_id")
    return (line_hash(f"i.{ik}::text", f"i.{i}"), f"i.{i}",
            f"FROM {r.table('order_items')} i WHERE NOT EXISTS (SELECT 1 FROM "
            f"{r.table('orders')} o WHERE o.{o} = i.{ik} AND {_cancelled(r)})")


def line_hashes(src, r: Reader) -> pl.DataFrame:
    """[h]: the key hash of every line the source has (8 bytes a line cross the wire)."""
    h, _, rest = _lines(r)
    return query(src, r, f"SELECT {h} AS h {rest}")


def order_states(src, r: Reader, order_ids: pl.Series) -> pl.DataFrame:
    """[order_id, cancelled, line_number] of these orders as the source has them now (a
    row per line; line_number NULL for an order without lines; no row: deleted)."""
    o, ik = r.col("orders", "order_id"), r.col("order_items", "order_id")
    frames = []
    for chunk in _chunks(order_ids.unique().sort(), 5000):
        # the ids bound as one JSON array, cast to the key's own type (its index is used)
        frames.append(query(src, r, f"""
            SELECT o.{o}::text AS order_id, {_cancelled(r)} AS cancelled,
                   i.{r.col('order_items', 'line_number')}::int AS line_number
            FROM {r.table('orders')} o LEFT JOIN {r.table('order_items')} i ON i.{ik} = o.{o}
            WHERE o.{o} = ANY(ARRAY(SELECT jsonb_array_elements_text($1::jsonb))::
                              {ident(r.key_type['orders'])}[])""", (json.dumps(chunk),)))
    if not frames:
        return pl.DataFrame(schema={"order_id": pl.String, "cancelled": pl.Boolean,
                                    "line_number": pl.Int32})
    return pl.concat(frames).with_columns(pl.col("line_number").cast(pl.Int32))


def _chunks(values: pl.Series, size: int) -> list[list]:
    return [values[i:i + size].to_list() for i in range(0, values.len(), size)]


@contextmanager
def session(r: Reader):
    """One autocommit session on the source (in UTC: months are UTC, as in the warehouse)
    for a few reads: `query(src, r, sql)`."""
    try:
        src = connect(r.dsn, autocommit=True)
    except (DatabaseUnavailable, DatabaseError) as e:
        e.message = f"source {r.name}: {e.message}"
        raise
    try:
        yield src
    finally:
        src.close()


def query(src, r: Reader, sql: str, parameters: tuple = ()) -> pl.DataFrame:
    try:
        with src.cursor() as cur:
            cur.execute(sql, parameters=parameters or None)
            return pl.from_arrow(cur.fetch_arrow_table())
    except adbc_driver_manager.Error as e:
        raise _source_error(r, e) from None


def _utc(df: pl.DataFrame, c: str) -> pl.Expr:
    """A timestamp column in UTC microseconds (a naive one is UTC, as in the contract)."""
    dtype = df.schema[c]
    e = pl.col(c).cast(pl.Datetime("us", getattr(dtype, "time_zone", None)))
    return (e.dt.convert_time_zone("UTC") if getattr(dtype, "time_zone", None)
            else e.dt.replace_time_zone("UTC")).alias(c)


def _top(cur, r: Reader, t: str, hi: datetime, old: Mark | None) -> Mark | None:
    """The greatest (updated_at, key) at or below hi: the table's next mark."""
    u = r.col(t, "updated_at")
    keys = [r.col(t, k) for k in r.tables[t].key]
    cur.execute(f"SELECT {u}, {', '.join(keys)} FROM {r.table(t)} WHERE {u} <= $1 "
                f"ORDER BY {u} DESC, {', '.join(k + ' DESC' for k in keys)} LIMIT 1",
                parameters=(hi,))
    row = cur.fetchone()
    if row is None:
        return old
    ts = row[0] if row[0].tzinfo else row[0].replace(tzinfo=UTC)  # naive: UTC
    new = Mark(t, ts, list(row[1:]))
    if old is not None and (old.ts, old.key) >= (new.ts, new.key):
        return old
    return new


def _bounds(cur, r: Reader, t: str) -> tuple[int, int]:
    k = r.col(t, r.tables[t].key[0])
    cur.execute(f"SELECT coalesce(min({k}), 0), coalesce(max({k}), 0) FROM {r.table(t)}")
    lo, hi = cur.fetchone()
    return int(lo), int(hi)


def _stage(frames: Iterator[pl.DataFrame], entity: Entity, stage_dir: Path, file_no: int,
           label: str) -> tuple[Extracted, pl.Series]:
    """The rows as text in the contract's columns, with file, line and load order, like a
    file of a drop (so cleaning, validation and dedup treat both sources alike): one staged
    file per frame, lines numbered on across them. Returns the staged rows and their keys."""
    ex, keys, line = Extracted(entity), [], 1
    for i, df in enumerate(frames):
        df = _as_text(df.drop("_part", strict=False)).select(entity.column_names).with_columns(
            _line=pl.int_range(line, line + pl.len(), dtype=pl.Int64),
            _file=pl.lit(label),
        ).with_columns(_seq=pl.lit(file_no << LINE_BITS, pl.Int64) + pl.col("_line"))
        out = stage_dir / entity.name / f"{file_no:05d}_{i:05d}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(out, compression="zstd")
        ex.staged.append(out)
        ex.rows += df.height
        line += df.height
        keys.append(df[entity.columns[0].name])
    return ex, pl.concat(keys)


def remember(cur, run, pulls: list[OltpExtract], gone: dict[tuple[str, str], pl.Series]) -> None:
    """The keys each database source delivered (less those it closed, `gone` per (source,
    entity)), and its new watermarks: committed with the data they describe, so a failed
    run reads the same rows again."""
    for pull in pulls:
        for entity, keys in pull.delivered.items():
            copy_temp(cur.connection, "stg_delivered", keys.unique().to_frame("key"))
            cur.execute("""
                INSERT INTO etl.source_keys (source, entity, key)
                SELECT $1, $2, key FROM stg_delivered WHERE key IS NOT NULL
                ON CONFLICT DO NOTHING
            """, parameters=(pull.source, entity))
            if cur.rowcount > 1000 and "etl.source_keys" not in run.analyze:
                run.analyze.append("etl.source_keys")  # the next run's anti join plans on it
            closed = gone.get((pull.source, entity))
            if closed is not None and closed.len():
                copy_temp(cur.connection, "stg_closed", closed.to_frame("key"))
                cur.execute("""
                    DELETE FROM etl.source_keys k USING stg_closed c
                    WHERE k.source = $1 AND k.entity = $2 AND k.key = c.key
                """, parameters=(pull.source, entity))
        save_marks(cur, pull.source, pull.marks, run.run_id)


def save_marks(cur, source: str, marks: list[Mark], run_id: int) -> None:
    """A source's new watermarks, in the run's transaction (an API's too)."""
    for m in marks:
        cur.execute("""
            INSERT INTO etl.watermarks (source, entity, watermark, tiebreak, run_id, updated_at)
            VALUES ($1, $2, $3, $4, $5, now())
            ON CONFLICT (source, entity) DO UPDATE SET watermark = excluded.watermark,
                tiebreak = excluded.tiebreak, run_id = excluded.run_id,
                updated_at = excluded.updated_at
            WHERE (etl.watermarks.watermark, etl.watermarks.tiebreak)
                  IS DISTINCT FROM (excluded.watermark, excluded.tiebreak)
        """, parameters=(source, m.table, m.ts, json.dumps(m.key, default=str), run_id))
