"""A failed or killed run leaves the warehouse as it was; two runs never interleave."""

import os
import signal
import subprocess
import sys
import time

import pytest

from retail_etl.errors import LockTimeout
from retail_etl.flow import InjectedFailure
from tests.helpers import checksum, load, rows, write_drop

T0 = "2024-01-01T00:00:00Z"


def _drops(tmp_path):
    d1 = write_drop(tmp_path / "d1", products=[["P-1", "W", "T", "H", "A", "10.00", T0]],
                    sales=[["O-1", 1, "2024-01-15T00:00:00Z", "C-1", "", "P-1", 1, "10.00", "", ""]])
    d2 = write_drop(tmp_path / "d2", products=[["P-1", "W", "T", "H", "A", "12.00", "2024-01-10"]],
                    customers=[["C-1", "A", "B", "", "", "", "", "", "", T0]],
                    sales=[["O-1", 1, "2024-01-15T00:00:00Z", "C-1", "", "P-1", 5, "10.00", "", "2024-02-01"],
                           ["O-2", 1, "2024-03-15T00:00:00Z", "", "S-1", "P-2", 1, "1.00", "", ""]])
    return d1, d2


@pytest.mark.parametrize("point", ["merge:dimensions", "merge:facts", "commit"])
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


def _start_paused(settings, drop, tmp_path, point):
    pause = tmp_path / f"paused-{point.replace(':', '-')}"
    env = {**os.environ, "RETAIL_ETL_DSN": settings.dsn, "RETAIL_ETL_DATA_DIR": str(settings.data_dir),
           "RETAIL_ETL_PAUSE_AT": point, "RETAIL_ETL_PAUSE_FILE": str(pause)}
    p = subprocess.Popen([sys.executable, "-m", "retail_etl", "load", "--source-dir", str(drop)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not pause.exists():
        assert p.poll() is None, p.stderr.read().decode()
        assert time.time() < deadline, "the run never reached its pause point"
        time.sleep(0.05)
    return p


def test_killed_run_leaves_the_warehouse_as_it_was(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    load(settings, d1)
    before = checksum(dsn)
    p = _start_paused(settings, d2, tmp_path, "merge:facts")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert checksum(dsn) == before
    load(settings, d1)  # the next run notices the dead one
    assert rows(dsn, "SELECT status FROM etl.runs ORDER BY run_id") == [("ok",), ("killed",), ("ok",)]
    assert checksum(dsn)["fact_sales"] == before["fact_sales"]


def test_a_second_run_waits_for_the_first_or_stops_with_a_clear_message(settings, dsn, tmp_path):
    d1, d2 = _drops(tmp_path)
    p = _start_paused(settings, d1, tmp_path, "commit")
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
