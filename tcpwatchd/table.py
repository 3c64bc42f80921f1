"""Every socket of one poll, held as columns: what the hot path of a poll reads.

A busy host has ~100k sockets, and building, hashing and walking one Python object per socket per poll
costs more than the kernel's whole dump (benchmarks/README.md). So a poll keeps its sockets as columns
(one compact array per numeric field) extracted in bulk, and the stages after it (owners, tracker,
detectors, counts) work on columns with C-level builtins; a `Socket` object is built only for the few
sockets a finding names, or when someone iterates the table (the CLI, tests).

A table is made of parts (columns.py): a dump's are `CompactPart`s (sources/sockdiag_compact.py: each
field of a run of sock_diag messages in its own array, copied out of the receive buffer), a `RawPart` is
such a run still over the received bytes (tests, and the compactor's input), an `ObjectPart` wraps ready
`Socket`s (the /proc source, odd messages, hand-built tests). All give the same columns. `release` slims
a poll's table to what the next poll reads of it.

Columns are computed on first use and memoised. A value derived from columns (rows by state, owner names
per row, a detector's candidate rows) is declared once as a `Derived`, naming the columns it reads and
whether it reads the owners; `derive` memoises it on the table. A poll then `inherit`s the previous poll's
derived values whose columns (and owners) are unchanged, instead of recomputing them: the table decides,
from the declaration, never the caller, so a value that reads tcp_info or queues is never served stale.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress
from typing import Any, Generic, TypeVar, overload

from tcpwatchd.columns import (
    COLUMNS,
    STRUCTURE,
    Column,
    ObjectPart,
    Part,
    Values,
)
from tcpwatchd.model import Socket, TcpState, queued_data

T = TypeVar("T")


# Not slotted: typing sets __orig_class__ on instances of a subscripted generic (Derived[int](...)).
@dataclass(frozen=True, eq=False)
class Derived(Generic[T]):
    """A value derived from one poll's table, declared at module level with everything it reads.

    `reads` are the columns it depends on, `owners` whether it also reads the poll's inode -> owner map.
    The table carries the value to the next poll only when all of those are equal there (see `inherit`);
    `carried=False` memoises it for this poll only (a helper bound to this poll's columns, say), and
    `release` drops it. Identity is the object: two declarations never share a memo, whatever their names.
    """

    name: str
    reads: tuple[Column, ...]
    owners: bool = False
    carried: bool = True

    def __post_init__(self) -> None:
        unknown = [c for c in self.reads if c not in COLUMNS]
        if unknown or not self.reads:
            raise ValueError(f"{self.name}: reads unknown columns {unknown}" if unknown else "reads nothing")


@dataclass(frozen=True, slots=True)
class Carry:
    """What a poll hands to the next: its derived values and the columns and owners they were built from."""

    values: Mapping[Derived[Any], Any] = field(default_factory=dict)
    columns: Mapping[str, Values] = field(default_factory=dict)
    owners: object = None  # what the owner-reading values were built from (see Snapshot.carry)


class SocketTable(Sequence[Socket]):
    """The sockets of one poll. Indexing or iterating builds `Socket`s; `column()` is the fast way in."""

    __slots__ = ("_derived", "_ends", "_kept", "_memo", "_n", "_parts", "_released")

    def __init__(self, parts: Sequence[Part] = ()) -> None:
        self._parts = tuple(p for p in parts if len(p))
        ends, n = [], 0
        for p in self._parts:
            n += len(p)
            ends.append(n)
        self._ends = ends
        self._n = n
        self._memo: dict[str, Values] = {}  # column name -> values
        self._derived: dict[Derived[Any], Any] = {}
        self._released = False
        self._kept: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sockets: Sequence[Socket]) -> SocketTable:
        return cls([ObjectPart(sockets)])

    def __len__(self) -> int:
        return self._n

    @property
    def parts(self) -> tuple[Part, ...]:
        """The non-empty parts, in row order (to build a table of several sources' parts)."""
        return self._parts

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
        if self._released:
            raise LookupError("this socket table was released: only its columns remain")
        start = 0
        for part, end in zip(self._parts, self._ends, strict=True):
            if i < end:
                return part.socket(i - start)
            start = end
        raise IndexError("socket index out of range")

    def sockets(self, rows: Sequence[int]) -> list[Socket]:
        return [self.socket(i) for i in rows]

    @property
    def released(self) -> bool:
        """True after `release`: only the built columns remain, no row can be decoded."""
        return self._released

    def has_column(self, name: Column) -> bool:
        """True when `column(name)` is already built (it costs nothing more to read)."""
        return name in self._memo

    def column(self, name: Column) -> Values:
        """One field for every socket, in row order (memoised: do not mutate it). Numbers from a dump
        come as a compact `array.array`, other columns as lists; both index, iterate and compare."""
        col = self._memo.get(name)
        if col is None:
            if name not in COLUMNS:
                raise KeyError(f"no socket column {name!r}")
            if self._released and name not in self._kept:
                raise LookupError(f"column {name!r} was not kept when this socket table was released")
            if len(self._parts) == 1:
                col = self._parts[0].column(name)
            else:
                col = _joined([p.column(name) for p in self._parts])
            self._memo[name] = col
        return col

    def release(self, keep: Iterable[Column] = ()) -> None:
        """Keep only the `keep` columns and the derived values: what a later poll reads of this one (the
        tracker's previous table; the carry holds its own columns). The parts are slimmed to those
        columns, which are then computed only if read (addresses, say, only on a change of socket
        source); afterwards `socket()` and any other column raise LookupError."""
        kept = frozenset(keep)
        self._memo = {name: values for name, values in self._memo.items() if name in kept}
        unread = kept.difference(self._memo)  # the parts need not also keep what the memo holds
        self._parts = tuple(part.retained(unread) for part in self._parts)
        self._derived = {what: value for what, value in self._derived.items() if what.carried}
        self._kept, self._released = kept, True

    def derive(self, what: Derived[T], compute: Callable[[], T]) -> T:
        """`what` for this table, computed once (or inherited from the previous poll)."""
        if what in self._derived:
            value: T = self._derived[what]
            return value
        value = self._derived[what] = compute()
        return value

    def carry(self, owners: object) -> Carry:
        """The derived values of this poll, with the columns they read, for the next poll's `inherit`."""
        values = {what: value for what, value in self._derived.items() if what.carried}
        needed = {c for what in values for c in what.reads}
        return Carry(
            values=values,
            columns={c: self.column(c) for c in needed},  # memoised lists: no copy
            owners=owners,
        )

    def inherit(self, previous: Carry, owners: object) -> int:
        """Adopt each previous derived value whose columns (and owners, if it reads them) are equal in
        this table; returns how many were adopted. Equality is checked per column once, in C."""
        same: dict[str, bool] = {}
        same_owners: bool | None = None
        adopted = 0
        for what, value in previous.values.items():
            if what in self._derived:
                continue
            if what.owners:
                if same_owners is None:
                    same_owners = previous.owners is not None and owners == previous.owners
                if not same_owners:
                    continue
            if all(self._same(c, previous, same) for c in what.reads):
                self._derived[what] = value
                adopted += 1
        return adopted

    def _same(self, name: Column, previous: Carry, known: dict[str, bool]) -> bool:
        if name not in known:
            old = previous.columns.get(name)
            known[name] = old is not None and len(old) == self._n and self.column(name) == old
        return known[name]

    # --- derived views the stages share ------------------------------------------------------------

    def rows_in(self, state: TcpState) -> Sequence[int]:
        """Row numbers of the sockets in `state`, ascending (memoised, inherited while states hold)."""
        return self.derive(_ROWS_BY_STATE, self._rows_by_state).get(int(state), ())

    def _rows_by_state(self) -> dict[int, Sequence[int]]:
        # As bytes (states are 1..12): a rare state's rows are found with bytes.find, a common one's by
        # compress over a translated 0/1 mask; both loop in C, 4x faster than comparing ints. Held as
        # u32 arrays: a list of 100k row numbers is 3.6 MB of int objects, an array 400 kB.
        states = bytes(self.column("state"))
        groups: dict[int, Sequence[int]] = {}
        for s in set(states):
            if states.count(s) * 8 < self._n:
                groups[s] = array("I", _positions(states, s))
            else:
                groups[s] = array("I", compress(range(self._n), states.translate(_ONLY[s])))
        return groups

    def unread_rows(self) -> list[int]:
        """Rows with data the application has not read (see model.unread_bytes): few, found in C."""
        return self.derive(_UNREAD_ROWS, self._unread_rows)

    def _unread_rows(self) -> list[int]:
        rqueue, states = self.column("rqueue"), self.column("state")
        # rqueue > 0 only, found in C: usually a handful.
        return [i for i in compress(range(self._n), rqueue) if queued_data(states[i], rqueue[i]) > 0]

    def unread_bytes(self, i: int) -> int:
        return queued_data(self.column("state")[i], self.column("rqueue")[i])

    def structure(self) -> tuple[Values, ...]:
        """Identity keys, states, inodes and timers, in row order: two polls with equal structures have
        the same sockets in the same order, and differ at most in queues, timers' expiry and tcp_info."""
        return tuple(self.column(name) for name in STRUCTURE)


_ROWS_BY_STATE = Derived[dict[int, Sequence[int]]]("table.rows_by_state", reads=("state",))
_UNREAD_ROWS = Derived[list[int]]("table.unread_rows", reads=("state", "rqueue"))


def _joined(columns: list[Values]) -> Values:
    """Parts' columns end to end: one array when every part gave one (of a wider signed type when their
    types differ: tcp_info's u32 next to the -1 of parts without tcp_info), else a list."""
    arrays = [c for c in columns if isinstance(c, array)]
    if len(arrays) < len(columns):
        return list(chain.from_iterable(columns))
    codes = {c.typecode for c in arrays}
    out: array[Any] = array(codes.pop() if len(codes) == 1 else "h" if codes <= {"b", "B"} else "q")
    try:
        for c in arrays:
            out.extend(c if c.typecode == out.typecode else iter(c))
    except OverflowError:  # a u64 of 2**63 or more among signed values
        return list(chain.from_iterable(columns))
    return out


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
