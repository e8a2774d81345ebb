"""Extract a file drop into Parquet staging: one folder per entity, every value as text,
with the file, line and load order of each row. Nothing is cleaned or judged here."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from retail_etl import console
from retail_etl.errors import InputError
from retail_etl.spec import Entity
from retail_etl.transform.quality import row_json

PATTERN = re.compile(r"\.(csv|csv\.gz|parquet)$", re.I)
# load order inside a run: file number in the high bits, record number in the low bits
LINE_BITS = 40
REJECT_SCHEMA = {"line": pl.Int64, "rules": pl.List(pl.String), "row": pl.String}


@dataclass
class Extracted:
    entity: Entity
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    staged: list[Path] = field(default_factory=list)
    # records no row can be made of (a wrong field count, a quote never closed): rejects
    malformed: list[pl.DataFrame] = field(default_factory=list)
    # the file numbers (load order) its rows use; None: one per staged file
    numbers: int | None = None


def discover(source_dir: Path, entities: tuple[Entity, ...],
             allow_empty: bool = False) -> dict[str, list[Path]]:
    """The drop's files per entity, in name order. Files that match no entity are reported."""
    if not source_dir.exists():
        raise InputError(f"source directory {source_dir} does not exist")
    if not source_dir.is_dir():
        raise InputError(f"source directory {source_dir} is not a directory")
    found: dict[str, list[Path]] = {e.name: [] for e in entities}
    ignored = []
    for path in sorted(p for p in source_dir.iterdir() if p.is_file()):
        name = path.name.lower()
        entity = next((e.name for e in entities if name.startswith(e.name)), None)
        if entity and PATTERN.search(name):
            found[entity].append(path)
        elif not name.startswith("."):
            ignored.append(path.name)
    if ignored:
        console.warn(f"{source_dir}: ignoring files that match no entity: {', '.join(ignored)}")
    if not any(found.values()) and allow_empty:
        console.warn(f"{source_dir}: no input files")
    elif not any(found.values()):
        names = ", ".join(f"{e.name}*.csv" for e in entities)
        raise InputError(f"no input files in {source_dir}", hint=f"expected files like {names}")
    return found


def read_file(path: Path, entity: Entity, encoding: str = "utf-8") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the file's rows as text columns named as the entity's, plus _line: the record
    number, the header being 1; its malformed records as rejects). Missing optional
    columns are NULL."""
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes, not even a header)",
                         hint="a file with no rows still needs its header line")
    try:
        if path.name.lower().endswith(".parquet"):
            df = _as_text(pl.read_parquet(path)).with_row_index("_line", offset=2)
            df, malformed = df.with_columns(pl.col("_line").cast(pl.Int64)), _no_rejects()
        else:
            df, malformed = csv_records(path, encoding)
    except InputError:
        raise
    except Exception as e:  # polars and arrow raise many types; all mean "cannot read this file"
        raise InputError(f"cannot read {path}: {_first_line(e)}") from None
    names = _unique_names(path, [c for c in df.columns if c != "_line"])
    df = df.rename(dict(zip([c for c in df.columns if c != "_line"], names, strict=True)))
    missing = [c for c in entity.required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column {missing[0]!r}"
                         + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""),
                         hint=f"{entity.name} files need: {', '.join(entity.required)}")
    known = [pl.col(c) if c in df.columns else pl.lit(None, pl.String).alias(c)
             for c in entity.column_names]
    extra = [pl.col(c) for c in df.columns if c not in entity.column_names and c != "_line"]
    return df.select(known + extra + [pl.col("_line")]), malformed


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def csv_records(path: Path, encoding: str = "utf-8") -> tuple[pl.DataFrame, pl.DataFrame]:
    """A CSV file read by Arrow, every value as text, and its malformed records apart.
    Polars fills a short line with NULLs without a word and stops at a long one: Arrow
    hands each record whose field count is not the header's to a handler, which keeps
    it as a reject. Arrow numbers records only when it reads on one thread, so the
    threaded read comes first and a file with malformed records is read again."""
    header = _check_header(path, encoding)
    lossy = False
    try:
        table, bad = _arrow_csv(path, header, encoding, threads=True)
    except pa.ArrowInvalid as e:
        # bytes that are not UTF-8 in a good record fail the read ("UTF8"); in a malformed
        # one they fail Arrow's decoding of its text for our handler ("CSV parse error")
        if not ("UTF8" in str(e) or "CSV parse error" in str(e)) or _codec(encoding) != "utf-8":
            raise
        lossy = True  # a byte that is not UTF-8 becomes U+FFFD, and its line a reject
        table, bad = _arrow_csv(path, header, encoding, threads=True, lossy=True)
    if bad:
        table, bad = _arrow_csv(path, header, encoding, threads=False, lossy=lossy)
        if bad[0][0] == 1:
            raise InputError(f"{path}: cannot read the header line",
                             hint="the header is one line of comma-separated names")
    df = pl.from_arrow(table).slice(1)  # the header read as a record keeps Arrow's numbers
    if not isinstance(df, pl.DataFrame):  # pragma: no cover - from_arrow of a Table
        raise TypeError(type(df))
    df = df.rename(dict(zip(df.columns, header, strict=True)))
    total = df.height + len(bad)
    if not bad:
        line = pl.int_range(2, total + 2, dtype=pl.Int64)
        df = df.with_columns(_line=line)
    else:  # the good records are the numbers the malformed ones left
        numbers = pl.Series([b[0] for b in bad], dtype=pl.Int64)
        lines = pl.int_range(2, total + 2, dtype=pl.Int64, eager=True)
        df = df.with_columns(_line=lines.filter(~lines.is_in(numbers.implode())))
    swallowed = _swallowed(df, header, path, records=total + 1)
    if swallowed is None:
        return df, _malformed(bad)
    df = df.with_columns(swallowed.alias("_rules"))
    kept = df.filter(pl.col("_rules").is_not_null()).select(
        line="_line", rules="_rules", row=row_json(pl.struct(header)))
    return (df.filter(pl.col("_rules").is_null()).drop("_rules"),
            pl.concat([_malformed(bad), kept]).sort("line"))


def _arrow_csv(path: Path, header: list[str], encoding: str, threads: bool,
               lossy: bool = False) -> tuple[pa.Table, list[tuple[int, int, int, str]]]:
    bad: list[tuple[int, int, int, str]] = []

    def keep(row) -> str:  # called for malformed records only
        bad.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    names = [f"c{i}" for i in range(len(header))]
    source: Path | io.BytesIO = path
    if lossy:
        source = io.BytesIO(_open(path).read().decode("utf-8", "replace").encode())
    with _quiet_handler_decoding():
        table = _read_csv(source, names, encoding, threads, lossy, keep)
    return table, bad


@contextmanager
def _quiet_handler_decoding():
    """Arrow decodes a malformed record's text before our handler sees it; bytes that are
    not UTF-8 make that fail as an "Exception ignored" on stderr (and the read fails, so it
    is read again lossily). The user sees the reject, not that noise."""
    previous = sys.unraisablehook

    def hook(u):
        if not isinstance(u.exc_value, UnicodeDecodeError):
            previous(u)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _read_csv(source, names, encoding, threads, lossy, keep) -> pa.Table:
    return pacsv.read_csv(
        source,
        read_options=pacsv.ReadOptions(use_threads=threads, column_names=names,
                                       block_size=1 << 24,
                                       encoding="utf8" if lossy else encoding),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False,
                                         invalid_row_handler=keep),
        # as the contract says: an empty field is NULL, a quoted empty one is text ""
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=True,
            null_values=[""], quoted_strings_can_be_null=False),
    )


def _malformed(bad: list[tuple[int, int, int, str]]) -> pl.DataFrame:
    """Malformed records as rejects: the record's text is its row (a record a quote
    swallowed spans several lines: how many is kept)."""
    if not bad:
        return _no_rejects()
    number, expected, actual, text = (list(x) for x in zip(*bad, strict=True))
    df = pl.DataFrame({"line": number, "expected": expected, "fields": actual, "text": text},
                      schema={"line": pl.Int64, "expected": pl.Int64, "fields": pl.Int64,
                              "text": pl.String})
    spans = pl.col("text").str.count_matches("\n") + 1
    rule = (pl.when(spans > 1).then(pl.lit("line:unclosed_quote"))
            .when(pl.col("fields") > pl.col("expected")).then(pl.lit("line:too_many_fields"))
            .otherwise(pl.lit("line:too_few_fields")))
    return df.select(
        "line", pl.concat_list(rule).alias("rules"),
        row_json(pl.struct("text", "fields", "expected", spans.alias("lines"))).alias("row"),
    ).sort("line")


def _swallowed(df: pl.DataFrame, header: list[str], path: Path,
               records: int) -> pl.Expr | None:
    """A quote opened and never closed swallows the lines after it into one value, up to
    the next quote, and Arrow may find a record of the right width all the same. A value
    holding a line that reads like a record (the commas of a whole row) is such a value;
    so is a last value holding a line break where the file does not end with the closing
    quote (the quote swallowed the rest of the file). The usual file has no line break in
    any value: a file with no more line breaks than records (counted in its bytes, a
    third of the cost of looking into every value) needs no more. Returns
    [`<column>:unclosed_quote`, ...] or NULL per row."""
    if not df.height or _line_breaks(path, records) <= records:
        return None
    commas = max(len(header) - 1, 2)
    at_end = _open_at_end(path) & (pl.int_range(pl.len()) == pl.len() - 1)
    flags = [
        pl.when(pl.col(c).str.split("\n").list.eval(
            pl.element().str.count_matches(",", literal=True)).list.max().fill_null(0) >= commas)
        .then(pl.lit(f"{c.strip().lower()}:unclosed_quote")) for c in header]
    flags[-1] = pl.when(at_end & pl.col(header[-1]).str.contains("\n", literal=True)).then(
        pl.lit(f"{header[-1].strip().lower()}:unclosed_quote")).otherwise(flags[-1])
    rules = pl.concat_list(flags).list.drop_nulls()
    return pl.when(rules.list.len() > 0).then(rules)


def _line_breaks(path: Path, records: int) -> int:
    """The file's line breaks (a gzip file's: above `records`, as the decompression
    would cost more than looking into the values)."""
    if path.name.lower().endswith(".gz"):
        return records + 1
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
    return n


def _open_at_end(path: Path) -> bool:
    """Whether the file ends inside a quoted value: its last byte (before line breaks) is
    not the closing quote (a quoted last value ends with one)."""
    with _open(path) as f:
        if path.name.lower().endswith(".gz"):
            tail = b""
            while chunk := f.read(1 << 20):
                tail = (tail + chunk)[-64:]
        else:
            f.seek(max(0, path.stat().st_size - 64))
            tail = f.read()
    return not tail.rstrip(b"\r\n").endswith(b'"')


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _codec(encoding: str) -> str:
    return codecs.lookup(encoding).name


def _check_header(path: Path, encoding: str = "utf-8") -> list[str]:
    """The header's names, as written. Arrow reads the header as a record (so that it
    numbers the records): a repeated name (in any case) is an error here."""
    try:
        with _open(path) as f:
            first = f.readline()
    except OSError as e:  # a truncated or corrupt gzip
        raise InputError(f"cannot read {path}: {e}") from None
    codec = "utf-8-sig" if _codec(encoding) == "utf-8" else encoding
    header = next(csv.reader([first.decode(codec, errors="replace").rstrip("\r\n")]), [])
    _unique_names(path, header)
    return header


def _unique_names(path: Path, columns: list[str]) -> list[str]:
    """The column names as compared (stripped, lower case); a name twice is an error."""
    names = [c.strip().lower() for c in columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(f"{path}: column {twice[0]!r} appears more than once in the header",
                         hint="column names are compared without case and surrounding spaces")
    return names


def _as_text(df: pl.DataFrame) -> pl.DataFrame:
    """Parquet columns as text, timestamps as ISO 8601 in UTC (naive ones are UTC)."""
    out = []
    for name, dtype in df.schema.items():
        c = pl.col(name)
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone:
                c = c.dt.convert_time_zone("UTC")
            c = c.dt.strftime("%Y-%m-%dT%H:%M:%S%.f+00:00")
        out.append(c.cast(pl.String))
    return df.select(out)


def extract(source_dir: Path, entities: tuple[Entity, ...], stage_dir: Path,
            first_file: int = 1, allow_empty: bool = False,
            encoding: str = "utf-8", progress=None) -> dict[str, Extracted]:
    """Stage every file of the drop as zstd Parquet under stage_dir/<entity>/NNNNN.parquet,
    files numbered from first_file (the load order of the run). `rows` counts every
    record read, the malformed ones (kept apart as rejects) too. progress: told the
    drop's bytes, then each file's as it is staged (console.Bars, via the run)."""
    found = discover(source_dir, entities, allow_empty)
    if progress is not None:
        progress.expect(sum(p.stat().st_size for ps in found.values() for p in ps))
    result: dict[str, Extracted] = {}
    file_no = first_file - 1
    for entity in entities:
        ex = Extracted(entity)
        out_dir = stage_dir / entity.name
        extra: dict[str, int] = {}
        for path in found[entity.name]:
            file_no += 1
            df, malformed = read_file(path, entity, encoding)
            if malformed.height:
                first = malformed.row(0, named=True)
                console.warn(f"{path}: {malformed.height:,} malformed line(s) rejected, the "
                             f"first at line {first['line']} ({first['rules'][0]})")
                ex.malformed.append(malformed.with_columns(file=pl.lit(path.name)))
                ex.rows += malformed.height
            for c in set(df.columns) - set(entity.column_names) - {"_line"}:
                extra[c] = extra.get(c, 0) + 1
            df = df.select(entity.column_names + ["_line"]).with_columns(
                _file=pl.lit(path.name),
                _seq=pl.lit(file_no << LINE_BITS, pl.Int64) + pl.col("_line"),
            )
            out_dir.mkdir(parents=True, exist_ok=True)
            target = out_dir / f"{file_no:05d}.parquet"
            tmp = target.with_suffix(".tmp")
            df.write_parquet(tmp, compression="zstd")
            tmp.rename(target)  # a file in staging is always whole
            ex.files.append(path)
            ex.staged.append(target)
            ex.rows += df.height
            if progress is not None:
                progress.advance(path.stat().st_size)
        if extra:  # reported once per entity, not once per file
            console.warn(f"{entity.name}: ignoring unknown columns: "
                         + ", ".join(f"{c} ({n} of {len(ex.files)} files)" for c, n in sorted(extra.items())))
        result[entity.name] = ex
    return result


def _first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
