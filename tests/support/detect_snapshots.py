"""Hand-built snapshots for the detector unit tests, fed through a real Tracker on an injected clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from tcpwatchd.config import DetectConfig
from tcpwatchd.model import Family, Owner, Socket, TcpInfo, TcpState, TimerKind
from tcpwatchd.report import Report, build_report
from tcpwatchd.snapshot import Snapshot
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import TrackedPoll, Tracker

SERVER = "198.18.0.1"


def info(
    idle_ms: int = 0,
    *,
    data_recv_ms: int | None = None,
    ack_recv_ms: int | None = None,
    retransmits: int = 0,
    rto_us: int = 204_000,
    last_data_sent_ms: int = 0,
) -> TcpInfo:
    """A tcp_info whose last data and last ACK were received `idle_ms` ago unless given apart."""
    return TcpInfo(
        retransmits=retransmits,
        probes=0,
        backoff=retransmits,
        rto_us=rto_us,
        unacked=1 if retransmits else 0,
        lost=0,
        retrans=1 if retransmits else 0,
        last_data_sent_ms=last_data_sent_ms,
        last_data_recv_ms=idle_ms if data_recv_ms is None else data_recv_ms,
        last_ack_recv_ms=idle_ms if ack_recv_ms is None else ack_recv_ms,
        rtt_us=50,
        rttvar_us=25,
        total_retrans=retransmits,
    )


def conn(
    remote: str = "198.18.0.2",
    remote_port: int = 40000,
    *,
    local: str = SERVER,
    local_port: int = 8080,
    state: TcpState = TcpState.ESTABLISHED,
    inode: int | None = None,
    timer: TimerKind = TimerKind.OFF,
    rqueue: int = 0,
    retrans: int = 0,
    tcp_info: TcpInfo | None = None,
) -> Socket:
    """One socket; the inode defaults to one derived from the 4-tuple (0 means an orphan, no file)."""
    family = Family.INET6 if ":" in local else Family.INET
    return Socket(
        family=family,
        state=state,
        local_address=local,
        local_port=local_port,
        remote_address=remote,
        remote_port=remote_port,
        rqueue=rqueue,
        wqueue=0,
        uid=0,
        inode=_inode(local, local_port, remote, remote_port) if inode is None else inode,
        timer=timer,
        timer_expires_ms=0,
        retrans=retrans,
        tcp_info=tcp_info,
    )


def _inode(*four_tuple: object) -> int:
    return hash(four_tuple) % 1_000_000_007 + 2


def listener(port: int = 8080, inode: int = 1) -> Socket:
    return conn("0.0.0.0", 0, local="0.0.0.0", local_port=port, state=TcpState.LISTEN, inode=inode)


class Scenario:
    """A Tracker fed hand-built snapshots at chosen monotonic times."""

    def __init__(self, history_seconds: float = 3600.0, source: str = "sockdiag") -> None:
        self.tracker = Tracker(history_seconds=history_seconds)
        self.source = source

    def poll(
        self, at: float, sockets: Iterable[Socket], owners: Mapping[Socket, Owner] | None = None
    ) -> TrackedPoll:
        socks = tuple(sockets)
        by_inode = {s.inode: o for s, o in (owners or {}).items() if s.inode}
        snap = Snapshot(
            taken_at=1_700_000_000.0 + at,
            monotonic=at,
            source=self.source,
            sockets=SocketTable.of(socks),
            owners=MappingProxyType(by_inode),
        )
        return self.tracker.update(snap)

    def report(
        self,
        at: float,
        sockets: Iterable[Socket],
        owners: Mapping[Socket, Owner] | None = None,
        detect: DetectConfig | None = None,
        sysctl: Mapping[str, int] | None = None,
    ) -> Report:
        return build_report(self.poll(at, sockets, owners), detect or DetectConfig(), sysctl)


def detect_config(**sections: dict[str, object]) -> DetectConfig:
    """DetectConfig with some sections overridden: detect_config(close_wait={"min_age_seconds": 5})."""
    return DetectConfig.model_validate(sections)
