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
from itertools import compress, count
from typing import Any, TypeVar

from tcpwatchd.columns import ObjectPart
from tcpwatchd.errors import ParseError
from tcpwatchd.model import Family, Socket, TcpInfo, TcpState, TimerKind, header_retransmits

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


# --- Bulk decoding: a whole dump into columns ---------------------------------------------------------
#
# Every full socket of a family carries the same attributes in the same order, so a dump is mostly one
# run of equal-length messages. Such a run is decoded without a per-socket Python loop: a memoryview
# cast to u8/u16/u32 and sliced with the message length as its step yields one field of every message,
# and `.tolist()` turns it into a column in C. Messages of other lengths (TIME_WAIT and request sockets,
# a socket with an extra attribute) are copied into one buffer per length and decoded the same way.

_DONE_TAIL = NLMSGHDR.size + ERRNO.size  # NLMSG_DONE carries a negative errno (0 on success)
_FAMILY_OFF = 16  # inet_diag_msg fields, as byte offsets from the start of the netlink message
_INFO_RETRANSMITS, _INFO_LAST_DATA_RECV, _INFO_LAST_ACK_RECV = 2, 52, 56  # offsets in struct tcp_info


class AddressCache:
    """Raw address -> text, kept across polls (a host's set of addresses changes slowly); bounded."""

    __slots__ = ("v4", "v6")
    LIMIT = 1 << 18

    def __init__(self) -> None:
        self.v4: dict[int, str] = {}
        self.v6: dict[tuple[int, int, int, int], str] = {}

    def texts(self, family: int, raw: list[Any]) -> list[str]:
        names: dict[Any, str] = self.v4 if family == socket.AF_INET else self.v6
        missing = set(raw).difference(names)
        if missing:
            if len(names) + len(missing) > self.LIMIT:
                names.clear()
                missing = set(raw)
            pack = _pack_v4 if family == socket.AF_INET else _pack_v6
            for value in missing:
                names[value] = socket.inet_ntop(family, pack(value))
        return list(map(names.__getitem__, raw))


def _pack_v4(value: int) -> bytes:
    return struct.pack("=I", value)


def _pack_v6(value: tuple[int, int, int, int]) -> bytes:
    return struct.pack("=4I", *value)


class RawPart:
    """`count` sock_diag messages of `stride` bytes each, back to back in `data`, all of one family and
    one attribute layout; `info_at` is the tcp_info payload's offset in a message (-1: none)."""

    __slots__ = ("_cache", "_columns", "_decode", "count", "data", "family", "info_at", "stride")

    def __init__(
        self, data: memoryview, stride: int, count: int, family: int, info_at: int, cache: AddressCache
    ) -> None:
        self.data, self.stride, self.count, self.family, self.info_at = data, stride, count, family, info_at
        self._cache = cache
        self._columns: dict[str, list[Any]] = {}
        self._decode: DecodeCache | None = None

    def __len__(self) -> int:
        return self.count

    def socket(self, i: int) -> Socket:
        if self._decode is None:
            self._decode = DecodeCache()
        off = i * self.stride
        sock = _socket_from(self.data, off, off + self.stride, self._decode)
        if sock is None:  # validated when the part was built; a failure here is a bug
            raise ParseError("netlink sock_diag", off, "message no longer decodes")
        return sock

    def _u8(self, off: int) -> list[int]:
        return self.data[off :: self.stride].tolist()

    def _u32(self, off: int) -> list[int]:
        return self.data.cast("I")[off // 4 :: self.stride // 4].tolist()

    def _be16(self, off: int) -> list[int]:
        return list(map(_be16, self._u8(off), self._u8(off + 1)))

    def _address(self, off: int) -> list[Any]:
        if self.family == socket.AF_INET:
            raw: list[Any] = self._u32(off)
        else:
            raw = list(zip(*(self._u32(off + 4 * k) for k in range(4)), strict=True))
        return self._cache.texts(self.family, raw)

    def column(self, name: str) -> list[Any]:
        """One field of every message, in order (memoised: the caller must not mutate it)."""
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self._extract(name)
        return col

    def _extract(self, name: str) -> list[Any]:
        simple = _RAW_U32.get(name)
        if simple is not None:
            return self._u32(simple)
        simple = _RAW_U8.get(name)
        if simple is not None:
            return self._u8(simple)
        if name in ("local_port", "remote_port"):
            return self._be16(20 if name == "local_port" else 22)
        if name in ("local_address", "remote_address"):
            return self._address(24 if name == "local_address" else 40)
        if name == "key":
            return self._cookies()
        if name == "retransmits":
            if self.info_at >= 0:
                return self._u8(self.info_at + _INFO_RETRANSMITS)
            return list(map(header_retransmits, self._u8(19), self._u8(18)))
        if name in ("last_data_recv_ms", "last_ack_recv_ms"):
            if self.info_at < 0:
                return [-1] * self.count
            rel = _INFO_LAST_DATA_RECV if name == "last_data_recv_ms" else _INFO_LAST_ACK_RECV
            return self._u32(self.info_at + rel)
        raise KeyError(f"no socket column {name!r}")

    def _cookies(self) -> list[int]:
        low, high = self._u32(60), self._u32(64)
        if high.count(0) == len(high):  # the usual case: cookies below 2**32
            return low
        return [lo | hi << 32 for lo, hi in zip(low, high, strict=True)]


def _be16(hi: int, lo: int) -> int:
    return hi << 8 | lo


_RAW_U8 = {"family": _FAMILY_OFF, "state": 17, "timer": 18, "retrans": 19}
_RAW_U32 = {"expires": 68, "rqueue": 72, "wqueue": 76, "uid": 80, "inode": 84}


@dataclass(frozen=True, slots=True)
class BulkDump:
    """One family's dump, decoded into parts."""

    parts: tuple[Any, ...]  # RawPart, or table.ObjectPart for messages decoded one by one
    done: bool
    skipped: int
    interrupted: bool


def parse_bulk(data: memoryview, family: int, cache: AddressCache) -> BulkDump:
    """Decode one family's dump replies (whole messages, back to back, up to NLMSG_DONE) into parts.

    Long runs of equal-length messages become RawParts over `data` itself (no copy); the others are
    walked one by one and grouped by length. Raises NetlinkError for an error reply, ParseError
    (line_no = byte offset) for broken framing.
    """
    walk = _Walk(data)
    parts: list[Any] = []
    skip = 1  # after a short run, how many messages to walk before looking for a run again
    while not walk.finished():
        run = walk.run_length()
        if run >= _MIN_RUN:
            part = _raw_part(data[walk.off : walk.off + run * walk.stride], walk.stride, run, family, cache)
            if part is not None:
                parts.append(part)
                walk.off += run * walk.stride
                skip = 1
                continue
        # Doubling the skip bounds the cost of looking when messages of several lengths alternate.
        walk.messages(max(run, skip))
        skip = min(skip * 2, _MIN_RUN)
    skipped = 0
    for mlen, group in walk.by_length.items():
        view = memoryview(bytes(group))
        raw = _raw_part(view, mlen, len(group) // mlen, family, cache) if mlen % 4 == 0 else None
        if raw is None:
            sockets: list[Socket] = []
            skipped += _decode_same_length(view, mlen, sockets)
            parts.append(ObjectPart(sockets))
        else:
            parts.append(raw)
    return BulkDump(tuple(parts), walk.done, skipped, walk.interrupted)


_MIN_RUN = 32  # shorter runs of one length are cheaper to walk message by message


class _Walk:
    """The framing of one dump: where we are, and the messages walked one by one, grouped by length."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.end, self.off = data, len(data), 0
        self.words = data[: len(data) - len(data) % 4].cast("I")
        self.halves = data[: len(data) - len(data) % 2].cast("H")
        self.stride = 0
        self.done = self.interrupted = False
        self.by_length: dict[int, bytearray] = {}

    def finished(self) -> bool:
        return self.done or self.off + NLMSGHDR.size > self.end

    def run_length(self) -> int:
        """How many SOCK_DIAG_BY_FAMILY messages of the current message's length follow, from here."""
        mlen = self.stride = NLMSGHDR.unpack_from(self.data, self.off)[0]
        if mlen < DIAG_MSG_END or mlen % 4 or self.off % 4:
            return 0
        step, first = mlen // 4, self.off // 4
        limit = (self.end - self.off) // mlen
        run, window = 0, _MIN_RUN
        while run < limit:
            stop = min(limit, run + window)
            lengths = self.words[first + run * step : first + stop * step : step].tolist()
            types = self.halves[(self.off + run * mlen + 4) // 2 : (self.off + stop * mlen) // 2 : mlen // 2]
            kinds = types.tolist()
            good = len(lengths)
            if lengths.count(mlen) != good or kinds.count(SOCK_DIAG_BY_FAMILY) != good:
                # The first message that differs ends the run; nothing after it is read as a header.
                good = next(compress(count(), map(mlen.__ne__, lengths)), good)
                good = min(good, next(compress(count(), map(SOCK_DIAG_BY_FAMILY.__ne__, kinds)), good))
            run += good
            if good < len(lengths):
                break
            window *= 4
        if run and self._flags(self.off, run, mlen) & NLM_F_DUMP_INTR:
            self.interrupted = True
        return run

    def _flags(self, off: int, run: int, mlen: int) -> int:
        flags = 0
        for f in set(self.halves[(off + 6) // 2 : (off + run * mlen) // 2 : mlen // 2].tolist()):
            flags |= f
        return flags

    def messages(self, limit: int) -> None:
        """Walk up to `limit` messages one by one (stopping at NLMSG_DONE)."""
        data, end, hdr = self.data, self.end, NLMSGHDR.unpack_from
        for _ in range(limit):
            off = self.off
            if off + NLMSGHDR.size > end:
                return
            mlen, mtype, mflags, _seq, _pid = hdr(data, off)
            if mlen < NLMSGHDR.size or off + mlen > end:
                raise ParseError("netlink sock_diag", off, f"message length {mlen} at offset {off} of {end}")
            if mflags & NLM_F_DUMP_INTR:
                self.interrupted = True
            if mtype == SOCK_DIAG_BY_FAMILY:
                group = self.by_length.get(mlen)
                if group is None:
                    group = self.by_length[mlen] = bytearray()
                group += data[off : off + mlen]
            elif mtype == NLMSG_DONE:
                _raise_for_errno(data, off, mlen, "dump")
                self.done = True
                return
            elif mtype == NLMSG_ERROR:
                _raise_for_errno(data, off, mlen, "request")
            self.off = off + ((mlen + 3) & ~3)


def _raw_part(data: memoryview, stride: int, count: int, family: int, cache: AddressCache) -> RawPart | None:
    """A RawPart when every message has the first one's family, a known state and timer, and its
    INET_DIAG_INFO attribute where the first one has it; None when not (decode one by one).

    Only tcp_info is read from the attributes, so only its header needs to be at the same offset in
    every message: the run already has one length, so the attributes before it fill the same bytes."""
    layout = _attribute_layout(data, stride)
    if layout is None:
        return None
    info_header, info_at = layout
    part = RawPart(data, stride, count, family, info_at, cache)
    if set(part.column("family")) != {family} or not set(part.column("state")) <= _STATES.keys():
        return None
    if not set(part.column("timer")) <= _TIMERS.keys():
        return None
    if info_at >= 0:
        at = info_at - NLATTR.size
        if data.cast("I")[at // 4 :: stride // 4].tolist().count(info_header) != count:
            return None
    return part


def _attribute_layout(data: memoryview, stride: int) -> tuple[int, int] | None:
    """The first message's INET_DIAG_INFO header (raw u32) and where its payload starts (-1, -1 without
    one); None when its attribute chain does not fill the message exactly."""
    header, info_at, a = -1, -1, DIAG_MSG_END
    while a + NLATTR.size <= stride:
        alen, atype = NLATTR.unpack_from(data, a)
        if alen < NLATTR.size or a + alen > stride:
            return None
        if atype & NLA_TYPE_MASK == INET_DIAG_INFO:
            if alen < TCP_INFO_ATTR_MIN:
                return None  # shorter than the prefix we read: decode one by one (tcp_info=None)
            header, info_at = struct.unpack_from("=I", data, a)[0], a + NLATTR.size
        a += (alen + 3) & ~3
    return (header, info_at) if a == stride else None


def _decode_same_length(view: memoryview, mlen: int, out: list[Socket]) -> int:
    """Decode messages of one (odd) length one by one; returns how many could not be represented."""
    cache, skipped = DecodeCache(), 0
    for off in range(0, len(view), mlen):
        sock = _socket_from(view, off, off + mlen, cache)
        if sock is None:
            skipped += 1
        else:
            out.append(sock)
    return skipped
