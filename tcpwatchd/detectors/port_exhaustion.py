"""Ephemeral port exhaustion: one destination using up the local port range.

connect() without bind() picks a local port from net.ipv4.ip_local_port_range (less the reserved
ports), and it may reuse a port only for another destination: the 4-tuple must be unique
(net/ipv4/inet_hashtables.c __inet_hash_connect). So the scarce resource is the ports in use per
(local address, remote address, remote port), TIME_WAIT included (the classic pile-up towards one
upstream without keepalive: each closed connection holds its port for 60 s). When they run out,
connect() fails with EADDRNOTAVAIL. A destination is flagged when its ports in use reach `max_fill`
of the range. Labels stay bounded: per process only the worst destination's ratio and the number of
destinations over the threshold; the destinations themselves are in the findings (log, `snapshot`).
A destination is counted under the process holding most of its sockets ("" when only TIME_WAIT ones).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import compress
from operator import and_, not_
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    endpoint,
    listed_outcome,
)
from tcpwatchd.detectors.base import owned_finding as finding_for
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, ValueGauge, register
from tcpwatchd.model import NOBODY, ProcessLabels, TcpState
from tcpwatchd.rowsets import listening_ports
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.snapshot import row_processes
from tcpwatchd.table import Derived, SocketTable
from tcpwatchd.tracker import TrackedPoll

PORT_EXHAUSTION = Kind("port_exhaustion")
USE_RATIO = "ephemeral_port_use_ratio"
Destination = tuple[int, str, str, int]  # (netns, local address, remote address, remote port)
_CONNECTED = frozenset(set(TcpState) - {TcpState.LISTEN, TcpState.CLOSE})


class PortExhaustionConfig(DetectorSettings):
    max_fill: float = Field(0.5, gt=0, le=1)


# The destinations and their holders read the 4-tuples, states, inodes (with the owners) and namespaces.
# A row's key stands for its 4-tuple and namespace (a socket's cookie never changes its addresses; the
# /proc key is the 4-tuple), so the address columns need not be compared to carry this over: in a steady
# poll nothing is counted again.
# (the port range counted, ports in use per destination, each destination's holder, every process)
Destinations = tuple[
    tuple[int, int], Mapping[Destination, int], Mapping[Destination, ProcessLabels], frozenset[ProcessLabels]
]
_DESTINATIONS = Derived[Destinations](
    "port_exhaustion.destinations", reads=("key", "state", "inode", "local_port", "netns"), owners=True
)


def detect_port_exhaustion(tracked: TrackedPoll, cfg: PortExhaustionConfig, ctx: Context) -> Outcome:
    snap = tracked.snapshot
    ranges = snap.port_ranges
    if not ranges:
        return Outcome()  # no /proc/sys to read (a sandbox): nothing to judge against
    low = min(r.low for r in ranges.values())
    high = max(r.high for r in ranges.values())
    counted = snap.sockets.derive(_DESTINATIONS, lambda: _destinations(tracked, low, high))
    if counted[0] != (low, high):  # the range changed under unchanged sockets (rare): count afresh
        counted = _destinations(tracked, low, high)
    _range, use, holders, everyone = counted
    worst: dict[ProcessLabels, float] = dict.fromkeys(everyone, 0.0)
    findings = []
    for dest, n in use.items():
        usable = ranges[dest[0]].usable if dest[0] in ranges else 0
        if usable <= 0:
            continue
        who = holders.get(dest, NOBODY)
        ratio = n / usable
        worst[who] = max(worst.get(who, 0.0), ratio)
        if ratio >= cfg.max_fill:
            findings.append(_finding(tracked, dest, who, n, usable))
    outcome = listed_outcome(findings)
    return Outcome(outcome.findings, outcome.counts, values=MappingProxyType({USE_RATIO: worst}))


def _destinations(tracked: TrackedPoll, low: int, high: int) -> Destinations:
    """Local ports in use per destination, and who holds the most of each (the first of the most)."""
    snap = tracked.snapshot
    table = snap.sockets
    spaces = table.column("netns")
    chosen = _ephemeral_rows(table, low, high)
    dests = list(
        compress(
            zip(
                spaces,
                table.column("local_address"),
                table.column("remote_address"),
                table.column("remote_port"),
                strict=True,
            ),
            chosen,
        )
    )
    processes = row_processes(snap)
    held = Counter(zip(dests, compress(processes.codes, chosen), strict=True))
    use: Counter[Destination] = Counter()
    holders: dict[Destination, tuple[ProcessLabels, int]] = {}
    for (dest, code), n in held.items():
        use[dest] += n
        who = processes.labels[code]
        if who != NOBODY and n > holders.get(dest, (NOBODY, 0))[1]:
            holders[dest] = (who, n)
    return (
        (low, high),
        MappingProxyType(dict(use)),
        MappingProxyType({dest: who for dest, (who, _n) in holders.items()}),
        frozenset(processes.labels),
    )


def _ephemeral_rows(table: SocketTable, low: int, high: int) -> list[bool]:
    """Which rows hold an ephemeral port, decided in C (a host has ~100k rows): in the range, not
    LISTEN/CLOSE, not a listener's port in its namespace (an accepted connection)."""
    states, ports, spaces = table.column("state"), table.column("local_port"), table.column("netns")
    listening = listening_ports(table)
    connected = map(_CONNECTED.__contains__, states)
    if not any(spaces):  # one namespace: a port table per port, no tuple per row
        free = bytearray(65536)
        free[low : high + 1] = b"\x01" * (high + 1 - low)
        for _netns, port in listening:
            free[port] = 0
        return list(map(and_, map(free.__getitem__, ports), connected))
    in_range = map(range(low, high + 1).__contains__, ports)
    accepted = map(listening.__contains__, zip(spaces, ports, strict=True))
    return list(map(and_, map(and_, in_range, connected), map(not_, accepted)))


def _finding(tracked: TrackedPoll, dest: Destination, who: ProcessLabels, n: int, usable: int) -> Finding:
    owner = next((o for o in tracked.snapshot.owners.values() if o.labels == who), None)
    details = (Detail("local_ports_in_use", n), Detail("usable_local_ports", usable))
    local, remote = endpoint(dest[1], "*"), endpoint(dest[2], dest[3])
    # `who` also when no process holds it: the namespace's pod (snapshot.row_labels), as counted.
    return finding_for(PORT_EXHAUSTION, owner, local, remote, dest[2], 0.0, details, dest[0], who)


SPEC = register(
    DetectorSpec(
        name="port_exhaustion",
        settings=PortExhaustionConfig,
        detect=detect_port_exhaustion,
        kinds=(
            KindSpec(
                PORT_EXHAUSTION,
                "tcpwatchd_port_exhaustion_destinations",
                "Destinations (local address, remote address and port) of the process using at least "
                "detect.port_exhaustion.max_fill of the ephemeral port range, TIME_WAIT included.",
                "f6998d278edd4ebe8ace0bea76fe23b1",
            ),
        ),
        values=(
            ValueGauge(
                USE_RATIO,
                "tcpwatchd_ephemeral_port_use_ratio",
                "The share of the ephemeral port range used by the process's busiest destination.",
            ),
        ),
    )
)
