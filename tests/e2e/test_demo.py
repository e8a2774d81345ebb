"""Issue 21: the demo tells the same story on any date: a fixed business clock for the
generated shop, so two demos give the same KPI table, and it names no month of today."""

from __future__ import annotations

from pipelines import PROJECT
from retail_etl.config import FilesSource, Settings
from retail_etl.demo import run_demo
from tests.helpers import TEMPLATE, fresh_database


def test_two_demos_give_the_same_kpis_whatever_the_date(cluster, tmp_path):
    tables, told = [], []
    for i in range(2):
        with fresh_database(cluster, TEMPLATE) as dw, fresh_database(cluster) as shop:
            # a configuration naming a drop this demo does not make (`--drops 2` with the
            # repository's retail_etl.toml): the demo loads the drops it generated
            settings = Settings(dsn=dw, data_dir=tmp_path / f"demo{i}", sources={
                "drops": FilesSource(kind="files", dir=tmp_path / "raw" / "drop_003")})
            said: list[str] = []
            tables.append(run_demo(PROJECT, settings, shop, "shop", 3000, 2, said.append,
                                   lambda run: "run ok: " + ", ".join(
                                       f"{c.read} {c.entity} read" for c in run.counts.values()
                                       if c.read)))
            told.append(said)
    first, second = tables
    assert first.height > 0 and first.equals(second)
    # (the first line names the directory and its time, the last the report's path)
    assert told[0][1:-1] == told[1][1:-1]
    # then the payments and parcels of those orders, from the fake APIs, and the reconciliation
    story = "\n".join(told[0])
    assert "payments read" in story and "shipments read" in story
    assert "reconciliation (mart.payment_reconciliation_daily): revenue " in story
    assert " over 0 orders" not in story
    # then the site's events: the funnel, and its purchases against the sales
    assert "web_events read" in story
    assert "the checkout funnel (mart.web_funnel): session " in story
    assert "-> purchase " in story and " 0 web purchases" not in story
    # the shop's business ends with the drops' (2024), not today's month
    assert first.select("year").max().item() == 2024
    # it ends with the report (issue 19), the same figures both times
    assert told[0][-1].startswith(f"report: {tmp_path / 'demo0' / 'reports' / 'demo.html'} ")
    pages = [(tmp_path / f"demo{i}" / "reports" / "demo.html").read_text() for i in range(2)]
    assert pages[0].split("<h2>Data quality")[0] == pages[1].split("<h2>Data quality")[0]
