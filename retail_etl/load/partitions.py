"""Month partitions of a fact table, created as data needs them, and the date dimension."""

from __future__ import annotations

import polars as pl


def months(date_keys: pl.Series) -> list[int]:
    """Distinct YYYYMM of a column of YYYYMMDD date keys."""
    return sorted((date_keys // 100).unique().to_list())


def bounds(yyyymm: int) -> tuple[int, int]:
    """The date_key range [from, to) of a month."""
    y, mo = divmod(yyyymm, 100)
    nxt = (y + 1) * 100 + 1 if mo == 12 else yyyymm + 1
    return yyyymm * 100 + 1, nxt * 100 + 1


def existing_partitions(cur, table: str) -> dict[str, float]:
    """The partitions of a table with their estimated row counts (pg_class.reltuples)."""
    cur.execute(f"SELECT c.oid::regclass::text, c.reltuples FROM pg_inherits i "
                f"JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '{table}'::regclass")
    return dict(cur.fetchall())


def create_detached(cur, table: str, yyyymm: int) -> None:
    """A new month partition built aside: a plain table shaped like the parent (no indexes
    yet, so the bulk insert does not maintain them; created in this transaction, so with
    wal_level=minimal its data skips the WAL)."""
    cur.execute(f"CREATE TABLE {table}_{yyyymm} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")


def attach(cur, table: str, name: str, yyyymm: int) -> None:
    """Build the parent's indexes on the filled partition, then attach it: the matching
    indexes are adopted, and the CHECK constraint spares the validation scan."""
    lo, hi = bounds(yyyymm)
    cur.execute(f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i WHERE i.indrelid = '{table}'::regclass
    """)
    for index_name, definition in cur.fetchall():
        short = index_name.split(".")[-1]
        cur.execute(definition.replace(f" ON ONLY {table} ", f" ON {name} ")
                    .replace(f"INDEX {short} ", f"INDEX {short}_{yyyymm} ", 1))
    cur.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name.split('.')[-1]}_range "
                f"CHECK (date_key >= {lo} AND date_key < {hi})")
    cur.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})")
    cur.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name.split('.')[-1]}_range")


def ensure_dates(cur, first_year: int, last_year: int, fiscal_start: int, run_id: int) -> None:
    """Whole calendar years of dw.dim_date. The fiscal year starts in month `fiscal_start`
    and is named after the calendar year it ends in."""
    fy = f"(extract(year FROM d)::int + CASE WHEN {fiscal_start} > 1 AND extract(month FROM d) >= {fiscal_start} THEN 1 ELSE 0 END)"
    fq = f"((extract(month FROM d)::int - {fiscal_start} + 12) % 12 / 3 + 1)"
    cur.execute(f"""
        INSERT INTO dw.dim_date AS t (date_key, date, day_of_week, day_name, month, month_name,
            quarter, year, iso_week, is_weekend, fiscal_year, fiscal_quarter, run_id)
        SELECT to_char(d, 'YYYYMMDD')::int, d::date, extract(isodow FROM d), trim(to_char(d, 'Day')),
               extract(month FROM d), trim(to_char(d, 'Month')), extract(quarter FROM d),
               extract(year FROM d), extract(week FROM d), extract(isodow FROM d) >= 6,
               {fy}, {fq}, {run_id}
        FROM generate_series(make_date({first_year}, 1, 1), make_date({last_year}, 12, 31),
                             interval '1 day') AS d
        ON CONFLICT (date_key) DO UPDATE
            SET fiscal_year = excluded.fiscal_year, fiscal_quarter = excluded.fiscal_quarter,
                run_id = excluded.run_id
            WHERE (t.fiscal_year, t.fiscal_quarter)
                  IS DISTINCT FROM (excluded.fiscal_year, excluded.fiscal_quarter)
    """)
