"""Phantom connections (half-open, superseded) and idle suspects.

A client that crashes or loses power sends no FIN: its server keeps an ESTABLISHED connection that will
never receive anything again, and without keepalive the kernel never probes it (RFC 9293 3.8.4 leaves
keepalive off by default). When the client comes back it connects afresh from the same address: the old
connection is then provably abandoned. DESIGN.md "Definitions" is the contract:

- idle: nothing received, neither data nor ACK, for `idle_seconds`, i.e. min(tcpi_last_data_recv,
  tcpi_last_ack_recv) (include/uapi/linux/tcp.h; only netlink sock_diag carries tcp_info);
- superseded: tcpwatchd saw a newer connection from the same peer address to the same local port,
  first seen in a later poll than the old one and after the old one's last received packet. The order
  comes from tcpwatchd's own polls, so connections first seen in the same poll (or all open at its first
  poll) are never ordered, and a pool opened together is never a phantom of itself. The newer one is
  known only to the poll that saw it, so "after the last packet" is exact to one poll interval.
- an idle connection that is not superseded and has no timer armed (no keepalive; the retransmit and
  probe timers take precedence, see model.TimerKind) is a suspect, not a phantom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import compress
from types import MappingProxyType

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
    peer_address,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.model import Socket, TcpState, TimerKind
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.tracker import TrackedPoll

PHANTOM = Kind("phantom")
IDLE_SUSPECT = Kind("idle_suspect")


class PhantomConfig(DetectorSettings):
    idle_seconds: float = Field(900.0, gt=0)


ServiceKey = tuple[int, str, int]  # (network namespace, peer address, local port)


@dataclass(frozen=True, slots=True)
class Sighting:
    """The newest connection tcpwatchd saw appear from one peer address at one local port."""

    poll: int
    at: float


def detect_phantom(tracked: TrackedPoll, cfg: PhantomConfig, ctx: Context) -> Outcome:
    limit_ms = cfg.idle_seconds * 1000.0
    table = tracked.snapshot.sockets
    data_ms, ack_ms = table.column("last_data_recv_ms"), table.column("last_ack_recv_ms")
    states = table.column("state")
    blind = 0
    if -1 in data_ms:  # some sockets carry no tcp_info (TIME_WAIT ones; all from /proc)
        blind = list(map(data_ms.__getitem__, table.rows_in(TcpState.ESTABLISHED))).count(-1)
    # Idle connections are usually few, often none: find them in C before judging any.
    idle_rows: list[int] = []
    if max(data_ms, default=-1) >= limit_ms and max(ack_ms, default=-1) >= limit_ms:
        quiet = compress(range(len(table)), map(limit_ms.__le__, data_ms))
        idle_rows = [row for row in quiet if ack_ms[row] >= limit_ms and states[row] == TcpState.ESTABLISHED]
    degraded = ""
    if blind:
        degraded = (
            f"{blind} ESTABLISHED sockets carry no tcp_info (source {tracked.snapshot.source}): "
            "their idle time is unknown, so they are not judged"
        )
    if not idle_rows:
        return Outcome(degraded=degraded)
    sockets = {row: table.socket(row) for row in idle_rows}
    newest = _newest_sightings(tracked, {_service(sock) for sock in sockets.values()})
    verdicts: dict[Kind, list[int]] = {PHANTOM: [], IDLE_SUSPECT: []}
    for row, sock in sockets.items():
        kind = _judge(tracked, row, sock, _idle_seconds(sock), newest)
        if kind is not None:
            verdicts[kind].append(row)

    def finding(kind: Kind) -> Callable[[int], Finding]:
        return lambda row: _finding(kind, tracked, sockets[row], newest)

    phantoms = mass_outcome(PHANTOM, tracked, verdicts[PHANTOM], finding(PHANTOM))
    suspects = mass_outcome(IDLE_SUSPECT, tracked, verdicts[IDLE_SUSPECT], finding(IDLE_SUSPECT))
    return Outcome(
        findings=phantoms.findings + suspects.findings,
        degraded=degraded,
        counts=MappingProxyType({**phantoms.counts, **suspects.counts}),
    )


def _idle_seconds(sock: Socket) -> float:
    info = sock.tcp_info
    return min(info.last_data_recv_ms, info.last_ack_recv_ms) / 1000.0 if info else 0.0


def _service(sock: Socket) -> ServiceKey:
    return (sock.netns, peer_address(sock.remote_address), sock.local_port)


def _judge(
    tracked: TrackedPoll, row: int, sock: Socket, idle: float, newest: dict[ServiceKey, Sighting]
) -> Kind | None:
    track = tracked.track_at(row)
    seen = newest.get(_service(sock))
    if seen is not None and seen.poll > track.first_seen_poll and seen.at > tracked.now - idle:
        return PHANTOM
    return IDLE_SUSPECT if sock.timer is TimerKind.OFF else None


def _finding(kind: Kind, tracked: TrackedPoll, sock: Socket, newest: dict[ServiceKey, Sighting]) -> Finding:
    idle = _idle_seconds(sock)
    if kind == PHANTOM:
        seen = newest[_service(sock)]
        details = (
            Detail("idle_seconds", round(idle, 1)),
            Detail("newer_connection_seen_seconds_ago", round(tracked.now - seen.at, 1)),
            Detail("keepalive", "on" if sock.timer is TimerKind.KEEPALIVE else "off"),
        )
        return connection_finding(PHANTOM, tracked, sock, idle, details)
    return connection_finding(IDLE_SUSPECT, tracked, sock, idle, (Detail("idle_seconds", round(idle, 1)),))


def _newest_sightings(tracked: TrackedPoll, services: set[ServiceKey]) -> dict[ServiceKey, Sighting]:
    """(namespace, peer address, local port) -> the newest connection tcpwatchd saw appear there, for
    `services`.

    Both the connections open now and those opened within the tracker's history (which may have closed
    since) count: a reconnect proves the peer came back even if it did not stay.
    """
    newest: dict[ServiceKey, Sighting] = {}

    def see(key: ServiceKey, poll: int, at: float) -> None:
        if key in services and (key not in newest or newest[key].poll < poll):
            newest[key] = Sighting(poll, at)

    table = tracked.snapshot.sockets
    peers = {peer for _netns, peer, _port in services}
    remotes = table.column("remote_address")
    # Only rows whose remote address is one of the peers' spellings (IPv4, or IPv4-mapped) are read.
    spellings = {address for address in set(remotes) if peer_address(address) in peers}
    ports, states, netns = table.column("local_port"), table.column("state"), table.column("netns")
    for row in compress(range(len(table)), map(spellings.__contains__, remotes)):
        if states[row] not in (TcpState.LISTEN, TcpState.CLOSE):
            track = tracked.track_at(row)
            see((netns[row], peer_address(remotes[row]), ports[row]), track.first_seen_poll, track.first_seen)
    for o in tracked.recent_opened:
        see((o.netns, peer_address(o.remote_address), o.local_port), o.poll, o.at)
    return newest


SPEC = register(
    DetectorSpec(
        name="phantom",
        settings=PhantomConfig,
        detect=detect_phantom,
        kinds=(
            KindSpec(
                PHANTOM,
                "tcpwatchd_phantom_connections",
                "ESTABLISHED connections idle past detect.phantom.idle_seconds and superseded by a newer "
                "connection from the same peer address to the same local port.",
                "d72a45a215b448a891d2cf3e2409f4bf",
            ),
            KindSpec(
                IDLE_SUSPECT,
                "tcpwatchd_idle_suspect_connections",
                "ESTABLISHED connections idle past detect.phantom.idle_seconds, not superseded, "
                "keepalive off.",
                "fa4f4b4c2b7543f293f947ec4f410b9a",
            ),
        ),
        # A newer connection supersedes an idle one if it opened within the idle time.
        remembers_openings=lambda cfg: cfg.idle_seconds,
    )
)
