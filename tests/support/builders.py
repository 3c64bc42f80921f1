"""Hand-built sockets and snapshots for unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from tcpwatchd.model import Family, Owner, Socket, TcpInfo, TcpState, TimerKind
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable

# The workload labels of a series outside any pod (tcpwatchd_sockets and every per-process family).
NO_POD = {"namespace": "", "pod": "", "container": ""}


def info(**kw: int) -> TcpInfo:
    base = dict(
        retransmits=0, probes=0, backoff=0, rto_us=204000, unacked=0, lost=0, retrans=0,
        last_data_sent_ms=0, last_data_recv_ms=0, last_ack_recv_ms=0, rtt_us=100, rttvar_us=50,
        total_retrans=0,
    )  # fmt: skip
    base.update(kw)
    return TcpInfo(**base)


def sock(
    state: TcpState = TcpState.ESTABLISHED,
    local: tuple[str, int] = ("127.0.0.1", 80),
    remote: tuple[str, int] = ("127.0.0.1", 40000),
    *,
    inode: int = 1000,
    rqueue: int = 0,
    wqueue: int = 0,
    timer: TimerKind = TimerKind.OFF,
    retrans: int = 0,
    tcp_info: TcpInfo | None = None,
    family: Family = Family.INET,
) -> Socket:
    return Socket(
        family=family, state=state, local_address=local[0], local_port=local[1],
        remote_address=remote[0], remote_port=remote[1], rqueue=rqueue, wqueue=wqueue, uid=0, inode=inode,
        timer=timer, timer_expires_ms=0, retrans=retrans, cookie=None, tcp_info=tcp_info,
    )  # fmt: skip


def owner(name: str = "server", pid: int = 100, unit: str = "", start: float = 1.0) -> Owner:
    """The one owner builder of the tests: owner("nginx", 42)."""
    return Owner(pid=pid, name=name, start_time=start, user="root", unit=unit)


def snapshot(at: float, sockets: list[Socket], owners: Mapping[int, Owner] | None = None) -> Snapshot:
    return Snapshot(
        taken_at=1_700_000_000.0 + at,
        monotonic=at,
        source="sockdiag",
        sockets=SocketTable.of(sockets),
        owners=MappingProxyType(dict(owners or {})),
    )
