"""The mart's materialized views, refreshed after a run's commit (stage `refresh`) or by
`retail-etl refresh`. Each view refreshes in its own transaction: CONCURRENTLY once it holds
data (readers keep reading the old contents meanwhile), a plain REFRESH the first time. A
failed refresh never undoes the load: it is logged, kept in etl.mart_refresh, and retried by
the next run, whatever that run changes."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import adbc_driver_manager

log = logging.getLogger("retail_etl")


@dataclass
class Refreshed:
    view: str
    seconds: float
    error: str | None = None


def views(cur) -> list[tuple[str, bool]]:
    """(mart.view, populated) in creation order, which is dependency order: a view is made
    after the views it reads (sql/views/050_mart.sql)."""
    cur.execute("SELECT c.oid::regclass::text, m.ispopulated FROM pg_matviews m "
                "JOIN pg_class c ON c.relname = m.matviewname "
                "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = m.schemaname "
                "WHERE m.schemaname = 'mart' ORDER BY c.oid")
    return [(name, bool(populated)) for name, populated in cur.fetchall()]


def pending(cur) -> bool:
    """A view never filled, or whose last refresh failed."""
    cur.execute("SELECT count(*) FROM etl.mart_refresh WHERE error IS NOT NULL")
    failed = cur.fetchone()[0]
    return failed > 0 or any(not populated for _, populated in views(cur))


def groups(cur) -> list[list[tuple[str, bool]]]:
    """The views in groups that refresh one after the other (a view and the views it reads,
    in creation order); groups are independent of each other."""
    listed = views(cur)
    cur.execute("SELECT DISTINCT v.oid::regclass::text, d.refobjid::regclass::text "
                "FROM pg_rewrite r JOIN pg_depend d ON d.objid = r.oid "
                "JOIN pg_class v ON v.oid = r.ev_class JOIN pg_class u ON u.oid = d.refobjid "
                "WHERE v.relkind = 'm' AND u.relkind = 'm' AND u.oid <> v.oid")
    group = {name: {name} for name, _ in listed}
    for a, b in cur.fetchall():
        if a in group and b in group and group[a] is not group[b]:
            merged = group[a] | group[b]
            for n in merged:
                group[n] = merged
    seen, out = set(), []
    for name, _ in listed:
        if id(group[name]) not in seen:
            seen.add(id(group[name]))
            out.append([v for v in listed if v[0] in group[name]])
    return out


def refresh(conn, run_id: int | None, advance=lambda n: None, more=None) -> list[Refreshed]:
    """Refresh every materialized view of the mart, on autocommit connections: `conn`, and
    one more from `more()` (if given) so that two independent groups refresh at once (the
    server does the work; 2 cores). A view that fails is recorded and the others still
    refresh (a view reading it then fails too)."""
    with conn.cursor() as cur:
        todo = groups(cur)
        cur.execute("SELECT view_name, seconds FROM etl.mart_refresh WHERE seconds IS NOT NULL")
        last = dict(cur.fetchall())  # how long each took the last time: the shares' weights
    conns = [conn] + ([more()] if more and len(todo) > 1 else [])

    def cost(g) -> float:
        return sum(last.get(v, 1.0) for v, _ in g)

    shares: list[list] = [[] for _ in conns]
    for g in sorted(todo, key=cost, reverse=True):  # the dearest group to the lightest share
        min(shares, key=lambda share: sum(cost(x) for x in share)).append(g)
    try:
        with ThreadPoolExecutor(len(conns)) as pool:
            done = pool.map(lambda c, share: _refresh_groups(c, share, run_id, advance),
                            conns, shares)
            results = [r for part in done for r in part]
    finally:
        for c in conns[1:]:
            c.close()
    with conn.cursor() as cur:  # what no view answers for any more: an owed whole refresh
        cur.execute("DELETE FROM etl.mart_refresh WHERE view_name NOT IN (SELECT schemaname "
                    "|| '.' || matviewname FROM pg_matviews WHERE schemaname = 'mart')")
    order = {name: i for i, (name, _) in enumerate(v for g in todo for v in g)}
    return sorted(results, key=lambda r: order[r.view])


def owe(conn, run_id: int, error: str) -> None:
    """A refresh that failed as a whole (no view got to say why): the next run owes one.
    Best effort: the ledger may be what failed."""
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO etl.mart_refresh (view_name, run_id, error) "
                        "VALUES ('mart', $1, $2) ON CONFLICT (view_name) DO UPDATE "
                        "SET run_id = excluded.run_id, error = excluded.error",
                        parameters=(run_id, error))
    except adbc_driver_manager.Error as e:
        log.info("could not record the owed refresh: %s", e)


def _refresh_groups(conn, share: list[list[tuple[str, bool]]], run_id, advance) -> list[Refreshed]:
    done = []
    with conn.cursor() as cur:
        for view, populated in (v for g in share for v in g):
            how = "CONCURRENTLY " if populated else ""
            t0 = time.perf_counter()
            error = None
            try:
                cur.execute(f"REFRESH MATERIALIZED VIEW {how}{view}")
            except adbc_driver_manager.Error as e:
                # the server's words, without the driver's prefix and the statement
                error = str(e).splitlines()[0].split("ERROR:", 1)[-1].strip()
                log.warning("refresh of %s failed (the load stands; the next run retries): %s",
                            view, error)
            seconds = time.perf_counter() - t0
            cur.execute(
                "INSERT INTO etl.mart_refresh AS r (view_name, refreshed_at, run_id, seconds, "
                "error) VALUES ($1, CASE WHEN $4::text IS NULL THEN clock_timestamp() END, $2, "
                "$3, $4) ON CONFLICT (view_name) DO UPDATE SET refreshed_at = coalesce("
                "excluded.refreshed_at, r.refreshed_at), run_id = excluded.run_id, "
                "seconds = excluded.seconds, error = excluded.error",
                parameters=(view, run_id, seconds, error))
            done.append(Refreshed(view, seconds, error))
            advance(1)
    return done
