"""Stalled receive: data sits unread in a receive queue for `min_age_seconds`; the application is not reading.

Besides the delay, the danger is the close: tcp_close() sends RST instead of FIN when unread data is
queued, and the peer loses whatever it sent last (net/ipv4/tcp.c, counted as TcpExt TCPAbortOnClose).
What the kernel reports as the receive queue is rcv_nxt - copied_seq, so it includes 1 for an unread FIN
in CLOSE_WAIT, LAST_ACK and CLOSING, and for LISTEN it is the accept backlog: the tracker counts only
data (`model.unread_bytes`) and keeps `unread_since`, the first poll of the current run of polls that saw
data queued. A reader that drains between polls resets it; one that is always behind keeps it running,
which is also worth knowing.
"""

from __future__ import annotations

from tcpwatchd.detectors.base import Context, Detail, Kind, Outcome, connection_finding, register
from tcpwatchd.model import unread_bytes
from tcpwatchd.tracker import TrackedPoll


@register("stalled_receive")
def detect_stalled_receive(tracked: TrackedPoll, ctx: Context) -> Outcome:
    min_age = ctx.detect.stalled_receive.min_age_seconds
    findings = []
    for sock in tracked.snapshot.sockets:
        unread = unread_bytes(sock)
        if unread <= 0:
            continue
        since = tracked.track_of(sock).unread_since
        if since is None or tracked.now - since < min_age:
            continue
        details = (Detail("unread_bytes", unread), Detail("state", sock.state.label))
        findings.append(connection_finding(Kind.STALLED_RECEIVE, tracked, sock, tracked.now - since, details))
    return Outcome(findings=tuple(findings))
