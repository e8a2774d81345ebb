"""Deterministic payments (Stripe-style charges and events) and shipping (EasyPost-style
trackers) history for the orders of a sales drop, in the shapes retail_etl.fakeapi serves.

Why: the payment and shipping sources are external APIs. To test their extract against the
fake server we need their objects for the same orders the sales files hold, with the usual
untidiness: failed and pending charges, (partial) refunds days later, charges for no known
order, trackers that fail, and trackers still under way at `now`.

Every draw for an order comes from a hash of (seed, order id), not from a running generator:
an order gets the same charge and tracker whatever other orders are in the frame (the history
of drops 1-2 agrees with that of drop 1 on the orders they share), and the row order of
`orders` does not matter. Money is integer cents throughout, never a float.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from retail_etl.transform.clean import text
from retail_etl.transform.quality import parse_timestamp

DAY = 86_400
SUCCEEDED_RATE, FAILED_RATE = 0.94, 0.03  # the rest (3%) pending
REFUND_RATE = 0.05  # of the succeeded
PARTIAL_REFUND_SHARE = 0.4  # of the refunds
CARD_RATE, PAYPAL_RATE = 0.80, 0.15  # the rest (5%) klarna
VISA_SHARE, MASTERCARD_SHARE = 0.50, 0.35  # of the cards; the rest (15%) amex
TRACKED_RATE = 0.97  # of the succeeded orders
FAILURE_RATE, RETURN_RATE = 0.005, 0.005  # trackers ending in failure / return_to_sender
CARRIERS = ("UPS", "USPS", "FedEx", "DHL")
PROGRESS = ("pre_transit", "in_transit", "out_for_delivery")  # then the terminal status
EST_DELIVERY_DAYS = 5
DEFAULT_NOW_DAYS = 10  # `now` defaults to the last order + this
FILES = {"charges": "charges.json", "events": "events.json", "trackers": "trackers.json"}

# Per key, one SHAKE-256 output: ID_SLICES hex ids of 7 bytes (14 hex), then DRAWS uniforms.
ID_SLICES = ("charge", "created_event", "refund_event", "tracker", "tracking_code")
ID_BYTES = 7
DRAWS = 18
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_MONEY = r"^[+-]?\d{1,10}(\.\d{1,2})?$"  # what decimal(12,2) holds; 1e3 or 1.234 is dirt


def history(orders: pl.DataFrame, seed: int = 0, unmatched_share: float = 0.02,
            now: datetime | None = None) -> dict[str, list[dict]]:
    """{"charges", "events", "trackers"} for `orders` (order_id str, order_ts Datetime UTC,
    revenue Decimal(.., 2)). Same inputs, same output, to the byte once serialised.

    One row per order (a repeated order_id is a ValueError). Orders with a NULL or
    non-positive revenue (returns only) get no charge: a charge cannot be for nothing.
    `now` defaults to the last order_ts + DEFAULT_NOW_DAYS. Charges always exist (even if
    created after `now`); refunds, trackers and tracker steps later than `now` have not
    happened yet and are left out.
    """
    if not 0 <= unmatched_share < 1:
        raise ValueError(f"unmatched_share must be in [0, 1), got {unmatched_share}")
    paid = (
        orders.select(
            key=pl.col("order_id"),
            ts=pl.col("order_ts").dt.epoch("s"),
            # scale 2 -> the physical integer is the amount in cents, exactly
            cents=pl.col("revenue").cast(pl.Decimal(38, 2)).to_physical().cast(pl.Int64),
        )
        .filter(pl.col("cents") > 0, pl.col("ts").is_not_null(), pl.col("key").is_not_null())
    )
    if paid["key"].is_duplicated().any():  # which row would win depends on the row order
        raise ValueError("orders: an order_id appears more than once (one row per order)")
    if now is None:
        last = orders["order_ts"].max()
        now_ts = (int(last.timestamp()) if last is not None else 0) + DEFAULT_NOW_DAYS * DAY
    else:
        now_ts = int((now if now.tzinfo else now.replace(tzinfo=UTC)).timestamp())
    if paid.height == 0:
        return {"charges": [], "events": [], "trackers": []}

    frame = pl.concat([
        _with_draws(paid.with_columns(unmatched=pl.lit(False)), seed),
        _unmatched(paid, seed, unmatched_share),
    ])
    frame = _charges_frame(frame, now_ts)
    frame = _trackers_frame(frame, now_ts)
    return _objects(frame, now_ts)


def _with_draws(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """frame + one hex id column per ID_SLICES and u0..u{DRAWS-1} uniforms in [0, 1),
    all from the hash of (seed, key)."""
    width = ID_BYTES * len(ID_SLICES) + 4 * DRAWS
    digests = [hashlib.shake_256(f"{seed}\x1f{k}".encode()).digest(width) for k in frame["key"]]
    raw = np.frombuffer(b"".join(digests), np.uint8).reshape(len(digests), width)
    uniforms = raw[:, ID_BYTES * len(ID_SLICES):].copy().view("<u4") / 2.0**32
    hexes = pl.Series(digests, dtype=pl.Binary).bin.encode("hex")
    ids = {f"hex_{name}": hexes.str.slice(2 * ID_BYTES * i, 2 * ID_BYTES)
           for i, name in enumerate(ID_SLICES)}
    draws = {f"u{i}": uniforms[:, i] for i in range(DRAWS)}
    return frame.with_columns(**ids, **draws)


def _unmatched(paid: pl.DataFrame, seed: int, share: float) -> pl.DataFrame:
    """Charges whose order id no sale has ("UNKNOWN-1", ...): `share` of all charges, spread
    over the orders' time span, 5.00 to 500.00 dollars."""
    count = round(paid.height * share / (1 - share))
    lo, hi = int(paid["ts"].min()), int(paid["ts"].max())
    keys = pl.DataFrame({"key": [f"UNKNOWN-{n}" for n in range(1, count + 1)]},
                        schema={"key": pl.String})
    drawn = _with_draws(keys, seed)
    return drawn.select(  # the column order of _with_draws(paid), for the concat
        "key",
        (lo + (pl.col("u15") * (hi - lo)).floor()).cast(pl.Int64).alias("ts"),
        (500 + (pl.col("u16") * 49_501).floor()).cast(pl.Int64).alias("cents"),
        pl.lit(True).alias("unmatched"),
        *[c for c in drawn.columns if c != "key"],
    )


def _charges_frame(frame: pl.DataFrame, now_ts: int) -> pl.DataFrame:
    u = [pl.col(f"u{i}") for i in range(DRAWS)]
    frame = frame.with_columns(
        created=pl.col("ts") + (u[0] * 1800).floor().cast(pl.Int64),  # paid 0-30 min later
        status=pl.when(u[1] < SUCCEEDED_RATE).then(pl.lit("succeeded"))
        .when(u[1] < SUCCEEDED_RATE + FAILED_RATE).then(pl.lit("failed"))
        .otherwise(pl.lit("pending")),
        method=pl.when(u[6] < CARD_RATE).then(pl.lit("card"))
        .when(u[6] < CARD_RATE + PAYPAL_RATE).then(pl.lit("paypal"))
        .otherwise(pl.lit("klarna")),
        brand=pl.when(u[7] < VISA_SHARE).then(pl.lit("visa"))
        .when(u[7] < VISA_SHARE + MASTERCARD_SHARE).then(pl.lit("mastercard"))
        .otherwise(pl.lit("amex")),
    )
    refund_at = pl.col("created") + DAY + (u[5] * 19 * DAY).floor().cast(pl.Int64)  # 1-20 days
    partial = (u[3] < PARTIAL_REFUND_SHARE) & (pl.col("cents") >= 2)
    # a float fraction of the amount is fine here: it is a random draw, clipped to a valid
    # integer below the amount; the amount itself stays exact
    part = (pl.col("cents").cast(pl.Float64) * (0.1 + 0.8 * u[4])).floor().cast(pl.Int64)
    return frame.with_columns(
        refund_at=pl.when((pl.col("status") == "succeeded") & (u[2] < REFUND_RATE)
                          & (refund_at <= now_ts)).then(refund_at),
        refund_cents=pl.when(partial).then(part.clip(1, pl.col("cents") - 1))
        .otherwise(pl.col("cents")),
    )


def _trackers_frame(frame: pl.DataFrame, now_ts: int) -> pl.DataFrame:
    """Tracker times t0 (created, pre_transit) .. t3 (terminal status) for tracked orders."""
    u = [pl.col(f"u{i}") for i in range(DRAWS)]
    t0 = pl.col("ts") + (DAY // 2 + (u[9] * 2.5 * DAY).floor()).cast(pl.Int64)  # 0.5-3 days
    transit = (DAY + (u[12] * 6 * DAY).floor()).cast(pl.Int64)  # all steps within 1-7 days
    digits = (u[15] * 1e10).floor().cast(pl.Int64).cast(pl.String).str.zfill(10) + (
        (u[16] * 1e10).floor().cast(pl.Int64).cast(pl.String).str.zfill(10))
    carrier = pl.lit(list(CARRIERS)).list.get((u[10] * len(CARRIERS)).floor().cast(pl.Int64))
    frame = frame.with_columns(
        tracked=(pl.col("status") == "succeeded") & ~pl.col("unmatched")
        & (u[8] < TRACKED_RATE) & (t0 <= now_ts),
        t0=t0,
        carrier=carrier,
        terminal=pl.when(u[11] < FAILURE_RATE).then(pl.lit("failure"))
        .when(u[11] < FAILURE_RATE + RETURN_RATE).then(pl.lit("return_to_sender"))
        .otherwise(pl.lit("delivered")),
    )
    return frame.with_columns(
        t1=pl.col("t0") + (transit * (0.1 + 0.3 * u[13])).floor().cast(pl.Int64),
        t2=pl.col("t0") + (transit * (0.6 + 0.3 * u[14])).floor().cast(pl.Int64),
        t3=pl.col("t0") + transit,
        est=pl.col("t0") + EST_DELIVERY_DAYS * DAY,
        tracking_code=pl.when(pl.col("carrier") == "UPS")
        .then("1Z" + pl.col("hex_tracking_code").str.to_uppercase() + digits.str.slice(0, 2))
        .when(pl.col("carrier") == "USPS").then("94" + digits)
        .when(pl.col("carrier") == "FedEx").then(digits.str.slice(0, 12))
        .otherwise(digits.str.slice(0, 10)),
    ).with_columns(
        # ISO text for the tracker times, formatted in one go
        **{f"{c}_iso": pl.from_epoch(c, "s").dt.strftime(_ISO)
           for c in ("t0", "t1", "t2", "t3", "est")},
    )


def _objects(frame: pl.DataFrame, now_ts: int) -> dict[str, list[dict]]:
    charges, events, trackers = [], [], []
    for r in frame.sort("created", "hex_charge").iter_rows(named=True):
        method = ({"type": "card", "card": {"brand": r["brand"]}} if r["method"] == "card"
                  else {"type": r["method"]})
        charge = {
            "id": "ch_" + r["hex_charge"], "object": "charge", "amount": r["cents"],
            "amount_refunded": 0, "currency": "usd", "created": r["created"],
            "status": r["status"], "paid": r["status"] == "succeeded", "refunded": False,
            "payment_method_details": method, "metadata": {"order_id": r["key"]},
        }
        events.append(_event(r["hex_created_event"], f"charge.{r['status']}", r["created"],
                             charge))
        if r["refund_at"] is not None:
            charge = {**charge, "amount_refunded": r["refund_cents"],
                      "refunded": r["refund_cents"] == r["cents"]}
            events.append(_event(r["hex_refund_event"], "charge.refunded", r["refund_at"],
                                 charge))
        charges.append(charge)
        if r["tracked"]:
            trackers.append(_tracker(r, now_ts))
    events.sort(key=lambda e: (e["created"], e["id"]))
    trackers.sort(key=lambda t: (t["created_at"], t["id"]))
    return {"charges": charges, "events": events, "trackers": trackers}


def _event(hex_id: str, kind: str, created: int, charge: dict) -> dict:
    # data.object is a deep copy: the event keeps the charge as it was then
    return {"id": "evt_" + hex_id, "object": "event", "type": kind, "created": created,
            "data": {"object": json.loads(json.dumps(charge))}}


def _tracker(r: dict, now_ts: int) -> dict:
    steps = zip((*PROGRESS, r["terminal"]), ("t0", "t1", "t2", "t3"), strict=True)
    details = [{"status": status, "datetime": r[f"{t}_iso"]}
               for status, t in steps if r[t] <= now_ts]  # what has happened by now
    return {
        "id": "trk_" + r["hex_tracker"], "object": "Tracker",
        "tracking_code": r["tracking_code"], "carrier": r["carrier"],
        "status": details[-1]["status"], "created_at": r["t0_iso"],
        "updated_at": details[-1]["datetime"], "est_delivery_date": r["est_iso"],
        "reference": r["key"], "tracking_details": details,
    }


def read_sales_lines(drop_dir: Path) -> pl.DataFrame:
    """The sales lines of a drop's sales files (sales*.csv, sales*.csv.gz), typed: order_id,
    line_number, order_ts (UTC), customer_id, store_id, product_id, quantity, unit_price,
    discount.
    Lines whose order id, order_ts, quantity, unit_price or (non-empty) discount does not
    parse are dropped; a line repeated under its key (order_id, line_number) counts once,
    its latest version (by updated_at, else order_ts)."""
    drop_dir = Path(drop_dir)
    files = sorted({*drop_dir.glob("sales*.csv"), *drop_dir.glob("sales*.csv.gz")})
    if not files:
        raise FileNotFoundError(f"no sales*.csv or sales*.csv.gz in {drop_dir}")
    raw = pl.concat([pl.read_csv(f, infer_schema=False) for f in files], how="diagonal")

    def money(name: str) -> pl.Expr:
        t = text(pl.col(name))
        return pl.when(t.str.contains(_MONEY)).then(t).cast(pl.Decimal(12, 2), strict=False)

    lines = raw.select(
        order_id=text(pl.col("order_id")),
        line_number=text(pl.col("line_number")),
        order_ts=parse_timestamp(text(pl.col("order_ts"))),
        updated_at=parse_timestamp(text(pl.col("updated_at"))),
        customer_id=text(pl.col("customer_id")),
        store_id=text(pl.col("store_id")),
        product_id=text(pl.col("product_id")),
        quantity=text(pl.col("quantity")).cast(pl.Int64, strict=False),
        unit_price=money("unit_price"),
        discount=money("discount"),
        discount_given=text(pl.col("discount")).is_not_null(),
    ).filter(
        pl.col("order_id").is_not_null(), pl.col("order_ts").is_not_null(),
        pl.col("quantity").is_not_null(), pl.col("unit_price").is_not_null(),
        ~pl.col("discount_given") | pl.col("discount").is_not_null(),
    )
    return (lines.sort(pl.coalesce("updated_at", "order_ts"), "order_id", "line_number",
                       maintain_order=True)  # ties keep the file order: same input, same pick
            .unique(["order_id", "line_number"], keep="last").drop("discount_given"))


def read_orders(drop_dir: Path) -> pl.DataFrame:
    """order_id, order_ts (UTC), revenue (exact decimal) per order of a drop's sales files
    (see read_sales_lines)."""
    latest = read_sales_lines(drop_dir)
    return (
        latest.group_by("order_id")
        .agg(
            pl.col("order_ts").min(),
            revenue=(pl.col("quantity") * pl.col("unit_price")
                     - pl.col("discount").fill_null(0)).sum(),
        )
        .sort("order_ts", "order_id")
    )


def write(history: dict[str, list[dict]], out_dir: Path) -> list[Path]:
    """charges.json, events.json, trackers.json in out_dir (made if need be); their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, name in FILES.items():
        path = out_dir / name
        path.write_text(json.dumps(history[key], ensure_ascii=False, separators=(",", ":")),
                        encoding="utf-8")
        paths.append(path)
    return paths


def load(out_dir: Path) -> dict[str, list[dict]]:
    """What write() wrote: {"charges", "events", "trackers"}."""
    return {key: json.loads((Path(out_dir) / name).read_text(encoding="utf-8"))
            for key, name in FILES.items()}

