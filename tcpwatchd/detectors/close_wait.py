"""CLOSE_WAIT leak: a socket the peer closed that the application never closes.

CLOSE_WAIT means our side received the peer's FIN and is waiting for the application to call close()
(RFC 9293 3.3.2). The kernel never times it out, so only the application can end it: a socket that stays
there is a leak, and its age matters more than how many there are (a healthy service leaves CLOSE_WAIT
within milliseconds). Ages come from the tracker: the first poll that saw the socket in CLOSE_WAIT.
"""

from __future__ import annotations

from types import MappingProxyType

from tcpwatchd.detectors.base import Context, Detail, Kind, Outcome, connection_finding, register
from tcpwatchd.model import TcpState
from tcpwatchd.tracker import TrackedPoll


@register("close_wait")
def detect_close_wait(tracked: TrackedPoll, ctx: Context) -> Outcome:
    min_age = ctx.detect.close_wait.min_age_seconds
    oldest: dict[str, float] = {}
    findings = []
    for sock in tracked.snapshot.sockets:
        if sock.state is not TcpState.CLOSE_WAIT:
            continue
        track = tracked.track_of(sock)
        age = tracked.now - track.state_since
        owner = tracked.owner_of(sock)
        name = owner.name if owner else ""
        oldest[name] = max(age, oldest.get(name, 0.0))
        if age >= min_age:
            # Already in CLOSE_WAIT at tcpwatchd's first poll: the real age is unknown and larger.
            lower_bound = track.preexisting and track.state_since == track.first_seen
            details = (Detail("age_is_lower_bound", "yes"),) if lower_bound else ()
            findings.append(connection_finding(Kind.CLOSE_WAIT, tracked, sock, age, details))
    return Outcome(findings=tuple(findings), oldest_age=MappingProxyType(oldest))
