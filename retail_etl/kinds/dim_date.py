"""kind dim_date: one row per calendar day, key YYYYMMDD, in whole calendar years, grown by
the runs as their facts need them."""

from __future__ import annotations

from retail_etl.spec import DimensionDate


def ddl(d: DimensionDate) -> list[str]:
    return [f"""CREATE TABLE IF NOT EXISTS {d.table} (
        {d.key}        int PRIMARY KEY,
        date           date NOT NULL UNIQUE,
        day_of_week    smallint NOT NULL,
        day_name       text NOT NULL,
        month          smallint NOT NULL,
        month_name     text NOT NULL,
        quarter        smallint NOT NULL,
        year           int NOT NULL,
        iso_week       smallint NOT NULL,
        is_weekend     boolean NOT NULL,
        fiscal_year    int NOT NULL,
        fiscal_quarter smallint NOT NULL,
        fiscal_month   smallint,  -- 1 = the fiscal year's first month
        run_id         bigint
    )""",
            # warehouses made before fiscal_month: `ensure` fills it
            f"ALTER TABLE {d.table} ADD COLUMN IF NOT EXISTS fiscal_month smallint"]


def prepare(d, valid, run, settings, handoff) -> None:
    """Nothing comes from the sources: the facts say which years they need (ensure)."""


def write(cur, run, d, handoff, settings) -> None:
    """Nothing before the facts: each calls `ensure` for the years its lines fall in."""


def ensure(cur, d: DimensionDate, first_year: int, last_year: int, fiscal_start: int,
           run_id: int) -> None:
    """Whole calendar years of the date dimension. The fiscal year starts in month
    `fiscal_start` and is named after the calendar year it ends in."""
    fs = int(fiscal_start)
    fy = f"(extract(year FROM d)::int + CASE WHEN {fs} > 1 AND extract(month FROM d) >= {fs} THEN 1 ELSE 0 END)"
    fm = _fiscal_month("d", fs)
    fq = f"(({fm} - 1) / 3 + 1)"
    cur.execute(f"""
        INSERT INTO {d.table} AS t ({d.key}, date, day_of_week, day_name, month, month_name,
            quarter, year, iso_week, is_weekend, fiscal_year, fiscal_quarter, fiscal_month, run_id)
        SELECT to_char(d, 'YYYYMMDD')::int, d::date, extract(isodow FROM d), trim(to_char(d, 'Day')),
               extract(month FROM d), trim(to_char(d, 'Month')), extract(quarter FROM d),
               extract(year FROM d), extract(week FROM d), extract(isodow FROM d) >= 6,
               {fy}, {fq}, {fm}, $3::bigint
        FROM generate_series(make_date($1::int, 1, 1), make_date($2::int, 12, 31),
                             interval '1 day') AS d
        ON CONFLICT ({d.key}) DO UPDATE
            SET fiscal_year = excluded.fiscal_year, fiscal_quarter = excluded.fiscal_quarter,
                fiscal_month = excluded.fiscal_month, run_id = excluded.run_id
            WHERE (t.fiscal_year, t.fiscal_quarter, t.fiscal_month)
                  IS DISTINCT FROM (excluded.fiscal_year, excluded.fiscal_quarter, excluded.fiscal_month)
    """, parameters=(int(first_year), int(last_year), int(run_id)))
    # years no run ensures again, in a warehouse made before fiscal_month
    cur.execute(f"UPDATE {d.table} SET fiscal_month = {_fiscal_month('date', fs)} "
                "WHERE fiscal_month IS NULL")


def _fiscal_month(day: str, fiscal_start: int) -> str:
    return f"((extract(month FROM {day})::int - {int(fiscal_start)} + 12) % 12 + 1)"
