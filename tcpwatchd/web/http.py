"""HTTP/1.1 request heads in, responses out: pure functions, no sockets (RFC 9112).

Only what a scraper and the JSON API need: GET and HEAD, origin-form targets, no request bodies.
Anything else is answered with the status RFC 9110 gives it and the connection closed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote

HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request head. Header names are lower-case; repeated headers are joined with ", "."""

    method: str
    path: str
    query: str
    version: str
    headers: Mapping[str, str]

    @property
    def keep_alive(self) -> bool:
        """HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked (RFC 9112 9.3)."""
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # close the connection after this response

    @classmethod
    def json(cls, status: int, body: object) -> Response:
        data = json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()
        return cls(status, data + b"\n", (("Content-Type", "application/json"),))

    @classmethod
    def text(cls, status: int, body: str, *, close: bool = False) -> Response:
        return cls(status, body.encode(), (("Content-Type", "text/plain; charset=utf-8"),), close)


class BadRequest(Exception):
    """A request we refuse before routing; the connection is closed after the answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason

    def response(self) -> Response:
        return Response.text(self.status, f"{HTTPStatus(self.status).phrase}: {self.reason}\n", close=True)


def parse_head(head: bytes) -> Request:
    """Parse a request head (request line and fields, without the blank line).

    >>> parse_head(b"GET /metrics?name[]=up HTTP/1.1\\r\\nHost: x\\r\\nAccept: text/plain").query
    'name[]=up'
    """
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"unsupported version {version[:16]!r}")
    if not target.startswith("/"):
        raise BadRequest(400, "request target must be a path")
    headers = _fields(lines[1:])
    if headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers:
        raise BadRequest(413, "request bodies are not accepted")
    path, _, query = target.partition("?")
    return Request(method, unquote(path), query, version, headers)


def _fields(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        # Obsolete line folding and whitespace before the colon are refused (RFC 9112 5.1, 5.2).
        if not sep or not name or name != name.strip() or any(c in name for c in " \t"):
            raise BadRequest(400, "malformed header field")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


def render(resp: Response, *, keep_alive: bool, head_only: bool, extra: tuple[tuple[str, str], ...]) -> bytes:
    """Status line, fields and body as bytes. `extra` are the web config's security headers."""
    phrase = HTTPStatus(resp.status).phrase
    lines = [f"HTTP/1.1 {resp.status} {phrase}"]
    lines += [f"{k}: {v}" for k, v in (*resp.headers, *extra)]
    lines.append(f"Content-Length: {len(resp.body)}")
    lines.append("Connection: keep-alive" if keep_alive and not resp.close else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + resp.body
