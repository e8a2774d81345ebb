"""Issue 14: what a scheduler sees of a run. Real endpoints on loopback (tests/endpoints.py)
count what arrives: the webhook, the SMTP server, a Pushgateway-compatible receiver and an
OpenLineage collector; the job log and the metrics file are parsed as their consumers do."""

from __future__ import annotations

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from retail_etl.monitor.log import KEYS
from tests.endpoints import Recorder, SmtpSink, free_port
from tests.helpers import cli, error_line, execute, rows, write_drop


def sale(order: str, price: str = "1.00", qty: int = 1) -> list:
    return [order, 1, "2024-01-15T10:00:00Z", "", "", "P-1", qty, price, "", ""]


def drop(tmp_path, name: str, n: int = 4, bad: int = 0):
    """n sales lines, the last `bad` of them rejected (a zero quantity)."""
    lines = [sale(f"{name}-{i}", qty=0 if i >= n - bad else 1) for i in range(n)]
    return write_drop(tmp_path / name, sales=lines)


@pytest.fixture
def http():
    servers = []

    def make(*answers: int) -> Recorder:
        servers.append(Recorder(list(answers)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def smtp():
    sink = SmtpSink()
    yield sink
    sink.close()


def metrics_of(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def json_lines(text: str) -> list[dict]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def test_every_json_log_line_of_a_run_parses_and_carries_the_run_id(tmp_path, dsn):
    log_file = tmp_path / "logs" / "etl.log"
    r = cli("load", "-s", str(drop(tmp_path, "a", n=5, bad=1)), "--dsn", dsn,
            "--log-format", "json", RETAIL_ETL_LOG_FILE=str(log_file))
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    events = json_lines(r.stderr)
    # the human summary stays on the console; every other line is a JSON event
    human = [ln for ln in lines if not ln.startswith("{")]
    assert [ln.split(":")[0].split(" in ")[0] for ln in human] == ["run 1 ok", "inferred"]
    assert events and all(e["run_id"] == 1 and set(KEYS) <= set(e) for e in events)
    names = [e["event"] for e in events]
    assert names[0] == "run_start" and names[-1] == "run_end"
    assert {"stage_start", "stage_end", "source_read", "rejects"} <= set(names)
    ends = {e["stage"]: e for e in events if e["event"] == "stage_end"}
    assert ends["validate"]["rows"] == 4 and ends["validate"]["seconds"] >= 0
    (rule,) = [e for e in events if e["event"] == "rejects"]
    assert (rule["entity"], rule["rule"], rule["rows"]) == ("sales", "quantity:zero", 1)
    (read,) = [e for e in events if e["event"] == "source_read"]
    assert (read["source"], read["rows"]) == ("files", 5)
    # the file keeps the same events, as JSON
    assert [e["event"] for e in json_lines(log_file.read_text())] == names


def test_console_log_format_is_not_json(tmp_path, dsn):
    r = cli("load", "-s", str(drop(tmp_path, "a")), "--dsn", dsn, "--log-format", "console")
    assert r.exit_code == 0, r.output
    assert not json_lines(r.stderr) and "stage_end" in r.stderr and "run_id=1" in r.stderr
    bad = cli("load", "-s", str(tmp_path / "a"), "--dsn", dsn, "--log-format", "xml")
    assert bad.exit_code == 2 and "--log-format" in bad.output


def test_metrics_file_parses_and_a_failed_run_keeps_the_last_success(tmp_path, dsn, http):
    gateway = http()
    prom = tmp_path / "textfile" / "retail_etl.prom"
    ok = cli("load", "-s", str(drop(tmp_path, "a", n=5, bad=1)), "--dsn", dsn,
             "--metrics-file", str(prom), RETAIL_ETL_PUSHGATEWAY_URL=gateway.url)
    assert ok.exit_code == 0, ok.output
    m = metrics_of(prom.read_text())
    read, loaded, rejected = rows(dsn, "SELECT rows_read, rows_loaded, rows_rejected FROM "
                                  "etl.run_entities WHERE entity = 'sales'")[0]
    assert m[("retail_etl_rows", (("entity", "sales"), ("outcome", "read")))] == read == 5
    assert m[("retail_etl_rows", (("entity", "sales"), ("outcome", "loaded")))] == loaded
    assert m[("retail_etl_rows", (("entity", "sales"), ("outcome", "rejected")))] == rejected
    assert m[("retail_etl_rejects", (("entity", "sales"), ("rule", "quantity:zero")))] == 1
    assert m[("retail_etl_last_run_success", ())] == 1
    assert m[("retail_etl_stage_seconds", (("stage", "validate"),))] >= 0
    assert m[("retail_etl_run_peak_memory_bytes", ())] > 10 * 2**20
    (ended,) = rows(dsn, "SELECT extract(epoch FROM ended_at)::float8 FROM etl.runs")[0]
    success = ("retail_etl_last_success_timestamp_seconds", (("source", "files"),))
    assert m[success] == pytest.approx(ended, abs=0.01)
    (push,) = gateway.got  # the same registry, pushed
    assert (push.method, push.path) == ("PUT", "/metrics/job/retail_etl")
    assert metrics_of(push.body.decode())[success] == m[success]

    failed = cli("load", "-s", str(drop(tmp_path, "b")), "--dsn", dsn, "--metrics-file",
                 str(prom), RETAIL_ETL_FAIL_AT="commit")
    assert failed.exit_code == 1
    after = metrics_of(prom.read_text())
    assert after[("retail_etl_last_run_success", ())] == 0
    assert after[("retail_etl_last_run_status", (("status", "failed"),))] == 1
    assert after[("retail_etl_last_run_id", ())] == 2
    assert after[success] == m[success]  # a failed run does not move the last success
    assert not any(k[0] == "retail_etl_rows" for k in after)  # it loaded nothing


def test_a_failure_notifies_the_webhook_the_mail_and_lineage(tmp_path, dsn, http, smtp):
    hook, collector = http(), http()
    env = {"RETAIL_ETL_NOTIFY__WEBHOOK_URL": hook.url + "/services/T0/B0/s3cr3tt0ken",
           "RETAIL_ETL_NOTIFY__SMTP_URL": smtp.url,
           "RETAIL_ETL_NOTIFY__MAIL_TO": '["ops@example.com"]',
           "RETAIL_ETL_OPENLINEAGE_URL": collector.url}
    r = cli("load", "-s", str(drop(tmp_path, "a")), "--dsn", dsn,
            RETAIL_ETL_FAIL_AT="merge:fact_sales", **env)
    assert r.exit_code == 1 and "failure injected at merge:fact_sales" in r.output
    (post,) = hook.got
    msg = post.json()
    assert (post.method, post.path) == ("POST", "/services/T0/B0/s3cr3tt0ken")
    assert (msg["run_id"], msg["status"], msg["link"]) == (1, "failed", "retail-etl runs --show 1")
    assert "failed" in msg["text"] and "failure injected at merge:fact_sales" in msg["text"]
    assert msg["counts"]["sales"]["read"] == 4 and msg["stage"] == "fact_sales"
    ((sender, to, body),) = smtp.mail
    assert to == ["ops@example.com"] and "failure injected at merge:fact_sales" in body
    assert "s3cr3tt0ken" not in body and "s3cr3tt0ken" not in post.body.decode()
    events = [g.json() for g in collector.got]
    assert [g.path for g in collector.got] == ["/api/v1/lineage"] * 2
    assert [e["eventType"] for e in events] == ["START", "FAIL"]
    assert events[0]["run"]["runId"] == events[1]["run"]["runId"]
    assert "failure injected" in events[1]["run"]["facets"]["errorMessage"]["message"]
    # what it read is known once it has read it: the FAIL names it
    assert [i["name"] for i in events[1]["inputs"]] == [str(tmp_path / "a" / "sales.csv")]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(0,)]


def test_a_warehouse_that_is_down_is_reported_with_the_password_redacted(tmp_path, http):
    hook = http()
    prom = tmp_path / "m.prom"
    down = f"postgresql://etl:hunter2pw@127.0.0.1:{free_port()}/dw"
    r = cli("load", "-s", str(drop(tmp_path, "a")), "--dsn", down, "--metrics-file",
            str(prom), "--log-format", "json", RETAIL_ETL_NOTIFY__WEBHOOK_URL=hook.url)
    assert "cannot connect" in error_line(r, 75)
    (msg,) = [g.json() for g in hook.got]
    assert msg["status"] == "failed" and msg["run_id"] is None and "***" in msg["error"]
    assert "hunter2pw" not in json.dumps(msg) and "hunter2pw" not in r.output
    retries = [e for e in json_lines(r.stderr) if e["event"] == "retry"]
    assert len(retries) == 3 and {e["source"] for e in retries} == {"warehouse"}
    m = metrics_of(prom.read_text())
    assert m[("retail_etl_retries", (("source", "warehouse"),))] == 3
    assert m[("retail_etl_last_run_success", ())] == 0


def test_a_webhook_is_retried_on_5xx_bounded_and_never_fails_the_run(tmp_path, dsn, http):
    flaky, broken, refused = http(503, 503, 200), http(500), http(404)
    env = {"RETAIL_ETL_NOTIFY__ON": '["failure", "warning"]',
           "RETAIL_ETL_NOTIFY__TIMEOUT_SECONDS": "2",
           "RETAIL_ETL_QUALITY__SALES__MAX_REJECT_RATE": "0.1",
           "RETAIL_ETL_QUALITY__SALES__MIN_ROWS": "1"}
    for name, hook in (("a", flaky), ("b", broken), ("c", refused)):
        t0 = time.monotonic()
        r = cli("load", "-s", str(drop(tmp_path, name, n=4, bad=1)), "--dsn", dsn,
                RETAIL_ETL_NOTIFY__WEBHOOK_URL=hook.url, **env)
        assert r.exit_code == 0, r.output  # a warning, and a notification that may fail
        assert time.monotonic() - t0 < 30
    assert len(flaky.got) == 3 and flaky.got[-1].json()["status"] == "warning"
    assert 2 <= len(broken.got) <= 4  # retried within its 2 s deadline
    assert len(refused.got) == 1  # a 4xx other than 429 is not retried
    assert "notify_failed" in r.stderr


def test_quality_thresholds_warn_or_fail_the_run(tmp_path, dsn, http):
    hook = http()
    env = {"RETAIL_ETL_QUALITY__DEFAULT__MAX_REJECT_RATE": "0.2",
           "RETAIL_ETL_QUALITY__DEFAULT__MIN_ROWS": "1",
           "RETAIL_ETL_NOTIFY__WEBHOOK_URL": hook.url,
           "RETAIL_ETL_NOTIFY__ON": '["warning"]'}
    r = cli("load", "-s", str(drop(tmp_path, "a", n=4, bad=1)), "--dsn", dsn, **env)
    assert r.exit_code == 0, r.output
    (status, warnings), = rows(dsn, "SELECT status, warnings::text FROM etl.runs")
    assert status == "warning"
    assert json.loads(warnings) == ["sales: reject rate 25.0% is above 20.0% (1 of 4 rows read)"]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(3,)]  # loaded all the same
    shown = cli("runs", "--dsn", dsn, "--show", "1")
    assert "Warning: data quality: sales: reject rate 25.0% is above 20.0%" in shown.output
    # --json: a CI terminal's width would squeeze the table's status column out of view.
    assert {r["status"] for r in json.loads(cli("runs", "--dsn", dsn, "--json").stdout)} == {"warning"}
    assert "last run" in (doc := cli("doctor", "--dsn", dsn, "--json")).stdout
    (last,) = [c for c in json.loads(doc.stdout)["checks"] if c["check"] == "last run"]
    assert last["status"] == "warning" and "reject rate 25.0%" in last["detail"]
    (msg,) = [g.json() for g in hook.got]
    assert msg["status"] == "warning" and msg["warnings"] == json.loads(warnings)
    # fail_on_warning: the same run fails and loads nothing
    r = cli("load", "-s", str(drop(tmp_path, "b", n=4, bad=1)), "--dsn", dsn,
            RETAIL_ETL_FAIL_ON_WARNING="true", **env)
    assert "data-quality check failed: sales: reject rate 25.0%" in error_line(r)
    assert rows(dsn, "SELECT status FROM etl.runs WHERE run_id = 2") == [("failed",)]
    assert rows(dsn, "SELECT count(*) FROM dw.fact_sales") == [(3,)]


def test_a_drop_in_rows_read_against_the_last_runs_is_a_warning(tmp_path, dsn):
    env = {"RETAIL_ETL_QUALITY__SALES__MIN_ROWS": "4"}
    for name in ("a", "b", "c"):
        r = cli("load", "-s", str(drop(tmp_path, name, n=8)), "--dsn", dsn, **env)
        assert r.exit_code == 0, r.output
    cli("load", "-s", str(drop(tmp_path, "d", n=6)), "--dsn", dsn, **env)  # within 50%
    cli("load", "-s", str(drop(tmp_path, "e", n=3)), "--dsn", dsn, **env)  # under
    assert rows(dsn, "SELECT status, warnings::text FROM etl.runs ORDER BY run_id") == [
        ("ok", None), ("ok", None), ("ok", None), ("ok", None),
        ("warning", '["sales: 3 rows read, under 50% of the usual 8 (the median of the '
         'last 5 runs of these sources)"]')]


def test_lineage_of_a_successful_run_to_a_file(tmp_path, dsn):
    out = tmp_path / "lineage" / "events.ndjson"
    r = cli("load", "-s", str(drop(tmp_path, "a", n=5, bad=1)), "--dsn", dsn,
            RETAIL_ETL_OPENLINEAGE_URL=f"file://{out}")
    assert r.exit_code == 0, r.output
    start, complete = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert complete["job"] == {"namespace": "retail-etl", "name": "load.files"}
    assert complete["inputs"] == [{"namespace": "file", "name": str(tmp_path / "a" / "sales.csv")}]
    written = {o["name"].split(".", 1)[1]: o["outputFacets"]["outputStatistics"]["rowCount"]
               for o in complete["outputs"]}
    assert written["dw.fact_sales"] == 4 and written["dw.dim_product"] == 1  # P-1, inferred
    assert all(o["namespace"].startswith("postgres://127.0.0.1:") for o in complete["outputs"])


def test_doctor_flags_a_stale_source_and_a_missing_future_partition(tmp_path, dsn):
    assert cli("load", "-s", str(drop(tmp_path, "a")), "--dsn", dsn).exit_code == 0
    fine = cli("doctor", "--dsn", dsn, "--json")
    assert fine.exit_code == 0, fine.output
    checks = {c["check"]: c for c in json.loads(fine.stdout)["checks"]}
    assert checks["source files"]["status"] == "ok"
    assert checks["connection"]["status"] == "ok" and checks["schema"]["status"] == "ok"
    # the drop is of 2024: no month of the coming ones exists
    assert checks["partitions dw.fact_sales"]["status"] == "warning"
    assert checks["backup"]["status"] == "warning" and "no backup recorded" in checks["backup"]["detail"]
    assert cli("doctor", "--dsn", dsn, "--strict").exit_code == 1
    # two days later, with the default threshold (26 h)
    execute(dsn, "UPDATE etl.runs SET started_at = started_at - interval '2 days', "
            "ended_at = ended_at - interval '2 days'")
    stale = cli("doctor", "--dsn", dsn)
    assert stale.exit_code == 1 and "STALE" in stale.output
    assert "not healthy: source files" in stale.output
    # a source's own threshold
    assert cli("doctor", "--dsn", dsn, RETAIL_ETL_FRESHNESS__FILES="72").exit_code == 0


def test_doctor_on_a_server_that_is_down(tmp_path):
    r = cli("doctor", "--dsn", f"postgresql://etl:pw@127.0.0.1:{free_port()}/dw", "--json")
    assert r.exit_code == 1 and "Traceback" not in r.output
    (conn,) = [c for c in json.loads(r.stdout)["checks"] if c["check"] == "connection"]
    assert conn["status"] == "problem" and "cannot connect" in conn["detail"]
