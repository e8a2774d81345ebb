"""A fake HTTP server, on loopback, for the two external APIs the payment and shipping
sources read: Stripe-style charges and events (/v1) and EasyPost-style trackers (/v2).

Why: their extract must page, filter incrementally, authenticate and survive rate limits,
5xx answers, dropped connections and garbage, and none of that can be tested against the
real services. This serves just enough of both APIs, with faults on demand (`fail_next`,
`rate_429`, `rate_5xx`, `latency_ms`) and a log of every request (`requests`) so that tests
can count attempts and measure the waits between them. Stdlib only.

Order of checks per request: the `fail_next` queue, then the random faults, then the route
(404), then the key (401), then the answer. The trackers' start_datetime/end_datetime filter
on `updated_at` (the real API filters on created_at): incremental reads then see status
changes of old trackers, which is what a sync needs.

Each list is sorted (newest first) once and kept with an id -> position index, so a page
costs its own objects, not a sort and a scan of the whole list (benchmarks/api.py serves a
million charges). The sorted view is rebuilt when the list is another object, changes
length, or a mutator ran; the views hold the same dicts, so a status or refund changed in
place shows at once. Editing an object's id or created/created_at in place, or replacing
a list item, without a mutator is not seen: assign a new list instead.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import socket
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

STRIPE_LIST_PATHS = {"/v1/charges": "charges", "/v1/events": "events"}
TRACKERS_PATH = "/v2/trackers"
STRIPE_DEFAULT_LIMIT = 10
TRACKERS_DEFAULT_PAGE_SIZE = 20  # EasyPost's default
CREATED_FILTERS = {"gte": int.__ge__, "gt": int.__gt__, "lte": int.__le__, "lt": int.__lt__}
STATUS_EVENTS = {"succeeded": "charge.succeeded", "failed": "charge.failed"}
GARBAGE = b'{"data": ['
DROP_BODY = b'{"object": "list", "data": [{"id": "ch_'


class _BadRequest(Exception):
    """A query parameter the API would refuse: 400 with this message."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


class FakeApi:
    """The fake server. `with FakeApi(charges=[...], token="sk_test_1") as api:` serves on
    api.base_url until the block ends. The knobs (max_page_size, latency_ms, rate_429,
    retry_after, rate_5xx, fail_next) are plain attributes, read per request, so tests may
    change them while it runs."""

    def __init__(self, charges: list[dict] | None = None, events: list[dict] | None = None,
                 trackers: list[dict] | None = None, token: str = "sk_test_1", *,
                 max_page_size: int = 100, latency_ms: float = 0, rate_429: float = 0.0,
                 retry_after: str | None = "1", rate_5xx: float = 0.0,
                 fail_next: list[int | str] | None = None, seed: int = 0):
        # copies: the server owns its state, the caller's lists stay as they were
        self.charges: list[dict] = copy.deepcopy(list(charges or []))
        self.events: list[dict] = copy.deepcopy(list(events or []))
        self.trackers: list[dict] = copy.deepcopy(list(trackers or []))
        self.token = token
        self.max_page_size = max_page_size
        self.latency_ms = latency_ms
        self.rate_429 = rate_429
        self.retry_after = retry_after
        self.rate_5xx = rate_5xx
        self.fail_next: list[int | str] = list(fail_next or [])  # int, "drop" or "garbage"
        self.requests: list[dict] = []
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._event_counter = 0
        # kind -> (stamp, newest first, id -> first position in it); kind -> (stamp, id -> object)
        self._views: dict[str, tuple[tuple, list[dict], dict]] = {}
        self._ids: dict[str, tuple[tuple, dict]] = {}
        self._versions = {"charges": 0, "events": 0, "trackers": 0}  # bumped by the mutators
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> FakeApi:
        if self._server is not None:
            return self
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},  # a quick stop()
                                        name="fakeapi", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeApi:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeApi is not running: call start() or use it in a with block")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- mutators for tests -----------------------------------------------------------------

    def add_charge(self, charge: dict, event_type: str = "charge.succeeded") -> dict:
        """Append the charge and an event of event_type at its `created`; the event."""
        with self._lock:
            self.charges.append(copy.deepcopy(charge))
            self._changed("charges")
            return self._add_event(event_type, charge["created"], charge)

    def refund(self, charge_id: str, amount_cents: int, at: int) -> dict:
        """Refund amount_cents more of the charge (refunded once all of it is) and append a
        charge.refunded event at `at`; the event."""
        with self._lock:
            charge = self._charge(charge_id)
            refunded = charge["amount_refunded"] + amount_cents
            if amount_cents <= 0 or refunded > charge["amount"]:
                raise ValueError(f"cannot refund {amount_cents} of {charge_id}: "
                                 f"{charge['amount_refunded']} of {charge['amount']} refunded")
            charge["amount_refunded"] = refunded
            charge["refunded"] = refunded == charge["amount"]
            return self._add_event("charge.refunded", at, charge)

    def set_charge_status(self, charge_id: str, status: str, at: int) -> dict:
        """Set the charge's status (paid = succeeded) and append charge.succeeded,
        charge.failed or, for any other status, charge.updated at `at`; the event."""
        with self._lock:
            charge = self._charge(charge_id)
            charge["status"] = status
            charge["paid"] = status == "succeeded"
            return self._add_event(STATUS_EVENTS.get(status, "charge.updated"), at, charge)

    def add_tracker(self, tracker: dict) -> None:
        with self._lock:
            self.trackers.append(copy.deepcopy(tracker))
            self._changed("trackers")

    def update_tracker(self, tracker_id: str, status: str, at_iso: str) -> None:
        """The tracker moves to `status` at at_iso (updated_at, and a tracking detail)."""
        with self._lock:
            tracker = self._by_id("trackers").get(tracker_id)
            if tracker is None:
                raise KeyError(tracker_id)
            tracker["status"] = status  # (updated_at is a filter, not the order: no re-sort)
            tracker["updated_at"] = at_iso
            tracker.setdefault("tracking_details", []).append(
                {"status": status, "datetime": at_iso})

    def _charge(self, charge_id: str) -> dict:
        charge = self._by_id("charges").get(charge_id)
        if charge is None:
            raise KeyError(charge_id)
        return charge

    def _add_event(self, event_type: str, at: int, charge: dict) -> dict:
        self._event_counter += 1
        event = {"id": f"evt_fake{self._event_counter:010d}", "object": "event",
                 "type": event_type, "created": at,
                 "data": {"object": copy.deepcopy(charge)}}  # the charge as it is now
        self.events.append(event)
        self._changed("events")
        return copy.deepcopy(event)

    # -- the sorted views (under the lock) --------------------------------------------------

    def _changed(self, kind: str) -> None:
        self._versions[kind] += 1

    def _stamp(self, kind: str) -> tuple:
        items = getattr(self, kind)
        return id(items), len(items), self._versions[kind]

    def _by_id(self, kind: str) -> dict:
        """id -> the first object of the list with it (list order, as a scan finds it)."""
        stamp = self._stamp(kind)
        cached = self._ids.get(kind)
        if cached is None or cached[0] != stamp:
            index: dict = {}
            for o in getattr(self, kind):
                index.setdefault(o.get("id"), o)
            cached = self._ids[kind] = (stamp, index)
        return cached[1]

    def _view(self, kind: str, key) -> tuple[list[dict], dict]:
        """The list sorted by key, newest first, and id -> its first position there; built
        again only when _stamp changed (a key that raises builds nothing, every time)."""
        stamp = self._stamp(kind)
        cached = self._views.get(kind)
        if cached is None or cached[0] != stamp:
            ordered = sorted(getattr(self, kind), key=key, reverse=True)
            positions: dict = {}
            for i, o in enumerate(ordered):
                positions.setdefault(o["id"], i)
            cached = self._views[kind] = (stamp, ordered, positions)
        return cached[1], cached[2]

    # -- serving (called from the handler threads) ------------------------------------------

    def _next_fault(self) -> tuple[int | str | None, int | str | None]:
        """(the fault this request gets, its name in the log), or (None, None): the queue
        first, then the random rates (one draw per request not served from the queue, so a
        seed gives the same sequence for the same requests)."""
        with self._lock:
            if self.fail_next:
                fault = self.fail_next.pop(0)
                return fault, fault
            draw = self._random.random()
        if draw < self.rate_429:
            return 429, "rate_429"
        if draw < self.rate_429 + self.rate_5xx:
            return 503, "rate_5xx"
        return None, None

    def _log(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def _answer(self, path: str, query: dict[str, str]) -> tuple[int, dict]:
        """The status and JSON body for a request that passed routing and auth."""
        with self._lock:  # pages are built (and copied by the caller's dumps) under the lock
            try:
                if path in STRIPE_LIST_PATHS:
                    return 200, self._stripe_page(path, query)
                return 200, self._trackers_page(query)
            except _BadRequest as e:
                if path in STRIPE_LIST_PATHS:
                    return 400, {"error": {"type": "invalid_request_error", "message": str(e),
                                           "param": e.param}}
                return 400, {"error": {"code": "PARAMETER.INVALID", "message": str(e),
                                       "field": e.param}}

    def _stripe_page(self, path: str, query: dict[str, str]) -> dict:
        kind = STRIPE_LIST_PATHS[path]
        items, positions = self._view(kind, lambda o: (_created(o), o["id"]))
        limit = _int_param(query, "limit", STRIPE_DEFAULT_LIMIT, self.max_page_size)
        bounds, floors = [], []  # floors: the lower bounds, as the least `created` kept
        for op, test in CREATED_FILTERS.items():
            name = f"created[{op}]"
            if name in query:
                bounds.append((test, _int_param(query, name, None, None, minimum=None)))
                if op in ("gte", "gt"):
                    floors.append(bounds[-1][1] + (op == "gt"))
        wanted_type = query.get("type")

        def keep(o: dict) -> bool:
            if not all(test(_created(o), bound) for test, bound in bounds):
                return False
            if wanted_type is None:
                return True
            if wanted_type.endswith("*"):
                return o["type"].startswith(wanted_type[:-1])
            return o["type"] == wanted_type

        # newest first: past the strictest lower bound on created, nothing more can match
        floor = max(floors) if floors else None
        first = _after(positions, query.get("starting_after"), "starting_after", kind[:-1])
        page, has_more = _take(items, first, keep, limit,
                               None if floor is None else lambda o: _created(o) < floor)
        return {"object": "list", "url": path, "data": page, "has_more": has_more}

    def _trackers_page(self, query: dict[str, str]) -> dict:
        items, positions = self._view("trackers", lambda t: (
            _iso(t["created_at"], "created_at"), t["id"]))
        page_size = _int_param(query, "page_size", TRACKERS_DEFAULT_PAGE_SIZE,
                               self.max_page_size)
        start = _iso(query["start_datetime"], "start_datetime") if "start_datetime" in query \
            else None
        end = _iso(query["end_datetime"], "end_datetime") if "end_datetime" in query else None

        def keep(t: dict) -> bool:
            updated = _iso(t["updated_at"], "updated_at")
            return (start is None or updated >= start) and (end is None or updated < end)

        first = _after(positions, query.get("before_id"), "before_id", "tracker")
        page, has_more = _take(items, first, keep, page_size)
        return {"trackers": page, "has_more": has_more}

    def _auth_ok(self, path: str, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, credentials = header.partition(" ")
        if path == TRACKERS_PATH or path.startswith("/v2/"):
            if scheme.lower() != "basic":
                return False
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return False
            return decoded == f"{self.token}:"
        return scheme.lower() == "bearer" and credentials.strip() == self.token


def _int_param(query: dict[str, str], name: str, default: int | None, cap: int | None,
               minimum: int | None = 1) -> int:
    if name not in query:
        return default
    try:
        value = int(query[name])
    except ValueError:
        raise _BadRequest(f"Invalid integer: {query[name]!r}", name) from None
    if minimum is not None and value < minimum:
        raise _BadRequest(f"{name} must be at least {minimum}", name)
    return value if cap is None else min(value, cap)


def _iso(value: str, name: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _BadRequest(f"Invalid datetime for {name}: {value!r}", name) from None


def _after(positions: dict, cursor: str | None, param: str, noun: str) -> int:
    """Where the items after the one with id `cursor` begin (0 without a cursor), from the
    view's id -> position; the cursor is looked up before any filter, so a filtered-out
    object still works as one."""
    if cursor is None:
        return 0
    i = positions.get(cursor)
    if i is None:
        raise _BadRequest(f"No such {noun}: '{cursor}'", param)
    return i + 1


def _take(items: list[dict], start: int, keep, limit: int,
          past=None) -> tuple[list[dict], bool]:
    """The first `limit` items from `start` on that `keep` accepts, and whether there are
    more; `past(o)` true means neither o nor any item after it can be kept."""
    page: list[dict] = []
    for i in range(start, len(items)):
        o = items[i]
        if past is not None and past(o):
            break
        if keep(o):
            if len(page) == limit:
                return page, True
            page.append(o)
    return page, False


def _error_body(method: str, path: str, status: int) -> dict:
    """An error body in the style of the API the path belongs to."""
    easypost = path.startswith("/v2/")
    if status == 401:
        if easypost:
            return {"error": {"code": "APIKEY.INVALID",
                              "message": "Invalid or missing API key. Please check the key."}}
        # never the caller's key, not even its start: logs and error reports copy bodies
        return {"error": {"type": "invalid_request_error",
                          "message": "Invalid API Key provided: sk_***"}}
    if status == 404:
        code, message = "NOT_FOUND", f"Unrecognized request URL ({method}: {path})"
    elif status == 429:
        code, message = "RATE_LIMITED", "Too many requests hit the API too quickly."
    elif status >= 500:
        code, message = "SERVICE.UNAVAILABLE", "The service is temporarily unavailable."
    else:
        code, message = "BAD_REQUEST", f"Request failed with status {status}."
    if easypost:
        return {"error": {"code": code, "message": message}}
    kind = ("rate_limit_error" if status == 429 else "api_error" if status >= 500
            else "invalid_request_error")
    return {"error": {"type": kind, "message": message}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeApi


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients use the real APIs
    server: _Server
    timeout = 30  # an idle keep-alive connection ends, its thread with it
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

    def do_GET(self) -> None:  # the name http.server calls
        self._serve()

    def do_POST(self) -> None:
        self.close_connection = True  # the body is not read
        self._serve()

    do_PUT = do_PATCH = do_DELETE = do_POST

    def log_message(self, format, *args) -> None:  # quiet: tests read `requests`
        pass

    def _serve(self) -> None:
        api = self.server.api
        arrived = time.monotonic()
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(parse_qsl(url.query, keep_blank_values=True))  # %5B -> [ etc.
        auth_ok = api._auth_ok(path, self.headers.get("Authorization"))
        entry = {"path": path, "query": query, "status": None, "at": arrived,
                 "auth_ok": auth_ok, "fault": None}
        fault, entry["fault"] = api._next_fault()
        if api.latency_ms:
            time.sleep(api.latency_ms / 1000)

        if fault == "drop":
            self._drop(api, entry)
            return
        if fault == "garbage":
            self._send(api, entry, 200, GARBAGE)
            return
        if fault is not None and not isinstance(fault, int):  # a typo must not pass as no fault
            self._send_json(api, entry, 500, {"error": {"message": f"bad fail_next: {fault!r}"}})
            return
        if isinstance(fault, int):
            self._send_json(api, entry, fault, _error_body(self.command, path, fault))
            return

        known = self.command == "GET" and (path in STRIPE_LIST_PATHS or path == TRACKERS_PATH)
        if not known:
            self._send_json(api, entry, 404, _error_body(self.command, path, 404))
        elif not auth_ok:
            self._send_json(api, entry, 401, _error_body(self.command, path, 401))
        else:
            status, body = api._answer(path, query)
            self._send_json(api, entry, status, body)

    def _send_json(self, api: FakeApi, entry: dict, status: int, body: dict) -> None:
        with api._lock:  # the objects may change under a concurrent mutator otherwise
            data = json.dumps(body).encode()
        self._send(api, entry, status, data)

    def _send(self, api: FakeApi, entry: dict, status: int, data: bytes) -> None:
        entry["status"] = status
        api._log(entry)  # before the answer: a client that has it finds its request logged
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429 and api.retry_after is not None:  # (a callable: made per answer)
            value = api.retry_after() if callable(api.retry_after) else api.retry_after
            self.send_header("Retry-After", value)
        self.end_headers()
        self.wfile.write(data)

    def _drop(self, api: FakeApi, entry: dict) -> None:
        """A status line, headers promising a body, part of it, then the socket shut down."""
        entry["status"] = 200
        api._log(entry)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(DROP_BODY) * 10))
        self.end_headers()
        self.wfile.write(DROP_BODY)
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


def _created(o: dict) -> int:
    """An object's `created` for ordering and filters; a malformed one (a test's bad
    object) sorts as the epoch rather than break the page."""
    c = o.get("created")
    return c if isinstance(c, int) and not isinstance(c, bool) else 0
