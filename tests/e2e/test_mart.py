"""The mart (issue 19): its KPIs against a recomputation from the raw drop files in Polars,
written from the contract (not from the engine's code), exact to the cent; late history and
corrections flowing through the refresh; a failed refresh that leaves the load standing."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from retail_etl.generate.drops import generate_drops
from tests.helpers import (
    assert_mart_as_if_recomputed,
    cli,
    error_line,
    execute,
    load,
    rows,
    write_drop,
)

T0 = "2024-01-01T00:00:00Z"


def _cents(x: Decimal, places: int) -> str:
    return str(x.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _utc(c: pl.Expr) -> pl.Expr:
    """ISO 8601 with an offset, or without one (then UTC), 'T' or a space between."""
    c = c.str.replace(" ", "T")
    return pl.coalesce(c.str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False),
                       c.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False)
                       .dt.replace_time_zone("UTC"))


def expected_lines(drops: list[Path]) -> pl.DataFrame:
    """The sale lines the contract says a warehouse holds after these drops (clean ones:
    nothing to reject): per (order_id, line_number), the row with the latest updated_at (NULL:
    its order_ts), on a tie the last in load order (drops, then files by name, then lines)."""
    frames = []
    for d, drop in enumerate(drops):
        for f, path in enumerate(sorted(drop.glob("sales*.csv*"))):
            frames.append(pl.read_csv(path, infer_schema=False).with_columns(
                _order=pl.lit(d * 10_000 + f), _line=pl.int_range(pl.len())))
    raw = pl.concat(frames).with_columns(
        pl.col("order_id", "customer_id").str.strip_chars(),
        order_ts=_utc(pl.col("order_ts")), updated_at=_utc(pl.col("updated_at")))
    latest = (raw.with_columns(version=pl.coalesce("updated_at", "order_ts"))
              .sort("version", "_order", "_line")
              .group_by("order_id", "line_number", maintain_order=True).last())
    return latest.with_columns(
        month=pl.col("order_ts").dt.truncate("1mo").dt.date(),
        quantity=pl.col("quantity").cast(pl.Int64),
        total=pl.col("quantity").cast(pl.Decimal(22, 0)) * pl.col("unit_price").cast(pl.Decimal(12, 2))
        - pl.col("discount").replace("", None).cast(pl.Decimal(12, 2)).fill_null(0),
        customer_id=pl.col("customer_id").replace("", None),
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("mart_drops")
    generate_drops(out, 6_000, seed=7, drops=3, dirt=False)
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_mart_kpis_equal_a_recomputation_from_the_drop_files(settings, dsn, generated):
    for drop in generated:
        run = load(settings, drop)
        assert all(c.rejected == 0 for c in run.counts.values())
        assert [r.error for r in run.refreshed] == [None] * 7
    lines = expected_lines(generated)
    monthly = (lines.group_by("month").agg(revenue=pl.col("total").sum(),
                                           orders=pl.col("order_id").n_unique(),
                                           units=pl.col("quantity").sum())
               .sort("month"))
    by_month = {r["month"]: r for r in monthly.iter_rows(named=True)}
    want = []
    for m, r in by_month.items():
        prior = by_month.get(m.replace(year=m.year - 1))  # the same fiscal month, a year before
        yoy = (_cents(r["revenue"] / prior["revenue"] - 1, 4) if prior else None)
        want.append((m, str(r["revenue"]), r["orders"], _cents(r["revenue"] / r["orders"], 2),
                     _cents(Decimal(r["units"]) / r["orders"], 4), yoy))
    got = rows(dsn, """
        SELECT k.period_start, k.revenue::text, k.orders, k.avg_order_value::text,
               k.units_per_transaction::text, g.growth_year_over_year::text
        FROM mart.sales_kpis k
        JOIN mart.sales_growth_monthly g ON g.month = k.period_start AND g.breakdown = 'total'
        WHERE k.grain = 'month' AND k.breakdown = 'total' ORDER BY 1""")
    assert got == want
    assert sum(r["revenue"] for r in by_month.values()) == Decimal(
        rows(dsn, "SELECT sum(total_amount)::text FROM dw.fact_sales")[0][0])
    assert any(w[5] is not None for w in want)  # the drops span more than a year

    # cohorts: customers by their first month, and who ordered again n months later
    active = lines.filter(pl.col("customer_id").is_not_null()).select("customer_id", "month").unique()
    firsts = active.group_by("customer_id").agg(cohort=pl.col("month").min())
    cohorts = (active.join(firsts, on="customer_id")
               .with_columns(since=(pl.col("month").dt.year() - pl.col("cohort").dt.year()) * 12
                             + pl.col("month").dt.month().cast(pl.Int32)
                             - pl.col("cohort").dt.month().cast(pl.Int32))
               .group_by("cohort", "since").agg(active=pl.len()))
    sizes = dict(firsts.group_by("cohort").agg(n=pl.len()).iter_rows())
    want = sorted((c, s, sizes[c], a, _cents(Decimal(a) / sizes[c], 4))
                  for c, s, a in cohorts.iter_rows())
    got = rows(dsn, "SELECT cohort_month, months_since, cohort_customers, active_customers, "
                    "retention::text FROM mart.customer_cohorts ORDER BY 1, 2")
    assert got == want
    assert_mart_as_if_recomputed(dsn)  # three loads, each refreshing what it touched


def test_every_breakdown_adds_up_to_the_total(settings, dsn, generated):
    """Revenue by store, category, segment, country or store x category sums to the total
    of the same month: no line is lost to an unknown member or counted twice."""
    load(settings, generated[0])
    got = rows(dsn, """
        SELECT breakdown, count(DISTINCT period_start), bool_and(s = t)
        FROM (SELECT period_start, breakdown, sum(revenue) AS s FROM mart.sales_kpis
              WHERE grain = 'month' GROUP BY 1, 2) b
        JOIN (SELECT period_start, revenue AS t FROM mart.sales_kpis
              WHERE grain = 'month' AND breakdown = 'total') tot USING (period_start)
        GROUP BY breakdown ORDER BY 1""")
    assert [(b, ok) for b, _, ok in got] == [
        ("category", True), ("country", True), ("segment", True), ("store", True),
        ("store,category", True), ("total", True)]


def prod(pid, cat, at):
    return [pid, "Widget", cat, "", "", "10.00", at]


def sale(oid, ts, qty=1, upd=""):
    return [oid, 1, ts, "C-1", "S-1", "P-1", qty, "10.00", "", upd]


def test_corrections_and_late_history_reach_the_mart(settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                              sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    by_category = "SELECT category, revenue::text, units FROM mart.sales_kpis WHERE " \
                  "grain = 'month' AND breakdown = 'category' ORDER BY 1"
    assert rows(dsn, by_category) == [("Toys", "10.00", 1)]
    # a correction of the line, and a late version that says P-1 was a game by then
    run = load(settings, write_drop(tmp_path / "d2", products=[
        prod("P-1", "Games", "2024-01-03T00:00:00Z")], sales=[
        sale("O-1", "2024-01-05T10:00:00Z", qty=3, upd="2024-01-06T00:00:00Z")]))
    assert "mart.kpi_daily" in [r.view for r in run.refreshed]
    assert rows(dsn, by_category) == [("Games", "30.00", 3)]
    # nothing changed: no refresh owed, none done
    again = load(settings, write_drop(tmp_path / "d3", sales=[
        sale("O-1", "2024-01-05T10:00:00Z", qty=3, upd="2024-01-06T00:00:00Z")]))
    assert again.refreshed == [] and "refresh" not in [s.name for s in again.stages]


def test_a_refresh_recomputes_only_the_days_a_run_touched_and_agrees_with_a_full_one(
        settings, dsn, tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                              sales=[sale("O-1", "2024-01-05T10:00:00Z"),
                                     [*sale("O-2", "2024-02-07T10:00:00Z")[:5], "P-9",
                                      *sale("O-2", "")[6:]]]))
    total = "SELECT date::text, revenue::text FROM mart.kpi_daily WHERE breakdown = 'total' " \
            "ORDER BY 1"
    assert rows(dsn, total) == [("2024-01-05", "10.00"), ("2024-02-07", "10.00")]
    # a day the new drop does not touch is not rewritten (its row keeps its place on disk)
    (jan,), = rows(dsn, "SELECT ctid::text FROM mart.kpi_daily WHERE breakdown = 'total' "
                        "AND date = '2024-01-05'")
    # P-9, inferred for O-2, described now: its version changes in place, and O-2's day with it
    run = load(settings, write_drop(tmp_path / "d2", products=[prod("P-9", "Games", T0)]))
    assert rows(dsn, "SELECT DISTINCT date_key FROM etl.touched_days") == []
    assert rows(dsn, "SELECT month::text, category, revenue::text FROM mart.kpi_monthly WHERE "
                     "breakdown = 'category' ORDER BY 1") == [
        ("2024-01-01", "Toys", "10.00"), ("2024-02-01", "Games", "10.00")]
    assert "refresh" in [s.name for s in run.stages]
    assert rows(dsn, "SELECT ctid::text FROM mart.kpi_daily WHERE breakdown = 'total' "
                     "AND date = '2024-01-05'") == [(jan,)]
    # a correction that moves O-1 to another month: both months change
    load(settings, write_drop(tmp_path / "d3", sales=[
        sale("O-1", "2024-03-01T10:00:00Z", qty=2, upd="2024-03-02T00:00:00Z")]))
    assert rows(dsn, total) == [("2024-02-07", "10.00"), ("2024-03-01", "20.00")]
    cells = "SELECT cohort_month::text, months_since, customers FROM mart.cohort_cells ORDER BY 1, 2"
    assert rows(dsn, cells) == [("2024-02-01", 0, 1), ("2024-02-01", 1, 1)]
    assert_mart_as_if_recomputed(dsn)
    # a late sale from before the customer's first month: the cohort moves earlier
    load(settings, write_drop(tmp_path / "d4", sales=[sale("O-5", "2023-12-20T10:00:00Z")]))
    assert rows(dsn, cells) == [("2023-12-01", 0, 1), ("2023-12-01", 2, 1), ("2023-12-01", 3, 1)]
    assert rows(dsn, "SELECT cohort_month::text, last_order::text, orders, revenue::text "
                     "FROM mart.customer_summary") == [("2023-12-01", "2024-03-01", 3, "40.00")]
    assert_mart_as_if_recomputed(dsn)


def test_a_failed_refresh_leaves_the_load_committed_and_the_next_run_retries(settings, dsn,
                                                                             tmp_path):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                              sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    # a mart table that refuses the new day's figures: the refresh fails as a whole
    execute(dsn, "ALTER TABLE mart.kpi_daily ADD CONSTRAINT no_new_days "
                 "CHECK (date < '2024-01-06')")
    run = load(settings, write_drop(tmp_path / "d2", sales=[sale("O-2", "2024-01-06T10:00:00Z")]))
    assert [(r.view, r.error) for r in run.refreshed] == [("mart", (
        'new row for relation "kpi_daily" violates check constraint "no_new_days"'))]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(2,)]
    assert rows(dsn, "SELECT status FROM etl.runs ORDER BY run_id") == [("ok",), ("ok",)]
    assert rows(dsn, "SELECT error IS NOT NULL FROM etl.mart_refresh") == [(True,)]
    # nothing of the failed refresh stayed: not the customer days it had written, nor the
    # touched days it had taken
    assert rows(dsn, "SELECT count(*) FROM mart.customer_days") == [(1,)]
    assert rows(dsn, "SELECT DISTINCT date_key FROM etl.touched_days") == [(20240106,)]
    execute(dsn, "ALTER TABLE mart.kpi_daily DROP CONSTRAINT no_new_days")
    # a run that changes nothing still owes the refresh, and does it
    retry = load(settings, write_drop(tmp_path / "d3", sales=[sale("O-2", "2024-01-06T10:00:00Z")]))
    assert retry.counts["sales"].loaded == 0
    assert [r.error for r in retry.refreshed] == [None] * 7
    assert rows(dsn, "SELECT sum(revenue)::text FROM mart.sales_kpis "
                     "WHERE grain = 'month' AND breakdown = 'total'") == [("20.00",)]
    assert rows(dsn, "SELECT count(*) FROM etl.mart_refresh WHERE error IS NOT NULL") == [(0,)]
    assert rows(dsn, "SELECT count(*) FROM etl.touched_days") == [(0,)]


def test_the_report_is_one_offline_file_its_json_the_same_bytes_every_time(settings, dsn,
                                                                           generated, tmp_path):
    for drop in generated:
        load(settings, drop)
    page, pngs = tmp_path / "r" / "report.html", tmp_path / "png"
    r = cli("report", "--dsn", dsn, "--out", str(page), "--png", str(pngs),
            "--from", "2024-10", "--to", "2024-12")
    assert r.exit_code == 0, r.output
    body = page.read_text()
    assert body.count('src="data:image/png;base64,') == 5 and "http" not in body
    assert sorted(p.name for p in pngs.iterdir()) == [
        "cohort_retention.png", "revenue_trend.png", "rfm_segments.png", "stores.png",
        "top_products.png"]
    first = cli("report", "--dsn", dsn, "--json", "--from", "2024-10", "--to", "2024-12")
    again = cli("report", "--dsn", dsn, "--json", "--from", "2024-10", "--to", "2024-12")
    assert first.exit_code == 0 and first.stdout == again.stdout
    fig = json.loads(first.stdout)
    assert (fig["period"], fig["prior"]) == (
        {"from": "2024-10-01", "to": "2024-12-01", "months": 3},
        {"from": "2024-07-01", "to": "2024-09-01"})
    revenue = rows(dsn, "SELECT sum(total_amount)::text FROM dw.fact_sales "
                        "WHERE order_ts >= '2024-10-01' AND order_ts < '2025-01-01'")[0][0]
    assert fig["kpis"]["period"]["revenue"] == revenue
    # for people: thousands separators and the currency in the HTML
    shown = f"${Decimal(revenue):,.2f}"
    assert shown in body and "," in shown


@pytest.mark.parametrize("args, message", [
    (["--from", "2024-13"], "Error: --from must be a month as YYYY-MM, got '2024-13'"),
    (["--from", "2024-05", "--to", "2024-02"], "Error: --from 2024-05 is after --to 2024-02"),
    ([], "Error: nothing to write"),
    (["--from", "2030-01", "--to", "2030-02"],
     "Error: no sales from 2030-01 to 2030-02: the warehouse has 2024-01 to 2024-01"),
])
def test_report_mistakes_are_one_line(settings, dsn, tmp_path, args, message):
    load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                              sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    extra = ["--json"] if args else []
    assert error_line(cli("report", "--dsn", dsn, *args, *extra), 2) == message  # usage: 2


def test_a_manual_mart_waits_for_retail_etl_refresh(settings, dsn, tmp_path):
    manual = settings.model_copy(update={"refresh_mart": "manual"})
    run = load(manual, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                                  sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    assert run.refreshed == [] and "refresh" not in [s.name for s in run.stages]
    assert rows(dsn, "SELECT count(*) FROM pg_matviews WHERE schemaname = 'mart' "
                     "AND ispopulated") == [(0,)]
    r = cli("refresh", "--dsn", dsn)
    assert r.exit_code == 0, r.output
    assert rows(dsn, "SELECT sum(revenue)::text FROM mart.sales_kpis "
                     "WHERE grain = 'month' AND breakdown = 'total'") == [("10.00",)]


def test_refresh_of_a_database_that_is_no_warehouse_is_one_line(cluster):
    from tests.helpers import fresh_database

    with fresh_database(cluster) as empty:
        r = cli("refresh", "--dsn", empty)
        assert error_line(r).endswith("holds no warehouse yet: nothing to refresh")


def test_a_refresh_that_fails_as_a_whole_is_owed_by_the_next_run(settings, dsn, tmp_path,
                                                                 monkeypatch):
    from retail_etl.load import refresh

    real = refresh.refresh
    load(settings, write_drop(tmp_path / "d0", products=[prod("P-1", "Toys", T0)]))  # filled

    def broken(*args, **kwargs):
        raise RuntimeError("too many connections")

    monkeypatch.setattr(refresh, "refresh", broken)
    run = load(settings, write_drop(tmp_path / "d1", products=[prod("P-1", "Toys", T0)],
                                    sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    assert [(r.view, r.error) for r in run.refreshed] == [("mart", "too many connections")]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(1,)]  # the load stands
    assert rows(dsn, "SELECT count(*) FROM mart.sales_kpis") == [(0,)]  # stale: owed
    monkeypatch.setattr(refresh, "refresh", real)
    again = load(settings, write_drop(tmp_path / "d2", sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    assert again.counts["sales"].loaded == 0 and [r.error for r in again.refreshed] == [None] * 7
    assert rows(dsn, "SELECT count(*) FROM etl.mart_refresh WHERE error IS NOT NULL") == [(0,)]
    assert rows(dsn, "SELECT sum(revenue)::text FROM mart.sales_kpis "
                     "WHERE grain = 'month' AND breakdown = 'total'") == [("10.00",)]
