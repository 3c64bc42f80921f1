"""Netlink framing for sock_diag dumps: message headers, error replies, and the one framing loop.

`struct nlmsghdr` (include/uapi/linux/netlink.h): len u32, type u16, flags u16, seq u32, pid u32, host
byte order; messages are 4-byte aligned (NLMSG_ALIGN). `struct nlattr`: len u16, type u16, also aligned
to 4. NLMSG_ERROR and NLMSG_DONE carry a negative errno first (0 for an ACK or a clean DONE).

Both sock_diag decoders (sockdiag_msg: one message at a time; sockdiag_bulk: columns) walk messages
through `walk_messages`, so the framing checks, the error replies and NLM_F_DUMP_INTR live here only.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from tcpwatchd.errors import ParseError

SOCK_DIAG_BY_FAMILY = 20  # linux/sock_diag.h
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3  # linux/netlink.h
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10  # the table changed during the dump: the result may miss or repeat sockets
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER (linux/netlink.h)

NLMSGHDR = struct.Struct("=IHHII")
NLATTR = struct.Struct("=HH")
ERRNO = struct.Struct("=i")


class NetlinkError(OSError):
    """The kernel answered a sock_diag request with an error (NLMSG_ERROR, or an error in NLMSG_DONE)."""

    def __init__(self, err: int, context: str) -> None:
        super().__init__(err, f"sock_diag {context}: {os.strerror(err)}")


@dataclass(slots=True)
class Cursor:
    """Where a walk over one buffer of a dump stands, and what its headers said so far."""

    off: int = 0
    done: bool = False  # NLMSG_DONE seen: the dump is complete
    interrupted: bool = False  # some message had NLM_F_DUMP_INTR


def walk_messages(
    data: bytes | memoryview, cursor: Cursor, on_diag: Callable[[int, int], object], limit: int = -1
) -> None:
    """Walk whole messages from `cursor.off`: `on_diag(offset, end)` for each SOCK_DIAG_BY_FAMILY one.

    Stops at the end of `data`, after NLMSG_DONE (`cursor.done`), or after `limit` messages (-1: no
    limit); `cursor.off` is left on the first message not walked. Raises NetlinkError for an error reply,
    ParseError (line_no = byte offset) for a length that breaks the framing.

    >>> c = Cursor()
    >>> walk_messages(NLMSGHDR.pack(20, NLMSG_DONE, NLM_F_MULTI, 1, 0) + ERRNO.pack(0), c, print)
    >>> c
    Cursor(off=0, done=True, interrupted=False)
    """
    end, off, flags, walked = len(data), cursor.off, 0, 0
    hdr = NLMSGHDR.unpack_from
    while off + 16 <= end and walked != limit:
        mlen, mtype, mflags, _seq, _pid = hdr(data, off)
        if mlen < 16 or off + mlen > end:
            raise ParseError("netlink sock_diag", off, f"message length {mlen} at offset {off} of {end}")
        flags |= mflags
        if mtype == SOCK_DIAG_BY_FAMILY:
            on_diag(off, off + mlen)
        elif mtype == NLMSG_DONE:
            raise_for_errno(data, off, mlen, "dump")
            cursor.done = True
            break
        elif mtype == NLMSG_ERROR:
            raise_for_errno(data, off, mlen, "request")
        off += (mlen + 3) & ~3
        walked += 1
    cursor.off = off
    if flags & NLM_F_DUMP_INTR:
        cursor.interrupted = True


def raise_for_errno(data: bytes | memoryview, off: int, mlen: int, context: str) -> None:
    """Raise NetlinkError when the NLMSG_ERROR or NLMSG_DONE message at `off` carries an error."""
    if mlen < NLMSGHDR.size + ERRNO.size:
        return  # a DONE without payload (old kernels): success
    (err,) = ERRNO.unpack_from(data, off + NLMSGHDR.size)
    if err < 0:
        raise NetlinkError(-err, context)
