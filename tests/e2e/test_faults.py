"""Issue 11: transient or terminal is decided once (retail_etl/db/faults.py), by the
SQLSTATE the real server sends, and by libpq's words only where no SQLSTATE exists."""

from __future__ import annotations

import adbc_driver_manager
import pytest

from retail_etl.db import faults
from retail_etl.db.connect import connect, db_error


def _raised(dsn: str, sql: str) -> adbc_driver_manager.Error:
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute(sql)
        return e.value
    finally:
        conn.close()


def _raise_state(state: str) -> str:
    return f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{state}'; END $$"


@pytest.mark.parametrize("state, transient", [
    ("40001", True), ("40P01", True), ("57P01", True), ("08006", True), ("53300", True),
    ("22012", False), ("23505", False), ("42P01", False), ("XX000", False),
])
def test_a_server_error_is_judged_by_its_sqlstate(dsn, state, transient):
    e = _raised(dsn, _raise_state(state))
    assert faults.sqlstate(e) == state
    assert faults.transient(e) is transient
    assert db_error(e, "run 1, stage lookup").transient is transient


def test_a_statement_error_is_terminal_and_names_the_run(dsn):
    e = _raised(dsn, "SELECT 1 / 0")
    assert not faults.transient(e) and not faults.lost(e)
    err = db_error(e, "run 7, stage lookup")
    assert err.message.startswith("run 7, stage lookup: ") and "division by zero" in err.message


def test_a_refused_connection_has_no_sqlstate_and_is_transient():
    import adbc_driver_postgresql.dbapi as adbc

    with pytest.raises(adbc_driver_manager.Error) as e:
        adbc.connect("postgresql://u@127.0.0.1:1/x")
    assert faults.sqlstate(e.value) is None
    assert faults.transient(e.value) and faults.lost(e.value)


def test_a_session_the_server_ends_is_lost(dsn):
    conn = connect(dsn, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (pid,), = cur.fetchall()
        killer = connect(dsn, autocommit=True)
        with killer.cursor() as k:
            k.execute(f"SELECT pg_terminate_backend({pid})")
        killer.close()
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as e:
            cur.execute("SELECT 1")
        assert faults.lost(e.value) and faults.transient(e.value)
        assert "lost the connection" in db_error(e.value, "run 1").message
    finally:
        try:
            conn.close()
        except adbc_driver_manager.Error:
            pass
