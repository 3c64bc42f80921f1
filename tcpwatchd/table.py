"""Every socket of one poll, held as columns: what the hot path of a poll reads.

A busy host has ~100k sockets, and building, hashing and walking one Python object per socket per poll
costs more than the kernel's whole dump (benchmarks/README.md). So a poll keeps its sockets as columns
(one list per field) extracted in bulk, and the stages after it (owners, tracker, detectors, counts) work
on columns with C-level builtins; a `Socket` object is built only for the few sockets a finding names,
or when someone iterates the table (the CLI, tests).

A table is made of parts: a `RawPart` is a run of equal-length sock_diag messages decoded by strided
memoryviews without a per-socket Python loop (sources/sockdiag_parse.py builds them); an `ObjectPart`
wraps ready `Socket`s (the /proc source, hand-built tests). Both give the same columns.

Columns are computed on first use and memoised. The *structure* of a table (identity keys, states,
inodes, timers) decides everything the detectors derive per socket but ages; when a poll's structure
equals the previous poll's, `inherit` carries those derived values over instead of recomputing them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from itertools import chain, compress
from typing import Any, Protocol, overload

from tcpwatchd.model import Socket, TcpState, consecutive_retransmits, queued_data

# The identity of a connection across polls: the kernel's socket cookie (sock_diag), which a socket keeps
# when it is orphaned or becomes TIME_WAIT; or, from /proc, the 4-tuple plus the inode for unconnected
# sockets (LISTEN ones can share a local address with SO_REUSEPORT).
Key = Hashable

# Columns every part provides. "key", "retransmits" (consecutive RTO retransmissions, from tcp_info
# when present), "last_data_recv_ms", "last_ack_recv_ms", "probes", "bytes_received" and "bytes_acked"
# (tcp_info's; -1 without tcp_info, the last two also from a kernel before 4.1) are derived.
COLUMNS = frozenset(
    {
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
    }
)
STRUCTURE = ("key", "state", "inode", "timer")
# Not connections: they share local addresses (so their identity carries the inode), and one first
# seen after start is not an opening.
UNCONNECTED = frozenset({TcpState.LISTEN, TcpState.CLOSE})
ConnKey = tuple[int, str, int, str, int, int]


class Part(Protocol):
    def __len__(self) -> int: ...

    def socket(self, i: int) -> Socket: ...

    def column(self, name: str) -> list[Any]: ...


def object_key(sock: Socket) -> Key:
    """The cookie when the source gave one; else the 4-tuple (+ inode for LISTEN/CLOSE sockets)."""
    return sock.cookie if sock.cookie is not None else four_tuple(sock)


def four_tuple(sock: Socket) -> ConnKey:
    inode = sock.inode if sock.state in UNCONNECTED else 0
    return (sock.family, sock.local_address, sock.local_port, sock.remote_address, sock.remote_port, inode)


_OBJECT_COLUMNS: dict[str, Callable[[Socket], Any]] = {
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

    def column(self, name: str) -> list[Any]:
        return list(map(_OBJECT_COLUMNS[name], self._sockets))


class SocketTable(Sequence[Socket]):
    """The sockets of one poll. Indexing or iterating builds `Socket`s; `column()` is the fast way in."""

    __slots__ = ("_ends", "_memo", "_n", "_parts")

    def __init__(self, parts: Sequence[Part] = ()) -> None:
        self._parts = tuple(p for p in parts if len(p))
        ends, n = [], 0
        for p in self._parts:
            n += len(p)
            ends.append(n)
        self._ends = ends
        self._n = n
        self._memo: dict[str, Any] = {}

    @classmethod
    def of(cls, sockets: Sequence[Socket]) -> SocketTable:
        return cls([ObjectPart(sockets)])

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> Socket: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Socket]: ...

    def __getitem__(self, i: int | slice) -> Socket | Sequence[Socket]:
        if isinstance(i, slice):
            return tuple(self.socket(j) for j in range(*i.indices(self._n)))
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError("socket index out of range")
        return self.socket(i)

    def __iter__(self) -> Iterator[Socket]:
        for part in self._parts:
            for j in range(len(part)):
                yield part.socket(j)

    def __repr__(self) -> str:
        return f"SocketTable({self._n} sockets in {len(self._parts)} parts)"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SocketTable):
            return self._n == other._n and all(a == b for a, b in zip(self, other, strict=True))
        if isinstance(other, tuple | list):
            return self._n == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable memo; equality is by content

    def socket(self, i: int) -> Socket:
        """The `Socket` at row `i` (0 <= i < len), built on demand."""
        start = 0
        for part, end in zip(self._parts, self._ends, strict=True):
            if i < end:
                return part.socket(i - start)
            start = end
        raise IndexError("socket index out of range")

    def sockets(self, rows: Sequence[int]) -> list[Socket]:
        return [self.socket(i) for i in rows]

    def column(self, name: str) -> list[Any]:
        """One field for every socket, in row order (memoised: do not mutate the list)."""
        col = self._memo.get(name)
        if col is None:
            if name not in COLUMNS:
                raise KeyError(f"no socket column {name!r}")
            if len(self._parts) == 1:
                col = self._parts[0].column(name)
            else:
                col = list(chain.from_iterable(p.column(name) for p in self._parts))
            self._memo[name] = col
        return col

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        """A value derived from this table, computed once (detectors share it through this)."""
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    # --- derived views the stages share ------------------------------------------------------------

    def rows_in(self, state: TcpState) -> list[int]:
        """Row numbers of the sockets in `state`, ascending (memoised, inherited when structure holds)."""
        groups: dict[int, list[int]] = self.memo("structure:rows_by_state", self._rows_by_state)
        return groups.get(int(state), [])

    def _rows_by_state(self) -> dict[int, list[int]]:
        # As bytes (states are 1..12): a rare state's rows are found with bytes.find, a common one's by
        # compress over a translated 0/1 mask; both loop in C, 4x faster than comparing ints.
        states = bytes(self.column("state"))
        groups: dict[int, list[int]] = {}
        for s in set(states):
            if states.count(s) * 8 < self._n:
                groups[s] = _positions(states, s)
            else:
                groups[s] = list(compress(range(self._n), states.translate(_ONLY[s])))
        return groups

    def unread_rows(self) -> list[int]:
        """Rows with data the application has not read (see model.unread_bytes): few, found in C."""
        rows: list[int] = self.memo("unread_rows", self._unread_rows)
        return rows

    def _unread_rows(self) -> list[int]:
        rqueue, states = self.column("rqueue"), self.column("state")
        # rqueue > 0 only, found in C: usually a handful.
        return [i for i in compress(range(self._n), rqueue) if queued_data(states[i], rqueue[i]) > 0]

    def unread_bytes(self, i: int) -> int:
        return queued_data(self.column("state")[i], self.column("rqueue")[i])

    def structure(self) -> tuple[list[Any], ...]:
        """Identity keys, states, inodes and timers, in row order: two polls with equal structures have
        the same sockets in the same order, and differ at most in queues, timers' expiry and tcp_info."""
        return tuple(self.column(name) for name in STRUCTURE)

    def carried(self, prefixes: tuple[str, ...] = ("structure:",)) -> dict[str, Any]:
        """The memos whose names start with one of `prefixes`: what a next poll may adopt."""
        return {name: value for name, value in self._memo.items() if name.startswith(prefixes)}

    def adopt(self, memos: Mapping[str, Any]) -> None:
        """Take memos carried from a poll whose structure (and, for owner-derived ones, owners) the
        caller has checked to be the same as this one's."""
        for name, value in memos.items():
            self._memo.setdefault(name, value)


# _ONLY[s] translates byte s to 1 and every other byte to 0.
_ONLY = tuple(bytes(int(b == s) for b in range(256)) for s in range(256))


def _positions(data: bytes, value: int) -> list[int]:
    """Every index of `value` in `data`, ascending."""
    found: list[int] = []
    find = data.find
    at = find(value)
    while at >= 0:
        found.append(at)
        at = find(value, at + 1)
    return found
