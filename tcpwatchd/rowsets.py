"""Row selections the detectors share, made in C over a socket table's columns.

A host can hold 100k sockets, and in the cases tcpwatchd exists for (idle pools, a leak at its height)
most of them match: a selection must not cost a Python step per row. These use map/compress over
columns, and bytes.translate/find over u8 columns, so the Python per row is only what a caller does
with the rows selected.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from operator import attrgetter

from tcpwatchd.model import TcpState
from tcpwatchd.openings import PeerKey, peer_address
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import Track, TrackedPoll

FIRST_POLL = attrgetter("first_seen_poll")


def idle_established(table: SocketTable, limit_ms: float) -> Sequence[int]:
    """ESTABLISHED rows that received neither data nor an ACK for at least `limit_ms` (tcp_info's
    last_data_recv and last_ack_recv; rows without tcp_info, -1, never qualify)."""
    data_ms, ack_ms = table.column("last_data_recv_ms"), table.column("last_ack_recv_ms")
    if max(data_ms, default=-1) < limit_ms or max(ack_ms, default=-1) < limit_ms:
        return ()
    limit = math.ceil(limit_ms)  # the columns are whole milliseconds: int against int compares faster
    established = table.rows_in(TcpState.ESTABLISHED)
    quiet = list(compress(established, map(limit.__le__, map(data_ms.__getitem__, established))))
    also = map(limit.__le__, map(ack_ms.__getitem__, quiet))
    return array("I", compress(quiet, also))  # 4 bytes a row: on a host of idle pools, every connection


def services(table: SocketTable, rows: Sequence[int]) -> list[PeerKey]:
    """(netns, peer address, local port) of each row: whom it serves, keyed as the opening history keys
    peers (one peer_address call per distinct address)."""
    remotes = table.column("remote_address")
    peer_of = {address: peer_address(address) for address in set(map(remotes.__getitem__, rows))}
    peers = map(peer_of.__getitem__, map(remotes.__getitem__, rows))
    ports = map(table.column("local_port").__getitem__, rows)
    return list(zip(map(table.column("netns").__getitem__, rows), peers, ports, strict=True))


def tracks_of(tracked: TrackedPoll, rows: Iterable[int]) -> Iterator[Track]:
    """The tracker's track of each row's connection, looked up in C."""
    keys = tracked.snapshot.sockets.column("key")
    return map(tracked.tracks.__getitem__, map(keys.__getitem__, rows))


def first_polls(tracked: TrackedPoll, rows: Iterable[int]) -> Iterator[int]:
    """The poll that first saw each row's connection (the tracker's first_seen_poll)."""
    return map(FIRST_POLL, tracks_of(tracked, rows))


def listening_ports(table: SocketTable) -> set[tuple[int, int]]:
    """(netns, port) of every LISTEN socket: the ports a peer connects to."""
    ports, spaces = table.column("local_port"), table.column("netns")
    return {(spaces[row], ports[row]) for row in table.rows_in(TcpState.LISTEN)}


def on_ports(table: SocketTable, rows: Sequence[int], ports: set[tuple[int, int]]) -> list[int]:
    """The rows of `rows` whose (netns, local port) is one of `ports`, selected in C."""
    if not ports:
        return []
    local = map(table.column("local_port").__getitem__, rows)
    spaces = table.column("netns")
    if not any(spaces):  # one namespace: a byte per port, no tuple per row
        wanted = bytearray(65536)
        for _netns, port in ports:
            wanted[port] = 1
        return list(compress(rows, map(wanted.__getitem__, local)))
    return list(
        compress(rows, map(ports.__contains__, zip(map(spaces.__getitem__, rows), local, strict=True)))
    )


def rows_with_byte(column: Sequence[int], wanted: frozenset[int]) -> list[int]:
    """Rows whose value is in `wanted` (values 0..255), for a u8 column: found with bytes.find when they
    are few (the usual case: retransmitting or probing sockets), by a 0/1 mask otherwise.

    >>> rows_with_byte(array("B", [0, 3, 0, 5]), frozenset({3, 5}))
    [1, 3]
    """
    if not isinstance(column, array) or column.typecode != "B":  # lists, signed or wider arrays
        return list(compress(range(len(column)), map(wanted.__contains__, column)))
    data = column.tobytes()
    present = wanted.intersection(set(data)) if len(wanted) < 256 else set(data)
    if not present:
        return []
    mask = data.translate(bytes(int(b in present) for b in range(256)))
    if mask.count(1) * 8 >= len(mask):
        return list(compress(range(len(mask)), mask))
    found: list[int] = []
    at = mask.find(1)
    while at >= 0:
        found.append(at)
        at = mask.find(1, at + 1)
    return found
