"""The references our load is measured against, each run in its own worker process.

Every reference writes the final `dw.fact_sales` rows into an empty twin of that table
(`bench.<name>`: same columns, constraints, 5 indexes and monthly partitions), created in the
same transaction as the write, so it gets the same `wal_level=minimal` treatment as the
load's freshly created partitions. Creating the twin is not timed; the commit is.

- raw_copy:  the final rows the load produced, read back as Arrow, one `adbc_ingest` (the limit)
- bare:      read the CSV files with Polars, compute the final rows, one `adbc_ingest`
- pandas_executemany / pandas_copy: the classic script, pandas + SQLAlchemy `to_sql`
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import polars as pl

from retail_etl.db.connect import connect

FACT = "dw.fact_sales"
MONEY, TOTAL = pl.Decimal(12, 2), pl.Decimal(22, 2)
UTC = pl.Datetime("us", "UTC")
# the columns of dw.fact_sales, in order, with their exact Arrow types
FACT_TYPES = {
    "order_id": pl.String, "line_number": pl.Int32, "order_ts": UTC, "date_key": pl.Int32,
    "product_key": pl.Int32, "customer_key": pl.Int32, "store_key": pl.Int32,
    "quantity": pl.Int32, "unit_price": MONEY, "discount": MONEY, "total_amount": TOTAL,
    "updated_at": UTC, "run_id": pl.Int64,
}
DIMS = {"product": "products", "customer": "customers", "store": "stores"}  # name -> entity


# ---- the twin table ---------------------------------------------------------------------


def twin_ddl(cur, name: str) -> list[str]:
    """Statements that (re)create `bench.<name>` as an empty twin of dw.fact_sales."""
    cur.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{FACT}'::regclass "
        "ORDER BY 1"
    )
    parts = cur.fetchall()
    ddl = [
        "CREATE SCHEMA IF NOT EXISTS bench",
        f"DROP TABLE IF EXISTS bench.{name}",
        f"CREATE TABLE bench.{name} (LIKE {FACT} INCLUDING ALL) PARTITION BY RANGE (date_key)",
    ]
    for relname, bound in parts:
        suffix = relname.removeprefix("fact_sales_")
        ddl.append(f"CREATE TABLE bench.{name}_{suffix} PARTITION OF bench.{name} {bound}")
    return ddl


def final_rows(dsn: str) -> pl.DataFrame:
    """The rows the load left in dw.fact_sales, as typed Arrow-ready Polars."""
    conn = connect(dsn)
    cols = [f"{c}::text AS {c}" if t in (MONEY, TOTAL) else c for c, t in FACT_TYPES.items()]
    with conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(cols)} FROM {FACT}")
        df = pl.from_arrow(cur.fetch_arrow_table())
    conn.close()
    return _typed(df)


def _typed(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        pl.col(c).dt.convert_time_zone("UTC").cast(t) if t == UTC else pl.col(c).cast(t)
        for c, t in FACT_TYPES.items()
    )


def _ingest(dsn: str, name: str, make_rows) -> dict:
    """Create the twin (untimed), then time make_rows() + one COPY + commit."""
    conn = connect(dsn)
    with conn.cursor() as cur:
        for stmt in twin_ddl(cur, name):
            cur.execute(stmt)
        t0 = time.perf_counter()
        rows = make_rows()
        t1 = time.perf_counter()
        cur.adbc_ingest(name, rows.to_arrow(), mode="append", db_schema_name="bench")
    conn.commit()
    t2 = time.perf_counter()
    conn.close()
    return {"rows": rows.height, "seconds": t2 - t0, "compute_seconds": t1 - t0,
            "copy_seconds": t2 - t1}


# ---- raw COPY: the limit ----------------------------------------------------------------


def raw_copy(dsn: str, drop: Path) -> dict:
    rows = final_rows(dsn)  # read back before the clock starts
    return _ingest(dsn, "fact_raw", lambda: rows)


# ---- bare path: read, compute, COPY in Polars -------------------------------------------


def _files(drop: Path, entity: str) -> list[Path]:
    return sorted(p for p in drop.iterdir()
                  if p.name.startswith(entity) and p.name.endswith((".csv", ".csv.gz")))


def _read(drop: Path, entity: str) -> pl.DataFrame:
    frames = [pl.read_csv(f, infer_schema=False) for f in _files(drop, entity)]
    return pl.concat(frames, how="diagonal")


def _ts(col: str) -> pl.Expr:
    s = pl.col(col).str.strip_chars().str.replace(" ", "T").str.replace("Z$", "+00:00")
    s = pl.when(s.str.contains(r"[+-]\d\d:\d\d$")).then(s).otherwise(s + "+00:00")
    return s.str.to_datetime("%Y-%m-%dT%H:%M:%S%:z", time_zone="UTC", strict=False)


def bare_rows(drop: Path) -> pl.DataFrame:
    """The final fact rows from the CSV files with the minimum of work: trim ids, parse,
    drop rule breakers, keep the latest version per (order_id, line_number), number the
    dimension ids freshly (NULL customer or store -> -1)."""
    ids = ["order_id", "product_id", "customer_id", "store_id"]
    sales = (
        _read(drop, "sales").lazy()
        .with_columns(pl.col(ids).str.strip_chars().replace("", None))
        .with_columns(
            pl.col("line_number").cast(pl.Int32, strict=False),
            pl.col("quantity").cast(pl.Int32, strict=False),
            pl.col("unit_price").cast(MONEY, strict=False),
            pl.col("discount").cast(MONEY, strict=False),
            _ts("order_ts").alias("order_ts"),
            _ts("updated_at").alias("updated_at"),
            pl.col("discount").is_null().alias("_no_discount"),
        )
        .filter(
            pl.all_horizontal(pl.col("order_id", "product_id", "line_number", "quantity",
                                     "unit_price", "order_ts").is_not_null()),
            pl.col("_no_discount") | pl.col("discount").is_not_null(),  # unparseable
            pl.col("line_number") >= 1, pl.col("quantity") != 0, pl.col("unit_price") >= 0,
            pl.col("discount").fill_null(0) >= 0,
        )
        .with_columns(pl.col("discount").fill_null(0),
                      pl.col("updated_at").fill_null(pl.col("order_ts")))
        .sort("updated_at", maintain_order=True)
        .unique(["order_id", "line_number"], keep="last", maintain_order=True)
        .collect()
    )
    for dim, entity in DIMS.items():
        known = _read(drop, entity).select(pl.col(f"{dim}_id").str.strip_chars())
        keys = (pl.concat([known.get_column(f"{dim}_id"), sales.get_column(f"{dim}_id")])
                .drop_nulls().unique().sort().to_frame())
        keys = keys.with_columns(pl.int_range(1, keys.height + 1, dtype=pl.Int32)
                                 .alias(f"{dim}_key"))
        sales = sales.join(keys, on=f"{dim}_id", how="left").with_columns(
            pl.col(f"{dim}_key").fill_null(-1))
    ts = pl.col("order_ts")
    return _typed(sales.with_columns(
        (ts.dt.year().cast(pl.Int32) * 10000 + ts.dt.month().cast(pl.Int32) * 100
         + ts.dt.day().cast(pl.Int32)).alias("date_key"),
        (pl.col("quantity").cast(pl.Decimal(22, 0)) * pl.col("unit_price")
         - pl.col("discount")).alias("total_amount"),
        pl.lit(None, pl.Int64).alias("run_id"),
    ))


def bare(dsn: str, drop: Path) -> dict:
    return _ingest(dsn, "fact_bare", lambda: bare_rows(drop))


# ---- pandas + SQLAlchemy, the classic script ---------------------------------------------


def psql_insert_copy(table, conn, keys, data_iter):
    """The COPY `method` callable from the pandas documentation (io.sql, "Insertion
    method"), adapted from psycopg2's copy_expert to psycopg 3's cursor.copy."""
    dbapi_conn = conn.connection
    with dbapi_conn.cursor() as cur:
        s_buf = io.StringIO()
        writer = csv.writer(s_buf)
        writer.writerows(data_iter)
        s_buf.seek(0)
        columns = ", ".join(f'"{k}"' for k in keys)
        table_name = f"{table.schema}.{table.name}" if table.schema else table.name
        with cur.copy(f"COPY {table_name} ({columns}) FROM STDIN WITH CSV") as copy:
            copy.write(s_buf.getvalue())


def pandas_rows(drop: Path):
    """The same final rows, computed the way a competent pandas script would."""
    import pandas as pd

    def read(entity):
        return pd.concat([pd.read_csv(f, dtype=str) for f in _files(drop, entity)],
                         ignore_index=True)

    def cents(s):
        return (pd.to_numeric(s, errors="coerce") * 100).round().astype("Int64")

    df = read("sales")
    for c in ("order_id", "product_id", "customer_id", "store_id"):
        df[c] = df[c].str.strip().replace("", None)
    df["line_number"] = pd.to_numeric(df["line_number"], errors="coerce").astype("Int64")
    df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce").astype("Int64")
    bad_discount = df["discount"].notna() & pd.to_numeric(df["discount"], errors="coerce").isna()
    df["price_c"], df["discount_c"] = cents(df["unit_price"]), cents(df["discount"]).fillna(0)
    for c in ("order_ts", "updated_at"):
        df[c] = pd.to_datetime(df[c], utc=True, format="ISO8601", errors="coerce")
    ok = (df[["order_id", "product_id", "line_number", "quantity", "price_c", "order_ts"]]
          .notna().all(axis=1) & ~bad_discount)
    df = df[ok]
    df = df[(df["line_number"] >= 1) & (df["quantity"] != 0) & (df["price_c"] >= 0)
            & (df["discount_c"] >= 0)].copy()
    df["updated_at"] = df["updated_at"].fillna(df["order_ts"])
    df = (df.sort_values("updated_at", kind="stable")
          .drop_duplicates(["order_id", "line_number"], keep="last"))
    for dim, entity in DIMS.items():
        known = read(entity)[f"{dim}_id"].str.strip()
        ids = sorted(set(known.dropna()) | set(df[f"{dim}_id"].dropna()))
        key = {k: i for i, k in enumerate(ids, start=1)}
        df[f"{dim}_key"] = df[f"{dim}_id"].map(key).fillna(-1).astype("int32")
    df["date_key"] = (df["order_ts"].dt.year * 10000 + df["order_ts"].dt.month * 100
                      + df["order_ts"].dt.day).astype("int32")
    total_c = df["quantity"] * df["price_c"] - df["discount_c"]  # exact, in cents
    df["unit_price"], df["discount"] = df["price_c"] / 100, df["discount_c"] / 100
    df["total_amount"] = total_c / 100
    cols = [c for c in FACT_TYPES if c != "run_id"]
    return df[cols]


def _sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1)


def _pandas(dsn: str, drop: Path, name: str, method) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(_sqlalchemy_url(dsn))
    conn = connect(dsn)
    with conn.cursor() as cur:
        ddl = twin_ddl(cur, name)
    conn.close()
    with engine.begin() as con:
        for stmt in ddl:
            con.exec_driver_sql(stmt)
        t0 = time.perf_counter()
        df = pandas_rows(drop)
        t1 = time.perf_counter()
        df.to_sql(name, con, schema="bench", if_exists="append", index=False, method=method)
    t2 = time.perf_counter()  # after the commit
    engine.dispose()
    return {"rows": len(df), "seconds": t2 - t0, "compute_seconds": t1 - t0,
            "copy_seconds": t2 - t1}


def pandas_executemany(dsn: str, drop: Path) -> dict:
    return _pandas(dsn, drop, "fact_pd_executemany", None)


def pandas_copy(dsn: str, drop: Path) -> dict:
    return _pandas(dsn, drop, "fact_pd_copy", psql_insert_copy)


REFERENCES = {
    "raw_copy": raw_copy,
    "bare": bare,
    "pandas_executemany": pandas_executemany,
    "pandas_copy": pandas_copy,
}
