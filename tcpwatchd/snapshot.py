"""One poll's picture, and the views of it every later stage shares. Pure: built by the sources (see
sources/taker.py), read by the tracker, the detectors, the report and the outputs; no I/O here.

The views (owner name per row, sockets by state and process, the owner of each listening port) are
computed once per poll and memoised on the socket table, declared with the columns they read
(table.Derived): the next poll inherits them when those columns and the owners are unchanged.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter
from types import MappingProxyType

from tcpwatchd.facts import ConnectionEvents, PortRange, ProcessFacts
from tcpwatchd.model import (
    NOBODY,
    AttributionStats,
    NamespaceStats,
    Owner,
    ProcessLabels,
    Socket,
    SourceStatus,
    TcpState,
    WatchedNetns,
)
from tcpwatchd.table import Carry, Derived, SocketTable

SOCKET_SOURCES = frozenset({"sockdiag", "procnet"})


def _no_owners() -> Mapping[int, Owner]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One poll: every TCP socket (as a `SocketTable`), who owns it, and the kernel's TCP counters."""

    taken_at: float  # wall clock, seconds since the epoch
    monotonic: float  # the poll's monotonic time: ages and intervals are measured on this clock
    source: str  # which socket source produced `sockets`: "sockdiag" or "procnet"
    sockets: SocketTable
    owners: Mapping[int, Owner] = field(default_factory=_no_owners)  # inode -> counted owner
    kernel_counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    sources: tuple[SourceStatus, ...] = ()
    attribution: AttributionStats = field(default_factory=AttributionStats)
    # The other network namespaces read (sources/foreign.py); sockets of tcpwatchd's own have netns 0.
    namespaces: tuple[WatchedNetns, ...] = ()
    namespace_stats: NamespaceStats = field(default_factory=NamespaceStats)
    # Beyond the socket table (facts.py): connections that ended between polls, fd use of the processes
    # with sockets (pid -> facts, refreshed slowly), and each namespace's ephemeral port range.
    connection_events: ConnectionEvents = field(default_factory=ConnectionEvents)
    process_facts: Mapping[int, ProcessFacts] = field(default_factory=lambda: MappingProxyType({}))
    port_ranges: Mapping[int, PortRange] = field(default_factory=lambda: MappingProxyType({}))
    # The distinct owners (one per process holding sockets), when the source gave them; see `holders`.
    processes: tuple[Owner, ...] = ()

    @property
    def sockets_failed(self) -> bool:
        """True when every socket source tried in this poll failed: the empty table means nothing."""
        tried = [s for s in self.sources if s.name in SOCKET_SOURCES]
        return bool(tried) and not any(s.ok for s in tried)

    def owner_of(self, sock: Socket) -> Owner | None:
        return self.owners.get(sock.inode) if sock.inode else None

    def carry(self) -> Carry:
        """What the next poll may inherit from this one (see `inherit`)."""
        return self.sockets.carry(self._attribution())

    def inherit(self, previous: Carry) -> None:
        """Take the previous poll's derived views whose columns (and owners) this poll has unchanged."""
        self.sockets.inherit(previous, self._attribution())

    def _attribution(self) -> tuple[Mapping[int, Owner], Mapping[int, ProcessLabels]]:
        # The owners and, for sockets no process holds, their namespace's pod: a value reading owners
        # is inherited only when both are unchanged (a namespace's pod may be named a poll late).
        return self.owners, pod_labels(self)


def holders(snap: Snapshot) -> tuple[Owner, ...]:
    """One Owner per process holding sockets: the source's, or found from the owners."""
    return snap.processes if snap.processes or not snap.owners else distinct_owners(snap.owners)


def distinct_owners(owners: Mapping[int, Owner]) -> tuple[Owner, ...]:
    """The owners of `owners`, each once, by identity (the owner cache shares one per process), in C."""
    held = list(owners.values())
    return tuple(dict(zip(map(id, held), held, strict=True)).values())


def pod_labels(snap: Snapshot) -> Mapping[int, ProcessLabels]:
    """netns id -> the labels sockets no process holds count under, for namespaces that are a pod's."""
    return {ns.netns: ns.labels for ns in snap.namespaces if ns.pod}


_NAMES = Derived[list[str]]("snapshot.owner_names", reads=("inode",), owners=True)
_LABELS = Derived[list[ProcessLabels]]("snapshot.owner_labels", reads=("inode", "netns"), owners=True)
_COUNTS = Derived[Mapping[tuple[str, ProcessLabels], int]](
    "snapshot.counts", reads=("state", "inode", "netns"), owners=True
)
_LISTENERS = Derived[Mapping[tuple[int, int], Owner]](
    "snapshot.listeners", reads=("state", "inode", "local_port", "netns"), owners=True
)


def row_owner_names(snap: Snapshot) -> list[str]:
    """The counted owner's name of every row of the snapshot, "" when no process holds the socket."""
    return snap.sockets.derive(_NAMES, lambda: _row_names(snap))


def row_labels(snap: Snapshot) -> list[ProcessLabels]:
    """The series identity of every row's counted owner; for a socket no process holds, `NOBODY`, or
    process "" of its namespace's pod when the namespace is a pod's."""
    return snap.sockets.derive(_LABELS, lambda: _row_labels(snap))


def count_by_state_and_process(snap: Snapshot) -> Mapping[tuple[str, ProcessLabels], int]:
    """(state label, owner's labels) -> sockets; `NOBODY` for sockets no process holds. Done once per
    poll, so that a scrape only renders it."""
    return snap.sockets.derive(_COUNTS, lambda: _count(snap))


def listener_owners(snap: Snapshot) -> Mapping[tuple[int, int], Owner]:
    """(netns, local port) -> the owner of a LISTEN socket on it: the service a peer connected to."""
    return snap.sockets.derive(_LISTENERS, lambda: _listeners(snap))


_NOBODY = Owner(pid=0, name="", start_time=0.0, user="")
_NAME = attrgetter("name")


def _row_names(snap: Snapshot) -> list[str]:
    # Two passes in C; inode 0 (a socket no fd holds) is never a key of `owners`. On a dict: get on a
    # mappingproxy is a method lookup per row, and its copy() is a cheap dict copy.
    owners = snap.owners
    get = owners.copy().get if isinstance(owners, MappingProxyType) else owners.get
    return list(map(_NAME, map(get, snap.sockets.column("inode"), repeat(_NOBODY))))


def _row_labels(snap: Snapshot) -> list[ProcessLabels]:
    processes = row_processes(snap)
    return list(map(processes.labels.__getitem__, processes.codes))


@dataclass(frozen=True, slots=True)
class RowProcesses:
    """Every row's counted owner as a small integer: `labels[codes[row]]` is the row's series identity.

    Bytes when at most 256 processes hold sockets (then a process's rows are found with bytes.find and
    counted with bytes.count, in C), else an array of u32. Equal labels share one code, so two processes
    of one name in one pod count as one series, as everywhere else."""

    labels: tuple[ProcessLabels, ...]
    codes: bytes | array[int]

    def codes_of(self, rows: Sequence[int]) -> bytes | array[int]:
        """The codes of `rows`, in their order."""
        if len(rows) == len(self.codes):
            return self.codes  # every row (rows are ascending and distinct)
        if isinstance(self.codes, bytes):
            return bytes(map(self.codes.__getitem__, rows))
        return array("I", map(self.codes.__getitem__, rows))

    def counted(self, codes: bytes | array[int]) -> dict[ProcessLabels, int]:
        """How many of `codes` each process has."""
        if isinstance(codes, bytes):
            return {self.labels[k]: codes.count(k) for k in set(codes)}
        return {self.labels[k]: n for k, n in Counter(codes).items()}

    def first_of_each(self, codes: bytes | array[int], limit: int) -> list[int]:
        """The positions in `codes` of each process's first `limit` codes, ascending."""
        if isinstance(codes, bytes):
            found: list[int] = []
            for k in set(codes):  # bytes.find jumps to the next one in C
                at = codes.find(k)
                for _ in range(limit):
                    if at < 0:
                        break
                    found.append(at)
                    at = codes.find(k, at + 1)
            found.sort()
            return found
        seen: dict[int, int] = {}
        out = []
        for at, k in enumerate(codes):
            n = seen.get(k, 0)
            if n < limit:
                seen[k] = n + 1
                out.append(at)
        return out


_PROCESSES = Derived[RowProcesses]("snapshot.row_processes", reads=("inode", "netns"), owners=True)


def row_processes(snap: Snapshot) -> RowProcesses:
    """Each row's owner coded as an integer (see RowProcesses)."""
    return snap.sockets.derive(_PROCESSES, lambda: _row_processes(snap))


def _row_processes(snap: Snapshot) -> RowProcesses:
    # Owners are shared objects, one per process: the rows are coded by the owner's identity in C (hashing
    # an Owner per row costs ~1 µs), and only the distinct owners are labelled in Python.
    owners = snap.owners
    get = owners.copy().get if isinstance(owners, MappingProxyType) else owners.get
    inodes = snap.sockets.column("inode")
    index: dict[ProcessLabels, int] = {}
    code_of: dict[int, int] = {}
    # Streamed twice rather than kept: a list of each row's owner id would be 40 bytes a row.
    for key, owner in dict(zip(map(id, map(get, inodes)), map(get, inodes), strict=True)).items():
        code_of[key] = index.setdefault(owner.labels if owner is not None else NOBODY, len(index))
    codes = array("I", map(code_of.__getitem__, map(id, map(get, inodes))))
    pods = pod_labels(snap)
    if pods:  # sockets without an owner in a pod's namespace count under that pod
        netns, nobody = snap.sockets.column("netns"), code_of.get(id(None), -1)
        for row in compress(range(len(codes)), map(pods.__contains__, netns)):
            if codes[row] == nobody:
                codes[row] = index.setdefault(pods[netns[row]], len(index))
    labels = tuple(index)
    return RowProcesses(labels, array("B", codes).tobytes() if len(labels) <= 256 else codes)


def _count(snap: Snapshot) -> Mapping[tuple[str, ProcessLabels], int]:
    processes = row_processes(snap)
    raw = Counter(zip(snap.sockets.column("state"), processes.codes, strict=True))  # small ints: cheap
    counts: Counter[tuple[str, ProcessLabels]] = Counter()
    for (state, code), n in raw.items():
        counts[(TcpState(state).label, processes.labels[code])] += n
    return MappingProxyType(dict(counts))


def _listeners(snap: Snapshot) -> Mapping[tuple[int, int], Owner]:
    table = snap.sockets
    inodes, ports, netns = table.column("inode"), table.column("local_port"), table.column("netns")
    owners: dict[tuple[int, int], Owner] = {}
    for row in table.rows_in(TcpState.LISTEN):
        owner = snap.owners.get(inodes[row]) if inodes[row] else None
        if owner is not None:
            owners.setdefault((netns[row], ports[row]), owner)
    return MappingProxyType(owners)
