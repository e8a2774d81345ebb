"""The job log (structlog): one event per run start and end, stage start and end, source
read, retry and reject rule. Every line carries run_id, stage, source, rows and seconds
(null where they do not apply), so a log shipper can index them. JSON for machines,
console for a person; on stderr, and optionally (always JSON) in a size-rotated file.
Standard-library records (the engine's and its libraries' warnings) take the same shape."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections import Counter
from pathlib import Path

import structlog

KEYS = ("run_id", "stage", "source", "rows", "seconds")
ENGINE = "retail_etl"  # the engine's logger: INFO and up; other libraries: WARNING and up

log = structlog.get_logger(ENGINE)

# retries by source in this process's current run (reset by watch.Watch at its start)
retries: Counter[str] = Counter()


def _every_key(logger, method, event: dict) -> dict:
    for k in KEYS:
        event.setdefault(k, None)
    return event


class _Stderr(logging.Handler):
    """Writes to the sys.stderr of the moment (a test runner, or rich's progress, swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


_SHARED = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _every_key,
]


def _formatter(renderer) -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer])


def resolve(fmt: str) -> str:
    """auto: console when stderr is a terminal, JSON otherwise (a scheduler, a pipe)."""
    if fmt == "auto":
        return "console" if sys.stderr.isatty() else "json"
    return fmt


def configure(fmt: str = "auto", file: Path | None = None, *, max_mb: float = 10.0,
              backups: int = 5, debug: bool = False) -> None:
    """Idempotent: the handlers of an earlier call are replaced."""
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_SHARED,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    json_renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
    stderr = _Stderr()
    stderr.setFormatter(_formatter(
        json_renderer if resolve(fmt) == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())))
    handlers: list[logging.Handler] = [stderr]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            file, maxBytes=int(max_mb * 1024 * 1024), backupCount=backups, encoding="utf-8")
        rotating.setFormatter(_formatter(json_renderer))
        handlers.append(rotating)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger(ENGINE).setLevel(logging.DEBUG if debug else logging.INFO)
    if fmt == "auto" and resolve(fmt) == "console" and not debug:
        # a person at a terminal who did not ask for the log sees the progress bars and
        # the summary, and of the log only the warnings (a log_file still gets it all)
        stderr.setLevel(logging.WARNING)


def configure_from(settings, fmt: str | None = None, *, debug: bool = False) -> None:
    """The log as the settings (and a --log-format flag over them) say."""
    configure(fmt or settings.log_format, settings.log_file, max_mb=settings.log_file_max_mb,
              backups=settings.log_file_backups, debug=debug)


def bind(**values) -> None:
    """Keys every following line carries (the run id, the source being read)."""
    structlog.contextvars.bind_contextvars(**values)


def unbind(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)


def retried(source: str | None):
    """A tenacity `before_sleep`: each retry is a log event and counts for its source."""

    def before_sleep(state) -> None:
        from retail_etl.db.connect import redact

        name = source or structlog.contextvars.get_contextvars().get("source") or "warehouse"
        retries[name] += 1
        err = state.outcome.exception() if state.outcome else None
        log.warning("retry", source=name, attempt=state.attempt_number,
                    wait_seconds=round(state.next_action.sleep, 3) if state.next_action else None,
                    error=redact(str(err).splitlines()[0]) if err else None)

    return before_sleep
