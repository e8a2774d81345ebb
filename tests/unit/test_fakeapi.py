"""Tests of the fake Stripe/EasyPost server (retail_etl.fakeapi): a real server on loopback,
real HTTP requests through httpx."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from retail_etl.fakeapi import FakeApi

TOKEN = "sk_test_1"
STRIPE = {"Authorization": f"Bearer {TOKEN}"}
EASYPOST = (TOKEN, "")
T0 = 1_705_312_800  # 2024-01-15T10:00:00Z


def charge(n: int, created: int, **extra) -> dict:
    return {"id": f"ch_{n:014x}", "object": "charge", "amount": 1000 + n, "amount_refunded": 0,
            "currency": "usd", "created": created, "status": "succeeded", "paid": True,
            "refunded": False, "payment_method_details": {"type": "card", "card": {"brand": "visa"}},
            "metadata": {"order_id": f"O-{n:08d}"}, **extra}


def tracker(n: int, created_at: str, updated_at: str) -> dict:
    return {"id": f"trk_{n:014x}", "object": "Tracker", "tracking_code": f"1Z{n:016d}",
            "carrier": "UPS", "status": "in_transit", "created_at": created_at,
            "updated_at": updated_at, "est_delivery_date": None, "reference": f"O-{n:08d}",
            "tracking_details": [{"status": "pre_transit", "datetime": created_at}]}


def iso(hour: int) -> str:
    return f"2024-01-{15 + hour // 24:02d}T{hour % 24:02d}:00:00Z"


# 25 charges, every 5 sharing a `created`: the id decides among them
CHARGES = [charge(n, T0 + (n // 5) * 60) for n in range(25)]
TRACKERS = [tracker(n, iso(n // 2), iso(n // 2 + 1)) for n in range(12)]


def newest_first(objects: list[dict], time_key: str) -> list[str]:
    return [o["id"] for o in sorted(objects, key=lambda o: (o[time_key], o["id"]), reverse=True)]


@pytest.fixture
def api():
    with FakeApi(charges=CHARGES, trackers=TRACKERS, token=TOKEN) as server:
        for c in CHARGES[:5]:
            server.add_charge({**c, "id": c["id"].replace("ch_", "ch_x")})  # 5 more, as events
        yield server


@pytest.fixture
def client(api):
    with httpx.Client(base_url=api.base_url, timeout=5) as c:
        yield c


def pages(client: httpx.Client, path: str, params: dict, cursor: str, items: str,
          **kw) -> list[list[dict]]:
    """Every page of a list, following the cursor parameter until has_more is false."""
    out: list[list[dict]] = []
    params = dict(params)
    for _ in range(50):  # a cursor that does not advance must fail, not hang
        r = client.get(path, params=params, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body[items])
        if not body["has_more"]:
            return out
        params[cursor] = body[items][-1]["id"]
    raise AssertionError(f"{path}: still has_more after 50 pages")


def test_charges_pagination_returns_each_once_newest_first(api, client):
    got = pages(client, "/v1/charges", {"limit": 7}, "starting_after", "data", headers=STRIPE)
    ids = [c["id"] for page in got for c in page]
    assert ids == newest_first(api.charges, "created")
    assert len(ids) == len(set(ids)) == 30
    assert [len(p) for p in got] == [7, 7, 7, 7, 2]


def test_charges_list_shape_default_limit_and_cap(client):
    body = client.get("/v1/charges", headers=STRIPE).json()
    assert body["object"] == "list" and body["url"] == "/v1/charges"
    assert len(body["data"]) == 10 and body["has_more"] is True


def test_limit_is_capped_at_max_page_size(api, client):
    api.max_page_size = 4  # settable while running
    assert len(client.get("/v1/charges", params={"limit": 50}, headers=STRIPE).json()["data"]) == 4


def test_created_gte_filters_in_both_encodings(api, client):
    since = T0 + 3 * 60
    expected = [i for i in newest_first(api.charges, "created")
                if next(c for c in api.charges if c["id"] == i)["created"] >= since]
    assert len(expected) == 10
    encoded = client.get("/v1/charges", params={"limit": 100, "created[gte]": since},
                         headers=STRIPE)
    assert "created%5Bgte%5D" in str(encoded.url)
    literal = client.get(f"/v1/charges?limit=100&created[gte]={since}", headers=STRIPE)
    for r in (encoded, literal):
        assert [c["id"] for c in r.json()["data"]] == expected


def test_created_gte_with_cursor_pages_the_filtered_rest(api, client):
    since = T0 + 60
    got = pages(client, "/v1/charges", {"limit": 3, "created[gte]": since}, "starting_after",
                "data", headers=STRIPE)
    assert all(c["created"] >= since for p in got for c in p)
    assert sum(len(p) for p in got) == sum(c["created"] >= since for c in api.charges)


def test_unknown_cursor_is_a_400(client):
    r = client.get("/v1/charges", params={"starting_after": "ch_nobody"}, headers=STRIPE)
    assert r.status_code == 400 and r.json()["error"]["param"] == "starting_after"


def test_events_type_wildcard_and_exact(api, client):
    api.refund(CHARGES[3]["id"], 500, at=T0 + 9_000)
    api.refund(CHARGES[3]["id"], 503, at=T0 + 9_100)
    api.set_charge_status(CHARGES[4]["id"], "failed", at=T0 + 9_200)
    everything = client.get("/v1/events", params={"type": "charge.*", "limit": 100},
                            headers=STRIPE).json()
    assert everything["url"] == "/v1/events"
    assert len(everything["data"]) == 5 + 3
    assert [e["id"] for e in everything["data"]] == newest_first(api.events, "created")
    refunds = client.get("/v1/events", params={"type": "charge.refunded"}, headers=STRIPE).json()
    assert [e["data"]["object"]["amount_refunded"] for e in refunds["data"]] == [1003, 500]
    assert [e["data"]["object"]["refunded"] for e in refunds["data"]] == [True, False]
    failed = client.get("/v1/events", params={"type": "charge.f*"}, headers=STRIPE).json()
    assert [e["type"] for e in failed["data"]] == ["charge.failed"]
    assert failed["data"][0]["data"]["object"]["paid"] is False
    none = client.get("/v1/events", params={"type": "payout.*"}, headers=STRIPE).json()
    assert none["data"] == [] and none["has_more"] is False


def test_refund_beyond_the_amount_is_refused(api):
    with pytest.raises(ValueError):
        api.refund(CHARGES[0]["id"], CHARGES[0]["amount"] + 1, at=T0)


def test_trackers_before_id_pagination(api, client):
    got = pages(client, "/v2/trackers", {"page_size": 5}, "before_id", "trackers",
                auth=EASYPOST)
    ids = [t["id"] for page in got for t in page]
    assert ids == newest_first(api.trackers, "created_at")
    assert [len(p) for p in got] == [5, 5, 2]


def test_trackers_start_and_end_datetime_filter_on_updated_at(api, client):
    def ids(**params) -> set[str]:
        body = client.get("/v2/trackers", params={"page_size": 100, **params},
                          auth=EASYPOST).json()
        return {t["id"] for t in body["trackers"]}

    # updated_at = iso(n // 2 + 1): trackers 8..11 are updated at hours 5 and 6
    assert ids(start_datetime=iso(5)) == {TRACKERS[n]["id"] for n in (8, 9, 10, 11)}
    assert ids(start_datetime=iso(5), end_datetime=iso(6)) == {TRACKERS[8]["id"],
                                                               TRACKERS[9]["id"]}
    api.update_tracker(TRACKERS[0]["id"], "delivered", iso(30))  # an old tracker moves
    assert ids(start_datetime=iso(30)) == {TRACKERS[0]["id"]}
    moved = next(t for t in api.trackers if t["id"] == TRACKERS[0]["id"])
    assert moved["tracking_details"][-1] == {"status": "delivered", "datetime": iso(30)}


@pytest.mark.parametrize("path, kw", [
    ("/v1/charges", {"headers": {"Authorization": "Bearer sk_live_wrong_secret"}}),
    ("/v1/events", {}),
    ("/v2/trackers", {"auth": ("sk_live_wrong_secret", "")}),
    ("/v2/trackers", {"headers": STRIPE}),  # the other API's scheme
])
def test_bad_or_missing_key_is_401_without_echo(api, client, path, kw):
    r = client.get(path, **kw)
    assert r.status_code == 401
    assert "sk_live_wrong_secret" not in r.text and TOKEN not in r.text
    error = r.json()["error"]
    if path.startswith("/v2/"):
        assert error["code"] == "APIKEY.INVALID"
    else:
        assert error == {"type": "invalid_request_error",
                         "message": "Invalid API Key provided: sk_***"}
    assert api.requests[-1]["auth_ok"] is False


def test_unknown_path_is_a_json_404(client):
    r = client.get("/v1/customers", headers=STRIPE)
    assert r.status_code == 404 and "error" in r.json()


def test_fail_next_429_with_retry_after_then_normal(api, client):
    api.fail_next = [429, 429]
    api.retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"
    first = client.get("/v1/charges", headers=STRIPE)
    api.retry_after = None
    second = client.get("/v1/charges", headers=STRIPE)
    third = client.get("/v1/charges", headers=STRIPE)
    assert first.status_code == 429 and first.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert first.json()["error"]["type"] == "rate_limit_error"
    assert second.status_code == 429 and "Retry-After" not in second.headers
    assert third.status_code == 200
    assert [r["status"] for r in api.requests] == [429, 429, 200]
    assert [r["fault"] for r in api.requests] == [429, 429, None]


def test_fail_next_retry_after_seconds_by_default(api, client):
    api.fail_next.append(429)
    assert client.get("/v2/trackers", auth=EASYPOST).headers["Retry-After"] == "1"


def test_fail_next_503_has_a_json_body(api, client):
    api.fail_next = [503]
    r = client.get("/v2/trackers", auth=EASYPOST)
    assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE.UNAVAILABLE"
    assert client.get("/v2/trackers", auth=EASYPOST).status_code == 200


def test_fail_next_drop_breaks_the_response(api, client):
    api.fail_next = ["drop"]
    with pytest.raises(httpx.TransportError):
        client.get("/v1/charges", headers=STRIPE)
    assert client.get("/v1/charges", headers=STRIPE).status_code == 200  # a new connection
    assert [r["fault"] for r in api.requests] == ["drop", None]


def test_fail_next_garbage_is_200_and_not_json(api, client):
    api.fail_next = ["garbage"]
    r = client.get("/v1/charges", headers=STRIPE)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        r.json()


def test_unknown_fail_next_item_is_a_500_not_a_silent_success(api, client):
    api.fail_next = ["garbge"]
    assert client.get("/v1/charges", headers=STRIPE).status_code == 500


def statuses(seed: int, n: int = 40) -> list[int]:
    with FakeApi(charges=CHARGES, token=TOKEN, rate_429=0.3, rate_5xx=0.1, seed=seed) as server:
        with httpx.Client(base_url=server.base_url, headers=STRIPE, timeout=5) as c:
            return [c.get("/v1/charges", params={"limit": 1}).status_code for _ in range(n)]


def test_random_faults_are_deterministic_for_a_seed():
    first, again, other = statuses(3), statuses(3), statuses(4)
    assert first == again
    assert first != other
    assert {200, 429, 503} <= set(first)
    assert 4 <= first.count(429) <= 20  # ~30% of 40


def test_latency_is_applied_per_request(api, client):
    api.latency_ms = 60
    start = time.monotonic()
    client.get("/v1/charges", headers=STRIPE)
    client.get("/v1/charges", headers=STRIPE)
    assert time.monotonic() - start >= 0.12
    gap = api.requests[1]["at"] - api.requests[0]["at"]
    assert gap >= 0.06


def test_requests_log_never_holds_the_key(api, client):
    client.get("/v1/charges", params={"limit": 2}, headers=STRIPE)
    client.get("/v2/trackers", params={"page_size": 1}, auth=EASYPOST)
    log = api.requests
    assert [set(r) for r in log] == [{"path", "query", "status", "at", "auth_ok", "fault"}] * 2
    assert log[0]["path"] == "/v1/charges" and log[0]["query"] == {"limit": "2"}
    assert [r["auth_ok"] for r in log] == [True, True]
    text = repr(log)
    assert TOKEN not in text and "authorization" not in text.lower() and "Basic" not in text


def test_stop_closes_the_port():
    server = FakeApi(token=TOKEN).start()
    url = server.base_url
    assert httpx.get(url + "/v1/charges", headers=STRIPE, timeout=5).json()["data"] == []
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v1/charges", headers=STRIPE, timeout=5)
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_caller_lists_are_not_mutated(api):
    api.refund(CHARGES[0]["id"], 10, at=T0)
    assert CHARGES[0]["amount_refunded"] == 0 and len(CHARGES) == 25
