"""A small HTTP server that answers `GET /api/v1/snapshot` from the fixture document, as docs/api.md says.

It filters (`process`, `namespace`, `pod` as shell globs; `kind`), pages, refuses bad parameters with
400, can demand basic auth, and advances `poll.number` every `interval` seconds, so that a client sees
polls go by. Runs in a thread of the test; `stop()` closes the socket (the daemon "goes away").
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "api" / "snapshot_v1.json"
KINDS = {"close_wait", "phantom", "reconnect_storm", "keepalive_off", "stalled_receive", "unresponsive_peer"}


def load_fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def _match(pattern: str, value: str) -> bool:
    return not pattern or value == pattern or fnmatch.fnmatchcase(value, pattern)


def answer(doc: dict[str, Any], params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """(status, body) for a query, following docs/api.md."""
    kind = params.get("kind", "")
    if kind and kind not in KINDS:
        return 400, {"error": f"unknown kind {kind!r}"}
    try:
        page, per_page = int(params.get("page", "1")), int(params.get("per_page", "100"))
    except ValueError:
        return 400, {"error": "page and per_page are integers"}
    if page < 1 or not 1 <= per_page <= 1000:
        return 400, {"error": "page from 1, per_page 1-1000"}
    out = copy.deepcopy(doc)

    def keep(item: dict[str, Any]) -> bool:
        return all(_match(params.get(k, ""), item.get(k, "")) for k in ("process", "namespace", "pod"))

    procs = [p for p in out["processes"] if keep(p) and (not kind or p["findings"].get(kind))]
    for p in procs:
        if kind:
            p["findings"] = {kind: p["findings"][kind]}
            p["findings_total"] = p["findings"][kind]
    findings = [f for f in out["findings"] if keep(f) and (not kind or f["kind"] == kind)]
    total_pages = max((len(findings) + per_page - 1) // per_page, 1)
    out["processes"] = procs
    out["pods"] = [p for p in out["pods"] if _match(params.get("pod", ""), p["pod"])]
    out["findings"] = findings[(page - 1) * per_page : page * per_page]
    out["filters"] = {k: params.get(k, "") for k in ("process", "namespace", "pod", "kind")}
    out["page"] = {
        "number": page,
        "per_page": per_page,
        "total_items": len(findings),
        "total_pages": total_pages,
    }
    return 200, out


class ApiFixture:
    def __init__(self, interval: float = 1.0, user: str = "", password: str = "") -> None:
        self.doc = load_fixture()
        self.interval = interval
        self.started = time.time()
        self.auth = base64.b64encode(f"{user}:{password}".encode()).decode() if user else ""
        self.requests: list[str] = []
        fixture = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fixture.requests.append(self.path)
                status, body = fixture.respond(self.path, self.headers.get("Authorization", ""))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test's output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def respond(self, path: str, authorization: str) -> tuple[int, dict[str, Any]]:
        parts = urllib.parse.urlsplit(path)
        if parts.path != "/api/v1/snapshot":
            return 404, {"error": "not found"}
        if self.auth and authorization != f"Basic {self.auth}":
            return 401, {"error": "unauthorized"}
        params = dict(urllib.parse.parse_qsl(parts.query))
        polls = int((time.time() - self.started) / self.interval)
        self.doc["poll"]["number"] = 42 + polls
        self.doc["poll"]["taken_at"] = self.started + polls * self.interval
        self.doc["poll"]["interval_seconds"] = self.interval
        return answer(self.doc, params)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
