"""OpenLineage run events (spec 2-0-2): START when a run opens, then COMPLETE or FAIL with
the same runId; inputs are the files and source tables it read, outputs the warehouse
tables with the rows it wrote (outputStatistics). Sent to an HTTP endpoint (Marquez'
/api/v1/lineage when the URL has no path) or appended as JSON lines to a file; off unless
openlineage_url is set. Bounded and best effort, like the notifications."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

from retail_etl import __version__
from retail_etl.monitor.log import log

PRODUCER = f"https://pypi.org/project/retail-etl/{__version__}"
SPEC = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent"
NAMESPACE = "retail-etl"


def _facet(name: str, **fields) -> dict:
    return {"_producer": PRODUCER,
            "_schemaURL": f"https://openlineage.io/spec/facets/1-0-0/{name}.json", **fields}


def _pg_namespace(dsn: str) -> tuple[str, str]:
    """(namespace, database) of a postgresql:// DSN, as OpenLineage names PostgreSQL."""
    u = urlparse(dsn)
    return f"postgres://{u.hostname or 'localhost'}:{u.port or 5432}", u.path.lstrip("/")


def inputs(read: list[dict]) -> list[dict]:
    seen, out = set(), []
    for d in read:
        if d["kind"] == "file":
            ns, name = "file", d["name"]
        elif d["kind"] == "api":  # the API's origin, then its path
            u = urlparse(d["name"])
            ns, name = f"{u.scheme}://{u.netloc}", u.path
        else:
            ns, db = _pg_namespace(d["dsn"])
            name = f"{db}.{d['name'] if '.' in d['name'] else 'public.' + d['name']}"
        if (ns, name) not in seen:
            seen.add((ns, name))
            out.append({"namespace": ns, "name": name})
    return out


def outputs(dsn: str, written: dict[str, int]) -> list[dict]:
    """written: {schema.table: rows written by the run}."""
    ns, db = _pg_namespace(dsn)
    return [{"namespace": ns, "name": f"{db}.{table}",
             "outputFacets": {"outputStatistics": _facet("OutputStatisticsOutputDatasetFacet",
                                                         rowCount=rows)}}
            for table, rows in sorted(written.items())]


def event(kind: str, run_id: str, job: str, ins: list[dict], outs: list[dict],
          error: str | None = None, ledger_run: int | None = None) -> dict:
    facets = {}
    if error:
        facets["errorMessage"] = _facet("ErrorMessageRunFacet", message=error,
                                        programmingLanguage="python")
    if ledger_run is not None:  # the run's id in etl.runs, for `retail-etl runs --show`
        facets["retail_etl"] = _facet("RetailEtlRunFacet", etl_run_id=ledger_run)
    return {"eventType": kind, "eventTime": datetime.now(UTC).isoformat(),
            "producer": PRODUCER, "schemaURL": SPEC,
            "run": {"runId": run_id, "facets": facets},
            "job": {"namespace": NAMESPACE, "name": job},
            "inputs": ins, "outputs": outs}


def new_run_id() -> str:
    return str(uuid.uuid4())


def emit(url: str, ev: dict, timeout: float = 5.0) -> bool:
    """One event; False (and a log line) when it could not be sent."""
    try:
        u = urlparse(url)
        if u.scheme in ("http", "https"):
            target = url if u.path not in ("", "/") else url.rstrip("/") + "/api/v1/lineage"
            httpx.post(target, json=ev, timeout=timeout).raise_for_status()
        else:
            path = Path(u.path if u.scheme == "file" else url)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(ev) + "\n")
        return True
    except Exception as e:
        log.warning("lineage_failed", event_type=ev["eventType"],
                    error=f"{type(e).__name__}: {e}".splitlines()[0])
        return False
