"""Month partitions of a fact table, created as data needs them, and the date dimension."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import adbc_driver_manager
import polars as pl
import pyarrow as pa

from retail_etl.db.connect import db_error

BUILD_SCHEMA = "etl_build"  # months built by other sessions wait here to be attached


def months(date_keys: pl.Series) -> list[int]:
    """Distinct YYYYMM of a column of YYYYMMDD date keys."""
    return sorted((date_keys // 100).unique().to_list())


def bounds(yyyymm: int) -> tuple[int, int]:
    """The date_key range [from, to) of a month."""
    y, mo = divmod(yyyymm, 100)
    nxt = (y + 1) * 100 + 1 if mo == 12 else yyyymm + 1
    return yyyymm * 100 + 1, nxt * 100 + 1


def existing_partitions(cur, table: str) -> dict[str, float]:
    """The partitions of a table with their estimated row counts (pg_class.reltuples)."""
    cur.execute(f"SELECT c.oid::regclass::text, c.reltuples FROM pg_inherits i "
                f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{table}'::regclass")
    return dict(cur.fetchall())


def create_detached(cur, table: str, yyyymm: int) -> None:
    """A new month partition built aside: a plain table shaped like the parent (no indexes
    yet, so the bulk insert does not maintain them; created in this transaction, so with
    wal_level=minimal its data skips the WAL)."""
    cur.execute(f"CREATE TABLE {table}_{yyyymm} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")


def index_definitions(cur, table: str) -> list[tuple[str, str]]:
    """[(index name, CREATE INDEX statement)] of the parent's indexes."""
    cur.execute(f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i WHERE i.indrelid = '{table}'::regclass
    """)
    return cur.fetchall()


def index_and_check(cur, table: str, name: str, yyyymm: int,
                    indexes: list[tuple[str, str]]) -> None:
    """The parent's indexes and the month's range as a CHECK on a filled table `name`, so
    that attaching it adopts the indexes and skips the validation scan."""
    lo, hi = bounds(yyyymm)
    for index_name, definition in indexes:
        short = index_name.split(".")[-1]
        cur.execute(definition.replace(f" ON ONLY {table} ", f" ON {name} ")
                    .replace(f"INDEX {short} ", f"INDEX {short}_{yyyymm} ", 1))
    cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name.split('.')[-1]}_range "
                f"CHECK (date_key >= {lo} AND date_key < {hi})")


def attach(cur, table: str, name: str, yyyymm: int) -> None:
    """Attach an indexed, range-checked month (`index_and_check`), then drop the CHECK: the
    partition bound says the same."""
    lo, hi = bounds(yyyymm)
    cur.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name.split('.')[-1]}_range")


class Builders:
    """New month partitions built in parallel by `streams` sessions of their own while the
    run goes on computing the next months: each month is created, COPYed, indexed and
    analysed in one transaction of its session (with wal_level=minimal its data skips the
    WAL) in schema etl_build, then the run's transaction moves it into place and attaches
    it: catalogue work only. Until the run commits, nobody sees those months in the
    warehouse; a failed or killed run leaves them in etl_build, dropped by the next run
    that builds (under the warehouse lock, so no other run is using them)."""

    def __init__(self, connect, table: str, indexes: list[tuple[str, str]], streams: int,
                 max_rows: int):
        self.table, self.indexes, self.max_rows = table, indexes, max_rows
        self._connect, self._local, self._conns = connect, threading.local(), []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="build")
        self._pending: list[tuple[int, int, Future]] = []  # (month, rows, build)
        self.timings: list[dict] = []  # per month, for the profile
        conn = connect()
        with conn.cursor() as cur:  # leftovers of a failed run go first
            cur.execute(f"DROP SCHEMA IF EXISTS {BUILD_SCHEMA} CASCADE")
            cur.execute(f"CREATE SCHEMA {BUILD_SCHEMA}")
        conn.commit()
        self._conns.append(conn)
        self._spare = [conn]  # for the first build thread

    def submit(self, yyyymm: int, data: pa.Table) -> None:
        """Queue a month; waits while more than max_rows lines are queued (memory bound)."""
        while self._pending and sum(n for _, n, f in self._pending if not f.done()) > self.max_rows:
            next(f for _, _, f in self._pending if not f.done()).result()
        self._pending.append((yyyymm, data.num_rows, self._pool.submit(self._build, yyyymm, data)))

    def _session(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._lock:
                conn = self._spare.pop() if self._spare else None
            if conn is None:
                conn = self._connect()
                with self._lock:
                    self._conns.append(conn)
            self._local.conn = conn
        return conn

    def _build(self, yyyymm: int, data: pa.Table) -> None:
        conn = self._session()
        short = f"{self.table.split('.')[1]}_{yyyymm}"
        name = f"{BUILD_SCHEMA}.{short}"
        t0 = time.perf_counter()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE {name} (LIKE {self.table} INCLUDING DEFAULTS "
                            "INCLUDING CONSTRAINTS)")
                cur.adbc_ingest(short, data, mode="append", db_schema_name=BUILD_SCHEMA)
                t1 = time.perf_counter()
                index_and_check(cur, self.table, name, yyyymm, self.indexes)
                t2 = time.perf_counter()
                cur.execute(f"ANALYZE {name}")  # stats ready before the run commits
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        t3 = time.perf_counter()
        self.timings.append({"month": yyyymm, "rows": data.num_rows, "copy_s": t1 - t0,
                             "index_s": t2 - t1, "analyze_s": t3 - t2,
                             "thread": threading.current_thread().name})

    def months(self) -> list[int]:
        return [m for m, _, _ in self._pending]

    def attach_all(self, cur) -> list[str]:
        """Wait for every build, then move each month into the parent's schema and attach
        it, in the run's transaction. Returns the partitions attached."""
        schema = self.table.split(".")[0]
        attached = []
        for m, _, build in self._pending:
            try:
                build.result()
            except adbc_driver_manager.Error as e:
                raise db_error(e, f"building partition {self.table}_{m} failed") from None
            short = f"{self.table.split('.')[1]}_{m}"
            cur.execute(f"ALTER TABLE {BUILD_SCHEMA}.{short} SET SCHEMA {schema}")
            attach(cur, self.table, f"{schema}.{short}", m)
            attached.append(f"{schema}.{short}")
        return attached

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns:
            try:
                conn.close()
            except adbc_driver_manager.Error:
                pass


def ensure_dates(cur, first_year: int, last_year: int, fiscal_start: int, run_id: int) -> None:
    """Whole calendar years of dw.dim_date. The fiscal year starts in month `fiscal_start`
    and is named after the calendar year it ends in."""
    fy = f"(extract(year FROM d)::int + CASE WHEN {fiscal_start} > 1 AND extract(month FROM d) >= {fiscal_start} THEN 1 ELSE 0 END)"
    fq = f"((extract(month FROM d)::int - {fiscal_start} + 12) % 12 / 3 + 1)"
    cur.execute(f"""
        INSERT INTO dw.dim_date AS t (date_key, date, day_of_week, day_name, month, month_name,
            quarter, year, iso_week, is_weekend, fiscal_year, fiscal_quarter, run_id)
        SELECT to_char(d, 'YYYYMMDD')::int, d::date, extract(isodow FROM d), trim(to_char(d, 'Day')),
               extract(month FROM d), trim(to_char(d, 'Month')), extract(quarter FROM d),
               extract(year FROM d), extract(week FROM d), extract(isodow FROM d) >= 6,
               {fy}, {fq}, {run_id}
        FROM generate_series(make_date({first_year}, 1, 1), make_date({last_year}, 12, 31),
                             interval '1 day') AS d
        ON CONFLICT (date_key) DO UPDATE
            SET fiscal_year = excluded.fiscal_year, fiscal_quarter = excluded.fiscal_quarter,
                run_id = excluded.run_id
            WHERE (t.fiscal_year, t.fiscal_quarter)
                  IS DISTINCT FROM (excluded.fiscal_year, excluded.fiscal_quarter)
    """)
