"""The worst-case population's extra shares (issue 12): connections with unread data, and retransmitting ones.

On top of the healthy population (every connection idle, keepalive off, 5 % in CLOSE_WAIT), the worst case
makes every connection detector find something at once:

- **unread** (5 %): the client sends a few bytes that the server, which never reads, leaves queued: a
  stopped reader (stalled_receive);
- **dropped** (2.5 %): the client marks its socket DSCP CS1 once the handshake is done and sends a few
  bytes; a tc filter on the namespace's `lo` takes every marked packet off at ingress (redirected into a
  veth pair that nothing listens behind), so the sender's transmission succeeds and the segment is lost:
  real RTO retransmissions with backoff (unresponsive_peer). Nothing is dropped on the way out, where
  the sender would see a local error and keep the data unsent (tcp_write_xmit(), net/ipv4/tcp_output.c),
  under the probe timer instead of the retransmit timer.

Both shares are half IPv4, half IPv6. The filter, the veth pair and the raised `tcp_retries2` live in the
benchmark's namespace only and go with it. Why a redirect and not a firewall rule: the machines these
benchmarks run on have tc (iproute2) with the u32 classifier and the mirred action built into the kernel,
but not gact (`action drop`), and neither nft nor iptables installed.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nsutil import Namespace

# Marked once established: DSCP CS1, TOS byte 0x20. The kernel keeps the ECN bits of a TCP socket's TOS
# itself (net/ipv4/ip_sockglue.c __ip_sock_set_tos), so only the DSCP bits are matched.
DROP_TOS = 0x20
PAYLOAD = b"unread by design\n"
MIN_RETRANSMITS = 3  # [detect.unresponsive_peer] min_retransmits, its default
SINK, SINK_PEER = "bsink0", "bsink1"
# 20 backed-off retransmissions of a loopback RTO (200 ms, TCP_RTO_MIN) take 1525 s (tcp_model_timeout(),
# net/ipv4/tcp_timer.c), longer than the population's children live (1800 s from the start of the
# build); at the default 15 (925 s) a long point would lose its retransmitting share mid-measurement.
SYSCTLS = {"net.ipv4.tcp_retries2": "20"}
# The kinds a worst-case poll must count, one per connection detector (phantom's is idle_suspect: the
# whole population is open at tcpwatchd's first poll, so no connection supersedes another).
KINDS = ("close_wait", "idle_suspect", "keepalive_off", "stalled_receive", "unresponsive_peer")
_TIMER_ON = re.compile(r"timer:\(on,[^,]*,(\d+)\)")


def unread(conn: int) -> bool:
    """5 % of connections send bytes the server never reads, half over IPv6 (5 % 5 == 0)."""
    return conn % 40 in (5, 6)


def dropped(conn: int) -> bool:
    """2.5 % of connections send bytes the namespace drops, half over IPv6 (10 % 5 == 0)."""
    return conn % 80 in (10, 11)


def send_shares(kept: list[tuple[int, socket.socket]]) -> None:
    """In a client, once every handshake is done: the unread bytes, and the marked ones (marked after
    connect(), so the handshake itself went through)."""
    for conn, sock in kept:
        if dropped(conn):
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, DROP_TOS)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, DROP_TOS)
        if dropped(conn) or unread(conn):
            sock.send(PAYLOAD)  # a few bytes: the send buffer takes them at once


def install_drop(ns: Namespace) -> None:
    """Inside `ns`: drop every packet marked DROP_TOS as it arrives on `lo`, and let retransmissions run
    for the whole point. What is redirected into the veth pair reaches its peer addressed to another
    host and is discarded there (ip_rcv_core(): PACKET_OTHERHOST); IPv6 is off on both ends."""
    for key, value in SYSCTLS.items():
        ns.run("sysctl", "-q", "-w", f"{key}={value}")
    ns.run("ip", "link", "add", SINK, "type", "veth", "peer", "name", SINK_PEER)
    for dev in (SINK, SINK_PEER):
        ns.run("sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1")
        ns.run("ip", "link", "set", dev, "up")
    ns.run("tc", "qdisc", "add", "dev", "lo", "clsact")
    redirect = ("action", "mirred", "egress", "redirect", "dev", SINK)
    tos = (hex(DROP_TOS), "0xfc")
    ingress = ("tc", "filter", "add", "dev", "lo", "ingress")
    ns.run(*ingress, "protocol", "ip", "pref", "1", "u32", "match", "ip", "tos", *tos, *redirect)
    ns.run(*ingress, "protocol", "ipv6", "pref", "2", "u32", "match", "ip6", "priority", *tos, *redirect)


@dataclass(frozen=True, slots=True)
class Shares:
    unread: int  # ESTABLISHED sockets with bytes in the receive queue
    retransmitting: int  # ESTABLISHED sockets with at least MIN_RETRANSMITS retransmissions in a row


def count_shares(ss_text: str) -> Shares:
    """Count both shares in `ss -tonH state established` output (Recv-Q first; `timer:(on,RTO,N)`).

    >>> count_shares("17 0 127.0.0.1:20000 127.0.0.3:4242\\n0 17 [::1]:5 [::1]:20001 timer:(on,1.6sec,3)\\n")
    Shares(unread=1, retransmitting=1)
    """
    unread_n = retransmitting = 0
    for line in ss_text.splitlines():
        fields = line.split(maxsplit=1)
        if fields and fields[0].isdigit() and int(fields[0]) > 0:
            unread_n += 1
        if (m := _TIMER_ON.search(line)) and int(m.group(1)) >= MIN_RETRANSMITS:
            retransmitting += 1
    return Shares(unread_n, retransmitting)


def wait_shares(ns: Namespace, want: Shares, deadline: float) -> Shares:
    """Poll `ss` in `ns` until both shares are in place (the third RTO fires ≈1.4 s after the send)."""
    seen = Shares(0, 0)
    while time.monotonic() < deadline:
        seen = count_shares(ns.run("ss", "-tonH", "state", "established", timeout=120).stdout)
        if seen.unread >= want.unread and seen.retransmitting >= want.retransmitting:
            return seen
        time.sleep(0.5)
    raise RuntimeError(f"worst-case shares never in place: ss sees {seen}, expected {want}")


def missing_kinds(counts: Mapping[str, int]) -> list[str]:
    """The kinds a worst-case poll should have counted and did not."""
    return [kind for kind in KINDS if counts.get(kind, 0) <= 0]
