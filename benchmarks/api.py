"""The external API benchmark (issue 15): objects per second a load of the payments (and
shipping) API reads and loads, and how much of its time is spent waiting on HTTP against
transforming and loading, with the fake server answering each page after --latency-ms.

    python -m benchmarks.api --charges 100k,1m [--latency-ms 20] [--refunds 300]
    python -m benchmarks.api --smoke         # 2,000 charges, every step, temp output dir

Per volume N (charges), on a PostgreSQL cluster of its own (benchmarks/cache/api, removed at
the end unless --keep):
  1. orders: a generated sales drop of about 2.1 N lines (seed 42, cached in
     benchmarks/cache/drops), its orders with a positive revenue (generate.api.read_orders),
     of which exactly N x 0.98 drawn (seed 42): with the generator's 2% of charges for
     unknown orders that makes N charges;
  2. the payments and shipping history of those orders (generate.api.history, seed 42, `now`
     a day after the last order, so the last days' parcels are under way), in memory, served by one retail_etl.fakeapi.FakeApi on loopback (latency --latency-ms per
     request, 100 objects a page at most);
  3. a fresh warehouse database; the drop's sales loaded first (untimed), so the payments'
     and parcels' order links are checked against a warehouse that has the orders, as in
     production (the run's `unmatched` count);
  4. timed, each run a `load --source pay` of its own process (a worker running
     retail_etl.flow.load, as `retail-etl load` does; the source set through the same
     RETAIL_ETL_SOURCES__PAY__* variables): the first run (full backfill: every charge and
     every event), then --refunds refunds (`FakeApi.refund`, 40% partial) spread over the
     next day and one incremental run;
  5. the same for the shipping API (`--source ship`): the backfill of every tracker, then
     --refunds parcels delivered (`FakeApi.update_tracker`) and one incremental run (which
     re-reads its 30-day lag window).

Where a run's time goes, from the worker (the product is not changed for it):
  - HTTP wait: the seconds inside httpx.Client.get (request, the server's latency and page,
    the body's transfer), summed over the run's requests;
  - client decode: the rest of the source's Client.get (ApiExtract.http_seconds, the
    product's own "time waiting on the API", which also counts the body's text decode and
    json.loads);
  - extract work: the extract stage less both (Polars flattening, the raw pages written for
    replay, Parquet staging);
  - the other stages (validate, dedup, lookup, copy, index, analyze, ...) and what lies
    outside any stage (the schema check, the ledger, the commit, and the count of the lines
    whose order link names no sale: kinds/fact_by_partition.py `_unmatched`).
Objects/s is the objects read (charges + events, or trackers) over the run's wall seconds
(flow.load, in the worker). The fake server runs in the benchmark's process, the load in
another one; its sorted views are built (one request per list, untimed) before each timed
run, so a run never pays for the fake re-sorting after the mutations.

Results: api.md and api.json in --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.run import HERE, ensure_drop, log, own_cluster, parse_volume, vm_hwm_mib

SEED = 42
KEY = "sk_test_benchmark_only_not_a_secret"
LINES_PER_CHARGE = 2.1  # a drop has ~0.48 orders with a positive revenue per line
UNMATCHED_SHARE = 0.02  # generate.api.history's default: charges for orders nobody has
PAGE_SIZE = 100
NOW_DAYS = 1  # history()'s `now`: this many days after the last order
SMOKE_CHARGES = 2_000
DAY = 86_400
API_OF = {"pay": "payments", "ship": "shipping"}
ENTITY_OF = {"pay": "payments", "ship": "shipments"}


# ---- the worker: one load, in a process of its own ----------------------------------------


def worker(name: str, dsn: str, data_dir: Path) -> None:
    """One run of `retail-etl load --source NAME` (flow.load, as the CLI calls it), the
    source from the RETAIL_ETL_SOURCES__NAME__* environment; prints its figures as JSON."""
    import httpx

    import pipelines
    from retail_etl import flow
    from retail_etl.config import load_settings
    from retail_etl.extract import http as api_http

    waited = {"seconds": 0.0, "requests": 0}
    real_get = httpx.Client.get

    def timed_get(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_get(self, *args, **kwargs)
        finally:
            waited["seconds"] += time.perf_counter() - t0
            waited["requests"] += 1

    reads = []
    real_extract = api_http.extract_api

    def extract_api(*args, **kwargs):
        out = real_extract(*args, **kwargs)
        reads.append(out)
        return out

    httpx.Client.get = timed_get
    api_http.extract_api = extract_api  # (extract/sources.py calls it through the module)

    settings = load_settings(dsn=dsn, data_dir=data_dir)
    t0 = time.perf_counter()
    run = flow.load(pipelines.PROJECT, settings, {name: settings.sources[name]})
    wall = time.perf_counter() - t0
    (read,) = reads
    print(json.dumps({
        "wall_seconds": wall,
        "http_wait_seconds": waited["seconds"],
        "requests": waited["requests"],
        "client_seconds": read.http_seconds,
        "pages": read.pages,
        "entities": {k: vars(v) for k, v in run.counts.items()},
        "stages": [vars(s) for s in run.stages],
        "refreshed": [vars(r) for r in run.refreshed],
        "status": run.status, "warnings": run.warnings,
        "peak_rss_mib": vm_hwm_mib(),  # (not ru_maxrss: the parent holds the fake's objects)
    }, default=str))


def run_load(api, name: str, dsn: str, root: Path, label: str) -> dict:
    """A timed load of source `name` against the running fake `api`: the worker's figures
    and what the server saw."""
    env = {**os.environ, **source_env(name, api.base_url), "RETAIL_ETL_CONFIG": str(root / "none.toml")}
    api.requests.clear()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "benchmarks.api", "--one", name, "--dsn", dsn,
            "--data-dir", str(root / "data")]
    with open(logs / f"{label}.out", "w") as out, open(logs / f"{label}.err", "w") as err:
        proc = subprocess.run(argv, stdout=out, stderr=err, env=env, cwd=HERE.parent,
                              check=False)
    if proc.returncode != 0:
        raise SystemExit(f"load {label} failed:\n" + (logs / f"{label}.err").read_text()[-3000:])
    r = json.loads((logs / f"{label}.out").read_text().strip().splitlines()[-1])
    served = [q for q in api.requests if q["status"] == 200]
    r["server_pages"] = len(served)
    r["server_requests"] = len(api.requests)
    r["latency_floor_seconds"] = len(api.requests) * api.latency_ms / 1000
    return r


def source_env(name: str, base_url: str) -> dict[str, str]:
    """The source as `retail-etl load --source NAME` reads it from the environment."""
    p = f"RETAIL_ETL_SOURCES__{name.upper()}__"
    return {p + "KIND": "http", p + "API": API_OF[name], p + "BASE_URL": base_url,
            p + "TOKEN": KEY, p + "PAGE_SIZE": str(PAGE_SIZE),
            p + "MAX_PAGES": "1000000",  # a 1M backfill reads ~20,000 pages (default 10,000)
            p + "DEADLINE_SECONDS": "120"}


# ---- the data -----------------------------------------------------------------------------


def orders_for(charges: int, cache: Path):
    """(the drop, the orders making exactly `charges` charges): a sample of the drop's
    orders with a positive revenue (the only ones history() charges)."""
    import polars as pl

    from retail_etl.generate.api import read_orders

    drop = ensure_drop(cache, round(charges * LINES_PER_CHARGE), SEED)
    paid = read_orders(drop).filter(pl.col("revenue") > 0)
    want = round(charges * (1 - UNMATCHED_SHARE))
    if paid.height < want:
        raise SystemExit(f"the drop has {paid.height:,} paid orders, {want:,} wanted")
    return drop, paid.sample(n=want, seed=SEED).sort("order_ts", "order_id")


def warm(api) -> None:
    """One request per list: the fake builds its sorted views now, not in a timed run."""
    import httpx

    with httpx.Client(base_url=api.base_url) as c:
        for path, params in (("/v1/charges", {"limit": 1}), ("/v1/events", {"limit": 1})):
            c.get(path, params=params, headers={"Authorization": f"Bearer {KEY}"})
        c.get("/v2/trackers", params={"page_size": 1}, auth=(KEY, ""))


def refunds(api, n: int, rng: random.Random) -> dict:
    """n refunds of succeeded charges (40% partial), spread over the day after the newest
    event; what was done."""
    candidates = [c for c in api.charges
                  if c["status"] == "succeeded" and c["amount_refunded"] < c["amount"]]
    chosen = rng.sample(candidates, min(n, len(candidates)))
    start = max(e["created"] for e in api.events) + 60
    partial = 0
    for i, c in enumerate(chosen):
        left = c["amount"] - c["amount_refunded"]
        cents = left // 2 if rng.random() < 0.4 and left >= 2 else left
        partial += cents < left
        api.refund(c["id"], cents, start + i * (DAY // max(1, len(chosen))))
    return {"refunds": len(chosen), "partial": partial}


def deliveries(api, n: int, rng: random.Random) -> dict:
    """n parcels still under way delivered, spread over the day after the newest update."""
    moving = [t["id"] for t in api.trackers
              if t["status"] in ("pre_transit", "in_transit", "out_for_delivery")]
    chosen = rng.sample(moving, min(n, len(moving)))
    newest = max(datetime.fromisoformat(t["updated_at"]) for t in api.trackers)
    start = int(newest.timestamp()) + 60
    for i, tid in enumerate(chosen):
        at = datetime.fromtimestamp(start + i * (DAY // max(1, len(chosen))), UTC)
        api.update_tracker(tid, "delivered", at.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"delivered": len(chosen), "under_way": len(moving)}


# ---- one volume ---------------------------------------------------------------------------


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 3)


def bench_volume(cluster, root: Path, cache: Path, charges: int, a) -> dict:
    from retail_etl.fakeapi import FakeApi
    from retail_etl.generate.api import history

    rng = random.Random(SEED)
    log(f"{charges:,} charges: orders")
    (drop, orders), orders_s = _timed(orders_for, charges, cache)
    log(f"  {orders.height:,} orders from {drop.parent.name}; history")
    # the API's clock: a day after the last sale, so the last week's parcels are under way
    now = orders["order_ts"].max() + timedelta(days=NOW_DAYS)
    made, history_s = _timed(history, orders, SEED, UNMATCHED_SHARE, now)
    del orders
    gc.freeze()  # millions of dicts: the collector need not walk them again (the server's)
    r: dict = {"charges": len(made["charges"]), "events": len(made["events"]),
               "trackers": len(made["trackers"]), "drop": drop.parent.name,
               "drop_lines": round(charges * LINES_PER_CHARGE),
               "orders_seconds": orders_s, "history_seconds": history_s}
    log(f"  {r['charges']:,} charges, {r['events']:,} events, {r['trackers']:,} trackers "
        f"in {history_s:.0f} s")

    db = "api_bench"
    cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    dsn = cluster.create_database(db)
    env = {**os.environ, "RETAIL_ETL_DATA_DIR": str(root / "data"),
           "RETAIL_ETL_CONFIG": str(root / "none.toml")}
    log("  the drop's sales (untimed)")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "retail_etl", "load", "--source-dir", str(drop),
                    "--dsn", dsn], check=True, capture_output=True, env=env, cwd=HERE.parent)
    r["sales_load_seconds"] = round(time.perf_counter() - t0, 3)

    # handed over, not copied: FakeApi(charges=...) deep-copies (a minute at 1M), and
    # nobody else holds these lists
    api = FakeApi(token=KEY, latency_ms=a.latency_ms, max_page_size=PAGE_SIZE)
    api.charges, api.events, api.trackers = made["charges"], made["events"], made["trackers"]
    del made
    try:
        with api:
            warm(api)
            log("  payments: full")
            r["payments_full"] = run_load(api, "pay", dsn, root, f"{charges}_pay_full")
            _say(r["payments_full"], "pay")
            r["payments_day"] = refunds(api, a.refunds, rng)
            warm(api)
            log(f"  payments: {r['payments_day']['refunds']} refunds, incremental")
            r["payments_incremental"] = run_load(api, "pay", dsn, root, f"{charges}_pay_incr")
            _say(r["payments_incremental"], "pay")
            if "shipping" in a.apis:
                log("  shipping: full")
                r["shipping_full"] = run_load(api, "ship", dsn, root, f"{charges}_ship_full")
                _say(r["shipping_full"], "ship")
                r["shipping_day"] = deliveries(api, a.refunds, rng)
                warm(api)
                log(f"  shipping: {r['shipping_day']['delivered']} delivered, incremental")
                r["shipping_incremental"] = run_load(api, "ship", dsn, root,
                                                     f"{charges}_ship_incr")
                _say(r["shipping_incremental"], "ship")
    finally:
        cluster._psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        del api
        gc.unfreeze()
        gc.collect()
    return r


def _say(x: dict, name: str) -> None:
    f = figures(x, name)
    log(f"    {f['read']:,} read, {f['loaded']:,} loaded, {x['pages']:,} pages in "
        f"{x['wall_seconds']:.1f} s: {f['objects_per_s']:,.0f} objects/s, HTTP "
        f"{x['http_wait_seconds']:.1f} s ({f['http_share']:.0%})")


# ---- figures and the report ---------------------------------------------------------------


def figures(x: dict, name: str) -> dict:
    """One run's derived figures: objects/s, the HTTP share and where the rest went."""
    c = x["entities"][ENTITY_OF[name]]
    stages = {s["name"]: s["seconds"] for s in x["stages"]}
    wall, wait = x["wall_seconds"], x["http_wait_seconds"]
    extract = stages.get("extract", 0.0)
    decode = max(0.0, x["client_seconds"] - wait)
    staged = sum(stages.values())
    return {
        "read": c["read"], "loaded": c["loaded"], "duplicates": c["duplicate"],
        "rejected": c["rejected"], "unmatched": c["unmatched"],
        "objects_per_s": c["read"] / wall if wall else 0.0,
        "loaded_per_s": c["loaded"] / wall if wall else 0.0,
        "http_share": wait / wall if wall else 0.0,
        "rest_seconds": wall - wait,
        "client_decode_seconds": decode,
        "extract_work_seconds": max(0.0, extract - x["client_seconds"]),
        "other_stages_seconds": staged - extract,
        "outside_stages_seconds": max(0.0, wall - staged),
        "stages": stages,
    }


RUNS = (("payments_full", "pay", "payments, first run (backfill)"),
        ("payments_incremental", "pay", "payments, after the day's refunds"),
        ("shipping_full", "ship", "shipping, first run (backfill)"),
        ("shipping_incremental", "ship", "shipping, after the day's deliveries"))


def _markdown(doc: dict) -> str:
    m = doc["machine"]
    out = [f"""# External API sources (`{doc['command']}`)

{m['date']}; {m['cpu']}, {m['cores']} cores, shared with other work while it ran (read the
ratios within one run); {m['memory_gib']} GiB; PostgreSQL {m['postgresql']}; Python
{m['python']}. The fake server (retail_etl/fakeapi.py, in the benchmark's process, on
loopback) answers every request after {doc['latency_ms']:g} ms; 100 objects a page; each load
is a process of its own (flow.load, as `retail-etl load --source NAME`). Wall time: the
worker's flow.load. HTTP wait: time inside httpx's get (the server's latency and page, the
transfer); the rest is the product's own work (decoding the bodies, flattening and staging
the pages, validate, dedup, merge, ...). See benchmarks/api.py.
"""]
    out.append("| volume | run | objects read | rows loaded | pages | wall s | objects/s "
               "| HTTP wait s | HTTP share | rest s | peak RSS MiB |")
    out.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for v in doc["volumes"]:
        for key, name, label in RUNS:
            if key not in v:
                continue
            x, f = v[key], figures(v[key], name)
            out.append(f"| {v['charges']:,} charges | {label} | {f['read']:,} | {f['loaded']:,} "
                       f"| {x['pages']:,} | {x['wall_seconds']:.1f} | {f['objects_per_s']:,.0f} "
                       f"| {x['http_wait_seconds']:.1f} | {f['http_share']:.0%} "
                       f"| {f['rest_seconds']:.1f} | {x['peak_rss_mib']:,.0f} |")
    out.append("")
    out.append("Where the time other than the HTTP wait went (seconds):\n")
    out.append("| volume | run | latency floor (requests x latency) | client decode "
               "| extract work (flatten, raw pages, staging) | other stages | outside stages "
               "| the largest other stages |")
    out.append("|---|---|--:|--:|--:|--:|--:|---|")
    for v in doc["volumes"]:
        for key, name, label in RUNS:
            if key not in v:
                continue
            x, f = v[key], figures(v[key], name)
            top = sorted(((s, t) for s, t in f["stages"].items() if s != "extract"),
                         key=lambda st: -st[1])[:4]
            out.append(f"| {v['charges']:,} | {label} | {x['latency_floor_seconds']:.1f} "
                       f"| {f['client_decode_seconds']:.1f} | {f['extract_work_seconds']:.1f} "
                       f"| {f['other_stages_seconds']:.1f} | {f['outside_stages_seconds']:.1f} "
                       f"| {', '.join(f'{s} {t:.1f}' for s, t in top)} |")
    out.append("")
    out.append("*Latency floor*: the requests times the configured latency, the part of the HTTP "
               "wait no client can shorten one page after another (the rest of it is the fake "
               "server's Python and the transfer). *Client decode*: the bodies' text decode and "
               "json.loads in the source's client (counted in ApiExtract.http_seconds). *Outside "
               "stages*: the run's wall time no stage accounts for; with a big warehouse it is "
               "mostly the count of the run's lines whose order is not in `fact_sales` "
               "(kinds/fact_by_partition.py `_unmatched`, run between the stages).")
    warned = [f"- {v['charges']:,} charges, {label}: {'; '.join(v[key]['warnings'])}"
              for v in doc["volumes"] for key, _, label in RUNS
              if key in v and v[key].get("warnings")]
    if warned:
        out.append("")
        out.append("Runs that ended `warning` (data-quality alerts; loaded all the same):\n")
        out.extend(warned)
        out.append("\nA payments backfill reads every charge twice (the charge, and its "
                   "creation event), so about half its objects are duplicates, past the "
                   "default `max_duplicate_rate` (0.2).")
    out.append("")
    out.append("The data (untimed):\n")
    out.append("| volume | charges | events | trackers | orders from | history() s "
               "| sales load s | the day |")
    out.append("|---|--:|--:|--:|---|--:|--:|---|")
    for v in doc["volumes"]:
        day = v["payments_day"]
        ship = v.get("shipping_day")
        what = (f"{day['refunds']} refunds ({day['partial']} partial)"
                + (f"; {ship['delivered']} parcels delivered (of {ship['under_way']:,} under "
                   "way)" if ship else ""))
        out.append(f"| {v['charges']:,} | {v['charges']:,} | {v['events']:,} | "
                   f"{v['trackers']:,} | drop of {v['drop_lines']:,} lines | "
                   f"{v['history_seconds']:.0f} | {v['sales_load_seconds']:.0f} | {what} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.api",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--charges", default="100k,1m", help="charges per volume, e.g. 100k,1m")
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="the fake server's latency per request")
    ap.add_argument("--refunds", type=int, default=300,
                    help="refunds (and parcels delivered) before the incremental runs")
    ap.add_argument("--apis", default="payments,shipping",
                    help="payments, or payments,shipping")
    ap.add_argument("--out", type=Path, help="results directory (default benchmarks/results)")
    ap.add_argument("--keep", action="store_true", help="leave benchmarks/cache/api behind")
    ap.add_argument("--smoke", action="store_true",
                    help=f"{SMOKE_CHARGES:,} charges, 2 ms, results in a temp dir")
    # internal: one load in a worker process
    ap.add_argument("--one", choices=sorted(API_OF), help=argparse.SUPPRESS)
    ap.add_argument("--dsn", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        worker(a.one, a.dsn, a.data_dir)
        return 0
    a.apis = {x.strip() for x in a.apis.split(",") if x.strip()}
    if a.smoke:
        volumes, a.latency_ms, a.refunds = [SMOKE_CHARGES], 2.0, 20
        out = a.out or Path(tempfile.mkdtemp(prefix="retail-etl-bench-api-"))
    else:
        volumes = [parse_volume(v) for v in a.charges.split(",") if v.strip()]
        out = a.out or HERE / "results"

    from benchmarks import report as bench_report

    cache = HERE / "cache"
    started = time.perf_counter()
    with own_cluster("api", keep=a.keep) as (root, cluster):
        doc = {"machine": bench_report.machine(cluster),
               "command": "python -m benchmarks.api " + " ".join(
                   sys.argv[1:] if argv is None else argv),
               "latency_ms": a.latency_ms, "page_size": PAGE_SIZE, "refunds": a.refunds,
               "volumes": [bench_volume(cluster, root, cache, n, a) for n in volumes]}
    doc["wall_seconds"] = round(time.perf_counter() - started, 1)
    for v in doc["volumes"]:
        for key, name, _ in RUNS:
            if key in v:
                v[key]["figures"] = figures(v[key], name)
    out.mkdir(parents=True, exist_ok=True)
    (out / "api.json").write_text(json.dumps(doc, indent=2, default=str))
    md = _markdown(doc)
    (out / "api.md").write_text(md)
    print(md)
    log(f"wrote {out / 'api.md'}, {out / 'api.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
