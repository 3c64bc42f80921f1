"""Columns of a run of equal sock_diag messages: `RawPart`, what the reader compacts into table parts.

A run's messages share one length and one attribute layout, so a field sits at the same offset in every
message: the run copied once into an array of u32 words and sliced with the message length as its step
yields that field of every message as a compact column, in C, with no per-socket Python loop and no int
object per value (1 to 8 bytes a row: a column of 100k u32 values is 400 KB, not the 3.6 MB a list of
ints takes). Offsets are those of `struct inet_diag_msg` after the 16-byte nlmsghdr (see sockdiag_msg
for the layout) and of `struct tcp_info` within the INET_DIAG_INFO payload. sockdiag_bulk finds the runs
and builds the parts; sockdiag_compact copies them out of the receive buffer (`CompactPart`).
"""

from __future__ import annotations

import socket
import struct
import sys
from array import array
from collections.abc import Collection, Sequence
from typing import Any

from tcpwatchd.columns import KeptPart, Values
from tcpwatchd.errors import ParseError
from tcpwatchd.model import Socket, header_retransmits
from tcpwatchd.sources.netlink import NLATTR
from tcpwatchd.sources.sockdiag_msg import (
    TCP_INFO_BYTES_ATTR_MIN,
    TCPI_BYTES_ACKED,
    TCPI_BYTES_RECEIVED,
    TCPI_LAST_ACK_RECV,
    TCPI_LAST_DATA_RECV,
    TCPI_PROBES,
    TCPI_RETRANSMITS,
    DecodeCache,
    socket_from,
)

# inet_diag_msg fields, as byte offsets from the start of the netlink message.
_RAW_U8 = {"family": 16, "state": 17, "timer": 18, "retrans": 19}
_RAW_U32 = {"expires": 68, "rqueue": 72, "wqueue": 76, "uid": 80, "inode": 84}
_TCPI_U32 = {"last_data_recv_ms": TCPI_LAST_DATA_RECV, "last_ack_recv_ms": TCPI_LAST_ACK_RECV}
_TCPI_U64 = {"bytes_acked": TCPI_BYTES_ACKED, "bytes_received": TCPI_BYTES_RECEIVED}


class AddressCache:
    """Raw address -> text, kept across polls (a host's set of addresses changes slowly); bounded."""

    __slots__ = ("v4", "v6")
    LIMIT = 1 << 18

    def __init__(self) -> None:
        self.v4: dict[int, str] = {}
        self.v6: dict[tuple[int, int, int, int], str] = {}

    def texts(self, family: int, raw: Sequence[Any]) -> list[str]:
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

    def text(self, family: int, raw: Any) -> str:
        """One address: a u32 (IPv4) or a tuple of four (IPv6), as `texts` reads them."""
        names: dict[Any, str] = self.v4 if family == socket.AF_INET else self.v6
        found = names.get(raw)
        return found if found is not None else self.texts(family, (raw,))[0]


def _pack_v4(value: int) -> bytes:
    return struct.pack("=I", value)


def _pack_v6(value: tuple[int, int, int, int]) -> bytes:
    return struct.pack("=4I", *value)


class RawPart:
    """`count` sock_diag messages of `stride` bytes each, back to back in `data`, all of one family and
    one attribute layout; `info_at` is the tcp_info payload's offset in a message (-1: none) and
    `info_len` its length in bytes."""

    __slots__ = (
        "_cache", "_columns", "_decode", "_quads", "_words",
        "count", "data", "family", "info_at", "info_len", "stride",
    )  # fmt: skip

    def __init__(
        self,
        data: memoryview,
        stride: int,
        count: int,
        family: int,
        info: tuple[int, int],
        cache: AddressCache,
    ) -> None:
        self.data, self.stride, self.count, self.family = data, stride, count, family
        self.info_at, self.info_len = info
        self._cache = cache
        self._columns: dict[str, Values] = {}
        self._words: array[int] | None = None
        self._quads: dict[int, bytes] = {}  # word offset -> that word of every message, for u8()
        self._decode: DecodeCache | None = None

    def __len__(self) -> int:
        return self.count

    def socket(self, i: int) -> Socket:
        if self._decode is None:
            self._decode = DecodeCache()
        off = i * self.stride
        sock = socket_from(self.data, off, off + self.stride, self._decode)
        if sock is None:  # validated when the part was built; a failure here is a bug
            raise ParseError("netlink sock_diag", off, "message no longer decodes")
        return sock

    def column(self, name: str) -> Values:
        """One field of every message, in order: an `array` for numbers, a list of str for addresses
        (memoised: the caller must not mutate it)."""
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = self._extract(name)
        return col

    def retained(self, names: Collection[str]) -> KeptPart:
        """The columns `names`, built now: the part over the received bytes is not kept."""
        return KeptPart({name: self.column(name) for name in names}, self.count)

    def _extract(self, name: str) -> Values:
        if name in _RAW_U32:
            return self.u32(_RAW_U32[name])
        if name in _RAW_U8:
            return self.u8(_RAW_U8[name])
        if name in ("local_port", "remote_port"):
            return self._be16(20 if name == "local_port" else 22)
        if name in ("local_address", "remote_address"):
            return self._address(24 if name == "local_address" else 40)
        if name == "key":
            return self._u64(60)  # idiag_cookie[2]
        if name == "netns":  # a dump of the namespace tcpwatchd runs in (see model.Socket.netns)
            return array("B", bytes(self.count))
        if name == "retransmits" and self.info_at < 0:
            return array("B", map(header_retransmits, self.u8(19), self.u8(18)))
        return self._tcp_info(name)

    def _tcp_info(self, name: str) -> Values:
        """A tcp_info column; -1 for every row when the messages carry no tcp_info (or not that field)."""
        if name in ("retransmits", "probes"):
            rel = TCPI_RETRANSMITS if name == "retransmits" else TCPI_PROBES
            return self.u8(self.info_at + rel) if self.info_at >= 0 else self._unknown()
        if name in _TCPI_U32:
            return self.u32(self.info_at + _TCPI_U32[name]) if self.info_at >= 0 else self._unknown()
        if name in _TCPI_U64:
            if self.info_at < 0 or self.info_len < TCP_INFO_BYTES_ATTR_MIN - NLATTR.size:
                return self._unknown()
            return self._u64(self.info_at + _TCPI_U64[name])
        raise KeyError(f"no socket column {name!r}")

    def _unknown(self) -> array[int]:
        """-1 for every row (no tcp_info), one byte each."""
        return array("b", b"\xff" * self.count)

    def u8(self, off: int) -> array[int]:
        """The byte at `off` (from the start of a message) of every message."""
        quads = self._quads.get(off & ~3)
        if quads is None:  # u8 fields come in fours (inet_diag_msg's first word, tcp_info's)
            quads = self._quads[off & ~3] = self.u32(off & ~3).tobytes()
        return array("B", quads[off & 3 :: 4])

    def u32(self, off: int) -> array[int]:
        """The host-order u32 at `off` (4-byte aligned) of every message."""
        if self._words is None:
            # The messages copied once into an array (a memcpy): an array's strided slice copies in a
            # tight C loop, ~4 ns an element; a strided memoryview's tobytes goes through CPython's
            # generic PyBuffer_ToContiguous, ~10 ns an element.
            self._words = array("I")
            self._words.frombytes(self.data)
        return self._words[off // 4 :: self.stride // 4]

    def _u64(self, off: int) -> array[int]:
        """A u64 field read as two u32 words (a message is only 4-byte aligned)."""
        low, high = self.u32(off), self.u32(off + 4)
        if all_equal(high, 0):  # the usual case for cookies and byte counts: below 2**32
            return low
        words = array("I", bytes(8 * self.count))
        words[0::2], words[1::2] = (low, high) if _LITTLE_ENDIAN else (high, low)  # strided, in C
        wide = array("Q")
        wide.frombytes(words.tobytes())
        return wide

    def _be16(self, off: int) -> array[int]:
        """A big-endian u16 field (inet_diag_sockid ports), swapped in C."""
        ports = array("H")
        ports.frombytes(self.u32(off & ~3).tobytes())
        if _LITTLE_ENDIAN:
            ports.byteswap()
        return ports[(off & 3) // 2 :: 2]

    def _address(self, off: int) -> list[str]:
        if self.family == socket.AF_INET:
            raw: Sequence[Any] = self.u32(off)
        else:
            raw = list(zip(*(self.u32(off + 4 * k) for k in range(4)), strict=True))
        return self._cache.texts(self.family, raw)


_LITTLE_ENDIAN = sys.byteorder == "little"


def all_equal(values: array[int], value: int) -> bool:
    """Whether every item of `values` is `value`: compared as arrays, in C (10x faster than count())."""
    return values == array(values.typecode, [value]) * len(values)
