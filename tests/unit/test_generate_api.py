"""Tests of the payments and shipping history generator (retail_etl.generate.api)."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import polars as pl
import pytest

from retail_etl.fakeapi import FakeApi
from retail_etl.generate import api as gen
from retail_etl.generate.drops import generate_drops

N = 2_000
START = datetime(2024, 1, 1, tzinfo=UTC)
HEADER = ("order_id,line_number,order_ts,customer_id,store_id,product_id,quantity,unit_price,"
          "discount,updated_at")
FLOW = ("pre_transit", "in_transit", "out_for_delivery")
TERMINAL = {"delivered", "failure", "return_to_sender"}


def orders_frame(n: int = N, revenue: list[Decimal] | None = None) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "order_id": [f"O-{i:08d}" for i in range(1, n + 1)],
            "order_ts": [START + timedelta(minutes=37 * i) for i in range(n)],
            "revenue": revenue or [Decimal(5 + (i * 7919) % 50_000) / 100 for i in range(n)],
        },
        schema={"order_id": pl.String, "order_ts": pl.Datetime("us", "UTC"),
                "revenue": pl.Decimal(38, 2)},
    )


@pytest.fixture(scope="module")
def orders() -> pl.DataFrame:
    return orders_frame()


@pytest.fixture(scope="module")
def hist(orders) -> dict:
    return gen.history(orders, seed=7)


def matched(hist: dict) -> list[dict]:
    return [c for c in hist["charges"] if not c["metadata"]["order_id"].startswith("UNKNOWN-")]


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


def test_same_inputs_same_output(orders, hist):
    again = gen.history(orders, seed=7)
    assert json.dumps(again, sort_keys=True) == json.dumps(hist, sort_keys=True)
    shuffled = gen.history(orders.sample(fraction=1.0, shuffle=True, seed=1), seed=7)
    assert shuffled == hist  # the row order does not matter
    assert gen.history(orders, seed=8)["charges"] != hist["charges"]


def test_an_order_keeps_its_charge_in_a_larger_frame(orders, hist):
    smaller = gen.history(orders.head(500), seed=7)
    by_id = {c["id"]: c for c in matched(hist)}
    for c in matched(smaller):
        assert by_id[c["id"]]["amount"] == c["amount"]
        assert by_id[c["id"]]["status"] == c["status"]


def test_ids_are_prefixed_hex_and_unique(hist):
    for key, prefix in (("charges", "ch_"), ("events", "evt_"), ("trackers", "trk_")):
        ids = [o["id"] for o in hist[key]]
        assert len(set(ids)) == len(ids)
        assert all(i.startswith(prefix) and len(i) == len(prefix) + 14 for i in ids)
        assert all(int(i[len(prefix):], 16) >= 0 for i in ids)


def test_amounts_are_exact_cents():
    big = [Decimal("99999999989999.99"), Decimal("0.01"), Decimal("1234567.89"),
           Decimal("0.00"), Decimal("-5.00")]
    h = gen.history(orders_frame(len(big), big), unmatched_share=0)
    amounts = {c["metadata"]["order_id"]: c["amount"] for c in h["charges"]}
    assert amounts == {"O-00000001": 9999999998999999, "O-00000002": 1,
                       "O-00000003": 123456789}  # nothing to charge for 0.00 and -5.00
    assert all(type(a) is int for a in amounts.values())


def test_every_order_gets_one_charge_and_its_cents(orders, hist):
    charges = matched(hist)
    assert Counter(c["metadata"]["order_id"] for c in charges) == Counter(orders["order_id"])
    cents = {o: int(r * 100) for o, r in zip(orders["order_id"], orders["revenue"], strict=True)}
    assert all(c["amount"] == cents[c["metadata"]["order_id"]] for c in charges)
    assert all(c["currency"] == "usd" and c["object"] == "charge" for c in hist["charges"])
    placed = {o: int(t.timestamp()) for o, t in zip(orders["order_id"], orders["order_ts"],
                                                    strict=True)}
    delays = [c["created"] - placed[c["metadata"]["order_id"]] for c in charges]
    assert 0 <= min(delays) and max(delays) <= 1800 and max(delays) > 1500


def test_status_and_method_shares(hist):
    charges = matched(hist)
    status = Counter(c["status"] for c in charges)
    assert 0.92 <= status["succeeded"] / N <= 0.96
    assert 0.015 <= status["failed"] / N <= 0.045
    assert 0.015 <= status["pending"] / N <= 0.045
    assert all(c["paid"] == (c["status"] == "succeeded") for c in charges)
    method = Counter(c["payment_method_details"]["type"] for c in charges)
    assert 0.77 <= method["card"] / N <= 0.83
    assert 0.13 <= method["paypal"] / N <= 0.17
    assert 0.035 <= method["klarna"] / N <= 0.065
    brands = Counter(c["payment_method_details"]["card"]["brand"] for c in charges
                     if c["payment_method_details"]["type"] == "card")
    assert set(brands) == {"visa", "mastercard", "amex"}
    assert all("card" not in c["payment_method_details"] for c in charges
               if c["payment_method_details"]["type"] != "card")


def test_refunds_share_partial_and_full(hist):
    succeeded = {c["id"] for c in matched(hist) if c["status"] == "succeeded"}
    refunded = [c for c in hist["charges"] if c["amount_refunded"]]
    ours = [c for c in refunded if c["id"] in succeeded]
    assert 0.03 <= len(ours) / len(succeeded) <= 0.07
    assert all(c["status"] == "succeeded" for c in refunded)
    partial = [c for c in refunded if c["amount_refunded"] < c["amount"]]
    assert partial and len(partial) < len(refunded)
    assert all(0 < c["amount_refunded"] <= c["amount"] for c in refunded)
    assert all(c["refunded"] == (c["amount_refunded"] == c["amount"]) for c in hist["charges"])


def test_events_one_creation_per_charge_and_refunds_after_it(hist):
    by_id = {c["id"]: c for c in hist["charges"]}
    kinds = Counter(e["type"] for e in hist["events"])
    assert set(kinds) <= {"charge.succeeded", "charge.failed", "charge.pending",
                          "charge.refunded"}
    creation = [e for e in hist["events"] if e["type"] != "charge.refunded"]
    assert sorted(e["data"]["object"]["id"] for e in creation) == sorted(by_id)
    for e in creation:
        c = by_id[e["data"]["object"]["id"]]
        assert e["type"] == f"charge.{c['status']}" and e["created"] == c["created"]
        assert e["data"]["object"]["amount_refunded"] == 0
    refunds = [e for e in hist["events"] if e["type"] == "charge.refunded"]
    assert len(refunds) == sum(c["amount_refunded"] > 0 for c in hist["charges"])
    for e in refunds:
        c = by_id[e["data"]["object"]["id"]]
        assert e["data"]["object"] == c  # the charge as it is after the refund
        assert c["created"] + 86_400 <= e["created"] <= c["created"] + 20 * 86_400
    assert [e["created"] for e in hist["events"]] == sorted(e["created"] for e in hist["events"])


def test_unmatched_share(orders, hist):
    unknown = [c for c in hist["charges"] if c["metadata"]["order_id"].startswith("UNKNOWN-")]
    assert 0.015 <= len(unknown) / len(hist["charges"]) <= 0.025
    assert not {c["metadata"]["order_id"] for c in unknown} & set(orders["order_id"])
    assert all(c["amount"] >= 500 for c in unknown)
    none = gen.history(orders.head(100), unmatched_share=0.0)["charges"]
    assert len(none) == 100 and matched({"charges": none}) == none


def test_trackers_for_succeeded_orders(orders, hist):
    succeeded = {c["metadata"]["order_id"] for c in matched(hist) if c["status"] == "succeeded"}
    refs = [t["reference"] for t in hist["trackers"]]
    assert len(refs) == len(set(refs)) and set(refs) <= succeeded
    assert 0.95 <= len(refs) / len(succeeded) <= 0.99
    assert set(Counter(t["carrier"] for t in hist["trackers"])) == {"UPS", "USPS", "FedEx", "DHL"}
    placed = dict(zip(orders["order_id"], orders["order_ts"], strict=True))
    for t in hist["trackers"]:
        after = parse(t["created_at"]) - placed[t["reference"]]
        assert timedelta(hours=12) <= after <= timedelta(days=3)
        assert parse(t["est_delivery_date"]) - parse(t["created_at"]) == timedelta(days=5)
        assert t["created_at"].endswith("Z") and t["object"] == "Tracker"


def test_tracker_details_progress_monotonic_in_time(hist):
    ends = Counter()
    for t in hist["trackers"]:
        details = t["tracking_details"]
        times = [parse(d["datetime"]) for d in details]
        assert all(a < b for a, b in zip(times, times[1:], strict=False))
        statuses = [d["status"] for d in details]
        assert tuple(statuses[:3]) == FLOW[:len(statuses[:3])]
        assert len(statuses) <= 4 and (len(statuses) < 4 or statuses[3] in TERMINAL)
        assert (t["status"], t["updated_at"]) == (statuses[-1], details[-1]["datetime"])
        assert details[0]["datetime"] == t["created_at"]
        if len(statuses) == 4:
            assert timedelta(days=1) <= times[3] - times[0] <= timedelta(days=7)
        ends[statuses[-1]] += 1
    total = len(hist["trackers"])
    assert ends["failure"] + ends["return_to_sender"] <= 0.03 * total
    assert ends["delivered"] >= 0.9 * total  # with now = last order + 10 days


def test_now_stops_trackers_and_refunds(orders):
    now = START + timedelta(days=20)
    h = gen.history(orders, seed=7, now=now)
    statuses = Counter(t["status"] for t in h["trackers"])
    assert statuses["in_transit"] + statuses["out_for_delivery"] + statuses["pre_transit"] > 0
    assert all(parse(d["datetime"]) <= now for t in h["trackers"] for d in t["tracking_details"])
    assert all(parse(t["created_at"]) <= now for t in h["trackers"])
    assert all(e["created"] <= now.timestamp() for e in h["events"]
               if e["type"] == "charge.refunded")
    assert len(matched(h)) == N  # charges exist whatever `now`


def test_now_defaults_to_ten_days_after_the_last_order(orders, hist):
    assert gen.history(orders, seed=7, now=orders["order_ts"].max() + timedelta(days=10)) == hist
    assert gen.history(orders, seed=7, now=orders["order_ts"].max() + timedelta(days=3)) != hist


def test_history_of_nothing(orders):
    assert gen.history(orders.head(0)) == {"charges": [], "events": [], "trackers": []}
    with pytest.raises(ValueError):
        gen.history(orders, unmatched_share=1.0)
    with pytest.raises(ValueError, match="more than once"):
        gen.history(pl.concat([orders.head(3), orders.slice(1, 1)]))


def test_write_and_load_round_trip(tmp_path, hist):
    paths = gen.write(hist, tmp_path / "api")
    assert sorted(p.name for p in paths) == ["charges.json", "events.json", "trackers.json"]
    assert gen.load(tmp_path / "api") == hist


def test_fake_api_serves_a_history(orders):
    h = gen.history(orders.head(300), seed=1)
    with FakeApi(**h, token="sk_test_1") as server, httpx.Client(
            base_url=server.base_url, headers={"Authorization": "Bearer sk_test_1"}) as c:
        seen, params = [], {"limit": 100}
        while True:
            body = c.get("/v1/charges", params=params).json()
            seen += body["data"]
            if not body["has_more"]:
                break
            params["starting_after"] = body["data"][-1]["id"]
    assert sorted(x["id"] for x in seen) == sorted(x["id"] for x in h["charges"])


def write_drop(drop: Path) -> None:
    drop.mkdir()
    (drop / "sales_2024-01.csv").write_text("\n".join([
        HEADER,
        "O-1,1,2024-01-05T10:00:00Z,C-1,S-1,P-1,3,19.99,,",
        "O-1,2,2024-01-05T10:00:00Z,C-1,S-1,P-2,1,0.10,0.05,",
        "O-1,2,2024-01-05T10:00:00Z,C-1,S-1,P-2,1,0.10,0.05,",  # an exact duplicate
        " O-2 ,1,2024-01-05T12:00:00+02:00,C-1,S-1,P-1,2,10.00,1.00,",  # dirty id, offset
        "O-3,1,not-a-date,C-1,S-1,P-1,1,5.00,,",  # dropped: no order_ts
        "O-4,1,2024-01-06 08:00:00,C-1,S-1,P-1,1,5.00,abc,",  # dropped: discount
        "O-4,2,2024-01-06 08:00:00,C-1,S-1,P-1,x,5.00,,",  # dropped: quantity
        "O-4,3,2024-01-06 08:00:00,C-1,S-1,P-1,1,4.999,,",  # dropped: 3 decimals
        "O-4,4,2024-01-06 08:00:00,C-1,S-1,P-1,2,7.25,,",
        "O-5,1,2024-01-07T00:00:00Z,C-1,S-1,P-1,1,99999999.99,,",
        "O-5,1,2024-01-07T00:00:00Z,C-1,S-1,P-1,2,99999999.99,,2024-01-08T00:00:00Z",  # newer
    ]) + "\n")
    with gzip.open(drop / "sales_2024-02.csv.gz", "wt") as f:
        f.write(HEADER + "\nO-6,1,2024-02-01T09:30:00Z,C-2,S-1,P-3,4,2.50,0.01,\n")
    (drop / "products.csv").write_text("not,sales\n")  # not read


def test_read_orders_exact_revenue_and_dirty_rows(tmp_path):
    write_drop(tmp_path / "drop")
    got = gen.read_orders(tmp_path / "drop")
    assert got.schema["revenue"].is_decimal() and got.schema["order_ts"] == pl.Datetime("us", "UTC")
    assert got.to_dicts() == [
        {"order_id": "O-1", "order_ts": datetime(2024, 1, 5, 10, tzinfo=UTC),
         "revenue": Decimal("60.02")},
        {"order_id": "O-2", "order_ts": datetime(2024, 1, 5, 10, tzinfo=UTC),
         "revenue": Decimal("19.00")},
        {"order_id": "O-4", "order_ts": datetime(2024, 1, 6, 8, tzinfo=UTC),
         "revenue": Decimal("14.50")},
        {"order_id": "O-5", "order_ts": datetime(2024, 1, 7, tzinfo=UTC),
         "revenue": Decimal("199999999.98")},
        {"order_id": "O-6", "order_ts": datetime(2024, 2, 1, 9, 30, tzinfo=UTC),
         "revenue": Decimal("9.99")},
    ]
    cents = {c["metadata"]["order_id"]: c["amount"]
             for c in gen.history(got, unmatched_share=0)["charges"]}
    assert cents == {"O-1": 6002, "O-2": 1900, "O-4": 1450, "O-5": 19999999998, "O-6": 999}


def test_read_orders_of_a_generated_dirty_drop(tmp_path):
    drop = generate_drops(tmp_path, 1_500, seed=3).drops[0]
    got = gen.read_orders(drop)
    assert got.height > 300 and got["order_id"].is_unique().all()
    assert got.null_count().sum_horizontal().item() == 0
    assert got["order_id"].str.strip_chars().equals(got["order_id"])  # dirty ids trimmed
    assert len(gen.history(got)["charges"]) > 300


def test_read_orders_without_sales_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        gen.read_orders(tmp_path)
