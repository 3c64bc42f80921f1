"""The columns of a socket table: their names, how a `Socket` object yields each, and connection identity.

table.py holds the table itself; a source that builds parts (sources/sockdiag_bulk.py) and code that
names columns (`Derived` declarations, detectors) import the names from here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Sequence
from typing import Any, Literal, Protocol, get_args

from tcpwatchd.model import Socket, TcpState, consecutive_retransmits

# The identity of a connection across polls: the kernel's socket cookie (sock_diag), which a socket keeps
# when it is orphaned or becomes TIME_WAIT; or, from /proc, the 4-tuple plus the inode for unconnected
# sockets (LISTEN ones can share a local address with SO_REUSEPORT).
Key = Hashable

# Columns every part provides. "key", "retransmits" (consecutive RTO retransmissions, from tcp_info
# when present), "last_data_recv_ms", "last_ack_recv_ms", "probes", "bytes_received" and "bytes_acked"
# (tcp_info's; -1 without tcp_info, the last two also from a kernel before 4.1) are derived. A name
# outside this Literal is a type error where it is used, and an import-time error in a `Derived`.
Column = Literal[
    "family",
    "state",
    "timer",
    "retrans",
    "local_address",
    "local_port",
    "remote_address",
    "remote_port",
    "rqueue",
    "wqueue",
    "uid",
    "inode",
    "expires",
    "key",
    "retransmits",
    "last_data_recv_ms",
    "last_ack_recv_ms",
    "probes",
    "bytes_received",
    "bytes_acked",
    "netns",
]
COLUMNS: frozenset[str] = frozenset(get_args(Column))
STRUCTURE: tuple[Column, ...] = ("key", "state", "inode", "timer")
# Not connections: they share local addresses (so their identity carries the inode), and one first
# seen after start is not an opening.
UNCONNECTED = frozenset({TcpState.LISTEN, TcpState.CLOSE})
ConnKey = tuple[int, int, str, int, str, int, int]
# One column's values in row order: a compact `array.array` for numbers from a dump (sockdiag_columns),
# a list otherwise (addresses; sockets that exist as objects). Read-only to its users: index, iterate,
# compare, count, `in`, `bytes()` of a u8 column; never `+` or mutate.
Values = Sequence[Any]


class Part(Protocol):
    def __len__(self) -> int: ...

    def socket(self, i: int) -> Socket: ...

    def column(self, name: Column) -> Values: ...

    def retained(self, names: Collection[str]) -> Part:
        """A part giving at least the columns `names`, holding as little else as it can."""
        ...


def object_key(sock: Socket) -> Key:
    """The cookie when the source gave one (the kernel's cookie counter is global, so cookies are unique
    across namespaces); else the namespace and 4-tuple (+ inode for LISTEN/CLOSE sockets)."""
    return sock.cookie if sock.cookie is not None else four_tuple(sock)


def four_tuple(sock: Socket) -> ConnKey:
    inode = sock.inode if sock.state in UNCONNECTED else 0
    return (
        sock.netns,
        sock.family,
        sock.local_address,
        sock.local_port,
        sock.remote_address,
        sock.remote_port,
        inode,
    )


_OBJECT_COLUMNS: dict[Column, Callable[[Socket], Any]] = {
    "family": lambda s: s.family,
    "state": lambda s: s.state,
    "timer": lambda s: s.timer,
    "retrans": lambda s: s.retrans,
    "local_address": lambda s: s.local_address,
    "local_port": lambda s: s.local_port,
    "remote_address": lambda s: s.remote_address,
    "remote_port": lambda s: s.remote_port,
    "rqueue": lambda s: s.rqueue,
    "wqueue": lambda s: s.wqueue,
    "uid": lambda s: s.uid,
    "inode": lambda s: s.inode,
    "expires": lambda s: s.timer_expires_ms,
    "key": object_key,
    "retransmits": consecutive_retransmits,
    "last_data_recv_ms": lambda s: s.tcp_info.last_data_recv_ms if s.tcp_info else -1,
    "last_ack_recv_ms": lambda s: s.tcp_info.last_ack_recv_ms if s.tcp_info else -1,
    "probes": lambda s: s.tcp_info.probes if s.tcp_info else -1,
    "bytes_received": lambda s: s.tcp_info.bytes_received if s.tcp_info else -1,
    "bytes_acked": lambda s: s.tcp_info.bytes_acked if s.tcp_info else -1,
    "netns": lambda s: s.netns,
}


class ObjectPart:
    """Sockets that already exist as objects."""

    __slots__ = ("_sockets",)

    def __init__(self, sockets: Sequence[Socket]) -> None:
        self._sockets = tuple(sockets)

    def __len__(self) -> int:
        return len(self._sockets)

    def socket(self, i: int) -> Socket:
        return self._sockets[i]

    def column(self, name: Column) -> list[Any]:
        return list(map(_OBJECT_COLUMNS[name], self._sockets))

    def retained(self, names: Collection[str]) -> ObjectPart:
        """Itself: its sockets give any column (see SocketTable.release)."""
        return self


class KeptPart:
    """Columns of a part that are kept when its table is released (SocketTable.release), already built;
    the part's sockets are gone."""

    __slots__ = ("_columns", "_n")

    def __init__(self, columns: dict[str, Values], n: int) -> None:
        self._columns, self._n = columns, n

    def __len__(self) -> int:
        return self._n

    def socket(self, i: int) -> Socket:
        raise LookupError("a released part has no sockets")

    def column(self, name: Column) -> Values:
        return self._columns[name]

    def retained(self, names: Collection[str]) -> KeptPart:
        return KeptPart({name: self._columns[name] for name in names}, self._n)
