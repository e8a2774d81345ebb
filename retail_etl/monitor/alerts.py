"""Data-quality alerts: per-entity thresholds (settings.quality) on a run's counts, checked
inside the run's transaction before it commits. A run past one commits as `warning` and
notifies; with fail_on_warning it fails instead (rolled back, nothing loaded)."""

from __future__ import annotations

from retail_etl.config import Settings
from retail_etl.errors import EtlError


class QualityError(EtlError):
    """A data-quality threshold failed the run (fail_on_warning)."""


def check(cur, run, settings: Settings) -> list[str]:
    """The run's alerts, one sentence each (also left in run.warnings)."""
    found = []
    for c in run.counts.values():
        t = settings.thresholds(c.entity)
        if c.read >= max(t.min_rows, 1):
            for what, n, limit in (("reject", c.rejected, t.max_reject_rate),
                                   ("duplicate", c.duplicate, t.max_duplicate_rate)):
                if limit is not None and n / c.read > limit:
                    found.append(f"{c.entity}: {what} rate {n / c.read:.1%} is above "
                                 f"{limit:.1%} ({n} of {c.read} rows read)")
        if t.min_read_ratio is not None:
            usual = _usual_read(cur, run, c.entity, t.history_runs)
            if usual is not None and usual >= t.min_rows and c.read < t.min_read_ratio * usual:
                found.append(f"{c.entity}: {c.read} rows read, under {t.min_read_ratio:.0%} "
                             f"of the usual {usual:.0f} (the median of the last "
                             f"{t.history_runs} runs of these sources)")
    run.warnings = found
    return found


def _usual_read(cur, run, entity: str, history: int) -> float | None:
    """The median rows read of the entity over the last successful runs of the same
    sources (at least 3 of them, else no judgement)."""
    cur.execute("""
        SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY rows_read)::float8, count(*)
        FROM (SELECT e.rows_read FROM etl.runs r JOIN etl.run_entities e USING (run_id)
              WHERE r.status IN ('ok', 'warning') AND r.run_id <> $1 AND e.entity = $2
                AND r.sources = (SELECT sources FROM etl.runs WHERE run_id = $1)
              ORDER BY r.run_id DESC LIMIT $3) last
    """, parameters=(run.run_id, entity, history))
    median, n = cur.fetchone()
    return median if n >= 3 else None


def enforce(run, settings: Settings) -> None:
    if run.warnings and settings.fail_on_warning:
        raise QualityError(f"data-quality check failed: {run.warnings[0]}"
                           + (f" (and {len(run.warnings) - 1} more)" if len(run.warnings) > 1 else ""),
                           hint="fail_on_warning is set; see [quality] in the README")
