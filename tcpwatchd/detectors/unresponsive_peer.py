"""Unresponsive peer: a connection retransmitting the same segment again and again; the peer is gone.

tcpi_retransmits (icsk_retransmits; idiag_retrans and /proc/net/tcp `retrnsmt` report the same counter
while the retransmit timer is pending) counts consecutive RTO retransmissions of the head segment and
returns to 0 on the first ACK that advances (net/ipv4/tcp_input.c tcp_ack), so it is exactly "in a row".

When the kernel gives up: not after tcp_retries2 retransmissions but once the time since the head
segment's first send exceeds the time tcp_retries2 exponentially backed-off retransmissions would take
(sysctl/derived.py computes it, as net/ipv4/tcp_timer.c tcp_model_timeout() does; 924.6 s by default).
A TCP_USER_TIMEOUT set by the application overrides this; tcpwatchd cannot see it. Orphans (closed by the
application, inode 0) obey tcp_orphan_retries instead and have no process to blame, so they are left out.

The persist timer counts too: a peer that advertised a zero window and then vanished leaves us sending
zero-window probes that nobody answers (`ss`: timer:(persist,...,N)). tcpi_probes (icsk_probes_out)
counts the unanswered ones and returns to 0 on any ACK (tcp_ack), so a slow reader whose stack answers
the probes with its zero window stays at 0 and is not flagged. The kernel gives up after tcp_retries2
unanswered probes, backed off like retransmissions (net/ipv4/tcp_timer.c tcp_probe_timer): the same
budget as above.
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
from tcpwatchd.model import Socket, TcpState, TimerKind, consecutive_retransmits
from tcpwatchd.rowsets import rows_with_byte
from tcpwatchd.sections import DetectorSettings
from tcpwatchd.sysctl.derived import inflight_detection_from
from tcpwatchd.table import SocketTable
from tcpwatchd.tracker import TrackedPoll

UNRESPONSIVE_PEER = Kind("unresponsive_peer")


class UnresponsivePeerConfig(DetectorSettings):
    min_retransmits: int = Field(3, ge=1, le=255)


# Synchronized states in which the retransmit budget is tcp_retries2 (tcp_write_timeout).
_JUDGED = frozenset(
    {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK}
)


def retransmitting_seconds(sock: Socket) -> float | None:
    """Estimated time since the head segment was first sent; None without tcp_info.

    The current RTO (tcpi_rto) has been doubled once per retransmission (tcp_retransmit_timer), so the
    earlier waits were rto/2, rto/4, ...; the last retransmission was tcpi_last_data_sent ago (a
    retransmission is sent through tcp_event_data_sent too). Waits capped at the RTO maximum make
    this an underestimate, so the time left it implies is an upper bound.
    """
    info = sock.tcp_info
    if info is None or info.retransmits <= 0:
        return None
    rto_ms = info.rto_us / 1000.0
    waited = rto_ms * (1.0 - 0.5**info.retransmits)
    return (waited + info.last_data_sent_ms) / 1000.0


def detect_unresponsive_peer(tracked: TrackedPoll, cfg: UnresponsivePeerConfig, ctx: Context) -> Outcome:
    min_retransmits = cfg.min_retransmits
    budget = inflight_detection_from(ctx.sysctl)
    table = tracked.snapshot.sockets
    states, inodes = table.column("state"), table.column("inode")
    # Retransmitting sockets are few: find them in C, then judge each.
    retransmitting = rows_with_byte(table.column("retransmits"), frozenset(range(min_retransmits, 256)))
    rows = [row for row in retransmitting if states[row] in _JUDGED and inodes[row]]
    rows = sorted({*rows, *_probing(table, min_retransmits)})

    def finding(row: int) -> Finding:
        sock = table.socket(row)
        retransmits = consecutive_retransmits(sock)
        elapsed = retransmitting_seconds(sock)
        details = [Detail("retransmits", retransmits), Detail("kernel_gives_up_after_seconds", budget)]
        if sock.timer is TimerKind.ZERO_WINDOW_PROBE:
            probes = sock.tcp_info.probes if sock.tcp_info else sock.retrans
            details = [Detail("zero_window_probes", probes), Detail("kernel_gives_up_after_seconds", budget)]
            elapsed = None
        if elapsed is not None:
            details.append(Detail("kernel_gives_up_in_seconds", round(max(0.0, budget - elapsed), 1)))
        # Without tcp_info (the /proc fallback) when retransmission began is unknown: age 0, no guess.
        age = elapsed if elapsed is not None else 0.0
        return connection_finding(UNRESPONSIVE_PEER, tracked, sock, age, tuple(details))

    return mass_outcome(UNRESPONSIVE_PEER, tracked, rows, finding)


_PROBE_TIMER = frozenset({int(TimerKind.ZERO_WINDOW_PROBE)})


def _probing(table: SocketTable, min_probes: int) -> list[int]:
    """Rows in the persist timer with at least `min_probes` unanswered zero-window probes (tcpi_probes;
    /proc's retrnsmt counts probes for this timer)."""
    timers, probes, retrans = table.column("timer"), table.column("probes"), table.column("retrans")
    states, inodes = table.column("state"), table.column("inode")
    rows = rows_with_byte(timers, _PROBE_TIMER)
    return [
        row
        for row in rows
        if (probes[row] if probes[row] >= 0 else retrans[row]) >= min_probes
        and states[row] in _JUDGED
        and inodes[row]
    ]


SPEC = register(
    DetectorSpec(
        name="unresponsive_peer",
        settings=UnresponsivePeerConfig,
        detect=detect_unresponsive_peer,
        kinds=(
            KindSpec(
                UNRESPONSIVE_PEER,
                "tcpwatchd_unresponsive_peer_connections",
                "Connections of the process with at least detect.unresponsive_peer.min_retransmits "
                "consecutive retransmissions, or as many unanswered zero-window probes.",
                "fd42ff36e84d446b81e4db55919ab160",
            ),
        ),
    )
)
