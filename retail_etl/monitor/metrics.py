"""The run's metrics in Prometheus' text format (prometheus-client): written atomically to
a file for node exporter's textfile collector, and pushed to a Pushgateway when one is
configured. The file describes the last run; `retail_etl_last_success_timestamp_seconds`
keeps every source's last success (from the ledger, or carried from the previous file
when the ledger is out of reach), so a failed run never moves it."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

P = "retail_etl_"
OUTCOMES = ("read", "loaded", "merged", "rejected", "duplicate", "inferred", "deleted")
STATUSES = ("ok", "warning", "failed")


def last_successes(ledger) -> dict[str, float]:
    """Each source's last successful run end (unix seconds), from the ledger."""
    with ledger.cursor() as cur:
        cur.execute("""
            SELECT s, extract(epoch FROM max(r.ended_at))::float8
            FROM etl.runs r, unnest(coalesce(r.sources, ARRAY[r.source])) AS s
            WHERE r.status IN ('ok', 'warning') AND r.ended_at IS NOT NULL GROUP BY s
        """)
        return dict(cur.fetchall())


def previous_successes(path: Path | None) -> dict[str, float]:
    """The last successes an earlier run wrote to the file (the ledger may be down)."""
    if path is None or not path.exists():
        return {}
    try:
        for family in text_string_to_metric_families(path.read_text()):
            if family.name == P + "last_success_timestamp_seconds":
                return {s.labels["source"]: s.value for s in family.samples}
    except (OSError, ValueError):
        pass
    return {}


def registry(run, status: str, sources: list[str], successes: dict[str, float],
             retries: dict[str, int]) -> CollectorRegistry:
    """run: the Run (None when the run failed before it had one)."""
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(P + name, doc, labels, registry=reg)

    st = gauge("last_run_status", "1 for the last run's status (ok, warning, failed)", ("status",))
    for s in STATUSES:
        st.labels(s).set(1 if s == status else 0)
    gauge("last_run_success", "1 if the last run committed, else 0").set(status != "failed")
    gauge("last_run_timestamp_seconds", "when the last run ended").set(time.time())
    gauge("last_run_id", "the last run's id in etl.runs").set(run.run_id if run else -1)
    ls = gauge("last_success_timestamp_seconds", "when each source's last successful run "
               "ended", ("source",))
    for source, at in sorted(successes.items()):
        ls.labels(source).set(at)
    rt = gauge("retries", "retries of the last run's connections and reads, by source",
               ("source",))
    for source in sorted(set(sources) | set(retries)):
        rt.labels(source).set(retries.get(source, 0))
    if run is None:
        return reg
    gauge("run_duration_seconds", "the last run's duration").set(run.seconds)
    gauge("run_peak_memory_bytes", "the last run's peak resident memory").set(
        max((s.peak_rss_mb for s in run.stages), default=0) * 1024 * 1024)
    gauge("quality_warnings", "data-quality alerts of the last run").set(len(run.warnings))
    sec = gauge("stage_seconds", "seconds of each stage of the last run", ("stage",))
    for s in run.stages:
        sec.labels(s.name).set(s.seconds)
    if status == "failed":  # a rolled-back run loaded nothing: no row counts
        return reg
    rows = gauge("rows", "rows of the last run by entity and outcome (read = loaded + "
                 "merged + rejected + duplicate)", ("entity", "outcome"))
    for c in run.counts.values():
        for o in OUTCOMES:
            rows.labels(c.entity, o).set(getattr(c, o))
    rej = gauge("rejects", "rows rejected by the last run, by entity and rule", ("entity", "rule"))
    for (entity, rule), n in sorted(run.rejected_by.items()):
        rej.labels(entity, rule).set(n)
    return reg


def publish(reg: CollectorRegistry, metrics_file: Path | None, pushgateway: str | None,
            timeout: float = 5.0) -> None:
    if metrics_file is not None:
        metrics_file.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(metrics_file), reg)  # a temporary file renamed over it
    if pushgateway:
        push_to_gateway(pushgateway, job="retail_etl", registry=reg, timeout=timeout)
