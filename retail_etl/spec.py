"""The vocabulary pipelines are declared in: source entities (the contract's input format)
and warehouse pipelines by kind (`dim_scd2`, `fact_by_partition`). The engine does the rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

Kind = Literal["id", "text", "email", "country", "date", "timestamp", "decimal", "int", "bool"]


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


def id_(name: str, required: bool = True) -> Column:
    return Column(name, "id", required)


def text(name: str) -> Column:
    return Column(name, "text")


@dataclass(frozen=True)
class Entity:
    """A source entity: files named `<name>*.csv|.csv.gz|.parquet` in a drop."""

    name: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    @property
    def personal(self) -> list[str]:
        return [c.name for c in self.columns if c.personal]


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
    kind: str = field(default="dim_scd2", init=False)

    @property
    def attribute_names(self) -> list[str]:
        return list(self.attributes)

    @property
    def personal(self) -> list[str]:
        """The attributes made from personal source columns (see Column.personal)."""
        return [a for a, e in self.attributes.items()
                if set(e.meta.root_names()) & set(self.entity.personal)]


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
    kind: str = field(default="fact_by_partition", init=False)

    def month(self) -> pl.Expr:
        """The partition month (YYYYMM, UTC) of each line, as `_m`."""
        return pl.col(self.event_ts).dt.strftime("%Y%m").cast(pl.Int32).alias("_m")
