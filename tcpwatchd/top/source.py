"""Where `top` gets the API document: the daemon over HTTP(S), or a poll in this process (`--local`).

Both are a `DocumentSource`: `fetch(query) -> dict` (the decoded JSON of docs/api.md), raising
`SourceError` with a message fit for the status line.
"""

from __future__ import annotations

import base64
import importlib
import ipaddress
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from tcpwatchd.config import Config

API_PATH = "/api/v1/snapshot"
PASSWORD_ENV = "TCPWATCHD_PASSWORD"
MAX_DOCUMENT_BYTES = 64 << 20  # per_page ≤ 1000 findings: far below this; a runaway answer stops here


class SourceError(Exception):
    """A fetch that failed; str(e) is the whole message shown to the operator."""


class DocumentSource(Protocol):
    def fetch(self, query: Mapping[str, str]) -> dict[str, Any]: ...


def default_url(cfg: Config) -> str:
    """The daemon's API from `[exporter]`: a wildcard listener is reached on loopback.

    >>> default_url(Config())
    'http://127.0.0.1:9814'
    """
    addr = ipaddress.ip_address(cfg.exporter.listen_address)
    if addr.is_unspecified:
        addr = ipaddress.ip_address("::1" if addr.version == 6 else "127.0.0.1")
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"http://{host}:{cfg.exporter.port}"


def api_url(url: str) -> str:
    """'http://h:9814' or 'http://h:9814/' → 'http://h:9814/api/v1/snapshot'; a full API URL is kept."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"not an http(s) URL: {url!r}")
    if parts.password is not None:
        raise SourceError(f"no password in the URL: give --user and set {PASSWORD_ENV}")
    path = parts.path.rstrip("/")
    if not path.endswith(API_PATH):
        path += API_PATH
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class HttpSource:
    """The daemon's `GET /api/v1/snapshot`, with optional basic auth and a CA file for https."""

    def __init__(
        self, url: str, user: str = "", password: str = "", ca_file: str = "", timeout: float = 5.0
    ) -> None:
        self.url = api_url(url)
        self._headers = {"Accept": "application/json", "User-Agent": "tcpwatchd-top"}
        if user:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._context = (
            ssl.create_default_context(cafile=ca_file or None) if self.url.startswith("https") else None
        )
        self._timeout = timeout
        self._has_user = bool(user)

    def fetch(self, query: Mapping[str, str]) -> dict[str, Any]:
        url = self.url + ("?" + urllib.parse.urlencode(sorted(query.items())) if query else "")
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as resp:
                body = resp.read(MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as e:
            raise SourceError(self._http_error(e)) from None
        except urllib.error.URLError as e:
            raise SourceError(f"daemon unreachable: {_reason(e.reason)}") from None
        except (OSError, ValueError) as e:  # timeouts, resets mid-body, http.client's protocol errors
            raise SourceError(f"daemon unreachable: {_reason(e)}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise SourceError(f"daemon's answer is larger than {MAX_DOCUMENT_BYTES >> 20} MiB")
        return decode(body)

    def _http_error(self, e: urllib.error.HTTPError) -> str:
        if e.code == 401:
            if self._has_user:
                return "unauthorized (HTTP 401): the daemon refused this user and password"
            return (
                f"unauthorized (HTTP 401): the daemon wants a login: give --user NAME and set {PASSWORD_ENV}"
            )
        try:
            message = json.loads(e.read(65536)).get("error", "")
        except (ValueError, AttributeError, OSError):
            message = ""
        if e.code == 404:
            return f"no API at {self.url} (HTTP 404): is this tcpwatchd, and new enough?"
        return f"daemon answered HTTP {e.code}" + (f": {message}" if message else f" {e.reason}")


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS: {reason.verify_message} (give --ca-file)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def decode(body: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(body)
    except ValueError as e:  # UnicodeDecodeError is a ValueError too
        raise SourceError(f"daemon sent invalid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise SourceError("daemon sent JSON that is not an object")
    return raw


# ---- --local ---------------------------------------------------------------------------------------------
# INTEGRATION POINT (lead): `--local` imports this module and calls this factory once, lazily:
#     tcpwatchd.outputs.api.local_document_source(cfg: Config) -> Callable[[Mapping[str, str]], dict]
# The returned callable polls (at most once per `daemon.poll_interval_seconds`, so that detectors keep
# their history; a call in between re-reads the last poll for the new query) and returns the document of
# docs/api.md for `query`, raising ValueError for a bad query (the API's 400).
LOCAL_API_MODULE = "tcpwatchd.outputs.api"
LOCAL_API_FACTORY = "local_document_source"


class LocalSource:
    """`top --local`: polls in this process through the lead's factory (see above); no daemon needed."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._fetch: Callable[[Mapping[str, str]], dict[str, Any]] | None = None

    def check(self) -> None:
        """Raises SourceError now (before the screen opens) when this build cannot poll locally."""
        if self._fetch is not None:
            return
        try:
            module = importlib.import_module(LOCAL_API_MODULE)
        except ImportError as e:
            raise SourceError(f"--local is not available in this build ({LOCAL_API_MODULE}: {e})") from None
        factory = getattr(module, LOCAL_API_FACTORY, None)
        if not callable(factory):
            raise SourceError(
                f"--local is not available in this build ({LOCAL_API_MODULE}.{LOCAL_API_FACTORY})"
            )
        self._fetch = factory(self._cfg)

    def fetch(self, query: Mapping[str, str]) -> dict[str, Any]:
        self.check()
        assert self._fetch is not None
        try:
            return self._fetch(query)
        except ValueError as e:
            raise SourceError(f"bad query: {e}") from None
        except OSError as e:
            raise SourceError(f"local poll failed: {e}") from None
