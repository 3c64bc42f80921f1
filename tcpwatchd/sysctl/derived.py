"""How long the kernel takes to notice a dead peer, from the sysctl values. Pure arithmetic.

Idle connection (keepalive on, nothing in flight): net/ipv4/tcp_timer.c tcp_keepalive_timer() sends the
first probe after tcp_keepalive_time of silence, then one every tcp_keepalive_intvl, and aborts when it
fires with icsk_probes_out >= tcp_keepalive_probes: time + intvl * probes.

Data in flight: on each retransmission timeout, tcp_write_timeout() aborts when retransmits_timed_out(sk,
tcp_retries2, 0) holds, i.e. when the time since the unacknowledged segment was first sent
(tp->retrans_stamp) reaches tcp_model_timeout(sk, tcp_retries2, TCP_RTO_MIN): the time that many
retransmissions take when the RTO starts at TCP_RTO_MIN (HZ/5, 200 ms) and doubles up to the ceiling
(TCP_RTO_MAX, 120 s; tcp_rto_max(sk) since Linux 6.15, whose default is the tcp_rto_max_ms sysctl):

    linear_backoff_thresh = ilog2(rto_max / rto_base)
    if boundary <= linear_backoff_thresh:
        timeout = ((2 << boundary) - 1) * rto_base
    else:
        timeout = ((2 << linear_backoff_thresh) - 1) * rto_base
                  + (boundary - linear_backoff_thresh) * rto_max

For tcp_retries2 = 15: thresh = ilog2(600) = 9, so 1023 * 0.2 s + 6 * 120 s = 924.6 s, the figure
Documentation/networking/ip-sysctl.rst quotes. It is a budget of time, not a count: the abort happens at
the first timer expiry at or after it, which is exactly then for a connection whose RTO was at its 200 ms
floor, and up to one RTO later for a slower path. TCP_USER_TIMEOUT on a socket replaces the model. The
kernel computes in jiffies; this is exact at HZ=1000.
"""

from __future__ import annotations

from collections.abc import Mapping

TCP_RTO_MIN_MS = 200  # include/net/tcp.h: TCP_RTO_MIN = HZ / 5
TCP_RTO_MAX_MS = 120_000  # include/net/tcp.h: TCP_RTO_MAX = TCP_RTO_MAX_SEC * HZ, TCP_RTO_MAX_SEC = 120
DEFAULT_RETRIES2 = 15  # include/net/tcp.h: TCP_RETR2


def idle_detection_seconds(keepalive_time: int, keepalive_intvl: int, keepalive_probes: int) -> int:
    """Seconds from the last packet to the abort of an idle keepalive connection.

    >>> idle_detection_seconds(7200, 75, 9)
    7875
    """
    return keepalive_time + keepalive_intvl * keepalive_probes


def model_timeout_ms(
    boundary: int, rto_base_ms: int = TCP_RTO_MIN_MS, rto_max_ms: int = TCP_RTO_MAX_MS
) -> int:
    """tcp_model_timeout() of net/ipv4/tcp_timer.c, in milliseconds.

    >>> model_timeout_ms(15)
    924600
    """
    if boundary < 0 or rto_base_ms <= 0 or rto_max_ms < rto_base_ms:
        raise ValueError(f"no model for boundary={boundary}, rto_base={rto_base_ms}, rto_max={rto_max_ms}")
    thresh = (rto_max_ms // rto_base_ms).bit_length() - 1  # ilog2
    if boundary <= thresh:
        return ((2 << boundary) - 1) * rto_base_ms
    return ((2 << thresh) - 1) * rto_base_ms + (boundary - thresh) * rto_max_ms


def inflight_detection_seconds(tcp_retries2: int, rto_max_ms: int = TCP_RTO_MAX_MS) -> float:
    """Seconds from the first retransmission to the abort of a connection whose peer died mid-transfer.

    >>> inflight_detection_seconds(15)
    924.6
    """
    return model_timeout_ms(tcp_retries2, TCP_RTO_MIN_MS, rto_max_ms) / 1000


def inflight_detection_from(sysctl: Mapping[str, int]) -> float:
    """`inflight_detection_seconds` from dotted sysctl values, with the kernel's defaults for missing ones
    (a poll without the sysctl audit still knows the default budget).

    >>> inflight_detection_from({})
    924.6
    """
    retries2 = sysctl.get("net.ipv4.tcp_retries2", DEFAULT_RETRIES2)
    rto_max_ms = max(sysctl.get("net.ipv4.tcp_rto_max_ms", TCP_RTO_MAX_MS), TCP_RTO_MIN_MS)
    return inflight_detection_seconds(max(retries2, 0), rto_max_ms)
