"""Issue 11's proof: a project declares a new dimension and a fact that references it, here
in this file alone, and the engine loads it end to end with no edit to retail_etl/: its
tables rendered from the declarations (a date column not named date_key, a custom unknown
member, no deletion flag), SCD2 history with re-pointing, inferred members, rejects with
their rule, duplicates, month partitions, idempotency."""

from __future__ import annotations

import polars as pl

from retail_etl.db.connect import connect
from retail_etl.flow import load_drop
from retail_etl.schema import apply_schema
from retail_etl.spec import (
    Column,
    DimensionDate,
    DimensionReference,
    DimensionSCD2,
    Entity,
    FactByPartition,
    Project,
    id_,
    text,
)
from tests.helpers import rows

PROMOTIONS = Entity("promotions", (
    id_("promo_code"), text("promo_name"), Column("percent_off", "decimal", min=0),
    Column("updated_at", "timestamp", required=True),
))
DIM_PROMOTION = DimensionSCD2(
    name="dim_promotion", entity=PROMOTIONS, table="dw.dim_promotion",
    surrogate_key="promotion_key", business_key="promo_code",
    attributes={"promo_name": pl.col("promo_name"), "percent_off": pl.col("percent_off")},
    dtypes={"percent_off": pl.Decimal(5, 2)},
    unknown_attributes={"promo_name": "No promotion"}, deleted_flag=None,
)
REDEMPTIONS = Entity("redemptions", (
    id_("redemption_id"), Column("redeemed_at", "timestamp", required=True),
    id_("promo_code", required=False), Column("saved", "decimal", required=True, min=0),
    Column("updated_at", "timestamp"),
))
FACT_REDEMPTION = FactByPartition(
    name="fact_redemption", entity=REDEMPTIONS, table="dw.fact_redemption",
    natural_key=("redemption_id",), event_ts="redeemed_at", version="updated_at",
    references=(DimensionReference(DIM_PROMOTION, "promo_code", "promotion_key"),),
    measures={"saved": pl.col("saved")}, dtypes={"saved": pl.Decimal(12, 2)},
    date_key="day_key",
)
PROJECT = Project((DimensionDate(), DIM_PROMOTION, FACT_REDEMPTION))


def _csv(path, header: str, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *lines]) + "\n")


def _drops(tmp_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    _csv(d1 / "promotions.csv", "promo_code,promo_name,percent_off,updated_at",
         "P-10,Ten off,10.00,2024-01-01T00:00:00Z",
         "P-20,Twenty off,20.00,2024-01-01T00:00:00Z",
         "P-20,Twenty off,20.00,2024-01-01T00:00:00Z")  # a duplicate
    _csv(d1 / "redemptions.csv", "redemption_id,redeemed_at,promo_code,saved,updated_at",
         "R-1,2024-01-05T10:00:00Z,P-10,1.50,",
         "R-2,2024-02-10T10:00:00Z,P-10,2.25,",
         "R-3,2024-02-11T10:00:00Z,,0.00,",          # no promotion: the unknown member
         "R-4,2024-02-12T10:00:00Z,P-99,3.00,",      # nobody described P-99: inferred
         "R-5,2024-02-13T10:00:00Z,P-20,-1.00,",     # rejected: saved below 0
         "R-1,2024-01-05T10:00:00Z,P-10,1.50,")      # a duplicate
    # later: P-10 became 15% from February; R-2 must point to that version now
    _csv(d2 / "promotions.csv", "promo_code,promo_name,percent_off,updated_at",
         "P-10,Ten off,15.00,2024-02-01T00:00:00Z")
    return d1, d2


def _facts(dsn):
    return rows(dsn, """
        SELECT f.redemption_id, f.day_key, f.saved::text, p.promo_code, p.promo_name,
               p.percent_off::text, p.is_inferred
        FROM dw.fact_redemption f JOIN dw.dim_promotion p USING (promotion_key)
        ORDER BY 1""")


def test_a_pipeline_declared_outside_the_engine_loads_end_to_end(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    run = load_drop(PROJECT, settings, d1)
    c, p = run.counts["redemptions"], run.counts["promotions"]
    assert (c.read, c.loaded, c.rejected, c.duplicate) == (6, 4, 1, 1) and c.balanced()
    assert (p.read, p.loaded, p.duplicate, p.inferred) == (3, 2, 1, 1) and p.balanced()
    assert _facts(dsn) == [
        ("R-1", 20240105, "1.50", "P-10", "Ten off", "10.00", False),
        ("R-2", 20240210, "2.25", "P-10", "Ten off", "10.00", False),
        ("R-3", 20240211, "0.00", None, "No promotion", None, False),
        ("R-4", 20240212, "3.00", "P-99", None, None, True),
    ]
    assert rows(dsn, "SELECT rules FROM etl.rejects WHERE entity = 'redemptions'") == [
        (["saved:below_0"],)]
    assert rows(dsn, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                     "WHERE i.inhparent = 'dw.fact_redemption'::regclass ORDER BY 1") == [
        ("fact_redemption_202401",), ("fact_redemption_202402",)]
    assert rows(dsn, "SELECT count(*) FROM dw.dim_date WHERE year = 2024") == [(366,)]

    load_drop(PROJECT, settings, d2)
    assert [r[5] for r in _facts(dsn)[:2]] == ["10.00", "15.00"]  # R-2 re-pointed
    before = _tables(dsn)
    again = load_drop(PROJECT, settings, d2).counts["promotions"]
    assert (again.loaded, again.merged) == (0, 1)  # loading the same input twice changes nothing
    assert _tables(dsn) == before


def _tables(dsn):
    return (rows(dsn, "SELECT f::text FROM dw.fact_redemption f ORDER BY 1"),
            rows(dsn, "SELECT d::text FROM dw.dim_promotion d ORDER BY 1"))


def test_a_reference_declared_later_joins_a_fact_table_that_has_lines(settings, dsn, tmp_path):
    """The fact first loaded without promotions; then the project declares dim_promotion
    and the reference: the table gains the column (old lines at the unknown member), and
    the next load of those lines points them to their promotions."""
    plain = Entity("redemptions", tuple(c for c in REDEMPTIONS.columns if c.name != "promo_code"))
    fact_plain = FactByPartition(
        name="fact_redemption", entity=plain, table="dw.fact_redemption",
        natural_key=("redemption_id",), event_ts="redeemed_at", version="updated_at",
        references=(), measures={"saved": pl.col("saved")}, dtypes={"saved": pl.Decimal(12, 2)},
        date_key="day_key")
    d0 = tmp_path / "d0"
    _csv(d0 / "redemptions.csv", "redemption_id,redeemed_at,saved,updated_at",
         "R-1,2024-01-05T10:00:00Z,1.50,")
    load_drop(Project((DimensionDate(), fact_plain)), settings, d0)
    d1, _ = _drops(tmp_path)
    conn = connect(dsn)  # what the next run does first: the project's schema
    apply_schema(conn, PROJECT)
    conn.close()
    assert rows(dsn, "SELECT redemption_id, promotion_key FROM dw.fact_redemption") == [
        ("R-1", -1)]  # the old line: the unknown member until it is loaded again
    run = load_drop(PROJECT, settings, d1)
    assert run.counts["redemptions"].balanced()
    assert _facts(dsn)[0] == ("R-1", 20240105, "1.50", "P-10", "Ten off", "10.00", False)
    assert rows(dsn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'fact_redemption' "
                     "AND indexname = 'fact_redemption_promotion_idx'") == [(1,)]
