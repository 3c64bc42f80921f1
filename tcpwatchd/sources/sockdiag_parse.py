"""Pure decoder for NETLINK_SOCK_DIAG dump replies: netlink messages → `Socket`s.

Layouts are fixed by the uapi headers and decoded with precompiled `struct.Struct`s:
- `struct nlmsghdr` (linux/netlink.h): len u32, type u16, flags u16, seq u32, pid u32; 4-byte aligned.
- `struct inet_diag_msg` (linux/inet_diag.h): family, state, timer, retrans u8; `inet_diag_sockid` (sport
  and dport big-endian, src[16], dst[16] in network order, if u32, cookie[2] u32); expires (ms), rqueue,
  wqueue, uid, inode u32. 72 bytes, followed by `struct nlattr` attributes (len u16, type u16, 4-aligned).
- `INET_DIAG_INFO` (2) carries `struct tcp_info` (linux/tcp.h). We read the 104-byte prefix ending with
  `tcpi_total_retrans`, present since Linux 2.6; a shorter attribute gives `tcp_info=None`.

This is the hot path of every poll (≈100k sockets on a busy host): bound `unpack_from`s, dict lookups
instead of enum constructors, cached address strings, a remembered attribute layout (see DecodeCache) and
cheap construction of the frozen model types (see _frozen_builder).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tcpwatchd.errors import ParseError
from tcpwatchd.model import Family, Socket, TcpInfo, TcpState, TimerKind

SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3  # linux/netlink.h
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the table changed during the dump: the result may miss or repeat sockets
INET_DIAG_INFO = 2  # enum in linux/inet_diag.h
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER (linux/netlink.h)

NLMSGHDR = struct.Struct("=IHHII")
DIAG_MSG = struct.Struct("=4B4x16s16s4x2I5I")  # inet_diag_msg, less the ports
PORTS = struct.Struct(">HH")  # idiag_sport, idiag_dport: __be16 inside an otherwise host-order struct
NLATTR = struct.Struct("=HH")
# tcp_info prefix: skip state/ca_state; retransmits, probes, backoff; skip options/wscale/flags; rto;
# skip ato/snd_mss/rcv_mss; unacked; skip sacked; lost; retrans; skip fackets; last_data_sent; skip
# last_ack_sent (never set by Linux); last_data_recv; last_ack_recv; skip pmtu/rcv_ssthresh; rtt; rttvar;
# skip snd_ssthresh..rcv_space; total_retrans. The field order is TcpInfo's.
TCP_INFO = struct.Struct("=2x3B3xI12xI4xII4xI4xII8xII24xI")
ERRNO = struct.Struct("=i")
DIAG_MSG_END = NLMSGHDR.size + DIAG_MSG.size  # 16 + 72: where the attributes start
TCP_INFO_ATTR_MIN = NLATTR.size + TCP_INFO.size  # 4 + 104

_FAMILIES = {int(f): f for f in Family}
_STATES = {int(s): s for s in TcpState}
_TIMERS = {int(t): t for t in TimerKind}
_T = TypeVar("_T")


def frozen_builder(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for the frozen slotted dataclass `cls` that skips the frozen __init__.

    A frozen dataclass's __init__ stores every field through object.__setattr__ (≈1 µs for Socket's 15
    fields on CPython 3.11); a plain slotted twin with the same fields stores them directly (≈0.1 µs).
    The twin's object then gets `cls` as its class: CPython allows that only between identical slot
    layouts, so a model change that breaks it fails at import, and the result is an ordinary frozen
    `cls` instance, equal (and hashing) like one built by `cls(...)`, as checked on a sample below.

    >>> frozen_builder(TcpInfo)(*range(13)) == TcpInfo(*range(13))
    True
    """
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    spec = [
        (f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory))
        for f in fields
    ]
    twin: Any = dataclasses.make_dataclass(f"_{cls.__name__}Twin", spec, slots=True, eq=False, repr=False)

    def build(*args: object) -> _T:
        obj = twin(*args)
        obj.__class__ = cls
        return obj  # type: ignore[no-any-return]

    sample = tuple(range(len(fields)))
    if build(*sample) != cls(*sample):
        raise TypeError(f"the fast builder of {cls.__name__} disagrees with its constructor")
    return build


_new_socket = frozen_builder(Socket)
_new_tcp_info = frozen_builder(TcpInfo)


class NetlinkError(OSError):
    """The kernel answered a sock_diag request with an error (NLMSG_ERROR, or an error in NLMSG_DONE)."""

    def __init__(self, err: int, context: str) -> None:
        super().__init__(err, f"sock_diag {context}: {os.strerror(err)}")


@dataclass(frozen=True, slots=True)
class DiagChunk:
    """What one buffer of a dump held, beyond the sockets themselves."""

    done: bool  # NLMSG_DONE seen: the dump is complete
    skipped: int  # records we could not represent (too short, unknown family, state or timer)
    interrupted: bool  # NLM_F_DUMP_INTR: the kernel's table changed during the dump


@dataclass(frozen=True, slots=True)
class ParsedDump:
    sockets: tuple[Socket, ...]
    done: bool
    skipped: int
    interrupted: bool


class DecodeCache:
    """Memo for one dump: address strings, and the attribute layout of the last socket with tcp_info.

    A kernel emits the same attributes in the same order for every full socket of a family
    (inet_diag_msg_attrs_fill, then INET_DIAG_INFO; net/ipv4/inet_diag.c). Once a walk has found
    INET_DIAG_INFO, `headers` reads every nlattr header up to it in one unpack; when they all equal
    `expect`, the chain is verified header by header and the tcp_info offset is known exactly.
    Any other socket takes the ordinary walk.
    """

    __slots__ = ("expect", "headers", "info_at", "names4", "names6", "span")

    def __init__(self) -> None:
        self.names4: dict[bytes, str] = {}
        self.names6: dict[bytes, str] = {}
        self.headers: Callable[..., tuple[int, ...]] | None = None
        self.expect: tuple[int, ...] = ()
        self.info_at = 0  # tcp_info payload offset from the first attribute
        self.span = 0  # bytes from the first attribute that the shortcut needs

    def learn(self, offsets: list[int], lengths: list[int], types: list[int]) -> None:
        fmt, pos = "=", 0
        for at in offsets:
            fmt += f"{at - pos}xHH"
            pos = at + NLATTR.size
        self.headers = struct.Struct(fmt).unpack_from
        self.expect = tuple(v for pair in zip(lengths, types, strict=True) for v in pair)
        self.info_at = offsets[-1] + NLATTR.size
        self.span = self.info_at + TCP_INFO.size


def parse_sockdiag(data: bytes | memoryview) -> ParsedDump:
    """Decode netlink messages (one or more recv buffers, concatenated) into sockets.

    >>> parse_sockdiag(NLMSGHDR.pack(20, NLMSG_DONE, NLM_F_MULTI, 1, 0) + ERRNO.pack(0))
    ParsedDump(sockets=(), done=True, skipped=0, interrupted=False)
    """
    out: list[Socket] = []
    chunk = decode_into(data, out, DecodeCache())
    return ParsedDump(tuple(out), chunk.done, chunk.skipped, chunk.interrupted)


def decode_into(data: bytes | memoryview, out: list[Socket], cache: DecodeCache) -> DiagChunk:
    """Append the sockets in `data` to `out`, up to NLMSG_DONE; `cache` is kept across a dump's buffers.

    Raises NetlinkError for an error reply, ParseError (line_no = byte offset) for broken framing.
    """
    end, off, skipped, flags_seen = len(data), 0, 0, 0
    hdr, sock_msg, append = NLMSGHDR.unpack_from, _socket_from, out.append
    while off + 16 <= end:
        mlen, mtype, mflags, _seq, _pid = hdr(data, off)
        if mlen < 16 or off + mlen > end:
            raise ParseError("netlink sock_diag", off, f"message length {mlen} at offset {off} of {end}")
        flags_seen |= mflags
        if mtype == SOCK_DIAG_BY_FAMILY:
            sock = sock_msg(data, off, off + mlen, cache)
            if sock is None:
                skipped += 1
            else:
                append(sock)
        elif mtype == NLMSG_DONE:
            _raise_for_errno(data, off, mlen, "dump")
            return DiagChunk(True, skipped, bool(flags_seen & NLM_F_DUMP_INTR))
        elif mtype == NLMSG_ERROR:
            _raise_for_errno(data, off, mlen, "request")
        off += (mlen + 3) & ~3
    return DiagChunk(False, skipped, bool(flags_seen & NLM_F_DUMP_INTR))


def _raise_for_errno(data: bytes | memoryview, off: int, mlen: int, context: str) -> None:
    """NLMSG_ERROR and NLMSG_DONE carry a negative errno first (0 in an ACK or a clean DONE)."""
    if mlen < 20:
        return  # a DONE without payload (old kernels): success
    (err,) = ERRNO.unpack_from(data, off + 16)
    if err < 0:
        raise NetlinkError(-err, context)


def _socket_from(
    data: bytes | memoryview,
    off: int,
    mend: int,
    cache: DecodeCache,
    _msg: Callable[..., tuple[Any, ...]] = DIAG_MSG.unpack_from,  # bound once: this runs per socket
    _ports: Callable[..., tuple[int, ...]] = PORTS.unpack_from,
    _info: Callable[..., tuple[int, ...]] = TCP_INFO.unpack_from,
    _ntop: Callable[[int, bytes], str] = socket.inet_ntop,
) -> Socket | None:
    """One inet_diag_msg (at `off`, message ending at `mend`) → Socket, or None if we cannot represent it."""
    if mend < off + DIAG_MSG_END:
        return None
    fam, st, tm, rtx, src, dst, c0, c1, expires, rq, wq, uid, ino = _msg(data, off + 16)
    family, state, timer = _FAMILIES.get(fam), _STATES.get(st), _TIMERS.get(tm)
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
        info = _new_tcp_info(*_info(data, a + cache.info_at))
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
            cache.learn(offsets, lengths, types)
            return _new_tcp_info(*TCP_INFO.unpack_from(data, a + NLATTR.size))
        a += (alen + 3) & ~3
    return None
