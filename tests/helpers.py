"""Test helpers: write drops from literal rows, read warehouse tables as frames."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from pipelines import PROJECT
from retail_etl.cli import app
from retail_etl.config import Settings
from retail_etl.db.connect import connect
from retail_etl.flow import load_drop

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


def cli(*args, **env):
    """`retail-etl ARGS` in-process, with plain output; `env` adds environment variables."""
    return CliRunner().invoke(app, list(args), env={**CLI_ENV, **env})


def error_line(result, code: int = 1) -> str:
    """The one `Error:` line of a failed command, which must exit `code` without a traceback
    or an "internal error"."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    return [ln for ln in result.output.splitlines() if ln.startswith("Error:")][0]


def scaled(n: int) -> int:
    """Hypothesis examples for a property: `n` in the suite (kept under 10 minutes on two
    cores), RETAIL_ETL_EXAMPLES=<factor> for a deeper search (e.g. 10 overnight)."""
    return max(1, round(n * float(os.environ.get("RETAIL_ETL_EXAMPLES", "1"))))
