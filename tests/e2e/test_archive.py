"""Issue 13: old months leave PostgreSQL for verified Parquet and come back; crashes at any
step resume; archived months stay queryable; a load into one fails naming it. And
`maintain`: vacuum, reindex, the coming months, disk space, recorded in the ledger."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pyarrow.parquet as pq

import pipelines
from retail_etl.config import Settings
from retail_etl.db.connect import connect
from retail_etl.ops import maintain as maint
from tests.helpers import cli, error_line, execute, rows, write_drop


def _recent() -> str:
    """The month before this one, YYYY-MM (never older than the cutoffs used here)."""
    now = datetime.now(UTC)
    y, m = (now.year - 1, 12) if now.month == 1 else (now.year, now.month - 1)
    return f"{y:04d}-{m:02d}"


def _sales(month: str, n: int, tag: str, price: str = "2.50") -> list[list]:
    return [[f"{tag}-{i}", 1, f"{month}-15T10:00:00Z", "", "", "P-1", i + 1, price, "", ""]
            for i in range(n)]


def _loaded(tmp_path, dsn):
    d = write_drop(tmp_path / "drop", sales=_sales("2023-01", 5, "jan") + _sales("2023-02", 4, "feb")
                   + _sales(_recent(), 3, "now", "1.25"))
    r = cli("load", "-s", str(d), "--dsn", dsn)
    assert r.exit_code == 0, r.output


TOTALS = "SELECT count(*) AS lines, sum(total_amount) AS revenue FROM dw.fact_sales"


def _q(dsn, sql, *flags):
    r = cli("query", *flags, sql, "--dsn", dsn, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_archive_exports_verifies_detaches_and_the_totals_stay_the_same(tmp_path, dsn, settings):
    _loaded(tmp_path, dsn)
    before = _q(dsn, TOTALS, "--include-archive")
    assert before == _q(dsn, TOTALS) and before[0]["lines"] == 12
    kpi = "SELECT sum(revenue) AS r FROM mart.sales_kpis WHERE grain = 'month' AND breakdown = 'total'"
    mart_before = _q(dsn, kpi)

    plan = json.loads(cli("archive", "--older-than-months", "24", "--dry-run", "--dsn", dsn,
                          "--json").stdout)
    assert [(p["month"], p["rows"]) for p in plan] == [("2023-01", 5), ("2023-02", 4)]
    assert rows(dsn, "SELECT count(*) FROM etl.archived_months") == [(0,)]  # a dry run

    r = cli("archive", "--older-than-months", "24", "--dsn", dsn)
    assert r.exit_code == 0, r.output
    assert "archived dw.fact_sales 2023-01: 5 rows" in r.output
    assert rows(dsn, "SELECT to_regclass('dw.fact_sales_202301') a, to_regclass('dw.fact_sales_202302') b"
                ) == [(None, None)]
    assert rows(dsn, "SELECT month, state FROM etl.archived_months ORDER BY 1") == [
        (202301, "archived"), (202302, "archived")]
    part = settings.data_dir / "archive" / "fact_sales" / "month=2023-01" / "part-0.parquet"
    t = pq.read_table(part)
    assert t.num_rows == 5 and str(t.schema.field("total_amount").type).startswith("decimal128")
    assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    doc = json.loads((part.parent / "manifest.json").read_text())
    assert doc["rows"] == 5 and doc["sums"]["total_amount"] == "37.50"
    assert doc["key_range"] == ["jan-0|1", "jan-4|1"] and doc["schema"]["order_ts"].startswith("timestamp")

    assert _q(dsn, TOTALS)[0]["lines"] == 3  # PostgreSQL alone
    assert _q(dsn, TOTALS, "--include-archive") == before  # with the archive: the same
    assert _q(dsn, kpi) == mart_before  # the mart's figures keep the archived months
    again = cli("archive", "--older-than-months", "24", "--dsn", dsn)
    assert "no month is older than 24 months" in again.output

    # a load into an archived month fails, naming it; the warehouse is as it was
    late = write_drop(tmp_path / "late", sales=_sales("2023-01", 1, "late"))
    bad = cli("load", "-s", str(late), "--dsn", dsn)
    assert bad.exit_code == 1
    assert error_line(bad, 1).endswith("lines of dw.fact_sales fall into archived month(s) "
                                       "2023-01")
    assert "unarchive --month 2023-01" in bad.output
    assert _q(dsn, TOTALS, "--include-archive") == before

    # unarchive: back, equal to its manifest, attached; the late line then loads
    r = cli("unarchive", "--month", "2023-01", "--dsn", dsn)
    assert r.exit_code == 0, r.output
    assert "brought dw.fact_sales 2023-01 back: 5 rows" in r.output
    assert rows(dsn, "SELECT count(*) FROM pg_inherits WHERE inhrelid = "
                     "'dw.fact_sales_202301'::regclass") == [(1,)]
    assert not part.parent.exists()
    assert _q(dsn, TOTALS)[0]["lines"] == 8 and _q(dsn, TOTALS, "--include-archive") == before
    assert cli("load", "-s", str(late), "--dsn", dsn).exit_code == 0

    # an archive that does not match its manifest is not brought back
    m2 = settings.data_dir / "archive" / "fact_sales" / "month=2023-02" / "manifest.json"
    doc = json.loads(m2.read_text())
    doc["sums"]["total_amount"] = "99.99"
    m2.write_text(json.dumps(doc))
    bad = cli("unarchive", "--month", "2023-02", "--dsn", dsn)
    assert bad.exit_code == 1 and "differs from its manifest" in error_line(bad, 1)
    assert rows(dsn, "SELECT to_regclass('dw.fact_sales_202302')") == [(None,)]
    assert "is not YYYY-MM" in error_line(cli("unarchive", "--month", "2023/02", "--dsn", dsn), 1)


def test_an_archive_killed_at_any_step_resumes_without_exporting_twice(tmp_path, dsn, settings):
    _loaded(tmp_path, dsn)
    before = _q(dsn, TOTALS, "--include-archive")
    args = ("archive", "--older-than-months", "24", "--dsn", dsn, "--json")

    # killed after the first month's export: still attached, recorded 'exported'
    r = cli(*args, RETAIL_ETL_FAIL_AT="archive:exported")
    assert r.exit_code != 0
    assert rows(dsn, "SELECT month, state FROM etl.archived_months") == [(202301, "exported")]
    part = settings.data_dir / "archive" / "fact_sales" / "month=2023-01" / "part-0.parquet"
    stamp = part.stat().st_mtime_ns
    assert _q(dsn, TOTALS, "--include-archive") == before  # not counted twice meanwhile
    r = cli(*args, RETAIL_ETL_FAIL_AT="archive:exported")  # again: its export is reused
    assert r.exit_code != 0 and part.stat().st_mtime_ns == stamp

    # killed mid-DETACH CONCURRENTLY: the detach is left pending (a reader holds the table)
    reader = connect(dsn)
    cur = reader.cursor()
    cur.execute("SELECT count(*) FROM dw.fact_sales")
    cur.fetchall()
    detacher = connect(dsn, autocommit=True)

    def detach():
        try:
            with detacher.cursor() as c:
                c.execute("ALTER TABLE dw.fact_sales DETACH PARTITION dw.fact_sales_202301 "
                          "CONCURRENTLY")
        except Exception:
            pass  # (terminated: that is the point)

    th = threading.Thread(target=detach)
    th.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = rows(dsn, "SELECT pid FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE "
                         "dw.fact_sales DETACH%' AND wait_event_type = 'Lock'")
        if pids:
            break
        time.sleep(0.1)
    assert pids
    execute(dsn, f"SELECT pg_terminate_backend({pids[0][0]})")
    th.join(30)
    reader.rollback()
    reader.close()
    assert rows(dsn, "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = "
                     "'dw.fact_sales_202301'::regclass") == [(True,)]

    # the rerun finalizes it, exports nothing twice, and goes on to the next month ...
    r = cli(*args, RETAIL_ETL_FAIL_AT="archive:detached")  # ... to die after that detach
    assert r.exit_code != 0
    assert part.stat().st_mtime_ns == stamp
    assert rows(dsn, "SELECT month, state FROM etl.archived_months ORDER BY 1") == [
        (202301, "archived"), (202302, "exported")]
    assert rows(dsn, "SELECT count(*) FROM pg_inherits WHERE inhrelid = "
                     "'dw.fact_sales_202302'::regclass") == [(0,)]  # detached, not dropped

    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert [(d["month"], d.get("exported")) for d in json.loads(r.stdout)] == [("2023-02", None)]
    assert rows(dsn, "SELECT month, state FROM etl.archived_months ORDER BY 1") == [
        (202301, "archived"), (202302, "archived")]
    assert rows(dsn, "SELECT to_regclass('dw.fact_sales_202302')") == [(None,)]
    assert _q(dsn, TOTALS, "--include-archive") == before


def test_maintain_vacuums_reindexes_makes_the_coming_months_and_warns_of_disk(tmp_path, dsn):
    _loaded(tmp_path, dsn)
    execute(dsn, "UPDATE dw.fact_sales SET run_id = run_id")  # every line now has a dead twin
    time.sleep(1.0)  # (the statistics reach pg_stat_user_tables within a second)
    s = Settings(dsn=dsn, data_dir=tmp_path / "data", min_free_disk_pct=99.99)
    dry = maint.maintain(s, pipelines.PROJECT, maint.Limits(min_dead=1, dead_ratio=0.3,
                                                            min_index_mb=0, min_leaf_density=101),
                         dry_run=True)
    assert rows(dsn, "SELECT count(*) FROM etl.maintenance") == [(0,)]
    done = maint.maintain(s, pipelines.PROJECT, maint.Limits(min_dead=1, dead_ratio=0.3,
                                                             min_index_mb=0, min_leaf_density=101))
    assert [d["action"] for d in dry] == [d["action"] for d in done]
    vacuumed = {d["target"] for d in done if d["action"] == "vacuum"}
    assert "dw.fact_sales_202301" in vacuumed
    assert rows(dsn, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = "
                     "'dw.fact_sales_202301'::regclass") == [(0,)]
    reindexed = {d["target"] for d in done if d["action"] == "reindex"}
    assert any(t.endswith("_202301") for t in reindexed), reindexed
    made = [d["target"] for d in done if d["action"] == "partition"
            and d["target"].startswith("dw.fact_sales_")]  # (each fact gets its months)
    now = datetime.now(UTC)
    ahead = [(now.year + (now.month + k - 1) // 12) * 100 + (now.month + k - 1) % 12 + 1
             for k in range(3)]
    assert made == [f"dw.fact_sales_{m}" for m in ahead]
    for m in ahead:
        assert rows(dsn, f"SELECT count(*) FROM pg_inherits WHERE inhrelid = "
                         f"'dw.fact_sales_{m}'::regclass") == [(1,)]
    assert [d for d in done if d["action"] == "disk"]
    logged = rows(dsn, "SELECT action, count(*) FROM etl.maintenance GROUP BY 1 ORDER BY 1")
    assert dict(logged) == {a: sum(d["action"] == a for d in done)
                            for a in {d["action"] for d in done}}

    # the CLI: the months exist now, nothing over the default thresholds; a load into a
    # month made ahead lands in it
    r = cli("maintain", "--dsn", dsn)
    assert r.exit_code == 0 and "nothing to do" in r.output, r.output
    cur = f"{now.year:04d}-{now.month:02d}"
    d = write_drop(tmp_path / "this-month", sales=[["cm-1", 1, f"{cur}-01T00:00:00Z", "", "",
                                                   "P-1", 1, "1.00", "", ""]])
    assert cli("load", "-s", str(d), "--dsn", dsn).exit_code == 0
    assert rows(dsn, f"SELECT count(*) FROM dw.fact_sales_{ahead[0]}") == [(1,)]
    hist = json.loads(cli("maintain", "--history", "--dsn", dsn, "--json").stdout)
    assert {h["action"] for h in hist} >= {"vacuum", "reindex", "partition", "disk"}
