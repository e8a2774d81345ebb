"""What a scheduler and its operators see of a run: the job log (log.py), the metrics
(metrics.py), data-quality alerts (alerts.py), notifications (notify.py), lineage
(lineage.py), wired around a run by watch.py; and the health check (doctor.py)."""
