"""Real endpoints on loopback for the monitoring tests: an HTTP server that records what
arrives (a webhook, a Pushgateway, an OpenLineage collector) and answers as told, and an
SMTP server (aiosmtpd) that keeps the mail it receives."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Recorder:
    """Every request, in order; `answers` is the status of each successive request (the
    last one repeats), 200 when empty."""

    answers: list[int] = field(default_factory=list)
    got: list[Request] = field(default_factory=list)

    def __post_init__(self):
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                rec.got.append(Request(self.command, self.path, dict(self.headers),
                                       self.rfile.read(n)))
                k = len(rec.got) - 1
                status = rec.answers[min(k, len(rec.answers) - 1)] if rec.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = _any

            def log_message(self, *a):  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Keep:
    def __init__(self):
        self.mail = []

    async def handle_DATA(self, server, session, envelope):
        self.mail.append((envelope.mail_from, list(envelope.rcpt_tos),
                          envelope.content.decode("utf-8", "replace")))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpSink:
    def __init__(self):
        self.keep = _Keep()
        # (aiosmtpd probes the port it was given: it cannot take 0)
        self.controller = Controller(self.keep, hostname="127.0.0.1", port=free_port())
        self.controller.start()

    @property
    def mail(self) -> list[tuple[str, list[str], str]]:
        return self.keep.mail

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.controller.port}"

    def close(self) -> None:
        self.controller.stop()
