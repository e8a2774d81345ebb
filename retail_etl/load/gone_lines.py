"""Lines a database source no longer has: orders deleted outright, lines deleted behind the
application's back (neither changes a row a watermark can see). Found by a scan of keys,
removed from the fact table month by month in the run's transaction.

1. Digest: per month (UTC) and bucket of the order id, the number of lines and the sum of
   their key hashes, computed by each server: the source's lines of orders not cancelled,
   the warehouse's lines this source delivered (`source`). Only the digests cross the wire.
2. The cells whose digests differ: their keys only, from both sides (a deletion costs the
   keys of one bucket of one month, not the table). Warehouse lines missing from the source
   are candidates.
3. Each candidate's order as the source has it now gives the reason: no order (order
   deleted), a cancelled one (order cancelled), an order without the line (line deleted);
   a line that is there after all (its order moved month since) stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from retail_etl.extract import oltp
from retail_etl.extract.oltp import OltpExtract
from retail_etl.load.copy import copy_temp
from retail_etl.spec import FactByPartition

BUCKETS = 64  # per month: a deletion fetches about 1/64 of its month's keys


@dataclass
class Gone:
    by_reason: dict[str, int]
    left_keys: dict[str, pl.Series]  # fact column -> dimension keys the lines pointed to


def scan(cur, fact: FactByPartition, pull: OltpExtract) -> Gone:
    r = pull.reader
    order_id, line = fact.natural_key  # (the document's id, the line's number)
    cells = differing(oltp.line_digest(r, BUCKETS), _digest(cur, fact, pull.source))
    none = Gone({}, {})
    if not cells.height:
        return none
    have = oltp.line_keys(r, cells, BUCKETS).rename({"order_id": order_id, "line_number": line})
    missing = _keys(cur, fact, pull.source, cells).join(have, on=[order_id, line], how="anti")
    if not missing.height:
        return none
    states = oltp.order_states(r, missing[order_id]).rename(
        {"order_id": order_id, "line_number": line})
    there = states.filter(pl.col(line).is_not_null()).select(order_id, line)
    orders = states.group_by(order_id).agg(pl.col("cancelled").first())
    gone = (missing.join(there, on=[order_id, line], how="anti")
            .join(orders, on=order_id, how="left")
            .with_columns(reason=pl.when(pl.col("cancelled").is_null()).then(pl.lit("order_deleted"))
                          .when(pl.col("cancelled")).then(pl.lit("order_cancelled"))
                          .otherwise(pl.lit("line_deleted")))
            .drop("cancelled"))
    return _delete(cur, fact, pull.source, gone) if gone.height else none


def differing(source: pl.DataFrame, warehouse: pl.DataFrame) -> pl.DataFrame:
    """[m, b]: the cells whose line count or hash sum differ (or that one side lacks)."""
    cells = [pl.col("m", "b").cast(pl.Int32)]
    both = source.with_columns(cells).join(warehouse.with_columns(cells), on=["m", "b"],
                                           how="full", coalesce=True, suffix="_dw")
    return both.filter(pl.col("n").ne_missing(pl.col("n_dw"))
                       | pl.col("h").ne_missing(pl.col("h_dw"))).select("m", "b").sort("m", "b")


def _digest(cur, fact: FactByPartition, source: str) -> pl.DataFrame:
    order_id, line = fact.natural_key
    cur.execute(f"""
        SELECT date_key / 100 AS m, {oltp.bucket(order_id, BUCKETS)} AS b, count(*)::int8 AS n,
               sum({oltp.line_hash(order_id, f'{line}::text')})::text AS h
        FROM {fact.table} WHERE source = $1 GROUP BY 1, 2
    """, parameters=(source,))
    return pl.from_arrow(cur.fetch_arrow_table())


def _keys(cur, fact: FactByPartition, source: str, cells: pl.DataFrame) -> pl.DataFrame:
    """[order id, line, date_key] of the source's stored lines in these cells, probed month
    by month (each month a partition)."""
    order_id, line = fact.natural_key
    frames = []
    for (m,), part in cells.partition_by("m", as_dict=True, maintain_order=True).items():
        buckets = ", ".join(str(b) for b in part["b"])
        cur.execute(f"""
            SELECT {order_id}, {line}, date_key FROM {fact.table}_{m}
            WHERE source = $1 AND {oltp.bucket(order_id, BUCKETS)} IN ({buckets})
        """, parameters=(source,))
        frames.append(pl.from_arrow(cur.fetch_arrow_table()))
    return pl.concat(frames).with_columns(pl.col(line).cast(pl.Int32))


def _delete(cur, fact: FactByPartition, source: str, gone: pl.DataFrame) -> Gone:
    order_id, line = fact.natural_key
    refs = [r.fact_column for r in fact.references]
    copy_temp(cur.connection, "stg_gone_lines", gone)
    out = []
    for m in gone.select(pl.col("date_key") // 100).unique().sort("date_key")["date_key"]:
        cur.execute(f"""
            DELETE FROM {fact.table}_{m} f USING stg_gone_lines g
            WHERE f.{order_id} = g.{order_id} AND f.{line} = g.{line}
              AND g.date_key / 100 = {m} AND f.source = $1
            RETURNING g.reason, {', '.join('f.' + c for c in refs)}
        """, parameters=(source,))
        out.append(pl.from_arrow(cur.fetch_arrow_table()))
    deleted = pl.concat(out)
    return Gone(dict(deleted.group_by("reason").len().iter_rows()),
                {c: deleted[c].unique() for c in refs})
