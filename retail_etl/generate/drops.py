"""Deterministic, vectorised generator of synthetic retail source drops (CONTRACT.md section 1).

Layout: OUT/drop_001, OUT/drop_002, ... each with products.csv, customers.csv, stores.csv and
sales_YYYY-MM.csv (one file per month; drop 1's first month is .csv.gz when lines >= 1000).
Sales span 2023-01-01..2024-12-31 and drop k holds the k-th slice of it (whole months when
drops <= 24). Drop 1 carries the full master (updated_at on 2022-12-01); later drops carry only
changes dated inside their slice: new prices for PRICE_CHANGE_RATE of the products, moves of
CUSTOMER_MOVE_RATE of the customers, one or two store manager changes, and corrections
(CORRECTION_RATE of the earlier lines again: same key, other quantity, later updated_at).
Late keys: LATE_KEY_RATE of products and customers are launched inside the period (never in
the last drop's slice); their only master row (updated_at = launch, before any of their sales)
arrives in the drop after their first sale, or never for LATE_NEVER_SHARE of them (and always
never with drops=1). Same arguments give byte-identical files; sales rows written == `lines`.

Dirt, only with dirt=True (per-cell rates are drawn, so approximate):
- TEXT_DIRT_RATE 1% of id and text cells: ids get a leading or trailing space (case kept);
  text gets a leading, trailing or doubled inner space, or a leading tab.
- EMAIL_CASE_RATE 5% of emails in mixed (title) case.
- DUPLICATE_RATE 0.5% of `lines` are exact copies of a sales row, half in another month file
  of the same drop.
- BREAKER_RATE 0.2% of `lines` break one rule each, evenly over BREAKERS: quantity 0, negative
  unit_price, order_ts `not-a-date`, empty product_id, line_number 0, discount `abc`.
- NEG_PRICE_RATE 0.1% (at least one) of product rows with a negative unit_price.
- DIM_REPEATS rows of each dimension file (fewer below 30 rows) repeated identically at its end.
Always (valid data, not dirt): countries in varied forms (US, USA, us, United States, ...),
timestamps without offset (NAIVE_TS_RATE) or with one (OFFSET_TS_RATE), anonymous sales
(ANON_CUSTOMER_RATE, ANON_STORE_RATE), returns (RETURN_RATE, negative quantity).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl

TEXT_DIRT_RATE = 0.01
EMAIL_CASE_RATE = 0.05
DUPLICATE_RATE = 0.005
BREAKER_RATE = 0.002
BREAKERS = ("quantity_zero", "negative_price", "bad_order_ts", "no_product", "line_zero",
            "bad_discount")
NEG_PRICE_RATE = 0.001
DIM_REPEATS = 3

ANON_CUSTOMER_RATE = 0.03
ANON_STORE_RATE = 0.01
RETURN_RATE = 0.005
NAIVE_TS_RATE = 0.10
OFFSET_TS_RATE = 0.03
SALES_UPDATED_RATE = 0.30  # lines with an explicit updated_at (else NULL, meaning order_ts)
PRICE_CHANGE_RATE = 0.05
CUSTOMER_MOVE_RATE = 0.02
CORRECTION_RATE = 0.005
LATE_KEY_RATE = 0.005
LATE_NEVER_SHARE = 0.2

DAY = 86_400
START, END, MASTER_TS = (int(np.datetime64(d, "s").astype(np.int64))
                         for d in ("2023-01-01", "2025-01-01", "2022-12-01"))
OFFSETS = ("+02:00", "-05:00", "+01:00", "-08:00", "+05:30")
OFFSET_SECONDS = np.array([7200, -18000, 3600, -28800, 19800])

# category: typical price in dollars, subcategories, brands
CATALOG = {
    "Electronics": (180, ["Phones", "Laptops", "Audio", "Cameras", "Accessories", "TV"],
                    ["Voltix", "Nexon", "Auralis", "Pixelon"]),
    "Home & Kitchen": (45, ["Cookware", "Small Appliances", "Furniture", "Bedding", "Storage"],
                       ["Hearthway", "Casa Nova", "Kitchara"]),
    "Clothing": (35, ["Men", "Women", "Kids", "Shoes"], ["Northfield", "Urban Thread", "Lumo"]),
    "Sports & Outdoors": (50, ["Fitness", "Camping", "Cycling", "Team Sports"],
                          ["Peakline", "Trailmark", "Stridex"]),
    "Beauty": (18, ["Skincare", "Makeup", "Hair Care"], ["Belle Rosé", "Purely", "Veloura"]),
    "Grocery": (5, ["Snacks", "Beverages", "Pantry", "Coffee & Tea", "Frozen", "Dairy"],
                ["Good Harvest", "Farmstead", "Daily Table", "Kettle & Co"]),
    "Toys & Games": (22, ["Board Games", "Puzzles", "Action Figures", "Building Sets"],
                     ["Playmakers", "Brightminds"]),
    "Books & Media": (14, ["Fiction", "Non-Fiction", "Children", "Music", "Movies"],
                      ["Inkwell", "Paperlane", "Sonic Shelf"]),
}
# a comma and a double quote in some names exercise RFC 4180 quoting
MODELS = ["Classic", "Pro", "Lite", "Max", "Mini", "Plus", "Essential", "Deluxe", "2-Pack",
          "XL, Blue", '15" Edition', "Eco", "Signature", "Go", "Ultra", "Family Size"]
FIRST = ["James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David",
         "Elizabeth", "William", "Susan", "Maria", "Karen", "Daniel", "Nancy", "Ana", "Sofia",
         "Liam", "Olivia", "Noah", "Emma", "Lukas", "Hannah", "Chloé", "Mohammed", "Wei", "Priya"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Martinez",
        "Lopez", "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Lee", "Nguyen", "Patel",
        "Müller", "Schmidt", "O'Brien", "Van Dyke", "Tremblay", "Roy", "Evans", "Kim", "Chen"]
DOMAINS = ["example.com", "mail.example", "shop.example.org", "inbox.example.net"]
REGIONS = [  # city, state, country, weight: about 80 % US
    ("New York", "NY", "US", 8), ("Los Angeles", "CA", "US", 7), ("Chicago", "IL", "US", 6),
    ("Houston", "TX", "US", 5), ("Phoenix", "AZ", "US", 4), ("Philadelphia", "PA", "US", 4),
    ("San Antonio", "TX", "US", 3), ("San Diego", "CA", "US", 3), ("Dallas", "TX", "US", 4),
    ("Seattle", "WA", "US", 4), ("Denver", "CO", "US", 3), ("Boston", "MA", "US", 3),
    ("Atlanta", "GA", "US", 4), ("Miami", "FL", "US", 4), ("Portland", "OR", "US", 2),
    ("Minneapolis", "MN", "US", 2), ("Nashville", "TN", "US", 2), ("Columbus", "OH", "US", 2),
    ("Toronto", "ON", "CA", 3), ("Vancouver", "BC", "CA", 2), ("Montréal", "QC", "CA", 2),
    ("London", "England", "GB", 4), ("Manchester", "England", "GB", 1),
    ("Edinburgh", "Scotland", "GB", 1), ("Berlin", "BE", "DE", 2), ("München", "BY", "DE", 1),
    ("Hamburg", "HH", "DE", 1)]
COUNTRY_FORMS = {"US": ["US", "USA", "United States", "us"], "CA": ["CA", "Canada"],
                 "GB": ["GB", "United Kingdom"], "DE": ["DE", "Germany"]}
SEGMENTS, SEGMENT_P = ["Consumer", "Corporate", "Small Business"], [0.7, 0.12, 0.18]
STORE_TYPES, STORE_TYPE_P = ["Flagship", "Mall", "Outlet", "Online"], [0.1, 0.45, 0.25, 0.2]
ORDER_SIZE_P = [0.45, 0.25, 0.15, 0.10, 0.05]  # 1..5 lines, mean 2.05
HOUR_W = np.array([1, .5, .3, .2, .2, .3, .8, 1.5, 2.5, 3.5, 4.5, 5, 5.5, 5.5, 5, 5, 5.5, 6,
                   6.5, 6, 5, 4, 3, 2])
MONTH_W = np.array([.85, .8, .9, .95, 1, 1, 1, 1.05, .95, 1, 1.4, 1.8])  # Nov/Dec peak

DIMENSIONS = {  # entity: id prefix, id width, CSV columns, text columns (for dirt)
    "products": ("P-", 6, ["product_id", "product_name", "category", "subcategory", "brand",
                           "unit_price", "updated_at"],
                 ["product_name", "category", "subcategory", "brand"]),
    "customers": ("C-", 7, ["customer_id", "first_name", "last_name", "email", "segment", "city",
                            "state", "country", "join_date", "updated_at"],
                  ["first_name", "last_name", "email", "segment", "city", "state", "country"]),
    "stores": ("S-", 3, ["store_id", "store_name", "store_type", "city", "state", "country",
                         "manager", "opened_date", "updated_at"],
               ["store_name", "store_type", "city", "state", "country", "manager"]),
}
SALES_IDS = {"order": "order_id", "cust": "customer_id", "store": "store_id", "prod": "product_id"}


@dataclass
class GenerateSummary:
    out: Path
    drops: list[Path]  # one sub-directory per drop: OUT/drop_001, OUT/drop_002, ...
    files: int
    rows: dict[str, int]  # entity -> rows written over all drops
    seconds: float


def describe(summary: GenerateSummary) -> str:
    rows = ", ".join(f"{n:,} {e}" for e, n in summary.rows.items())
    return (f"{len(summary.drops)} drop(s), {summary.files} files ({rows}) "
            f"in {summary.seconds:.1f}s -> {summary.out}")


# ------------------------------------------------------------------ vectorised helpers
def _count(rate: float, n: int, at_least: int = 0) -> int:
    return min(n, max(at_least, round(rate * n)))


def _pick(values, idx: np.ndarray) -> pl.Series:
    """values[idx] as a String Series; an index -1 gives NULL."""
    s = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)
    return s.extend_constant(None, 1).gather(np.where(idx < 0, len(s), idx))


def _nested(rng, outer: np.ndarray, groups: list[list[str]]) -> pl.Series:
    """A random member of groups[outer] per row (a subcategory of the row's category, ...)."""
    sizes = np.array([len(g) for g in groups])
    idx = (np.cumsum(sizes) - sizes)[outer] + (rng.random(len(outer)) * sizes[outer]).astype(int)
    return _pick([x for g in groups for x in g], idx)


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    return prefix + pl.Series(numbers).cast(pl.String).str.zfill(width)


def _variants(rng, n: int) -> np.ndarray:
    """Timestamp form per row: 0 '...Z', 1 without offset (UTC), 2+ with an offset of OFFSETS."""
    r = rng.random(n)
    v = (r < NAIVE_TS_RATE + OFFSET_TS_RATE).astype(np.int8)
    off = r < OFFSET_TS_RATE
    v[off] = 2 + rng.integers(0, len(OFFSETS), int(off.sum()))
    return v


def _ts_text(ts: np.ndarray, v: np.ndarray) -> pl.Series:
    """Epoch seconds -> ISO 8601 text in the form v picks (same instant); ts < 0 gives NULL."""
    def fmt(t, f):
        return pl.from_epoch(pl.Series(t), "s").dt.strftime(f)
    s = fmt(ts, "%Y-%m-%dT%H:%M:%SZ")  # the common form for all, the others patched in
    i = np.flatnonzero((v == 1) & (ts >= 0))
    s = s.scatter(i, fmt(ts[i], "%Y-%m-%d %H:%M:%S"))
    i = np.flatnonzero((v >= 2) & (ts >= 0))
    o = v[i] - 2
    s = s.scatter(i, fmt(ts[i] + OFFSET_SECONDS[o], "%Y-%m-%dT%H:%M:%S") + _pick(OFFSETS, o))
    return s.scatter(np.flatnonzero(ts < 0), None)


def _money(cents: np.ndarray, null: np.ndarray | None = None) -> pl.Series:
    """Integer cents -> '12.34' (exact, 2 decimals); rows where null is True give NULL."""
    a = np.abs(cents)
    s = pl.Series(a // 100).cast(pl.String) + "." + pl.Series(a % 100).cast(pl.String).str.zfill(2)
    neg = np.flatnonzero(cents < 0)
    s = s.scatter(neg, "-" + s.gather(neg))
    return s if null is None else s.scatter(np.flatnonzero(null), None)


def _codes(rng, n: int, rate: float, kinds: int) -> np.ndarray:
    """Dirt code per cell: 0 clean, else 1..kinds (see _spoil)."""
    codes = np.zeros(n, np.int8)
    hit = rng.random(n) < rate
    codes[hit] = rng.integers(1, kinds + 1, int(hit.sum()))
    return codes


def _spoil(s: pl.Series, codes: np.ndarray) -> pl.Series:
    """Codes: 1 leading space, 2 trailing space, 3 doubled inner space (or both ends), 4 a
    leading tab. All are differences cleaning removes (case is data: the contract folds it
    only for emails and countries). Only the few spoiled cells are computed."""
    i = np.flatnonzero(codes)
    if not len(i):
        return s
    v, k = pl.col("v"), pl.col("k")
    new = pl.DataFrame({"v": s.gather(i), "k": codes[i]}).select(
        pl.when(k == 1).then(" " + v)
        .when(k == 2).then(v + " ")
        .when((k == 3) & v.str.contains(" ", literal=True))
        .then(v.str.replace(" ", "  ", literal=True))
        .when(k == 3).then(" " + v + " ")
        .otherwise("\t" + v)).to_series()
    return s.scatter(i, new)


def _bounds(drops: int) -> np.ndarray:
    """drops + 1 slice edges in epoch seconds: whole months when possible, else whole days."""
    k = np.arange(drops + 1)
    if drops <= 24:
        months = np.datetime64("2023-01", "M") + np.round(k * 24 / drops).astype(int)
        return months.astype("datetime64[s]").astype(np.int64)
    return START + np.round(k * ((END - START) // DAY) / drops).astype(np.int64) * DAY


def _month(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)


# ------------------------------------------------------------------ dimensions
def _place(rng, region: np.ndarray) -> dict[str, pl.Series]:
    country = np.array([list(COUNTRY_FORMS).index(r[2]) for r in REGIONS])[region]
    return {"city": _pick([r[0] for r in REGIONS], region),
            "state": _pick([r[1] for r in REGIONS], region),
            "country": _nested(rng, country, list(COUNTRY_FORMS.values()))}


def _regions(rng, n: int) -> np.ndarray:
    w = np.array([r[3] for r in REGIONS], float)
    return rng.choice(len(REGIONS), n, p=w / w.sum())


def _person(rng, n: int) -> tuple[pl.Series, pl.Series]:
    return (_pick(FIRST, rng.integers(0, len(FIRST), n)),
            _pick(LAST, rng.integers(0, len(LAST), n)))


def _products(rng, n: int) -> pl.DataFrame:
    cats = list(CATALOG)
    cat = rng.integers(0, len(cats), n)
    brand = _nested(rng, cat, [CATALOG[c][2] for c in cats])
    sub = _nested(rng, cat, [CATALOG[c][1] for c in cats])
    model = _pick(MODELS, rng.integers(0, len(MODELS), n))
    dollars = np.array([CATALOG[c][0] for c in cats])[cat] * rng.lognormal(0, 0.5, n)
    return pl.DataFrame({"_key": np.arange(n), "product_name": brand + " " + sub + " " + model,
                         "category": _pick(cats, cat), "subcategory": sub, "brand": brand,
                         "_cents": np.maximum(1, np.round(dollars)).astype(np.int64) * 100 - 1})


def _customers(rng, n: int, launch: np.ndarray, region: np.ndarray) -> pl.DataFrame:
    first, last = _person(rng, n)
    email = (first + "." + last + pl.Series(np.arange(1, n + 1)).cast(pl.String) + "@"
             + _pick(DOMAINS, rng.integers(0, len(DOMAINS), n)))
    email = email.str.to_lowercase().str.replace_all("[ ']", "").str.replace_many(
        {"é": "e", "ü": "ue"})
    # a late customer joins at its launch; the others joined before the master extract
    joined = np.where(launch > 0, launch // DAY, MASTER_TS // DAY - rng.integers(1, 8 * 365, n))
    return pl.DataFrame({"_key": np.arange(n), "first_name": first, "last_name": last,
                         "email": email, "segment": _pick(SEGMENTS, rng.choice(3, n, p=SEGMENT_P)),
                         **_place(rng, region),
                         "join_date": pl.Series(joined.astype(np.int32)).cast(pl.Date)})


def _stores(rng, n: int) -> pl.DataFrame:
    kind = _pick(STORE_TYPES, rng.choice(len(STORE_TYPES), n, p=STORE_TYPE_P))
    place = _place(rng, _regions(rng, n))
    first, last = _person(rng, n)
    opened = MASTER_TS // DAY - rng.integers(30, 18 * 365, n)
    return pl.DataFrame({"_key": np.arange(n), "store_name": place["city"] + " " + kind + " #"
                         + pl.Series(np.arange(1, n + 1)).cast(pl.String),
                         "store_type": kind, **place, "manager": first + " " + last,
                         "opened_date": pl.Series(opened.astype(np.int32)).cast(pl.Date)})


def _late(rng, n: int, end: int) -> np.ndarray:
    """Launch time per key: 0 for ordinary keys, a moment in [START, end) for late ones."""
    launch = np.zeros(n, np.int64)
    k = _count(LATE_KEY_RATE, n, 1)
    launch[rng.choice(n, k, replace=False)] = rng.integers(START, end, k)
    return launch


def _masters(rng, df, launch, first_sale, bounds) -> pl.DataFrame:
    """First version of each key: drop 0 for ordinary keys, updated on the master day; a late
    key, updated at its launch, one drop after its first sale (or its launch), or never (-1)."""
    drops, n = len(bounds) - 1, len(df)
    seen = np.where(first_sale < drops, first_sale, np.searchsorted(bounds, launch, "right") - 1)
    home = np.where(rng.random(n) < LATE_NEVER_SHARE, -1, seen + 1)
    home[home >= drops] = -1
    return df.with_columns(_drop=np.where(launch > 0, home, 0),
                           _upd=np.where(launch > 0, launch, MASTER_TS + rng.integers(0, DAY, n)))


def _changes(rng, df, pool, bounds, count, change) -> list[pl.DataFrame]:
    """Per later drop: count(rng, len(pool)) rows of df, changed by change(rng, rows, idx) and
    dated inside the drop's slice, so each key's versions increase with the drop."""
    parts = []
    for k in range(1, len(bounds) - 1):
        n = count(rng, len(pool))
        idx = np.sort(rng.choice(pool, n, replace=False))
        upd = rng.integers(bounds[k], bounds[k + 1], n)
        parts.append(change(rng, df[idx], idx).with_columns(_drop=np.full(n, k), _upd=upd))
    return parts


def _render(rng, part: pl.DataFrame, ids: pl.Series, cols, text, dirt: bool) -> pl.DataFrame:
    """Versions of one drop -> CSV columns, with dirt and a few identical repeats."""
    new = {cols[0]: _pick(ids, part["_key"].to_numpy()),
           "updated_at": _ts_text(part["_upd"].to_numpy(), _variants(rng, len(part)))}
    if "_cents" in part.columns:
        new["unit_price"] = _money(part["_cents"].to_numpy())
    df = part.with_columns(**new).select(cols)
    if dirt:
        df = df.with_columns(_spoil(df[c], _codes(rng, len(df), TEXT_DIRT_RATE, 4 if c in text
                                                  else 2)) for c in [cols[0], *text])
        if "email" in cols:
            i = np.flatnonzero(rng.random(len(df)) < EMAIL_CASE_RATE)
            df = df.with_columns(df["email"].scatter(i, df["email"].gather(i).str.to_titlecase()))
        repeats = rng.choice(len(df), min(DIM_REPEATS, len(df) // 10), replace=False)
        df = pl.concat([df, df[repeats]])
    return df


# ------------------------------------------------------------------ sales
def _sales(rng, lines, bounds, prices, p_launch, c_launch, activity, n_store, dirt):
    """Sales rows in file order (drop, month, position) and each row's drop * 4096 + month,
    plus the first drop in which each product and each customer is sold."""
    drops, n_prod, n_cust = len(bounds) - 1, len(p_launch), len(c_launch)
    n_corr = [0] + [round(CORRECTION_RATE * lines * k / drops) for k in range(1, drops)]
    n_dup = round(DUPLICATE_RATE * lines) if dirt else 0
    n_brk = round(BREAKER_RATE * lines) if dirt else 0
    n = max(1, lines - sum(n_corr) - n_dup)  # base lines, so that all rows add up to `lines`

    # orders: sizes cut to add up to n; a seasonal day, an hour of the day, a party
    sizes = rng.choice(5, int(n / 2.05 * 1.2) + 20, p=ORDER_SIZE_P) + 1
    n_orders = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:n_orders]
    sizes[-1] -= sizes.sum() - n
    days = np.arange(START, END, DAY)
    w = ((1 + 0.35 * ((days // DAY + 3) % 7 >= 5)) * MONTH_W[_month(days) % 12]
         * np.where(days >= START + 365 * DAY, 1.08, 1.0))  # weekends, Nov/Dec, growth
    ots = np.sort(days[rng.choice(len(days), n_orders, p=w / w.sum())]
                  + rng.choice(24, n_orders, p=HOUR_W / HOUR_W.sum()) * 3600
                  + rng.integers(0, 3600, n_orders))
    cust = rng.choice(n_cust, n_orders, p=activity)
    early = c_launch[cust] > ots  # a late customer cannot buy before its launch
    normal = np.flatnonzero(c_launch == 0)
    cust[early] = normal[rng.integers(0, len(normal), int(early.sum()))]
    cust[rng.random(n_orders) < ANON_CUSTOMER_RATE] = -1
    store = rng.choice(n_store, n_orders, p=rng.dirichlet(np.full(n_store, 3.0)))
    store[rng.random(n_orders) < ANON_STORE_RATE] = -1

    # lines, in time order
    order = np.repeat(np.arange(n_orders), sizes)
    line = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
    ts = ots[order]
    pop = rng.permutation(1 / np.arange(1, n_prod + 1) ** 0.9)  # a few best sellers
    prod = rng.choice(n_prod, n, p=pop / pop.sum())
    early = p_launch[prod] > ts
    normal = np.flatnonzero(p_launch == 0)
    prod[early] = normal[rng.integers(0, len(normal), int(early.sum()))]
    qty = 1 + rng.poisson(0.5, n)
    ret = rng.random(n) < RETURN_RATE
    qty[ret] = -qty[ret]
    keys, cents = prices  # the price in effect at order_ts: last version at or before it
    price = cents[np.searchsorted(keys, prod * 2**32 + (ts - MASTER_TS), "right") - 1]
    r = rng.random(n)  # discount: NULL (-1), 0.00 or a percentage
    pct = np.where(r < 0.6, -1, np.where(r < 0.85, 0, rng.choice([5, 10, 15, 20, 25], n)))
    pct[ret] = -1
    upd = np.where(rng.random(n) < SALES_UPDATED_RATE, ts + rng.integers(0, 3600, n), -1)
    drop = np.searchsorted(bounds, ts, "right") - 1
    first = np.searchsorted(drop, np.arange(drops + 1))  # first line of each drop
    first_p, first_c = np.full(n_prod, drops), np.full(n_cust, drops)
    np.minimum.at(first_p, prod, drop)
    known = cust >= 0
    np.minimum.at(first_c, cust[known], (np.searchsorted(bounds, ots, "right") - 1)[known])
    picks = rng.choice(n, min(n, n_brk + n_dup), replace=False)  # disjoint breakers and dups
    brk, dup = picks[:n_brk], picks[n_brk:]
    broken = np.zeros(n, bool)
    broken[brk] = True

    # corrections: earlier lines (not broken, not yet corrected) again in drop k, with another
    # quantity and a later updated_at
    src, c_drop, c_upd = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for k in range(1, drops):
        cand = rng.choice(first[k], min(first[k], n_corr[k] * 2 + 20), replace=False)
        s = cand[~broken[cand]][: n_corr[k]]
        broken[s] = True
        src.append(s)
        c_drop.append(np.full(len(s), k))
        eff = np.where(upd[s] >= 0, upd[s], ts[s])
        c_upd.append(np.maximum(eff + 3600, rng.integers(bounds[k], bounds[k + 1], len(s))))
    src, c_drop, c_upd = (np.concatenate(a) for a in (src, c_drop, c_upd))
    q = qty[src]
    c_qty = np.where(q < 0, q - 1, np.where((q > 1) & (rng.random(len(q)) < 0.5), q - 1, q + 1))

    # records = base lines + corrections, each with its dirt decided once so that the
    # duplicates (extra references to base records) are byte-identical copies
    rec = {"order": order, "line": line, "ts": ts, "cust": cust[order], "store": store[order],
           "prod": prod, "price": price, "pct": pct}
    rec = {k: np.concatenate([v, v[src]]) for k, v in rec.items()}
    rec["qty"], rec["upd"] = np.concatenate([qty, c_qty]), np.concatenate([upd, c_upd])
    n_rec = n + len(src)
    rec["brk"] = np.zeros(n_rec, np.int8)
    rec["brk"][brk] = np.arange(len(brk)) % len(BREAKERS) + 1
    rec["v_ts"], rec["v_upd"] = _variants(rng, n_rec), _variants(rng, n_rec)
    for c in SALES_IDS:
        rec["dirt_" + c] = _codes(rng, n_rec, TEXT_DIRT_RATE if dirt else 0.0, 2)
    # where rows go: a correction to the month of its updated_at, a duplicate next to its
    # original or (half of them) next to a random line of the same drop
    d = drop[dup]
    near = np.where(rng.random(len(dup)) < 0.5, dup,
                    first[d] + (rng.random(len(dup)) * (first[d + 1] - first[d])).astype(int))
    month = _month(np.concatenate([ts, c_upd]))
    group = np.concatenate([drop, c_drop, d]) * 4096 + np.concatenate([month, month[near]])
    pos = np.concatenate([np.arange(n), np.searchsorted(ts, c_upd), near])
    tie = np.concatenate([np.zeros(n, np.int64), np.ones(len(src) + len(dup), np.int64)])
    sel = np.argsort((group << 40) | (pos << 1) | tie, kind="stable")
    ref = np.concatenate([np.arange(n_rec), dup])[sel]
    r = {k: v[ref] for k, v in rec.items()}

    brk, cents = r["brk"], r["price"]
    disc = (np.abs(r["qty"]) * cents * r["pct"] + 50) // 100
    df = pl.DataFrame({
        "order_id": _ids("O-", r["order"] + 1, max(8, len(str(n_orders)))),
        "line_number": np.where(brk == 5, 0, r["line"]),
        "order_ts": _ts_text(r["ts"], r["v_ts"]).scatter(np.flatnonzero(brk == 3), "not-a-date"),
        "customer_id": _pick(_ids("C-", np.arange(1, n_cust + 1), 7), r["cust"]),
        "store_id": _pick(_ids("S-", np.arange(1, n_store + 1), 3), r["store"]),
        "product_id": _pick(_ids("P-", np.arange(1, n_prod + 1), 6),
                            np.where(brk == 4, -1, r["prod"])),
        "quantity": np.where(brk == 1, 0, r["qty"]),
        "unit_price": _money(np.where(brk == 2, -cents, cents)),
        "discount": _money(disc, r["pct"] < 0).scatter(np.flatnonzero(brk == 6), "abc"),
        "updated_at": _ts_text(r["upd"], r["v_upd"]),
    })
    df = df.with_columns(_spoil(df[col], r["dirt_" + c]) for c, col in SALES_IDS.items())
    return df, group[sel], first_p, first_c


# ------------------------------------------------------------------ entry point
def generate_drops(out: Path, lines: int, seed: int = 42, drops: int = 1, *,
                   dirt: bool = True) -> GenerateSummary:
    """Write `drops` source drops under out, `lines` sales rows in all (see the module doc)."""
    t0 = time.perf_counter()
    if lines < 1 or not 1 <= drops <= 365:
        raise ValueError("need lines >= 1 and 1 <= drops <= 365")
    rng = np.random.default_rng(seed)
    out, bounds = Path(out), _bounds(drops)
    n_prod = min(20_000, max(50, lines // 500))
    n_cust = min(2_000_000, max(100, lines // 20))
    n_store = min(200, max(20, lines // 50_000))
    late_end = int(bounds[-2] if drops > 1 else bounds[-1])  # so that a later drop has them
    p_launch, c_launch = _late(rng, n_prod, late_end), _late(rng, n_cust, late_end)
    region = _regions(rng, n_cust)
    products, stores = _products(rng, n_prod), _stores(rng, n_store)
    customers = _customers(rng, n_cust, c_launch, region)

    # later drops: new prices, customer moves, manager changes (late keys never change)
    price = products["_cents"].to_numpy().copy()

    def reprice(rng, rows, idx):
        new = np.round(price[idx] * rng.choice([.85, .9, .95, 1.05, 1.1, 1.2], len(idx)) / 100)
        new = np.maximum(1, new).astype(np.int64) * 100 - 1
        price[idx] = np.where(new == price[idx], new + 100, new)
        return rows.with_columns(_cents=price[idx])

    def move(rng, rows, idx):
        region[idx] = (region[idx] + rng.integers(1, len(REGIONS), len(idx))) % len(REGIONS)
        return rows.with_columns(**_place(rng, region[idx]))

    def new_manager(rng, rows, idx):
        first, last = _person(rng, len(idx))
        return rows.with_columns(manager=first + " " + last)

    p_changes = _changes(rng, products, np.flatnonzero(p_launch == 0), bounds,
                         lambda rng, m: _count(PRICE_CHANGE_RATE, m), reprice)
    c_changes = _changes(rng, customers, np.flatnonzero(c_launch == 0), bounds,
                         lambda rng, m: _count(CUSTOMER_MOVE_RATE, m), move)
    s_changes = _changes(rng, stores, np.arange(n_store), bounds,
                         lambda rng, m: int(rng.integers(1, 3)), new_manager)
    # price versions sorted by (product, seconds since the master) for the sales' lookup
    key = np.concatenate([np.arange(n_prod)] + [p["_key"].to_numpy() for p in p_changes])
    since = np.concatenate([np.zeros(n_prod, np.int64)]
                           + [p["_upd"].to_numpy() - MASTER_TS for p in p_changes])
    cents = np.concatenate([p["_cents"].to_numpy() for p in [products, *p_changes]])
    comp = key * 2**32 + since
    o = np.argsort(comp, kind="stable")
    activity = rng.gamma(0.8, size=n_cust)  # some customers buy much more often
    sales, group, first_p, first_c = _sales(rng, lines, bounds, (comp[o], cents[o]), p_launch,
                                            c_launch, activity / activity.sum(), n_store, dirt)

    no_launch = np.zeros(n_store, np.int64)
    tables = {
        "products": pl.concat([_masters(rng, products, p_launch, first_p, bounds), *p_changes]),
        "customers": pl.concat([_masters(rng, customers, c_launch, first_c, bounds),
                                *c_changes]),
        "stores": pl.concat([_masters(rng, stores, no_launch, no_launch, bounds), *s_changes]),
    }
    if dirt:  # a few product rows with a negative price, in whichever drop they fall
        t = tables["products"]
        live = np.flatnonzero(t["_drop"].to_numpy() >= 0)
        neg = rng.choice(live, _count(NEG_PRICE_RATE, len(live), 1), replace=False)
        tables["products"] = t.with_columns(t["_cents"].scatter(neg, -t["_cents"].gather(neg)))

    dirs = [out / f"drop_{k + 1:03d}" for k in range(drops)]
    for d in dirs:  # files left by an earlier run would change the drop
        d.mkdir(parents=True, exist_ok=True)
        for f in d.glob("*"):
            if f.is_file() and f.name.startswith(("products", "customers", "stores", "sales")):
                f.unlink()
    files, rows = 0, {}
    for entity, (prefix, width, cols, text) in DIMENSIONS.items():
        t, rows[entity] = tables[entity], 0
        ids = _ids(prefix, np.arange(1, t["_key"].max() + 2), width)
        for k in range(drops):
            part = t.filter(pl.col("_drop") == k).sort("_key", "_upd")
            if len(part):
                df = _render(rng, part, ids, cols, text, dirt)
                df.write_csv(dirs[k] / f"{entity}.csv")
                files, rows[entity] = files + 1, rows[entity] + len(df)
    cuts = np.concatenate([[0], np.flatnonzero(np.diff(group)) + 1, [len(group)]])
    for a, b in pairwise(cuts):
        k, month = divmod(int(group[a]), 4096)
        name = f"sales_{np.datetime64(month, 'M')}.csv"
        gz = a == 0 and lines >= 1000  # drop 1's first month exercises .csv.gz
        sales.slice(a, b - a).write_csv(dirs[k] / (name + ".gz" if gz else name),
                                        compression="gzip" if gz else "uncompressed")
        files += 1
    rows["sales"] = len(sales)
    return GenerateSummary(out, dirs, files, rows, time.perf_counter() - t0)
