"""The GA4 export generator (retail_etl/generate/events.py): deterministic, consistent with
its drop, and shaped as promised (session sizes, buying share, midnight, late, dirt)."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from retail_etl.generate.drops import generate_drops
from retail_etl.generate.events import generate_events


@pytest.fixture(scope="module")
def drop(tmp_path_factory):
    root = tmp_path_factory.mktemp("drop")
    generate_drops(root, 20_000, seed=3)
    return root / "drop_001"


def lines_of(directory) -> dict[str, list[str]]:
    out = {}
    for f in sorted(directory.glob("events_*")):
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        out[f.name] = data.decode().splitlines()
    return out


def test_same_seed_same_files(drop, tmp_path):
    generate_events(drop, tmp_path / "a", sessions=800, seed=9)
    generate_events(drop, tmp_path / "b", sessions=800, seed=9)
    generate_events(drop, tmp_path / "c", sessions=800, seed=10)
    assert lines_of(tmp_path / "a") == lines_of(tmp_path / "b")
    assert lines_of(tmp_path / "a") != lines_of(tmp_path / "c")


def test_shapes_as_promised(drop, tmp_path):
    made = generate_events(drop, tmp_path / "w", sessions=4_000, seed=2)
    files = lines_of(tmp_path / "w")
    assert any(n.endswith(".ndjson.gz") for n in files) and any(n.endswith(".ndjson") for n in files)
    events, broken, late = [], 0, 0
    for name, lines in files.items():
        file_day = name.split("_")[1].split(".")[0]
        for raw in lines:
            try:
                e = json.loads(raw)
            except ValueError:
                broken += 1
                continue
            events.append(e)
            late += e["event_date"] < file_day
    assert broken == made.dirt["line:not_json"] > 0
    assert late >= made.late * 0.9  # (a few late ones are also spoilt)
    assert len(files) == made.files and sum(map(len, files.values())) == made.lines

    sessions = defaultdict(list)
    for e in events:
        p = {x["key"]: x["value"] for x in e["event_params"]}
        if "ga_session_id" in p and str(e["event_timestamp"]).isdigit():
            sessions[(e["user_pseudo_id"], p["ga_session_id"]["int_value"])].append(e)
    distinct = {k: {json.dumps(e, sort_keys=True) for e in v} for k, v in sessions.items()}
    sizes = Counter(min(len(v), 21) for v in distinct.values())
    assert sum(n for size, n in sizes.items() if 9 <= size <= 20) / len(distinct) > 0.97
    buying = sum(any(e["event_name"] == "purchase" for e in v) for v in sessions.values())
    assert 0.02 <= buying / len(sessions) <= 0.03

    def utc_day(e):
        return datetime.fromtimestamp(int(e["event_timestamp"]) / 1e6, UTC).date()

    midnight = sum(len({utc_day(e) for e in v}) > 1 for v in sessions.values())
    assert midnight / len(sessions) > 0.02

    # consistent with the drop: purchases are its online orders (but the made-up 2%), items
    # its products, logged-in users its customers
    sold = drop.glob("sales*.csv*")
    import polars as pl
    sales = pl.concat([pl.read_csv(f, infer_schema=False) for f in sold])
    orders = set(sales["order_id"].drop_nulls().str.strip_chars())
    products = set(sales["product_id"].drop_nulls().str.strip_chars())
    customers = set(sales["customer_id"].drop_nulls().str.strip_chars())
    tx = [e["ecommerce"]["transaction_id"] for e in events if e["event_name"] == "purchase"
          and e["ecommerce"]["transaction_id"]]
    assert sum(t in orders for t in tx) / len(tx) > 0.95
    assert {i["item_id"] for e in events for i in (e["items"] or [])} <= products
    assert {e["user_id"] for e in events if e["user_id"]} <= customers
