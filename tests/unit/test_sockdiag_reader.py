"""SockDiagReader on recorded replies: dumps over many receive buffers, and buffers reused across dumps.

The reader gets its replies through a real socket (an AF_UNIX datagram pair; `open_socket` is the seam
sources.nsdiag uses too), fed the recorded netlink messages in datagrams as the kernel sends them: whole
messages, at most a few KiB each, NLMSG_DONE with the last ones.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tcpwatchd.columns import COLUMNS, ObjectPart
from tcpwatchd.sources.sockdiag import SockDiagReader
from tcpwatchd.sources.sockdiag_buffers import BufferPool
from tcpwatchd.sources.sockdiag_compact import CompactPart
from tcpwatchd.sources.sockdiag_msg import parse_sockdiag
from tcpwatchd.table import SocketTable
from tests.unit.test_sockdiag_bulk import DONE, load, messages
from tests.unit.test_sockdiag_compact import V4, V6, cookie_above_32_bits, dump_of

Replies = Callable[[dict[int, bytes], int], Callable[[int], socket.socket]]


def datagrams(data: bytes, limit: int) -> Iterator[bytes]:
    """Whole messages, grouped into datagrams of at most `limit` bytes."""
    group = b""
    for msg in messages(data):
        if group and len(group) + len(msg) > limit:
            yield group
            group = b""
        group += msg
    yield group


@pytest.fixture
def replies() -> Iterator[Replies]:
    """`replies({family: dump}, limit)`: an open_socket for SockDiagReader that answers from `dump`."""
    peers: list[socket.socket] = []

    def make(dumps: dict[int, bytes], limit: int) -> Callable[[int], socket.socket]:
        def open_socket(family: int) -> socket.socket:
            ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            peers.extend((ours, kernel))
            kernel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            kernel.setblocking(False)  # a full queue fails the test instead of hanging it
            for datagram in datagrams(dumps[family], limit):
                kernel.send(datagram)
            ours.settimeout(5)
            return ours

        return open_socket

    yield make
    for sock in peers:
        sock.close()


def rows(table: SocketTable) -> Counter[tuple[Any, ...]]:
    """Every row's every column: two tables with equal rows in any order compare equal."""
    names = sorted(COLUMNS)
    return Counter(zip(*(table.column(name) for name in names), strict=True))


def dumped(replies: Replies, dumps: dict[int, bytes], pool: BufferPool, limit: int = 4096) -> SocketTable:
    reader = SockDiagReader(open_socket=replies(dumps, limit), parallel=len(dumps) == 2, pool=pool)
    result = reader.dump(tuple(dumps))
    assert result.skipped == 0 and result.notes == ()
    return result.sockets


BOTH = {socket.AF_INET: dump_of(V4, (), 30), socket.AF_INET6: dump_of(V6, (), 60)}


def test_a_dump_over_many_small_buffers_gives_the_table_of_one_buffer(replies: Replies) -> None:
    """265 KB of IPv4 and 123 KB of IPv6 replies through 32 KiB buffers (IPv6 on its helper thread)
    against one 1 MiB buffer: the same rows, one part per layout either way, none a view of a buffer."""
    small = dumped(replies, BOTH, BufferPool(chunk=32 << 10, recv=4 << 10))
    large = dumped(replies, BOTH, BufferPool(chunk=1 << 20, recv=64 << 10))
    reference = [
        *parse_sockdiag(BOTH[socket.AF_INET]).sockets,
        *parse_sockdiag(BOTH[socket.AF_INET6]).sockets,
    ]
    assert len(BOTH[socket.AF_INET]) > 5 * (32 << 10) and len(small) == len(reference) == 30 * 24 + 60 * 5
    assert rows(small) == rows(large)
    assert Counter(small) == Counter(large) == Counter(reference)
    assert len(small.parts) == len(large.parts) == 3  # IPv4 with tcp_info, IPv4 TIME_WAIT, IPv6
    assert all(isinstance(p, CompactPart) for p in small.parts)


def test_a_buffer_is_reused_and_the_first_table_keeps_its_values(replies: Replies) -> None:
    """The second dump overwrites the buffer the first was received into; the first table, read only
    afterwards, still has its own rows: nothing in it refers to the buffer."""
    pool = BufferPool(chunk=32 << 10, recv=4 << 10, keep=1)
    with pool.buffer() as buffer:
        pass  # the one buffer both dumps will use
    first_dump = dump_of(V4, (), 10)
    second_dump = dump_of(V4, (cookie_above_32_bits,), 10)
    first = dumped(replies, {socket.AF_INET: first_dump}, pool)
    assert struct.unpack_from("=I", buffer, 64)[0] == 0  # idiag_cookie[1] of the first message it holds
    second = dumped(replies, {socket.AF_INET: second_dump}, pool)
    assert struct.unpack_from("=I", buffer, 64)[0] == 7 and pool.idle == 1  # overwritten by the second
    assert rows(first) == rows(SocketTable.of(parse_sockdiag(first_dump).sockets))
    assert Counter(first) == Counter(parse_sockdiag(first_dump).sockets)
    assert Counter(second) == Counter(parse_sockdiag(second_dump).sockets)
    buffer.close()  # BufferError if a part or a column still exported a view of it


def test_odd_messages_come_through_the_reader_as_decoded_sockets(replies: Replies) -> None:
    data = load("tcp_info_truncated.bin")
    table = dumped(replies, {socket.AF_INET: data}, BufferPool(chunk=16 << 10, recv=4 << 10))
    assert list(table) == list(parse_sockdiag(data).sockets)
    assert any(isinstance(p, ObjectPart) for p in table.parts)


def test_concurrent_dumps_never_share_a_buffer_and_idle_ones_are_bounded() -> None:
    pool = BufferPool(chunk=1 << 16, recv=1 << 12, keep=2)
    with pool.buffer():
        pass
    assert pool.idle == 1
    with pool.buffer() as a, pool.buffer() as b, pool.buffer() as c:
        assert len({id(a), id(b), id(c)}) == 3 and pool.idle == 0
    assert pool.idle == 2
    with pool.buffer() as again:
        assert again is c or again is b  # an idle one, not a new map
    with pytest.raises(ValueError):
        BufferPool(chunk=1 << 12, recv=1 << 16)


def test_a_dump_that_ends_on_a_lone_done_reply(replies: Replies) -> None:
    """NLMSG_DONE in a datagram of its own, right after a buffer filled up."""
    body = dump_of(V4, (), 3)[: -len(DONE)]
    pool = BufferPool(chunk=len(body) + 64, recv=len(body))
    open_socket = replies({socket.AF_INET: body + DONE}, len(body))
    table = SockDiagReader(open_socket=open_socket, parallel=False, pool=pool).dump((socket.AF_INET,)).sockets
    assert Counter(table) == Counter(parse_sockdiag(body + DONE).sockets)
