"""Issue 10, defects 5 and 6: every user mistake is one `Error:` line naming the file,
setting or server, with the right exit code, and never an "internal error"."""

from __future__ import annotations

import json

import pytest

from retail_etl.db.connect import redact
from tests.helpers import cli, error_line, load, rows, start_paused, write_drop


def test_usage_and_lookup_mistakes(tmp_path, settings, dsn):
    assert cli("generate").exit_code == 2  # no --out
    load(settings, write_drop(tmp_path / "d", products=[["P-1", "x" * 500, "", "", "", "-1",
                                                         "2024-01-01"]]))
    assert error_line(cli("rejects", "--dsn", dsn, "--run", "999")) == (
        "Error: no run 999 in this warehouse")
    cut = cli("rejects", "--dsn", dsn, "--json")
    assert cut.exit_code == 0
    (short,) = json.loads(cut.stdout)
    (whole,) = json.loads(cli("rejects", "--dsn", dsn, "--json", "--whole").stdout)
    assert len(short["row"]) == 203 and short["row"].endswith("...")
    assert "x" * 500 in whole["row"]


@pytest.mark.parametrize("password", ["p@ss", "a:b@c", "@@", "x%40y"])
def test_a_password_is_redacted_whatever_it_holds(password):
    text = redact(f"cannot connect to postgresql://etl:{password}@db.example:5432/dw: refused")
    assert password not in text.replace("***", "")
    assert text == "cannot connect to postgresql://etl:***@db.example:5432/dw: refused"


def test_the_summary_and_runs_give_one_duration(tmp_path, dsn):
    d = write_drop(tmp_path / "d", sales=[["O-1", 1, "2024-01-15T00:00:00Z", "", "", "P-1", 1,
                                           "1.00", "", ""]])
    said = json.loads(cli("load", "-s", str(d), "--dsn", dsn, "--json").stdout)
    listed = {r["seconds"] for r in json.loads(cli("runs", "--dsn", dsn, "--json").stdout)}
    (ledger,) = rows(dsn, "SELECT extract(epoch FROM ended_at - started_at)::float8 FROM etl.runs")
    assert said["seconds"] == round(ledger[0], 3)  # the ledger's duration, to the millisecond
    assert listed == {float(f"{ledger[0]:.1f}")} or abs(listed.pop() - ledger[0]) <= 0.05


def test_a_warehouse_lost_mid_run_is_one_line_and_nothing_is_committed(settings, dsn, tmp_path):
    d = write_drop(tmp_path / "d", sales=[["O-1", 1, "2024-01-15T00:00:00Z", "", "", "P-1", 1,
                                           "1.00", "", ""]])
    p = start_paused(settings, d, tmp_path, "merge:fact_sessions")  # the last pipeline
    # every session of the run (the transaction's and the ledger's) is ended by the server
    rows(dsn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
              "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    (tmp_path / "paused-merge-fact_sessions").unlink()  # let the run go on, into a dead connection
    _, err = p.communicate(timeout=60)
    said = err.decode().strip().splitlines()
    lines = [ln for ln in said if not ln.startswith("{")]  # the job log aside (JSON: a pipe)
    (failed,) = [json.loads(ln) for ln in said if '"run_failed"' in ln]
    assert failed["stage"] == "orphans" and failed["run_id"] == 1
    assert p.returncode == 75, err.decode()  # EX_TEMPFAIL: a scheduler may retry
    # the run and the stage that met the dead connection (the first after the pause)
    assert lines[0].startswith("Error: run 1, stage orphans: lost the connection to the "
                               "warehouse "), lines
    assert "nothing was committed" in lines[0] and "internal error" not in err.decode()
    assert "Traceback" not in err.decode() and len(lines) <= 2  # the error and its hint
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(0,)]
    assert not any(settings.staging_dir.iterdir())
    load(settings, d)  # the next run marks the lost one and loads
    assert rows(dsn, "SELECT run_id, status FROM etl.runs ORDER BY 1") == [(1, "killed"), (2, "ok")]
