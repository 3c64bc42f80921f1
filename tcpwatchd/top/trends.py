"""Per-row history over the last polls: a sparkline of sockets and an arrow for findings.

One sample per poll (re-reading the same poll after a filter change adds nothing), at most `depth`
samples per row and `max_rows` rows: a row absent for `depth` polls is forgotten.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tcpwatchd.top.document import Document

SPARK_UNICODE = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-=#"
Key = tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Sample:
    poll: int
    sockets: int
    findings: int
    kind_filter: str


class Trends:
    def __init__(self, depth: int = 10, max_rows: int = 10_000) -> None:
        self.depth = depth
        self.max_rows = max_rows
        self._rows: dict[Key, deque[Sample]] = {}
        self._last_poll = -1

    def record(self, doc: Document) -> bool:
        """Adds the document's poll once; False when this poll was already recorded."""
        number = doc.poll.number
        if number == self._last_poll:
            return False
        self._last_poll = number
        kind = doc.filters.get("kind", "")
        for s in (*doc.processes, *doc.pods):
            history = self._rows.get(s.key)
            if history is None:
                if len(self._rows) >= self.max_rows:
                    continue
                history = self._rows[s.key] = deque(maxlen=self.depth)
            history.append(Sample(number, s.sockets_total, s.findings_total, kind))
        stale = [k for k, h in self._rows.items() if number - h[-1].poll >= self.depth]
        for k in stale:
            del self._rows[k]
        return True

    def samples(self, key: Key) -> list[Sample]:
        return list(self._rows.get(key, ()))


def sparkline(values: list[int], width: int, ascii_only: bool = False) -> str:
    """The last `width` values scaled between their min and max: [1, 5, 9] → '▁▄█'; flat → lowest bar."""
    values = values[-width:] if width > 0 else []
    if not values:
        return ""
    bars = SPARK_ASCII if ascii_only else SPARK_UNICODE
    lo, hi = min(values), max(values)
    if hi == lo:
        return bars[0] * len(values)
    top = len(bars) - 1
    return "".join(bars[round((v - lo) * top / (hi - lo))] for v in values)


def findings_arrow(samples: list[Sample], ascii_only: bool = False) -> str:
    """'↑' when the last poll has more findings than the one before (same kind filter), '↓' fewer."""
    if len(samples) < 2 or samples[-1].kind_filter != samples[-2].kind_filter:
        return " "
    delta = samples[-1].findings - samples[-2].findings
    if delta == 0:
        return " "
    if ascii_only:
        return "+" if delta > 0 else "-"
    return "↑" if delta > 0 else "↓"


def trend_text(samples: list[Sample], width: int, ascii_only: bool = False) -> str:
    """Sparkline of sockets then the findings arrow, in `width` columns."""
    if width <= 0:
        return ""
    return sparkline([s.sockets for s in samples], width - 1, ascii_only) + findings_arrow(
        samples, ascii_only
    )
