"""Pure side of the sock_diag destroy events: one message → DestroyEvent, many → a bounded DestroyBatch.

A destroy event is the message a sock_diag dump would give for the socket (inet_diag_handler_get_info,
net/ipv4/inet_diag.c): `struct inet_diag_msg`, then INET_DIAG_PROTOCOL and INET_DIAG_INFO with the whole
`struct tcp_info` (280 bytes on 6.x). The kernel sends it when the full socket is freed, so its state is
almost always CLOSE (7): tcp_done() sets it before the free, including on the way to TIME_WAIT (the
TIME_WAIT mini-socket that follows is never reported). uid and inode are 0. The cookie is the one a
dump gave the socket, or a fresh one (sock_gen_cookie) for a socket no dump ever saw: a cookie the
tracker does not know is a connection no poll saw. A connect() that failed (refused, timed out) and a
closed listener come with remote port 0 (all measured on 6.18, tests/fixtures/netlink/destroy_events.*).
"""

from __future__ import annotations

import struct
from collections.abc import Container
from dataclasses import dataclass
from types import MappingProxyType

from tcpwatchd.errors import ParseError
from tcpwatchd.facts import CloseCounts, CloseKey, DestroyBatch, Side
from tcpwatchd.model import Family, Socket, TcpState
from tcpwatchd.sources.netlink import NLA_TYPE_MASK, NLATTR, NLMSGHDR, NetlinkError
from tcpwatchd.sources.sockdiag_msg import DIAG_MSG_END, INET_DIAG_INFO, DecodeCache, decode_into

# struct tcp_info (include/uapi/linux/tcp.h): after tcpi_total_retrans (ends at 104) come
# tcpi_pacing_rate and tcpi_max_pacing_rate (u64), then tcpi_bytes_acked (u64, offset 120),
# tcpi_bytes_received (u64, 128), tcpi_segs_out (u32, 136), tcpi_segs_in (u32, 140); Linux 4.2+.
TCP_INFO_TOTALS = struct.Struct("=QQII")
TOTALS_AT = 120
TOTALS_END = TOTALS_AT + TCP_INFO_TOTALS.size  # 144


@dataclass(frozen=True, slots=True)
class TcpTotals:
    """What a connection carried over its life, from its final tcp_info."""

    bytes_acked: int  # bytes we sent that the peer acknowledged (+1 for the SYN, +1 for a FIN)
    bytes_received: int
    segs_out: int
    segs_in: int


@dataclass(frozen=True, slots=True)
class DestroyEvent:
    family: Family
    state: TcpState
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    cookie: int  # the socket's cookie: a dump's, or a fresh one if no dump saw it
    totals: TcpTotals | None  # None: no INET_DIAG_INFO, or one shorter than tcp_info up to tcpi_segs_in


def parse_destroy(data: bytes | memoryview, cache: DecodeCache) -> list[DestroyEvent]:
    """The destroy events in one recv() buffer (the kernel sends one message per event).

    Raises NetlinkError for an NLMSG_ERROR, ParseError for broken framing; a message we cannot
    represent (unknown state, too short) is left out, as a dump's decoder does.
    """
    sockets: list[Socket] = []
    decode_into(data, sockets, cache)
    if not sockets:
        return []
    totals = _totals_per_message(data)
    if len(totals) != len(sockets):  # a message was skipped: which totals go with which is unknown
        totals = [None] * len(sockets)
    return [_event(sock, t) for sock, t in zip(sockets, totals, strict=True)]


def _event(sock: Socket, totals: TcpTotals | None) -> DestroyEvent:
    return DestroyEvent(
        sock.family, sock.state, sock.local_address, sock.local_port,
        sock.remote_address, sock.remote_port, sock.cookie or 0, totals,
    )  # fmt: skip


def _totals_per_message(data: bytes | memoryview) -> list[TcpTotals | None]:
    out: list[TcpTotals | None] = []
    off, end = 0, len(data)
    while off + NLMSGHDR.size <= end:
        mlen = NLMSGHDR.unpack_from(data, off)[0]
        if mlen < NLMSGHDR.size or off + mlen > end:
            raise ParseError("netlink sock_diag destroy", off, f"message length {mlen} at {off} of {end}")
        if mlen >= DIAG_MSG_END:
            out.append(tcp_totals(data, off + DIAG_MSG_END, off + mlen))
        off += (mlen + 3) & ~3
    return out


def tcp_totals(data: bytes | memoryview, start: int, end: int) -> TcpTotals | None:
    """TcpTotals from the INET_DIAG_INFO attribute among the attributes in data[start:end], if long enough.

    >>> tcp_totals(NLATTR.pack(4 + 144, 2) + bytes(120) + TCP_INFO_TOTALS.pack(5, 6, 7, 8), 0, 148)
    TcpTotals(bytes_acked=5, bytes_received=6, segs_out=7, segs_in=8)
    """
    a = start
    while a + NLATTR.size <= end:
        alen, atype = NLATTR.unpack_from(data, a)
        if alen < NLATTR.size:
            return None
        if atype & NLA_TYPE_MASK == INET_DIAG_INFO:
            payload = a + NLATTR.size
            if alen - NLATTR.size < TOTALS_END or a + alen > end:
                return None  # a kernel before 4.2, or a cut message
            return TcpTotals(*TCP_INFO_TOTALS.unpack_from(data, payload + TOTALS_AT))
        a += (alen + 3) & ~3
    return None


def side_of(local_port: int, remote_port: int, listening: Container[int]) -> Side:
    """ACCEPTED when the local port is a listening port; OUTGOING when the remote one is (a loopback
    client) or neither is and the remote port is the lower (the service port, below the ephemeral range).

    >>> side_of(6379, 40000, {6379}), side_of(40000, 6379, {6379}), side_of(50000, 443, set())
    (<Side.ACCEPTED: 'accepted'>, <Side.OUTGOING: 'outgoing'>, <Side.OUTGOING: 'outgoing'>)
    """
    if local_port in listening:
        return Side.ACCEPTED
    if remote_port in listening:
        return Side.OUTGOING
    return Side.OUTGOING if remote_port <= local_port else Side.ACCEPTED


class Aggregator:
    """Accumulates events into per-key counts, at most `max_keys` keys (the rest go to `overflow`)."""

    def __init__(
        self, listening: Container[int], seen: Container[int], max_keys: int, netns: int = 0
    ) -> None:
        self._listening, self._seen, self._max_keys, self._netns = listening, seen, max_keys, netns
        self._keys: dict[CloseKey, list[int]] = {}
        self._overflow = [0] * 8
        self._states: dict[TcpState, int] = {}
        self.events = self.unconnected = self.overflow_keys = 0

    def add(self, ev: DestroyEvent) -> None:
        self.events += 1
        self._states[ev.state] = self._states.get(ev.state, 0) + 1
        if ev.remote_port == 0:
            self.unconnected += 1
            return
        side = side_of(ev.local_port, ev.remote_port, self._listening)
        port = ev.local_port if side is Side.ACCEPTED else ev.remote_port
        key = CloseKey(side, ev.local_address, port, ev.remote_address, self._netns)
        counts = self._keys.get(key)
        if counts is None:
            if len(self._keys) >= self._max_keys:
                self.overflow_keys += 1
                counts = self._overflow
            else:
                counts = self._keys[key] = [0] * 8
        _count(counts, ev, ev.cookie not in self._seen)

    def batch(self, skipped: int, lost: int, overruns: int, more: bool) -> DestroyBatch:
        by_key = {key: CloseCounts(*c) for key, c in self._keys.items()}
        return DestroyBatch(
            MappingProxyType(by_key), MappingProxyType(dict(self._states)), self.events,
            self.unconnected, CloseCounts(*self._overflow), self.overflow_keys, skipped, lost,
            overruns, more,
        )  # fmt: skip


def _count(c: list[int], ev: DestroyEvent, unseen: bool) -> None:
    """Add one event to a CloseCounts in list form (field order)."""
    c[0] += 1
    c[1] += unseen
    t = ev.totals
    if t is not None:
        c[2] += 1
        c[3] += t.bytes_received == 0
        c[4] += t.bytes_acked
        c[5] += t.bytes_received
        c[6] += t.segs_out
        c[7] += t.segs_in


__all__ = [
    "Aggregator",
    "CloseCounts",
    "CloseKey",
    "DestroyBatch",
    "DestroyEvent",
    "NetlinkError",
    "Side",
    "TcpTotals",
    "parse_destroy",
    "side_of",
    "tcp_totals",
]
