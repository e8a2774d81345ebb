"""retail-etl: file drops and operational sources into a PostgreSQL retail star schema."""

__version__ = "0.1.0"
