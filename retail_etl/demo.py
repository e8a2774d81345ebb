"""The demo's story (`retail-etl demo`): a few generated drops loaded in order, the last one
together with a generated shop database in one run, then a business day of the shop's
changes, the payments and parcels of the last quarter's orders from the (fake) payments and
shipping APIs, and the monthly revenue by category. The shop runs on a fixed business clock, so
the same seed gives the same warehouse and KPIs on any date."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import polars as pl

from retail_etl import queries, report
from retail_etl.config import EventsSource, FilesSource, HttpSource, PostgresSource, Settings
from retail_etl.db.connect import resolve_dsn
from retail_etl.fakeapi import FakeApi
from retail_etl.flow import load, load_drop
from retail_etl.generate import api as api_history
from retail_etl.generate import events as web_events
from retail_etl.generate.drops import describe, generate_drops
from retail_etl.generate.oltp import create_oltp, mutate_day
from retail_etl.run import Run
from retail_etl.spec import Project

SEED = 42
# the business clock of the demo's shop: the end of the drops' sales (generate/drops.py END)
CLOCK = datetime(2025, 1, 1, tzinfo=UTC)


def run_demo(project: Project, settings: Settings, shop_dsn: str, shop_database: str, lines: int, drops: int,
             say: Callable[[str], None], summary: Callable[[Run], str]) -> pl.DataFrame:
    """Tell the story through `say` (each run as `summary(run)`), write the KPI report;
    return the KPI table."""
    out = settings.data_dir / "raw" / "demo"
    generated = generate_drops(out, lines, SEED, drops)
    say(describe(generated))
    counts = create_oltp(shop_dsn, lines, SEED, as_of=CLOCK)
    say(f"shop database {shop_database}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    for d in generated.drops[:-1]:
        say(summary(load_drop(project, settings, d)))
    # the drop just generated (whatever directory a configuration names), with the shops
    # configured (as in retail_etl.toml), else the one just made
    shops = {n: c for n, c in (settings.sources or {}).items() if isinstance(c, PostgresSource)}
    sources = {"drops": FilesSource(kind="files", dir=generated.drops[-1]),
               **(shops or {"shop": PostgresSource(kind="postgres", dsn=shop_dsn)})}
    say(f"one run over the sources {', '.join(sources)} (a full snapshot of the shop):")
    say(summary(load(project, settings, sources, full=True)))
    mutate_day(shop_dsn, 1, as_of=CLOCK)
    say("a business day later, the shop's changes only:")
    shops = {n: c for n, c in sources.items() if isinstance(c, PostgresSource)}
    say(summary(load(project, settings, shops)))
    api_chapter(project, settings, say, summary)
    web_chapter(project, settings, say, summary)
    page = settings.data_dir / "reports" / "demo.html"
    report.write(resolve_dsn(settings), page, None, None)
    say(f"report: {page} (the last month against the one before; open it in a browser, or "
        "`retail-etl report --from YYYY-MM --to YYYY-MM --out FILE`)")
    return queries.kpi_monthly_revenue(resolve_dsn(settings))


DEMO_KEY = "sk_test_demo_only"  # the fake servers' key: not a secret


def api_chapter(project: Project, settings: Settings, say: Callable[[str], None],
                summary: Callable[[Run], str]) -> None:
    """The warehouse's orders paid and shipped: a history generated for them, served by the
    fake payments and shipping APIs on loopback, loaded as two more sources; then what the
    reconciliation says."""
    dsn = resolve_dsn(settings)
    # the providers went live in the last quarter: a short history keeps the demo quick
    since = CLOCK - timedelta(days=92)
    orders = queries.orders(dsn).filter(pl.col("order_ts") >= since)
    made = api_history.history(orders, SEED, now=CLOCK)
    with (FakeApi(made["charges"], made["events"], token=DEMO_KEY) as pay,
          FakeApi(trackers=made["trackers"], token=DEMO_KEY) as ship):
        sources = {"payments": HttpSource(kind="http", api="payments", base_url=pay.base_url,
                                          token=DEMO_KEY),
                   "shipping": HttpSource(kind="http", api="shipping", base_url=ship.base_url,
                                          token=DEMO_KEY)}
        say(f"the payments and shipping APIs for the last quarter's orders (fakes on "
            f"loopback: {len(made['charges']):,} "
            f"charges, {len(made['events']):,} events, {len(made['trackers']):,} parcels):")
        say(summary(load(project, settings, sources)))
    r = queries.reconciliation(dsn, since.date()).row(0, named=True)
    say(f"the quarter's reconciliation (mart.payment_reconciliation_daily): revenue {r['revenue']}, "
        f"captured {r['captured']}, refunded {r['refunded']}, difference {r['difference']} "
        f"over {r['orders_differing']:,} orders (mart.payment_differences); "
        f"{r['paid_not_shipped']:,} paid but not shipped; {r['avg_hours_to_ship']} h to ship "
        "on average")


def web_chapter(project: Project, settings: Settings, say: Callable[[str], None],
                summary: Callable[[Run], str]) -> None:
    """The shop's site: the last three days' GA4 exports, in which the warehouse's online
    orders are bought, loaded as one more source; then the funnel and the link to the
    sales."""
    out = settings.data_dir / "raw" / "demo_web"
    dsn = resolve_dsn(settings)
    made = web_events.generate_events(queries.web_sales(dsn), out, seed=SEED, days=3)
    say(f"the site's web analytics (GA4 exports in {out.name}/): "
        f"{web_events.describe(made, where=False)}")
    say(summary(load(project, settings, {"web": EventsSource(kind="events", dir=out)})))
    steps = queries.web_funnel(dsn)
    say("the checkout funnel (mart.web_funnel): " + " -> ".join(
        f"{r['name']} {r['sessions']:,}" + (f" ({float(r['rate_from_previous']):.0%})"
                                            if r["rate_from_previous"] else "")
        for r in steps.iter_rows(named=True)))
    k = queries.web_link(dsn).row(0, named=True)
    say(f"purchases against sales (mart.web_purchases_vs_sales): {k['web_purchases']:,} web "
        f"purchases, {k['purchases_without_sale']:,} for orders the sales lack; "
        f"{k['online_orders_without_purchase']:,} of {k['online_orders']:,} online orders "
        f"without a purchase event; {k['customers_online_and_in_store']:,} customers buy "
        "online and in stores (mart.customer_channels)")
