"""SQL text from names and values we do not write ourselves (a source's table and column
names from the configuration): identifiers are always quoted, so `Order Items` or
`"Name"` is read as itself, never as SQL.

Values are bound ($1, ...) wherever the driver binds them (ADBC). ConnectorX binds no
parameters, so the values of its queries (a watermark, the configured cancelled statuses)
are rendered here, as standard SQL literals, on sessions that set
standard_conforming_strings (a backslash is then an ordinary character)."""

from __future__ import annotations

from datetime import datetime


def ident(name: str) -> str:
    """One identifier, quoted: a double quote inside is doubled."""
    return '"' + name.replace('"', '""') + '"'


def qualified(name: str) -> str:
    """`table` or `schema.table` (as the configuration writes it), each part quoted and
    taken exactly as written (no case folding)."""
    return ".".join(ident(part) for part in name.split(".", 1))


def literal(v) -> str:
    """A value as a literal, for ConnectorX's queries only (see the module docstring)."""
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "NULL"}[v]
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime):
        return f"'{v.isoformat()}'::timestamptz"
    return "'" + str(v).replace("'", "''") + "'"
