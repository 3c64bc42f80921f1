"""The API document (docs/api.md, version 1) parsed into frozen types; the only place that reads JSON.

New fields may appear at any time (ignored); a missing optional field takes its empty value; a field of
the wrong type, or another `version`, is a `DocumentError` naming the field, never a crash later on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

API_VERSION = 1


class DocumentError(ValueError):
    """The document does not follow docs/api.md version 1; the message names the field."""


@dataclass(frozen=True, slots=True)
class Poll:
    number: int
    taken_at: float
    duration_seconds: float
    interval_seconds: float
    source: str


@dataclass(frozen=True, slots=True)
class Summary:
    """One entry of `processes` or of `pods` (pods have an empty `process`)."""

    process: str
    namespace: str
    pod: str
    container: str
    sockets: Mapping[str, int]
    sockets_total: int
    findings: Mapping[str, int]
    findings_total: int
    close_wait_oldest_age_seconds: float | None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.process, self.namespace, self.pod, self.container)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    process: str
    pid: int
    unit: str
    namespace: str
    pod: str
    container: str
    local: str
    remote: str
    peer: str
    age_seconds: float | None
    details: Mapping[str, str]
    rule: str


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    per_page: int
    total_items: int
    total_pages: int


@dataclass(frozen=True, slots=True)
class Document:
    tcpwatchd_version: str
    poll: Poll
    filters: Mapping[str, str]
    processes: tuple[Summary, ...]
    pods: tuple[Summary, ...]
    findings: tuple[Finding, ...]
    page: Page


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any) -> Any:
    value = obj.get(key, default)
    if value is None and default is None:
        return None
    # bool is an int in Python, but a JSON true is never a count.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise DocumentError(f"{where}.{key}: expected {_name(kind)}, got {type(value).__name__}")
    return value


def _name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return "a number" if float in kinds else {int: "an integer", str: "a string"}.get(kinds[0], "?")


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DocumentError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _str(o: Mapping[str, Any], key: str, where: str) -> str:
    return str(_get(o, key, str, where, ""))


def _num(o: Mapping[str, Any], key: str, where: str, optional: bool = False) -> float | None:
    value = _get(o, key, (int, float), where, None if optional else 0.0)
    return None if value is None else float(value)


def _counts(o: Mapping[str, Any], key: str, where: str) -> dict[str, int]:
    raw = _obj(o.get(key, {}), f"{where}.{key}")
    return {str(k): int(_get(raw, k, int, f"{where}.{key}", 0)) for k in raw}


def parse_summary(o: Mapping[str, Any], where: str) -> Summary:
    age = _num(o, "close_wait_oldest_age_seconds", where, optional=True)
    return Summary(
        process=_str(o, "process", where),
        namespace=_str(o, "namespace", where),
        pod=_str(o, "pod", where),
        container=_str(o, "container", where),
        sockets=_counts(o, "sockets", where),
        sockets_total=int(_get(o, "sockets_total", int, where, 0)),
        findings=_counts(o, "findings", where),
        findings_total=int(_get(o, "findings_total", int, where, 0)),
        close_wait_oldest_age_seconds=age,
    )


def parse_finding(o: Mapping[str, Any], where: str) -> Finding:
    details = _obj(o.get("details", {}), f"{where}.details")
    return Finding(
        kind=_str(o, "kind", where),
        process=_str(o, "process", where),
        pid=int(_get(o, "pid", int, where, 0)),
        unit=_str(o, "unit", where),
        namespace=_str(o, "namespace", where),
        pod=_str(o, "pod", where),
        container=_str(o, "container", where),
        local=_str(o, "local", where),
        remote=_str(o, "remote", where),
        peer=_str(o, "peer", where),
        age_seconds=_num(o, "age_seconds", where, optional=True),
        # Detail values are documented as strings; anything else is shown as its JSON-ish text.
        details={str(k): v if isinstance(v, str) else repr(v) for k, v in details.items()},
        rule=_str(o, "rule", where),
    )


def _list(o: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    raw = o.get(key, [])
    if not isinstance(raw, list):
        raise DocumentError(f"{key}: expected a list, got {type(raw).__name__}")
    return [_obj(item, f"{key}[{i}]") for i, item in enumerate(raw)]


def parse_document(raw: Any) -> Document:
    """The decoded JSON of `GET /api/v1/snapshot` → Document.

    >>> parse_document({"version": 1, "poll": {"number": 42, "interval_seconds": 10.0}}).poll.number
    42
    """
    o = _obj(raw, "document")
    version = o.get("version")
    if version != API_VERSION:
        raise DocumentError(f"version: this top reads API version {API_VERSION}, the daemon sent {version!r}")
    p = _obj(o.get("poll", {}), "poll")
    pg = _obj(o.get("page", {}), "page")
    filters = _obj(o.get("filters", {}), "filters")
    return Document(
        tcpwatchd_version=_str(o, "tcpwatchd_version", "document"),
        poll=Poll(
            number=int(_get(p, "number", int, "poll", 0)),
            taken_at=_num(p, "taken_at", "poll") or 0.0,
            duration_seconds=_num(p, "duration_seconds", "poll") or 0.0,
            interval_seconds=_num(p, "interval_seconds", "poll") or 0.0,
            source=_str(p, "source", "poll"),
        ),
        filters={str(k): str(v) for k, v in filters.items()},
        processes=tuple(parse_summary(s, f"processes[{i}]") for i, s in enumerate(_list(o, "processes"))),
        pods=tuple(parse_summary(s, f"pods[{i}]") for i, s in enumerate(_list(o, "pods"))),
        findings=tuple(parse_finding(f, f"findings[{i}]") for i, f in enumerate(_list(o, "findings"))),
        page=Page(
            number=int(_get(pg, "number", int, "page", 1)),
            per_page=int(_get(pg, "per_page", int, "page", 0)),
            total_items=int(_get(pg, "total_items", int, "page", 0)),
            total_pages=int(_get(pg, "total_pages", int, "page", 1)),
        ),
    )
