"""Pure decoder for NETLINK_SOCK_DIAG dump replies, one message at a time: netlink messages → `Socket`s.

Layouts are fixed by the uapi headers and decoded with precompiled `struct.Struct`s:
- `struct inet_diag_msg` (linux/inet_diag.h): family, state, timer, retrans u8; `inet_diag_sockid` (sport
  and dport big-endian, src[16], dst[16] in network order, if u32, cookie[2] u32); expires (ms), rqueue,
  wqueue, uid, inode u32. 72 bytes after the 16-byte nlmsghdr, followed by `struct nlattr` attributes.
- `INET_DIAG_INFO` (2) carries `struct tcp_info` (linux/tcp.h). We read the 104-byte prefix ending with
  `tcpi_total_retrans`, present since Linux 2.6, and `tcpi_bytes_acked`/`tcpi_bytes_received` (offsets
  120 and 128, since 4.1) when the attribute is long enough; shorter than 104 gives `tcp_info=None`.
The framing (message lengths, errors, NLMSG_DONE) is sources/netlink.py's; the columnar decoder, which
the daemon's polls use, is sources/sockdiag_bulk.py, and builds its rare `Socket`s with `socket_from`.

Hot for every Socket built: bound `unpack_from`s, dict lookups instead of enum constructors, cached
address strings, a remembered attribute layout (see DecodeCache) and tcpwatchd.frozen's builders.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tcpwatchd.frozen import frozen_builder
from tcpwatchd.model import Socket, TcpInfo
from tcpwatchd.sources.codes import FAMILY_OF, STATE_OF, TIMER_OF
from tcpwatchd.sources.netlink import NLA_TYPE_MASK, NLATTR, NLMSGHDR, Cursor, walk_messages

INET_DIAG_INFO = 2  # enum in linux/inet_diag.h
DIAG_MSG = struct.Struct("=4B4x16s16s4x2I5I")  # inet_diag_msg, less the ports
PORTS = struct.Struct(">HH")  # idiag_sport, idiag_dport: __be16 inside an otherwise host-order struct
# tcp_info prefix: skip state/ca_state; retransmits, probes, backoff; skip options/wscale/flags; rto;
# skip ato/snd_mss/rcv_mss; unacked; skip sacked; lost; retrans; skip fackets; last_data_sent; skip
# last_ack_sent (never set by Linux); last_data_recv; last_ack_recv; skip pmtu/rcv_ssthresh; rtt; rttvar;
# skip snd_ssthresh..rcv_space; total_retrans. The field order is TcpInfo's.
TCP_INFO = struct.Struct("=2x3B3xI12xI4xII4xI4xII8xII24xI")
# ...then skip pacing_rate and max_pacing_rate; bytes_acked; bytes_received (u64s, Linux 4.1+).
TCP_INFO_BYTES = struct.Struct(TCP_INFO.format + "16xQQ")
# Byte offsets in struct tcp_info, for the columnar decoder (checked against the structs in the tests).
TCPI_RETRANSMITS, TCPI_PROBES, TCPI_LAST_DATA_RECV, TCPI_LAST_ACK_RECV = 2, 3, 52, 56
TCPI_BYTES_ACKED, TCPI_BYTES_RECEIVED = 120, 128
DIAG_MSG_END = NLMSGHDR.size + DIAG_MSG.size  # 16 + 72: where the attributes start
TCP_INFO_ATTR_MIN = NLATTR.size + TCP_INFO.size  # 4 + 104
TCP_INFO_BYTES_ATTR_MIN = NLATTR.size + TCP_INFO_BYTES.size  # 4 + 136

_new_socket = frozen_builder(Socket)
_new_tcp_info = frozen_builder(TcpInfo)


@dataclass(frozen=True, slots=True)
class ParsedDump:
    sockets: tuple[Socket, ...]
    done: bool  # NLMSG_DONE seen: the dump is complete
    skipped: int  # records we could not represent (too short, unknown family, state or timer)
    interrupted: bool  # NLM_F_DUMP_INTR: the kernel's table changed during the dump


class DecodeCache:
    """Memo for one dump: address strings, and the attribute layout of the last socket with tcp_info.

    A kernel emits the same attributes in the same order for every full socket of a family
    (inet_diag_msg_attrs_fill, then INET_DIAG_INFO; net/ipv4/inet_diag.c). Once a walk has found
    INET_DIAG_INFO, `headers` reads every nlattr header up to it in one unpack; when they all equal
    `expect` (lengths included), the chain is verified header by header and the tcp_info offset and
    length are known exactly. Any other socket takes the ordinary walk.
    """

    __slots__ = ("expect", "headers", "info", "info_at", "names4", "names6", "span")

    def __init__(self) -> None:
        self.names4: dict[bytes, str] = {}
        self.names6: dict[bytes, str] = {}
        self.headers: Callable[..., tuple[int, ...]] | None = None
        self.expect: tuple[int, ...] = ()
        self.info: Callable[..., tuple[int, ...]] = TCP_INFO.unpack_from  # the struct this layout fills
        self.info_at = 0  # tcp_info payload offset from the first attribute
        self.span = 0  # bytes from the first attribute that the shortcut needs

    def learn(self, offsets: list[int], lengths: list[int], types: list[int]) -> None:
        fmt, pos = "=", 0
        for at in offsets:
            fmt += f"{at - pos}xHH"
            pos = at + NLATTR.size
        self.headers = struct.Struct(fmt).unpack_from
        self.expect = tuple(v for pair in zip(lengths, types, strict=True) for v in pair)
        layout = _tcp_info_struct(lengths[-1])
        self.info = layout.unpack_from
        self.info_at = offsets[-1] + NLATTR.size
        self.span = self.info_at + layout.size


def _tcp_info_struct(attr_len: int) -> struct.Struct:
    """The longest of our tcp_info layouts that an INET_DIAG_INFO attribute of `attr_len` bytes holds."""
    return TCP_INFO_BYTES if attr_len >= TCP_INFO_BYTES_ATTR_MIN else TCP_INFO


def parse_sockdiag(data: bytes | memoryview) -> ParsedDump:
    """Decode netlink messages (one or more recv buffers, concatenated) into sockets.

    >>> from tcpwatchd.sources.netlink import ERRNO, NLM_F_MULTI, NLMSG_DONE
    >>> parse_sockdiag(NLMSGHDR.pack(20, NLMSG_DONE, NLM_F_MULTI, 1, 0) + ERRNO.pack(0))
    ParsedDump(sockets=(), done=True, skipped=0, interrupted=False)
    """
    out: list[Socket] = []
    cursor = decode_into(data, out, DecodeCache())
    return ParsedDump(tuple(out), cursor.done, cursor.skipped, cursor.interrupted)


@dataclass(slots=True)
class DecodeCursor(Cursor):
    """A netlink Cursor that also counts the messages it could not represent as sockets."""

    skipped: int = 0


def decode_into(data: bytes | memoryview, out: list[Socket], cache: DecodeCache) -> DecodeCursor:
    """Append the sockets in `data` to `out`, up to NLMSG_DONE; `cache` is kept across a dump's buffers.

    Raises NetlinkError for an error reply, ParseError (line_no = byte offset) for broken framing.
    """
    cursor = DecodeCursor()
    append = out.append

    def on_diag(off: int, mend: int) -> None:
        sock = socket_from(data, off, mend, cache)
        if sock is None:
            cursor.skipped += 1
        else:
            append(sock)

    walk_messages(data, cursor, on_diag)
    return cursor


def socket_from(
    data: bytes | memoryview,
    off: int,
    mend: int,
    cache: DecodeCache,
    _msg: Callable[..., tuple[Any, ...]] = DIAG_MSG.unpack_from,  # bound once: this runs per socket
    _ports: Callable[..., tuple[int, ...]] = PORTS.unpack_from,
    _ntop: Callable[[int, bytes], str] = socket.inet_ntop,
) -> Socket | None:
    """One inet_diag_msg (at `off`, message ending at `mend`) → Socket, or None if we cannot represent it."""
    if mend < off + DIAG_MSG_END:
        return None
    fam, st, tm, rtx, src, dst, c0, c1, expires, rq, wq, uid, ino = _msg(data, off + 16)
    family, state, timer = FAMILY_OF.get(fam), STATE_OF.get(st), TIMER_OF.get(tm)
    if family is None or state is None or timer is None:
        return None
    sport, dport = _ports(data, off + 20)
    names, raw_len = (cache.names4, 4) if fam == socket.AF_INET else (cache.names6, 16)
    local = names.get(src)
    if local is None:
        local = names[src] = _ntop(fam, src[:raw_len])
    remote = names.get(dst)
    if remote is None:
        remote = names[dst] = _ntop(fam, dst[:raw_len])
    a = off + DIAG_MSG_END
    headers = cache.headers
    info: TcpInfo | None
    if headers is not None and a + cache.span <= mend and headers(data, a) == cache.expect:
        info = _new_tcp_info(*cache.info(data, a + cache.info_at))
    else:
        info = _walk_attributes(data, a, mend, cache)
    return _new_socket(
        family, state, local, sport, remote, dport, rq, wq, uid, ino, timer, expires, rtx,
        c0 | c1 << 32, info,
    )  # fmt: skip


def _walk_attributes(data: bytes | memoryview, start: int, mend: int, cache: DecodeCache) -> TcpInfo | None:
    """Find INET_DIAG_INFO among the attributes; teach `cache` the layout that led to it."""
    offsets: list[int] = []
    lengths: list[int] = []
    types: list[int] = []
    a = start
    while a + NLATTR.size <= mend:
        alen, atype = NLATTR.unpack_from(data, a)
        if alen < NLATTR.size:
            return None
        offsets.append(a - start)
        lengths.append(alen)
        types.append(atype)
        if atype & NLA_TYPE_MASK == INET_DIAG_INFO:
            if alen < TCP_INFO_ATTR_MIN or a + TCP_INFO_ATTR_MIN > mend:
                return None  # a kernel (or a message) with less than the prefix we read
            layout = _tcp_info_struct(min(alen, mend - a))
            cache.learn(offsets, lengths, types)
            return _new_tcp_info(*layout.unpack_from(data, a + NLATTR.size))
        a += (alen + 3) & ~3
    return None
