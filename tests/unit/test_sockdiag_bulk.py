"""The bulk (columnar) sock_diag decoder against the message-by-message one, on recorded dumps."""

from __future__ import annotations

import errno
import socket
import struct
from array import array
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from tcpwatchd.columns import COLUMNS, ObjectPart
from tcpwatchd.errors import ParseError
from tcpwatchd.model import Socket
from tcpwatchd.sources.netlink import NLMSGHDR, NetlinkError
from tcpwatchd.sources.sockdiag_bulk import parse_bulk
from tcpwatchd.sources.sockdiag_columns import AddressCache, RawPart
from tcpwatchd.sources.sockdiag_compact import Compactor
from tcpwatchd.sources.sockdiag_msg import parse_sockdiag
from tcpwatchd.table import SocketTable

NETLINK = Path(__file__).resolve().parents[1] / "fixtures" / "netlink"
FAMILY = {"population_inet4.bin": socket.AF_INET, "population_inet6.bin": socket.AF_INET6}
DONE = (NETLINK / "done_ok.bin").read_bytes()


def load(name: str) -> bytes:
    return (NETLINK / name).read_bytes()


def messages(data: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(data):
        mlen = NLMSGHDR.unpack_from(data, off)[0]
        out.append(data[off : off + mlen])
        off += (mlen + 3) & ~3
    return out


def bulk(data: bytes, family: int = socket.AF_INET) -> SocketTable:
    result = parse_bulk(memoryview(data), family, AddressCache())
    assert result.done
    return SocketTable(result.parts)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_bulk_decodes_the_same_sockets_as_the_message_decoder(name: str) -> None:
    data = load(name)
    table = bulk(data, FAMILY[name])
    assert Counter(table) == Counter(parse_sockdiag(data).sockets)


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_every_column_matches_the_sockets_it_was_cut_from(name: str) -> None:
    """The strided columns against the same rows decoded one message at a time."""
    table = bulk(load(name), FAMILY[name])
    rows = list(table)
    reference = ObjectPart(rows)
    for column in sorted(COLUMNS):
        assert list(table.column(column)) == reference.column(column), column


def test_a_run_of_equal_messages_is_one_raw_part_without_copies() -> None:
    data = load("population_inet4.bin")
    full = b"".join(m for m in messages(data) if len(m) == 408) * 2  # 42: a run long enough
    dump = full + DONE
    result = parse_bulk(memoryview(dump), socket.AF_INET, AddressCache())
    assert result.done and len(result.parts) == 1
    (part,) = result.parts
    assert isinstance(part, RawPart) and len(part) == 42 and part.info_at > 0
    assert part.data.obj is dump  # a view on the received bytes, not a copy


def test_mixed_lengths_are_grouped_and_timewait_rows_have_no_tcp_info() -> None:
    result = parse_bulk(memoryview(load("population_inet4.bin")), socket.AF_INET, AddressCache())
    assert sorted(len(p) for p in result.parts) == [3, 21]
    short = next(p for p in result.parts if len(p) == 3)
    for column in ("last_data_recv_ms", "probes", "bytes_received", "bytes_acked"):
        assert list(short.column(column)) == [-1, -1, -1], column
    assert all(s.tcp_info is None for s in (short.socket(i) for i in range(3)))


def test_long_runs_between_odd_messages_stay_views_and_the_rest_is_grouped() -> None:
    msgs = messages(load("population_inet4.bin"))
    full = [m for m in msgs if len(m) == 408]
    short = [m for m in msgs if len(m) == 96]
    dump = b"".join([*short, *full * 2, *short, *full * 3, *short]) + DONE
    result = parse_bulk(memoryview(dump), socket.AF_INET, AddressCache())
    views = [p for p in result.parts if isinstance(p, RawPart) and p.data.obj is dump]
    assert sorted(len(p) for p in views) == [42, 63]
    assert sorted(len(p) for p in result.parts if p not in views) == [9]
    assert Counter(SocketTable(result.parts)) == Counter(parse_sockdiag(dump).sockets)


def test_byte_counts_of_a_run_equal_the_message_decoder_even_above_32_bits() -> None:
    full = [bytearray(m) for m in messages(load("population_inet4.bin")) if len(m) == 408]
    struct.pack_into("=I", full[3], 128 + 120 + 4, 5)  # tcpi_bytes_acked's high word (tcp_info at 128)
    dump = b"".join(full * 2) + DONE
    (part,) = parse_bulk(memoryview(dump), socket.AF_INET, AddressCache()).parts
    assert isinstance(part, RawPart) and part.info_at == 128
    rows = list(parse_sockdiag(dump).sockets)
    assert list(part.column("bytes_acked")) == [s.tcp_info.bytes_acked for s in rows if s.tcp_info]
    assert list(part.column("bytes_received")) == [s.tcp_info.bytes_received for s in rows if s.tcp_info]
    assert list(part.column("probes")) == [s.tcp_info.probes for s in rows if s.tcp_info]
    assert part.column("bytes_acked")[3] >= 5 << 32


def test_a_run_with_a_pre_4_1_tcp_info_has_no_byte_counts() -> None:
    """tcp_info cut to its 104-byte prefix in every message of a run: probes yes, byte counts -1."""
    est = next(m for m in messages(load("population_inet4.bin")) if len(m) == 408 and m[17] == 1)
    assert struct.unpack_from("=HH", est, 124) == (4 + 280, 2)  # INET_DIAG_INFO, after 4 attributes
    cut = bytearray(est[: 124 + 4 + 104])
    struct.pack_into("=I", cut, 0, len(cut))
    struct.pack_into("=H", cut, 124, 4 + 104)
    dump = bytes(cut) * 40 + DONE
    (part,) = parse_bulk(memoryview(dump), socket.AF_INET, AddressCache()).parts
    assert isinstance(part, RawPart) and part.info_len == 104
    assert list(part.column("bytes_acked")) == list(part.column("bytes_received")) == [-1] * 40
    assert list(part.column("probes")) == [0] * 40
    assert Counter(SocketTable([part])) == Counter(parse_sockdiag(dump).sockets)


def test_a_cookie_above_32_bits_keeps_its_high_word() -> None:
    first = bytearray(messages(load("population_inet4.bin"))[0])
    struct.pack_into("=I", first, 64, 7)  # idiag_cookie[1]
    table = bulk(bytes(first) + DONE)
    low = struct.unpack_from("=I", first, 60)[0]
    assert list(table.column("key")) == [low | 7 << 32] == [table[0].cookie]


def test_odd_messages_are_decoded_one_by_one_and_counted() -> None:
    data = load("tcp_info_truncated.bin")
    result = parse_bulk(memoryview(data), socket.AF_INET, AddressCache())
    table = SocketTable(result.parts)
    reference = parse_sockdiag(data)
    assert (list(table), result.skipped) == (list(reference.sockets), reference.skipped)
    short = parse_bulk(memoryview(load("diag_msg_short.bin")), socket.AF_INET, AddressCache())
    assert (len(SocketTable(short.parts)), short.skipped) == (0, 1)


def test_errors_and_broken_framing_raise() -> None:
    with pytest.raises(NetlinkError) as refused:
        parse_bulk(memoryview(load("error_enoent.bin")), socket.AF_INET, AddressCache())
    assert refused.value.errno == errno.ENOENT
    with pytest.raises(NetlinkError):
        parse_bulk(memoryview(load("done_ebusy.bin")), socket.AF_INET, AddressCache())
    data = load("population_inet4.bin")
    with pytest.raises(ParseError):
        parse_bulk(memoryview(data[:500]), socket.AF_INET, AddressCache())


def test_without_done_the_dump_is_not_complete() -> None:
    data = load("population_inet4.bin")
    body = data[: len(data) - len(DONE)]
    assert not parse_bulk(memoryview(body), socket.AF_INET, AddressCache()).done


def test_address_texts_are_cached_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = AddressCache()
    raw = [struct.unpack("=I", socket.inet_aton(f"198.18.0.{i}"))[0] for i in range(1, 5)]
    assert cache.texts(socket.AF_INET, raw) == [f"198.18.0.{i}" for i in range(1, 5)]
    monkeypatch.setattr(AddressCache, "LIMIT", 4)
    other = struct.unpack("=I", socket.inet_aton("198.18.1.9"))[0]
    assert cache.texts(socket.AF_INET, [*raw[:2], other, other]) == [
        "198.18.0.1", "198.18.0.2", "198.18.1.9", "198.18.1.9"
    ]  # fmt: skip
    assert len(cache.v4) == 3  # over the limit: cleared, then refilled with what this dump holds


def test_rows_in_a_table_build_equal_sockets_each_time() -> None:
    table = bulk(load("population_inet6.bin"), socket.AF_INET6)
    first: Socket = table[0]
    assert first == table[0] and table[-1] == list(table)[-1]
    with pytest.raises(IndexError):
        table[len(table)]


@pytest.mark.parametrize("name", sorted(FAMILY))
@pytest.mark.parametrize("cuts", [(1,), (7, 40), (33,)])
def test_a_dump_received_into_several_buffers_decodes_to_the_same_table(
    name: str, cuts: tuple[int, ...]
) -> None:
    """The reader goes on in a new buffer when one is full; replies never straddle two."""
    msgs = messages(load(name))
    bounds = [0, *[c for c in cuts if c < len(msgs)], len(msgs)]
    chunks = [b"".join(msgs[a:b]) for a, b in pairwise(bounds)]
    cache = AddressCache()
    decoded = [parse_bulk(memoryview(chunk), FAMILY[name], cache) for chunk in chunks]
    assert [d.done for d in decoded] == [False] * (len(chunks) - 1) + [True]
    compactor = Compactor(FAMILY[name], cache)
    for d in decoded:
        compactor.add(d)
    joined = compactor.finish()
    assert joined.done and not joined.interrupted and joined.skipped == 0
    assert Counter(SocketTable(joined.parts)) == Counter(bulk(load(name), FAMILY[name]))


def test_numeric_columns_are_compact_arrays_and_join_across_parts() -> None:
    """Numbers of a dump live in arrays (no int object per row); a table of several parts joins them,
    widening where a part without tcp_info gives -1, and keeps a state column `bytes()` can read."""
    result = parse_bulk(memoryview(load("population_inet4.bin")), socket.AF_INET, AddressCache())
    table = SocketTable(result.parts)
    assert len(result.parts) == 2
    rows = list(table)
    for name, code in (("state", "B"), ("inode", "I"), ("local_port", "H"), ("last_data_recv_ms", "q")):
        column = table.column(name)
        assert isinstance(column, array) and column.typecode == code, name
        assert list(column) == ObjectPart(rows).column(name), name
    assert bytes(table.column("state")) == bytes(s.state for s in rows)
    assert -1 in table.column("last_data_recv_ms")


def test_a_released_table_keeps_its_columns_and_drops_its_buffers() -> None:
    """What the tracker reads of the previous poll (the kept columns) survives release(), and only that:
    a column read during the poll but not kept is dropped with the rest."""
    result = parse_bulk(memoryview(load("population_inet4.bin")), socket.AF_INET, AddressCache())
    table = SocketTable(result.parts)
    states = list(table.column("state"))
    table.column("rqueue")
    table.release(keep=("state", "local_address"))
    assert len(table) == len(states) and list(table.column("state")) == states
    assert len(table.column("local_address")) == len(states)
    with pytest.raises(LookupError):
        table.socket(0)
    with pytest.raises(LookupError):
        table.column("rqueue")


@pytest.mark.parametrize(
    ("offset", "value", "skipped"),
    [(17, 13, 1), (18, 9, 1), (16, socket.AF_INET6, 0), (124, 4 + 104, 0)],
    ids=["unknown state", "unknown timer", "other family", "other tcp_info header"],
)
def test_a_run_with_one_odd_message_is_decoded_one_by_one(offset: int, value: int, skipped: int) -> None:
    """One message of a run that a RawPart could not represent sends the run to the message decoder,
    which skips what it cannot represent and reads the rest as it always does."""
    full = [bytearray(m) for m in messages(load("population_inet4.bin")) * 2 if len(m) == 408]
    struct.pack_into("=H" if offset == 124 else "=B", full[5], offset, value)
    dump = b"".join(full) + DONE
    result = parse_bulk(memoryview(dump), socket.AF_INET, AddressCache())
    assert not any(isinstance(p, RawPart) for p in result.parts) and result.skipped == skipped
    reference = parse_sockdiag(dump)
    assert Counter(SocketTable(result.parts)) == Counter(reference.sockets) and reference.skipped == skipped
