"""A run as its operators see it: the job log's run events, then, once it has ended, the
metrics, the notification and the lineage. Nothing here can fail or hold a run: every
channel is bounded and its own failure is a log line."""

from __future__ import annotations

from retail_etl.config import Settings
from retail_etl.monitor import lineage, log, metrics, notify
from retail_etl.monitor.redact import scrub
from retail_etl.spec import Project


class Watch:
    def __init__(self, settings: Settings, project: Project, dsn: str, sources: list[str],
                 label: str):
        self.settings, self.project, self.dsn = settings, project, dsn
        self.sources, self.label = sources, label
        self.job = "load." + "+".join(sources)
        self.lineage_id = lineage.new_run_id()
        log.retries.clear()

    def started(self, run) -> None:
        log.bind(run_id=run.run_id)
        log.log.info("run_start", sources=self.sources, label=self.label)
        self._lineage("START", run)

    def succeeded(self, run, ledger) -> None:
        for w in run.warnings:
            log.log.warning("quality_warning", message=w)
        log.log.info("run_end", status=run.status, seconds=round(run.seconds, 3),
                     rows=sum(c.read for c in run.counts.values()),
                     counts={k: vars(v) for k, v in run.counts.items()})
        self._publish(run, run.status, ledger)
        if run.warnings and "warning" in self.settings.notify.on:
            self._notify(run, "warning", None, None)
        self._lineage("COMPLETE", run)
        log.unbind("run_id")

    def failed(self, run, message: str, ledger) -> None:
        message = scrub(message, self.settings)
        stage = run.failed_stage if run else None
        log.log.error("run_failed", stage=stage, error=message,
                      seconds=round(run.seconds, 3) if run else None)
        self._publish(run, "failed", ledger)
        if "failure" in self.settings.notify.on:
            self._notify(run, "failed", stage, message)
        self._lineage("FAIL", run, message)
        log.unbind("run_id")

    # ---- the channels ----

    def _publish(self, run, status: str, ledger) -> None:
        s = self.settings
        if s.metrics_file is None and not s.pushgateway_url:
            return
        try:
            try:
                successes = metrics.last_successes(ledger)
            except Exception:  # the ledger is out of reach: keep what the last file said
                successes = metrics.previous_successes(s.metrics_file)
            reg = metrics.registry(run, status, self.sources, successes, dict(log.retries))
            metrics.publish(reg, s.metrics_file, s.pushgateway_url)
        except Exception as e:
            log.log.warning("metrics_failed", error=scrub(str(e).splitlines()[0], s))

    def _notify(self, run, status: str, stage: str | None, error: str | None) -> None:
        n = self.settings.notify
        if not (n.webhook_url or n.smtp_url):
            return
        counts = {k: {o: getattr(v, o) for o in metrics.OUTCOMES}
                  for k, v in (run.counts.items() if run else [])}
        notify.send(self.settings, notify.message(
            run.run_id if run else None, status, stage, error, counts,
            run.warnings if run else [], "+".join(self.sources)))

    def _lineage(self, kind: str, run, error: str | None = None) -> None:
        url = self.settings.openlineage_url
        if not url:
            return
        ins = lineage.inputs(run.inputs) if run else []
        outs = []
        if kind == "COMPLETE":
            written = {}
            for p in self.project.pipelines:
                entity = getattr(p, "entity", None)
                if entity is not None and entity.name in run.counts:
                    c = run.counts[entity.name]
                    written[p.table] = c.loaded + c.inferred
            outs = lineage.outputs(self.dsn, written)
        lineage.emit(url, lineage.event(kind, self.lineage_id, self.job, ins, outs, error,
                                        run.run_id if run else None))
