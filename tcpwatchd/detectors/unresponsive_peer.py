"""Unresponsive peer: a connection retransmitting the same segment again and again; the peer is gone.

tcpi_retransmits (icsk_retransmits; idiag_retrans and /proc/net/tcp `retrnsmt` report the same counter
while the retransmit timer is pending) counts consecutive RTO retransmissions of the head segment and
returns to 0 on the first ACK that advances (net/ipv4/tcp_input.c tcp_ack), so it is exactly "in a row".

When the kernel gives up: not after tcp_retries2 retransmissions but once the time since the head
segment's first send exceeds the time tcp_retries2 exponentially backed-off retransmissions would take,
starting from TCP_RTO_MIN (200 ms) and capped per step at tcp_rto_max_ms (120 s before Linux 6.15, which
made it a sysctl): net/ipv4/tcp_timer.c tcp_model_timeout() and retransmits_timed_out(). The default
tcp_retries2 = 15 gives 924.6 s. A TCP_USER_TIMEOUT set by the application overrides this; tcpwatchd cannot
see it. Orphans (closed by the application, inode 0) obey tcp_orphan_retries instead and have no process
to blame, so they are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import compress

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
from tcpwatchd.model import Socket, TcpState, consecutive_retransmits
from tcpwatchd.tracker import TrackedPoll

TCP_RTO_MIN_MS = 200  # include/net/tcp.h: TCP_RTO_MIN ((unsigned)(HZ / 5))
TCP_RTO_MAX_MS = 120_000  # include/net/tcp.h: TCP_RTO_MAX; net.ipv4.tcp_rto_max_ms since 6.15
DEFAULT_RETRIES2 = 15  # include/net/tcp.h: TCP_RETR2

# Synchronized states in which the retransmit budget is tcp_retries2 (tcp_write_timeout).
_JUDGED = frozenset(
    {TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT1, TcpState.CLOSING, TcpState.LAST_ACK}
)


def give_up_seconds(retries2: int, rto_max_ms: int = TCP_RTO_MAX_MS) -> float:
    """Seconds of retransmission after which the kernel gives up (tcp_model_timeout, rto_base TCP_RTO_MIN).

    >>> give_up_seconds(15)
    924.6
    """
    rto_max_ms = max(rto_max_ms, TCP_RTO_MIN_MS)
    thresh = (rto_max_ms // TCP_RTO_MIN_MS).bit_length() - 1  # ilog2(TCP_RTO_MAX / rto_base)
    if retries2 <= thresh:
        total_ms = ((2 << retries2) - 1) * TCP_RTO_MIN_MS if retries2 >= 0 else 0
    else:
        total_ms = ((2 << thresh) - 1) * TCP_RTO_MIN_MS + (retries2 - thresh) * rto_max_ms
    return total_ms / 1000.0


def give_up_from_sysctl(sysctl: Mapping[str, int]) -> float:
    return give_up_seconds(
        sysctl.get("net.ipv4.tcp_retries2", DEFAULT_RETRIES2),
        sysctl.get("net.ipv4.tcp_rto_max_ms", TCP_RTO_MAX_MS),
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


@register("unresponsive_peer")
def detect_unresponsive_peer(tracked: TrackedPoll, ctx: Context) -> Outcome:
    min_retransmits = ctx.detect.unresponsive_peer.min_retransmits
    budget = give_up_from_sysctl(ctx.sysctl)
    table = tracked.snapshot.sockets
    states, inodes = table.column("state"), table.column("inode")
    # Retransmitting sockets are few: find them in C, then judge each.
    retransmitting = compress(range(len(table)), map(min_retransmits.__le__, table.column("retransmits")))
    rows = [row for row in retransmitting if states[row] in _JUDGED and inodes[row]]

    def finding(row: int) -> Finding:
        sock = table.socket(row)
        retransmits = consecutive_retransmits(sock)
        elapsed = retransmitting_seconds(sock)
        details = [Detail("retransmits", retransmits), Detail("kernel_gives_up_after_seconds", budget)]
        if elapsed is not None:
            details.append(Detail("kernel_gives_up_in_seconds", round(max(0.0, budget - elapsed), 1)))
        # Without tcp_info (the /proc fallback) when retransmission began is unknown: age 0, no guess.
        age = elapsed if elapsed is not None else 0.0
        return connection_finding(Kind.UNRESPONSIVE_PEER, tracked, sock, age, tuple(details))

    return mass_outcome(Kind.UNRESPONSIVE_PEER, tracked, rows, finding)
