"""Issue 13: backups that prove they restore. Real pgBackRest on a cluster of the test's own
(WAL archiving needs a restart, which the suite's shared server must not have), two
repositories, encrypted; restore drills into scratch clusters on loopback."""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime
from pathlib import Path

import pytest

from retail_etl.config import Settings
from retail_etl.db.cluster import Cluster
from retail_etl.ops import drill
from tests.helpers import cli, execute, rows, write_drop

KEY = "correct-horse-battery-staple-0042"


@pytest.fixture
def local(tmp_path, monkeypatch):
    """A local cluster in the test's data_dir (the CLI's default warehouse, no --dsn)."""
    data = tmp_path / "data"
    monkeypatch.setenv("RETAIL_ETL_BACKUP__CIPHER_PASS", KEY)
    cluster = Cluster(data / "pg")
    dsn = cluster.up()
    yield Settings(data_dir=data), dsn
    cluster.down()
    for d in (data / "backups" / "drills").glob("*"):
        drill.tear_down(d)
    shutil.rmtree(data, ignore_errors=True)


def _load(tmp_path, name: str, n: int = 3) -> None:
    d = write_drop(tmp_path / name, sales=[[f"{name}-{i}", 1, "2024-01-15T10:00:00Z", "", "",
                                            "P-1", 1, "2.50", "", ""] for i in range(n)])
    r = cli("load", "-s", str(d))
    assert r.exit_code == 0, r.output


def test_a_full_backup_restores_and_verifies_and_a_tampered_manifest_fails(tmp_path, local):
    settings, dsn = local
    _load(tmp_path, "a")
    r = cli("backup")
    assert r.exit_code == 1 and "backup --init" in r.output  # archiving is not set up yet
    assert cli("backup", "--init").exit_code == 0
    done = json.loads(cli("backup", "--json").stdout)
    assert done["type"] == "full" and set(done["labels"]) == {"repo1", "repo2"}
    # both repositories encrypted: no plain backup.info, and the key is in no file of them
    for repo in ("repo1", "repo2"):
        info = settings.backup_dir / repo / "backup" / "retail" / "backup.info"
        assert not info.read_bytes().startswith(b"[backrest]")
        assert not any(KEY.encode() in p.read_bytes()
                       for p in (settings.backup_dir / repo).rglob("*") if p.is_file())
    _load(tmp_path, "b")
    incr = cli("backup", "--json")
    assert incr.exit_code == 0, incr.output  # (what went wrong, if it did)
    assert json.loads(incr.stdout)["type"] == "incr"  # by the calendar
    listed = json.loads(cli("backups", "--json").stdout)
    assert [(b["repo"], b["type"]) for b in listed] == [
        ("repo1", "full"), ("repo1", "incr"), ("repo2", "full"), ("repo2", "incr")]

    r = cli("restore-drill", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["ok"] and report["problems"] == []
    assert report["label"] == listed[1]["label"]  # the newest
    assert report["kpi"] == {"lines": 6, "revenue": "15.00"}
    assert report["partitions"] == 1 and report["rto_seconds"] > 0
    assert 0 <= report["rpo_seconds"] < 600
    assert not any((settings.backup_dir / "drills").iterdir())  # torn down
    assert cli("restore-drill", "--repo", "2", "--json").exit_code == 0  # the off-site copy
    health = {c["check"]: c for c in json.loads(cli("doctor", "--json").stdout)["checks"]}
    assert health["backup"]["status"] == "ok" and listed[1]["label"] in health["backup"]["detail"]
    assert health["restore drill"]["status"] == "ok" and "RTO" in health["restore drill"]["detail"]

    # the drill compares: a manifest that says otherwise fails it, naming the table
    m = settings.backup_dir / "manifests" / f"{report['label']}.json"
    doc = json.loads(m.read_text())
    doc["tables"]["dw.fact_sales"]["rows"] = 7
    m.write_text(json.dumps(doc))
    bad = cli("restore-drill")
    assert bad.exit_code == 1
    assert "Error: dw.fact_sales: 6 rows" in bad.output and "where the backup had 7" in bad.output
    sick = cli("doctor", "--json")
    assert sick.exit_code == 1
    (drilled,) = [c for c in json.loads(sick.stdout)["checks"] if c["check"] == "restore drill"]
    assert drilled["status"] == "problem" and "where the backup had 7" in drilled["detail"]
    # and a threshold it misses fails it too
    r = cli("restore-drill", "--repo", "2", RETAIL_ETL_BACKUP__MAX_RTO_SECONDS="0.001")
    assert r.exit_code == 1 and "RTO" in r.output and "is above 0s" in r.output


def test_point_in_time_restore_holds_marker_1_not_marker_2_and_the_dropped_table(tmp_path, local):
    settings, dsn = local
    _load(tmp_path, "a")
    execute(dsn, "CREATE TABLE public.keepme AS SELECT g AS n FROM generate_series(1, 3) g",
            "CREATE TABLE public.markers (m text)")
    assert cli("backup", "--init").exit_code == 0
    assert cli("backup", "--type", "full").exit_code == 0
    execute(dsn, "INSERT INTO public.markers VALUES ('marker 1')")
    ((t,),) = rows(dsn, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
    time.sleep(1.0)
    execute(dsn, "INSERT INTO public.markers VALUES ('marker 2')", "DROP TABLE public.keepme")
    report = drill.drill(settings, datetime.fromisoformat(t.replace("Z", "+00:00")), keep=True)
    try:
        assert report["ok"], report["problems"]
        assert rows(report["dsn"], "SELECT m FROM public.markers") == [("marker 1",)]
        assert rows(report["dsn"], "SELECT n FROM public.keepme ORDER BY n") == [(1,), (2,), (3,)]
        assert rows(report["dsn"], "SELECT count(*) FROM dw.fact_sales") == [(3,)]
    finally:
        drill.tear_down(Path(report["scratch"]))
    assert rows(dsn, "SELECT m FROM public.markers") == [("marker 1",), ("marker 2",)]  # live


def test_a_logical_backup_has_a_manifest_of_its_files_and_tables(tmp_path, local):
    settings, dsn = local
    _load(tmp_path, "a")
    r = cli("backup", "--logical", "--json")
    assert r.exit_code == 0, r.output
    done = json.loads(r.stdout)
    doc = json.loads((settings.backup_dir / "logical" / done["label"] / "manifest.json").read_text())
    assert doc["tables"]["dw.fact_sales"]["rows"] == 3 and "toc.dat" in {
        f.split("/")[-1] for f in doc["files"]}
    assert all(len(h) == 64 for h in doc["files"].values())
    assert [b["type"] for b in json.loads(cli("backups", "--json").stdout)] == ["logical"]


def test_physical_backups_need_the_local_cluster_and_pgbackrest(tmp_path, dsn, monkeypatch):
    r = cli("backup", "--dsn", dsn)
    assert r.exit_code == 1 and "logical" in r.output and "Traceback" not in r.output
    with monkeypatch.context() as m:
        m.setenv("PATH", str(tmp_path))  # no pgbackrest on it
        r = cli("backup", "--init")
    assert r.exit_code == 1 and "apt-get install -y pgbackrest" in r.output
