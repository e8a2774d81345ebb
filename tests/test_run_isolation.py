"""Issue 10: runs share no state, leave no staging behind, and bad input gets one line."""

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
from typer.testing import CliRunner

from retail_etl.cli import app
from retail_etl.db.connect import redact
from retail_etl.flow import InjectedFailure
from retail_etl.generate.drops import generate_drops
from tests.helpers import load, rows, start_paused, write_drop

ENV = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}


def cli(*args, **env):
    return CliRunner().invoke(app, list(args), env={**ENV, **env})


def _error_line(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    return [ln for ln in result.output.splitlines() if ln.startswith("Error:")][0]


@pytest.fixture
def dsn_b(cluster):
    from tests.conftest import TEMPLATE

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
    monkeypatch.setenv("RETAIL_ETL_FAIL_AT", "merge:facts")
    with pytest.raises(InjectedFailure):
        load(settings, _drop(tmp_path))
    assert _staged(settings) == []


def test_sigterm_rolls_back_marks_the_run_and_removes_staging(settings, dsn, tmp_path):
    p = start_paused(settings, _drop(tmp_path), tmp_path, "merge:facts")
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
    p = start_paused(settings, d, tmp_path, "merge:facts")
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
    line = _error_line(cli("load", "--source-dir", str(tmp_path / "nope"), "--dsn", dsn))
    assert line == f"Error: source directory {tmp_path / 'nope'} does not exist"
    assert rows(dsn, "SELECT count(*) FROM etl.runs") == [(0,)]
    assert "holds no warehouse yet" in _error_line(cli("runs", "--dsn", oltp_dsn))


# ---- defect 2: impossible dates are rejects, not a bigger calendar -------------------------

def test_impossible_dates_are_rejected_and_dim_date_stays_small(settings, dsn, tmp_path):
    sale = ["O-1", 1, "2024-01-15T00:00:00Z", "", "", "P-1", 1, "1.00", "", ""]
    d = write_drop(tmp_path / "d",
                   customers=[["C-1", "A", "B", "", "", "", "", "", "2999-01-01", "2024-01-01"]],
                   sales=[sale, ["O-2", 1, "0001-01-01", *sale[3:]],
                          ["O-3", 1, "9999-12-31T00:00:00Z", *sale[3:]],
                          ["O-4", 1, "2024-01-15", *sale[3:9], "1985-06-01"]])
    run = load(settings, d)
    assert (run.counts["sales"].read, run.counts["sales"].rejected) == (4, 3)
    assert rows(dsn, "SELECT entity, line, rules::text FROM etl.rejects ORDER BY entity, line") == [
        ("customers", 2, "{join_date:in_the_future}"),
        ("sales", 3, "{order_ts:outside_window}"), ("sales", 4, "{order_ts:outside_window}"),
        ("sales", 5, "{updated_at:outside_window}")]
    assert rows(dsn, "SELECT min(date_key), max(date_key) FROM dw.dim_date")[0][0] >= 20240101
    assert rows(dsn, "SELECT count(*) FROM dw.dim_date")[0][0] <= 366


def test_the_window_is_a_setting(settings, dsn, tmp_path):
    d = write_drop(tmp_path / "d", sales=[["O-1", 1, "1985-01-15T00:00:00Z", "", "", "P-1", 1,
                                           "1.00", "", ""]])
    import datetime as dt

    load(settings.model_copy(update={"plausible_from": dt.date(1980, 1, 1)}), d)
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(1,)]


# ---- defects 3, 5, 6: files that cannot be read, and the error surface ---------------------

def test_unreadable_files_fail_with_one_line_naming_the_file(tmp_path, dsn):
    d = tmp_path / "d"
    d.mkdir()
    (d / "sales.csv").write_bytes(b"")
    assert _error_line(cli("load", "-s", str(d), "--dsn", dsn)) == (
        f"Error: {d / 'sales.csv'}: the file is empty (0 bytes, not even a header)")
    (d / "sales.csv").write_text("order_id,ORDER_ID,line_number\n1,2,3\n")
    assert _error_line(cli("load", "-s", str(d), "--dsn", dsn)) == (
        f"Error: {d / 'sales.csv'}: column 'order_id' appears more than once in the header")
    assert rows(dsn, "SELECT count(*) FROM etl.rejects") == [(0,)]


def test_usage_and_lookup_mistakes(tmp_path, settings, dsn):
    assert cli("generate").exit_code == 2  # no --out
    load(settings, write_drop(tmp_path / "d", products=[["P-1", "x" * 500, "", "", "", "-1",
                                                         "2024-01-01"]]))
    assert _error_line(cli("rejects", "--dsn", dsn, "--run", "999")) == (
        "Error: no run 999 in this warehouse")
    cut = cli("rejects", "--dsn", dsn, "--json")
    assert cut.exit_code == 0
    import json

    (short,) = json.loads(cut.stdout)
    (whole,) = json.loads(cli("rejects", "--dsn", dsn, "--json", "--whole").stdout)
    assert len(short["row"]) == 203 and short["row"].endswith("...")
    assert "x" * 500 in whole["row"]


@pytest.mark.parametrize("password", ["p@ss", "a:b@c", "@@", "x%40y"])
def test_a_password_is_redacted_whatever_it_holds(password):
    text = redact(f"cannot connect to postgresql://etl:{password}@db.example:5432/dw: refused")
    assert password not in text.replace("***", "")
    assert text == "cannot connect to postgresql://etl:***@db.example:5432/dw: refused"


# ---- defect 3 (in part): bytes no column can hold are rejects of their line ----------------

def test_nul_and_non_utf8_bytes_reject_their_line_and_the_rest_loads(settings, dsn, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "sales.csv").write_bytes(
        b"order_id,line_number,order_ts,customer_id,store_id,product_id,quantity,unit_price\n"
        b"O-1,1,2024-01-15,,,P-1,1,1.00\n"
        b"O-2,1,2024-01-15,,,P-\x001,1,1.00\n"
        b"O-3,1,2024-01-15,,,Caf\xe9,1,1.00\n"
        b"O-4,1,2024-01-15,,,P-1,1,1.00\n")
    run = load(settings, d)
    c = run.counts["sales"]
    assert (c.read, c.loaded, c.rejected) == (4, 2, 2)
    assert rows(dsn, "SELECT line, rules::text, row->>'product_id' FROM etl.rejects ORDER BY line") == [
        (3, "{product_id:nul_byte}", "P-\u24001"), (4, "{product_id:not_utf8}", "Caf\ufffd")]
    assert rows(dsn, "SELECT order_id FROM dw.fact_sales ORDER BY 1") == [("O-1",), ("O-4",)]
    load(settings, d)  # a reload counts its rejects again but does not store them twice
    assert rows(dsn, "SELECT count(*) FROM etl.rejects") == [(2,)]
    assert rows(dsn, "SELECT rows_rejected FROM etl.run_entities WHERE entity = 'sales' "
                     "ORDER BY run_id") == [(2,), (2,)]
