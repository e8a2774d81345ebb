"""External APIs as sources (`kind = "http"`): a payment provider in Stripe's list
conventions (`api = "payments"`) and a shipping service in EasyPost's tracker shape
(`api = "shipping"`), read incrementally and staged as the project's entities like any
other source, so validation, rejects, dedup and the merge treat them alike.

- One httpx client per source (timeouts, connection reuse). A request is retried with
  backoff and jitter on transport errors (a refused or dropped connection, a timeout), on
  5xx and 429 (honouring Retry-After, capped at max_retry_wait_seconds) and on a body that
  is not JSON (a cut transfer), never on another 4xx, and never past deadline_seconds. A
  refused key (401, 403) is one line naming the setting; the key itself is never printed.
- Incremental: a watermark per endpoint in etl.watermarks (the newest `created` of charges
  and of events, the newest `updated_at` of trackers), committed with the data. A run
  re-reads `lag_seconds` below it: late objects and status changes. Pagination goes to the
  end of the window (a run that would pass max_pages fails, it never stops short: the
  watermark would skip what it left).
- Payments: the charges list (each charge as of its creation) and the charge events (each
  the whole charge as of the event): the latest state wins by version_ts, so a refund
  replaces exactly its charge, and an unchanged re-read changes nothing.
- Pages are flattened by Polars (every field decoded as text, then the contract's rules
  apply: a missing field, a wrong type or an unknown status is a reject with its rule) and
  staged in batches, so a backfill is not held in memory; the raw pages are kept in the
  staging directory for replay. An object of a shape Polars cannot read is a reject with
  its raw JSON (rule object:unreadable)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_before_delay,
    wait_exponential_jitter,
)

from retail_etl.config import HttpSource
from retail_etl.errors import ConfigError, EtlError
from retail_etl.extract.files import LINE_BITS, REJECT_SCHEMA, Extracted
from retail_etl.extract.oltp import Mark
from retail_etl.monitor import log
from retail_etl.spec import Entity
from retail_etl.transform.quality import parse_timestamp

BATCH_ROWS = 50_000  # objects per staged file: bounds the memory of a backfill
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf",
                "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}  # amounts already in units


class ApiError(EtlError):
    """An API answered what no retry mends (a 4xx), or kept failing past the deadline."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class ApiExtract:
    source: str
    extracted: dict[str, Extracted]
    marks: list[Mark] = field(default_factory=list)
    pages: int = 0
    http_seconds: float = 0.0  # time spent waiting on the API (retries included)


# ---- the client ---------------------------------------------------------------------------


class Client:
    def __init__(self, name: str, cfg: HttpSource, transport: httpx.BaseTransport | None = None):
        self.name, self.cfg = name, cfg
        self.token = cfg.token.get_secret_value() if cfg.token else ""
        if not self.token:
            raise ConfigError(f"sources.{name}: no API key",
                              hint=f"set RETAIL_ETL_SOURCES__{name.upper()}__TOKEN")
        auth = (httpx.BasicAuth(self.token, "") if cfg.api == "shipping" else None)
        headers = ({"Authorization": f"Bearer {self.token}"} if cfg.api == "payments" else {})
        self.http = httpx.Client(base_url=cfg.base_url, auth=auth, headers=headers,
                                 timeout=httpx.Timeout(cfg.timeout_seconds),
                                 transport=transport, follow_redirects=False)
        self.seconds = 0.0

    def close(self) -> None:
        self.http.close()

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    def get(self, path: str, params: dict) -> tuple[str, dict]:
        """(the body, parsed) of GET path; retried as the module says."""
        cfg = self.cfg
        t0 = time.perf_counter()

        def wait(state: RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome else None
            after = getattr(err, "retry_after", None)
            if after is not None:
                return min(after, cfg.max_retry_wait_seconds)
            return _backoff(state)

        _backoff = wait_exponential_jitter(multiplier=0.5, max=cfg.max_retry_wait_seconds)

        @retry(retry=retry_if_exception(lambda e: isinstance(e, (_Retryable, httpx.TransportError))),
               wait=wait, stop=stop_before_delay(cfg.deadline_seconds),
               before_sleep=log.retried(self.name), reraise=True)
        def attempt() -> tuple[str, dict]:
            r = self.http.get(path, params=params)
            if r.status_code == 429 or r.status_code >= 500:
                raise _Retryable(f"{r.status_code} from GET {path}",
                                 _retry_after(r.headers.get("retry-after")))
            if r.status_code in (401, 403):
                raise ConfigError(
                    f"source {self.name}: {cfg.base_url} refused the API key "
                    f"({r.status_code} on GET {path})",
                    hint=f"set a valid key in RETAIL_ETL_SOURCES__{self.name.upper()}__TOKEN")
            if r.status_code >= 400:
                raise ApiError(f"source {self.name}: GET {path} answered {r.status_code}: "
                               f"{self.scrub(_message(r))}")
            try:
                return r.text, json.loads(r.text)
            except ValueError:
                raise _Retryable(f"GET {path} answered a body that is not JSON "
                                 f"({len(r.content)} bytes)") from None

        try:
            return attempt()
        except _Retryable as e:
            raise ApiError(f"source {self.name}: {e} for {cfg.deadline_seconds:g}s of "
                           "retries (deadline_seconds)") from None
        except httpx.TransportError as e:
            raise ApiError(f"source {self.name}: {cfg.base_url} unreachable for "
                           f"{cfg.deadline_seconds:g}s of retries ({type(e).__name__}: "
                           f"{self.scrub(str(e)) or 'no detail'})") from None
        finally:
            self.seconds += time.perf_counter() - t0


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _message(r: httpx.Response) -> str:
    try:
        err = r.json().get("error", {})
        return str(err.get("message") or err.get("code") or err)[:200]
    except (ValueError, AttributeError):
        return r.text[:200].replace("\n", " ")


# ---- pagination ---------------------------------------------------------------------------


@dataclass
class Page:
    body: str
    objects: list  # the page's objects as parsed (for the cursor and the fallback)


@dataclass(frozen=True)
class Paging:
    """How a list pages, newest first: its page-size parameter and its cursor, the last id
    of the page before (Stripe: limit, starting_after; EasyPost: page_size, before_id)."""

    size: str
    cursor: str


STRIPE, EASYPOST = Paging("limit", "starting_after"), Paging("page_size", "before_id")


def pages(client: Client, path: str, paging: Paging, key: str, params: dict,
          seen: list[int]) -> Iterator[Page]:
    """A list to its end; a page that is no list page (not an object with a `key` list)
    fails the run, naming it."""
    cursor = None
    while True:
        q = {**params, paging.size: client.cfg.page_size, **({paging.cursor: cursor} if cursor else {})}
        body, doc = client.get(path, q)
        _count(client, seen)
        data = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(data, list | None):
            raise ApiError(f"source {client.name}: GET {path} answered JSON without a "
                           f"`{key}` list (not a list page)")
        yield Page(body, data or [])
        if not doc.get("has_more") or not data:
            return
        cursor = data[-1].get("id") if isinstance(data[-1], dict) else None
        if not cursor:
            raise ApiError(f"source {client.name}: GET {path}: the page's last object has "
                           "no id to page on from")


def _count(client: Client, seen: list[int]) -> None:
    seen[0] += 1
    if seen[0] > client.cfg.max_pages:
        raise ApiError(f"source {client.name}: more than max_pages = {client.cfg.max_pages} "
                       "pages in one run", hint=f"raise sources.{client.name}.max_pages "
                       "(a first run reads the API's whole history)")


# ---- flattening: objects -> the entity's columns, as text ---------------------------------

S = pl.String
CHARGE = pl.Struct({"id": S, "amount": S, "amount_refunded": S, "currency": S, "created": S,
                    "status": S, "paid": S, "refunded": S,
                    "payment_method_details": pl.Struct({"type": S, "card": pl.Struct({"brand": S})}),
                    "metadata": pl.Struct({"order_id": S})})
EVENT = pl.Struct({"id": S, "type": S, "created": S, "data": pl.Struct({"object": CHARGE})})
TRACKER = pl.Struct({"id": S, "tracking_code": S, "carrier": S, "status": S, "created_at": S,
                     "updated_at": S, "est_delivery_date": S, "reference": S,
                     "tracking_details": pl.List(pl.Struct({"status": S, "datetime": S}))})


def _epoch(c: pl.Expr) -> pl.Expr:
    """Unix seconds (as text) as ISO 8601 UTC; anything else stays as sent (a reject)."""
    secs = c.cast(pl.Int64, strict=False)
    return pl.when(secs.is_not_null()).then(
        pl.from_epoch(secs, time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).otherwise(c)


def _units(cents: pl.Expr, currency: pl.Expr) -> pl.Expr:
    """Integer minor units as exact decimal text in the currency's units (cents -> 12.34;
    a zero-decimal currency's amount as is); a value that is not integer stays marked, so
    the decimal rule rejects it rather than read 1.5 cents as 1.50."""
    n = cents.cast(pl.Int64, strict=False)
    two = pl.format("{}.{}", n // 100, (n % 100).cast(pl.String).str.zfill(2))
    return (pl.when(n.is_null() & cents.is_not_null()).then(pl.lit("cents:") + cents)
            .when(currency.str.to_lowercase().is_in(list(ZERO_DECIMAL))).then(n.cast(pl.String))
            .otherwise(two))


def flatten_charges(charges: pl.Expr, version: pl.Expr | None = None) -> list[pl.Expr]:
    c = charges
    f = c.struct.field
    method = f("payment_method_details")
    return [f("id").alias("charge_id"), f("metadata").struct.field("order_id").alias("order_id"),
            _units(f("amount"), f("currency")).alias("amount"),
            _units(f("amount_refunded"), f("currency")).alias("amount_refunded"),
            f("currency").alias("currency"), _epoch(f("created")).alias("created_ts"),
            f("status").alias("status"), f("paid").alias("paid"), f("refunded").alias("refunded"),
            method.struct.field("type").alias("method"),
            method.struct.field("card").struct.field("brand").alias("card_brand"),
            (version if version is not None else _epoch(f("created"))).alias("version_ts")]


def flatten_trackers(t: pl.Expr) -> list[pl.Expr]:
    f = t.struct.field
    details = f("tracking_details")

    def first(status: str) -> pl.Expr:  # the first instant the parcel had this status
        return details.list.eval(pl.element().filter(
            pl.element().struct.field("status") == status).struct.field("datetime")).list.first()

    return [f("id").alias("tracker_id"), f("reference").alias("order_id"),
            f("tracking_code").alias("tracking_code"), f("carrier").alias("carrier"),
            f("status").alias("status"), f("created_at").alias("created_ts"),
            f("updated_at").alias("updated_ts"), first("in_transit").alias("shipped_ts"),
            first("delivered").alias("delivered_ts"),
            f("est_delivery_date").str.slice(0, 10).alias("promised_date")]


@dataclass(frozen=True)
class Endpoint:
    """One list an API is read from: where, how it pages, what its objects become."""

    entity: str
    mark: str  # its watermark's name in etl.watermarks
    path: str
    paging: Paging
    key: str  # the list's field in a page: data, trackers
    dtype: pl.DataType  # one object, every leaf as text
    columns: object  # (object struct expr) -> the entity's columns
    stamp: str  # the entity column whose newest value is the watermark
    since: object  # (watermark - lag: datetime | None) -> query parameters


ENDPOINTS = {
    "payments": (
        Endpoint("payments", "charges", "/v1/charges", STRIPE, "data", CHARGE,
                 lambda o: flatten_charges(o), "created_ts",
                 lambda t: {"created[gte]": int(t.timestamp())} if t else {}),
        Endpoint("payments", "events", "/v1/events", STRIPE, "data", EVENT,
                 lambda o: flatten_charges(o.struct.field("data").struct.field("object"),
                                           _epoch(o.struct.field("created"))), "version_ts",
                 lambda t: {"type": "charge.*", **({"created[gte]": int(t.timestamp())} if t else {})}),
    ),
    "shipping": (
        Endpoint("shipments", "trackers", "/v2/trackers", EASYPOST, "trackers", TRACKER,
                 flatten_trackers, "updated_ts",
                 lambda t: {"start_datetime": t.strftime("%Y-%m-%dT%H:%M:%SZ")} if t else {}),
    ),
}


def _newest(df: pl.DataFrame, column: str) -> datetime | None:
    """The newest valid instant of a staged text column (a reject's garbage is skipped)."""
    v = parse_timestamp(pl.col(column))
    return df.select(v.max()).item() if df.height else None


def _flatten(ep: Endpoint, entity: Entity, page: Page) -> tuple[pl.DataFrame, list[str]]:
    """(the page's objects as the entity's text columns, the raw JSON of objects Polars
    cannot read in the expected shape). The page is decoded whole; only a page with such
    an object is gone through object by object."""
    def frame(body: str, key: str | None) -> pl.DataFrame:
        dtype = pl.Struct({key: pl.List(ep.dtype)}) if key else ep.dtype
        o = pl.Series("o", [body]).str.json_decode(dtype=dtype)
        if key:
            o = o.struct.field(key).explode()
        return (o.to_frame("o").filter(pl.col("o").is_not_null())
                .select(ep.columns(pl.col("o"))).select(entity.column_names))

    try:
        return frame(page.body, ep.key), []
    except pl.exceptions.PolarsError:
        good, bad = [], []
        for o in page.objects:
            text = json.dumps(o, separators=(",", ":"))
            try:
                good.append(frame(text, None))
            except pl.exceptions.PolarsError:
                bad.append(text)
        return (pl.concat(good) if good else pl.DataFrame(
            schema={c: pl.String for c in entity.column_names})), bad


# ---- the extraction -----------------------------------------------------------------------


def extract_api(name: str, cfg: HttpSource, entities: dict[str, Entity], marks: dict[str, Mark],
                stage_dir: Path, first_file: int, *, full: bool = False,
                transport: httpx.BaseTransport | None = None) -> ApiExtract:
    """Stage what the API has in its window (from the watermark less the lag; all of it on
    the first run or with --full); files numbered from first_file."""
    client = Client(name, cfg, transport)
    out = ApiExtract(name, {})
    file_no = first_file
    raw_dir = stage_dir / "raw" / name
    raw_dir.mkdir(parents=True, exist_ok=True)
    try:
        for ep in ENDPOINTS[cfg.api]:
            ex = out.extracted.setdefault(ep.entity, Extracted(entities[ep.entity]))
            old = None if full else marks.get(ep.mark)
            since = (datetime.fromtimestamp(old.ts.timestamp() - cfg.lag, UTC)
                     if old is not None else None)
            waited, before = client.seconds, ex.rows
            file_no, newest, pages = _read(client, ep, ex, since, stage_dir, file_no,
                                           raw_dir, f"{name}:{ep.path}")
            out.pages += pages
            if old is not None and (newest is None or newest < old.ts):
                newest = old.ts  # (a watermark never goes back)
            if newest is not None:
                out.marks.append(Mark(ep.mark, newest, []))
            log.log.info("api_read", source=name, endpoint=ep.path, pages=pages,
                         rows=ex.rows - before, since=since.isoformat() if since else None,
                         http_seconds=round(client.seconds - waited, 3))
    finally:
        out.http_seconds = client.seconds
        client.close()
    return out


def _read(client: Client, ep: Endpoint, ex: Extracted, since: datetime | None,
          stage_dir: Path, file_no: int, raw_dir: Path, label: str
          ) -> tuple[int, datetime | None, int]:
    """One endpoint's pages staged in batches; (the next file number, the newest stamp
    read, pages)."""
    seen, newest, line, batch = [0], None, 1, []

    def flush(file_no: int, line: int) -> tuple[int, int]:
        if not batch:
            return file_no, line
        df = pl.concat(batch)
        batch.clear()
        ex.staged.append(_stage(df, ex.entity, stage_dir, file_no, label, line))
        ex.rows += df.height
        return file_no + 1, line + df.height

    for i, page in enumerate(pages(client, ep.path, ep.paging, ep.key, ep.since(since), seen)):
        (raw_dir / f"{ep.mark}_{i:06d}.json").write_text(page.body)
        df, unreadable = _flatten(ep, ex.entity, page)
        if unreadable:
            file_no, line = flush(file_no, line)  # (their line numbers follow the staged)
            ex.malformed.append(_unreadable(unreadable, label, line))
            ex.rows += len(unreadable)
            line += len(unreadable)
        top = _newest(df, ep.stamp)
        if top is not None and (newest is None or top > newest):
            newest = top
        if df.height:
            batch.append(df)
            if sum(b.height for b in batch) >= BATCH_ROWS:
                file_no, line = flush(file_no, line)
    file_no, line = flush(file_no, line)
    return file_no, newest, seen[0]


def _stage(df: pl.DataFrame, entity: Entity, stage_dir: Path, file_no: int, label: str,
           line: int) -> Path:
    """Objects as a staged file of the entity: text columns, file label, line, load order."""
    df = df.with_columns(
        _line=pl.int_range(line, line + pl.len(), dtype=pl.Int64), _file=pl.lit(label),
    ).with_columns(_seq=pl.lit(file_no << LINE_BITS, pl.Int64) + pl.col("_line"))
    path = stage_dir / entity.name / f"{file_no:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    df.write_parquet(tmp, compression="zstd")
    tmp.rename(path)
    return path


def _unreadable(raw: list[str], label: str, line: int) -> pl.DataFrame:
    """Objects no row can be made of, as rejects with their raw JSON."""
    return pl.DataFrame({"line": list(range(line, line + len(raw))), "object": raw},
                        schema={"line": pl.Int64, "object": pl.String}).select(
        "line", rules=pl.concat_list(pl.lit("object:unreadable")),
        # the object itself is the row: it is JSON already (a NUL shown as in row_json)
        row=pl.col("object").str.replace_all("\\u0000", "\\u2400", literal=True),
        file=pl.lit(label)).cast(
        {k: v for k, v in REJECT_SCHEMA.items()})
