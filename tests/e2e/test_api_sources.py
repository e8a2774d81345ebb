"""Issue 15: external APIs as sources, against the fake payments and shipping servers on
loopback (retail_etl/fakeapi.py): every pagination path, incremental runs with refunds and
delivered parcels, 429 and 5xx storms, a connection dropped mid-page, a body that is not
JSON, an expired key (one line, the key never printed), bad objects as rejects."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from retail_etl.fakeapi import FakeApi
from tests.helpers import cli, error_line, rows, write_drop
from tests.helpers import load as load_drop

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
NOW = int(datetime.now(UTC).timestamp())


def charge(n: int, *, created: int | None = None, amount: int = 1250, order: str | None = None,
           status: str = "succeeded", **extra) -> dict:
    c = {"id": f"ch_{n:06d}", "object": "charge", "amount": amount, "amount_refunded": 0,
         "currency": "usd", "created": created or NOW - 86400 + n * 60, "status": status,
         "paid": status == "succeeded", "refunded": False,
         "payment_method_details": {"type": "card", "card": {"brand": "visa"}},
         "metadata": {"order_id": order or f"O-{n}"}}
    return c | extra


def tracker(n: int, status: str = "in_transit", at: str | None = None) -> dict:
    created = (datetime.now(UTC) - timedelta(days=2, minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
    at = at or (datetime.now(UTC) - timedelta(days=1, minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": f"trk_{n:06d}", "object": "Tracker", "tracking_code": f"1Z{n:08d}",
            "carrier": "UPS", "status": status, "created_at": created, "updated_at": at,
            "est_delivery_date": "2031-01-01T00:00:00Z", "reference": f"O-{n}",
            "tracking_details": [{"status": "pre_transit", "datetime": created},
                                 {"status": status, "datetime": at}]}


def env(api: FakeApi, name: str = "pay", kind: str = "payments", **more) -> dict:
    e = {f"RETAIL_ETL_SOURCES__{name.upper()}__KIND": "http",
         f"RETAIL_ETL_SOURCES__{name.upper()}__API": kind,
         f"RETAIL_ETL_SOURCES__{name.upper()}__BASE_URL": api.base_url,
         f"RETAIL_ETL_SOURCES__{name.upper()}__TOKEN": KEY,
         f"RETAIL_ETL_SOURCES__{name.upper()}__PAGE_SIZE": "7",
         f"RETAIL_ETL_SOURCES__{name.upper()}__MAX_RETRY_WAIT_SECONDS": "2",
         f"RETAIL_ETL_SOURCES__{name.upper()}__DEADLINE_SECONDS": "20"}
    return e | {f"RETAIL_ETL_SOURCES__{name.upper()}__{k.upper()}": str(v) for k, v in more.items()}


def load(dsn, api, name="pay", kind="payments", **more):
    return cli("load", "--source", name, "--dsn", dsn, **env(api, name, kind, **more))


def last_counts(dsn, entity="payments") -> dict:
    ((c,),) = rows(dsn, "SELECT summary::text FROM etl.runs ORDER BY run_id DESC LIMIT 1")
    return json.loads(c)["entities"][entity]


@pytest.fixture
def pay():
    with FakeApi(charges=[charge(i) for i in range(30)], events=[], token=KEY) as api:
        yield api


def test_charges_page_to_the_end_then_runs_read_only_the_window(dsn, pay):
    r = load(dsn, pay)
    assert r.exit_code == 0, r.output
    assert rows(dsn, "SELECT count(*), sum(amount)::text, count(DISTINCT run_id) AS runs "
                     "FROM dw.fact_payments") == [(30, "375.00", 1)]
    listed = [q for q in pay.requests if q["path"] == "/v1/charges"]
    assert len(listed) == 5  # 30 charges, 7 a page
    assert [q["query"].get("starting_after") for q in listed] == [
        None, "ch_000023", "ch_000016", "ch_000009", "ch_000002"]
    marks = dict(rows(dsn, "SELECT entity, extract(epoch FROM watermark)::bigint "
                           "FROM etl.watermarks WHERE source = 'pay'"))
    assert marks["charges"] == NOW - 86400 + 29 * 60

    # nothing new: the window is read again (lag: 1 h), nothing is written
    pay.requests.clear()
    assert load(dsn, pay).exit_code == 0
    first = next(q for q in pay.requests if q["path"] == "/v1/charges")
    assert int(first["query"]["created[gte]"]) == marks["charges"] - 3600
    assert rows(dsn, "SELECT count(DISTINCT run_id) FROM dw.fact_payments") == [(1,)]
    c = last_counts(dsn)
    assert c["loaded"] == 0 and c["read"] == 30 and c["merged"] == 30


def test_a_refund_event_updates_exactly_its_charge(dsn, pay):
    assert load(dsn, pay).exit_code == 0
    pay.refund("ch_000004", 500, at=NOW - 10)
    pay.refund("ch_000005", 1250, at=NOW - 5)  # whole: refunded
    r = load(dsn, pay)
    assert r.exit_code == 0, r.output
    changed = rows(dsn, "SELECT charge_id, amount_refunded::text, refunded FROM dw.fact_payments "
                        "WHERE run_id = (SELECT max(run_id) FROM etl.runs) ORDER BY 1")
    assert changed == [("ch_000004", "5.00", False), ("ch_000005", "12.50", True)]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_payments") == [(30,)]


def test_429_and_5xx_are_retried_honouring_retry_after_and_other_4xx_are_not(dsn, pay):
    pay.retry_after = "0.4"
    pay.fail_next = [429, 503, 429]
    r = load(dsn, pay)
    assert r.exit_code == 0, r.output
    first = [q for q in pay.requests if q["path"] == "/v1/charges"][:4]
    assert [q["status"] for q in first] == [429, 503, 429, 200]
    gaps = [b["at"] - a["at"] for a, b in zip(first, first[1:], strict=False)]
    assert gaps[0] >= 0.4 and gaps[2] >= 0.4  # the waits Retry-After asked for
    assert rows(dsn, "SELECT count(*) FROM dw.fact_payments") == [(30,)]

    # an HTTP-date Retry-After, then a 400: never retried, one line naming it
    pay.requests.clear()
    # (a date is to the second: 2 s ahead is a wait of 1 to 2 s; made when the server
    # answers, so a slow start of the run under load does not eat into the wait)
    pay.retry_after = lambda: (datetime.now(UTC) + timedelta(seconds=2)).strftime(
        "%a, %d %b %Y %H:%M:%S GMT")
    pay.fail_next = [429, 400]
    bad = load(dsn, pay)
    assert bad.exit_code == 1
    assert "GET /v1/charges answered 400" in error_line(bad, 1)
    assert [q["status"] for q in pay.requests] == [429, 400]
    assert pay.requests[1]["at"] - pay.requests[0]["at"] >= 0.9


def test_a_dropped_connection_and_a_cut_body_are_read_again(dsn, pay):
    pay.fail_next = ["drop", "garbage"]
    r = load(dsn, pay)
    assert r.exit_code == 0, r.output
    assert rows(dsn, "SELECT count(*) FROM dw.fact_payments") == [(30,)]


def test_a_storm_past_the_deadline_fails_the_run_and_changes_nothing(dsn, pay):
    pay.rate_429, pay.retry_after = 1.0, "0.3"
    r = load(dsn, pay, deadline_seconds=1)
    assert r.exit_code == 1
    assert "for 1s of retries (deadline_seconds)" in error_line(r, 1)
    assert rows(dsn, "SELECT to_regclass('dw.fact_payments') IS NULL OR "
                     "NOT EXISTS (SELECT 1 FROM dw.fact_payments)") == [(True,)]


def test_an_expired_key_is_one_line_naming_the_setting_and_the_key_is_never_printed(dsn, pay):
    pay.token = "sk_test_the_new_one"
    r = load(dsn, pay)
    assert r.exit_code == 1
    line = error_line(r, 1)
    assert "refused the API key (401 on GET /v1/charges)" in line
    assert "RETAIL_ETL_SOURCES__PAY__TOKEN" in r.output
    assert KEY not in r.output and KEY[3:] not in r.output
    ((errors,),) = rows(dsn, "SELECT coalesce(string_agg(error, ' '), '') FROM etl.runs")
    assert KEY not in errors
    # nor in what `sources` shows of the configuration
    shown = cli("sources", "--dsn", dsn, "--json", **env(pay))
    assert shown.exit_code == 0 and KEY not in shown.output


def test_bad_objects_are_rejects_with_their_rule_and_the_rest_loads(dsn):
    bad = [charge(1, amount=None), charge(2, status="disputed_weirdly"), charge(3, amount="abc"),
           charge(4, metadata="not an object"), charge(5, amount=150.5), charge(6, created="yesterday")]
    good = [charge(i) for i in range(10, 15)]
    with FakeApi(charges=bad + good, events=[], token=KEY) as api:
        r = load(dsn, api)
        assert r.exit_code == 0, r.output
    got = dict(rows(dsn, "SELECT row::jsonb->>'charge_id', array_to_string(rules, ',') "
                         "FROM etl.rejects WHERE entity = 'payments'"))
    assert got["ch_000001"] == "amount:required"
    assert got["ch_000002"] == "status:unknown"
    assert got["ch_000003"].startswith("amount:not_a_decimal")
    assert got["ch_000005"].startswith("amount:not_a_decimal")  # 150.5 cents is no amount
    assert got["ch_000006"] == "created_ts:not_a_timestamp,version_ts:not_a_timestamp"  # (a charge is versioned by its creation)
    (unreadable,) = rows(dsn, "SELECT row::text FROM etl.rejects WHERE 'object:unreadable' = ANY(rules)")
    assert '"not an object"' in unreadable[0] and "ch_000004" in unreadable[0]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_payments") == [(5,)]
    c = last_counts(dsn)
    assert (c["read"], c["loaded"], c["rejected"]) == (11, 5, 6)


def test_trackers_page_by_before_id_and_a_delivered_parcel_updates_in_place(dsn):
    with FakeApi(trackers=[tracker(i) for i in range(12)], token=KEY) as ship:
        r = load(dsn, ship, "ship", "shipping")
        assert r.exit_code == 0, r.output
        listed = [q for q in ship.requests if q["path"] == "/v2/trackers"]
        assert [q["query"].get("before_id") for q in listed] == [None, "trk_000006"]
        assert rows(dsn, "SELECT count(*), count(shipped_ts) AS shipped, count(delivered_ts) AS delivered "
                         "FROM dw.fact_shipments") == [(12, 12, 0)]
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ship.update_tracker("trk_000003", "delivered", at)
        r = load(dsn, ship, "ship", "shipping")
        assert r.exit_code == 0, r.output
        assert rows(dsn, "SELECT tracker_id, status, delivered_ts IS NOT NULL FROM dw.fact_shipments "
                         "WHERE run_id = (SELECT max(run_id) FROM etl.runs)") == [
            ("trk_000003", "delivered", True)]


def test_sales_reconciled_with_payments_and_the_order_snapshot_follows_its_milestones(
        dsn, settings, tmp_path):
    """A drop's orders against their charges: one paid in full, one partly refunded by an
    event, one whose charge failed, and a charge for an order the sales lack (loaded,
    counted as unmatched); then the parcels' milestones reach the per-order snapshot."""
    drop = write_drop(tmp_path / "d", sales_2024_01=[
        ["O-1", 1, "2024-01-15T10:00:00Z", "C-1", "S-1", "P-1", 2, "10.00", "", ""],
        ["O-1", 2, "2024-01-15T10:00:00Z", "C-1", "S-1", "P-2", 1, "5.00", "", ""],
        ["O-2", 1, "2024-01-15T11:00:00Z", "C-1", "S-1", "P-1", 1, "12.50", "", ""],
        ["O-3", 1, "2024-01-15T12:00:00Z", "C-1", "S-1", "P-1", 4, "10.00", "", ""]])
    load_drop(settings, drop)
    t0 = int(datetime(2024, 1, 15, 13, tzinfo=UTC).timestamp())
    charges = [charge(1, created=t0, amount=2500, order="O-1"),
               charge(2, created=t0 + 60, amount=1250, order="O-2"),
               charge(3, created=t0 + 120, amount=4000, order="O-3", status="failed"),
               charge(4, created=t0 + 180, amount=1000, order="O-99")]
    with FakeApi(charges=charges, events=[], token=KEY) as api:
        assert load(dsn, api).exit_code == 0
        assert last_counts(dsn)["unmatched"] == 1  # O-99: the sales have no such order
        api.refund("ch_000002", 250, t0 + 3600)
        r = load(dsn, api)
        assert r.exit_code == 0, r.output
        assert "1 for orders the sales lack" not in r.output  # (only the refund was written)
    assert rows(dsn, "SELECT date::text, orders, revenue::text, captured::text, refunded::text, "
                     "net_paid::text, difference::text, orders_differing "
                     "FROM mart.payment_reconciliation_daily ORDER BY date NULLS LAST") == [
        ("2024-01-15", 3, "77.50", "37.50", "2.50", "35.00", "42.50", 2),
        (None, 0, "0", "10.00", "0.00", "10.00", "-10.00", 1)]
    assert rows(dsn, "SELECT order_id, difference::text, payment_status, known_order "
                     "FROM mart.payment_differences ORDER BY order_id") == [
        ("O-2", "2.50", "partly refunded", True), ("O-3", "40.00", "failed", True),
        ("O-99", "-10.00", "paid", False)]

    shipped = (datetime(2024, 1, 16, 9, tzinfo=UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    parcel = tracker(1, "in_transit", shipped) | {"reference": "O-1",
                                                  "created_at": "2024-01-15T15:00:00Z"}
    parcel["tracking_details"] = [{"status": "pre_transit", "datetime": "2024-01-15T15:00:00Z"},
                                  {"status": "in_transit", "datetime": shipped}]
    with FakeApi(trackers=[parcel], token=KEY) as ship:
        assert load(dsn, ship, "ship", "shipping").exit_code == 0
        snapshot = "SELECT shipment_status, hours_to_pay::text, hours_to_ship::text, " \
                   "hours_to_deliver::text FROM mart.order_milestones WHERE order_id = 'O-1'"
        assert rows(dsn, snapshot) == [("in_transit", "3.00", "23.00", None)]
        ship.update_tracker("trk_000001", "delivered", "2024-01-17T10:00:00Z")
        assert load(dsn, ship, "ship", "shipping").exit_code == 0
        assert rows(dsn, snapshot) == [("delivered", "3.00", "23.00", "48.00")]
    assert rows(dsn, "SELECT order_id FROM mart.orders_paid_not_shipped ORDER BY 1") == [
        ("O-2",), ("O-99",)]


def test_both_apis_in_one_run_build_their_new_months_side_by_side(dsn, pay):
    """Two facts building new months aside in one run: the second's builds must not wait on
    the months the first moved into place (a self-deadlock once)."""
    with FakeApi(trackers=[tracker(i) for i in range(5)], token=KEY) as ship:
        r = cli("load", "--source", "pay", "--source", "ship", "--dsn", dsn,
                **env(pay), **env(ship, "ship", "shipping"))
        assert r.exit_code == 0, r.output
    assert rows(dsn, "SELECT (SELECT count(*) FROM dw.fact_payments) AS p, "
                     "(SELECT count(*) FROM dw.fact_shipments) AS s") == [(30, 5)]


def test_generate_api_pays_and_ships_a_drops_orders_and_the_fakes_serve_it(dsn, tmp_path):
    drop, out = tmp_path / "raw", tmp_path / "api"
    assert cli("generate", "--out", str(drop), "--lines", "3000", "--clean").exit_code == 0
    made = cli("generate", "--api", "--from", str(drop / "drop_001"), "--out", str(out))
    assert made.exit_code == 0, made.output
    from retail_etl.generate import api

    history = api.load(out)
    orders = api.read_orders(drop / "drop_001")
    assert f"{orders.height:,} orders: {len(history['charges']):,} charges" in made.output
    paid = {c["metadata"]["order_id"] for c in history["charges"]}
    known = set(orders["order_id"])
    assert len(paid & known) > 0.9 * len(known)  # most orders have a charge
    assert 0 < len(paid - known) < 0.05 * len(paid)  # a few for orders the sales lack
    # served by the fake and loaded: every charge lands, its order known or not
    with FakeApi(history["charges"], history["events"], token=KEY) as api_:
        r = load(dsn, api_)
        assert r.exit_code == 0, r.output
    assert rows(dsn, "SELECT count(*) FROM dw.fact_payments") == [(len(history["charges"]),)]
    assert last_counts(dsn)["unmatched"] == len(history["charges"])  # (no sales loaded here)

    # the warehouse's orders (--dsn) in place of a drop's; and the mistakes, one line each
    assert cli("generate", "--api", "--dsn", dsn, "--out", str(out)).exit_code == 0
    assert "--out" in error_line(cli("generate", "--api", "--from", str(drop)), 2)
    assert "no sales" in error_line(
        cli("generate", "--api", "--from", str(tmp_path), "--out", str(out)), 2)


def test_a_bad_api_setting_is_one_line_naming_it_and_its_variable(dsn, pay):
    line = cli("load", "--source", "pay", "--dsn", dsn,
               **env(pay, BASE_URL="ftp://x")).output
    assert "Error: setting 'sources.pay.base_url': Value error, 'ftp://x' is not an http(s)" in line
    assert "Hint: check RETAIL_ETL_SOURCES__PAY__BASE_URL or " in line
