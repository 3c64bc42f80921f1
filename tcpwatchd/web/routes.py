"""What the server answers: a route table (raw and JSON handlers), basic auth and the security headers.

Runs on the server's worker threads: a handler may take milliseconds (rendering /metrics, bcrypt once
per cache period) without stalling the selector thread. Handlers must not do I/O: a scrape renders the
last poll.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from tcpwatchd.web.auth import BasicAuth
from tcpwatchd.web.http import Request, Response

log = logging.getLogger("tcpwatchd")

RawHandler = Callable[[Request], Response]
JsonHandler = Callable[[dict[str, str]], tuple[int, object]]
MAX_QUERY_FIELDS = 64


@dataclass(frozen=True, slots=True)
class Site:
    """Everything the web config decides for a request; swapped whole on reload."""

    auth: BasicAuth | None = None
    headers: tuple[tuple[str, str], ...] = ()
    allowed_sans: frozenset[str] = frozenset()


class Routes:
    """Path -> handler. `add_json("/api/v1/snapshot", handler)` is all a JSON route takes."""

    def __init__(self) -> None:
        self._handlers: dict[str, RawHandler] = {}
        self._lock = threading.Lock()
        self._last_error_log = 0.0

    def add_raw(self, path: str, handler: RawHandler) -> None:
        self._handlers = {**self._handlers, path: handler}  # copy-on-write: workers read without a lock

    def add_json(self, path: str, handler: JsonHandler) -> None:
        """handler(query) -> (status, body); a repeated or excess parameter is a 400 before it runs."""
        self.add_raw(path, lambda req: _json_call(handler, req))

    def paths(self) -> list[str]:
        return sorted(self._handlers)

    def answer(self, req: Request, site: Site) -> Response:
        if req.method not in ("GET", "HEAD"):
            return Response(405, b"", (("Allow", "GET, HEAD"),), close=True)
        if site.auth is not None and not site.auth.allows(req.headers.get("authorization")):
            return Response(401, b"Unauthorized\n", (("WWW-Authenticate", 'Basic realm="tcpwatchd"'),))
        if req.path == "/" and "/" not in self._handlers:
            return Response.text(200, "tcpwatchd\n" + "".join(f"{p}\n" for p in self.paths()))
        handler = self._handlers.get(req.path)
        if handler is None:
            return Response.text(404, "not found\n")
        try:
            return handler(req)
        except Exception as e:  # a bug in one handler must not take the server down
            self._log_error(req.path, e)
            return Response.text(500, "internal error\n")

    def _log_error(self, path: str, e: Exception) -> None:
        with self._lock:  # at most one line a minute: a broken route must not flood the journal
            now = time.monotonic()
            if now - self._last_error_log < 60:
                return
            self._last_error_log = now
        log.error("handler for %s failed: %s: %s", path, type(e).__name__, e)


def _json_call(handler: JsonHandler, req: Request) -> Response:
    try:
        pairs = parse_qsl(req.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        return Response.json(400, {"error": f"more than {MAX_QUERY_FIELDS} query parameters"})
    query: dict[str, str] = {}
    for key, value in pairs:
        if key in query:
            return Response.json(400, {"error": f"parameter {key!r} given more than once"})
        query[key] = value
    status, body = handler(query)
    return Response.json(status, body)


def metrics_handler(registry: CollectorRegistry) -> RawHandler:
    """/metrics as prometheus_client serves it: format by Accept, `name[]` filters, gzip if accepted."""

    def handle(req: Request) -> Response:
        encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        names = _query_lists(req.query).get("name[]")
        body = encoder(registry.restricted_registry(names) if names else registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(req.headers.get("accept-encoding", "")):
            body = gzip.compress(body, compresslevel=6)
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, body, tuple(headers))

    return handle


def _query_lists(query: str) -> Mapping[str, list[str]]:
    try:
        return parse_qs(query, max_num_fields=MAX_QUERY_FIELDS)
    except ValueError:
        return {}
