"""Deterministic web-analytics exports in the GA4 BigQuery shape (newline-delimited JSON,
one file per day, some gzipped) for the orders of a sales drop.

Why: the events source must be tested on files consistent with the sales (the drop's
orders appear as purchases, item ids are the catalogue's products, logged-in users are its
customers) and shaped like a real property's: 10-20 events a session, 2-3% of sessions
buying, a funnel that leaks, sessions across midnight, events that arrive days late,
events sent twice, and dirt at known rates. Everything is vectorised (NumPy, Polars).

The property's time zone names the files and `event_date` (as GA4 does); the warehouse
works from `event_timestamp` (UTC microseconds), so a session around midnight may span two
files and two event dates."""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from retail_etl.generate.api import read_sales_lines
from retail_etl.transform.clean import text

PURCHASE_RATE = 0.025  # of sessions
EVENTS_PER_SESSION = (10, 20)
FUNNEL_P = (0.45, 0.38, 0.10, 0.07)  # a non-buying session's depth: none, view, cart, checkout
LOGGED_IN_BUYER, LOGGED_IN_BROWSER = 0.7, 0.15
MIDNIGHT_SHARE = 0.03  # sessions begun in the last minutes of a UTC day
UNKNOWN_ORDER_RATE = 0.02  # purchases whose transaction id the sales lack
LATE_RATE = 0.01  # events written to the file of 1-3 days after their own
DUPLICATE_RATE = 0.01  # events sent twice
DIRT = {  # rule -> share of the events spoilt that way (disjoint)
    "line:not_json": 0.001,
    "event_timestamp:not_a_timestamp": 0.001,
    "ga_session_id:required": 0.001,
}
NO_TRANSACTION_RATE = 0.02  # of the purchases: sent without their transaction id
SOURCES = (("google", "organic", "(organic)"), ("google", "cpc", "winter_sale"),
           ("(direct)", "(none)", "(direct)"), ("newsletter", "email", "weekly"),
           ("facebook", "social", "(referral)"))
SOURCE_P = (0.40, 0.20, 0.20, 0.12, 0.08)
DEVICES, DEVICE_P = ("mobile", "desktop", "tablet"), (0.6, 0.33, 0.07)
COUNTRIES = ("United States", "Canada", "United Kingdom", "Germany", "France")
FILLER, FILLER_P = ("page_view", "scroll", "user_engagement"), (0.6, 0.2, 0.2)
SITE = "https://shop.example.com"
US = 1_000_000


@dataclass
class EventsSummary:
    out: str
    files: int = 0
    sessions: int = 0
    events: int = 0  # distinct events written (before dirt)
    lines: int = 0  # lines in the files: events + duplicates
    purchases: int = 0
    duplicates: int = 0
    late: int = 0
    dirt: dict[str, int] = field(default_factory=dict)
    orders_in_drop: int = 0  # orders of the window the purchases were drawn from


def drop_sales(drop: Path) -> pl.DataFrame:
    """A drop's sales lines (generate.api.read_sales_lines) with `online`: at a store of type
    Online in its stores*.csv, or in those of the drops before it in the same directory (a
    later drop lists only the stores that changed)."""
    drop = Path(drop)
    files = sorted(drop.glob("stores*.csv")) or [
        f for d in sorted(drop.parent.iterdir()) if d.is_dir() and d.name <= drop.name
        for f in sorted(d.glob("stores*.csv"))]
    online: list[str] = []
    if files:
        stores = pl.concat([pl.read_csv(f, infer_schema=False) for f in files], how="diagonal")
        online = (stores.filter(text(pl.col("store_type")).str.to_lowercase() == "online")
                  .select(text(pl.col("store_id"))).to_series().drop_nulls().unique().to_list())
    return read_sales_lines(drop).with_columns(online=pl.col("store_id").is_in(online))


def _orders(sales: pl.DataFrame, days: int) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(the online orders of the last `days` days of sales [order_id, ts_us, customer_id] (all
    orders if none is online), their lines [order_id, product_id, quantity, price, discount],
    every product id sold)."""
    lines = sales.filter(pl.col("product_id").is_not_null())
    products = lines["product_id"].unique().sort().to_list()
    end = lines["order_ts"].max()
    any_online = bool(lines["online"].any())
    lines = lines.filter(pl.col("order_ts") > end - pl.duration(days=days),
                         pl.col("quantity") > 0,
                         pl.col("online") if any_online else pl.lit(True))
    orders = (lines.group_by("order_id").agg(
        ts_us=pl.col("order_ts").min().dt.epoch("us"), customer_id=pl.col("customer_id").first())
        .sort("ts_us", "order_id"))
    items = lines.select("order_id", "product_id", "quantity",
                         price=pl.col("unit_price").cast(pl.Float64),
                         discount=pl.col("discount").fill_null(0).cast(pl.Float64))
    return orders, items.sort("order_id", "product_id", "quantity", "price", "discount"), products


def generate_events(source: Path | pl.DataFrame, out: Path, sessions: int | None = None,
                    seed: int = 1,
                    days: int = 31, timezone: str = "America/New_York",
                    dirt: bool = True) -> EventsSummary:
    """Write events_YYYYMMDD.ndjson[.gz] (one per property day) and .generated.json (what
    was written, by kind: a hidden file, not an export) into `out`, for the sales of a drop
    directory or a frame shaped like drop_sales' (queries.web_sales: the warehouse's).
    Every online order of the window is bought on the site, in one of `sessions` sessions (default: as many as make
    PURCHASE_RATE of them buy; fewer orders are bought if `sessions` is too few)."""
    rng = np.random.default_rng(seed)
    sales = drop_sales(source) if isinstance(source, Path) else source
    orders, items, products = _orders(sales, days)
    if orders.height == 0:
        raise ValueError(f"{source if isinstance(source, Path) else 'the warehouse'}: no "
                         "sales to make purchases of")
    if sessions is None:
        sessions = round(orders.height / PURCHASE_RATE)
    n_buy = min(max(1, round(sessions * PURCHASE_RATE)), orders.height)
    buyers = orders[np.sort(rng.choice(orders.height, n_buy, replace=False))]
    n = max(sessions, n_buy)
    lo, hi = int(orders["ts_us"].min()), int(orders["ts_us"].max())

    # ---- sessions ----
    n_ev = rng.integers(EVENTS_PER_SESSION[0], EVENTS_PER_SESSION[1] + 1, n)
    sess = np.repeat(np.arange(n), n_ev)
    pos = np.arange(len(sess)) - np.repeat(np.cumsum(n_ev) - n_ev, n_ev)
    gaps = rng.integers(2 * US, 90 * US, len(sess))
    gaps[pos == 0] = 0
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(n_ev) - n_ev], n_ev)
    length = offset[np.cumsum(n_ev) - 1]
    buying = np.arange(n) < n_buy
    start = rng.integers(lo, hi, n)
    midnight = ~buying & (rng.random(n) < MIDNIGHT_SHARE)
    day_end = (start // (86_400 * US) + 1) * 86_400 * US
    start[midnight] = day_end[midnight] - rng.integers(60 * US, 300 * US, midnight.sum())
    start[:n_buy] = buyers["ts_us"].to_numpy() - length[:n_buy]  # the purchase is the order
    depth = np.where(buying, 4, rng.choice(4, n, p=FUNNEL_P))

    # users: a buyer logged in is its customer; pseudo ids are stable per customer
    customers = np.array(orders["customer_id"].drop_nulls().unique().sort().to_list(),
                         dtype=object)
    n_users = max(1, int(n * 0.6))
    user = rng.integers(0, n_users, n)
    cust = np.full(n, None, dtype=object)
    buyer_cust = buyers["customer_id"].to_numpy()
    logged = (rng.random(n_buy) < LOGGED_IN_BUYER) & (buyer_cust != None)  # noqa: E711
    cust[:n_buy][logged] = buyer_cust[logged]
    if len(customers):
        browse = ~buying & (rng.random(n) < LOGGED_IN_BROWSER)
        cust[browse] = customers[rng.integers(0, len(customers), browse.sum())]
    has = cust != None  # noqa: E711
    user[has] = n_users + np.searchsorted(customers.astype(str), cust[has].astype(str))
    pseudo = pl.Series((user * 7919 + 10**9).astype(np.int64)).cast(pl.String) + "." + \
        pl.Series((1_600_000_000 + user % 10**8).astype(np.int64)).cast(pl.String)
    src = rng.choice(len(SOURCES), n_users + len(customers) + 1, p=SOURCE_P)[user]
    device = rng.choice(len(DEVICES), n_users + len(customers) + 1, p=DEVICE_P)[user]
    country = rng.integers(0, len(COUNTRIES), n_users + len(customers) + 1)[user]

    # ---- events ----
    s_n = n_ev[sess]
    back = s_n - 1 - pos  # 0: the last event
    d = depth[sess]
    name = np.array(FILLER, dtype=object)[rng.choice(3, len(sess), p=FILLER_P)]
    name[pos == 0] = "page_view"
    name[(back == 3) & (d >= 1)] = "view_item"
    name[(back == 2) & (d >= 2)] = "add_to_cart"
    name[(back == 1) & (d >= 3)] = "begin_checkout"
    name[(back == 0) & buying[sess]] = "purchase"
    ts = start[sess] + offset
    ts += rng.integers(0, US, len(ts)) * (back != 0)  # microseconds (the purchase: the order's)
    order_of = np.full(n, None, dtype=object)
    order_of[:n_buy] = buyers["order_id"].to_numpy()
    unknown = buying & (rng.random(n) < UNKNOWN_ORDER_RATE)
    tx = order_of.copy()
    tx[unknown] = ("W-" + pl.Series(np.arange(unknown.sum())).cast(pl.String)
                   .str.zfill(7)).to_numpy().astype(object)  # ids the sales lack
    ev = pl.DataFrame({
        "i": np.arange(len(sess)), "sess": sess, "pos": pos, "event_name": name.astype(str),
        "ts": ts, "order_id": _text(order_of[sess]), "tx": _text(tx[sess]),
    }).with_columns(
        user_pseudo_id=pl.Series(pseudo.to_numpy()[sess]),
        user_id=_text(cust[sess]),
        ga_session_id=pl.Series((start // US)[sess]).cast(pl.String),
        source=pl.Series(src[sess]), device=pl.Series(device[sess]),
        country=pl.Series(country[sess]),
    )
    ev = ev.with_columns(product=pl.Series(products, dtype=pl.String).gather(
        rng.integers(0, len(products), len(sess))))
    first_item = items.group_by("order_id").agg(pl.col("product_id").first().alias("p1"))
    ev = ev.join(first_item, on="order_id", how="left").with_columns(
        product=pl.coalesce("p1", "product")).drop("p1").sort("i")

    # items: one for a view or a cart; the order's lines for a checkout and a purchase
    is_order_event = pl.col("event_name").is_in(["begin_checkout", "purchase"])
    single = ev.filter(pl.col("event_name").is_in(["view_item", "add_to_cart"])).select(
        "i", item_id=pl.col("product"), quantity=pl.lit(1, pl.Int64)).join(
        items.group_by("product_id").agg(pl.col("price").first()).rename(
            {"product_id": "item_id"}), on="item_id", how="left").with_columns(
        discount=pl.lit(0.0))
    whole = ev.filter(is_order_event).select("i", "order_id").join(
        items.rename({"product_id": "item_id"}), on="order_id").drop("order_id")
    all_items = pl.concat([single.select("i", "item_id", "price", "quantity", "discount"),
                           whole.select("i", "item_id", "price", "quantity", "discount")])
    all_items = all_items.sort("i", "item_id", "quantity", "price", "discount")
    # (in one order: GA4 sums floats, 59.970000000000006 and all, and so do we)
    revenue = all_items.group_by("i", maintain_order=True).agg(
        revenue=(pl.col("price") * pl.col("quantity") - pl.col("discount")).sum())
    lists = all_items.group_by("i", maintain_order=True).agg(
        items=pl.struct("item_id", "price", "quantity"))
    ev = ev.join(lists, on="i", how="left").join(revenue, on="i", how="left").sort("i")

    def value(string=None, integer=None) -> pl.Expr:
        return pl.struct(string_value=string if string is not None else pl.lit(None, pl.String),
                         int_value=integer if integer is not None else pl.lit(None, pl.String),
                         double_value=pl.lit(None, pl.Float64))

    def param(key: str, v: pl.Expr, when: pl.Expr | None = None) -> pl.Expr:
        p = pl.struct(key=pl.lit(key), value=v)
        return p if when is None else pl.when(when).then(p)

    page = pl.lit(SITE + "/p/") + pl.col("product")
    landing = pl.col("pos") == 0
    params = pl.concat_list(
        param("ga_session_id", value(integer=pl.col("ga_session_id"))),
        param("ga_session_number", value(integer=(pl.col("sess") % 7 + 1).cast(pl.String))),
        param("page_location", value(string=pl.when(landing).then(pl.lit(SITE + "/"))
                                     .otherwise(page))),
        param("page_referrer", value(string=pl.lit("https://www.google.com/")), landing),
        param("engagement_time_msec", value(integer=((pl.col("i") * 7919) % 60_000 + 100)
                                            .cast(pl.String)),
              pl.col("event_name") == "user_engagement"),
    ).list.drop_nulls()
    purchase = pl.col("event_name") == "purchase"
    src_t = [pl.lit(list(col)).list.get(pl.col("source")) for col in zip(*SOURCES, strict=True)]
    local = pl.from_epoch(pl.col("ts"), time_unit="us").dt.replace_time_zone("UTC") \
        .dt.convert_time_zone(timezone)
    rows = ev.select(
        day=local.dt.strftime("%Y%m%d"),
        event=pl.struct(
            event_date=local.dt.strftime("%Y%m%d"),
            event_timestamp=pl.col("ts").cast(pl.String),  # INT64 as a string, as BigQuery
            event_name="event_name",
            event_params=params,
            user_id="user_id",
            user_pseudo_id="user_pseudo_id",
            device=pl.struct(category=pl.lit(list(DEVICES)).list.get(pl.col("device"))),
            geo=pl.struct(country=pl.lit(list(COUNTRIES)).list.get(pl.col("country"))),
            traffic_source=pl.struct(source=src_t[0], medium=src_t[1], name=src_t[2]),
            ecommerce=pl.when(purchase).then(pl.struct(
                transaction_id=pl.col("tx"), purchase_revenue=pl.col("revenue"))),
            items="items",
        ),
        purchase=purchase,
    ).with_columns(line=pl.col("event").struct.json_encode()).drop("event")

    # ---- dirt, duplicates, late events ----
    summary = EventsSummary(str(out), sessions=n, events=rows.height,
                            purchases=int(rows["purchase"].sum()), orders_in_drop=orders.height)
    k = rows.height
    pick = rng.permutation(k)
    at = 0
    line = rows["line"].to_numpy().astype(object)
    if dirt:
        for rule, share in DIRT.items():
            m = int(round(k * share))
            idx = pick[at:at + m]
            at += m
            summary.dirt[rule] = m
            s = pl.Series(line[idx], dtype=pl.String)
            if rule == "line:not_json":
                s = s.str.slice(0, s.str.len_chars() // 2)
            elif rule == "event_timestamp:not_a_timestamp":
                s = s.str.replace(r'"event_timestamp":"\d+"', '"event_timestamp":"2024-13-45 25:61"')
            else:
                s = s.str.replace(r'\{"key":"ga_session_id","value":\{[^}]*\}\},?', "")
            line[idx] = s.to_numpy()
        purchases = np.flatnonzero(rows["purchase"].to_numpy())
        purchases = purchases[~np.isin(purchases, pick[:at])]
        m = int(round(len(purchases) * NO_TRANSACTION_RATE))
        idx = rng.choice(purchases, m, replace=False) if m else np.array([], dtype=np.int64)
        line[idx] = pl.Series(line[idx], dtype=pl.String).str.replace(
            r'"transaction_id":"[^"]*"', '"transaction_id":null').to_numpy()
        summary.dirt["transaction_id:missing_on_purchase"] = m
    day = rows["day"].to_numpy().astype(object)
    late = pick[at:at + int(round(k * LATE_RATE))]
    at += len(late)
    file_day = day.copy()
    later = pl.DataFrame({"d": pl.Series(day[late], dtype=pl.String),
                          "n": rng.integers(1, 4, len(late))}).select(
        (pl.col("d").str.to_date("%Y%m%d") + pl.duration(days=pl.col("n")))
        .dt.strftime("%Y%m%d"))
    file_day[late] = later.to_series().to_numpy()
    summary.late = len(late)
    dup = pick[at:at + int(round(k * DUPLICATE_RATE))]
    summary.duplicates = len(dup)
    out_lines = pl.DataFrame({
        "file_day": np.concatenate([file_day, file_day[dup]]).astype(str),
        "line": np.concatenate([line, line[dup]]).astype(str),
        "order": np.concatenate([np.arange(k), dup + 0.5]),
    }).sort("file_day", "order")
    out.mkdir(parents=True, exist_ok=True)
    for (fday,), part in out_lines.partition_by("file_day", as_dict=True,
                                                 maintain_order=True).items():
        buf = io.BytesIO()
        part.select("line").write_csv(buf, include_header=False, quote_style="never")
        text = buf.getvalue()
        if int(fday) % 3 == 0:
            (out / f"events_{fday}.ndjson.gz").write_bytes(gzip.compress(text, mtime=0))
        else:
            (out / f"events_{fday}.ndjson").write_bytes(text)
        summary.files += 1
    summary.lines = out_lines.height
    (out / ".generated.json").write_text(json.dumps(asdict(summary), indent=2) + "\n")
    return summary


def _text(values: np.ndarray) -> pl.Series:
    """A text column from an object array that may hold only None (Polars would not type it)."""
    return pl.Series(values.tolist(), dtype=pl.String)


def describe(s: EventsSummary, where: bool = True) -> str:
    dirt = sum(s.dirt.values())
    return (f"{s.sessions:,} sessions, {s.events:,} events ({s.purchases:,} purchases; "
            f"{s.duplicates:,} sent twice, {s.late:,} late, {dirt:,} spoilt) in {s.files} "
            f"files" + (f" -> {s.out}" if where else ""))
