"""A failed or killed run leaves the warehouse as it was; two runs never interleave."""

import os
import signal

import pytest

from retail_etl import flow
from retail_etl.config import Settings
from retail_etl.errors import LockTimeout
from retail_etl.hooks import InjectedFailure
from tests.helpers import TEMPLATE, checksum, execute, load, rows, start_paused, write_drop

T0 = "2024-01-01T00:00:00Z"


def _drops(tmp_path):
    d1 = write_drop(tmp_path / "d1", products=[["P-1", "W", "T", "H", "A", "10.00", T0]],
                    sales=[["O-1", 1, "2024-01-15T00:00:00Z", "C-1", "", "P-1", 1, "10.00", "", ""]])
    d2 = write_drop(tmp_path / "d2", products=[["P-1", "W", "T", "H", "A", "12.00", "2024-01-10"]],
                    customers=[["C-1", "A", "B", "", "", "", "", "", "", T0]],
                    sales=[["O-1", 1, "2024-01-15T00:00:00Z", "C-1", "", "P-1", 5, "10.00", "", "2024-02-01"],
                           ["O-2", 1, "2024-03-15T00:00:00Z", "", "S-1", "P-2", 1, "1.00", "", ""]])
    return d1, d2


@pytest.mark.parametrize("point", ["merge:dim_store", "merge:fact_sales", "commit"])
def test_failure_injected_during_the_merge_changes_nothing(settings, dsn, tmp_path, monkeypatch,
                                                           point):
    d1, d2 = _drops(tmp_path)
    load(settings, d1)
    before = checksum(dsn)
    monkeypatch.setenv("RETAIL_ETL_FAIL_AT", point)
    with pytest.raises(InjectedFailure):
        load(settings, d2)
    assert checksum(dsn) == before
    assert rows(dsn, "SELECT status FROM etl.runs ORDER BY run_id") == [("ok",), ("failed",)]
    assert rows(dsn, "SELECT count(*) FROM etl.rejects") == [(0,)]
    monkeypatch.delenv("RETAIL_ETL_FAIL_AT")
    load(settings, d2)  # and the same drop loads afterwards
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(2,)]


def test_killed_run_leaves_the_warehouse_as_it_was(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    load(settings, d1)
    before = checksum(dsn)
    p = start_paused(settings, d2, tmp_path, "merge:fact_sales")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert checksum(dsn) == before
    load(settings, d1)  # the next run notices the dead one
    assert rows(dsn, "SELECT status FROM etl.runs ORDER BY run_id") == [("ok",), ("killed",), ("ok",)]
    assert checksum(dsn)["fact_sales"] == before["fact_sales"]


def test_a_second_run_waits_for_the_first_or_stops_with_a_clear_message(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    p = start_paused(settings, d1, tmp_path, "commit")
    try:
        impatient = settings.model_copy(update={"lock_wait_seconds": 0.5})
        with pytest.raises(LockTimeout, match="another run still holds the warehouse lock"):
            load(impatient, d2)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    load(settings, d2)
    assert rows(dsn, "SELECT status FROM etl.runs ORDER BY run_id") == [
        ("killed",), ("failed",), ("ok",)]


# ---- months built by parallel sessions (partitions.Builders) -----------------------------

BUILT = "SELECT count(*) FROM pg_tables WHERE schemaname = 'etl_build'"
PARTS = ("SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
         "WHERE i.inhparent = 'dw.fact_sales'::regclass ORDER BY 1")


def test_a_failed_run_leaves_no_built_months_behind(settings, dsn, tmp_path, monkeypatch):
    d1, d2 = _drops(tmp_path)
    load(settings, d1)
    before, parts = checksum(dsn), rows(dsn, PARTS)
    monkeypatch.setenv("RETAIL_ETL_FAIL_AT", "commit")  # after March was built and attached
    with pytest.raises(InjectedFailure):
        load(settings, d2)
    assert checksum(dsn) == before and rows(dsn, PARTS) == parts == [("fact_sales_202401",)]
    assert rows(dsn, BUILT) == [(0,)]


def test_months_built_by_a_killed_run_are_dropped_by_the_next(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    load(settings, d1)
    before, parts = checksum(dsn), rows(dsn, PARTS)
    p = start_paused(settings, d2, tmp_path, "commit")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert checksum(dsn) == before and rows(dsn, PARTS) == parts
    assert rows(dsn, BUILT) == [(1,)]  # March, committed by its session, never attached
    load(settings, d2)
    assert rows(dsn, BUILT) == [(0,)]
    assert rows(dsn, PARTS) == [("fact_sales_202401",), ("fact_sales_202403",)]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(2,)]


def test_parallel_builds_give_the_same_warehouse_as_the_runs_own_session(cluster, tmp_path,
                                                                        monkeypatch):
    """Months built by 2 sessions against months built in the run's session, every month
    in two files and a file per group of lines (so a month arrives in parts and the queue
    waits); and the built months are indexed and analysed."""
    sales = [[f"O-{m}-{i}", 1, f"2024-{m:02d}-{1 + i % 27:02d}T10:00:00Z", f"C-{i % 3}", "S-1",
              f"P-{i % 4}", 1 + i % 5, "2.50", "", ""] for m in range(1, 7) for i in range(20)]
    d1 = write_drop(tmp_path / "d1", sales_a=sales[:60:2], sales_b=sales[1:60:2])
    later = [[*r[:6], 9, *r[7:]] for r in sales[40:]]
    d2 = write_drop(tmp_path / "d2", sales_a=later[::2], sales_b=later[1::2])
    monkeypatch.setattr(flow, "VALIDATE_ROWS", 1)  # a valid file per source file and month
    sums = []
    for streams in (0, 2):
        dsn = cluster.create_database(f"t_streams_{streams}_{os.getpid()}", template=TEMPLATE)
        s = Settings(dsn=dsn, data_dir=tmp_path / f"data{streams}", copy_streams=streams,
                     fact_chunk_rows=1)
        load(s, d1)
        load(s, d2)
        sums.append(checksum(dsn))
        assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(120,)]
        # every month has the parent's 5 indexes, and column statistics (from ANALYZE)
        assert rows(dsn, """
            SELECT count(*), min(n), max(n),
                   bool_and(EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = 'dw'
                                    AND s.tablename = c.relname))
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            CROSS JOIN LATERAL (SELECT count(*) AS n FROM pg_index x WHERE x.indrelid = c.oid) k
            WHERE i.inhparent = 'dw.fact_sales'::regclass""") == [(6, 5, 5, True)]
    assert sums[0] == sums[1]


def test_a_failed_build_stops_the_run_at_its_next_hand_over(dsn):
    """Issue 20 (mutation survivors in Builders._raise_failed): a month whose build fails
    while the run is still handing over lines stops the run there, with the build's error,
    not later at the attach and not never (the hand-over waits for COPY to drain rows that
    a failed build will never drain)."""
    import threading

    import pyarrow as pa

    from retail_etl.db.connect import connect
    from retail_etl.errors import EtlError
    from retail_etl.load.partitions import Builders

    builds = Builders(lambda: connect(dsn), "dw.no_such_table", "date_key", [], streams=1,
                      max_rows=0)
    lines = pa.table({"date_key": [20240101]})
    raised: list[BaseException] = []

    def hand_over() -> None:
        try:
            builds.add(202401, lines)  # its build fails: there is no table to build like
            builds.add(202402, lines)  # waits for the first month's rows to drain
        except BaseException as e:  # noqa: BLE001 (what the run would see)
            raised.append(e)

    t = threading.Thread(target=hand_over, daemon=True)
    t.start()
    t.join(30)
    builds.close(failed=True)
    assert not t.is_alive(), "the run waited forever for a build that had failed"
    assert len(raised) == 1 and isinstance(raised[0], EtlError), raised
    assert "building partition dw.no_such_table_202401 failed" in str(raised[0])


def test_the_profile_counts_the_lines_each_built_month_received(settings, tmp_path):
    """Issue 20 (a survivor in Builders._build): partition_builds.json says how many lines
    each month built aside received, exactly."""
    import json

    from pipelines import PROJECT
    from retail_etl.flow import load_drop

    rest = ["", "", "P-1", 1, "1.00", "", ""]
    drop = write_drop(tmp_path / "d", products=[["P-1", "W", "T", "H", "A", "1.00", T0]], sales=[
        [f"O-{m}-{i}", 1, f"2024-0{m}-1{i % 9}T00:00:00Z", *rest]
        for m, n in ((1, 3), (2, 5)) for i in range(n)])
    run = load_drop(PROJECT, settings, drop, profile=True)
    builds = json.loads((run.profile.dir / "partition_builds.json").read_text())
    assert sorted((b["month"], b["rows"]) for b in builds) == [(202401, 3), (202402, 5)]


def test_a_month_nobody_finished_is_still_built_and_attached(dsn):
    """Issue 20 (a survivor in Builders.attach_all): attaching ends the parts of a month the
    run never called `finish` for, so its build completes instead of reading on."""
    import pyarrow as pa

    from retail_etl.db.connect import connect
    from retail_etl.load.partitions import Builders

    execute(dsn, "CREATE TABLE dw.t_months (date_key int NOT NULL, n int) "
                 "PARTITION BY RANGE (date_key)")
    builds = Builders(lambda: connect(dsn), "dw.t_months", "date_key", [], streams=1,
                      max_rows=1000)
    builds.add(202401, pa.table({"date_key": pa.array([20240105, 20240131], pa.int32()),
                                 "n": pa.array([1, 2], pa.int32())}))
    conn = connect(dsn)
    try:
        with conn.cursor() as cur:
            assert builds.attach_all(cur) == ["dw.t_months_202401"]
        conn.commit()
    finally:
        builds.close()
        conn.close()
    assert rows(dsn, "SELECT tableoid::regclass::text, sum(n) FROM dw.t_months GROUP BY 1") == [
        ("dw.t_months_202401", 3)]
