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

from dataclasses import dataclass

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    peer_address,
    register,
)
from tcpwatchd.model import Socket, TcpState, TimerKind
from tcpwatchd.tracker import TrackedPoll

ServiceKey = tuple[str, int]  # (peer address, local port)


@dataclass(frozen=True, slots=True)
class Sighting:
    """The newest connection tcpwatchd saw appear from one peer address at one local port."""

    poll: int
    at: float


@register("phantom")
def detect_phantom(tracked: TrackedPoll, ctx: Context) -> Outcome:
    idle_limit = ctx.detect.phantom.idle_seconds
    established = [s for s in tracked.snapshot.sockets if s.state is TcpState.ESTABLISHED]
    newest = _newest_sightings(tracked)
    findings = []
    blind = 0
    for sock in established:
        if sock.tcp_info is None:
            blind += 1
            continue
        idle = min(sock.tcp_info.last_data_recv_ms, sock.tcp_info.last_ack_recv_ms) / 1000.0
        if idle < idle_limit:
            continue
        finding = _judge(tracked, sock, idle, newest)
        if finding is not None:
            findings.append(finding)
    degraded = ""
    if blind:
        degraded = (
            f"{blind} ESTABLISHED sockets carry no tcp_info (source {tracked.snapshot.source}): "
            "their idle time is unknown, so they are not judged"
        )
    return Outcome(findings=tuple(findings), degraded=degraded)


def _judge(
    tracked: TrackedPoll, sock: Socket, idle: float, newest: dict[ServiceKey, Sighting]
) -> Finding | None:
    track = tracked.track_of(sock)
    last_received = tracked.now - idle
    seen = newest.get((peer_address(sock.remote_address), sock.local_port))
    if seen is not None and seen.poll > track.first_seen_poll and seen.at > last_received:
        details = (
            Detail("idle_seconds", round(idle, 1)),
            Detail("newer_connection_seen_seconds_ago", round(tracked.now - seen.at, 1)),
            Detail("keepalive", "on" if sock.timer is TimerKind.KEEPALIVE else "off"),
        )
        return connection_finding(Kind.PHANTOM, tracked, sock, idle, details)
    if sock.timer is TimerKind.OFF:
        return connection_finding(
            Kind.IDLE_SUSPECT, tracked, sock, idle, (Detail("idle_seconds", round(idle, 1)),)
        )
    return None


def _newest_sightings(tracked: TrackedPoll) -> dict[ServiceKey, Sighting]:
    """(peer address, local port) -> the newest connection tcpwatchd saw appear there.

    Both the connections open now and those opened within the tracker's history (which may have closed
    since) count: a reconnect proves the peer came back even if it did not stay.
    """
    newest: dict[ServiceKey, Sighting] = {}

    def see(key: ServiceKey, poll: int, at: float) -> None:
        if key not in newest or newest[key].poll < poll:
            newest[key] = Sighting(poll, at)

    for sock in tracked.snapshot.sockets:
        if sock.state not in (TcpState.LISTEN, TcpState.CLOSE):
            track = tracked.track_of(sock)
            see((peer_address(sock.remote_address), sock.local_port), track.first_seen_poll, track.first_seen)
    for opened in tracked.recent_opened:
        see((peer_address(opened.remote_address), opened.local_port), opened.poll, opened.at)
    return newest
