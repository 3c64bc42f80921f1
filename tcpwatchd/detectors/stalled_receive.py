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

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
    register,
)
from tcpwatchd.tracker import TrackedPoll


@register("stalled_receive")
def detect_stalled_receive(tracked: TrackedPoll, ctx: Context) -> Outcome:
    min_age = ctx.detect.stalled_receive.min_age_seconds
    table, now = tracked.snapshot.sockets, tracked.now
    rows = []
    for row in table.unread_rows():
        since = tracked.track_at(row).unread_since
        if since is not None and now - since >= min_age:
            rows.append(row)

    def finding(row: int) -> Finding:
        sock = table.socket(row)
        since = tracked.track_at(row).unread_since
        since = now if since is None else since
        details = (Detail("unread_bytes", table.unread_bytes(row)), Detail("state", sock.state.label))
        return connection_finding(Kind.STALLED_RECEIVE, tracked, sock, now - since, details)

    return mass_outcome(Kind.STALLED_RECEIVE, tracked, rows, finding)
