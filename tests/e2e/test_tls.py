"""Issue 12: the local cluster serves TLS with a certificate made at `db up`, and every
connection the product opens verifies it (the test cluster's DSNs say sslmode=verify-full,
so the whole suite connects with verification on)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import connectorx as cx
import psycopg
import pytest

from retail_etl.db import tls
from retail_etl.db.connect import connect, connectorx_dsn
from retail_etl.errors import ConfigError, DatabaseError
from tests.helpers import rows

ENCRYPTED = "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def test_every_client_of_the_product_speaks_tls_and_verifies_the_server(dsn):
    assert "sslmode=verify-full" in dsn and "sslrootcert=" in dsn
    (ssl, version), = rows(dsn, ENCRYPTED)  # ADBC: the loads, the ledger, the mart
    assert ssl and version.startswith("TLSv1.")
    with psycopg.connect(dsn) as conn:  # db mask-copy
        assert conn.execute(ENCRYPTED).fetchone()[0] is True
    # ConnectorX (the shop's tables) with the same authority
    read = cx.read_sql(connectorx_dsn(dsn), "SELECT ssl::text AS ssl FROM pg_stat_ssl "
                       "WHERE pid = pg_backend_pid()", return_type="arrow")
    assert read.column("ssl").to_pylist() == ["true"]


def test_a_server_the_authority_did_not_sign_or_of_another_name_is_refused(dsn, tmp_path):
    tls.make(tmp_path / "other")  # another authority, as a man in the middle would hold
    other = dsn.split("sslrootcert=")[0] + f"sslrootcert={tmp_path / 'other' / 'root.crt'}"
    with pytest.raises(DatabaseError, match="certificate verify failed"):
        connect(other)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(other)
    # the right authority, but the server reached under a name its certificate lacks
    u = urlparse(dsn)
    renamed = (f"postgresql://{u.username}@example.invalid:{u.port}{u.path}?{u.query}"
               "&hostaddr=127.0.0.1")
    with pytest.raises(DatabaseError, match="does not match host name"):
        connect(renamed)


def test_connectorx_gets_require_with_the_authority_and_never_checks_nothing(monkeypatch,
                                                                           tmp_path):
    root = "/etc/retail/root.crt"
    assert connectorx_dsn(f"postgresql://u@h/db?sslmode=verify-full&sslrootcert={root}") == \
        f"postgresql://u@h/db?sslmode=require&sslrootcert={root}"
    assert connectorx_dsn("postgresql://u@h/db?sslmode=prefer") == \
        "postgresql://u@h/db?sslmode=prefer"
    monkeypatch.setattr(Path, "home", lambda: tmp_path)  # no ~/.postgresql/root.crt
    with pytest.raises(ConfigError, match="names no sslrootcert"):
        connectorx_dsn("postgresql://u@h/db?sslmode=verify-ca")
    (tmp_path / ".postgresql").mkdir()
    (tmp_path / ".postgresql" / "root.crt").write_text("")
    assert connectorx_dsn("postgresql://u@h/db?sslmode=verify-ca") == \
        f"postgresql://u@h/db?sslmode=require&sslrootcert={tmp_path}/.postgresql/root.crt"
