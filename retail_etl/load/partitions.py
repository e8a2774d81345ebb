"""Month partitions of a fact table (by a YYYYMMDD date key), created as data needs them."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import adbc_driver_manager
import polars as pl
import pyarrow as pa

from retail_etl.db.connect import db_error
from retail_etl.load.copy import ingest

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


def create_aside(cur, table: str, name: str) -> None:
    """A new month partition built aside as `name`: a plain table shaped like the parent
    (no indexes yet, so the bulk insert does not maintain them; filled in the transaction
    that created it, so with wal_level=minimal its data skips the WAL)."""
    cur.execute(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")


def index_definitions(cur, table: str) -> list[tuple[str, str]]:
    """[(index name, CREATE INDEX statement)] of the parent's indexes."""
    cur.execute(f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i WHERE i.indrelid = '{table}'::regclass
    """)
    return cur.fetchall()


def index_and_check(cur, table: str, name: str, yyyymm: int,
                    indexes: list[tuple[str, str]], column: str) -> None:
    """The parent's indexes and the month's range as a CHECK on a filled table `name`, so
    that attaching it adopts the indexes and skips the validation scan."""
    lo, hi = bounds(yyyymm)
    for index_name, definition in indexes:
        short = index_name.split(".")[-1]
        cur.execute(definition.replace(f" ON ONLY {table} ", f" ON {name} ")
                    .replace(f"INDEX {short} ", f"INDEX {short}_{yyyymm} ", 1))
    cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name.split('.')[-1]}_range "
                f"CHECK ({column} >= {lo} AND {column} < {hi})")


def attach(cur, table: str, name: str, yyyymm: int) -> None:
    """Attach an indexed, range-checked month (`index_and_check`), then drop the CHECK: the
    partition bound says the same."""
    lo, hi = bounds(yyyymm)
    cur.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name.split('.')[-1]}_range")


class LocalBuilds:
    """New months built in the run's own session (copy_streams = 0): a month is created as
    a plain table on its first part, filled part by part, and indexed and attached when
    `finish`ed. Its statistics come from the ANALYZE after the commit."""

    analyses = False

    def __init__(self, cur, table: str, column: str):
        self.cur, self.table, self.open, self.built = cur, table, set(), []
        self.column = column  # the partition column (a date key)
        self.indexes = index_definitions(cur, table)
        self.timings: list[dict] = []  # (builds in parallel sessions record theirs)

    def add(self, yyyymm: int, data: pa.Table) -> None:
        if yyyymm not in self.open:
            create_aside(self.cur, self.table, f"{self.table}_{yyyymm}")
            self.open.add(yyyymm)
        schema, table = self.table.split(".")
        ingest(self.cur, data, f"{table}_{yyyymm}", schema=schema)

    def finish(self, yyyymm: int) -> None:
        if yyyymm in self.open:
            name = f"{self.table}_{yyyymm}"
            index_and_check(self.cur, self.table, name, yyyymm, self.indexes, self.column)
            attach(self.cur, self.table, name, yyyymm)
            self.open.discard(yyyymm)
            self.built.append(yyyymm)

    def months(self) -> list[int]:
        return [*self.built, *sorted(self.open)]

    def attach_all(self, cur) -> None:
        for m in sorted(self.open):
            self.finish(m)

    def close(self, failed: bool = False) -> None:
        pass


_END, _ABORT = object(), object()


class Builders:
    """New month partitions built in parallel by `streams` sessions of their own while the
    run goes on computing the next months. A month arrives in parts (`add`, in load order;
    a big month spans several groups of lines, so memory is bounded by the group, not the
    month) and is created, COPYed, indexed and analysed in one transaction of one session
    (with wal_level=minimal its data skips the WAL) in schema etl_build; once `finish`ed and
    built, the run's transaction moves it into place and attaches it: catalogue work only.
    Until the run commits nobody sees those months in the warehouse; a failed or killed run
    leaves them in etl_build, dropped by the next run's first builds (under the warehouse
    lock, so no other run is using them; `leftovers`)."""

    analyses = True

    def __init__(self, connect, table: str, column: str, indexes: list[tuple[str, str]],
                 streams: int, max_rows: int, leftovers: bool = True):
        self.table, self.indexes, self.max_rows = table, indexes, max_rows
        self.column = column  # the partition column (a date key)
        self._connect, self._local, self._conns = connect, threading.local(), []
        self._lock = threading.Condition()
        self._queued = 0  # rows handed over and not yet COPYed: the memory bound
        self._pool = ThreadPoolExecutor(streams, thread_name_prefix="build")
        self._months: dict[int, tuple[queue.Queue, Future]] = {}
        self.timings: list[dict] = []  # per month, for the profile
        conn = connect()
        try:
            with conn.cursor() as cur:
                if leftovers:  # a failed run's go first (once a run: see fact_by_partition)
                    cur.execute(f"DROP SCHEMA IF EXISTS {BUILD_SCHEMA} CASCADE")
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BUILD_SCHEMA}")
            conn.commit()
        finally:
            conn.close()

    def add(self, yyyymm: int, data: pa.Table) -> None:
        """Hand over a part of a month; waits while more than max_rows rows wait for COPY."""
        with self._lock:
            while self._queued > self.max_rows:
                self._raise_failed()
                self._lock.wait(0.05)
            self._queued += data.num_rows
        if yyyymm not in self._months:
            q = queue.Queue()
            self._months[yyyymm] = (q, self._pool.submit(self._build, yyyymm, q))
        self._months[yyyymm][0].put(data)

    def finish(self, yyyymm: int) -> None:
        """No more parts of this month: it can be indexed."""
        if yyyymm in self._months:
            self._months[yyyymm][0].put(_END)

    def _raise_failed(self) -> None:
        for m, (_, build) in self._months.items():
            if build.done() and build.exception() is not None:
                self._result(m, build)

    def _result(self, yyyymm: int, build: Future) -> None:
        try:
            build.result()
        except adbc_driver_manager.Error as e:
            raise db_error(e, f"building partition {self.table}_{yyyymm} failed") from None

    def _session(self):
        """The build thread's own connection, opened on its first month."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._conns.append(conn)
        return conn

    def _build(self, yyyymm: int, parts: queue.Queue) -> None:
        conn = self._session()
        short = f"{self.table.split('.')[1]}_{yyyymm}"
        name = f"{BUILD_SCHEMA}.{short}"
        t0, rows = time.perf_counter(), 0
        try:
            with conn.cursor() as cur:
                create_aside(cur, self.table, name)
                while (part := parts.get()) is not _END:
                    if part is _ABORT:
                        raise InterruptedError(f"build of {name} abandoned")
                    try:
                        ingest(cur, part, short, schema=BUILD_SCHEMA)
                    finally:
                        with self._lock:
                            self._queued -= part.num_rows
                            self._lock.notify_all()
                    rows += part.num_rows
                t1 = time.perf_counter()
                index_and_check(cur, self.table, name, yyyymm, self.indexes, self.column)
                t2 = time.perf_counter()
                cur.execute(f"ANALYZE {name}")  # stats ready before the run commits
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        t3 = time.perf_counter()
        self.timings.append({"month": yyyymm, "rows": rows, "copy_s": t1 - t0,
                             "index_s": t2 - t1, "analyze_s": t3 - t2,
                             "thread": threading.current_thread().name})

    def months(self) -> list[int]:
        return list(self._months)

    def attach_all(self, cur) -> list[str]:
        """Wait for every build, then move each month into the parent's schema and attach
        it, in the run's transaction. Returns the partitions attached."""
        schema = self.table.split(".")[0]
        attached = []
        for m, (q, build) in self._months.items():
            q.put(_END)  # (a month nobody finished: no more parts can come now)
            self._result(m, build)
            short = f"{self.table.split('.')[1]}_{m}"
            cur.execute(f"ALTER TABLE {BUILD_SCHEMA}.{short} SET SCHEMA {schema}")
            attach(cur, self.table, f"{schema}.{short}", m)
            attached.append(f"{schema}.{short}")
        return attached

    def close(self, failed: bool = False) -> None:
        """After attach_all, or on failure: builds still waiting for parts are abandoned."""
        for q, _ in self._months.values():
            q.put(_ABORT if failed else _END)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for conn in self._conns:
            try:
                conn.close()
            except adbc_driver_manager.Error:
                pass

