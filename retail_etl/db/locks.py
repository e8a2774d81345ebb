"""The advisory locks, in one place (transaction-scoped: released by commit or rollback,
and by the server when a session dies)."""

from __future__ import annotations

import adbc_driver_manager

from retail_etl import console
from retail_etl.db import faults
from retail_etl.db.connect import db_error
from retail_etl.errors import LockTimeout

SCHEMA = 727000001  # applying the DDL: one session at a time
WAREHOUSE = 727000002  # a load or an erasure: one at a time


def hold_schema(cur) -> None:
    cur.execute("SELECT pg_advisory_xact_lock($1)", parameters=(SCHEMA,))


def hold_warehouse(cur, wait_seconds: float) -> None:
    """The warehouse lock for this transaction, waiting at most wait_seconds for it."""
    cur.execute("SELECT pg_try_advisory_xact_lock($1)", parameters=(WAREHOUSE,))
    if cur.fetchone()[0]:
        return
    console.info(f"another run holds the warehouse lock; waiting up to {wait_seconds:g}s")
    try:
        cur.execute("SELECT set_config('lock_timeout', $1, true)",  # SET LOCAL, bound
                    parameters=(f"{int(wait_seconds * 1000)}ms",))
        cur.execute("SELECT pg_advisory_xact_lock($1)", parameters=(WAREHOUSE,))
        cur.execute("SET LOCAL lock_timeout = 0")
    except adbc_driver_manager.Error as e:
        if faults.sqlstate(e) != "55P03":  # lock_not_available: the wait ran out
            raise db_error(e, "waiting for the warehouse lock") from None
        raise LockTimeout(
            f"another run still holds the warehouse lock after {wait_seconds:g}s",
            hint="wait for it to finish (`retail-etl runs`) or raise RETAIL_ETL_LOCK_WAIT_SECONDS",
        ) from None


def hold_warehouse_session(cur, wait_seconds: float) -> None:
    """The warehouse lock for the whole session (an autocommit one): for work that spans
    transactions or runs outside one (DETACH PARTITION ... CONCURRENTLY). It conflicts with
    the loads' transaction-scoped lock all the same; released by release_warehouse_session
    or when the session ends."""
    cur.execute("SELECT pg_try_advisory_lock($1)", parameters=(WAREHOUSE,))
    if cur.fetchone()[0]:
        return
    console.info(f"a run holds the warehouse lock; waiting up to {wait_seconds:g}s")
    try:
        cur.execute(f"SET lock_timeout = '{int(wait_seconds * 1000)}ms'")
        cur.execute("SELECT pg_advisory_lock($1)", parameters=(WAREHOUSE,))
    except adbc_driver_manager.Error as e:
        if faults.sqlstate(e) != "55P03":
            raise db_error(e, "waiting for the warehouse lock") from None
        raise LockTimeout(f"a run still holds the warehouse lock after {wait_seconds:g}s",
                          hint="wait for it to finish (`retail-etl runs`) or raise "
                          "RETAIL_ETL_LOCK_WAIT_SECONDS") from None
    finally:
        cur.execute("SET lock_timeout = 0")


def release_warehouse_session(cur) -> None:
    cur.execute("SELECT pg_advisory_unlock($1)", parameters=(WAREHOUSE,))
