"""Compact table parts: a dump's sockets copied out of the receive buffer, so that the buffer can be reused.

A `RawPart` (sockdiag_columns) is a view over the bytes the kernel wrote, ~408 bytes a socket with tcp_info,
and keeps the whole buffer resident for as long as a table holds it. As soon as a receive buffer has been
decoded, `Compactor` copies every field a `Socket` is built from out of its RawParts into compact arrays,
strided, in C, as RawPart cuts a column (about 90 bytes a socket with tcp_info, 115 for IPv6), and appends
the RawParts of one layout (tcp_info or not; its byte counts or not) to the same arrays, buffer after
buffer. A `CompactPart` then gives the same columns and builds the same `Socket`s as its RawParts did.

    >>> import socket
    >>> compactor = Compactor(socket.AF_INET, AddressCache())
    >>> compactor.finish().parts  # a dump with no sockets: no part
    ()
"""

from __future__ import annotations

import socket
from array import array
from collections.abc import Collection, Sequence
from typing import Any, cast

from tcpwatchd.columns import Values
from tcpwatchd.frozen import frozen_builder
from tcpwatchd.model import Socket, TcpInfo, header_retransmits
from tcpwatchd.sources.codes import FAMILY_OF, STATE_OF, TIMER_OF
from tcpwatchd.sources.netlink import NLATTR
from tcpwatchd.sources.sockdiag_bulk import BulkDump
from tcpwatchd.sources.sockdiag_columns import AddressCache, RawPart
from tcpwatchd.sources.sockdiag_msg import (
    TCP_INFO_BYTES_ATTR_MIN,
    TCPI_LAST_ACK_RECV,
    TCPI_LAST_DATA_RECV,
    TCPI_PROBES,
    TCPI_RETRANSMITS,
)

_new_socket = frozen_builder(Socket)
_new_tcp_info = frozen_builder(TcpInfo)

# Table columns every socket has, cut by RawPart.column itself (so their values and types are its own).
_HEADER = (
    "family", "state", "timer", "retrans", "local_port", "remote_port",
    "expires", "rqueue", "wqueue", "uid", "inode", "key",
)  # fmt: skip
# struct tcp_info fields a TcpInfo holds, in its field order: (name, offset in tcp_info, bytes). The four
# table columns among them keep their column names; the others are read only to build a Socket.
INFO_FIELDS = (
    ("retransmits", TCPI_RETRANSMITS, 1),
    ("probes", TCPI_PROBES, 1),
    ("tcpi_backoff", 4, 1),
    ("tcpi_rto", 8, 4),
    ("tcpi_unacked", 24, 4),
    ("tcpi_lost", 32, 4),
    ("tcpi_retrans", 36, 4),
    ("tcpi_last_data_sent", 44, 4),
    ("last_data_recv_ms", TCPI_LAST_DATA_RECV, 4),
    ("last_ack_recv_ms", TCPI_LAST_ACK_RECV, 4),
    ("tcpi_rtt", 68, 4),
    ("tcpi_rttvar", 72, 4),
    ("tcpi_total_retrans", 100, 4),
)
_BYTE_COUNTS = ("bytes_acked", "bytes_received")  # u64s after the prefix, since Linux 4.1
_TCP_INFO_COLUMNS = frozenset(
    {"retransmits", "probes", "last_data_recv_ms", "last_ack_recv_ms", *_BYTE_COUNTS}
)
# inet_diag_sockid's idiag_src and idiag_dst, as offsets in a message: 4 bytes used for IPv4, 16 for IPv6.
_ADDRESSES = {"local_address": 24, "remote_address": 40}


class CompactPart:
    """Sockets of one family and one tcp_info layout, every raw field in its own array.

    `info`: the messages carried tcp_info; `byte_counts`: with tcpi_bytes_acked/received (Linux 4.1+).
    Numeric columns are the stored arrays themselves (read-only, as every column); addresses are kept raw
    (one u32 a row for IPv4, four for IPv6) and named through the reader's AddressCache when read.
    """

    __slots__ = ("_arrays", "_cache", "_info_names", "byte_counts", "count", "family", "info")

    def __init__(
        self, family: int, layout: tuple[bool, bool], arrays: dict[str, array[int]], cache: AddressCache
    ) -> None:
        self.family = family
        self.info, self.byte_counts = layout
        self._arrays, self._cache = arrays, cache
        self.count = len(arrays["state"])
        names = [name for name, _off, _size in INFO_FIELDS] if self.info else []
        self._info_names = tuple(names + list(_BYTE_COUNTS) if self.byte_counts else names)

    def __len__(self) -> int:
        return self.count

    def column(self, name: str) -> Values:
        """What RawPart.column(name) gave for these rows, in the same order."""
        stored = self._arrays.get(name)
        if stored is not None:
            return stored
        if name in _ADDRESSES:
            return self._cache.texts(self.family, self._raw_addresses(name))
        if name == "netns":  # a dump of the namespace tcpwatchd runs in (see model.Socket.netns)
            return array("B", bytes(self.count))
        if name == "retransmits":  # no tcp_info: the header's count, as RawPart reads it
            return array("B", map(header_retransmits, self._arrays["retrans"], self._arrays["timer"]))
        if name in _TCP_INFO_COLUMNS:
            return array("b", b"\xff" * self.count)  # -1: not in these messages
        raise KeyError(f"no socket column {name!r}")

    def socket(self, i: int) -> Socket:
        c = self._arrays
        info = _new_tcp_info(*(c[name][i] for name in self._info_names)) if self.info else None
        return _new_socket(
            FAMILY_OF[c["family"][i]], STATE_OF[c["state"][i]],
            self._address(i, "local_address"), c["local_port"][i],
            self._address(i, "remote_address"), c["remote_port"][i],
            c["rqueue"][i], c["wqueue"][i], c["uid"][i], c["inode"][i],
            TIMER_OF[c["timer"][i]], c["expires"][i], c["retrans"][i], c["key"][i], info,
        )  # fmt: skip

    def retained(self, names: Collection[str]) -> CompactPart:
        """A part that gives only the columns `names` (what a released table keeps, see
        SocketTable.release): it shares their arrays, so the rest can be freed, and names addresses only
        if they are read again (rarely: a change of socket source)."""
        kept = {"state": self._arrays["state"]}
        for name in names:
            if name in self._arrays:
                kept[name] = self._arrays[name]
            elif name in _ADDRESSES:
                kept.update(
                    {f"{name}.{k}": self._arrays[f"{name}.{k}"] for k in range(_word_count(self.family))}
                )
            elif name == "retransmits" and not self.info:
                kept.update(retrans=self._arrays["retrans"], timer=self._arrays["timer"])
        return CompactPart(self.family, (self.info, self.byte_counts), kept, self._cache)

    def _words(self, name: str) -> list[array[int]]:
        return [self._arrays[f"{name}.{k}"] for k in range(_word_count(self.family))]

    def _raw_addresses(self, name: str) -> Sequence[Any]:
        words = self._words(name)
        return words[0] if len(words) == 1 else list(zip(*words, strict=True))

    def _address(self, i: int, name: str) -> str:
        words = self._words(name)
        raw = words[0][i] if len(words) == 1 else tuple(w[i] for w in words)
        return self._cache.text(self.family, raw)


class Compactor:
    """One family's dump, compacted receive buffer by receive buffer: `add` each buffer's decoding (then
    the buffer may be reused: nothing added keeps a view of it), `finish` once for the parts."""

    def __init__(self, family: int, cache: AddressCache) -> None:
        self.family, self._cache = family, cache
        self._layouts: dict[tuple[bool, bool], dict[str, array[int]]] = {}
        self._others: list[Any] = []  # parts that are not views of a buffer (ObjectPart)
        self._done, self._skipped, self._interrupted = False, 0, False

    def add(self, dump: BulkDump) -> None:
        for part in dump.parts:
            if isinstance(part, RawPart):
                self._append(part)
            else:
                self._others.append(part)
        self._done = dump.done  # only the last buffer of a dump holds NLMSG_DONE
        self._skipped += dump.skipped
        self._interrupted = self._interrupted or dump.interrupted

    def finish(self) -> BulkDump:
        parts = [CompactPart(self.family, key, arrays, self._cache) for key, arrays in self._layouts.items()]
        return BulkDump((*parts, *self._others), self._done, self._skipped, self._interrupted)

    def _append(self, raw: RawPart) -> None:
        info = raw.info_at >= 0
        byte_counts = info and raw.info_len >= TCP_INFO_BYTES_ATTR_MIN - NLATTR.size
        arrays = self._layouts.setdefault((info, byte_counts), {})
        for name in _HEADER:
            _extend(arrays, name, raw.column(name))
        for name, off in _ADDRESSES.items():
            for k in range(_word_count(self.family)):
                _extend(arrays, f"{name}.{k}", raw.u32(off + 4 * k))
        if info:
            for name, off, size in INFO_FIELDS:
                if name in _TCP_INFO_COLUMNS:
                    _extend(arrays, name, raw.column(name))
                else:
                    _extend(arrays, name, (raw.u8 if size == 1 else raw.u32)(raw.info_at + off))
        if byte_counts:
            for name in _BYTE_COUNTS:
                _extend(arrays, name, raw.column(name))


def _word_count(family: int) -> int:
    return 4 if family == socket.AF_INET6 else 1  # 16 address bytes, or 4


def _extend(arrays: dict[str, array[int]], name: str, column: Values) -> None:
    """Append `column` to the array `name`. A u64 column comes as u32s ("I") while every value of a
    buffer fits, else as u64s ("Q"): the two are widened to "Q" where they meet, rarely."""
    values = cast("array[int]", column)  # RawPart gives arrays for every column but addresses
    have = arrays.get(name)
    if have is None:
        arrays[name] = array(values.typecode, values)  # a copy: `values` may be memoised in the RawPart
    elif have.typecode == values.typecode:
        have.extend(values)
    elif have.typecode == "I":
        arrays[name] = wide = array("Q", have)
        wide.extend(values)
    else:
        have.extend(array("Q", values))
