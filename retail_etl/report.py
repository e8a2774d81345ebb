"""`retail-etl report`: the KPI report, one self-contained HTML file (charts embedded as PNG,
opens offline), from the mart. `figures` is what the report says, as plain data (its JSON
is byte-identical for the same warehouse); `render_html` and `charts` draw it."""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa

from retail_etl.db.connect import connect
from retail_etl.errors import EtlError, UsageError
from retail_etl.load import refresh

# the additive parts of the KPIs, summed over a period, then kpi_ratios (050_mart.sql)
_PERIOD = """
    SELECT p.*, r.*
    FROM (SELECT sum(revenue) AS revenue, sum(gross_sales) AS gross_sales,
                 sum(returns) AS returns, sum(orders)::bigint AS orders,
                 sum(lines)::bigint AS lines, sum(units)::bigint AS units,
                 sum(units_sold)::bigint AS units_sold,
                 sum(units_returned)::bigint AS units_returned, sum(discount) AS discount,
                 sum(list_sales) AS list_sales
          FROM mart.kpi_monthly
          WHERE breakdown = 'total' AND month BETWEEN $1 AND $2) p
    CROSS JOIN LATERAL mart.kpi_ratios(p.revenue, p.orders, p.units, p.units_sold,
                                       p.units_returned, p.discount, p.list_sales) r
"""
KPIS = ("revenue", "gross_sales", "returns", "orders", "lines", "units", "avg_order_value",
        "units_per_transaction", "discount_rate", "return_rate")


def month(text: str, option: str) -> date:
    try:
        y, m = text.split("-")
        return date(int(y), int(m), 1)
    except ValueError:
        raise UsageError(f"{option} must be a month as YYYY-MM, got {text!r}") from None


def _shift(d: date, months: int) -> date:
    n = d.year * 12 + d.month - 1 + months
    return date(n // 12, n % 12 + 1, 1)


def figures(dsn: str, first: date | None = None, last: date | None = None) -> dict:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regnamespace('mart') IS NOT NULL")
            if not cur.fetchone()[0]:
                raise EtlError("this warehouse has no mart yet",
                               hint="load something first: `retail-etl load --source-dir DIR`")
            if not refresh.filled(cur):
                raise EtlError("the mart was never filled",
                               hint="run `retail-etl refresh` (every load refreshes them)")

            def frame(sql: str, *params) -> pl.DataFrame:
                cur.execute(sql, parameters=params or None)
                return exact_frame(cur.fetch_arrow_table())

            span = frame("SELECT min(month) AS lo, max(month) AS hi FROM mart.kpi_monthly "
                         "WHERE breakdown = 'total'").row(0)
            if span[0] is None:
                raise EtlError("the mart holds no sales yet",
                               hint="load a drop with sales: `retail-etl load --source-dir DIR`")
            last = last or span[1]
            first = first or last
            if first > last:
                raise UsageError(f"--from {first:%Y-%m} is after --to {last:%Y-%m}")
            if last < span[0] or first > span[1]:
                raise UsageError(f"no sales from {first:%Y-%m} to {last:%Y-%m}: the warehouse "
                                 f"has {span[0]:%Y-%m} to {span[1]:%Y-%m}")
            n = (last.year - first.year) * 12 + last.month - first.month + 1
            prior = (_shift(first, -n), _shift(first, -1))
            out = {
                "period": {"from": first, "to": last, "months": n},
                "prior": {"from": prior[0], "to": prior[1]},
                "kpis": {"period": frame(_PERIOD, first, last).select(KPIS).row(0, named=True),
                         "prior": frame(_PERIOD, *prior).select(KPIS).row(0, named=True)},
                "trend": frame("""
                    SELECT month, revenue, orders FROM mart.kpi_monthly
                    WHERE breakdown = 'total' AND month BETWEEN $1 AND $2 ORDER BY month""",
                               _shift(last, -23), last).to_dicts(),
                "top_products": frame("""
                    SELECT rank() OVER (ORDER BY sum(m.revenue) DESC) AS rank, m.product_id,
                           min(p.product_name) AS product_name, min(p.category) AS category,
                           sum(m.revenue) AS revenue, sum(m.units)::bigint AS units
                    FROM mart.product_monthly m
                    LEFT JOIN dw.dim_product p ON p.product_id = m.product_id AND p.is_current
                    WHERE m.month BETWEEN $1 AND $2
                    GROUP BY m.product_id ORDER BY revenue DESC, m.product_id LIMIT 10""",
                                      first, last).to_dicts(),
                "stores": frame("""
                    SELECT k.store_id, min(s.store_name) AS store_name,
                           sum(revenue) FILTER (WHERE month >= $1) AS revenue,
                           sum(revenue) FILTER (WHERE month < $1) AS revenue_prior,
                           mart.growth(sum(revenue) FILTER (WHERE month >= $1),
                                       sum(revenue) FILTER (WHERE month < $1)) AS growth
                    FROM mart.kpi_monthly k
                    LEFT JOIN dw.dim_store s ON s.store_id = k.store_id AND s.is_current
                    WHERE breakdown = 'store' AND month BETWEEN $3 AND $2
                    GROUP BY k.store_id ORDER BY revenue DESC NULLS LAST, k.store_id""",
                                first, last, prior[0]).to_dicts(),
                "cohorts": frame("""
                    SELECT cohort_month, months_since, cohort_customers, retention
                    FROM mart.customer_cohorts
                    WHERE cohort_month BETWEEN $1 AND $2 AND months_since <= 11
                    ORDER BY 1, 2""", _shift(last, -11), last).to_dicts(),
                "rfm_segments": frame("""
                    SELECT rfm_segment AS segment, count(*) AS customers,
                           sum(monetary) AS revenue
                    FROM mart.rfm_current GROUP BY 1 ORDER BY 2 DESC, 1""").to_dicts(),
                "runs": frame("""
                    SELECT r.run_id, to_char(r.started_at AT TIME ZONE 'UTC',
                                             'YYYY-MM-DD HH24:MI') AS started, r.status,
                           sum(e.rows_read)::bigint AS read, sum(e.rows_loaded)::bigint AS loaded,
                           sum(e.rows_rejected)::bigint AS rejected,
                           sum(e.rows_duplicate)::bigint AS duplicates
                    FROM (SELECT * FROM etl.runs ORDER BY run_id DESC LIMIT 10) r
                    LEFT JOIN etl.run_entities e USING (run_id)
                    GROUP BY 1, 2, 3 ORDER BY 1 DESC""").to_dicts(),
                "rejects_by_rule": frame("""
                    SELECT rule, count(*) AS rows
                    FROM (SELECT unnest(rules) AS rule FROM etl.rejects
                          WHERE run_id IN (SELECT run_id FROM etl.runs
                                           ORDER BY run_id DESC LIMIT 10)) x
                    GROUP BY rule ORDER BY 2 DESC, 1""").to_dicts(),
            }
        conn.commit()
        return out
    finally:
        conn.close()


def exact_frame(table: pa.Table) -> pl.DataFrame:
    """The driver hands PostgreSQL numeric over as text in an opaque Arrow extension type:
    back to exact decimals, each column at the largest scale its values have."""
    numeric = [f.name for f in table.schema if isinstance(f.type, pa.BaseExtensionType)
               and getattr(f.type, "type_name", None) == "numeric"]
    plain = pa.table({f.name: pa.chunked_array([c.storage for c in col.chunks], f.type.storage_type)
                      if isinstance(f.type, pa.BaseExtensionType) else col
                      for f, col in zip(table.schema, table.columns, strict=True)})
    df = pl.from_arrow(plain)
    for c in numeric:
        scale = int(df[c].str.split(".").list.get(1, null_on_oob=True).str.len_chars().max() or 0)
        df = df.with_columns(pl.col(c).cast(pl.Decimal(38, scale)))
    return df


def to_json(fig: dict) -> str:
    """Decimals as strings (exact), dates ISO; keys in a fixed order: byte-identical."""
    def plain(v):
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, date):
            return v.isoformat()
        raise TypeError(type(v))
    return json.dumps(fig, default=plain, indent=2, ensure_ascii=False)


# ---- for people -------------------------------------------------------------------------

def money(v, currency: str = "$") -> str:
    if v is None:
        return "–"
    sign = "-" if v < 0 else ""
    return f"{sign}{currency}{abs(Decimal(v)):,.2f}"


def number(v) -> str:
    return "–" if v is None else f"{v:,}"


def percent(v) -> str:
    return "–" if v is None else f"{Decimal(v) * 100:+.1f}%"


def share(v) -> str:
    return "–" if v is None else f"{Decimal(v) * 100:.1f}%"


def _kpi_rows(fig: dict, currency: str) -> list[tuple[str, str, str]]:
    now, before = fig["kpis"]["period"], fig["kpis"]["prior"]
    fmt = {"revenue": lambda v: money(v, currency), "gross_sales": lambda v: money(v, currency),
           "returns": lambda v: money(v, currency), "avg_order_value": lambda v: money(v, currency),
           "orders": number, "lines": number, "units": number,
           "units_per_transaction": lambda v: "–" if v is None else f"{v:.2f}",
           "discount_rate": share, "return_rate": share}
    return [(k.replace("_", " "), fmt[k](now[k]), fmt[k](before[k])) for k in KPIS]


def charts(fig: dict, currency: str = "$") -> dict[str, bytes]:
    """name -> PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}

    def png(name, f):
        buf = io.BytesIO()
        f.tight_layout()
        f.savefig(buf, format="png", dpi=100, metadata={"Software": None})
        plt.close(f)
        out[name] = buf.getvalue()

    trend = fig["trend"]
    f, ax = plt.subplots(figsize=(8, 3))
    ax.plot([t["month"] for t in trend], [float(t["revenue"]) for t in trend], marker="o",
            color="#3b7dd8")
    ax.axvspan(fig["period"]["from"], fig["period"]["to"], color="#f2c14e", alpha=0.3)
    ax.set_title("Revenue per month (the report's period shaded)")
    ax.yaxis.set_major_formatter(lambda v, _: f"{currency}{v:,.0f}")
    png("revenue_trend", f)

    top = fig["top_products"][::-1]
    f, ax = plt.subplots(figsize=(8, 3.5))
    ax.barh([f"{t['product_name'] or t['product_id']}" for t in top],
            [float(t["revenue"]) for t in top], color="#3b7dd8")
    ax.set_title("Top 10 products by revenue")
    ax.xaxis.set_major_formatter(lambda v, _: f"{currency}{v:,.0f}")
    png("top_products", f)

    stores = fig["stores"][:15]
    f, ax = plt.subplots(figsize=(8, 3.5))
    xs = range(len(stores))
    ax.bar([x - 0.2 for x in xs], [float(s["revenue_prior"] or 0) for s in stores], 0.4,
           label="prior period", color="#b8c7de")
    ax.bar([x + 0.2 for x in xs], [float(s["revenue"] or 0) for s in stores], 0.4,
           label="period", color="#3b7dd8")
    ax.set_xticks(list(xs), [s["store_id"] for s in stores], rotation=45, ha="right")
    ax.set_title("Stores: revenue against the prior period")
    ax.yaxis.set_major_formatter(lambda v, _: f"{currency}{v:,.0f}")
    ax.legend()
    png("stores", f)

    cohorts = sorted({c["cohort_month"] for c in fig["cohorts"]})
    grid = [[float("nan")] * 12 for _ in cohorts]
    for c in fig["cohorts"]:
        grid[cohorts.index(c["cohort_month"])][c["months_since"]] = float(c["retention"])
    f, ax = plt.subplots(figsize=(8, 0.35 * len(cohorts) + 1.2))
    im = ax.imshow(grid or [[float("nan")]], cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(cohorts)), [f"{c:%Y-%m}" for c in cohorts])
    ax.set_xlabel("months since the first order")
    ax.set_title("Cohort retention")
    f.colorbar(im, ax=ax, format=lambda v, _: f"{v:.0%}")
    png("cohort_retention", f)

    seg = fig["rfm_segments"]
    f, ax = plt.subplots(figsize=(8, 3))
    ax.bar([s["segment"] for s in seg], [s["customers"] for s in seg], color="#3b7dd8")
    ax.set_title("Customers per RFM segment")
    png("rfm_segments", f)
    return out


def render_html(fig: dict, images: dict[str, bytes], currency: str = "$") -> str:
    e = html.escape
    per, pri = fig["period"], fig["prior"]

    def table(head: list[str], body: list[list[str]]) -> str:
        return ("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
                          for r in body) + "</table>")

    def img(name: str) -> str:
        b64 = base64.b64encode(images[name]).decode()
        return f'<img alt="{e(name)}" src="data:image/png;base64,{b64}">'

    growth = fig["kpis"]["period"]["revenue"], fig["kpis"]["prior"]["revenue"]
    change = (percent(growth[0] / growth[1] - 1) if growth[0] is not None and growth[1]
              else "–")
    sections = [
        f"<h1>Sales report {per['from']:%Y-%m} to {per['to']:%Y-%m}</h1>",
        f"<p>Against the prior period, {pri['from']:%Y-%m} to {pri['to']:%Y-%m}: revenue "
        f"{e(change)}.</p>",
        "<h2>KPIs</h2>", table(["KPI", "period", "prior period"],
                               [list(r) for r in _kpi_rows(fig, currency)]),
        "<h2>Revenue trend</h2>", img("revenue_trend"),
        "<h2>Top 10 products</h2>", img("top_products"),
        table(["rank", "product", "category", "revenue", "units"],
              [[t["rank"], t["product_name"] or t["product_id"], t["category"] or "",
                money(t["revenue"], currency), number(t["units"])] for t in fig["top_products"]]),
        "<h2>Stores</h2>", img("stores"),
        table(["store", "name", "revenue", "prior period", "growth"],
              [[s["store_id"], s["store_name"] or "", money(s["revenue"], currency),
                money(s["revenue_prior"], currency), percent(s["growth"])] for s in fig["stores"]]),
        "<h2>Cohort retention</h2>", img("cohort_retention"),
        "<h2>RFM segments</h2>", img("rfm_segments"),
        table(["segment", "customers", "revenue"],
              [[s["segment"], number(s["customers"]), money(s["revenue"], currency)]
               for s in fig["rfm_segments"]]),
        "<h2>Data quality: the last runs</h2>",
        table(["run", "started (UTC)", "status", "read", "loaded", "rejected", "duplicates"],
              [[r["run_id"], r["started"], r["status"], number(r["read"]), number(r["loaded"]),
                number(r["rejected"]), number(r["duplicates"])] for r in fig["runs"]]),
        table(["rejected by rule", "rows"],
              [[r["rule"], number(r["rows"])] for r in fig["rejects_by_rule"]]),
    ]
    style = ("body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{padding:4px 10px;"
             "border-bottom:1px solid #ddd;text-align:right}th{background:#f4f6fa}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Sales report</title>"
            f"<style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def write(dsn: str, out: Path | None, first: date | None, last: date | None,
          png_dir: Path | None = None, currency: str = "$") -> dict:
    fig = figures(dsn, first, last)
    if out is not None or png_dir is not None:
        images = charts(fig, currency)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_html(fig, images, currency), encoding="utf-8")
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
            for name, data in images.items():
                (png_dir / f"{name}.png").write_bytes(data)
    return fig
