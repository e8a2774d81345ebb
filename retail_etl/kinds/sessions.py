"""kind sessions: one row per session of an event fact, rebuilt in the run's transaction,
set-based, from the stored events of the sessions the run brought events of.

Why from the stored events: a late event (a phone back online, an export re-sent days
later) belongs to a session whose other events an earlier run loaded; rebuilding the whole
session from what the warehouse holds makes a late event update its session and a re-sent
one change nothing (the rebuilt row equals the stored one, which is then left as it is).
The events of a session are looked for `late_days` around the run's events of it, so the
rebuild reads an index range per session, not the event table."""

from __future__ import annotations

import polars as pl

from retail_etl.kinds.handoff import Handoff
from retail_etl.load import partitions
from retail_etl.load.copy import copy_temp
from retail_etl.monitor.log import log as events
from retail_etl.spec import Sessions


def ddl(s: Sessions) -> list[str]:
    short = s.table.split(".")[-1]
    cols = [*[f"{k} text NOT NULL" for k in s.key], f"{s.date_key} int NOT NULL",
            *[f"{name} {sql_type}" for name, (_, sql_type) in s.columns.items()],
            *[f"{name} {_event_type(s, column)}" for name, column in s.first.items()],
            "run_id bigint"]
    return [
        f"CREATE TABLE IF NOT EXISTS {s.table} ({', '.join(cols)}) "
        f"PARTITION BY RANGE ({s.date_key})",
        f"CREATE INDEX IF NOT EXISTS {short}_key_idx ON {s.table} ({', '.join(s.key)})",
        f"CREATE INDEX IF NOT EXISTS {short}_{s.date_key}_idx ON {s.table} ({s.date_key})",
    ]


def _event_type(s: Sessions, column: str) -> str:
    from retail_etl.spec import sql_type

    return sql_type(s.events.dtypes.get(column))


def _day_key(ts: pl.Expr, days: int) -> pl.Expr:
    return (ts + pl.duration(days=days)).dt.strftime("%Y%m%d").cast(pl.Int32)


def prepare(s: Sessions, valid, run, settings, h: Handoff) -> None:
    """The sessions the run's valid events belong to, with the date keys their events can
    be on (file stage: from the staged lines, no database)."""
    lines = h.lines.get(s.events.name)
    if lines is None or not lines.height:
        return
    ts = pl.col(s.events.event_ts)
    h.sessions[s.name] = (
        pl.scan_parquet(lines.paths).group_by(*s.key).agg(lo=ts.min(), hi=ts.max())
        .select(*s.key, lo=_day_key(pl.col("lo"), -s.late_days),
                hi=_day_key(pl.col("hi"), s.late_days))
        .collect())


def _moved(cur, s: Sessions) -> pl.DataFrame | None:
    """[key, lo, hi] of the sessions whose events the run re-pointed to other dimension
    versions (merge.repoint_facts keeps their natural keys): their customer may differ."""
    e = s.events
    cur.execute(f"SELECT to_regclass('pg_temp.stg_{e.name}_moved') IS NOT NULL")
    if not cur.fetchone()[0]:
        return None
    on = " AND ".join(f"x.{k} = m.{k}" for k in e.natural_key)
    cur.execute(f"""
        SELECT {', '.join(f'x.{k}' for k in s.key)}, min(x.{e.date_key}) AS lo,
               max(x.{e.date_key}) AS hi
        FROM stg_{e.name}_moved m JOIN {e.table} x ON {on} AND x.{e.date_key} = m.date_key
        GROUP BY {', '.join(f'x.{k}' for k in s.key)}
    """)
    moved = pl.from_arrow(cur.fetch_arrow_table())
    day = pl.col("lo", "hi").cast(pl.String).str.to_date("%Y%m%d")
    return moved.with_columns(day).select(
        *s.key, lo=_day_key(pl.col("lo").cast(pl.Datetime("us")), -s.late_days),
        hi=_day_key(pl.col("hi").cast(pl.Datetime("us")), s.late_days))


def write(cur, run, s: Sessions, h: Handoff, settings) -> None:
    touched = h.sessions.get(s.name)
    moved = _moved(cur, s)
    if moved is not None and moved.height:
        touched = (pl.concat([t for t in (touched, moved) if t is not None])
                   .group_by(*s.key).agg(pl.col("lo").min(), pl.col("hi").max()))
    if touched is None or not touched.height:
        return
    key, e, D = s.key, s.events, s.date_key
    on = " AND ".join(f"n.{k} = s.{k}" for k in key)
    names = [*s.columns, *s.first]
    keys = ", ".join(key)
    with run.stage("sessions", touched.height) as st:
        copy_temp(cur.connection, "stg_session_keys", touched)
        aggregates = ", ".join(f"{expr} AS {name}" for name, (expr, _) in s.columns.items())
        lo, hi = int(touched["lo"].min()), int(touched["hi"].max())
        used = sorted({*key, e.event_ts, *e.natural_key, *s.first.values(),
                       *[c for c in [*e.measures, *[r.fact_column for r in e.references]]
                         if any(f"e.{c}" in expr for expr, _ in s.columns.values())]})
        # the session's events once (index range per session), then two passes over them:
        # the aggregates (hashed) and the first event's columns (one sort)
        cur.execute(f"""
            CREATE TEMP TABLE stg_sessions ON COMMIT DROP AS
            WITH e AS MATERIALIZED (
                SELECT {', '.join(f'x.{c}' for c in used)}
                FROM {e.table} x
                JOIN stg_session_keys t ON {' AND '.join(f'x.{k} = t.{k}' for k in key)}
                     AND x.{e.date_key} BETWEEN t.lo AND t.hi
                WHERE x.{e.date_key} BETWEEN {lo} AND {hi}
            ), agg AS (
                SELECT {keys}, {aggregates} FROM e GROUP BY {keys}
            ), head AS (
                SELECT DISTINCT ON ({keys}) {keys}{''.join(f', e.{c} AS {n}' for n, c in s.first.items())}
                FROM e ORDER BY {keys}, e.{e.event_ts}, {', '.join(f'e.{k}' for k in e.natural_key)}
            )
            SELECT *, to_char({s.start} AT TIME ZONE 'UTC', 'YYYYMMDD')::int AS {D}
            FROM agg JOIN head USING ({keys})
        """)
        cur.execute(f"SELECT {D} / 100, count(*) FROM stg_sessions GROUP BY 1")
        per_month = {f"{s.table}_{m}": n for m, n in cur.fetchall()}
        months = list(per_month)
        existing = partitions.existing_partitions(cur, s.table)
        for name in months:
            month = int(name.rsplit("_", 1)[1])
            if name not in existing:
                a, b = partitions.bounds(month)
                cur.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {s.table} "
                            f"FOR VALUES FROM ({a}) TO ({b})")
        # a stored session that reads differently now is replaced; an equal one stays
        row = ", ".join([D, *names])
        cur.execute(f"""
            WITH gone AS (
                DELETE FROM {s.table} s USING stg_sessions n
                WHERE {on} AND (s.{row.replace(', ', ', s.')}) IS DISTINCT FROM
                               (n.{row.replace(', ', ', n.')})
                RETURNING 1)
            SELECT count(*) FROM gone
        """)
        updated = cur.fetchone()[0]
        cur.execute(f"""
            WITH added AS (
                INSERT INTO {s.table} ({', '.join(key)}, {row}, run_id)
                SELECT {', '.join(f'n.{k}' for k in key)}, n.{row.replace(', ', ', n.')},
                       {int(run.run_id)}
                FROM stg_sessions n
                WHERE NOT EXISTS (SELECT 1 FROM {s.table} s WHERE {on})
                RETURNING 1)
            SELECT count(*) FROM added
        """)
        written = cur.fetchone()[0]
        cur.execute("DROP TABLE stg_session_keys")
        st["rows"] = written
    # fresh statistics (after the commit) for new months and those the run rebuilt over 5%
    # of (as for facts: below that the planner's picture holds, autovacuum catches up)
    stale = [m for m in months if written and m not in run.analyze
             and per_month[m] > 0.05 * max(existing.get(m, 0), 0)]
    run.analyze += stale
    events.info("sessions", table=s.table, touched=touched.height, new=written - updated,
                updated=updated)
