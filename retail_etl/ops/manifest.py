"""What a backup must bring back, measured on the warehouse: per table its row count and a
content checksum (order-independent: the sum of each row's hash), the attached month
partitions of each partitioned table, and the KPI total. Taken under the warehouse lock,
so no load or erasure changes the tables while it is measured; compared, table by table,
with the same measure of a restored copy."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

# dw is the warehouse; of etl, what loads write under the lock (the ledger's run rows are
# written beside it, and the mart's materialized views after it: both are left out)
TABLES_SQL = """
    SELECT n.nspname || '.' || c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE ((n.nspname = 'dw' AND c.relkind IN ('r', 'p') AND NOT c.relispartition)
           OR (n.nspname = 'etl' AND c.relname IN ('rejects', 'watermarks')))
    ORDER BY 1
"""
PARTITIONS_SQL = """
    SELECT p.oid::regclass::text, c.oid::regclass::text,
           pg_get_expr(c.relpartbound, c.oid)
    FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace
    JOIN pg_inherits i ON i.inhparent = p.oid JOIN pg_class c ON c.oid = i.inhrelid
    WHERE n.nspname = 'dw' AND p.relkind = 'p' ORDER BY 1, 2
"""


def measure(cur) -> dict:
    """cur: an ADBC cursor on the warehouse (or its restored copy)."""
    cur.execute(TABLES_SQL)
    tables = {}
    for (t,) in cur.fetchall():
        cur.execute(f"SELECT count(*), coalesce(sum(('x' || left(md5(x::text), 15))::bit(60)"
                    f"::bigint::numeric), 0)::text FROM {t} x")
        n, checksum = cur.fetchone()
        tables[t] = {"rows": n, "checksum": checksum}
    cur.execute(PARTITIONS_SQL)
    partitions: dict[str, list[str]] = {}
    for parent, child, _bound in cur.fetchall():
        partitions.setdefault(parent, []).append(child)
    cur.execute("SELECT to_regclass('dw.fact_sales') IS NOT NULL")
    kpi = None
    if cur.fetchone()[0]:
        cur.execute("SELECT count(*), coalesce(sum(total_amount), 0)::text FROM dw.fact_sales")
        lines, revenue = cur.fetchone()
        kpi = {"lines": lines, "revenue": revenue}
    return {"measured_at": datetime.now(UTC).isoformat(), "tables": tables,
            "partitions": partitions, "kpi": kpi}


def differences(expected: dict, got: dict) -> list[str]:
    """What the restored copy lacks or holds otherwise, one sentence each."""
    out = []
    for t, want in expected["tables"].items():
        have = got["tables"].get(t)
        if have is None:
            out.append(f"{t} is missing")
        elif have != want:
            out.append(f"{t}: {have['rows']} rows (checksum {have['checksum']}) where the "
                       f"backup had {want['rows']} (checksum {want['checksum']})")
    for parent, months in expected["partitions"].items():
        lost = sorted(set(months) - set(got["partitions"].get(parent, [])))
        if lost:
            out.append(f"{parent}: partitions not attached: {', '.join(lost)}")
    if expected.get("kpi") != got.get("kpi"):
        out.append(f"KPI totals differ: {got.get('kpi')} where the backup had {expected.get('kpi')}")
    return out


def sha256_of(path: Path) -> str:
    """A file's sha256, read in 1 MiB blocks (a dump or an archive may be big)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
