"""Validation: parse each cleaned column to its type and check the contract's rules.
A row that breaks any rule is a reject: the whole original row, its file and line, and
every rule it broke (rule names are `column:rule`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from retail_etl.spec import Column, Entity
from retail_etl.transform import clean

# decimal(12,2): at most 10 integer digits and 2 significant decimals (trailing zeros ok)
_DECIMAL = r"^[+-]?(\d{1,10}(\.\d{0,2}0*)?|\.\d{1,2}0*)$"
_INT = r"^[+-]?\d{1,10}$"
_DATE = r"^\d{4}-\d{2}-\d{2}$"
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%:z"
_BOOLS = {"true": True, "t": True, "1": True, "yes": True, "y": True,
          "false": False, "f": False, "0": False, "no": False, "n": False}


@dataclass(frozen=True)
class Window:
    """The times a source row can plausibly hold (UTC): a sale in year 1 or 9999 is a typo,
    not a reason to grow the calendar by 3.6 million days."""

    start: datetime
    end: datetime

    @classmethod
    def around(cls, start: date, now: datetime, days_ahead: float) -> Window:
        return cls(datetime.combine(start, time(), UTC), now + timedelta(days=days_ahead))


ANY_TIME = Window(datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))


def parse_timestamp(c: pl.Expr) -> pl.Expr:
    """ISO 8601 with or without an offset (without one it is UTC), to UTC microseconds.
    `2024-03-05`, `2024-03-05 10:00`, `...Z`, `...+0200` are all accepted."""
    s = (
        c.str.replace(r"^(\d{4}-\d{2}-\d{2})$", "${1}T00:00:00")
        .str.replace(r"^(\d{4}-\d{2}-\d{2})[ tT]", "${1}T")
        .str.replace(r"(T\d{2}:\d{2})([^:\d]|$)", "${1}:00${2}")
        .str.replace(r"\s*[zZ]$|\s*UTC$", "+00:00")
        .str.replace(r"(T[\d:.]+)$", "${1}+00:00")
        .str.replace(r"([+-]\d{2})(\d{2})$", "${1}:${2}")
        .str.replace(r"([+-]\d{2})$", "${1}:00")
    )
    return s.str.to_datetime(_TS_FORMAT, strict=False, time_unit="us", time_zone="UTC")


def _column(col: Column, window: Window) -> tuple[pl.Expr, list[tuple[str, pl.Expr]]]:
    """(the parsed value, [(rule name, violated?)]) for one source column."""
    cleaned = pl.col(f"__c_{col.name}")  # the cleaned text (see validate)
    parsed = pl.col(col.name)  # the value, computed once, before the rules
    rules: list[tuple[str, pl.Expr]] = []
    if col.kind == "decimal":
        value = pl.when(cleaned.str.contains(_DECIMAL)).then(cleaned).cast(
            pl.Decimal(12, 2), strict=False)
        rules.append((f"{col.name}:not_a_decimal_12_2", cleaned.is_not_null() & parsed.is_null()))
    elif col.kind == "int":
        value = pl.when(cleaned.str.contains(_INT)).then(cleaned).cast(pl.Int64, strict=False)
        value = pl.when(value.abs() < 2**31).then(value)
        rules.append((f"{col.name}:not_an_integer", cleaned.is_not_null() & parsed.is_null()))
    elif col.kind == "date":
        value = pl.when(cleaned.str.contains(_DATE)).then(cleaned).str.to_date(
            "%Y-%m-%d", strict=False)
        rules.append((f"{col.name}:not_a_date", cleaned.is_not_null() & parsed.is_null()))
    elif col.kind == "bool":
        value = cleaned.str.to_lowercase().replace_strict(
            list(_BOOLS), list(_BOOLS.values()), default=None, return_dtype=pl.Boolean)
        rules.append((f"{col.name}:not_a_boolean", cleaned.is_not_null() & parsed.is_null()))
    elif col.kind == "timestamp":
        value = parse_timestamp(cleaned)
        rules.append((f"{col.name}:not_a_timestamp", cleaned.is_not_null() & parsed.is_null()))
    else:
        value = cleaned
    if col.required:
        rules.append((f"{col.name}:required", cleaned.is_null()))
    if col.min is not None:
        rules.append((f"{col.name}:below_{col.min}", parsed < col.min))
    if col.nonzero:
        rules.append((f"{col.name}:zero", parsed == 0))
    if col.choices is not None:
        rules.append((f"{col.name}:unknown", parsed.is_not_null()
                      & ~parsed.is_in(list(col.choices))))
    if col.plausible and col.kind == "timestamp":
        rules.append((f"{col.name}:outside_window",
                      (parsed < window.start) | (parsed > window.end)))
    elif col.plausible and col.kind == "date":
        rules.append((f"{col.name}:in_the_future", parsed > window.end.date()))
    return value.alias(col.name), rules


def _byte_rules(col: Column, detail: bool) -> list[tuple[str, pl.Expr]]:
    """Bytes no warehouse column can hold: a NUL, or what was not UTF-8 in the file (read
    lossily, as U+FFFD): the line is a reject, the rest of the file loads. Over every row
    one regex scan says whether (40% cheaper than two); the names only for the rejects."""
    c = pl.col(f"__c_{col.name}")
    if not detail:
        return [(f"{col.name}:bad_bytes", c.str.contains("[\x00\ufffd]"))]
    return [(f"{col.name}:nul_byte", c.str.contains("\x00", literal=True)),
            (f"{col.name}:not_utf8", c.str.contains("\ufffd", literal=True))]


def _parsed(raw: pl.LazyFrame, entity: Entity, window: Window,
            detail: bool = True) -> tuple[pl.LazyFrame, list[tuple[str, pl.Expr]]]:
    """The raw rows with cleaned text (`__c_<col>`) and parsed values, and the rules over them."""
    cleaned = [clean.CLEANERS.get(c.kind, clean.text)(pl.col(c.name)).alias(f"__c_{c.name}")
               for c in entity.columns]
    values, rules = [], []
    for col in entity.columns:
        value, col_rules = _column(col, window)
        values.append(value)
        rules += col_rules + _byte_rules(col, detail)
    rules += list(entity.checks)
    # each parse runs once; the rules read its result
    return raw.with_columns(cleaned).with_columns(values), rules


def validate(raw: pl.LazyFrame, entity: Entity, window: Window = ANY_TIME) -> pl.LazyFrame:
    """Cleaned, typed columns plus `_bad` (breaks a rule) and the untouched metadata columns.
    Which rules a row breaks is worked out by `split` for the bad rows only: building the
    list for every row was half the cost of validation. The raw text is not carried along
    (it would double the memory of a run): `split` fetches it back for the rows that need it."""
    parsed, rules = _parsed(raw, entity, window, detail=False)
    bad = pl.any_horizontal([v.fill_null(False) for _, v in rules])
    return parsed.select(*entity.column_names, bad.alias("_bad"), "_file", "_line", "_seq")


def broken_rules(raw: pl.LazyFrame, entity: Entity, window: Window = ANY_TIME) -> pl.LazyFrame:
    """[_seq, _rules]: every rule each row breaks (`column:rule`), empty when valid."""
    parsed, rules = _parsed(raw, entity, window)
    broken = pl.concat_list(
        [pl.when(v.fill_null(False)).then(pl.lit(name)) for name, v in rules]
    ).list.drop_nulls()
    return parsed.select("_seq", broken.alias("_rules"))


def row_json(row: pl.Expr) -> pl.Expr:
    """A reject's row as stored: JSON, a NUL shown as ␀ (jsonb holds no NUL)."""
    return row.struct.json_encode().str.replace_all("\\u0000", "\\u2400", literal=True)


def split(validated: pl.DataFrame, raw: pl.LazyFrame, entity: Entity,
          window: Window = ANY_TIME) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid rows without bookkeeping columns but _seq, rejects as stored in etl.rejects:
    file, line, rules and the whole original row as JSON, read back from `raw`)."""
    rejected = validated.filter("_bad").select("_seq", "_file", "_line")
    valid = validated.filter(~pl.col("_bad")).drop("_bad", "_file", "_line")
    if rejected.height == 0:  # the usual file: no second read of it
        return valid, pl.DataFrame(schema={"file": pl.String, "line": pl.Int64,
                                           "rules": pl.List(pl.String), "row": pl.String})
    original = raw.filter(pl.col("_seq").is_in(rejected["_seq"].implode()))
    why = broken_rules(original, entity, window).collect()
    row = original.select(
        "_seq", row_json(pl.struct(pl.exclude("_seq", "_file", "_line"))).alias("row"),
    ).collect()
    rejects = rejected.join(why, on="_seq", how="left").join(row, on="_seq", how="left").sort(
        "_seq").select(file=pl.col("_file"), line=pl.col("_line"), rules=pl.col("_rules"),
                       row=pl.col("row"))
    return valid, rejects
