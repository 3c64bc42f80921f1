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

from array import array
from collections.abc import Sequence
from itertools import compress

from tcpwatchd.detectors.base import (
    Context,
    Finding,
    Kind,
    Listing,
    Outcome,
    mass_outcome,
    row_finding,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.model import TcpState, TimerKind
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.table import Derived, SocketTable
from tcpwatchd.tracker import TrackedPoll

KEEPALIVE_OFF = Kind("keepalive_off")


class KeepaliveOffConfig(DetectorSettings):
    pass


def _rows(table: SocketTable) -> Sequence[int]:
    """ESTABLISHED rows with no timer (depends on states and timers only: carried while unchanged).
    An array: on a host of idle pools that is every connection."""
    established = table.rows_in(TcpState.ESTABLISHED)
    timers = table.column("timer")
    unarmed = map(TimerKind.OFF.__eq__, map(timers.__getitem__, established))
    return array("I", compress(established, unarmed))


# Reads states and timers only: carried to the next poll while both columns are unchanged.
_UNARMED = Derived[Sequence[int]]("keepalive_off.rows", reads=("state", "timer"))
# Their counts per process and the rows named: the same, and the owners of those rows unchanged.
_LISTING = Derived[Listing]("keepalive_off.listing", reads=("state", "timer", "inode", "netns"), owners=True)


def detect_keepalive_off(tracked: TrackedPoll, cfg: KeepaliveOffConfig, ctx: Context) -> Outcome:
    table = tracked.snapshot.sockets
    rows = table.derive(_UNARMED, lambda: _rows(table))

    def finding(row: int) -> Finding:
        age = tracked.now - tracked.track_at(row).first_seen
        return row_finding(KEEPALIVE_OFF, tracked, row, age)

    return mass_outcome(KEEPALIVE_OFF, tracked, rows, finding, _LISTING)


SPEC = register(
    DetectorSpec(
        name="keepalive_off",
        settings=KeepaliveOffConfig,
        detect=detect_keepalive_off,
        kinds=(
            KindSpec(
                KEEPALIVE_OFF,
                "tcpwatchd_keepalive_off_connections",
                "ESTABLISHED connections of the process with no keepalive timer (busy sockets whose "
                "retransmit or probe timer hides it are not counted).",
                "911743d32b314f4bb80acfff03c7676a",
            ),
        ),
    )
)
