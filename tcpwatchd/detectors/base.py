"""What every detector shares: the `Finding` it produces, the `Outcome` it returns, and the helpers that
turn rows of the socket table into findings.

A detector is a pure function of the tracker's view, its own config section and the poll's context:
`(TrackedPoll, Settings, Context) -> Outcome`. How it is registered: detectors/registry.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from tcpwatchd.frozen import frozen_builder
from tcpwatchd.model import NOBODY, Owner, ProcessLabels, Socket, Workload
from tcpwatchd.openings import peer_address as peer_address  # re-exported: detectors key peers with it
from tcpwatchd.snapshot import pod_labels, row_processes
from tcpwatchd.table import Derived
from tcpwatchd.tracker import TrackedPoll
from tcpwatchd.verdicts import Probed


class Kind(str):
    """The name of a kind of finding ('close_wait'). The detector that produces a kind declares it (and
    its gauge, help and journal id) in its registration (detectors/registry.py); there is no central list."""

    __slots__ = ()


DetailValue = str | int | float


@dataclass(frozen=True, slots=True)
class Detail:
    """One fact a person needs to act on a finding, e.g. Detail("unread_bytes", 4096)."""

    key: str
    value: DetailValue


@dataclass(frozen=True, slots=True)
class Finding:
    """One pathology on one connection (or, for a reconnect storm, one peer address and local port).

    `local` and `remote` are `ss`-style endpoints ('10.0.0.1:80', '[::1]:80'); a storm has no single
    connection, so it names the service as '*:port' and the peer as 'address:*'. `peer` is the remote
    address alone. `process` is the owner's comm ("" for sockets no process holds), hostile input;
    `namespace`, `pod` and `container` say where it runs (Kubernetes names, "" outside a pod).
    """

    kind: Kind
    process: str
    pid: int
    unit: str
    local: str
    remote: str
    peer: str
    age_seconds: float  # how long the condition has held, as far as tcpwatchd has seen
    details: tuple[Detail, ...] = ()
    namespace: str = ""
    pod: str = ""
    container: str = ""
    netns: int = 0  # the network namespace of the socket (model.Socket.netns; 0: tcpwatchd's own)
    rule: str = ""  # the `[[override]]` whose settings judged it ("" for the [detect] defaults)

    @property
    def labels(self) -> ProcessLabels:
        """The per-process series this finding counts in."""
        return ProcessLabels(self.process, self.namespace, self.pod, self.container)

    @property
    def identity(self) -> tuple[str, int, str, str]:
        """Stable across polls while the condition lasts: what `announce` diffs on. Two namespaces can
        hold the same 4-tuple (each pod has its own 127.0.0.1), so the namespace is part of it."""
        return (self.kind, self.netns, self.local, self.remote)

    def detail(self, key: str) -> DetailValue | None:
        return next((d.value for d in self.details if d.key == key), None)

    def describe(self) -> str:
        """One readable line, hostile strings escaped: "close_wait process='nginx' pid=12 ..."."""
        facts = " ".join(f"{d.key}={d.value}" for d in self.details)
        unit = f" unit={self.unit!r}" if self.unit else ""
        pod = f" pod={self.namespace + '/' + self.pod!r} container={self.container!r}" if self.pod else ""
        if not self.pod and self.netns:  # a container or namespace that is no pod's: say which one
            pod = f" netns={self.netns}" + (f" container={self.container!r}" if self.container else "")
        pod += f" rule={self.rule!r}" if self.rule else ""
        return (
            f"{self.kind} process={self.process!r} pid={self.pid}{unit}{pod} peer={self.peer} "
            f"age={self.age_seconds:.1f}s socket={self.local} -> {self.remote}"
            + (f" {facts}" if facts else "")
        )

    def to_json(self) -> dict[str, object]:
        return {
            "kind": str(self.kind),
            "process": self.process,
            "pid": self.pid,
            "unit": self.unit,
            "namespace": self.namespace,
            "pod": self.pod,
            "container": self.container,
            "local": self.local,
            "remote": self.remote,
            "peer": self.peer,
            "age_seconds": round(self.age_seconds, 3),
            "details": {d.key: d.value for d in self.details},
            "rule": self.rule,
        }


def _nothing() -> Mapping[str, Mapping[ProcessLabels, float]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one detector found in one poll.

    `counts` has every finding per (kind, process labels), also those `findings` does not list (see
    LISTED_PER_PROCESS); `mass_outcome` and `listed_outcome` fill it. `degraded` says why the detector could
    not judge every socket ('' when it could). `values` holds the extra per-process figures the detector
    exports (its registration's `values`): value key -> process -> value, e.g. close_wait's oldest age.
    """

    findings: tuple[Finding, ...] = ()
    counts: Mapping[tuple[Kind, ProcessLabels], int] = field(default_factory=lambda: MappingProxyType({}))
    degraded: str = ""
    values: Mapping[str, Mapping[ProcessLabels, float]] = field(default_factory=_nothing)
    # Every row of this poll's socket table each kind was found on, listed or not (`mass_outcome` fills
    # it): what an action on the findings (probing, tcpwatchd/actions) starts from. Valid for this poll's
    # table only.
    rows: Mapping[Kind, Sequence[int]] = field(default_factory=lambda: MappingProxyType({}))
    # Per (process, port) figures of a `ValueGauge(per_port=True)`: key -> (process, port) -> value;
    # port -1 renders as port="" (folded).
    port_values: Mapping[str, Mapping[tuple[ProcessLabels, int], float]] = field(
        default_factory=lambda: MappingProxyType({})
    )


@dataclass(frozen=True, slots=True)
class Context:
    """What a detector may read besides the tracker and its own section: the sysctl values of this poll
    (dotted names; empty when [sysctl] mode is "off"), and the probe verdicts by socket cookie (empty
    unless [detect.phantom] probe is on)."""

    sysctl: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    probed: Mapping[int, Probed] = field(default_factory=lambda: MappingProxyType({}))


# A host can hold tens of thousands of sockets in one condition (every connection without keepalive, a
# CLOSE_WAIT leak at its height). The gauges count them all; each poll names at most this many per kind and
# process (in socket table order), so that a poll, its log lines and `snapshot` stay readable and cheap.
LISTED_PER_PROCESS = 20


def endpoint(address: str, port: int | str) -> str:
    """`ss`-style endpoint: ('198.18.0.2', '*') -> '198.18.0.2:*', ('::1', 80) -> '[::1]:80'."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def owner_labels(tracked: TrackedPoll, rows: Iterable[int]) -> list[ProcessLabels]:
    """The series identity of each row's counted owner (`NOBODY` when no process holds the socket)."""
    processes = row_processes(tracked.snapshot)
    return list(map(processes.labels.__getitem__, map(processes.codes.__getitem__, rows)))


def judged_rows(tracked: TrackedPoll, rows: Sequence[int]) -> Sequence[int]:
    """The rows of `rows` this detector run may judge: all of them, unless the report gave the run a
    scope (an `[[override]]` group, `[ignore]`d sockets; see scope.py). A detector that aggregates rows
    itself (an oldest age, say) takes them through here; `mass_outcome` does it for the rows it counts."""
    return rows if tracked.scope is None else tracked.scope.judged(rows)


def judges_opening(tracked: TrackedPoll, owner: Owner | None, local_port: int, remote_address: str) -> bool:
    """Whether this run judges openings of `owner`'s port from `remote_address` (they may have closed
    since: they have no row)."""
    scope = tracked.scope
    return scope is None or scope.opening(owner, local_port, remote_address)


def mass_outcome(
    kind: Kind,
    tracked: TrackedPoll,
    rows: Sequence[int],
    finding: Callable[[int], Finding],
    carried: Derived[Listing] | None = None,
) -> Outcome:
    """Count every row (of those the run judges) under its process; build `finding(row)` only for the
    first LISTED_PER_PROCESS rows of each process, in table order.

    `carried`: the rows are a value derived from the columns it names (and the owners, which it must
    read): the counts and the rows listed are then carried to the next poll with it (see table.Derived),
    when the run judges every socket."""
    rows = judged_rows(tracked, rows)
    table = tracked.snapshot.sockets
    if carried is not None and tracked.scope is None:
        counts, listed = table.derive(carried, lambda: _listing(kind, tracked, rows))
    else:
        counts, listed = _listing(kind, tracked, rows)
    if len(listed) * _DECODE_PER_COLUMN_ROW >= len(table) and not table.released:
        table.column("remote_address")  # many listed rows: reading columns beats decoding each (row_finding)
    return Outcome(
        findings=tuple(finding(row) for row in listed),
        counts=MappingProxyType(counts),
        rows=MappingProxyType({kind: rows}) if rows else MappingProxyType({}),
    )


Listing = tuple[Mapping[tuple[Kind, ProcessLabels], int], list[int]]  # counts, and the rows to name


def _listing(kind: Kind, tracked: TrackedPoll, rows: Sequence[int]) -> Listing:
    processes = row_processes(tracked.snapshot)
    codes = processes.codes_of(rows)
    counts = {(kind, name): n for name, n in processes.counted(codes).items()}
    return counts, [rows[at] for at in processes.first_of_each(codes, LISTED_PER_PROCESS)]


def connection_finding(
    kind: Kind, tracked: TrackedPoll, sock: Socket, age: float, details: tuple[Detail, ...] = ()
) -> Finding:
    """A finding about one socket, attributed to its counted owner (or, when no process holds it, to
    its namespace's pod)."""
    owner, ns = tracked.owner_of(sock), sock.netns
    nobody = pod_labels(tracked.snapshot).get(ns, NOBODY) if owner is None and ns else NOBODY
    peer = peer_address(sock.remote_address)
    return owned_finding(kind, owner, sock.local, sock.remote, peer, age, details, ns, nobody)


# Up to this many rows, building the address columns is cheaper than decoding the listed rows one by one;
# past it, so is building them when rows to list are at least 1 in _DECODE_PER_COLUMN_ROW of the table
# (decoding one row costs about as much as building 16 rows of an address column).
_COLUMNS_UP_TO = 16_384
_DECODE_PER_COLUMN_ROW = 16


def row_finding(
    kind: Kind, tracked: TrackedPoll, row: int, age: float, details: tuple[Detail, ...] = ()
) -> Finding:
    """`connection_finding` for the socket at `row`, read from the table's columns: no `Socket` is built
    (a poll can name thousands: 20 per process and kind). Same fields as `connection_finding`.

    On a large table whose address columns nothing else has built yet, building them for a few hundred
    findings costs more than decoding those rows alone (~10 µs a row against ~0.4 µs a socket per column):
    then the row is decoded."""
    table = tracked.snapshot.sockets
    if len(table) > _COLUMNS_UP_TO and not table.has_column("remote_address") and not table.released:
        return connection_finding(kind, tracked, table.socket(row), age, details)
    return table.derive(_FINDER, lambda: _RowFinder(tracked)).find(kind, row, age, details)


class _RowFinder:
    """row_finding's columns and lookups, bound once per poll: a poll can name thousands of rows."""

    def __init__(self, tracked: TrackedPoll) -> None:
        column = tracked.snapshot.sockets.column
        self.inodes, self.netns = column("inode"), column("netns")
        self.laddr, self.lport = column("local_address"), column("local_port")
        self.raddr, self.rport = column("remote_address"), column("remote_port")
        self.owner_of, self.pods = tracked.snapshot.owners.get, pod_labels(tracked.snapshot)

    def find(self, kind: Kind, row: int, age: float, details: tuple[Detail, ...]) -> Finding:
        inode, netns, raddr = self.inodes[row], self.netns[row], self.raddr[row]
        owner = self.owner_of(inode) if inode else None
        nobody = self.pods.get(netns, NOBODY) if owner is None and netns else NOBODY
        local, remote = endpoint(self.laddr[row], self.lport[row]), endpoint(raddr, self.rport[row])
        return owned_finding(kind, owner, local, remote, peer_address(raddr), age, details, netns, nobody)


# Bound to one poll's columns and owners: memoised for the poll, never carried.
_FINDER = Derived[_RowFinder](
    "base.row_finder",
    reads=("inode", "netns", "local_address", "local_port", "remote_address", "remote_port"),
    owners=True,
    carried=False,
)


_new_finding = frozen_builder(Finding)


def owned_finding(
    kind: Kind,
    owner: Owner | None,
    local: str,
    remote: str,
    peer: str,
    age: float,
    details: tuple[Detail, ...] = (),
    netns: int = 0,
    nobody: ProcessLabels = NOBODY,
) -> Finding:
    """A finding attributed to `owner`, with where the owner runs; None: no process holds it, and it
    counts under `nobody` (process "" of its namespace's pod, if any)."""
    if owner is not None:
        w = owner.workload
        who: tuple[str, int, str] = (owner.name, owner.pid, owner.unit or owner.container)
    else:
        w, who = Workload(nobody.namespace, nobody.pod, nobody.container), ("", 0, "")
    # Positional and past the frozen __init__ (tcpwatchd.frozen): a poll can name thousands.
    return _new_finding(
        kind, *who, local, remote, peer, max(0.0, age), details, w.namespace, w.pod, w.container, netns
    )


def listed_outcome(findings: Iterable[Finding], degraded: str = "") -> Outcome:
    """An outcome that lists every finding it counts (detectors whose findings are few by nature)."""
    listed = tuple(findings)
    counts = Counter((f.kind, f.labels) for f in listed)
    return Outcome(findings=listed, counts=MappingProxyType(dict(counts)), degraded=degraded)
