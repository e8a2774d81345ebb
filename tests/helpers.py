"""The tests' one support module (no test module imports another): write drops from
literal rows, read warehouse tables as frames, run the CLI, drive a shop database, check
SCD2 invariants."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse

import polars as pl
from typer.testing import CliRunner

from pipelines import PROJECT
from retail_etl import flow
from retail_etl.cli import app
from retail_etl.config import PostgresSource, Settings
from retail_etl.db.connect import connect
from retail_etl.flow import load_drop
from retail_etl.spec import Column, DimensionSCD2, Entity, id_, text

HEADERS = {
    "products": "product_id,product_name,category,subcategory,brand,unit_price,updated_at",
    "customers": "customer_id,first_name,last_name,email,segment,city,state,country,join_date,updated_at",
    "stores": "store_id,store_name,store_type,city,state,country,manager,opened_date,updated_at",
    "sales": "order_id,line_number,order_ts,customer_id,store_id,product_id,quantity,unit_price,discount,updated_at",
}


def write_drop(directory: Path, **files: list[list] | str) -> Path:
    """write_drop(dir, products=[[...], ...], sales_2024_01=[[...]]): one CSV per keyword,
    with the contract's header for the entity the name starts with. A string is written as is."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        path = directory / f"{name}.csv"
        if isinstance(rows, str):
            path.write_text(rows)
            continue
        entity = next(e for e in HEADERS if name.startswith(e))
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HEADERS[entity].split(","))
            for r in rows:
                w.writerow(["" if v is None else v for v in r])
    return directory


def load(settings: Settings, directory: Path):
    return load_drop(PROJECT, settings, directory)


def query(dsn: str, sql: str) -> pl.DataFrame:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return pl.from_arrow(cur.fetch_arrow_table())
    finally:
        conn.close()


def rows(dsn: str, sql: str) -> list[tuple]:
    return [tuple(r) for r in query(dsn, sql).iter_rows()]


def dim(dsn: str, table: str, cols: str) -> list[tuple]:
    """A dimension's versions without the unknown member, ordered by id and valid_from;
    valid_to 'infinity' reads as None."""
    bk = {"product": "product_id", "customer": "customer_id", "store": "store_id"}[table]
    return rows(dsn, f"""
        SELECT {cols} FROM (SELECT *, nullif(valid_to, 'infinity') AS vt FROM dw.dim_{table}) d
        WHERE {bk} IS NOT NULL ORDER BY {bk}, valid_from""")


def checksum(dsn: str) -> dict[str, str]:
    """md5 of every warehouse table's full content (run ids included)."""
    out = {}
    for t in ("dim_date", "dim_product", "dim_customer", "dim_store", "fact_sales"):
        out[t] = rows(dsn, f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                           f"FROM dw.{t} x")[0][0]
    return out


def start_paused(settings, drop, tmp_path, point, *, cwd=None):
    """`retail-etl load` in a process of its own, returned once it sleeps at `point`
    (RETAIL_ETL_PAUSE_AT), for a test to kill or stop it there."""
    pause = tmp_path / f"paused-{point.replace(':', '-')}"
    env = {**os.environ, "RETAIL_ETL_DSN": settings.dsn, "RETAIL_ETL_DATA_DIR": str(settings.data_dir),
           "RETAIL_ETL_PAUSE_AT": point, "RETAIL_ETL_PAUSE_FILE": str(pause)}
    p = subprocess.Popen([sys.executable, "-m", "retail_etl", "load", "--source-dir", str(drop)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
    deadline = time.time() + 60
    while not pause.exists():
        assert p.poll() is None, p.stderr.read().decode()
        assert time.time() < deadline, "the run never reached its pause point"
        time.sleep(0.05)
    return p


CLI_ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def database_of(dsn: str) -> str:
    """The database a postgresql:// URL names (its query, e.g. sslmode, left out)."""
    return urlparse(dsn).path.lstrip("/")


def cli(*args, **env):
    """`retail-etl ARGS` in-process, with plain output; `env` adds environment variables."""
    return CliRunner().invoke(app, list(args), env={**CLI_ENV, **env})


def error_line(result, code: int = 1) -> str:
    """The one `Error:` line of a failed command, which must exit `code` without a traceback
    or an "internal error"."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return [ln for ln in result.output.splitlines() if ln.startswith("Error:")][0]


def scaled(n: int) -> int:
    """Hypothesis examples for a property: `n` in the suite (kept under 10 minutes on two
    cores), RETAIL_ETL_EXAMPLES=<factor> for a deeper search (e.g. 10 overnight)."""
    return max(1, round(n * float(os.environ.get("RETAIL_ETL_EXAMPLES", "1"))))


# ---- warehouses and shops for the properties and the database source ----------------------

# the warehouse schema, cloned per test (conftest.py); one per process, so that processes
# sharing one server (the mutation lane) each build theirs with the code they test
TEMPLATE = f"retail_template_{os.getpid()}"


DAY0 = datetime(2024, 1, 1, tzinfo=UTC)


def ts(day: int, hour: int = 0) -> str:
    return (DAY0 + timedelta(days=day, hours=hour)).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def fresh_warehouse(cluster, tmp_path):
    name = f"p_{uuid.uuid4().hex[:12]}"
    dsn = cluster.create_database(name, template=TEMPLATE)
    try:
        yield Settings(dsn=dsn, data_dir=tmp_path / name)
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_scd2_invariants(dsn: str, table: str) -> None:
    """Per business key: versions tile time without gaps or overlaps, one current, no
    version repeating the one before it, every fact inside its version's range."""
    bk = f"{table}_id"
    bad = rows(dsn, f"""
        WITH v AS (SELECT {bk}, valid_from, valid_to, is_current,
                          lead(valid_from) OVER w AS next_from,
                          count(*) FILTER (WHERE is_current) OVER (PARTITION BY {bk}) AS currents
                   FROM dw.dim_{table} WHERE {bk} IS NOT NULL
                   WINDOW w AS (PARTITION BY {bk} ORDER BY valid_from))
        SELECT * FROM v
        WHERE valid_from >= valid_to                                   -- empty range
           OR (next_from IS NOT NULL AND next_from <> valid_to)        -- gap or overlap
           OR (next_from IS NULL AND (valid_to <> 'infinity' OR NOT is_current))
           OR currents <> 1""")
    assert bad == []
    # no version repeats the attributes of the one before it (history is minimal)
    attrs = (f"to_jsonb(d) - '{table}_key' - 'valid_from' - 'valid_to' - 'is_current' "
             "- 'is_inferred' - 'run_id'")
    repeats = rows(dsn, f"""
        SELECT {bk}, valid_from FROM (
            SELECT {bk}, valid_from, {attrs} AS a,
                   lag({attrs}) OVER (PARTITION BY {bk} ORDER BY valid_from) AS prev
            FROM dw.dim_{table} d WHERE {bk} IS NOT NULL) x
        WHERE a = prev""")
    assert repeats == []
    # every fact lies inside the range of the version it points to (or before the first)
    key = f"{table}_key"
    stray = rows(dsn, f"""
        SELECT f.order_id FROM dw.fact_sales f JOIN dw.dim_{table} d ON d.{key} = f.{key}
        WHERE d.{key} <> -1 AND NOT (f.order_ts < d.valid_to AND (f.order_ts >= d.valid_from
              OR d.valid_from = (SELECT min(valid_from) FROM dw.dim_{table} x WHERE x.{bk} = d.{bk})))""")
    assert stray == []


def warehouse_content(dsn: str) -> dict[str, list]:
    """The warehouse with surrogate keys replaced by business keys and validity ranges."""
    dims = {
        t: sorted(rows(dsn, f"SELECT (to_jsonb(d) - '{t}_key' - 'run_id')::text FROM dw.dim_{t} d "
                            f"WHERE {t}_id IS NOT NULL"))
        for t in ("product", "customer", "store")
    }
    facts = sorted(query(dsn, """
        SELECT f.order_id, f.line_number, f.order_ts, f.date_key, f.quantity,
               f.unit_price::text, f.discount::text, f.total_amount::text, f.updated_at,
               p.product_id, p.valid_from::text AS pf, c.customer_id, c.valid_from::text AS cf,
               s.store_id, s.valid_from::text AS sf
        FROM dw.fact_sales f JOIN dw.dim_product p USING (product_key)
        JOIN dw.dim_customer c USING (customer_key) JOIN dw.dim_store s USING (store_key)
    """).rows(), key=repr)
    return {**{k: sorted(v, key=repr) for k, v in dims.items()}, "facts": facts}


MART_TABLES = ("kpi_daily", "kpi_monthly", "product_monthly", "customer_days", "cohort_cells",
               "customer_summary")


def mart_content(dsn: str) -> dict[str, list]:
    """Every row of the mart's tables, as text."""
    return {t: sorted(r for r, in rows(dsn, f"SELECT to_jsonb(m)::text FROM mart.{t} m"))
            for t in MART_TABLES}


def assert_mart_as_if_recomputed(dsn: str) -> None:
    """The mart the loads' refreshes kept (only the days each run touched) is the mart a
    full recomputation from the warehouse gives."""
    kept = mart_content(dsn)
    from retail_etl.load import refresh

    conn = connect(dsn, autocommit=True)
    try:
        assert [r.error for r in refresh.refresh(conn, None, full=True)] == [None] * 7
    finally:
        conn.close()
    whole = mart_content(dsn)
    for t in MART_TABLES:
        assert kept[t] == whole[t], f"mart.{t} differs from its full recomputation"


def shop(settings: Settings, source: str, **kw) -> Settings:
    """The settings with one database source, `shop`, reading `source`."""
    kw.setdefault("batch_rows", 250)  # several staged files per table, as at volume
    kw.setdefault("line_scan_every", 1)  # deterministic: "auto" depends on timing
    cfg = PostgresSource(kind="postgres", dsn=source, **kw)
    return settings.model_copy(update={"sources": {"shop": cfg}})


def run(settings: Settings, full: bool = False):
    """One run over the settings' configured sources (e.g. shop(...))."""
    return flow.load(PROJECT, settings, settings.sources, full=full)


def execute(dsn: str, *statements: str) -> None:
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
        conn.commit()
    finally:
        conn.close()


def source_lines(src: str) -> list[tuple]:
    """The order lines the warehouse must hold: those of orders not cancelled."""
    return rows(src, """
        SELECT i.order_id::text, i.line_number, i.product_id::text, o.customer_id::text,
               o.store_id::text, i.quantity, i.unit_price::text, i.discount::text
        FROM order_items i JOIN orders o USING (order_id) WHERE o.status <> 'cancelled'
        ORDER BY i.order_id, 2""")


def warehouse_lines(dsn: str) -> list[tuple]:
    return rows(dsn, """
        SELECT f.order_id, f.line_number, p.product_id, c.customer_id, s.store_id,
               f.quantity, f.unit_price::text, f.discount::text
        FROM dw.fact_sales f JOIN dw.dim_product p USING (product_key)
        JOIN dw.dim_customer c USING (customer_key) JOIN dw.dim_store s USING (store_key)
        ORDER BY f.order_id::bigint, f.line_number""")


@contextmanager
def fresh_database(cluster, template: str | None = None):
    name = f"q_{uuid.uuid4().hex[:12]}"
    try:
        yield cluster.create_database(name, template=template)
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- frames drawn as text tables (the unit tests' before / input / after) ------------------
#
#     | key | id  | price | valid_from | valid_to |
#     | 1   | P-1 | 1.00  | 2024-01-01 | -        |
#
# `-` is NULL (an open valid_to); a column's type comes from COLUMN_TYPES by its name.

DAY = pl.Datetime("us", "UTC")
COLUMN_TYPES = {
    "key": pl.Int64, "id": pl.String, "name": pl.String, "price": pl.Decimal(12, 2),
    "valid_from": DAY, "valid_to": DAY, "is_current": pl.Boolean, "is_inferred": pl.Boolean,
    "_seq": pl.Int64, "order_id": pl.String, "line_number": pl.Int32, "quantity": pl.Int32,
    "total": pl.Decimal(12, 2), "updated_at": DAY, "date_key": pl.Int32,
    "order_ts": DAY,
}


def _value(text: str, dtype: pl.DataType):
    if text == "-":
        return None
    if dtype == DAY:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    if dtype == pl.Boolean:
        return {"yes": True, "no": False}[text]
    if isinstance(dtype, pl.Decimal):
        return Decimal(text)
    if dtype.is_integer():
        return int(text)
    return text


def table(text: str, **types: pl.DataType) -> pl.DataFrame:
    """A frame from a text table (types by column name, or given)."""
    lines = [ln.strip().strip("|") for ln in text.strip().splitlines()]
    head = [c.strip() for c in lines[0].split("|")]
    schema = {c: types[c] if c in types else COLUMN_TYPES[c] for c in head}
    cells = [[c.strip() for c in ln.split("|")] for ln in lines[1:]]
    return pl.DataFrame([[_value(row[i], schema[c]) for row in cells] for i, c in enumerate(head)],
                        schema=schema, orient="col")


# a small dimension for the unit tests: things with a name and a price
THINGS = Entity("things", (id_("id"), text("name"), Column("price", "decimal"),
                           Column("updated_at", "timestamp")))
DIM_THING = DimensionSCD2(
    name="dim_thing", entity=THINGS, table="dw.dim_thing", surrogate_key="key",
    business_key="id", attributes={"name": pl.col("name"), "price": pl.col("price")},
    dtypes={"price": pl.Decimal(12, 2)})
