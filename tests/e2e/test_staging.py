"""Issue 10, defects 1 and 4: a run's staging is its own, whatever the warehouse, private
while it lives, and removed on every exit path (or by the next run, or `retail-etl clean`)."""

from __future__ import annotations

import gzip
import os
import signal
import stat
import subprocess
import sys
import uuid

import polars as pl
import pytest

from retail_etl.generate.drops import generate_drops
from retail_etl.hooks import InjectedFailure
from tests.helpers import cli, error_line, load, rows, start_paused, write_drop


@pytest.fixture
def dsn_b(cluster):
    from tests.helpers import TEMPLATE

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield cluster.create_database(name, template=TEMPLATE)
    cluster.drop_database(name)


def _staged(settings) -> list[str]:
    root = settings.staging_dir
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _renamed(src, dst, old: str, new: str):
    """A copy of a drop with every `old` in its files turned into `new`."""
    dst.mkdir()
    for f in src.iterdir():
        if f.suffix == ".parquet":
            df = pl.read_parquet(f)
            df.with_columns(pl.col(pl.String).str.replace_all(old, new, literal=True)
                            ).write_parquet(dst / f.name)
        else:
            opener = gzip.open if f.suffix == ".gz" else open
            with opener(f, "rt") as r, opener(dst / f.name, "wt") as w:
                w.write(r.read().replace(old, new))
    return dst


# ---- defect 1: two warehouses, one working directory ---------------------------------------

def test_two_loads_into_two_warehouses_from_one_directory_share_nothing(
        tmp_path, dsn, dsn_b):
    a = generate_drops(tmp_path / "gen", 20_000, seed=7, dirt=False).drops[0]
    b = _renamed(a, tmp_path / "b", "O-", "X-")
    work = tmp_path / "work"  # both runs number from 1 and stage under work/data/staging
    work.mkdir()
    env = {**os.environ, "RETAIL_ETL_DATA_DIR": str(work / "data")}
    procs = [subprocess.Popen([sys.executable, "-m", "retail_etl", "load", "--source-dir",
                               str(d), "--dsn", url], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for d, url in ((a, dsn), (b, dsn_b))]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    count = "SELECT count(*) FILTER (WHERE order_id LIKE 'X-%') AS x, count(*) AS n FROM dw.fact_sales"
    (x_in_a, n_a), = rows(dsn, count)
    (x_in_b, n_b), = rows(dsn_b, count)
    assert x_in_a == 0 and x_in_b == n_b and n_a == n_b > 0
    assert rows(dsn, "SELECT run_id FROM etl.runs") == rows(dsn_b, "SELECT run_id FROM etl.runs")
    assert not list((work / "data" / "staging").iterdir())


# ---- defect 4: staging removed on every exit path, private while it lives -------------------

def _drop(tmp_path):
    return write_drop(tmp_path / "d", customers=[["C-1", "Ann", "Lee", "ann@x.org", "", "", "", "",
                                                  "", "2024-01-01"]],
                      sales=[["O-1", 1, "2024-01-15T00:00:00Z", "C-1", "", "P-1", 1, "10.00", "", ""]])


def test_staging_is_private_while_the_run_lives_and_gone_after_success(settings, tmp_path):
    d = _drop(tmp_path)
    p = start_paused(settings, d, tmp_path, "commit")
    try:
        (live,) = settings.staging_dir.iterdir()
        assert live.name.startswith("run_000001-")
        assert stat.S_IMODE(live.stat().st_mode) == 0o700
        assert stat.S_IMODE(settings.staging_dir.stat().st_mode) == 0o700
        # a sweep (another run, `clean`) never touches the staging of a live run
        assert "nothing to clean" in cli("clean", RETAIL_ETL_DATA_DIR=str(settings.data_dir)).output
        assert live.exists()
    finally:
        p.kill()
        p.wait()
    load(settings, d)  # the next run removes what the killed one left, and its own
    assert _staged(settings) == []


def test_a_failed_run_leaves_no_staging(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("RETAIL_ETL_FAIL_AT", "merge:fact_sales")
    with pytest.raises(InjectedFailure):
        load(settings, _drop(tmp_path))
    assert _staged(settings) == []


def test_sigterm_rolls_back_marks_the_run_and_removes_staging(settings, dsn, tmp_path):
    p = start_paused(settings, _drop(tmp_path), tmp_path, "merge:fact_sales")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err.decode()
    assert "Error: terminated; the run was rolled back" in err.decode()
    assert rows(dsn, "SELECT status, error FROM etl.runs") == [("failed", "terminated (SIGTERM)")]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(0,)]
    assert _staged(settings) == []


def test_clean_reports_and_removes_what_killed_and_kept_runs_left(settings, tmp_path):
    d = _drop(tmp_path)
    load(settings.model_copy(update={"keep_staging": True}), d)
    p = start_paused(settings, d, tmp_path, "merge:fact_sales")
    p.kill()
    p.wait()
    assert len(_staged(settings)) == 2  # the kept run's and the killed run's
    env = {"RETAIL_ETL_DATA_DIR": str(settings.data_dir)}
    dry = cli("clean", "--dry-run", **env)
    assert dry.exit_code == 0 and "2 staging directories" in dry.output
    assert "kept on purpose" in dry.output and len(_staged(settings)) == 2
    done = cli("clean", **env)
    assert done.exit_code == 0 and "removed" in done.output
    assert _staged(settings) == []


def test_a_mistyped_source_directory_is_no_run(tmp_path, dsn, oltp_dsn):
    line = error_line(cli("load", "--source-dir", str(tmp_path / "nope"), "--dsn", dsn))
    assert line == f"Error: source directory {tmp_path / 'nope'} does not exist"
    assert rows(dsn, "SELECT count(*) FROM etl.runs") == [(0,)]
    assert "holds no warehouse yet" in error_line(cli("runs", "--dsn", oltp_dsn))
