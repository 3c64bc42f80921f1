"""Stalled receive: data sits unread in a receive queue for `min_age_seconds`; the application is not reading.

Besides the delay, the danger is the close: tcp_close() sends RST instead of FIN when unread data is
queued, and the peer loses whatever it sent last (net/ipv4/tcp.c, counted as TcpExt TCPAbortOnClose).
What the kernel reports as the receive queue is rcv_nxt - copied_seq, so it includes 1 for an unread FIN
in CLOSE_WAIT, LAST_ACK and CLOSING, and for LISTEN it is the accept backlog: the tracker counts only
data (`model.unread_bytes`) and keeps `unread_since`, the first poll of the current run of polls that saw
data queued. A reader that drains between polls resets it.

Slow or stopped: a reader that is always behind keeps data queued too, but it reads (tcpi_bytes_received
less the unread bytes grows between polls: the tracker's `reading`). Only a stopped reader is flagged:
data unread for `min_age_seconds` and nothing read since the previous poll. A slow one is not reported.
Without tcp_info (the /proc fallback) the two cannot be told apart and every stall counts as stopped.
"""

from __future__ import annotations

from pydantic import Field

from tcpwatchd.detectors.base import (
    Context,
    Detail,
    Finding,
    Kind,
    Outcome,
    connection_finding,
    mass_outcome,
)
from tcpwatchd.detectors.registry import DetectorSpec, KindSpec, register
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.tracker import TrackedPoll

STALLED_RECEIVE = Kind("stalled_receive")


class StalledReceiveConfig(DetectorSettings):
    min_age_seconds: float = Field(60.0, ge=0)


def detect_stalled_receive(tracked: TrackedPoll, cfg: StalledReceiveConfig, ctx: Context) -> Outcome:
    min_age = cfg.min_age_seconds
    table, now = tracked.snapshot.sockets, tracked.now
    rows = []
    keys, reading = table.column("key"), tracked.reading
    for row in table.unread_rows():
        since = tracked.track_at(row).unread_since
        if since is not None and now - since >= min_age and keys[row] not in reading:
            rows.append(row)

    def finding(row: int) -> Finding:
        sock = table.socket(row)
        since = tracked.track_at(row).unread_since
        since = now if since is None else since
        details = (
            Detail("unread_bytes", table.unread_bytes(row)),
            Detail("state", sock.state.label),
            Detail("reader", "stopped"),
        )
        return connection_finding(STALLED_RECEIVE, tracked, sock, now - since, details)

    return mass_outcome(STALLED_RECEIVE, tracked, rows, finding)


SPEC = register(
    DetectorSpec(
        name="stalled_receive",
        settings=StalledReceiveConfig,
        detect=detect_stalled_receive,
        kinds=(
            KindSpec(
                STALLED_RECEIVE,
                "tcpwatchd_stalled_receive_connections",
                "Connections of the process with unread data queued for longer than "
                "detect.stalled_receive.min_age_seconds and nothing read since the previous poll "
                "(a stopped reader; a slow one that reads is not counted).",
                "a62d3dc4490b470fa2e9a1bc464e661d",
            ),
        ),
    )
)
