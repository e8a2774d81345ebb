"""Notifications of a failed (or warned) run: a JSON POST to a webhook (Slack-compatible:
`text` is the message, the rest is for programs) and/or a mail over SMTP. Retried with
backoff within one deadline (notify.timeout_seconds); a notification that cannot be sent
is logged, never raised: it neither blocks nor fails the run. Secrets are scrubbed."""

from __future__ import annotations

import smtplib
import ssl
import time
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlparse

import httpx
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from retail_etl.config import Settings
from retail_etl.monitor.log import log
from retail_etl.monitor.redact import scrub


class _Again(Exception):
    """A 5xx or 429 answer: worth another attempt."""


def _transient(e: BaseException) -> bool:
    return isinstance(e, (_Again, httpx.TransportError, OSError, smtplib.SMTPException))


def message(run_id: int | None, status: str, stage: str | None, error: str | None,
            counts: dict, warnings: list[str], source: str) -> dict:
    what = f"run {run_id}" if run_id else "a run"
    text = {"failed": f"retail-etl {what} of {source} failed"
                      + (f" at stage {stage}" if stage else "") + f": {error}",
            "warning": f"retail-etl {what} of {source} loaded with warnings: "
                       + "; ".join(warnings)}.get(status, f"retail-etl {what}: {status}")
    return {"text": text, "run_id": run_id, "status": status, "source": source,
            "stage": stage, "error": error, "warnings": warnings, "counts": counts,
            "link": f"retail-etl runs --show {run_id}" if run_id else "retail-etl runs"}


def send(settings: Settings, payload: dict) -> dict[str, bool]:
    """Send to every configured channel; returns {channel: delivered}."""
    n = settings.notify
    payload = {k: (scrub(v, settings) if isinstance(v, str) else v) for k, v in payload.items()}
    payload["warnings"] = [scrub(w, settings) for w in payload.get("warnings") or []]
    deadline = time.monotonic() + n.timeout_seconds
    sent = {}
    for channel, url, fn in (("webhook", n.webhook_url, _post), ("smtp", n.smtp_url, _mail)):
        if not url:
            continue
        try:
            _retrying(deadline)(fn)(settings, url, payload, deadline)
            sent[channel] = True
            log.info("notified", channel=channel, status=payload["status"])
        except Exception as e:
            sent[channel] = False
            log.warning("notify_failed", channel=channel,
                        error=scrub(f"{type(e).__name__}: {e}".splitlines()[0], settings))
    return sent


def _retrying(deadline: float):
    left = max(deadline - time.monotonic(), 0.1)
    return retry(retry=retry_if_exception(_transient), reraise=True,
                 stop=stop_after_attempt(4) | stop_after_delay(left),
                 wait=wait_random_exponential(multiplier=0.25, max=2))


def _timeout(deadline: float) -> float:
    return max(min(deadline - time.monotonic(), 5.0), 0.1)


def _post(settings: Settings, url: str, payload: dict, deadline: float) -> None:
    r = httpx.post(url, json=payload, timeout=_timeout(deadline))
    if r.status_code >= 500 or r.status_code == 429:
        raise _Again(f"the webhook answered {r.status_code}")
    r.raise_for_status()  # another 4xx: retrying will not help


def _mail(settings: Settings, url: str, payload: dict, deadline: float) -> None:
    n = settings.notify
    if not n.mail_to:
        raise ValueError("notify.mail_to is empty")
    u = urlparse(url)
    mail = EmailMessage()
    mail["Subject"] = payload["text"][:150]
    mail["From"], mail["To"] = n.mail_from, ", ".join(n.mail_to)
    mail.set_content(payload["text"] + "\n\n" + "\n".join(
        f"{k}: {v}" for k, v in payload.items() if k != "text" and v))
    cls = smtplib.SMTP_SSL if u.scheme == "smtps" else smtplib.SMTP
    with cls(u.hostname or "localhost", u.port or (465 if u.scheme == "smtps" else 25),
             timeout=_timeout(deadline)) as smtp:
        if parse_qs(u.query).get("starttls") == ["1"]:
            smtp.starttls(context=ssl.create_default_context())
        if u.username:
            smtp.login(unquote(u.username), unquote(u.password or ""))
        smtp.send_message(mail)
