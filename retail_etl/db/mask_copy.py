"""`retail-etl db mask-copy --to DSN`: a non-production copy of the warehouse in which every
personal value holds its pseudonym, keys, facts and the mart intact (so its KPIs are the
source's, to the cent).

One transaction on the copy, from one snapshot of the source (REPEATABLE READ, read only):
the warehouse's DDL, the source's month partitions, then every table streamed server to
server (binary COPY), the personal columns pseudonymised by the source's server in the query
that reads them, so an original never leaves it; then the sequences. Before it commits, a
check hashes every original name and email of the source (SHA-256, in a temporary table of
the copy dropped at commit) and looks for them in every text, array and JSON value of every
table of the copy, in all schemas: one found and nothing is committed.

Not copied: the audit log (the source's, not the copy's business) and the masking key (the
copy makes its own, so its mart's pseudonyms cannot be matched to the source's)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from graphlib import TopologicalSorter

from retail_etl.db import faults
from retail_etl.db.connect import _first_line, redact, schema_digest, schema_steps
from retail_etl.errors import DatabaseError, DatabaseUnavailable, EtlError, UsageError
from retail_etl.spec import DimensionSCD2, Project

SCHEMAS = ["dw", "etl", "etl_build", "mart"]  # what the copy holds (`audit` stays behind)
NOT_COPIED = {"etl.masking_key", "etl.schema_state"}  # the copy makes its own
TEXTUAL = ("text", "character varying", "character", "jsonb", "json", "ARRAY")


@dataclass
class MaskCopied:
    tables: int = 0
    rows: int = 0
    masked: dict[str, list[str]] = field(default_factory=dict)  # table -> columns
    originals: int = 0  # distinct original names and emails looked for in the copy
    columns_checked: int = 0
    seconds: float = 0.0


def mask_copy(source: str, target: str, project: Project, replace: bool = False) -> MaskCopied:
    import psycopg

    from retail_etl.config import SQL_DIR
    from retail_etl.kinds import schema as rendered_schema

    started, done = time.perf_counter(), MaskCopied()
    rendered = rendered_schema(project)
    src, dst = _connect(source), _connect(target)
    try:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        _refuse_same_database(src, dst, target)
        digest = _source_digest(src, source)
        if digest != schema_digest(SQL_DIR, rendered):
            raise UsageError(f"the warehouse at {redact(source)} has another schema than this "
                             "retail-etl's", hint="run `retail-etl load` (or `retail-etl db "
                             "roles`) on it once with this version, then copy it")
        step = "prepare the copy"
        try:
            _clear_target(dst, target, replace)
            step = "create the warehouse's tables in the copy"
            for _what, statements in schema_steps(SQL_DIR, rendered):
                for stmt in statements:
                    dst.execute(stmt)
            dst.execute("INSERT INTO etl.schema_state (digest) VALUES (%s)", (digest,))
            step = "create the month partitions in the copy"
            _partitions(src, dst)
            masks, tables = masked_columns(project), _tables(dst)
            # (the DDL seeds some rows, the unknown members: the source's replace them)
            dst.execute(f"TRUNCATE {', '.join(t for t, _ in tables)}")
            for table, columns in tables:
                step = f"copy {table}"
                done.rows += _copy(src, dst, table, columns, masks.get(table, {}))
                done.tables += 1
                if table in masks:
                    done.masked[table] = sorted(masks[table])
            step = "set the copy's sequences"
            _sequences(src, dst)
            step = "check the copy for original names and emails"
            done.originals, done.columns_checked = _check(src, dst, project)
            dst.commit()
        except psycopg.Error as e:
            raise DatabaseError(f"mask-copy: cannot {step}: {_first_line(str(e))}; nothing was "
                                "committed to the copy") from None
    finally:
        dst.close()  # (uncommitted work is rolled back)
        src.close()
    done.seconds = time.perf_counter() - started
    return done


def masked_columns(project: Project) -> dict[str, dict[str, str]]:
    """{table: {column: the SQL that reads it pseudonymised}} for every personal column of
    the warehouse: the dimensions' personal attributes (and of their observed versions), the
    personal source columns in the rejects' raw rows, the free text of an erasure."""
    key = "(SELECT key FROM etl.masking_key LIMIT 1)"
    masks: dict[str, dict[str, str]] = {}
    rejects = []
    for dim in project.dimensions:
        for table in (dim.table, dim.observed_table) if dim.personal else ():
            sk = dim.surrogate_key if table == dim.table else None
            masks.setdefault(table, {}).update(
                {a: _pseudonym(a, dim.kind_of(a), key, keep_unknown=(sk, dim.unknown_key))
                 for a in dim.personal})
        if dim.entity.personal:
            pairs = ", ".join(
                f"'{c}', {_pseudonym_sql(f'row->>{_lit(c)}', c, _kind(dim, c), key)}"
                for c in dim.entity.personal)
            rejects.append(f"WHEN {_lit(dim.entity.name)} THEN "
                           f"row || jsonb_strip_nulls(jsonb_build_object({pairs}))")
    if rejects:
        masks["etl.rejects"] = {"row": f"CASE entity {' '.join(rejects)} ELSE row END"}
    masks["etl.erasures"] = {"reason": _pseudonym_sql("reason", "reason", "text", key)}
    return masks


def _pseudonym(column: str, kind: str, key: str, keep_unknown: tuple[str | None, int]) -> str:
    sk, unknown = keep_unknown
    masked = _pseudonym_sql(_q(column), column, kind, key)
    # the unknown member's placeholder ("Unknown") is nobody's
    return f"CASE WHEN {_q(sk)} = {unknown} THEN {_q(column)} ELSE {masked} END" if sk else masked


def _pseudonym_sql(value: str, column: str, kind: str, key: str) -> str:
    if kind == "email":
        return f"etl.pseudonym_email({value}, {key})"
    prefix = column.split("_")[0].capitalize() + " "  # customer_name -> "Customer 3fa9..."
    return f"etl.pseudonym({value}, {_lit(prefix)}, {key})"


def _kind(dim: DimensionSCD2, column: str) -> str:
    return next(c.kind for c in dim.entity.columns if c.name == column)


def _originals_sql(project: Project) -> str:
    """The source's distinct original names and emails, as SHA-256 of their lower case."""
    parts = []
    for dim in project.dimensions:
        for a in dim.identifying:
            parts.append(f"SELECT {_q(a)} FROM {dim.table} WHERE {_q(dim.surrogate_key)} "
                         f"<> {dim.unknown_key}")
            parts.append(f"SELECT {_q(a)} FROM {dim.observed_table}")
        for c in dim.entity.identifying:
            parts.append(f"SELECT row->>{_lit(c)} FROM etl.rejects "
                         f"WHERE entity = {_lit(dim.entity.name)}")
    if not parts:
        return "SELECT NULL::bytea WHERE false"
    union = " UNION ".join(parts)
    return (f"SELECT DISTINCT sha256(convert_to(lower(v), 'UTF8')) FROM ({union}) s(v) "
            "WHERE v IS NOT NULL AND v <> ''")


def _check(src, dst, project: Project) -> tuple[int, int]:
    """(originals, columns checked): no original name or email of the source in any
    textual value of the copy; else an error naming where, and nothing is committed."""
    dst.execute("CREATE TEMPORARY TABLE mask_originals (h bytea PRIMARY KEY) ON COMMIT DROP")
    with src.cursor().copy(f"COPY ({_originals_sql(project)}) TO STDOUT (FORMAT binary)") as out, \
            dst.cursor().copy("COPY mask_originals (h) FROM STDIN (FORMAT binary)") as into:
        for chunk in out:
            into.write(chunk)
    originals = dst.execute("SELECT count(*) FROM mask_originals").fetchone()[0]
    columns = dst.execute("""
        SELECT c.oid::regclass::text, quote_ident(a.attname), t.typcategory, t.typname
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        JOIN pg_type t ON t.oid = a.atttypid
        WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname !~ '^pg_(toast|temp)' AND c.relname <> 'mask_originals'
          AND (t.typcategory IN ('S', 'A') OR t.typname IN ('json', 'jsonb'))
        ORDER BY 1, 2""").fetchall()
    found = []
    for table, column, category, typname in columns:
        if typname in ("json", "jsonb"):
            values = (f"FROM ONLY {table} x, jsonb_path_query(x.{column}::jsonb, "
                      "'strict $.** ? (@.type() == \"string\")') j(v)", "j.v #>> '{}'")
        elif category == "A":
            values = (f"FROM ONLY {table} x, unnest(x.{column}) u(v)", "u.v::text")
        else:
            values = (f"FROM ONLY {table} x", f"x.{column}::text")
        hits = dst.execute(
            f"SELECT count(*) {values[0]} WHERE sha256(convert_to(lower({values[1]}), 'UTF8')) "
            "IN (SELECT h FROM mask_originals)").fetchone()[0]
        if hits:
            found.append(f"{table}.{column} ({hits:,})")
    if found:
        raise EtlError("mask-copy: original names or emails left in the copy: "
                       + ", ".join(found) + "; nothing was committed",
                       hint="a personal column that is not declared personal? "
                            "(pipelines/sources.py: identifying=True)")
    return originals, len(columns)


def _copy(src, dst, table: str, columns: list[str], masks: dict[str, str]) -> int:
    """Stream one table (a leaf: each month partition on its own) from the source to the
    copy, in binary; the personal columns read through their pseudonyms."""
    select = ", ".join(masks.get(c, _q(c)) for c in columns)
    names = ", ".join(_q(c) for c in columns)
    with src.cursor().copy(f"COPY (SELECT {select} FROM ONLY {table}) TO STDOUT "
                           "(FORMAT binary)") as out, \
            dst.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT binary)") as into:
        for chunk in out:
            into.write(chunk)
    return dst.execute(f"SELECT count(*) FROM ONLY {table}").fetchone()[0]


def _tables(dst) -> list[tuple[str, list[str]]]:
    """The copy's tables (leaves: partitions, not their parents) and their columns."""
    rows = dst.execute("""
        SELECT c.oid::regclass::text, array_agg(a.attname::text ORDER BY a.attnum)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                           AND a.attgenerated = ''
        WHERE c.relkind = 'r' AND n.nspname = ANY(%s) GROUP BY c.oid ORDER BY 1""",
                       (SCHEMAS,)).fetchall()
    columns = {t: cols for t, cols in rows if t not in NOT_COPIED}
    # a table after those its foreign keys point to
    refs = dst.execute("SELECT conrelid::regclass::text, confrelid::regclass::text "
                       "FROM pg_constraint WHERE contype = 'f'").fetchall()
    order = TopologicalSorter({t: set() for t in columns})
    for table, referenced in refs:
        if table in columns and referenced in columns and table != referenced:
            order.add(table, referenced)
    return [(t, columns[t]) for t in order.static_order()]


def _partitions(src, dst) -> None:
    """The source's partitions (month partitions of the facts), made alike in the copy."""
    rows = src.execute("""
        SELECT c.oid::regclass::text, p.oid::regclass::text, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = ANY(%s) AND c.relispartition AND c.relkind IN ('r', 'p') ORDER BY 1""", (SCHEMAS,)).fetchall()
    for name, parent, bound in rows:
        if dst.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            dst.execute(f"CREATE TABLE {name} PARTITION OF {parent} {bound}")


def _sequences(src, dst) -> None:
    rows = src.execute("""
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'S' AND n.nspname = ANY(%s)""", (SCHEMAS,)).fetchall()
    for (seq,) in rows:
        last, called = src.execute(f"SELECT last_value, is_called FROM {seq}").fetchone()
        dst.execute("SELECT setval(%s, %s, %s)", (seq, last, called))


def _clear_target(dst, target: str, replace: bool) -> None:
    held = [s for (s,) in dst.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s) ORDER BY 1",
        (SCHEMAS + ["audit"],)).fetchall()]
    if held and not replace:
        raise UsageError(f"{redact(target)} already holds a warehouse (schema "
                         f"{', '.join(held)})", hint="pass --replace to overwrite that copy, "
                         "or name an empty database")
    for schema in held:
        dst.execute(f"DROP SCHEMA {_q(schema)} CASCADE")


def _refuse_same_database(src, dst, target: str) -> None:
    """The copy is never made over its source: same server (the source's session is one of
    the target server's) and same database."""
    pid, start, db = src.execute("SELECT pg_backend_pid(), backend_start, current_database() "
                                 "FROM pg_stat_activity WHERE pid = pg_backend_pid()").fetchone()
    same = dst.execute("SELECT current_database() = %s AND EXISTS (SELECT 1 FROM "
                       "pg_stat_activity WHERE pid = %s AND backend_start = %s)",
                       (db, pid, start)).fetchone()[0]
    if same:
        raise UsageError(f"{redact(target)} is the warehouse being copied",
                         hint="name another database: --to postgresql://host/retail_masked")


def _source_digest(src, source: str) -> str | None:
    if src.execute("SELECT to_regclass('etl.schema_state')").fetchone()[0] is None:
        raise UsageError(f"{redact(source)} holds no warehouse to copy",
                         hint="--dsn names the warehouse, --to the copy")
    row = src.execute("SELECT digest FROM etl.schema_state").fetchone()
    return row[0] if row else None


def _connect(dsn: str):
    import psycopg

    try:
        return psycopg.connect(dsn, connect_timeout=10)
    except psycopg.Error as e:
        # a server that is down may be back later (exit 75); a wrong database or password not
        unavailable = faults.lost(e) or faults.transient(e)
        raise (DatabaseUnavailable if unavailable else DatabaseError)(
            f"cannot connect to {redact(dsn)}: {_first_line(str(e))}") from None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
