"""What the tracker remembers from one poll to compare the next with.

Slow or stopped: which connections with unread data had bytes read by their application.

tcpi_bytes_received (tcp_info, Linux 4.1+) less the unread bytes is what the application has read;
when it grew between two polls the reader is slow, not stopped (detectors/stalled_receive.py). Only
rows with unread data are looked at: a handful.
"""

from __future__ import annotations

from collections.abc import Mapping

from tcpwatchd.columns import Key
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
