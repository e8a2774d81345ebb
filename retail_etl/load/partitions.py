"""Month partitions of a fact table, created as data needs them, and the date dimension."""

from __future__ import annotations

import polars as pl


def months(date_keys: pl.Series) -> list[int]:
    """Distinct YYYYMM of a column of YYYYMMDD date keys."""
    return sorted((date_keys // 100).unique().to_list())


def ensure_partitions(cur, table: str, yyyymm: list[int]) -> list[str]:
    """CREATE the monthly partitions that do not exist yet; return all touched names."""
    names = []
    for m in yyyymm:
        y, mo = divmod(m, 100)
        nxt = (y + 1) * 100 + 1 if mo == 12 else m + 1
        name = f"{table}_{m}"
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
            f"FOR VALUES FROM ({m * 100 + 1}) TO ({nxt * 100 + 1})"
        )
        names.append(name)
    return names


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
