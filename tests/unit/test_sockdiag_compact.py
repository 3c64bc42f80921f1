"""Compact parts against the RawParts they were copied from, on recorded sock_diag dumps."""

from __future__ import annotations

import socket
import struct
from array import array
from collections import Counter
from collections.abc import Callable

import pytest

from tcpwatchd.columns import COLUMNS
from tcpwatchd.sources.sockdiag_bulk import BulkDump, parse_bulk
from tcpwatchd.sources.sockdiag_columns import AddressCache, RawPart
from tcpwatchd.sources.sockdiag_compact import INFO_FIELDS, Compactor, CompactPart
from tcpwatchd.sources.sockdiag_msg import TCP_INFO, parse_sockdiag
from tcpwatchd.table import SocketTable
from tests.unit.test_sockdiag_bulk import DONE, FAMILY, load, messages

Edit = Callable[[bytearray], None]
V4, V6 = "population_inet4.bin", "population_inet6.bin"


def info_at(msg: bytes | bytearray) -> int:
    """The tcp_info payload's offset in a recorded message (the fixtures carry it 5th, after 4 attributes)."""
    a = 88
    while struct.unpack_from("=H", msg, a + 2)[0] != 2:
        a += (struct.unpack_from("=H", msg, a)[0] + 3) & ~3
    return a + 4


def cookie_above_32_bits(msg: bytearray) -> None:
    struct.pack_into("=I", msg, 64, 7)  # idiag_cookie[1]


def bytes_acked_above_32_bits(msg: bytearray) -> None:
    if len(msg) > 96:
        struct.pack_into("=I", msg, info_at(msg) + 120 + 4, 3)


def no_byte_counts(msg: bytearray) -> None:
    """A pre-4.1 kernel: INET_DIAG_INFO shortened to the 104-byte prefix, the message to match."""
    if len(msg) > 96:
        at = info_at(msg)
        del msg[at + 104 :]
        struct.pack_into("=H", msg, at - 4, 4 + 104)
        struct.pack_into("=I", msg, 0, len(msg))


def time_wait(msg: bytearray) -> None:
    """A TIME_WAIT socket's message: inet_diag_msg alone, no attributes (so no tcp_info)."""
    del msg[88:]
    msg[17], msg[18] = 6, 3  # TCP_TIME_WAIT, timer 3 (the TIME_WAIT timer)
    struct.pack_into("=I", msg, 0, len(msg))


def dump_of(name: str, edits: tuple[Edit, ...] = (), copies: int = 1) -> bytes:
    """A recorded dump, each message edited, its messages repeated `copies` times, then DONE. Repeated,
    messages of one length come together, as in a kernel's dump: runs long enough to be RawParts."""
    out = []
    for raw in messages(load(name))[:-1]:  # the last message is NLMSG_DONE
        msg = bytearray(raw)
        for edit in edits:
            edit(msg)
        out.append(bytes(msg))
    if copies > 1:
        out.sort(key=len, reverse=True)
    return b"".join(m for m in out for _ in range(copies)) + DONE


CASES = {
    "v4": (V4, ()),
    "v4 run": (V4, (), 4),
    "v4 cookie >2**32": (V4, (cookie_above_32_bits,)),
    "v4 bytes_acked >2**32": (V4, (bytes_acked_above_32_bits,), 3),
    "v4 no byte counts": (V4, (no_byte_counts,), 3),
    "v6": (V6, ()),
    "v6 run": (V6, (), 20),
    "v6 cookie >2**32": (V6, (cookie_above_32_bits,), 8),
    "v6 bytes_acked >2**32": (V6, (bytes_acked_above_32_bits,)),
    "v6 no byte counts": (V6, (no_byte_counts,)),
    "v6 TIME_WAIT": (V6, (time_wait, cookie_above_32_bits), 8),
}


def case_dump(case: str) -> tuple[bytes, int]:
    name, edits, *copies = CASES[case]
    return dump_of(name, edits, *copies), FAMILY[name]


def compacted(part: RawPart, cache: AddressCache) -> CompactPart:
    compactor = Compactor(part.family, cache)
    compactor.add(BulkDump((part,), True, 0, False))
    (compact,) = compactor.finish().parts
    assert isinstance(compact, CompactPart)
    return compact


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_compact_part_gives_the_raw_parts_columns_and_sockets(case: str) -> None:
    data, family = case_dump(case)
    cache = AddressCache()
    raws = [p for p in parse_bulk(memoryview(data), family, cache).parts if isinstance(p, RawPart)]
    assert raws
    for raw in raws:
        compact = compacted(raw, cache)
        for name in sorted(COLUMNS):
            want, got = raw.column(name), compact.column(name)
            assert list(got) == list(want), name
            assert type(got) is type(want) and getattr(got, "typecode", "") == getattr(
                want, "typecode", ""
            ), name
        assert [compact.socket(i) for i in range(len(raw))] == [raw.socket(i) for i in range(len(raw))]


def test_the_cases_cover_what_they_say() -> None:
    """Wide cookies and byte counts, tcp_info without byte counts, rows without tcp_info: both families."""
    seen = set()
    for case in CASES:
        data, family = case_dump(case)
        for part in parse_bulk(memoryview(data), family, AddressCache()).parts:
            if isinstance(part, RawPart):
                codes = {name: getattr(part.column(name), "typecode", "") for name in ("key", "bytes_acked")}
                seen.add((family, part.info_at >= 0, part.info_len, codes["key"], codes["bytes_acked"]))
    assert {(s[0], s[3]) for s in seen} >= {(socket.AF_INET, "Q"), (socket.AF_INET6, "Q")}
    assert {(s[0], s[4]) for s in seen} >= {(socket.AF_INET, "Q"), (socket.AF_INET6, "Q")}
    assert {(s[0], s[1], s[2]) for s in seen} >= {
        (socket.AF_INET, True, 104), (socket.AF_INET6, True, 104), (socket.AF_INET, True, 280),
        (socket.AF_INET, False, 0), (socket.AF_INET6, False, 0),
    }  # fmt: skip


def test_info_field_offsets_are_those_of_the_tcp_info_struct() -> None:
    """Each (offset, size) of INFO_FIELDS holds the value TCP_INFO (TcpInfo's field order) unpacks there."""
    assert len(INFO_FIELDS) == len(TCP_INFO.unpack(bytes(TCP_INFO.size)))
    for k, (name, off, size) in enumerate(INFO_FIELDS):
        payload = bytearray(TCP_INFO.size)
        struct.pack_into("=B" if size == 1 else "=I", payload, off, 200 + k)
        values = TCP_INFO.unpack(payload)
        assert values[k] == 200 + k and values.count(0) == len(values) - 1, name


def test_buffers_of_one_dump_are_appended_to_one_part_per_layout() -> None:
    """Row order within a layout follows the dump; u64 columns widen where a narrow and a wide buffer meet."""
    narrow, wide = dump_of(V4, (), 2), dump_of(V4, (cookie_above_32_bits, bytes_acked_above_32_bits), 2)
    buffers = (narrow[: -len(DONE)], wide[: -len(DONE)], narrow)
    cache = AddressCache()
    compactor = Compactor(socket.AF_INET, cache)
    for data in buffers:
        compactor.add(parse_bulk(memoryview(data), socket.AF_INET, cache))
    merged = compactor.finish()
    assert merged.done and len(merged.parts) == 2  # with tcp_info (408 bytes), and TIME_WAIT (96)
    full = next(p for p in merged.parts if isinstance(p, CompactPart) and p.info)
    keys = full.column("key")
    assert isinstance(keys, array) and keys.typecode == "Q" and len(keys) == 3 * 2 * 21
    reference = parse_sockdiag(b"".join(buffers)).sockets
    assert list(keys) == [s.cookie for s in reference if s.tcp_info]
    acked = [s.tcp_info.bytes_acked for s in reference if s.tcp_info]
    assert list(full.column("bytes_acked")) == acked and max(acked) >= 3 << 32
    assert Counter(SocketTable(merged.parts)) == Counter(reference)


def test_odd_messages_stay_decoded_sockets() -> None:
    data = load("tcp_info_truncated.bin")
    cache = AddressCache()
    compactor = Compactor(socket.AF_INET, cache)
    compactor.add(parse_bulk(memoryview(data), socket.AF_INET, cache))
    result = compactor.finish()
    reference = parse_sockdiag(data)
    assert (list(SocketTable(result.parts)), result.skipped) == (list(reference.sockets), reference.skipped)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_released_compact_table_gives_its_kept_columns_and_nothing_else(case: str) -> None:
    """release() slims each compact part to the kept columns' arrays; addresses (kept raw) are named only
    when read, and equal what the part gave before."""
    data, family = case_dump(case)
    cache = AddressCache()
    parts = [
        compacted(p, cache)
        for p in parse_bulk(memoryview(data), family, cache).parts
        if isinstance(p, RawPart)
    ]
    table = SocketTable(parts)
    keep = ("key", "state", "inode", "netns", "family", "local_address", "local_port", "remote_address")
    before = {name: list(table.column(name)) for name in (*keep, "rqueue", "retransmits")}
    table.release(keep=keep)
    assert {name: list(table.column(name)) for name in keep} == {name: before[name] for name in keep}
    for name in ("rqueue", "retransmits", "remote_port"):
        with pytest.raises(LookupError):
            table.column(name)
