"""The warehouse's roles (issue 12), on a real cluster with password logins: what each role
reads, what it is refused (permission denied, not an empty result), that a month made by a
later load is readable through the mart, that the loader is no administrator, and that the
mart rebuilt by a new schema keeps its readers."""

from __future__ import annotations

import uuid
from urllib.parse import urlparse

import pytest

from retail_etl.db import roles
from retail_etl.db.connect import connect
from tests.helpers import cli, execute, load, rows, write_drop

T0 = "2024-01-01T00:00:00Z"
CUSTOMER = ["C-1", "Jane", "Roe", "jane@example.com", "Retail", "Springfield", "IL", "US",
            "2023-06-01", T0]


def as_login(dsn: str, login: str, password: str) -> str:
    u = urlparse(dsn)  # (its query too: the server's certificate verified)
    return f"postgresql://{login}:{password}@{u.hostname}:{u.port}{u.path}?{u.query}"


def sale(oid, ts):
    return [oid, 1, ts, "C-1", "S-1", "P-1", 1, "10.00", "", ""]


def refused(dsn: str, sql: str, why: str = "permission denied") -> None:
    with pytest.raises(Exception) as e:  # noqa: PT011 (the message is what matters)
        rows(dsn, sql)
    assert why in str(e.value), f"{sql}: {e.value}"


def test_each_role_reads_what_it_may_and_is_refused_the_rest(cluster, dsn, settings, tmp_path,
                                                             monkeypatch):
    secret = {login: uuid.uuid4().hex for login in roles.LOGINS}
    for login, pw in secret.items():
        monkeypatch.setenv(roles.password_variable(login), pw)
    made = cli("db", "roles", "--dsn", dsn)
    assert made.exit_code == 0, made.output
    assert not any(pw in made.output for pw in secret.values())  # never printed
    assert "retail_loader: password set from RETAIL_ETL_LOADER_PASSWORD" in made.output
    assert cli("db", "roles", "--dsn", dsn).exit_code == 0  # idempotent
    cluster.require_passwords(roles.hba_lines())
    loader = as_login(dsn, "retail_loader", secret["retail_loader"])
    reporting = as_login(dsn, "retail_reporting", secret["retail_reporting"])
    as_loader = settings.model_copy(update={"dsn": loader})

    # the loader loads; the month it makes is owned like the rest
    load(as_loader, write_drop(tmp_path / "d1", products=[["P-1", "W", "Toys", "", "", "10.00", T0]],
                               customers=[CUSTOMER], sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    owners = "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n " \
             "ON n.oid = c.relnamespace WHERE n.nspname IN ('dw', 'etl', 'mart') " \
             "AND c.relkind IN ('r', 'p', 'v')"
    assert rows(dsn, owners) == [("retail_owner",)]
    assert rows(loader, "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
                        "WHERE rolname = session_user") == [(False, False, False)]
    refused(loader, "CREATE ROLE intruder")
    # the logins speak TLS only: without it the server refuses them, password or not
    plain = loader.replace("sslmode=verify-full", "sslmode=disable")
    refused(plain, "SELECT 1", "pg_hba.conf rejects connection")

    # reporting reads the mart, and nothing else
    monthly = "SELECT period_start::text, revenue::text FROM mart.sales_kpis " \
              "WHERE grain = 'month' AND breakdown = 'total' ORDER BY 1"
    assert rows(reporting, monthly) == [("2024-01-01", "10.00")]
    assert rows(reporting, "SELECT count(*) FROM mart.kpi_daily") != [(0,)]
    for sql in ["SELECT 1 FROM dw.fact_sales LIMIT 1", "SELECT 1 FROM dw.dim_customer LIMIT 1",
                "SELECT 1 FROM etl.runs LIMIT 1", "SELECT 1 FROM etl.rejects LIMIT 1",
                "DELETE FROM mart.kpi_daily", "CREATE TABLE mart.x (a int)",
                "CREATE TABLE public.x (a int)", "CREATE TEMP TABLE x (a int)"]:
        refused(reporting, sql)

    # a month made by a later load: readable through the mart without a new grant
    load(as_loader, write_drop(tmp_path / "d2", sales=[sale("O-2", "2024-03-05T10:00:00Z")]))
    assert rows(reporting, monthly) == [("2024-01-01", "10.00"), ("2024-03-01", "10.00")]

    # a new schema rebuilds the mart (as the loader): its readers keep reading it
    execute(loader, "DELETE FROM etl.schema_state")
    load(as_loader, write_drop(tmp_path / "d3", sales=[sale("O-2", "2024-03-05T10:00:00Z")]))
    assert rows(reporting, monthly) == [("2024-01-01", "10.00"), ("2024-03-01", "10.00")]
    assert rows(dsn, owners) == [("retail_owner",)]

    # PII: reporting sees pseudonyms, the analyst the originals, and each read is audited
    analyst = as_login(dsn, "retail_analyst", secret["retail_analyst"])
    masked = "SELECT customer_id, customer_name, email, segment, country FROM mart.customers"
    (cid, name, email, segment, country), = rows(reporting, masked)
    assert (cid, segment, country) == ("C-1", "Retail", "US")
    assert email.endswith("@masked.invalid") and "jane" not in (name + email).lower()
    assert rows(analyst, masked) == rows(reporting, masked)  # stable and joinable
    refused(reporting, "SELECT * FROM mart.customers_pii()")
    conn = connect(analyst, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT customer_id, customer_name, email FROM mart.customers_pii()")
            assert cur.fetchall() == [("C-1", "Jane Roe", "jane@example.com")]
    finally:
        conn.close()
    assert rows(dsn, "SELECT read_by, object, row_count FROM audit.pii_reads") == [
        ("retail_analyst", "mart.customers_pii", 1)]
    for login in (loader, reporting, analyst):
        refused(login, "SELECT * FROM audit.pii_reads")
        refused(login, "SELECT * FROM audit.events")
    # role changes, and each run's start and end with its login
    events = rows(dsn, "SELECT login, event FROM audit.events ORDER BY at")
    assert events[:2] == [("postgres", "roles"), ("postgres", "roles")]
    assert events[2:] == [("retail_loader", "run start"), ("retail_loader", "run ok")] * 3
    refused(loader, "DELETE FROM audit.pii_reads")
    # a new masking key gives new pseudonyms
    monkeypatch.setenv("RETAIL_ETL_MASKING_KEY", "another key")
    assert cli("db", "roles", "--dsn", dsn).exit_code == 0
    (_, name2, email2, _, _), = rows(reporting, masked)
    assert name2 != name and email2 != email and "another key" not in name2 + email2

    # a password login with the wrong password is refused
    refused(as_login(dsn, "retail_reporting", "wrong"), "SELECT 1",
            "password authentication failed")


def test_no_password_reaches_any_output_the_ledger_or_the_files(cluster, dsn, tmp_path,
                                                                  monkeypatch):
    """The loader's password in its DSN: not in the summary, the JSON, the ledger, the
    profile or the staging files, nor in the error of a refused login."""
    pw = "s3cret-" + uuid.uuid4().hex
    monkeypatch.setenv(roles.password_variable("retail_loader"), pw)
    assert cli("db", "roles", "--dsn", dsn).exit_code == 0
    cluster.require_passwords(roles.hba_lines())
    loader = as_login(dsn, "retail_loader", pw)
    data = tmp_path / "data"
    drop = write_drop(tmp_path / "d1", sales=[sale("O-1", "2024-01-05T10:00:00Z")])
    env = {"RETAIL_ETL_DATA_DIR": str(data), "RETAIL_ETL_KEEP_STAGING": "true"}
    outputs = []
    for args in (["load", "-s", str(drop), "--dsn", loader, "--profile"],
                 ["load", "-s", str(drop), "--dsn", loader, "--json"],
                 ["runs", "--dsn", loader, "--json"], ["runs", "--dsn", loader, "--show", "1"]):
        r = cli(*args, **env)
        assert r.exit_code == 0, r.output
        outputs.append(r.output)
    wrong = cli("load", "-s", str(drop), "--dsn", as_login(dsn, "retail_loader", pw + "x"), **env)
    assert wrong.exit_code != 0
    outputs.append(wrong.output)
    for out in outputs:
        assert pw not in out
    ledger = rows(dsn, "SELECT string_agg(to_jsonb(r)::text, ' ') FROM etl.runs r")[0][0]
    assert ledger and pw not in ledger
    files = [p for p in data.rglob("*") if p.is_file()]
    assert files  # the profile and the kept staging were written
    for p in files:
        assert pw.encode() not in p.read_bytes(), p
