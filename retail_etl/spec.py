"""The vocabulary pipelines are declared in: source entities (the contract's input format)
and warehouse pipelines by kind (`dim_date`, `dim_scd2`, `fact_by_partition`), gathered in
a `Project` that the runner receives. A declaration is the single source of its table: the
kind renders the DDL from it (retail_etl/kinds/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

Kind = Literal["id", "text", "email", "country", "date", "timestamp", "decimal", "int", "bool",
               "json"]


def sql_type(dtype: pl.DataType | None) -> str:
    """The PostgreSQL type of a declared warehouse column (None: text)."""
    if dtype is None or dtype == pl.String:
        return "text"
    if isinstance(dtype, pl.Decimal):
        return f"numeric({dtype.precision}, {dtype.scale})"
    if isinstance(dtype, pl.Datetime):
        return "timestamptz"
    names = {pl.Date: "date", pl.Boolean: "boolean", pl.Int16: "smallint", pl.Int32: "int",
             pl.Int64: "bigint", pl.Float64: "double precision"}
    for t, name in names.items():
        if dtype == t:
            return name
    raise ValueError(f"no warehouse type for {dtype}")


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind = "text"
    required: bool = False
    min: int | None = None  # inclusive lower bound for numbers
    nonzero: bool = False
    # plausibility: a timestamp inside the run's window (settings plausible_from .. the
    # run's start + plausible_days_ahead), a date not after its end; False: any value
    plausible: bool = True
    # personal data (a name, an email, an address): `retail-etl forget` erases it from the
    # warehouse, the observed versions and the rejects, and later loads never store it again
    personal: bool = False
    # personal, and names a person on its own (a name, an email): `retail-etl db mask-copy`
    # proves that no such value is left anywhere in a copy
    identifying: bool = False
    # the only values it may take (an API's status): any other is a reject, `<name>:unknown`
    choices: tuple[str, ...] | None = None


def id_(name: str, required: bool = True) -> Column:
    return Column(name, "id", required)


def text(name: str) -> Column:
    return Column(name, "text")


@dataclass(frozen=True)
class Entity:
    """A source entity: files named `<name>*.csv|.csv.gz|.parquet` in a drop."""

    name: str
    columns: tuple[Column, ...]
    # rules over several columns: (rule name, expression over the parsed values that is
    # true when a row breaks it), e.g. a purchase without its transaction id
    checks: tuple[tuple[str, pl.Expr], ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def personal(self) -> list[str]:
        return [c.name for c in self.columns if c.personal or c.identifying]

    @property
    def identifying(self) -> list[str]:
        return [c.name for c in self.columns if c.identifying]


@dataclass(frozen=True)
class DimensionSCD2:
    """kind dim_scd2: one version per change of the tracked attributes, valid from the
    source row's `updated_at`. `attributes` maps each warehouse column to a Polars
    expression over the cleaned source columns."""

    name: str
    entity: Entity
    table: str
    surrogate_key: str
    business_key: str
    attributes: dict[str, pl.Expr]
    dtypes: dict[str, pl.DataType]
    valid_from: str = "updated_at"
    # the member a fact's NULL (or unknown) id points to, with these attribute values
    unknown_key: int = -1
    unknown_attributes: dict[str, str] = field(default_factory=dict)
    # the boolean attribute that says a key was deleted (soft-deleted, or gone from its
    # database source: closed with a version that says so); None: keys are never deleted
    deleted_flag: str | None = "is_deleted"
    kind: str = field(default="dim_scd2", init=False)

    @property
    def observed_table(self) -> str:
        """Every distinct version the sources showed (see kinds/dim_scd2.py)."""
        return f"etl.{self.name}_observed"

    @property
    def attribute_names(self) -> list[str]:
        return list(self.attributes)

    @property
    def personal(self) -> list[str]:
        """The attributes made from personal source columns (see Column.personal)."""
        return [a for a, e in self.attributes.items()
                if set(e.meta.root_names()) & set(self.entity.personal)]

    @property
    def identifying(self) -> list[str]:
        """The attributes made from identifying source columns (a name, an email)."""
        return [a for a, e in self.attributes.items()
                if set(e.meta.root_names()) & set(self.entity.identifying)]

    def kind_of(self, attribute: str) -> str:
        """The kind of the source column an attribute is made from (`text` if several)."""
        roots = set(self.attributes[attribute].meta.root_names())
        kinds = {c.kind for c in self.entity.columns if c.name in roots}
        return kinds.pop() if len(kinds) == 1 else "text"


@dataclass(frozen=True)
class DimensionReference:
    """How a fact points to a dimension: the fact's source column holding the business key."""

    dimension: DimensionSCD2
    source_column: str
    fact_column: str  # a NULL id points to the unknown member (-1)


@dataclass(frozen=True)
class FactByPartition:
    """kind fact_by_partition: one row per natural key; the row with the latest version
    column wins; range-partitioned by month of `event_ts`."""

    name: str
    entity: Entity
    table: str
    natural_key: tuple[str, ...]
    event_ts: str
    version: str
    references: tuple[DimensionReference, ...]
    measures: dict[str, pl.Expr]
    dtypes: dict[str, pl.DataType]
    # the natural key's prefix naming a document (an order): a source that sends a document
    # whole lets its missing lines, or all of them if it was cancelled, leave the table
    document: tuple[str, ...] = ()
    # the column holding dim_date's key (YYYYMMDD of event_ts, UTC): the partition column;
    # partitions are by month (the only grain): `<table>_YYYYMM`
    date_key: str = "date_key"
    grain: Literal["month"] = "month"
    indexes: tuple[tuple[str, ...], ...] = ()  # beside the natural key's and each reference's
    # measures that may be NULL in the warehouse (a charge without an order id); the others
    # are NOT NULL
    nullable: tuple[str, ...] = ()
    # measures naming rows of another table without a key to them (a payment's order in
    # fact_sales): loaded as they are, and the lines whose value that table lacks (or is
    # NULL) are counted as unmatched in the run's summary
    links: dict[str, str] = field(default_factory=dict)  # column -> "table.column"
    kind: str = field(default="fact_by_partition", init=False)

    @property
    def key_dtypes(self) -> dict[str, pl.DataType]:
        """The natural key's warehouse types, from the entity's column kinds."""
        kinds = {c.name: c.kind for c in self.entity.columns}
        return {k: pl.Int32 if kinds.get(k) == "int" else pl.String for k in self.natural_key}

    def month(self) -> pl.Expr:
        """The partition month (YYYYMM, UTC) of each line, as `_m`."""
        return pl.col(self.event_ts).dt.strftime("%Y%m").cast(pl.Int32).alias("_m")


@dataclass(frozen=True)
class DimensionDate:
    """kind dim_date: one row per calendar day (key YYYYMMDD), whole years, grown by the
    runs as facts need them; fiscal attributes from settings.fiscal_year_start_month."""

    name: str = "dim_date"
    table: str = "dw.dim_date"
    key: str = "date_key"
    kind: str = field(default="dim_date", init=False)


@dataclass(frozen=True)
class Sessions:
    """kind sessions: one row per session (`key`) of an event fact, each column an SQL
    aggregate over the session's events (`e`); rebuilt set-based from the stored events of
    every session a run brought events of (a late event updates its session, a re-sent one
    changes nothing); month-partitioned by the session's first event (one session across
    midnight or a month's end stays one row)."""

    name: str
    events: FactByPartition
    table: str
    key: tuple[str, ...]
    start: str  # the column holding the first event's time (its UTC day is the date key)
    columns: dict[str, tuple[str, str]]  # name -> (aggregate over e, SQL type)
    # name -> the event column whose value the session's first event gives it (ties in
    # time: the lower event key)
    first: dict[str, str] = field(default_factory=dict)
    # events arrive up to this late, and a session lasts at most this long: a session's
    # events are looked for this many days around the events the run brought
    late_days: int = 3
    date_key: str = "date_key"
    kind: str = field(default="sessions", init=False)


Pipeline = DimensionDate | DimensionSCD2 | FactByPartition | Sessions


@dataclass(frozen=True)
class Project:
    """The warehouse's pipelines in dependency order (a dimension before the facts that
    reference it)."""

    pipelines: tuple[Pipeline, ...]
    # how a PostgreSQL source's tables make the entities (extract.oltp.Mapping); None: the
    # project takes file drops only
    oltp: object | None = None

    def __post_init__(self):
        seen: set[str] = set()
        for p in self.pipelines:
            needs = ([r.dimension.name for r in p.references] if p.kind == "fact_by_partition"
                     else [])
            if p.kind == "sessions" and p.events.name not in seen:
                raise ValueError(f"{p.name} needs {p.events.name} declared before it")
            if p.kind == "fact_by_partition" and self.dates is None:
                raise ValueError(f"{p.name} needs a dim_date pipeline before it")
            for n in needs:
                if n not in seen:
                    raise ValueError(f"{p.name} references {n}, which is not declared before it")
            seen.add(p.name)

    @property
    def dates(self) -> DimensionDate | None:
        return next((p for p in self.pipelines if p.kind == "dim_date"), None)

    @property
    def dimensions(self) -> tuple[DimensionSCD2, ...]:
        return tuple(p for p in self.pipelines if p.kind == "dim_scd2")

    @property
    def facts(self) -> tuple[FactByPartition, ...]:
        return tuple(p for p in self.pipelines if p.kind == "fact_by_partition")

    @property
    def sessions(self) -> tuple[Sessions, ...]:
        return tuple(p for p in self.pipelines if p.kind == "sessions")

    @property
    def entities(self) -> tuple[Entity, ...]:
        return tuple(p.entity for p in (*self.dimensions, *self.facts))
