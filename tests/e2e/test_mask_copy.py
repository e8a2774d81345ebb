"""Issue 12: `retail-etl db mask-copy`: a non-production copy in which no original name or
email is left anywhere (checked here independently: the copy's whole data dump is searched),
keys, facts and the mart intact; a leak outside the declared columns stops the copy before it
commits anything."""

from __future__ import annotations

import subprocess
from urllib.parse import urlparse

import pytest

from retail_etl.db.cluster import pg_bindir
from tests.helpers import (
    cli,
    error_line,
    execute,
    fresh_database,
    load,
    mart_content,
    rows,
    write_drop,
)

T0, T1 = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"
# originals no pseudonym can contain (a pseudonym is a prefix and hex digits)
ZELDA = ["C-1", "Zelda", "Quixworth", "zelda.quixworth@example.com", "Retail", "Yverdon",
         "VD", "CH", "2023-06-01", T0]
ZELDA_MOVED = ["C-1", "Zelda", "Quixworth", "Zelda.Q@Example.org", "Retail", "Xanthi", "VD",
               "CH", "2023-06-01", T1]
# rejected (a join date that is no date): its raw row keeps the personal columns
YUKI = ["C-2", "Yukiko", "Vormbrandt", "yuki.vormbrandt@example.net", "Retail", "Wexford",
        "", "IE", "not-a-date", T0]
STORE = ["S-1", "Main St", "Flagship", "Uppsala", "", "SE", "Torvald Ekdahl-Nyqvist",
         "2020-01-01", T0]
ORIGINALS = ["Zelda", "Quixworth", "zelda.quixworth", "zelda.q@example.org", "Yukiko",
             "Vormbrandt", "yuki.vormbrandt", "Torvald", "Ekdahl-Nyqvist", "Yverdon", "Xanthi",
             "Wexford"]


@pytest.fixture
def fresh_db(cluster):
    """An empty database to copy into."""
    with fresh_database(cluster) as target:
        yield target


def sale(oid, ts, customer="C-1"):
    return [oid, 1, ts, customer, "S-1", "P-1", 2, "10.00", "0.50", ""]


def warehouse(settings, tmp_path) -> None:
    load(settings, write_drop(tmp_path / "d1", products=[["P-1", "W", "Toys", "", "", "10.00", T0]],
                              customers=[ZELDA, YUKI], stores=[STORE],
                              sales=[sale("O-1", "2024-01-05T10:00:00Z")]))
    load(settings, write_drop(tmp_path / "d2", customers=[ZELDA_MOVED],
                              sales=[sale("O-2", "2024-02-05T10:00:00Z"),
                                     sale("O-3", "2024-02-06T10:00:00Z", customer="C-9")]))


def dump(dsn: str) -> str:
    u = urlparse(dsn)
    return subprocess.run(
        [str(pg_bindir() / "pg_dump"), "-h", u.hostname, "-p", str(u.port), "-U", u.username,
         "-d", u.path.lstrip("/"), "--data-only"], capture_output=True, text=True,
        check=True).stdout


def test_the_copy_keeps_no_original_name_or_email_and_the_same_figures(cluster, dsn, settings,
                                                                       tmp_path, fresh_db):
    warehouse(settings, tmp_path)
    assert cli("forget", "--customer", "C-404", "--reason", "asked by Zelda Quixworth",
               "--dsn", dsn).exit_code == 0
    before = dump(dsn)
    assert [o for o in ORIGINALS if o not in before] == []  # (the search below can find them)

    copied = cli("db", "mask-copy", "--dsn", dsn, "--to", fresh_db)
    assert copied.exit_code == 0, copied.output
    assert "none left" in copied.output

    after = dump(fresh_db)
    left = [o for o in ORIGINALS if o.lower() in after.lower()]
    assert not left, f"originals in the copy: {left}"
    # keys, versions and facts as they were; the figures to the cent
    versions = ("SELECT customer_key, customer_id, valid_from::text, valid_to::text, segment, "
                "country FROM dw.dim_customer ORDER BY 1")
    assert rows(fresh_db, versions) == rows(dsn, versions)
    facts = "SELECT f::text FROM dw.fact_sales f ORDER BY order_id"
    assert rows(fresh_db, facts) == rows(dsn, facts)
    assert mart_content(fresh_db) == mart_content(dsn)
    # each personal value holds the pseudonym the source's mart shows: joinable with it
    assert rows(fresh_db, "SELECT customer_id, customer_name, email FROM dw.dim_customer "
                          "WHERE is_current AND customer_key <> -1 ORDER BY 1") == \
        rows(dsn, "SELECT customer_id, customer_name, email FROM mart.customers ORDER BY 1")
    # the unknown member's placeholder is nobody's, and stays
    assert rows(fresh_db, "SELECT customer_name FROM dw.dim_customer WHERE customer_key = -1") \
        == [("Unknown",)]
    # the rejected row keeps its shape and its non-personal values
    (raw,), = rows(fresh_db, "SELECT row::text FROM etl.rejects WHERE entity = 'customers'")
    assert '"join_date": "not-a-date"' in raw and '"first_name": "First ' in raw
    # the copy's masking key is its own
    assert rows(fresh_db, "SELECT key FROM etl.masking_key") != \
        rows(dsn, "SELECT key FROM etl.masking_key")

    # once there, a copy is replaced only on request
    assert "already holds a warehouse" in error_line(
        cli("db", "mask-copy", "--dsn", dsn, "--to", fresh_db), 2)
    assert cli("db", "mask-copy", "--dsn", dsn, "--to", fresh_db, "--replace").exit_code == 0
    # a copy nobody can reach: one line naming it, its password hidden
    nowhere = fresh_db.replace("postgres@", "postgres:s3cret@").replace("/q_", "/absent_")
    line = error_line(cli("db", "mask-copy", "--dsn", dsn, "--to", nowhere))
    assert "cannot connect to postgresql://postgres:***@" in line and "s3cret" not in line
    assert "is the warehouse being copied" in error_line(
        cli("db", "mask-copy", "--dsn", dsn, "--to", dsn, "--replace"), 2)


def test_an_original_outside_the_declared_columns_stops_the_copy(cluster, dsn, settings,
                                                                 tmp_path, fresh_db):
    warehouse(settings, tmp_path)
    # personal data where no declaration says so: a run's error message quoting a row
    execute(dsn, "UPDATE etl.runs SET error = 'zelda.quixworth@example.com' "
                 "WHERE run_id = (SELECT min(run_id) FROM etl.runs)")
    line = error_line(cli("db", "mask-copy", "--dsn", dsn, "--to", fresh_db))
    assert "original names or emails left in the copy: etl.runs.error (1)" in line
    assert "nothing was committed" in line
    assert rows(fresh_db, "SELECT count(*) FROM pg_namespace WHERE nspname IN "
                          "('dw', 'etl', 'mart')") == [(0,)]
