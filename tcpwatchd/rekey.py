"""Tracks carried across a change of socket source: cookie identities (sock_diag) ↔ 4-tuples (/proc).

`source = "auto"` falls back to /proc when netlink fails, and a reload can change `source`; the two
sources name a connection differently (columns.object_key). Without a translation every open
connection would look new (a false storm, counters jumping, CLOSE_WAIT ages restarting). Both tables
carry the 4-tuple (and netns), so the previous table's tracks are re-keyed by it: O(sockets), once per
change of source only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from tcpwatchd.columns import UNCONNECTED, ConnKey, Key
from tcpwatchd.table import SocketTable

T = TypeVar("T")


def _cookies(table: SocketTable) -> bool | None:
    keys = table.column("key")
    return isinstance(keys[0], int) if keys else None


def four_tuples(table: SocketTable) -> Iterator[ConnKey]:
    """columns.four_tuple of every row, from the columns (no Socket objects)."""
    states, inodes = table.column("state"), table.column("inode")
    columns = zip(
        table.column("netns"),
        table.column("family"),
        table.column("local_address"),
        table.column("local_port"),
        table.column("remote_address"),
        table.column("remote_port"),
        strict=True,
    )
    for row, (netns, family, laddr, lport, raddr, rport) in enumerate(columns):
        inode = inodes[row] if states[row] in UNCONNECTED else 0
        yield (netns, family, laddr, lport, raddr, rport, inode)


def rekeyed(tracks: dict[Key, T], previous: SocketTable, table: SocketTable) -> dict[Key, T]:
    """`tracks` (keyed as `previous` is) keyed as `table` is; itself when both use the same kind.

    >>> rekeyed({}, SocketTable(), SocketTable())
    {}
    """
    before, now = _cookies(previous), _cookies(table)
    if before is None or now is None or before == now:
        return tracks
    by_tuple: dict[ConnKey, T] = {}
    for key, tuple_key in zip(previous.column("key"), four_tuples(previous), strict=True):
        track = tracks.get(key)
        if track is not None:
            by_tuple[tuple_key] = track
    out: dict[Key, T] = {}
    for key, tuple_key in zip(table.column("key"), four_tuples(table), strict=True):
        track = by_tuple.get(tuple_key)
        if track is not None:
            out[key] = track
    return out
