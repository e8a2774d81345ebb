"""Connections to the warehouse (ADBC), with retries for a server that refuses connections
and errors that never show a password."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from retail_etl.config import Settings
from retail_etl.db import faults
from retail_etl.db.cluster import Cluster
from retail_etl.errors import ConfigError, DatabaseError, DatabaseUnavailable, EtlError
from retail_etl.monitor.log import retried

_PASSWORD = re.compile(r"(://[^:/@\s]+:)(\S*)(@)")  # greedy: a raw @ in the password too


def redact(text: str) -> str:
    """A DSN or message with any password replaced by ***."""
    text = _PASSWORD.sub(r"\1***\3", text)
    return re.sub(r"(password\s*=\s*)\S+", r"\1***", text, flags=re.I)


def resolve_dsn(settings: Settings) -> str:
    """--dsn / RETAIL_ETL_DSN / config file, else the local cluster."""
    if settings.dsn:
        if not re.match(r"^postgres(ql)?://", settings.dsn):
            raise ConfigError(
                f"the DSN {redact(settings.dsn)!r} is not a postgresql:// URL",
                hint="e.g. --dsn postgresql://user@host:5432/dbname",
            )
        return settings.dsn
    return Cluster(settings.pg_dir).dsn()


def connectorx_dsn(dsn: str) -> str:
    """The DSN for ConnectorX, which knows sslmode disable, prefer and require only: verify-ca
    and verify-full become require with the same sslrootcert, under which it still checks the
    server's certificate chain against that authority (a certificate from another authority
    is refused; tests/e2e/test_tls.py). Without sslrootcert it would check nothing, so the
    authority libpq would use (~/.postgresql/root.crt) is named, and without one the DSN is
    refused rather than quietly trusted. Whether ConnectorX checks the host name too, it
    does not say."""
    if not re.search(r"[?&]sslmode=verify-(ca|full)\b", dsn):
        return dsn
    if not re.search(r"[?&]sslrootcert=", dsn):
        root = Path.home() / ".postgresql" / "root.crt"
        if not root.exists():
            raise ConfigError(f"the source DSN {redact(dsn)!r} asks to verify the server, but "
                              "names no sslrootcert", hint="add &sslrootcert=/path/to/root.crt "
                              "(the authority that signed the server's certificate)")
        dsn += f"&sslrootcert={root}"
    return re.sub(r"([?&]sslmode=)verify-(?:ca|full)\b", r"\1require", dsn)


class _Refused(Exception):
    pass


@retry(
    retry=retry_if_exception_type(_Refused),
    stop=stop_after_attempt(4),
    wait=wait_random_exponential(multiplier=0.5, max=4),
    reraise=True,
    before_sleep=retried("warehouse"),
)
def _connect_with_retry(dsn: str, autocommit: bool):
    try:
        return adbc.connect(dsn, autocommit=autocommit)
    except adbc_driver_manager.Error as e:
        if faults.transient(e):
            raise _Refused(str(e)) from None
        raise


def connect(dsn: str, *, autocommit: bool = False):
    """An ADBC DB-API connection in UTC; refused connections are retried with backoff."""
    try:
        conn = _connect_with_retry(dsn, autocommit)
    except (_Refused, adbc_driver_manager.Error) as e:
        detail = _first_line(str(e))
        where = redact(dsn)
        if isinstance(e, _Refused) or "could not translate host" in detail:
            raise DatabaseUnavailable(
                f"cannot connect to {where}: {detail}",
                hint="is the server running? (`retail-etl db up` starts the local one)",
            ) from None
        raise DatabaseError(f"cannot connect to {where}: {detail}") from None
    with conn.cursor() as cur:
        cur.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        conn.commit()
    return conn


def _first_line(msg: str) -> str:
    msg = re.sub(r"^(IO|INVALID_ARGUMENT|INTERNAL|UNKNOWN): ", "", msg.strip())
    msg = msg.replace("[libpq] ", "")
    return redact(msg.splitlines()[0] if msg else "unknown error")


def db_error(e: Exception, what: str, *, dsn: str | None = None) -> EtlError:
    """A database failure as a one-line DatabaseError; a lost server is DatabaseUnavailable
    (retrying later may succeed) and names the server."""
    detail = _first_line(str(e))
    if faults.lost(e):
        where = f" {_server(dsn)}" if dsn else ""
        return DatabaseUnavailable(
            f"{what}: lost the connection to the warehouse{where} ({detail}); "
            "nothing was committed",
            hint="is the server running? run the load again once it is back (a rerun is safe)")
    err = DatabaseError(f"{what}: {detail}")
    err.transient = faults.transient(e)  # a deadlock or serialization failure, say
    return err


def _server(dsn: str) -> str:
    """host:port/dbname of a postgresql:// URL, never its user or password."""
    from urllib.parse import parse_qs, urlsplit

    u = urlsplit(dsn)
    host = u.hostname or parse_qs(u.query).get("host", ["localhost"])[0]
    return f"{host}:{u.port or 5432}{u.path or ''}"


def schema_files(sql_dir: Path) -> tuple[list[Path], list[Path]]:
    """(schema/*.sql, views/*.sql), each in name order."""
    return sorted((sql_dir / "schema").glob("*.sql")), sorted((sql_dir / "views").glob("*.sql"))


def schema_digest(sql_dir: Path, rendered: list[tuple[str, list[str]]] = ()) -> str:
    h = hashlib.sha256()
    schema, views = schema_files(sql_dir)
    for f in schema + views:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for name, statements in rendered:
        h.update(name.encode() + b"\0" + "\0".join(statements).encode() + b"\0")
    return h.hexdigest()


def schema_steps(sql_dir: Path, rendered: list[tuple[str, list[str]]] = ()
                 ) -> list[tuple[str, list[str]]]:
    """The DDL in the order it is applied: [(what it does, its statements)]."""
    schema, views = schema_files(sql_dir)
    return ([(f"apply {f.name}", split_sql(f.read_text())) for f in schema]
            + [(f"create the tables of pipeline {n}", st) for n, st in rendered]
            + [(f"apply {f.name}", split_sql(f.read_text())) for f in views])


def apply_schema(conn, sql_dir: Path, rendered: list[tuple[str, list[str]]] = ()) -> bool:
    """Apply sql/schema/*.sql, then the pipelines' DDL (`rendered`: [(pipeline, statements)],
    see retail_etl/kinds), then sql/views/*.sql, idempotently, in one transaction, unless
    the warehouse already has exactly these (their digest is kept in etl.schema_state):
    DDL takes locks that would queue behind a running load. Returns whether anything was
    applied."""
    from retail_etl.db import locks

    digest = schema_digest(sql_dir, rendered)
    what = "read the schema state"
    steps = schema_steps(sql_dir, rendered)
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT to_regclass('etl.schema_state') IS NOT NULL")
            if cur.fetchone()[0]:
                cur.execute("SELECT digest FROM etl.schema_state")
                row = cur.fetchone()
                if row and row[0] == digest:
                    conn.commit()
                    return False
            locks.hold_schema(cur)
            for what, statements in steps:  # noqa: B007 (`what` names the failing step)
                for stmt in statements:
                    cur.execute(stmt)
            what = "record the schema state"
            cur.execute("DELETE FROM etl.schema_state")
            cur.execute("INSERT INTO etl.schema_state (digest) VALUES ($1)", parameters=(digest,))
            conn.commit()
            return True
        except adbc_driver_manager.Error as e:
            conn.rollback()
            raise db_error(e, f"cannot {what}") from None


def split_sql(text: str) -> list[str]:
    """Statements of a DDL file (ADBC prepares each statement, so they go one at a time).
    A statement ends with `;` at the end of a line; our sql/ files keep to that."""
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in re.split(r";[ \t]*(?:\n|$)", text) if s.strip()]
