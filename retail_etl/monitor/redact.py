"""Secrets out of everything a run sends away (notifications, lineage, logs)."""

from __future__ import annotations

from urllib.parse import urlparse

from retail_etl.config import Settings
from retail_etl.db.connect import redact


def secrets(settings: Settings) -> list[str]:
    """The configured values no message may show: URL passwords, webhook paths (Slack's
    carry the token), tokens set for sources."""
    found = []
    for url in (settings.dsn, settings.notify.webhook_url, settings.notify.smtp_url,
                settings.pushgateway_url, settings.openlineage_url,
                *(getattr(s, "dsn", None) for s in settings.sources.values())):
        if url and "://" in url:
            u = urlparse(url)
            found += [v for v in (u.password, u.path if url == settings.notify.webhook_url
                                  else None) if v and len(v) > 3]
    found += [t.get_secret_value() for s in settings.sources.values()
              if (t := getattr(s, "token", None)) and t.get_secret_value()]
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, settings: Settings) -> str:
    text = redact(text)
    for s in secrets(settings):
        text = text.replace(s, "***")
    return text
