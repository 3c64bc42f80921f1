"""Where sockets and kernel counters come from, behind one small protocol.

Netlink sock_diag first (fast, and it carries tcp_info); /proc/net/tcp{,6} as the fallback (chosen per
poll by the snapshot taker, sources/taker.py) and the cross-check. Both see the network namespace of the
calling process (for procnet: of `proc_root`, so `/proc/<pid>` reads the namespace of that process).

    >>> result = SOCKET_SOURCES["procnet"]().sockets()   # doctest: +SKIP
    >>> result.source, len(result.sockets), result.skipped_lines
    ('procnet', 42, 0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from tcpwatchd.errors import ParseError, SourceUnavailable
from tcpwatchd.model import Socket
from tcpwatchd.sources.kstats import read_kstats
from tcpwatchd.sources.netlink import NetlinkError
from tcpwatchd.sources.procnet import read_net_tcp
from tcpwatchd.sources.sockdiag import SockDiagReader

__all__ = [
    "SOCKET_SOURCES",
    "NetlinkError",
    "ParseError",
    "ProcNetSource",
    "SockDiagSource",
    "SocketSource",
    "SourceResult",
    "SourceUnavailable",
    "read_kernel_counters",
]


@dataclass(frozen=True, slots=True)
class SourceResult:
    """One poll of a socket source.

    `skipped_lines` counts records that were skipped (lines cut short or malformed in /proc, netlink
    messages we cannot represent); `notes` says what degraded and why, for the log.
    """

    source: str  # the source that produced `sockets`: "sockdiag" or "procnet"
    sockets: Sequence[Socket]  # sockdiag gives a table.SocketTable
    skipped_lines: int = 0
    notes: tuple[str, ...] = ()


class SocketSource(Protocol):
    name: str

    def sockets(self) -> SourceResult: ...


class SockDiagSource:
    """Netlink sock_diag, in the caller's network namespace. Raises SourceUnavailable when refused."""

    name = "sockdiag"

    def __init__(self, timeout: float = 5.0) -> None:
        self._reader = SockDiagReader(timeout)

    def sockets(self) -> SourceResult:
        dump = self._reader.dump()
        return SourceResult(self.name, dump.sockets, dump.skipped, dump.notes)


class ProcNetSource:
    """/proc/net/tcp and tcp6 under `proc_root` (`/proc/<pid>` reads that process's namespace)."""

    name = "procnet"

    def __init__(self, proc_root: str = "/proc") -> None:
        self._proc_root = proc_root

    def sockets(self) -> SourceResult:
        table = read_net_tcp(self._proc_root)
        return SourceResult(self.name, table.sockets, table.skipped_lines, table.notes)


SOCKET_SOURCES: Mapping[str, Callable[[], SocketSource]] = MappingProxyType(
    {"sockdiag": SockDiagSource, "procnet": ProcNetSource}
)


def read_kernel_counters(proc_root: str = "/proc") -> dict[str, int]:
    """TcpExt/IpExt/Tcp/... counters as {'TcpExt.TCPAbortOnClose': 3, ...}; see sources.kstats."""
    return read_kstats(proc_root)
