"""Fixtures: a real PostgreSQL server, started once per test session (per xdist worker) in a
temporary directory by the product's own cluster manager, and a fresh warehouse database
per test, cloned from a template that has the schema."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_profiles

from pipelines import PROJECT
from retail_etl.config import Settings
from retail_etl.db.cluster import Cluster
from retail_etl.db.connect import connect
from retail_etl.schema import apply_schema
from tests.helpers import TEMPLATE

# Hypothesis: derandomised in CI (the same examples every run: a red build is reproducible,
# never a coin toss); random locally, where a new counterexample is what we want.
# HYPOTHESIS_PROFILE=dev|ci chooses.
hypothesis_profiles.register_profile("ci", derandomize=True, print_blob=True)
hypothesis_profiles.register_profile("dev", derandomize=False)
hypothesis_profiles.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                                 or ("ci" if os.environ.get("CI") else "dev"))


def pytest_collection_modifyitems(items):
    """Each test is marked by its folder: unit (pure, no server), property (hypothesis
    against a real server), e2e (a real server, the CLI, files): `-m unit` is the fast lane."""
    for item in items:
        lane = item.path.parent.name
        if lane in ("unit", "property", "e2e"):
            item.add_marker(getattr(pytest.mark, lane))


@pytest.fixture(scope="session")
def cluster():
    """A server of the session's own, or, with RETAIL_ETL_TEST_CLUSTER=<dir>, the one there
    (started if need be, left running): `just mutate` runs a pytest per mutant, and starting
    a server for each would cost more than its tests."""
    shared = os.environ.get("RETAIL_ETL_TEST_CLUSTER")
    root = Path(shared) if shared else Path(tempfile.mkdtemp(prefix="retail-etl-test-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the server account must reach it
    c = Cluster(root / "pg")
    c.up()
    c.create_database(TEMPLATE)
    conn = connect(c.dsn(TEMPLATE))
    apply_schema(conn, PROJECT)
    conn.close()
    yield c
    if shared:
        c.drop_database(TEMPLATE)
        return
    c.down()
    shutil.rmtree(root, ignore_errors=True)  # a cluster's data is ~40 MB per session


@pytest.fixture
def dsn(cluster):
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield cluster.create_database(name, template=TEMPLATE)
    cluster.drop_database(name)


@pytest.fixture
def settings(dsn, tmp_path) -> Settings:
    return Settings(dsn=dsn, data_dir=tmp_path / "data")


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch, tmp_path):
    """Tests never read a developer's retail_etl.toml or RETAIL_ETL_* variables, nor write
    into the repository's data/."""
    for k in list(os.environ):
        if k.startswith("RETAIL_ETL_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("RETAIL_ETL_CONFIG", str(tmp_path / "absent.toml"))
    # nor its data/: a CLI run would stage in ./data/staging/run_NNNNNN, where a
    # developer's own run of the same number may be working
    monkeypatch.setenv("RETAIL_ETL_DATA_DIR", str(tmp_path / "data"))


@pytest.fixture
def oltp_dsn(cluster):
    """A fresh empty database (no warehouse schema) for the OLTP generator."""
    name = f"o_{uuid.uuid4().hex[:12]}"
    yield cluster.create_database(name)
    cluster.drop_database(name)
