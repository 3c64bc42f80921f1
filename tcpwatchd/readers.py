"""What the tracker remembers from one poll to compare the next with.

Slow or stopped: which connections with unread data had bytes read by their application.
Listener saturation: since when each listener's accept queue has stayed at least so full.

tcpi_bytes_received (tcp_info, Linux 4.1+) less the unread bytes is what the application has read;
when it grew between two polls the reader is slow, not stopped (detectors/stalled_receive.py). Only
rows with unread data are looked at: a handful.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tcpwatchd.columns import Key
from tcpwatchd.model import TcpState
from tcpwatchd.table import SocketTable


def reading_since(table: SocketTable, before: dict[Key, int]) -> tuple[frozenset[Key], dict[Key, int]]:
    """(keys whose application read since `before`, bytes read per unread connection now).

    >>> reading_since(SocketTable(), {})
    (frozenset(), {})
    """
    keys, got = table.column("key"), table.column("bytes_received")
    rows = table.unread_rows()
    copied = {keys[r]: got[r] - table.unread_bytes(r) for r in rows if got[r] >= 0}
    return frozenset(k for k, c in copied.items() if k in before and c > before[k]), copied


def counter_deltas(
    before: Mapping[str, int], now: Mapping[str, int]
) -> tuple[dict[str, int], Mapping[str, int]]:
    """(each kernel counter's rise since `before`, what to compare the next poll with). A counter that
    went down (a namespace recreated) has no rise; a poll without counters keeps `before`.

    >>> counter_deltas({"TcpExt.ListenOverflows": 3}, {"TcpExt.ListenOverflows": 5})
    ({'TcpExt.ListenOverflows': 2}, {'TcpExt.ListenOverflows': 5})
    """
    deltas = {k: v - before[k] for k, v in now.items() if k in before and v >= before[k]}
    return deltas, (now if now else before)


# A listener's fill history is kept as at most this many steps; past it the two oldest merge (the
# older, lower one stays), which can only make a long run look shorter, never longer.
MAX_FILL_STEPS = 16


@dataclass(frozen=True, slots=True)
class QueueFill:
    """How full one listener's accept queue has stayed: the suffix minima of its fill (queue / limit)
    over the polls since it was last empty, as (since, fill) steps, both ascending. The queue has been
    at least `fill` in every poll since `since`; so any threshold can be asked without the tracker
    knowing it (an [[override]] may judge with another min_fill).

    >>> QueueFill(((10.0, 0.5), (40.0, 0.9))).above_since(0.8)
    40.0
    """

    steps: tuple[tuple[float, float], ...]

    def above_since(self, fraction: float) -> float | None:
        """The first poll of the current run of polls whose fill was at least `fraction`; None now below."""
        return next((since for since, fill in self.steps if fill >= fraction), None)


def queue_fills(table: SocketTable, before: Mapping[Key, QueueFill], now: float) -> dict[Key, QueueFill]:
    """Each listener's `QueueFill` after this poll. A listener whose queue is empty (or that has no
    limit: /proc) has none, so memory follows the few listeners with a backlog.

    >>> queue_fills(SocketTable(), {}, 0.0)
    {}
    """
    keys, queues, limits = table.column("key"), table.column("rqueue"), table.column("wqueue")
    out: dict[Key, QueueFill] = {}
    for row in table.rows_in(TcpState.LISTEN):
        if queues[row] <= 0 or limits[row] <= 0:
            continue
        fill, since = queues[row] / limits[row], now
        old = before.get(keys[row])
        steps = list(old.steps) if old else []
        while steps and steps[-1][1] >= fill:  # a lower fill now ends those higher runs here
            since = steps.pop()[0]
        steps.append((since, fill))
        if len(steps) > MAX_FILL_STEPS:
            del steps[1]
        out[keys[row]] = QueueFill(tuple(steps))
    return out
