"""Lines a database source no longer has: orders deleted outright, lines deleted behind the
application's back (neither changes a row a watermark can see). Found by a scan of keys,
removed from the fact table month by month in the run's transaction.

1. Each server computes a 64-bit hash of every line's key at once: the source's lines not
   of a cancelled order, the warehouse's lines this source delivered (`source`); 8 bytes a
   line cross the wire (a per-bucket digest first was measured slower: the servers' GROUP
   BY costs more than sending the hashes). A stored hash the source lacks is a candidate.
2. The candidates' stored lines, by hash (a hash join with those few).
3. Each candidate's order as the source has it now gives the reason: no order (order
   deleted), a cancelled one (order cancelled), an order without the line (line deleted);
   a line that is there after all (changed since, or a hash collision) stays.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from retail_etl.extract import oltp
from retail_etl.extract.oltp import OltpExtract
from retail_etl.load import touched
from retail_etl.load.copy import copy_temp
from retail_etl.spec import FactByPartition


@dataclass
class Gone:
    by_reason: dict[str, int]
    left_keys: dict[str, pl.Series]  # fact column -> dimension keys the lines pointed to


AUTO_SHARE = 0.15  # line_scan_every = "auto": the scans' share of the runs' time
AUTO_ALWAYS_SECONDS = 1.0  # ... but a scan this cheap runs every time (a small shop)


def due(cur, pull: OltpExtract, fact: FactByPartition, run_seconds: float) -> bool:
    """Whether this run scans: every --full run; never a source's first (it just read every
    line it has); else every `line_scan_every` runs, or with "auto" once the runs since
    the last scan (each taken as long as this one so far) have paid for what it cost at
    AUTO_SHARE of their time; a scan of at most AUTO_ALWAYS_SECONDS runs every time. The
    count commits with the run."""
    every = pull.reader.cfg.line_scan_every
    cur.execute("SELECT runs_since, last_seconds FROM etl.source_scans "
                "WHERE source = $1 AND fact = $2", parameters=(pull.source, fact.name))
    since, cost = cur.fetchone() or (0, None)
    since += 1  # this run included
    if pull.full:
        due = True
    elif pull.first:
        due = False
    elif every == "auto":
        due = (cost is None or cost <= AUTO_ALWAYS_SECONDS
               or since * AUTO_SHARE * run_seconds >= cost)
    else:
        due = every > 0 and since >= every
    cur.execute("""
        INSERT INTO etl.source_scans (source, fact, runs_since) VALUES ($1, $2, $3)
        ON CONFLICT (source, fact) DO UPDATE SET runs_since = excluded.runs_since
    """, parameters=(pull.source, fact.name, 0 if due or pull.first else since))
    return due


def scan(cur, fact: FactByPartition, pull: OltpExtract, run_id: int) -> Gone:
    """The scan (see the module docstring); its cost is remembered for `due`."""
    started = time.perf_counter()
    with oltp.session(pull.reader) as src:
        gone = _scan(cur, src, fact, pull, run_id)
    cur.execute("UPDATE etl.source_scans SET last_run_id = $1, last_seconds = $2 "
                "WHERE source = $3 AND fact = $4",
                parameters=(run_id, time.perf_counter() - started, pull.source, fact.name))
    return gone


def _scan(cur, src, fact: FactByPartition, pull: OltpExtract, run_id: int) -> Gone:
    r = pull.reader
    order_id, line = fact.natural_key  # (the document's id, the line's number)
    none = Gone({}, {})
    # each side's work runs on its own server at once: the source's in a thread
    with ThreadPoolExecutor(1) as pool:
        theirs = pool.submit(oltp.line_hashes, src, r)
        ours = _hashes(cur, fact, pull.source)
        lost = ours.join(theirs.result(), on="h", how="anti")["h"]
    if not lost.len():
        return none
    missing = _lines_with(cur, fact, pull.source, lost)
    if not missing.height:
        return none
    states = oltp.order_states(src, r, missing[order_id]).rename(
        {"order_id": order_id, "line_number": line})
    there = states.filter(pl.col(line).is_not_null()).select(order_id, line)
    orders = states.group_by(order_id).agg(pl.col("cancelled").first())
    gone = (missing.join(there, on=[order_id, line], how="anti")
            .join(orders, on=order_id, how="left")
            .with_columns(reason=pl.when(pl.col("cancelled").is_null()).then(pl.lit("order_deleted"))
                          .when(pl.col("cancelled")).then(pl.lit("order_cancelled"))
                          .otherwise(pl.lit("line_deleted")))
            .drop("cancelled"))
    return _delete(cur, fact, pull.source, gone, run_id) if gone.height else none


def _hashes(cur, fact: FactByPartition, source: str) -> pl.DataFrame:
    cur.execute(f"SELECT {oltp.line_hash(*fact.natural_key)} AS h FROM {fact.table} "
                f"WHERE source = $1", parameters=(source,))
    return pl.from_arrow(cur.fetch_arrow_table())


def _lines_with(cur, fact: FactByPartition, source: str, hashes: pl.Series) -> pl.DataFrame:
    """[order id, line, date_key (the fact's date key)] of the source's stored lines with
    these key hashes."""
    order_id, line = fact.natural_key
    copy_temp(cur.connection, "stg_lost_hashes", hashes.unique().to_frame("h"))
    cur.execute(f"""
        SELECT f.{order_id}, f.{line}, f.{fact.date_key} AS date_key FROM {fact.table} f
        JOIN stg_lost_hashes l ON l.h = {oltp.line_hash(f'f.{order_id}', f'f.{line}')}
        WHERE f.source = $1
    """, parameters=(source,))
    return pl.from_arrow(cur.fetch_arrow_table()).with_columns(
        pl.col(c).cast(t) for c, t in fact.key_dtypes.items())


def _delete(cur, fact: FactByPartition, source: str, gone: pl.DataFrame, run_id: int) -> Gone:
    order_id, line = fact.natural_key
    refs = [r.fact_column for r in fact.references]
    copy_temp(cur.connection, "stg_gone_lines", gone)
    out = []
    for m in gone.select(pl.col("date_key") // 100).unique().sort("date_key")["date_key"]:
        cur.execute(f"""
            DELETE FROM {fact.table}_{m} f USING stg_gone_lines g
            WHERE f.{order_id} = g.{order_id} AND f.{line} = g.{line}
              AND g.date_key / 100 = {m} AND f.source = $1
            RETURNING g.reason, f.{fact.date_key} AS date_key, {', '.join('f.' + c for c in refs)}
        """, parameters=(source,))
        out.append(pl.from_arrow(cur.fetch_arrow_table()))
    deleted = pl.concat(out)
    touched.mark(cur, fact.table, deleted["date_key"], run_id)
    return Gone(dict(deleted.group_by("reason").len().iter_rows()),
                {c: deleted[c].unique() for c in refs})
