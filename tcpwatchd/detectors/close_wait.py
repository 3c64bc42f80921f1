"""CLOSE_WAIT leak: a socket the peer closed that the application never closes.

CLOSE_WAIT means our side received the peer's FIN and is waiting for the application to call close()
(RFC 9293 3.3.2). The kernel never times it out, so only the application can end it: a socket that stays
there is a leak, and its age matters more than how many there are (a healthy service leaves CLOSE_WAIT
within milliseconds). Ages come from the tracker: the first poll that saw the socket in CLOSE_WAIT.
"""

from __future__ import annotations

from types import MappingProxyType

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
    owner_names,
    register,
)
from tcpwatchd.model import TcpState
from tcpwatchd.tracker import TrackedPoll


@register("close_wait")
def detect_close_wait(tracked: TrackedPoll, ctx: Context) -> Outcome:
    min_age = ctx.detect.close_wait.min_age_seconds
    table, now = tracked.snapshot.sockets, tracked.now
    rows = table.rows_in(TcpState.CLOSE_WAIT)
    since = [tracked.track_at(row).state_since for row in rows]
    oldest: dict[str, float] = {}
    for name, at in zip(owner_names(tracked, rows), since, strict=True):
        oldest[name] = max(now - at, oldest.get(name, 0.0))
    leaked = [row for row, at in zip(rows, since, strict=True) if now - at >= min_age]

    def finding(row: int) -> Finding:
        track = tracked.track_at(row)
        # Already in CLOSE_WAIT at tcpwatchd's first poll: the real age is unknown and larger.
        lower_bound = track.preexisting and track.state_since == track.first_seen
        details = (Detail("age_is_lower_bound", "yes"),) if lower_bound else ()
        return connection_finding(
            Kind.CLOSE_WAIT, tracked, table.socket(row), now - track.state_since, details
        )

    outcome = mass_outcome(Kind.CLOSE_WAIT, tracked, leaked, finding)
    return Outcome(findings=outcome.findings, counts=outcome.counts, oldest_age=MappingProxyType(oldest))
