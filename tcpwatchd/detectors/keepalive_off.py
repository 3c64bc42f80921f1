"""Keepalive off: ESTABLISHED connections with no keepalive timer, so a vanished peer is never noticed.

With SO_KEEPALIVE set, an ESTABLISHED socket always has its sk_timer armed as the keepalive timer
(net/ipv4/tcp_timer.c tcp_keepalive_timer re-arms itself; inet_csk_reset_keepalive_timer). The kernel
reports one pending timer only, retransmit and zero-window probe before sk_timer (get_tcp4_sock in
net/ipv4/tcp_ipv4.c, inet_sk_diag_fill in net/ipv4/inet_diag.c; see model.TimerKind). So:

- timer KEEPALIVE: keepalive is on;
- timer OFF: nothing armed, keepalive is off;
- timer RETRANSMIT or ZERO_WINDOW_PROBE: a busy socket whose keepalive timer, if any, is hidden: not judged.

Both sources carry the timer kind (`tr` in /proc/net/tcp, idiag_timer in sock_diag), so this detector is
never degraded.
"""

from __future__ import annotations

from itertools import compress

from tcpwatchd.detectors.base import (
    Context,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
    register,
)
from tcpwatchd.model import TcpState, TimerKind
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import TrackedPoll


def _rows(table: SocketTable) -> list[int]:
    """ESTABLISHED rows with no timer (depends on states and timers only: carried while unchanged)."""
    established = table.rows_in(TcpState.ESTABLISHED)
    timers = table.column("timer")
    return list(compress(established, map(TimerKind.OFF.__eq__, map(timers.__getitem__, established))))


@register("keepalive_off")
def detect_keepalive_off(tracked: TrackedPoll, ctx: Context) -> Outcome:
    table = tracked.snapshot.sockets
    rows: list[int] = table.memo("structure:keepalive_off", lambda: _rows(table))

    def finding(row: int) -> Finding:
        age = tracked.now - tracked.track_at(row).first_seen
        return connection_finding(Kind.KEEPALIVE_OFF, tracked, table.socket(row), age)

    return mass_outcome(Kind.KEEPALIVE_OFF, tracked, rows, finding)
