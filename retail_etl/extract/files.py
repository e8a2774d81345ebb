"""Extract a file drop into Parquet staging: one folder per entity, every value as text,
with the file, line and load order of each row. Nothing is cleaned or judged here."""

from __future__ import annotations

import csv
import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from retail_etl import console
from retail_etl.errors import InputError
from retail_etl.spec import Entity

PATTERN = re.compile(r"\.(csv|csv\.gz|parquet)$", re.I)
# load order inside a run: file number in the high bits, record number in the low bits
LINE_BITS = 40


@dataclass
class Extracted:
    entity: Entity
    files: list[Path] = field(default_factory=list)
    rows: int = 0
    staged: list[Path] = field(default_factory=list)


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


def read_file(path: Path, entity: Entity) -> pl.DataFrame:
    """One file as text columns named as the entity's, plus _line (1-based record number,
    the header being line 1). Missing optional columns are NULL."""
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes, not even a header)",
                         hint="a file with no rows still needs its header line")
    try:
        if path.name.lower().endswith(".parquet"):
            df = _as_text(pl.read_parquet(path))
        else:
            _check_header(path)
            # lossy: a byte that is not UTF-8 becomes U+FFFD, and its line a reject
            df = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy",
                             raise_if_empty=False, truncate_ragged_lines=False)
    except InputError:
        raise
    except Exception as e:  # polars raises many types; all mean "cannot read this file"
        raise InputError(f"cannot read {path}: {_first_line(e)}") from None
    names = _unique_names(path, df.columns)
    df = df.rename(dict(zip(df.columns, names, strict=True)))
    missing = [c for c in entity.required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing required column {missing[0]!r}"
                         + (f" (and {', '.join(missing[1:])})" if missing[1:] else ""),
                         hint=f"{entity.name} files need: {', '.join(entity.required)}")
    known = [pl.col(c) if c in df.columns else pl.lit(None, pl.String).alias(c)
             for c in entity.column_names]
    extra = [pl.col(c) for c in df.columns if c not in entity.column_names]
    return df.select(known + extra).with_row_index("_line", offset=2).with_columns(pl.col("_line").cast(pl.Int64))


def _check_header(path: Path) -> None:
    """Polars renames a repeated CSV column (`x`, `x_duplicated_0`) without a word: look at
    the header line itself (only it is read)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            first = f.readline().decode("utf-8-sig", errors="replace")  # the rest: polars
    except OSError as e:  # a truncated or corrupt gzip
        raise InputError(f"cannot read {path}: {e}") from None
    header = next(csv.reader([first]), [])
    _unique_names(path, header)


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
            first_file: int = 1, allow_empty: bool = False) -> dict[str, Extracted]:
    """Stage every file of the drop as zstd Parquet under stage_dir/<entity>/NNNNN.parquet,
    files numbered from first_file (the load order of the run)."""
    found = discover(source_dir, entities, allow_empty)
    result: dict[str, Extracted] = {}
    file_no = first_file - 1
    for entity in entities:
        ex = Extracted(entity)
        out_dir = stage_dir / entity.name
        extra: dict[str, int] = {}
        for path in found[entity.name]:
            file_no += 1
            df = read_file(path, entity)
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
        if extra:  # reported once per entity, not once per file
            console.warn(f"{entity.name}: ignoring unknown columns: "
                         + ", ".join(f"{c} ({n} of {len(ex.files)} files)" for c, n in sorted(extra.items())))
        result[entity.name] = ex
    return result


def _first_line(e: Exception) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
