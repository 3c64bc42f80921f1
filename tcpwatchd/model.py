"""The typed facts of one poll: a socket, its owner, how a source fared. Plain values, no I/O, no imports
from the rest of tcpwatchd (table.py and snapshot.py build on these).

Every type here is frozen: built once by the sources and read by everything downstream.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple


class TcpState(enum.IntEnum):
    """Kernel TCP states, numbered as in include/net/tcp_states.h."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECV = 3
    FIN_WAIT1 = 4
    FIN_WAIT2 = 5
    TIME_WAIT = 6
    CLOSE = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11
    # A request socket (half-open handshake). Both netlink and /proc report these as SYN_RECV (3) today
    # (inet_diag req_sk and get_openreq4 print TCP_SYN_RECV); 12 is kept so a kernel that ever shows
    # the internal state maps to the same label.
    NEW_SYN_RECV = 12

    @property
    def label(self) -> str:
        """The metric label value, as node_exporter's tcpstat collector spells it.

        >>> TcpState.NEW_SYN_RECV.label
        'syn_recv'
        """
        return _LABELS[self]


_LABELS: dict[TcpState, str] = {
    TcpState.ESTABLISHED: "established",
    TcpState.SYN_SENT: "syn_sent",
    TcpState.SYN_RECV: "syn_recv",
    TcpState.FIN_WAIT1: "fin_wait1",
    TcpState.FIN_WAIT2: "fin_wait2",
    TcpState.TIME_WAIT: "time_wait",
    TcpState.CLOSE: "close",
    TcpState.CLOSE_WAIT: "close_wait",
    TcpState.LAST_ACK: "last_ack",
    TcpState.LISTEN: "listen",
    TcpState.CLOSING: "closing",
    TcpState.NEW_SYN_RECV: "syn_recv",
}

# Every label value a state can take, in a stable order (for exporters that want zeros).
STATE_LABELS: tuple[str, ...] = tuple(dict.fromkeys(_LABELS.values()))

# States reached only after the peer's FIN arrived: the FIN occupies one sequence number, so until the
# application reads EOF the kernel's receive-queue figure (rcv_nxt - copied_seq) includes 1 for it.
POST_FIN_STATES: frozenset[TcpState] = frozenset({TcpState.CLOSE_WAIT, TcpState.LAST_ACK, TcpState.CLOSING})


class TimerKind(enum.IntEnum):
    """The pending timer a socket reports (`tr` in /proc/net/tcp, `idiag_timer` in inet_diag_msg).

    The kernel reports one timer only, in this precedence (net/ipv4/inet_diag.c, tcp_ipv4.c
    get_tcp4_sock): retransmit (also RACK reorder and tail loss probe), zero-window probe, then sk_timer,
    which is the keepalive timer for an ESTABLISHED socket (and the FIN_WAIT2 timer for an orphan).
    """

    OFF = 0
    RETRANSMIT = 1
    KEEPALIVE = 2
    TIME_WAIT = 3
    ZERO_WINDOW_PROBE = 4


class Family(enum.IntEnum):
    INET = socket.AF_INET
    INET6 = socket.AF_INET6

    @property
    def label(self) -> str:
        return "ipv4" if self is Family.INET else "ipv6"


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The prefix of `struct tcp_info` (include/uapi/linux/tcp.h) that tcpwatchd reads.

    Times are milliseconds ago (`last_*`) or microseconds (`rto_us`, `rtt_us`), as the kernel gives them.
    Only netlink sock_diag carries it; /proc/net/tcp has none of these fields.
    """

    retransmits: int  # tcpi_retransmits: consecutive retransmissions of the head segment (RTO count)
    probes: int  # tcpi_probes: unanswered keepalive or zero-window probes
    backoff: int  # tcpi_backoff: exponential RTO backoff shift
    rto_us: int
    unacked: int  # segments in flight; for LISTEN the accept backlog
    lost: int
    retrans: int  # segments currently retransmitted and not yet acked
    last_data_sent_ms: int
    last_data_recv_ms: int
    last_ack_recv_ms: int
    rtt_us: int
    rttvar_us: int
    total_retrans: int
    # RFC 4898 tcpEStatsAppHCThruOctetsAcked / ...Received, since Linux 4.1; -1 from an older kernel.
    # Counted in sequence space (tcp_snd_una_update, tcp_rcv_nxt_update; net/ipv4/tcp_input.c): the
    # connecting side's SYN adds 1 to bytes_acked, a FIN 1 to the sender's bytes_acked and the
    # receiver's bytes_received.
    bytes_acked: int = -1
    bytes_received: int = -1


@dataclass(frozen=True, slots=True)
class Socket:
    """One TCP socket as the kernel reports it.

    `rqueue` is rcv_nxt - copied_seq for a connection (so it counts an unread FIN as 1, see
    POST_FIN_STATES) and the accept backlog for a LISTEN socket. `inode` is 0 for sockets with no file
    (TIME_WAIT, request sockets, orphans after close()). `cookie` is the kernel's socket cookie, from
    netlink only.
    """

    family: Family
    state: TcpState
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    rqueue: int
    wqueue: int
    uid: int
    inode: int
    timer: TimerKind
    timer_expires_ms: int
    retrans: int  # idiag_retrans / /proc `retrnsmt`: RTO retransmits, or probes for the probe timers
    cookie: int | None = None
    tcp_info: TcpInfo | None = None
    # Which network namespace's table it came from: 0 for the one tcpwatchd runs in, else the id the
    # namespace source gave the namespace (unique per namespace's lifetime: an inode reused by a new
    # namespace gets a new id). Two namespaces can hold identical 4-tuples (each has its own 127.0.0.1).
    netns: int = 0

    @property
    def local(self) -> str:
        return _endpoint(self.local_address, self.local_port)

    @property
    def remote(self) -> str:
        return _endpoint(self.remote_address, self.remote_port)


def _endpoint(address: str, port: int) -> str:
    """`ss`-style endpoint: '127.0.0.1:80', '[::1]:80'."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Workload:
    """Where a process runs in Kubernetes terms: its pod's namespace, the pod and the container, by name
    (from the node's files, see sources/podnames.py). All "" on a plain host or outside any pod."""

    namespace: str = ""
    pod: str = ""
    container: str = ""

    def labels(self, process: str) -> ProcessLabels:
        """The series identity of `process` running here."""
        return ProcessLabels(process, self.namespace, self.pod, self.container)


NO_WORKLOAD = Workload()


class ProcessLabels(NamedTuple):
    """The identity of one per-process series: the process name and, for a pod's process, where it runs.

    Two processes of one name in two pods are two series; sockets no process holds count under
    process "" (of their pod, when their network namespace is a pod's).
    """

    process: str
    namespace: str = ""
    pod: str = ""
    container: str = ""


NOBODY = ProcessLabels("")


@dataclass(frozen=True, slots=True)
class Owner:
    """The process a socket is counted under (the oldest of its owners when shared after fork)."""

    pid: int
    name: str  # comm, hostile input: printable and injectively escaped (sources/names.py)
    start_time: float  # seconds since the epoch
    user: str
    unit: str = ""  # systemd unit, from /proc/<pid>/cgroup
    container: str = ""  # container id, from /proc/<pid>/cgroup
    workload: Workload = NO_WORKLOAD

    @property
    def labels(self) -> ProcessLabels:
        return self.workload.labels(self.name)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """How one source fared in one poll. `error` says why it failed or degraded."""

    name: str
    ok: bool
    duration_seconds: float
    error: str = ""
    skipped: int = 0  # records the source could not use (cut-short /proc lines, odd netlink messages)


@dataclass(frozen=True, slots=True)
class WatchedNetns:
    """A network namespace other than tcpwatchd's own that one poll read (sources/foreign.py).

    `netns` is the id its sockets carry (`Socket.netns`); `namespace`/`pod` name its pod ("" when it is not
    a pod's); `mode` says how it was read ("sockdiag", or "procnet" when degraded, `error` saying why);
    `kernel_counters` are its TcpExt abort counters (empty when unreadable).
    """

    netns: int
    label: str  # "net:[4026532281]", as ls -l /proc/<pid>/ns/net shows it
    mode: str
    namespace: str = ""
    pod: str = ""
    error: str = ""
    kernel_counters: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def labels(self) -> ProcessLabels:
        """Where its sockets without an owning process count: under process "" of its pod."""
        return ProcessLabels("", self.namespace, self.pod, "")


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """How watching the other network namespaces fared in one poll, ready for metrics."""

    failed: int = 0  # namespaces whose sockets could not be read at all this poll
    denied: int = 0  # namespaces we may not enter (no CAP_SYS_ADMIN): read through /proc, degraded
    vanished: int = 0  # found by the scan, gone before they could be read (a normal race)
    unresolved: int = 0  # container owners and pod namespaces whose names were not found
    names_skipped: int = 0  # node file names not of the kubelet's shape (hostile or foreign), skipped
    names_unreadable: int = 0  # host-root directories or files that exist but could not be read


@dataclass(frozen=True, slots=True)
class AttributionStats:
    """What the /proc/<pid>/fd scan could and could not see in one poll."""

    processes: int = 0
    processes_scanned: int = 0  # fd tables actually read this poll (the rest came from the cache)
    processes_denied: int = 0  # fd tables we were not allowed to read: attribution is partial
    processes_vanished: int = 0  # exited mid-scan: normal, counted and skipped
    sockets_unowned: int = 0  # sockets with an inode that no visible process holds

    @property
    def partial(self) -> bool:
        return self.processes_denied > 0


def consecutive_retransmits(sock: Socket) -> int:
    """tcp_info's counter when netlink gave it; else /proc's, which means retransmits only for timer 1."""
    if sock.tcp_info is not None:
        return sock.tcp_info.retransmits
    return header_retransmits(sock.retrans, sock.timer)


def header_retransmits(retrans: int, timer: int) -> int:
    """idiag_retrans / /proc `retrnsmt` counts RTO retransmissions only while the retransmit timer runs
    (for the probe timers it counts probes)."""
    return retrans if timer == TimerKind.RETRANSMIT else 0


def unread_bytes(sock: Socket) -> int:
    """Bytes of data waiting in the receive queue that the application has not read.

    The kernel's figure is rcv_nxt - copied_seq (net/ipv4/tcp_diag.c, tcp_ipv4.c), so in a post-FIN
    state an unread FIN adds 1, which is not data: tcp_close() also discounts it before deciding to send
    RST (net/ipv4/tcp.c). For LISTEN the figure is the accept backlog, not data.
    """
    return queued_data(sock.state, sock.rqueue)


def queued_data(state: int, rqueue: int) -> int:
    """`unread_bytes` from the two fields it depends on (for code that holds columns, not Sockets)."""
    if state == TcpState.LISTEN or rqueue <= 0:
        return 0
    return rqueue - 1 if state in POST_FIN_STATES else rqueue
