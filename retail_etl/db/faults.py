"""Transient or terminal: decided once, here, for every database failure (the warehouse's
ADBC sessions and the ConnectorX reads of a source). Retries (tenacity, in connect.py and
extract/oltp.py) and the one-line errors both ask this module.

A server's refusal carries a SQLSTATE: class 08 (connection exception), 57P01-57P03 (the
server is shutting down, crashed or starting up), 53300 (too many connections) and the
serialization/deadlock codes 40001/40P01 may succeed if tried again; any other SQLSTATE is
the statement's fault and will fail the same way again. A failure before or after the
server could say anything (refused TCP connection, a session cut mid-statement) reaches
ADBC and ConnectorX as libpq's text with no SQLSTATE: there, and only there, libpq's words
decide."""

from __future__ import annotations

import re

import adbc_driver_manager

from retail_etl.errors import EtlError

ENDED_STATES = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now
TRANSIENT_STATES = ENDED_STATES | {"53300", "40001", "40P01"}

# libpq's words when no SQLSTATE exists: the server could not be reached ...
_UNREACHABLE = re.compile(r"connection refused|the database system is starting up|timeout "
                          r"expired|timed out|too many clients|error connecting", re.I)
# ... or the session it had was ended or cut
_LOST = re.compile(r"server closed the connection|terminating connection|no connection to "
                   r"the server|connection to server was lost|could not receive data|"
                   r"could not send data|SSL SYSCALL|broken pipe|the database system is "
                   r"(shutting down|in recovery mode)|connection reset", re.I)


def sqlstate(e: BaseException) -> str | None:
    return getattr(e, "sqlstate", None) or None


def lost(e: BaseException) -> bool:
    """The session to the server is gone (or never began): nothing it did was committed."""
    state = sqlstate(e)
    if state:
        return state.startswith("08") or state in ENDED_STATES
    return bool(_LOST.search(str(e)) or _UNREACHABLE.search(str(e)))


def transient(e: BaseException) -> bool:
    """Retrying the same work may succeed."""
    if isinstance(e, EtlError):
        return e.transient
    state = sqlstate(e)
    if state:
        return state.startswith("08") or state in TRANSIENT_STATES
    if isinstance(e, adbc_driver_manager.ProgrammingError):  # bad SQL: ours, never transient
        return False
    return lost(e)
