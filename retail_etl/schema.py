"""The warehouse's DDL: the engine's own tables (retail_etl/sql/schema), the project's
pipelines' tables (rendered by their kinds from the declarations), the views."""

from __future__ import annotations

from retail_etl import kinds
from retail_etl.config import SQL_DIR
from retail_etl.db import connect
from retail_etl.spec import Project


def apply_schema(conn, project: Project) -> bool:
    """Idempotent; a no-op (one query) when the warehouse already has exactly this DDL."""
    return connect.apply_schema(conn, SQL_DIR, kinds.schema(project))
