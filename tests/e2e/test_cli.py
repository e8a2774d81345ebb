"""The command line: exit codes, one-line errors without tracebacks or secrets, help."""

import json

import pytest

from retail_etl.cli import app
from tests.helpers import cli, write_drop
from tests.helpers import error_line as _one_error_line


def _commands():
    names = []
    for c in app.registered_commands:
        names.append([c.name or c.callback.__name__])
    for g in app.registered_groups:
        for c in g.typer_instance.registered_commands:
            names.append([g.name, c.name or c.callback.__name__])
    return names


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_is_documented_with_an_example(command):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


def test_version_and_no_args():
    assert cli("--version").output.startswith("retail-etl ")
    result = cli()
    assert "Usage" in result.output and "load" in result.output


def test_missing_source_directory(tmp_path, dsn):
    line = _one_error_line(cli("load", "--source-dir", str(tmp_path / "nope"), "--dsn", dsn))
    assert line == f"Error: source directory {tmp_path / 'nope'} does not exist"


def test_empty_source_directory(tmp_path, dsn):
    line = _one_error_line(cli("load", "--source-dir", str(tmp_path), "--dsn", dsn))
    assert line == f"Error: no input files in {tmp_path}"


def test_bad_dsn_is_named_without_its_password(tmp_path):
    line = _one_error_line(cli("load", "--source-dir", str(tmp_path), "--dsn", "mysql://u:pw@h/db"))
    assert line == "Error: the DSN 'mysql://u:***@h/db' is not a postgresql:// URL"


def test_server_down_is_one_line_and_hides_the_password(tmp_path):
    d = write_drop(tmp_path / "d", products=[["P", "", "", "", "", "", "2024-01-01"]])
    result = cli("load", "--source-dir", str(d), "--dsn", "postgresql://u:s3cret@127.0.0.1:1/db")
    line = _one_error_line(result, 75)  # EX_TEMPFAIL: the same command may work later
    assert line.startswith("Error: cannot connect to postgresql://u:***@127.0.0.1:1/db")
    assert "s3cret" not in result.output
    assert "db up" in result.output  # the hint


def test_missing_column_names_file_and_column(tmp_path, dsn):
    d = write_drop(tmp_path / "d", sales="order_id,line_number,order_ts,product_id,quantity\nO,1,2024-01-01,P,1\n")
    line = _one_error_line(cli("load", "--source-dir", str(d), "--dsn", dsn))
    assert line == f"Error: {d / 'sales.csv'}: missing required column 'unit_price'"


def test_unreadable_files(tmp_path, dsn):
    d = tmp_path / "d"
    d.mkdir()
    (d / "products.parquet").write_bytes(b"this is not parquet")
    line = _one_error_line(cli("load", "--source-dir", str(d), "--dsn", dsn))
    assert line.startswith(f"Error: cannot read {d / 'products.parquet'}: ")
    (d / "products.parquet").unlink()
    (d / "sales.csv.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    line = _one_error_line(cli("load", "--source-dir", str(d), "--dsn", dsn))
    assert line.startswith(f"Error: cannot read {d / 'sales.csv.gz'}: ")


def test_bad_setting_names_it(tmp_path):
    line = _one_error_line(cli("load", "--source-dir", str(tmp_path),
                               RETAIL_ETL_FISCAL_YEAR_START_MONTH="13"))
    assert line.startswith("Error: setting 'fiscal_year_start_month'")


def test_usage_error_exits_2():
    result = cli("load")  # no --source-dir and no configured source
    assert result.exit_code == 2
    assert "Error: no sources to load" in result.output
    assert cli("load", "--bogus").exit_code == 2


def test_load_runs_and_rejects_commands(tmp_path, dsn):
    d = write_drop(tmp_path / "d", products=[["P-1", "W", "", "", "", "1.00", "2024-01-01"],
                                             ["P-2", "W", "", "", "", "-1", "2024-01-01"]])
    result = cli("load", "--source-dir", str(d), "--dsn", dsn, "--json")
    assert result.exit_code == 0, result.output
    assert "run 1 ok" in result.output
    runs = json.loads(cli("runs", "--dsn", dsn, "--json").stdout)
    assert {r["entity"]: r["rejected"] for r in runs} == {
        "products": 1, "customers": 0, "stores": 0, "sales": 0, "payments": 0, "shipments": 0,
        "web_events": 0}
    rejects = json.loads(cli("rejects", "--dsn", dsn, "--json").stdout)
    assert [(r["file"], r["line"], r["rules"]) for r in rejects] == [
        ("products.csv", 3, "unit_price:below_0")]
    stages = cli("runs", "--dsn", dsn, "--show", "1")
    assert stages.exit_code == 0 and "validate" in stages.stdout
    assert not list(tmp_path.rglob("*.png"))  # a picture only when asked for (--chart)
    pytest.importorskip("matplotlib")
    drawn = cli("runs", "--dsn", dsn, "--show", "1", "--chart")
    [png] = list(tmp_path.rglob("waterfall.png"))
    assert drawn.exit_code == 0 and png.read_bytes()[:4] == b"\x89PNG"
    assert _one_error_line(cli("runs", "--dsn", dsn, "--show", "99")).startswith("Error: no run 99")


def test_a_new_warehouse_has_no_runs_and_no_rejects(dsn):
    runs, rejects = cli("runs", "--dsn", dsn), cli("rejects", "--dsn", dsn)
    assert (runs.exit_code, rejects.exit_code) == (0, 0)
    assert runs.output.startswith("no runs yet") and rejects.output.startswith("no rejects")
    assert json.loads(cli("runs", "--dsn", dsn, "--json").stdout) == []


def test_help_reads_well_at_80_columns(monkeypatch):
    """Issue 21: the command list has one-line summaries (no sentence broken by a hard wrap)
    and every command's help renders, its description reflowed by the terminal."""
    import click
    import typer.main

    from retail_etl.cli import app

    monkeypatch.setenv("COLUMNS", "80")
    group = typer.main.get_command(app)
    commands = [([name], cmd) for name, cmd in group.commands.items()
                if not isinstance(cmd, click.Group)]
    commands += [(["db", name], cmd) for name, cmd in group.commands["db"].commands.items()]
    listing = cli("--help").output
    for path, cmd in commands:
        summary = (cmd.help or "").split("\n\n")[0]
        assert "\n" not in summary and summary.endswith(".") and len(summary) <= 66, path
        if len(path) == 1:
            assert any(f"{path[0]} " in ln and summary in ln for ln in listing.splitlines()), path
        page = cli(*path, "--help")
        assert page.exit_code == 0 and summary in page.output, path
        for para in (cmd.help or "").split("\n\n")[1:]:
            if not para.startswith("Example"):
                assert "\n" not in para, (path, para)  # a paragraph: the terminal wraps it
