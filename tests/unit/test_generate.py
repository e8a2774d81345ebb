"""Tests of the synthetic source-drop generator (retail_etl.generate.drops)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

from retail_etl.generate import drops as gen
from retail_etl.generate.drops import GenerateSummary, describe, generate_drops

LINES = 20_000
HEADERS = {
    "products": "product_id,product_name,category,subcategory,brand,unit_price,updated_at",
    "customers": "customer_id,first_name,last_name,email,segment,city,state,country,join_date,"
                 "updated_at",
    "stores": "store_id,store_name,store_type,city,state,country,manager,opened_date,updated_at",
    "sales": "order_id,line_number,order_ts,customer_id,store_id,product_id,quantity,unit_price,"
             "discount,updated_at",
}
KEYS = {"products": "product_id", "customers": "customer_id", "stores": "store_id"}


@pytest.fixture(scope="module")
def dirty(tmp_path_factory) -> GenerateSummary:
    return generate_drops(tmp_path_factory.mktemp("dirty"), LINES, seed=7, drops=3)


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> GenerateSummary:
    return generate_drops(tmp_path_factory.mktemp("clean"), LINES, seed=7, drops=3, dirt=False)


def files(summary: GenerateSummary, entity: str, drop: int | None = None) -> list[Path]:
    dirs = summary.drops if drop is None else [summary.drops[drop]]
    return sorted(f for d in dirs for f in d.iterdir() if f.name.startswith(entity))


def read(summary: GenerateSummary, entity: str, drop: int | None = None) -> pl.DataFrame:
    """All rows of an entity as text, with the 0-based drop they came from, in load order."""
    frames = [pl.read_csv(f, infer_schema=False).with_columns(_drop=pl.lit(summary.drops.index(
        f.parent))) for f in files(summary, entity, drop)]
    return pl.concat(frames) if frames else pl.DataFrame()


def ts(col: str) -> pl.Expr:
    """ISO 8601 text (Z, offset or none = UTC) -> UTC datetime; NULL when it does not parse."""
    s = pl.col(col).str.replace("Z$", "+00:00").str.replace(" ", "T", literal=True)
    s = pl.when(s.str.contains(r"[+-]\d\d:\d\d$")).then(s).otherwise(s + "+00:00")
    return s.str.strptime(pl.Datetime("us", "UTC"), "%Y-%m-%dT%H:%M:%S%:z", strict=False)


def money(col: str) -> pl.Expr:
    """Decimal text with exactly 2 decimals -> Decimal; NULL otherwise."""
    c = pl.col(col)
    return pl.when(c.str.contains(r"^-?\d+\.\d\d$")).then(c).cast(pl.Decimal(12, 2), strict=False)


def digest(root: Path) -> dict[str, str]:
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path):
    a = generate_drops(tmp_path / "a", 5_000, seed=3, drops=2)
    b = generate_drops(tmp_path / "b", 5_000, seed=3, drops=2)
    c = generate_drops(tmp_path / "c", 5_000, seed=4, drops=2)
    assert digest(a.out) == digest(b.out)
    assert digest(a.out) != digest(c.out)
    again = generate_drops(tmp_path / "a", 5_000, seed=3, drops=2)  # rerun in place
    assert digest(again.out) == digest(b.out)


def test_layout_headers_and_summary(dirty):
    assert [d.name for d in dirty.drops] == ["drop_001", "drop_002", "drop_003"]
    written = [f for d in dirty.drops for f in d.iterdir()]
    assert dirty.files == len(written)
    gz = [f for f in written if f.name.endswith(".csv.gz")]
    assert [f.relative_to(dirty.out).as_posix() for f in gz] == ["drop_001/sales_2023-01.csv.gz"]
    for entity, header in HEADERS.items():
        for f in files(dirty, entity):
            assert pl.read_csv(f, n_rows=0).columns == header.split(","), f
        assert dirty.rows[entity] == read(dirty, entity).height
    assert {f.name for f in files(dirty, "products")} == {"products.csv"}
    sales = [f.name for f in files(dirty, "sales", 0)]
    assert sales[0] == "sales_2023-01.csv.gz" and sales[-1] == "sales_2023-08.csv"
    text = describe(dirty)
    assert "3 drop(s)" in text and "\n" not in text


@pytest.mark.parametrize(("lines", "drops", "dirt"), [(20_000, 1, True), (20_000, 3, False),
                                                       (12_345, 5, True), (700, 2, True)])
def test_lines_respected(tmp_path, lines, drops, dirt):
    s = generate_drops(tmp_path, lines, seed=1, drops=drops, dirt=dirt)
    assert abs(s.rows["sales"] - lines) <= 0.02 * lines
    assert s.rows["sales"] == lines  # exact in fact: base lines + corrections + duplicates
    assert read(s, "sales").height == s.rows["sales"]
    assert len(s.drops) == drops
    if lines < 1000:
        assert not any(f.name.endswith(".gz") for d in s.drops for f in d.iterdir())


def test_dirt_rates_are_as_documented(dirty):
    sales = read(dirty, "sales")
    n = sales.height
    dups = sum(len(part) - part.unique().height for part in sales.partition_by("_drop"))
    assert dups == pytest.approx(gen.DUPLICATE_RATE * n, rel=0.05)
    broken = {
        "quantity_zero": pl.col("quantity") == "0",
        "negative_price": pl.col("unit_price").str.starts_with("-"),
        "bad_order_ts": pl.col("order_ts") == "not-a-date",
        "no_product": pl.col("product_id").is_null(),
        "line_zero": pl.col("line_number") == "0",
        "bad_discount": pl.col("discount") == "abc",
    }
    assert set(broken) == set(gen.BREAKERS)
    counts = {k: sales.filter(e).height for k, e in broken.items()}
    assert all(c >= 1 for c in counts.values()), counts
    assert sum(counts.values()) == pytest.approx(gen.BREAKER_RATE * n, rel=0.1)
    assert sales.filter(ts("order_ts").is_null()).height == counts["bad_order_ts"]

    for col in ("order_id", "customer_id", "store_id", "product_id"):
        s = sales[col].drop_nulls()
        spaced = (s != s.str.strip_chars()).mean()
        assert 0.5 * gen.TEXT_DIRT_RATE < spaced < 1.6 * gen.TEXT_DIRT_RATE, col
        assert s.str.strip_chars().str.contains("^[OCSP]-\\d+$").all(), col  # case kept
    customers = read(dirty, "customers")
    cells = pl.concat([customers[c] for c in ("first_name", "last_name", "city", "segment",
                                               "state")])
    spaced = (cells != cells.str.strip_chars().str.replace_all(" +", " ")).mean()
    assert 0.4 * gen.TEXT_DIRT_RATE < spaced < 1.5 * gen.TEXT_DIRT_RATE  # 3 of 4 kinds: spaces
    mixed = (customers["email"] != customers["email"].str.to_lowercase()).mean()
    assert gen.EMAIL_CASE_RATE * 0.6 < mixed < gen.EMAIL_CASE_RATE * 1.6
    products = read(dirty, "products")
    assert products.filter(pl.col("unit_price").str.starts_with("-")).height >= 1
    for entity in KEYS:  # a handful of rows repeated identically
        d = read(dirty, entity, 0)
        assert 1 <= d.height - d.unique().height <= gen.DIM_REPEATS


def test_later_drops_carry_corrections_and_changes(clean):
    sales = read(clean, "sales").with_columns(eff=pl.coalesce(ts("updated_at"), ts("order_ts")),
                                              q=pl.col("quantity").cast(pl.Int64))
    key = ["order_id", "line_number"]
    for k in (1, 2):
        earlier = sales.filter(pl.col("_drop") < k)
        again = sales.filter(pl.col("_drop") == k).join(earlier, on=key, suffix="_old")
        assert again.height == pytest.approx(gen.CORRECTION_RATE * earlier.height, rel=0.3)
        assert (again["eff"] > again["eff_old"]).all()
        assert (again["q"] != again["q_old"]).all()

    for entity, changed in (("products", "unit_price"), ("customers", "city"),
                            ("stores", "manager")):
        rows = read(clean, entity).with_columns(t=ts("updated_at"))
        first = rows.filter(pl.col("_drop") == 0)
        for k in (1, 2):
            later = rows.filter(pl.col("_drop") == k).join(first, on=KEYS[entity], suffix="_0")
            assert later.height >= 1, (entity, k)
            assert (later[changed] != later[changed + "_0"]).all(), (entity, k)
            assert (later["t"] > later["t_0"]).all()
    # price changes hit about PRICE_CHANGE_RATE of the products in each later drop
    products = read(clean, "products")
    n = products.filter(pl.col("_drop") == 0).height
    assert products.filter(pl.col("_drop") == 1).height >= round(gen.PRICE_CHANGE_RATE * n)


def test_late_arriving_keys(clean):
    sales = read(clean, "sales")
    for entity in ("products", "customers"):
        key = KEYS[entity]
        masters = read(clean, entity)
        home = dict(masters.group_by(key).agg(pl.col("_drop").min()).iter_rows())
        sold = dict(sales.drop_nulls(key).group_by(key).agg(pl.col("_drop").min()).iter_rows())
        late = {k: d for k, d in sold.items() if k not in home or home[k] > d}
        assert late, entity
        assert all(k not in home or home[k] == d + 1 for k, d in late.items()), entity
        assert len(late) <= max(3, 0.02 * len(sold)), entity


def test_clean_drops_obey_the_contract(clean):
    sales = read(clean, "sales")
    assert sales.height == sales.unique().height
    checks = {
        "ids trimmed": pl.all_horizontal(
            (pl.col(c).is_null() | (pl.col(c) == pl.col(c).str.strip_chars()))
            for c in ("order_id", "customer_id", "store_id", "product_id")),
        "order_id": pl.col("order_id").str.contains("^O-\\d{8}$"),
        "line_number": pl.col("line_number").cast(pl.Int64, strict=False) >= 1,
        "order_ts": ts("order_ts").is_not_null(),
        "product_id": pl.col("product_id").str.contains("^P-\\d{6}$"),
        "customer_id": pl.col("customer_id").is_null() | pl.col("customer_id").str.contains(
            "^C-\\d{7}$"),
        "store_id": pl.col("store_id").is_null() | pl.col("store_id").str.contains("^S-\\d{3}$"),
        "quantity": pl.col("quantity").cast(pl.Int64, strict=False).fill_null(0) != 0,
        "unit_price": money("unit_price") >= 0,
        "discount": pl.col("discount").is_null() | (money("discount") >= 0),
        "updated_at": pl.col("updated_at").is_null() | ts("updated_at").is_not_null(),
        "in period": ts("order_ts").dt.year().is_in([2023, 2024]),
    }
    for name, rule in checks.items():
        assert sales.filter(~rule.fill_null(False)).is_empty(), name
    anonymous = sales["customer_id"].is_null().mean()
    assert gen.ANON_CUSTOMER_RATE * 0.6 < anonymous < gen.ANON_CUSTOMER_RATE * 1.5

    for entity, key in KEYS.items():
        rows = read(clean, entity).with_columns(t=ts("updated_at"))
        assert rows.filter(pl.col(key).is_null() | pl.col("t").is_null()).is_empty()
        text = [c for c in rows.columns if rows[c].dtype == pl.String]
        for c in text:
            assert (rows[c].drop_nulls() == rows[c].drop_nulls().str.strip_chars()
                    .str.replace_all(" +", " ")).all(), (entity, c)
        assert rows.height == rows.unique().height, entity
        # versions of a key increase with the drop
        by_key = rows.sort("_drop", maintain_order=True).group_by(key).agg("t")
        assert by_key["t"].list.eval(pl.element().diff().drop_nulls() > 0).list.all().all()
    products = read(clean, "products")
    assert products.select(money("unit_price") >= 0).to_series().all()
    customers = read(clean, "customers")
    assert (customers["email"] == customers["email"].str.to_lowercase()).all()
    assert customers["join_date"].str.to_date("%Y-%m-%d", strict=False).is_not_null().all()


def test_sales_use_the_price_in_effect(clean):
    """unit_price of a sale is that of the product version in effect at order_ts."""
    versions = (read(clean, "products").with_columns(t=ts("updated_at"), p=money("unit_price"))
                .sort("t").select("product_id", "t", "p"))
    sales = (read(clean, "sales").with_columns(t=ts("order_ts"), p=money("unit_price"))
             .sort("t"))
    joined = sales.join_asof(versions, on="t", by="product_id", suffix="_v",
                             check_sortedness=False)
    known = joined.filter(pl.col("p_v").is_not_null())
    assert known.height > 0.9 * sales.height
    assert (known["p"] == known["p_v"]).all()
