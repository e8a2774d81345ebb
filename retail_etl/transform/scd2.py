"""SCD type 2 diff: the new history of every key the run touches, as a set of changes.

For each touched business key, the stored versions and the run's versions are laid on one
time line (a run's version at the same `valid_from` as a stored one replaces it in place),
consecutive versions with equal cleaned attributes collapse into the first of them, and
`valid_to` is the next version's `valid_from`. Each resulting version keeps the surrogate key
of the earliest stored version it absorbs (or the key of the key's inferred member); only
versions without one get a new key. Comparing the result with what is stored gives the rows
to write, the keys to delete, and the keys whose facts must be re-pointed.

Frames use NULL for `valid_to = infinity`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from retail_etl.spec import DimensionSCD2

# first version of a key: sales older than it still point to it
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


def signature(columns: list[str]) -> pl.Expr:
    """The cleaned values themselves, kept apart: each as `length:value` (NULL as `~`),
    so ('a','bc') and ('ab','c') never compare equal."""
    parts = []
    for c in columns:
        s = pl.col(c).cast(pl.String)
        parts.append(pl.when(s.is_null()).then(pl.lit("~"))
                     .otherwise(pl.format("{}:{}", s.str.len_bytes(), s)))
    return pl.concat_str(parts, separator="|")


def _unknown(dtype: pl.DataType) -> pl.Expr:
    """An inferred member's attribute: unknown (NULL), but a flag is false (not deleted)."""
    return pl.lit(False if dtype == pl.Boolean else None, dtype)


@dataclass
class Scd2Result:
    history: pl.DataFrame   # every version of the touched keys after this run (+ inferred)
    upserts: pl.DataFrame   # the versions to insert or rewrite
    deletes: pl.DataFrame   # [key, bk] stored versions absorbed by another
    repoint: pl.DataFrame   # [key, bk] stored versions whose facts must be looked up again
    repoint_since: datetime | None  # no sale before this instant needs re-pointing
    versions: pl.DataFrame  # [business key, key, lookup_from]: for the facts' as-of lookup
    loaded: int
    merged: int
    inferred: int
    next_key: int


def diff(
    dim: DimensionSCD2,
    incoming: pl.DataFrame,
    stored: pl.DataFrame,
    referenced: pl.DataFrame,
    next_key: int,
    observed: pl.DataFrame | None = None,
) -> Scd2Result:
    """incoming: [bk, *attributes, valid_from, _seq], deduplicated by (bk, valid_from).
    stored: [key, bk, *attributes, valid_from, valid_to, is_inferred] for every key the run
    touches or references. referenced: [bk] business keys the facts use. observed:
    [bk, *attributes, valid_from] every version the sources showed for the touched keys."""
    if observed is None:
        observed = incoming.clear().drop("_seq")
    K, B, A = dim.surrogate_key, dim.business_key, dim.attribute_names
    touched = incoming.select(B).unique()
    st = stored.join(touched, on=B, how="semi")
    st_real = st.filter(~pl.col("is_inferred"))

    # the time line: every version ever observed for the touched keys (the stored versions
    # are among them), the run's versions replacing any at the same instant
    seen = pl.concat([observed.join(touched, on=B, how="semi").select(B, *A, "valid_from"),
                      st_real.select(B, *A, "valid_from")], how="vertical_relaxed")
    old = seen.unique([B, "valid_from"], keep="first").join(
        incoming, on=[B, "valid_from"], how="anti").with_columns(_src=pl.lit(0))
    keys = st_real.select(B, "valid_from", pl.col(K).alias("_skey"))
    cand = (
        pl.concat([incoming.drop("_seq").with_columns(_src=pl.lit(1)), old],
                  how="vertical_relaxed")
        .join(keys, on=[B, "valid_from"], how="left")
        .sort(B, "valid_from")
        .with_columns(_sig=signature(A))
        .with_columns(_head=(pl.col("_sig") != pl.col("_sig").shift(1).over(B)).fill_null(True))
        .with_columns(_grp=pl.col("_head").cum_sum().over(B))
    )
    groups = (
        cand.group_by(B, "_grp", maintain_order=True)
        .agg(*[pl.col(a).first() for a in A], pl.col("valid_from").first(),
             pl.col("_skey").drop_nulls().first().alias(K), pl.col("_src").first().alias("_head_src"),
             pl.col("_sig").first())
        .sort(B, "valid_from")
        .with_columns(valid_to=pl.col("valid_from").shift(-1).over(B))
    )
    # the first version of a key that only had an inferred member completes it in place
    inferred_keys = st.filter(pl.col("is_inferred")).select(B, pl.col(K).alias("_ikey"))
    groups = groups.join(inferred_keys, on=B, how="left").with_columns(
        pl.when(pl.col(K).is_null() & (pl.col("_grp") == 1)).then(pl.col("_ikey"))
        .otherwise(pl.col(K)).alias(K)
    ).drop("_ikey")
    fresh = pl.col(K).is_null()
    n_fresh = groups[K].null_count()
    groups = groups.with_columns(
        pl.when(fresh).then(fresh.cast(pl.Int64).cum_sum() + next_key - 1)
        .otherwise(pl.col(K)).cast(pl.Int64).alias(K),
        is_inferred=pl.lit(False),
        _first=pl.col("_grp") == 1,
    )
    next_key += n_fresh

    # inferred members: ids the facts use that exist nowhere yet
    unknown = referenced.join(stored.select(B), on=B, how="anti").join(touched, on=B, how="anti")
    unknown = unknown.sort(B).with_columns(
        pl.int_range(next_key, next_key + unknown.height, dtype=pl.Int64).alias(K))
    next_key += unknown.height
    inferred = unknown.select(
        K, B, *[_unknown(dim.dtypes.get(a, pl.String)).alias(a) for a in A],
        # no source row says when it began: the beginning of time, whatever the drop order
        pl.lit(BEGINNING).alias("valid_from"),
        pl.lit(None, pl.Datetime("us", "UTC")).alias("valid_to"),
        is_inferred=pl.lit(True), _first=pl.lit(True), _head_src=pl.lit(0),
    ).with_columns(_sig=signature(A))

    history = pl.concat([groups.drop("_grp"), inferred], how="diagonal_relaxed").with_columns(
        is_current=pl.col("valid_to").is_null())

    # compare with what is stored
    before = st.with_columns(
        _sig=signature(A),
        _first=pl.col("valid_from") == pl.col("valid_from").min().over(B),
    ).select(K, B, "_sig", "valid_from", "valid_to", "is_inferred", "_first")
    cmp = history.join(before.drop(B), on=K, how="left", suffix="_old")
    is_new = pl.col("valid_from_old").is_null()
    content = ((pl.col("_sig") != pl.col("_sig_old")) | (pl.col("valid_from") != pl.col("valid_from_old"))
               | (pl.col("is_inferred") != pl.col("is_inferred_old")))
    changed = is_new | content | pl.col("valid_to").ne_missing(pl.col("valid_to_old"))
    range_moved = (pl.col("valid_from") != pl.col("valid_from_old")) | pl.col("valid_to").ne_missing(
        pl.col("valid_to_old")) | (pl.col("_first") != pl.col("_first_old"))
    cmp = cmp.with_columns(_changed=changed.fill_null(True), _loaded=((is_new | content) & (pl.col("_head_src") == 1)).fill_null(False),
                           _moved=range_moved.fill_null(False) & ~is_new)

    absorbed = before.join(history, on=K, how="anti")
    deletes = absorbed.select(K, B)
    repoint = pl.concat([deletes, cmp.filter("_moved").select(K, B)])
    # where the assignment of sales to versions may have changed: the earliest edge that
    # moved (a sale before it keeps its version, so the re-pointing can skip its month)
    lookup_from = pl.when(pl.col("_first")).then(pl.lit(BEGINNING)).otherwise(pl.col("valid_from"))
    lf_old = pl.when(pl.col("_first_old")).then(pl.lit(BEGINNING)).otherwise(
        pl.col("valid_from_old"))
    edges = cmp.filter("_moved").select(
        pl.when(lookup_from != lf_old).then(pl.min_horizontal(lookup_from, lf_old))
        .otherwise(pl.min_horizontal(pl.col("valid_to"), pl.col("valid_to_old"))).alias("t"))
    since = pl.concat([edges, absorbed.select(lookup_from.alias("t"))],
                      how="vertical_relaxed")["t"].min()
    loaded = int(cmp["_loaded"].sum())
    out_cols = [K, B, *A, "valid_from", "valid_to", "is_current", "is_inferred"]
    untouched = stored.join(history.select(B), on=B, how="anti").with_columns(
        _first=pl.col("valid_from") == pl.col("valid_from").min().over(B))
    versions = pl.concat([
        history.select(B, K, lookup_from.alias("lookup_from")),
        untouched.select(B, pl.col(K).cast(pl.Int64), lookup_from.alias("lookup_from")),
    ])
    return Scd2Result(
        history=history.select(*out_cols, lookup_from.alias("lookup_from")),
        upserts=cmp.filter("_changed").select(out_cols),
        deletes=deletes,
        repoint=repoint,
        repoint_since=since,
        versions=versions,
        loaded=loaded,
        merged=incoming.height - loaded,
        inferred=inferred.height,
        next_key=next_key,
    )
