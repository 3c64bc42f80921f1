"""The JSON API (docs/api.md, version 1): the last poll as a document, filtered and paged. No I/O.

`GET /api/v1/snapshot` on the daemon's listener (`api_handler`), `tcpwatchd snapshot --json` and
`tcpwatchd top --local` (`local_document_source`) all build it here from a `PollResult`, so the three
can never disagree. Strings are hostile (a process names itself): they are left as they are and only
JSON-escaped on the way out (the server encodes with ensure_ascii, which also escapes a lone surrogate
from a name decoded with surrogateescape, never raising).

    >>> parse_query({"kind": "close_wait", "per_page": "5"}).per_page
    5
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tcpwatchd import __version__
from tcpwatchd.config import Config
from tcpwatchd.detectors.base import Finding
from tcpwatchd.detectors.registry import kinds
from tcpwatchd.model import STATE_LABELS, ProcessLabels
from tcpwatchd.outputs.prometheus import LatestPoll
from tcpwatchd.poller import Poller, PollResult
from tcpwatchd.report import ProcessSummary
from tcpwatchd.rules_config import matches

API_PATH = "/api/v1/snapshot"
API_VERSION = 1
FILTERS = ("process", "namespace", "pod", "kind")
PAGING = ("page", "per_page")
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
MAX_PATTERN = 256  # a name filter longer than any name (comm is 15 bytes, a pod name 253)
# close_wait's registered per-process value (ValueGauge key): the API's `close_wait_oldest_age_seconds`.
OLDEST_VALUE = "oldest_age_seconds"


class QueryError(ValueError):
    """A bad query parameter: the API answers 400 with this message."""


@dataclass(frozen=True, slots=True)
class Query:
    process: str = ""
    namespace: str = ""
    pod: str = ""
    kind: str = ""
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def keeps(self, labels: ProcessLabels | Finding) -> bool:
        """Whether a process (or a finding's process) passes the name filters (exact or glob)."""
        return all(
            not pattern or matches(pattern, value)
            for pattern, value in (
                (self.process, labels.process),
                (self.namespace, labels.namespace),
                (self.pod, labels.pod),
            )
        )


def _count(raw: Mapping[str, str], name: str, default: int, high: int) -> int:
    text = raw.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not 1 <= int(text) <= high:
        raise QueryError(f"{name} must be a whole number from 1 to {high} (got {text[:40]!r})")
    return int(text)


def parse_query(raw: Mapping[str, str]) -> Query:
    """The API's parameters; QueryError (→ 400) for an unknown parameter, kind or page size."""
    unknown = sorted(set(raw) - set(FILTERS) - set(PAGING))
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0][:40]!r} (known: {', '.join(FILTERS + PAGING)})")
    for name in FILTERS:
        if len(raw.get(name, "")) > MAX_PATTERN:
            raise QueryError(f"{name} is longer than {MAX_PATTERN} characters")
    kind = raw.get("kind", "")
    known = [str(k.kind) for k in kinds()]
    if kind and kind not in known:
        raise QueryError(f"unknown kind {kind[:40]!r} (known: {', '.join(known)})")
    return Query(
        process=raw.get("process", ""),
        namespace=raw.get("namespace", ""),
        pod=raw.get("pod", ""),
        kind=kind,
        page=_count(raw, "page", 1, 10**9),
        per_page=_count(raw, "per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE),
    )


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity (the server refuses them): those become null."""
    return round(value, 3) if value is not None and math.isfinite(value) else None


def _sockets_by_process(result: PollResult) -> dict[ProcessLabels, dict[str, int]]:
    order = {state: i for i, state in enumerate(STATE_LABELS)}
    out: dict[ProcessLabels, dict[str, int]] = {}
    for (state, labels), n in sorted(result.socket_counts.items(), key=lambda kv: order.get(kv[0][0], 99)):
        out.setdefault(labels, {})[state] = n
    return out


def _summary(
    p: ProcessSummary, sockets: Mapping[str, int], kind_order: Mapping[str, int], q: Query
) -> dict[str, Any] | None:
    found = {str(k): n for k, n in sorted(p.counts.items(), key=lambda kv: kind_order.get(kv[0], 99)) if n}
    if q.kind:
        if not found.get(q.kind):
            return None
        found = {q.kind: found[q.kind]}
    oldest = p.values.get(OLDEST_VALUE)  # close_wait's value; absent when it had none for the process
    return {
        "process": p.labels.process,
        "namespace": p.labels.namespace,
        "pod": p.labels.pod,
        "container": p.labels.container,
        "sockets": dict(sockets),
        "sockets_total": sum(sockets.values()),
        "findings": found,
        "findings_total": sum(found.values()),
        "close_wait_oldest_age_seconds": _number(oldest),
    }


def _pods(processes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-process figures summed per pod (processes outside any pod are left out)."""
    pods: dict[tuple[str, str], dict[str, Any]] = {}
    for p in processes:
        if not p["pod"]:
            continue
        key = (p["namespace"], p["pod"])
        pod = pods.setdefault(
            key,
            {"namespace": key[0], "pod": key[1], "sockets": {}, "sockets_total": 0, "findings": {},
             "findings_total": 0, "close_wait_oldest_age_seconds": None},
        )  # fmt: skip
        for field in ("sockets", "findings"):
            for name, n in p[field].items():
                pod[field][name] = pod[field].get(name, 0) + n
            pod[f"{field}_total"] += p[f"{field}_total"]
        age = p["close_wait_oldest_age_seconds"]
        if age is not None:
            pod["close_wait_oldest_age_seconds"] = max(age, pod["close_wait_oldest_age_seconds"] or 0.0)
    return [pods[key] for key in sorted(pods)]


def finding_json(f: Finding) -> dict[str, Any]:
    """One finding as docs/api.md shows it: detail values as strings, ages rounded (null if unknown)."""
    out: dict[str, Any] = f.to_json()
    out["age_seconds"] = _number(f.age_seconds)
    out["details"] = {d.key: str(d.value) for d in f.details}
    return out


def build_document(result: PollResult, q: Query) -> dict[str, Any]:
    """The docs/api.md document of one poll for one query (`parse_query`)."""
    kind_order = {str(k.kind): i for i, k in enumerate(kinds())}
    sockets = _sockets_by_process(result)
    processes = [
        s
        for p in sorted(result.report.processes, key=lambda p: p.labels)  # sorted already: linear
        if q.keeps(p.labels) and (s := _summary(p, sockets.get(p.labels, {}), kind_order, q)) is not None
    ]
    listed = [f for f in result.report.findings if q.keeps(f) and (not q.kind or f.kind == q.kind)]
    total_pages = max(-(-len(listed) // q.per_page), 1)
    start = (q.page - 1) * q.per_page
    snap = result.snapshot
    return {
        "version": API_VERSION,
        "tcpwatchd_version": __version__,
        "poll": {
            "number": result.number,
            "taken_at": snap.taken_at,
            "duration_seconds": _number(result.duration_seconds),
            "interval_seconds": result.interval_seconds,
            "source": snap.source,
        },
        "filters": {"process": q.process, "namespace": q.namespace, "pod": q.pod, "kind": q.kind},
        "processes": processes,
        "pods": _pods(processes),
        "findings": [finding_json(f) for f in listed[start : start + q.per_page]],
        "page": {
            "number": q.page,
            "per_page": q.per_page,
            "total_items": len(listed),
            "total_pages": total_pages,
        },
    }


def answer(result: PollResult | None, raw: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for one request."""
    try:
        q = parse_query(raw)
    except QueryError as e:
        return 400, {"error": str(e)}
    if result is None:
        return 503, {"error": "no poll has completed yet; try again after one poll interval"}
    return 200, build_document(result, q)


def api_handler(latest: LatestPoll) -> Callable[[dict[str, str]], tuple[int, object]]:
    """The daemon's `GET /api/v1/snapshot`: reads the last published poll, never polls."""

    def handle(query: dict[str, str]) -> tuple[int, object]:
        return answer(latest.get()[0], query)

    return handle


def local_document_source(cfg: Config) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """`top --local`: a poller in this process; it polls at most once per poll interval (so detectors
    keep their history and ages), and a call in between re-reads the last poll for the new query.
    Raises ValueError (QueryError) for a bad query, as the API answers 400."""
    # The sources log a degraded poll once (to stderr when nothing is configured): under top's full
    # screen that would scribble over the view, and the document already says what it could see.
    logging.getLogger("tcpwatchd").addHandler(logging.NullHandler())
    logging.getLogger("tcpwatchd").propagate = False
    poller = Poller(cfg)
    lock = threading.Lock()
    last: list[tuple[float, PollResult]] = []

    def fetch(query: Mapping[str, str]) -> dict[str, Any]:
        q = parse_query(query)
        with lock:
            now = time.monotonic()
            if not last or now - last[0][0] >= cfg.daemon.poll_interval_seconds:
                last[:] = [(now, poller.poll().retained())]
            result = last[0][1]
        return build_document(result, q)

    return fetch
