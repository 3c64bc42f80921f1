"""Rows of the view: which summaries show (filters) and in which order (sort), with no terminal.

"Trouble" orders by findings weighted by kind, then by the oldest CLOSE_WAIT, then by sockets: a slow
CLOSE_WAIT leak outranks a thousand healthy ESTABLISHED connections.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from tcpwatchd.top.document import Document, Summary

# Weight of one finding by kind. A leak or a queue nobody reads loses data or descriptors now; a missing
# keepalive only may, later. Unknown kinds (a newer daemon) weigh like a storm.
KIND_WEIGHTS: dict[str, int] = {
    "close_wait": 8,
    "stalled_receive": 6,
    "phantom": 5,
    "unresponsive_peer": 4,
    "reconnect_storm": 3,
    "keepalive_off": 1,
}
UNKNOWN_KIND_WEIGHT = 3

# Short column headers; an unknown kind gets the first three letters of its name.
KIND_HEADERS: dict[str, str] = {
    "close_wait": "LEAK",
    "phantom": "PHAN",
    "reconnect_storm": "STRM",
    "keepalive_off": "NOKA",
    "stalled_receive": "STAL",
    "unresponsive_peer": "UNRS",
}

# Socket state labels as the API spells them (node_exporter's), grouped into compact columns.
STATE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("EST", "established"),
    ("CW", "close_wait"),
    ("TW", "time_wait"),
    ("LST", "listen"),
)


class SortKey(enum.Enum):
    TROUBLE = "trouble"
    FINDINGS = "findings"
    CW_AGE = "cw-age"
    SOCKETS = "sockets"
    NAME = "name"

    def next(self) -> SortKey:
        members = list(SortKey)
        return members[(members.index(self) + 1) % len(members)]


def kind_header(kind: str) -> str:
    return KIND_HEADERS.get(kind, kind[:3].upper() or "?")


def trouble(s: Summary) -> int:
    """Findings weighted by kind: 3 close_wait + 1 keepalive_off → 25."""
    return sum(KIND_WEIGHTS.get(k, UNKNOWN_KIND_WEIGHT) * n for k, n in s.findings.items())


def other_sockets(s: Summary) -> int:
    """Sockets in states without their own column (SYN_SENT, FIN_WAIT*, LAST_ACK, ...)."""
    return s.sockets_total - sum(s.sockets.get(label, 0) for _, label in STATE_COLUMNS)


def label(s: Summary) -> str:
    """The row's name: the process, or namespace/pod for a pod summary."""
    if s.process:
        return s.process
    return f"{s.namespace}/{s.pod}" if s.namespace else s.pod


def _age(s: Summary) -> float:
    return s.close_wait_oldest_age_seconds or 0.0


def _tie(s: Summary) -> tuple[str, str, str, str]:
    return (label(s), s.namespace, s.pod, s.container)


def sort_rows(rows: Iterable[Summary], key: SortKey) -> list[Summary]:
    """Most interesting first; ties broken by name then pod so the order is stable between polls."""
    if key is SortKey.TROUBLE:
        return sorted(rows, key=lambda s: (-trouble(s), -_age(s), -s.sockets_total, _tie(s)))
    if key is SortKey.FINDINGS:
        return sorted(rows, key=lambda s: (-s.findings_total, -trouble(s), _tie(s)))
    if key is SortKey.CW_AGE:
        return sorted(rows, key=lambda s: (-_age(s), -trouble(s), _tie(s)))
    if key is SortKey.SOCKETS:
        return sorted(rows, key=lambda s: (-s.sockets_total, _tie(s)))
    return sorted(rows, key=_tie)


def matches(s: Summary, name_filter: str, kind: str) -> bool:
    """Client-side filter: name contains `name_filter` (case-insensitive); has a finding of `kind`."""
    if name_filter and name_filter.casefold() not in label(s).casefold():
        return False
    return not kind or s.findings.get(kind, 0) > 0


def visible_rows(doc: Document, pods: bool, name_filter: str, kind: str, key: SortKey) -> list[Summary]:
    source = doc.pods if pods else doc.processes
    return sort_rows((s for s in source if matches(s, name_filter, kind)), key)


def kinds_seen(docs: Sequence[Document | None], known: Iterable[str] = KIND_WEIGHTS) -> list[str]:
    """Kinds to cycle through with the kind filter: the known ones, then any newer kind a daemon reports."""
    out = list(known)
    for doc in docs:
        if doc is None:
            continue
        for s in doc.processes:
            out.extend(k for k in s.findings if k not in out)
    return out


def glob_escape(name: str) -> str:
    """A process name as an exact-match glob for the `process` query parameter: 'a[1]*' → 'a[[]1][*]'."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
