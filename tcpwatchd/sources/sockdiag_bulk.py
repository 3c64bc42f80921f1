"""Columnar decoder for sock_diag dumps: a whole dump into table parts, what every poll of the daemon uses.

Every full socket of a family carries the same attributes in the same order, so a dump is mostly one
run of equal-length messages. Such a run becomes a `RawPart` (sockdiag_columns) over the received bytes
themselves, found by reading only the message headers, strided, in C (the reader then copies its
fields into a `CompactPart`, sockdiag_compact, before it receives into the same buffer again). Messages
of other lengths (TIME_WAIT and request sockets, a socket with an extra attribute) are walked one by one
by netlink.walk_messages (the framing loop the per-message decoder uses too), copied into one buffer per
length, and decoded the same way, or message by message when that length cannot be a RawPart.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from itertools import compress, count
from typing import Any

from tcpwatchd.columns import ObjectPart, Values
from tcpwatchd.model import Socket
from tcpwatchd.sources.codes import STATE_OF, TIMER_OF
from tcpwatchd.sources.netlink import (
    NLA_TYPE_MASK,
    NLATTR,
    NLM_F_DUMP_INTR,
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    Cursor,
    walk_messages,
)
from tcpwatchd.sources.sockdiag_columns import AddressCache, RawPart, all_equal
from tcpwatchd.sources.sockdiag_msg import (
    DIAG_MSG_END,
    INET_DIAG_INFO,
    TCP_INFO_ATTR_MIN,
    DecodeCache,
    socket_from,
)


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
            off = walk.cursor.off
            part = _raw_part(data[off : off + run * walk.stride], walk.stride, run, family, cache)
            if part is not None:
                parts.append(part)
                walk.cursor.off += run * walk.stride
                skip = 1
                continue
        # Doubling the skip bounds the cost of looking when messages of several lengths alternate.
        walk_messages(data, walk.cursor, walk.keep, max(run, skip))
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
    return BulkDump(tuple(parts), walk.cursor.done, skipped, walk.cursor.interrupted)


_MIN_RUN = 32  # shorter runs of one length are cheaper to walk message by message


class _Walk:
    """One dump: the framing cursor, runs of equal messages ahead of it, and the messages walked one by
    one, grouped by length."""

    def __init__(self, data: memoryview) -> None:
        self.data, self.end = data, len(data)
        self.cursor = Cursor()
        self.words = data[: len(data) - len(data) % 4].cast("I")
        self.halves = data[: len(data) - len(data) % 2].cast("H")
        self.stride = 0
        self.by_length: dict[int, bytearray] = {}

    def finished(self) -> bool:
        return self.cursor.done or self.cursor.off + NLMSGHDR.size > self.end

    def keep(self, off: int, mend: int) -> None:
        """Copy a message walked one by one into its length's group."""
        group = self.by_length.get(mend - off)
        if group is None:
            group = self.by_length[mend - off] = bytearray()
        group += self.data[off:mend]

    def run_length(self) -> int:
        """How many SOCK_DIAG_BY_FAMILY messages of the current message's length follow, from here.

        Only headers are read (strided, in C); a run's messages are framed by their common length, and
        the first message that differs ends the run and is left to walk_messages."""
        at = self.cursor.off
        mlen = self.stride = NLMSGHDR.unpack_from(self.data, at)[0]
        if mlen < DIAG_MSG_END or mlen % 4 or at % 4:
            return 0
        step, first = mlen // 4, at // 4
        limit = (self.end - at) // mlen
        run, window = 0, _MIN_RUN
        while run < limit:
            stop = min(limit, run + window)
            lengths = self.words[first + run * step : first + stop * step : step].tolist()
            kinds = self.halves[(at + run * mlen + 4) // 2 : (at + stop * mlen) // 2 : mlen // 2].tolist()
            good = len(lengths)
            if lengths.count(mlen) != good or kinds.count(SOCK_DIAG_BY_FAMILY) != good:
                # The first message that differs ends the run; nothing after it is read as a header.
                good = next(compress(count(), map(mlen.__ne__, lengths)), good)
                good = min(good, next(compress(count(), map(SOCK_DIAG_BY_FAMILY.__ne__, kinds)), good))
            run += good
            if good < len(lengths):
                break
            window *= 4
        if run and self._flags(at, run, mlen) & NLM_F_DUMP_INTR:
            self.cursor.interrupted = True
        return run

    def _flags(self, off: int, run: int, mlen: int) -> int:
        flags = 0
        for f in set(self.halves[(off + 6) // 2 : (off + run * mlen) // 2 : mlen // 2].tolist()):
            flags |= f
        return flags


def _raw_part(data: memoryview, stride: int, count: int, family: int, cache: AddressCache) -> RawPart | None:
    """A RawPart when every message has the first one's family, a known state and timer, and its
    INET_DIAG_INFO attribute where the first one has it; None when not (decode one by one).

    Only tcp_info is read from the attributes, so only its header needs to be at the same offset in
    every message: the run already has one length, so the attributes before it fill the same bytes."""
    layout = _attribute_layout(data, stride)
    if layout is None:
        return None
    info_header, info_at, info_len = layout
    part = RawPart(data, stride, count, family, (info_at, info_len), cache)
    if not _only(part.column("family"), bytes([family])) or not _only(part.column("state"), _STATES):
        return None
    if not _only(part.column("timer"), _TIMERS):
        return None
    if info_at >= 0 and not all_equal(part.u32(info_at - NLATTR.size), info_header):
        return None
    return part


_STATES, _TIMERS = bytes(STATE_OF), bytes(TIMER_OF)  # the numbers we know, as bytes (all below 256)


def _only(column: Values, allowed: bytes) -> bool:
    """Whether every value of a u8 column is one of `allowed` (deleting those leaves nothing; in C)."""
    return not bytes(column).translate(None, allowed)


def _attribute_layout(data: memoryview, stride: int) -> tuple[int, int, int] | None:
    """The first message's INET_DIAG_INFO header (raw u32), where its payload starts and how long it is
    ((-1, -1, 0) without one); None when its attribute chain does not fill the message exactly."""
    header, info_at, info_len, a = -1, -1, 0, DIAG_MSG_END
    while a + NLATTR.size <= stride:
        alen, atype = NLATTR.unpack_from(data, a)
        if alen < NLATTR.size or a + alen > stride:
            return None
        if atype & NLA_TYPE_MASK == INET_DIAG_INFO:
            if alen < TCP_INFO_ATTR_MIN:
                return None  # shorter than the prefix we read: decode one by one (tcp_info=None)
            header = struct.unpack_from("=I", data, a)[0]
            info_at, info_len = a + NLATTR.size, alen - NLATTR.size
        a += (alen + 3) & ~3
    return (header, info_at, info_len) if a == stride else None


def _decode_same_length(view: memoryview, mlen: int, out: list[Socket]) -> int:
    """Decode messages of one (odd) length one by one; returns how many could not be represented.

    Not a framing loop: the group was framed when its messages were copied here, and a length that is
    not a multiple of 4 was copied without its padding, so the stride is `mlen` itself."""
    cache, skipped = DecodeCache(), 0
    for off in range(0, len(view), mlen):
        sock = socket_from(view, off, off + mlen, cache)
        if sock is None:
            skipped += 1
        else:
            out.append(sock)
    return skipped
