"""Issue 16: web-analytics events (GA4 BigQuery export shape) as a source: the export's
nested shape flattened exactly, sessions across midnight and months, late and re-sent
events, bad lines as rejects with file and line, and the funnel and the link to the sales
checked against an independent count over generated files."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from retail_etl.generate.drops import generate_drops
from retail_etl.generate.events import generate_events
from tests.helpers import cli, error_line, rows, write_drop
from tests.helpers import load as load_drop

JAN31_2359 = 1706745540_000000  # 2024-01-31T23:59:00Z in microseconds


def event(ts, name="page_view", session: int | None = 1706745500, user="111.222", *,
          customer=None, page=None, items=None, tx=None, revenue=None, **params) -> dict:
    ps = ([{"key": "ga_session_id", "value": {"string_value": None, "int_value": str(session),
                                              "double_value": None}}] if session else [])
    if page:
        ps.append({"key": "page_location", "value": {"string_value": page}})
    for k, v in params.items():
        ps.append({"key": k, "value": {"int_value": v} if isinstance(v, int)
                   else {"double_value": v} if isinstance(v, float) else {"string_value": v}})
    return {"event_date": "20240131", "event_timestamp": str(ts), "event_name": name,
            "user_pseudo_id": user, "user_id": customer, "event_params": ps,
            "device": {"category": "mobile"}, "geo": {"country": "France"},
            "traffic_source": {"source": "google", "medium": "organic", "name": "(organic)"},
            "ecommerce": ({"transaction_id": tx, "purchase_revenue": revenue}
                          if name == "purchase" else None),
            "items": items or []}


def write(directory: Path, name: str, lines: list[dict | str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path = directory / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return directory


def load_events(dsn, directory: Path):
    result = cli("load", "--events-dir", str(directory), "--dsn", dsn)
    assert result.exit_code == 0, result.output
    return result


def counts(dsn) -> dict:
    ((c,),) = rows(dsn, "SELECT summary::text FROM etl.runs ORDER BY run_id DESC LIMIT 1")
    return json.loads(c)["entities"]["web_events"]


def sessions(dsn) -> list[dict]:
    return rows_named(dsn, "SELECT user_pseudo_id, ga_session_id, date_key, session_start::text "
                      "AS start, session_end::text AS end_, duration_seconds::text AS duration, "
                      "events, page_views, item_views, add_to_carts, checkouts, "
                      "landing_page, bought, purchases, revenue::text AS revenue, run_id "
                      "FROM dw.fact_sessions ORDER BY 1, 2")


def rows_named(dsn, sql) -> list[dict]:
    from tests.helpers import query
    return query(dsn, sql).to_dicts()


def test_export_shape_flattened_exactly(dsn, tmp_path):
    # a customer whose segment changed on 2024-01-15: events before and after it point to
    # the version valid at the event
    load_drop_dir = write_drop(tmp_path / "dims", customers=[
        ["C-1", "Ann", "Lee", "ann@example.com", "Retail", "Paris", "IDF", "FR", "2020-01-01",
         "2024-01-01T00:00:00Z"],
        ["C-1", "Ann", "Lee", "ann@example.com", "VIP", "Paris", "IDF", "FR", "2020-01-01",
         "2024-01-15T00:00:00Z"]],
        products=[["P-1", "Mug", "Home", "Kitchen", "Acme", "9.99", "2023-01-01T00:00:00Z"]])
    from retail_etl.config import Settings
    load_drop(Settings(dsn=dsn, data_dir=tmp_path / "data"), load_drop_dir)
    web = write(tmp_path / "web", "events_20240131.ndjson", [
        event(1705000000_000001, "page_view", 1705000000, customer="C-1",
              page="https://shop/x?a=1", page_referrer="https://google.com/",
              engagement_time_msec=1234, ga_session_number=3, percent_scrolled=90.5),
        event(1706745599_123457, "view_item", 1706745500, customer="C-1",
              items=[{"item_id": "P-1", "item_name": "Blue  Mug ", "price": 9.99,
                      "quantity": 1}]),
        event(1706745600_999999, "purchase", 1706745500, customer="C-1", tx="O-1",
              revenue=19.980000000000001,
              items=[{"item_id": "P-1", "item_name": "Blue  Mug ", "price": 9.99,
                      "quantity": 2}]),
    ])
    load_events(dsn, web)
    got = rows_named(dsn, """
        SELECT e.event_timestamp::text AS ts, e.event_name, e.ga_session_id, e.page_location,
               e.page_referrer, e.engagement_time_msec, e.other_params::jsonb AS other,
               e.purchase_revenue::text AS revenue, e.transaction_id, e.item_count,
               e.event_date::text AS event_date, e.date_key, p.product_id, c.segment,
               e.items::jsonb AS items
        FROM dw.fact_web_events e
        LEFT JOIN dw.dim_product p ON p.product_key = e.product_key
        LEFT JOIN dw.dim_customer c ON c.customer_key = e.customer_key
        ORDER BY e.event_timestamp""")
    assert [g["ts"] for g in got] == ["2024-01-11 19:06:40.000001+00",
                                     "2024-01-31 23:59:59.123457+00",
                                     "2024-02-01 00:00:00.999999+00"]
    first, view, buy = got
    assert (first["ga_session_id"], first["page_location"], first["page_referrer"],
            first["engagement_time_msec"]) == ("1705000000", "https://shop/x?a=1",
                                               "https://google.com/", 1234)
    assert json.loads(first["other"]) == {"ga_session_number": "3", "percent_scrolled": "90.5"}
    assert first["segment"] == "Retail" and view["segment"] == "VIP"  # as of the event
    assert first["product_id"] is None  # no item: the unknown product
    assert (view["product_id"], view["item_count"]) == ("P-1", 1)
    # the items as sent: JSON is not "cleaned" (its strings keep their white space)
    assert json.loads(view["items"]) == [{"item_id": "P-1", "item_name": "Blue  Mug ",
                                          "price": 9.99, "quantity": 1}]
    assert (buy["revenue"], buy["transaction_id"], buy["date_key"]) == ("19.98", "O-1", 20240201)
    assert first["event_date"] == "2024-01-31"  # the export's own day, kept as sent

    # the same events as Parquet (BigQuery's other export format): the same events, so
    # every one is already stored (Parquet gives every item the fields any item has: the
    # JSON lines here name the same ones, or the items would read differently)
    parquet = tmp_path / "pq"
    parquet.mkdir()
    pl.read_ndjson(web / "events_20240131.ndjson").write_parquet(parquet / "events.parquet")
    load_events(dsn, parquet)
    assert counts(dsn)["read"] == 3 and counts(dsn)["merged"] == 3, counts(dsn)


def test_session_across_midnight_and_month_is_one(dsn, tmp_path):
    web = write(tmp_path / "web", "events_20240131.ndjson", [
        event(JAN31_2359 + 1, "page_view", page="https://shop/"),
        event(JAN31_2359 + 30_000000, "view_item", items=[{"item_id": "P-9", "quantity": 1}]),
        event(JAN31_2359 + 90_000000 + 7, "add_to_cart", items=[{"item_id": "P-9"}]),
        event(JAN31_2359 + 120_000000, "page_view", page="https://shop/cart"),
    ])
    load_events(dsn, web)
    (s,) = sessions(dsn)
    assert (s["date_key"], s["start"], s["end_"], s["duration"]) == (
        20240131, "2024-01-31 23:59:00.000001+00", "2024-02-01 00:01:00+00", "119.999999")
    assert (s["events"], s["page_views"], s["item_views"], s["add_to_carts"], s["bought"],
            s["landing_page"]) == (4, 2, 1, 1, False, "https://shop/")
    # the events are in both months' partitions; the session once, in its first day's
    assert rows(dsn, "SELECT tableoid::regclass::text, count(*) FROM dw.fact_web_events "
                "GROUP BY 1 ORDER BY 1") == [("dw.fact_web_events_202401", 2),
                                            ("dw.fact_web_events_202402", 2)]


def test_late_and_resent_events_update_their_session_once(dsn, tmp_path):
    day1 = [event(JAN31_2359 + 60_000000, "page_view", page="https://shop/b"),
            event(JAN31_2359 + 70_000000, "view_item", items=[{"item_id": "P-9"}])]
    load_events(dsn, write(tmp_path / "d1", "events_20240131.ndjson", day1))
    (before,) = sessions(dsn)
    assert before["events"] == 2 and before["landing_page"] == "https://shop/b"

    # three days later: an event of that session from before its first (a phone back
    # online), a purchase, and one of the first day's events again
    late = [event(JAN31_2359 + 5, "page_view", page="https://shop/a"),
            event(JAN31_2359 + 80_000000, "purchase", tx="O-7", revenue=12.5),
            day1[1]]
    load_events(dsn, write(tmp_path / "d2", "events_20240203.ndjson", late))
    c = counts(dsn)
    assert (c["read"], c["loaded"], c["merged"], c["duplicate"]) == (3, 2, 1, 0), c
    (after,) = sessions(dsn)
    assert (after["start"], after["events"], after["landing_page"], after["bought"],
            after["purchases"], after["revenue"]) == (
        "2024-01-31 23:59:00.000005+00", 4, "https://shop/a", True, 1, "12.50")
    assert after["run_id"] > before["run_id"]

    # the same late file again: nothing changes, not even the session's run
    load_events(dsn, tmp_path / "d2")
    assert counts(dsn)["loaded"] == 0
    assert sessions(dsn) == [after]


def test_a_session_follows_its_events_to_a_late_customer_version(dsn, tmp_path):
    from retail_etl.config import Settings
    settings = Settings(dsn=dsn, data_dir=tmp_path / "data")

    def customer(segment, since):
        return ["C-1", "Ann", "Lee", "ann@example.com", segment, "Paris", "IDF", "FR",
                "2020-01-01", since]

    load_drop(settings, write_drop(tmp_path / "d1", customers=[customer("Retail",
                                                                        "2024-01-20T00:00:00Z")]))
    load_events(dsn, write(tmp_path / "w", "events_20240125.ndjson", [
        event(1706140800_000000, "page_view", 1706140800, customer="C-1"),  # 2024-01-25
        event(1706140860_000000, "view_item", 1706140800, customer="C-1")]))
    # a version from 2024-01-22 arrives late: the events (and their session) now fall in it
    load_drop(settings, write_drop(tmp_path / "d2", customers=[customer("VIP",
                                                                        "2024-01-22T00:00:00Z")]))
    ((segment, same),) = rows(dsn, """
        SELECT c.segment, s.customer_key = (SELECT max(customer_key) FROM dw.fact_web_events)
        FROM dw.fact_sessions s JOIN dw.dim_customer c ON c.customer_key = s.customer_key""")
    assert (segment, same) == ("VIP", True)


@pytest.mark.parametrize("streamed", [False, True], ids=["in memory", "streamed"])
def test_bad_lines_are_rejects_with_file_line_and_rule(dsn, tmp_path, monkeypatch, streamed):
    if streamed:  # a file bigger than IN_MEMORY_BYTES goes through Parquet, a batch at a time
        monkeypatch.setattr("retail_etl.extract.events.IN_MEMORY_BYTES", 0)
    good = event(JAN31_2359, "page_view")
    web = write(tmp_path / "web", "events_20240131.ndjson.gz", [
        good,
        '{"event_name": "page_view", "event_timestamp": ',  # cut mid-line
        "",  # a blank line is no event
        event("2024-01-31 25:61", "page_view"),
        event(JAN31_2359 + 1, "purchase", revenue=3.0),  # no transaction id
        event(JAN31_2359 + 2, "page_view", session=None),
        "[1, 2, 3]",  # JSON, but not an event
        good,  # sent twice
    ])
    load_events(dsn, web)
    c = counts(dsn)
    assert (c["read"], c["loaded"], c["rejected"], c["duplicate"]) == (7, 1, 5, 1), c
    assert c["read"] == c["loaded"] + c["merged"] + c["rejected"] + c["duplicate"]
    got = rows(dsn, "SELECT file, line, array_to_string(rules, ',') FROM etl.rejects "
               "WHERE entity = 'web_events' ORDER BY line")
    assert got == [("events_20240131.ndjson.gz", 2, "line:not_json"),
                   ("events_20240131.ndjson.gz", 4, "event_timestamp:not_a_timestamp"),
                   ("events_20240131.ndjson.gz", 5, "transaction_id:missing_on_purchase"),
                   ("events_20240131.ndjson.gz", 6, "ga_session_id:required"),
                   ("events_20240131.ndjson.gz", 7, "line:not_json")]


def test_missing_empty_or_broken_exports_are_one_line(dsn, tmp_path):
    line = error_line(cli("load", "--events-dir", str(tmp_path / "nope"), "--dsn", dsn))
    assert "events directory" in line and "nope" in line and "does not exist" in line
    (tmp_path / "empty").mkdir()
    line = error_line(cli("load", "--events-dir", str(tmp_path / "empty"), "--dsn", dsn))
    assert line == f"Error: no export files in {tmp_path / 'empty'}"
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "events_1.ndjson.gz").write_text("not gzip")
    line = error_line(cli("load", "--events-dir", str(tmp_path / "gz"), "--dsn", dsn))
    assert "events_1.ndjson.gz: not a readable gzip file" in line
    (tmp_path / "pq").mkdir()
    (tmp_path / "pq" / "events.parquet").write_text("not parquet")
    line = error_line(cli("load", "--events-dir", str(tmp_path / "pq"), "--dsn", dsn))
    assert "events.parquet: not a readable Parquet file" in line
    assert rows(dsn, "SELECT count(*) FROM etl.runs WHERE status = 'ok'") == [(0,)]


# ---- generated exports against an independent count ------------------------------------


def _independent(web: Path) -> dict:
    """The funnel, sessions and purchases of generated files, counted here in plain Python
    from the lines (not by the product's code): the rules applied, identical events once."""
    seen, steps = set(), defaultdict(set)
    purchases = {}
    for f in sorted(web.glob("events_*")):
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        for raw in data.decode().splitlines():
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            params = {p["key"]: p["value"] for p in e["event_params"]}
            tx = (e.get("ecommerce") or {}).get("transaction_id")
            if (not str(e["event_timestamp"]).isdigit() or "ga_session_id" not in params
                    or (e["event_name"] == "purchase" and not tx)):
                continue
            key = json.dumps(e, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            session = (e["user_pseudo_id"], params["ga_session_id"]["int_value"])
            steps[session].add(e["event_name"])
            if e["event_name"] == "purchase":
                purchases[tx] = Decimal(str(e["ecommerce"]["purchase_revenue"])).quantize(
                    Decimal("0.01"))
    funnel = [len(steps)] + [sum(1 for s in steps.values() if name in s) for name in
                             ("view_item", "add_to_cart", "begin_checkout", "purchase")]
    return {"events": len(seen), "funnel": funnel, "purchases": purchases}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    generate_drops(root / "drops", 20_000, seed=5)
    drop = root / "drops" / "drop_001"
    web = root / "web"
    generate_events(drop, web, sessions=3_000, seed=5)
    return drop, web


def test_generated_funnel_and_link_match_an_independent_count(dsn, tmp_path, generated):
    drop, web = generated
    from retail_etl.config import Settings
    load_drop(Settings(dsn=dsn, data_dir=tmp_path / "data"), drop)
    load_events(dsn, web)
    made = json.loads((web / ".generated.json").read_text())
    c = counts(dsn)
    assert c["read"] == made["lines"]
    assert c["rejected"] == sum(made["dirt"].values())
    assert c["duplicate"] == made["duplicates"]
    want = _independent(web)
    assert c["loaded"] == want["events"]

    funnel = rows(dsn, "SELECT sessions FROM mart.web_funnel ORDER BY step")
    assert [n for (n,) in funnel] == want["funnel"]
    daily = rows(dsn, "SELECT sum(sessions)::int a, sum(viewed_item)::int b, "
                 "sum(added_to_cart)::int c, sum(began_checkout)::int d, "
                 "sum(purchased)::int e FROM mart.web_funnel_daily")
    assert list(daily[0]) == want["funnel"]
    # the funnel leaks as generated: 2-3% of sessions buy
    assert 0.02 <= want["funnel"][4] / want["funnel"][0] <= 0.03

    # the link: purchases the sales lack are exactly those with made-up order ids
    sold = set(pl.concat([pl.read_csv(f, infer_schema=False) for f in drop.glob("sales*.csv*")])
               ["order_id"].str.strip_chars().to_list())
    unmatched = {tx for tx in want["purchases"] if tx not in sold}
    ((web_n, matched, without, online, online_without),) = rows(dsn, """
        SELECT sum(web_purchases)::int a, sum(matched_purchases)::int b,
               sum(purchases_without_sale)::int c, sum(online_orders)::int d,
               sum(online_orders_without_purchase)::int e FROM mart.web_purchases_vs_sales""")
    assert (web_n, without) == (len(want["purchases"]), len(unmatched))
    assert matched == web_n - without > 0
    assert online_without < online  # most online orders were bought on the site
    # GA4's float revenue read exactly to the cent
    got = dict(rows(dsn, "SELECT order_id, web_revenue::text FROM mart.web_purchases"))
    assert {k: Decimal(v) for k, v in got.items()} == want["purchases"]

    # loading the same exports again changes nothing
    before = rows(dsn, "SELECT count(*), max(run_id) FROM dw.fact_sessions")
    load_events(dsn, web)
    assert counts(dsn)["loaded"] == 0
    assert rows(dsn, "SELECT count(*), max(run_id) FROM dw.fact_sessions") == before


def test_an_events_source_without_its_directory_names_the_variable(dsn):
    r = cli("load", "--dsn", dsn, RETAIL_ETL_SOURCES__WEB__KIND="events")
    assert error_line(r, 1) == \
        "Error: setting 'sources.web.dir': Field required"
    assert "RETAIL_ETL_SOURCES__WEB__DIR" in r.output


@pytest.mark.parametrize("streamed", [False, True], ids=["in memory", "streamed"])
def test_one_big_file_is_read_in_batches_and_lines_keep_their_numbers(dsn, tmp_path,
                                                                      monkeypatch, streamed):
    if streamed:
        monkeypatch.setattr("retail_etl.extract.events.IN_MEMORY_BYTES", 0)
    lines: list = [event(JAN31_2359 + i, "page_view", session=1706745000 + i % 7)
                   for i in range(2_500)]
    lines[1_499] = "{cut"  # line 1,500: in the second batch of 1,000
    lines[2_399] = event(JAN31_2359 + 2_399, "page_view", session=None)  # line 2,400
    write(tmp_path / "web", "events_big.ndjson", lines)
    r = cli("load", "--source", "web", "--dsn", dsn, RETAIL_ETL_SOURCES__WEB__KIND="events",
            RETAIL_ETL_SOURCES__WEB__DIR=str(tmp_path / "web"),
            RETAIL_ETL_SOURCES__WEB__BATCH_ROWS="1000")
    assert r.exit_code == 0, r.output
    c = counts(dsn)
    assert (c["read"], c["loaded"], c["rejected"]) == (2_500, 2_498, 2), c
    assert rows(dsn, "SELECT line, array_to_string(rules, ',') FROM etl.rejects ORDER BY 1") == [
        (1_500, "line:not_json"), (2_400, "ga_session_id:required")]
    assert rows(dsn, "SELECT count(*), sum(events)::int FROM dw.fact_sessions") == [(7, 2_498)]
