"""Facts a poll gathers besides the socket table, as plain values the snapshot can carry.

The sources produce them (sources/destroy_*.py, sources/process_facts.py, sources/port_range.py) and the
later stages read them from the `Snapshot`; they live here, below both, so that a detector can read a
fact without importing a source.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tcpwatchd.model import TcpState


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    """One process's fd use, e.g. ProcessFacts(pid=812, open_fds=97, max_fds=1024)."""

    pid: int
    open_fds: int
    max_fds: int | None  # soft RLIMIT_NOFILE; None when "unlimited"
    at: float = 0.0  # monotonic time the facts were read (a cached fact keeps its time)
    start_time: float = 0.0  # the process's start time (Owner.start_time): with pid, its identity


@dataclass(frozen=True, slots=True)
class PortRange:
    """net.ipv4.ip_local_port_range of one network namespace, e.g. PortRange(32768, 60999)."""

    low: int
    high: int  # inclusive
    reserved: int = 0  # reserved ports inside [low, high]

    @property
    def usable(self) -> int:
        """Local ports connect() can pick from for one destination."""
        return max(0, self.high - self.low + 1 - self.reserved)


class Side(enum.Enum):
    """Which end of a connection the socket was on this host."""

    ACCEPTED = "accepted"  # a listener's accepted socket: `port` is the local (service) port
    OUTGOING = "outgoing"  # a socket this host connected from: `port` is the remote (service) port


@dataclass(frozen=True, slots=True)
class CloseKey:
    """Connections grouped the way the storm detector counts them: one peer address and one service
    port in one network namespace, the peer's own port ignored (a reconnecting client takes a new one).

    For ACCEPTED, `port` is the local port (attribute it to the listener's owner); for OUTGOING it is
    the remote port, and (local_address, peer_address, port) is the ephemeral-port destination.
    """

    side: Side
    local_address: str
    port: int
    peer_address: str
    netns: int = 0  # as Socket.netns: 0 for tcpwatchd's own namespace


@dataclass(frozen=True, slots=True)
class CloseCounts:
    closed: int = 0  # sockets destroyed
    unseen: int = 0  # of which no poll saw (cookie not in the caller's set): sub-poll connections
    with_totals: int = 0  # of which carried tcp_info totals (the sums below are over these)
    no_data: int = 0  # of which received no byte from the peer (tcpi_bytes_received == 0)
    bytes_acked: int = 0
    bytes_received: int = 0
    segs_out: int = 0
    segs_in: int = 0


@dataclass(frozen=True, slots=True)
class DestroyBatch:
    """Everything one drain() read, aggregated; bounded by the key cap whatever the event rate."""

    by_key: Mapping[CloseKey, CloseCounts] = field(default_factory=lambda: MappingProxyType({}))
    by_state: Mapping[TcpState, int] = field(default_factory=lambda: MappingProxyType({}))
    events: int = 0  # destroy events decoded (one per socket)
    unconnected: int = 0  # of which had no peer port (a listener, a failed connect()): not keyed
    overflow: CloseCounts = CloseCounts()  # events for keys beyond the cap, summed together
    overflow_keys: int = 0  # events that found the key cap full (== overflow.closed)
    skipped: int = 0  # messages we could not decode
    lost: int = 0  # events the kernel dropped because our receive buffer was full (SK_MEMINFO_DROPS)
    overruns: int = 0  # ENOBUFS reports (each one means at least one event lost)
    more: bool = False  # the per-drain message cap was reached: the rest waits for the next drain


POLLING = "polling"
DESTROY_EVENTS = "destroy_events"


@dataclass(frozen=True, slots=True)
class ConnectionEvents:
    """How this poll learnt of connections that ended: the destroy events it drained, or polling alone.

    The totals are since tcpwatchd started (counters); `error` says why events are not used.
    """

    mode: str = POLLING  # DESTROY_EVENTS or POLLING
    batch: DestroyBatch | None = None  # this poll's drain; None when polling
    events_total: int = 0
    lost_total: int = 0  # dropped by the kernel for a full receive buffer
    overruns_total: int = 0  # ENOBUFS reports
    overflow_total: int = 0  # events beyond the per-drain key cap (counted, not keyed)
    error: str = ""
