"""Web-analytics exports as a source (`kind = "events"`): a directory of files in the GA4
BigQuery export shape, newline-delimited JSON (`.ndjson`, `.jsonl`, either also `.gz`) or
Parquet, one event per line (row). Staged as the `web_events` entity like any source, so
validation, rejects, dedup and the merge treat them alike.

- A file is read as lines (never parsed whole, so a malformed line is one reject with its
  file and line, and the rest of the file loads), `batch_rows` lines at a time; a `.gz` is
  first inflated into staging, a Parquet file's rows are turned into the same JSON text.
- DuckDB parses each batch against the export's shape (`from_json`: a missing field is
  NULL, a value of another JSON type is read as its text) and flattens it: the known
  `event_params` to columns (`ga_session_id`, `page_location`, `page_referrer`,
  `engagement_time_msec`), the others kept as one JSON object, `items` kept as JSON with
  the first item's id as the event's product.
- `event_timestamp` (integer microseconds, UTC; BigQuery writes it as a string) becomes
  ISO 8601 with all six decimals: exact, no float on the way. `purchase_revenue` (a float
  in GA4) is taken to the cent only when its text is a cent amount (19.990000000000002 is
  19.99; 12.345 is a reject).
- The event's key: GA4 sends no event id, so an event is identified by its content. The
  key is the MD5 of the event as the warehouse stores it (every column above, NULL apart
  from empty, in a fixed order; whitespace and key order of the file do not count): an
  event re-sent is a duplicate, two events that differ in any stored field (a second click
  in the same microsecond with another item) are two events; fields the warehouse does not
  read (user_properties, privacy_info, ...) do not make an event another. (A Parquet
  export gives every item every field any item has, NULL where the JSON would omit it:
  the same event read from both formats is one event when its items name the same
  fields.)"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from retail_etl import console
from retail_etl.errors import InputError
from retail_etl.extract.files import LINE_BITS, Extracted
from retail_etl.spec import Entity

PATTERN = re.compile(r"\.(ndjson|jsonl)(\.gz)?$|\.parquet$", re.I)
KNOWN_PARAMS = ("ga_session_id", "page_location", "page_referrer", "engagement_time_msec")

_VALUE = {"string_value": "VARCHAR", "int_value": "VARCHAR", "double_value": "VARCHAR",
          "float_value": "VARCHAR"}
# the part of the export the warehouse reads, in a fixed order (the event key hashes it)
SHAPE = {
    "event_date": "VARCHAR", "event_timestamp": "VARCHAR", "event_name": "VARCHAR",
    "user_pseudo_id": "VARCHAR", "user_id": "VARCHAR",
    "event_params": [{"key": "VARCHAR", "value": _VALUE}],
    "device": {"category": "VARCHAR"}, "geo": {"country": "VARCHAR"},
    "traffic_source": {"source": "VARCHAR", "medium": "VARCHAR", "name": "VARCHAR"},
    "ecommerce": {"transaction_id": "VARCHAR", "purchase_revenue": "VARCHAR"},
    "items": "JSON",
}
IN_MEMORY_BYTES = 256 << 20  # a file up to this is read whole, a bigger one streamed
_MAX_US = 253402300799999999  # 9999-12-31T23:59:59.999999Z

_FLATTENED = f"""
WITH parsed AS (
    -- (try: the optimizer may parse a line before the filter drops it)
    SELECT file_no, file, line, try(from_json(raw, '{json.dumps(SHAPE)}')) AS j
    FROM batch WHERE ok
)
SELECT
    CASE WHEN regexp_full_match(trim(j.event_timestamp), '\\d{{1,18}}')
              AND trim(j.event_timestamp)::BIGINT <= {_MAX_US}
         THEN strftime(make_timestamp(trim(j.event_timestamp)::BIGINT),
                       '%Y-%m-%dT%H:%M:%S.%f+00:00')
         ELSE j.event_timestamp END AS event_timestamp,
    CASE WHEN regexp_full_match(j.event_date, '\\d{{8}}')
         THEN j.event_date[1:4] || '-' || j.event_date[5:6] || '-' || j.event_date[7:8]
         ELSE j.event_date END AS event_date,
    j.event_name, j.user_pseudo_id, j.user_id AS customer_id,
    param(j.event_params, 'ga_session_id') AS ga_session_id,
    param(j.event_params, 'page_location') AS page_location,
    param(j.event_params, 'page_referrer') AS page_referrer,
    param(j.event_params, 'engagement_time_msec') AS engagement_time_msec,
    CASE WHEN len(list_filter(j.event_params, lambda p: p.key NOT IN {KNOWN_PARAMS})) > 0
         THEN to_json(map_from_entries(list_transform(
                  list_filter(j.event_params, lambda p: p.key NOT IN {KNOWN_PARAMS}),
                  lambda p: {{'k': p.key, 'v': value_text(p.value)}}))) END AS other_params,
    j.device.category AS device_category, j.geo.country AS country,
    j.traffic_source.source AS traffic_source, j.traffic_source.medium AS traffic_medium,
    j.traffic_source.name AS traffic_campaign,
    nullif(trim(j.ecommerce.transaction_id), '') AS transaction_id,
    CASE WHEN try_cast(j.ecommerce.purchase_revenue AS DECIMAL(38, 6))
              = round(try_cast(j.ecommerce.purchase_revenue AS DECIMAL(38, 6)), 2)
         THEN CAST(round(try_cast(j.ecommerce.purchase_revenue AS DECIMAL(38, 6)), 2)
                   AS VARCHAR)
         ELSE j.ecommerce.purchase_revenue END AS purchase_revenue,
    CASE WHEN json_type(j.items) = 'ARRAY' AND json_array_length(j.items) > 0
         THEN CAST(j.items AS VARCHAR) END AS items,
    CASE WHEN json_type(j.items) = 'ARRAY'
         THEN json_extract_string(j.items, '$[0].item_id') END AS product_id,
    CASE WHEN json_type(j.items) = 'ARRAY'
         THEN CAST(json_array_length(j.items) AS VARCHAR) ELSE '0' END AS item_count,
    NULL::VARCHAR AS version_ts,
    line AS _line, file AS _file, file_no AS _file_no
FROM parsed
"""
# the columns an event is stored with, all but the key: the key hashes them
_CONTENT = ("event_timestamp", "event_date", "event_name", "user_pseudo_id", "customer_id",
            "ga_session_id", "page_location", "page_referrer", "engagement_time_msec",
            "other_params", "device_category", "country", "traffic_source", "traffic_medium",
            "traffic_campaign", "transaction_id", "purchase_revenue", "items")
_FLATTEN = (f"SELECT md5(concat_ws(chr(31), "
            f"{', '.join(f'coalesce(CAST({c} AS VARCHAR), chr(30))' for c in _CONTENT)})) "
            f"AS event_key, * "
            f"FROM ({_FLATTENED})")


def discover(source_dir: Path, allow_empty: bool = False) -> list[Path]:
    """The export's files, in name order (GA4 names them by day: events_YYYYMMDD). None is
    an error, unless other sources are loaded with it (then a warning)."""
    if not source_dir.is_dir():
        what = "is not a directory" if source_dir.exists() else "does not exist"
        raise InputError(f"events directory {source_dir} {what}")
    files, ignored = [], []
    for path in sorted(p for p in source_dir.iterdir() if p.is_file()):
        if PATTERN.search(path.name):
            files.append(path)
        elif not path.name.startswith("."):
            ignored.append(path.name)
    if ignored:
        console.warn(f"{source_dir}: ignoring files that are not .ndjson, .ndjson.gz or "
                     f".parquet: {', '.join(ignored)}")
    if not files and allow_empty:
        console.warn(f"{source_dir}: no export files")
    elif not files:
        raise InputError(f"no export files in {source_dir}",
                         hint="expected files like events_20240131.ndjson, .ndjson.gz, "
                         ".jsonl or .parquet")
    return files


def _session(threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"threads": threads})
    con.execute("CREATE MACRO value_text(v) AS "
                "coalesce(v.string_value, v.int_value, v.double_value, v.float_value)")
    con.execute("CREATE MACRO param(ps, k) AS "
                "value_text(list_filter(ps, lambda p: p.key = k)[1].value)")
    return con


def _line_batches(path: Path, scratch: Path, batch_rows: int):
    """(first line number, Arrow table [raw]) of a file, batch_rows lines at a time."""
    if path.suffix.lower() == ".parquet":
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise InputError(f"{path}: not a readable Parquet file ({e})") from None
        con = duckdb.connect(config={"threads": 1})
        line = 1
        for batch in pf.iter_batches(batch_size=batch_rows):
            rows = pa.Table.from_batches([batch])
            # a row as the JSON text of the same event: one parse for both formats
            out = con.sql("SELECT CAST(to_json(r) AS VARCHAR) AS raw FROM rows r").to_arrow_table()
            yield line, out
            line += rows.num_rows
        con.close()
        return
    text = path
    if path.suffix.lower() == ".gz":
        text = scratch / (path.name.removesuffix(path.suffix) + ".inflated")
        try:
            with gzip.open(path, "rb") as src, open(text, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as e:
            raise InputError(f"{path}: not a readable gzip file ({e})") from None
    size = text.stat().st_size
    if size == 0:
        return
    # one column holding each line whole: \x1f (unit separator) cannot appear unescaped in
    # JSON, and a line that has one is malformed anyway
    options = dict(has_header=False, separator="\x1f", quote_char=None,
                   schema={"raw": pl.String}, truncate_ragged_lines=True, encoding="utf8-lossy")
    if size <= IN_MEMORY_BYTES:  # a day's export, usually: read at once
        lines = pl.read_csv(text, **options)
        for first in range(0, lines.height, batch_rows):
            yield first + 1, lines.slice(first, batch_rows).to_arrow()
        if text != path:
            text.unlink()
        return
    lines = pl.scan_csv(text, **options)  # bigger: through Parquet, a batch at a time
    sunk = scratch / (path.name + ".lines.parquet")
    lines.with_row_index("line", offset=1).sink_parquet(sunk, row_group_size=batch_rows)
    pf = pq.ParquetFile(sunk)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=["line", "raw"]):
        t = pa.Table.from_batches([batch])
        yield int(t.column("line")[0].as_py()), t.select(["raw"])
    sunk.unlink()
    if text != path:
        text.unlink()


def extract_events(source_dir: Path, entity: Entity, stage_dir: Path, first_file: int,
                   batch_rows: int = 250_000, threads: int = 2, progress=None,
                   allow_empty: bool = False) -> Extracted:
    """Stage every event of the export's files as the entity's text columns; each file gets
    a number from first_file (its lines' load order). Lines are parsed batch_rows at a time,
    across files (a query costs ~0.1 s however small: a month of daily files would pay it
    per file). Blank lines are no events; a line that is not a JSON object is a reject
    (`line:not_json`) with its text."""
    files = discover(source_dir, allow_empty)
    ex = Extracted(entity)
    if progress is not None:
        progress.expect(sum(p.stat().st_size for p in files))
    scratch = stage_dir / "raw_events"
    scratch.mkdir(parents=True, exist_ok=True)
    out_dir = stage_dir / entity.name
    out_dir.mkdir(parents=True, exist_ok=True)
    con = _session(threads)
    pending: list[pl.DataFrame] = []

    def flush() -> None:
        batch = pl.concat(pending).filter(pl.col("raw").str.strip_chars().str.len_bytes() > 0)
        pending.clear()
        con.register("lines", batch.to_arrow())
        # (a table, not a view over the Arrow data: both queries scan it faster than Arrow)
        con.execute("CREATE OR REPLACE TEMP TABLE batch AS SELECT file_no, file, line, raw, "
                    "coalesce(CASE WHEN json_valid(raw) THEN json_type(raw) = 'OBJECT' "
                    "END, false) AS ok FROM lines")
        con.unregister("lines")
        bad = con.sql("SELECT file, line, raw FROM batch WHERE NOT ok").pl()
        if bad.height:
            ex.malformed.append(_not_json(bad))
            ex.rows += bad.height
        df = con.sql(_FLATTEN).pl()
        if df.height:
            df = df.with_columns(_seq=pl.col("_file_no").cast(pl.Int64) * (1 << LINE_BITS)
                                 + pl.col("_line"))
            target = out_dir / f"{len(ex.staged) + 1:05d}.parquet"
            tmp = target.with_suffix(".tmp")
            df.select(*entity.column_names, "_line", "_file", "_seq").write_parquet(
                tmp, compression="zstd")
            tmp.rename(target)  # a file in staging is always whole
            ex.staged.append(target)
            ex.rows += df.height

    try:
        for file_no, path in enumerate(files, start=first_file):
            for first, raw in _line_batches(path, scratch, batch_rows):
                pending.append(pl.from_arrow(raw).select(
                    file_no=pl.lit(file_no, pl.Int64), file=pl.lit(path.name),
                    line=pl.int_range(first, first + pl.len(), dtype=pl.Int64), raw="raw"))
                if sum(b.height for b in pending) >= batch_rows:
                    flush()
            ex.files.append(path)
            if progress is not None:
                progress.advance(path.stat().st_size)
        if pending:
            flush()
    finally:
        con.close()
    ex.numbers = len(files)
    if ex.malformed:
        n = sum(m.height for m in ex.malformed)
        first = ex.malformed[0].row(0, named=True)
        console.warn(f"{source_dir}: {n:,} line(s) that are not a JSON object rejected, the "
                     f"first in {first['file']} at line {first['line']}")
    return ex


def _not_json(bad: pl.DataFrame) -> pl.DataFrame:
    """Lines no event can be made of, as rejects: the line's text kept as the row."""
    return bad.select(
        line=pl.col("line").cast(pl.Int64),
        rules=pl.concat_list(pl.lit("line:not_json")),
        row=pl.struct(text=pl.col("raw").str.slice(0, 10_000)).struct.json_encode()
        .str.replace_all("\\u0000", "\\u2400", literal=True),
        file="file")
