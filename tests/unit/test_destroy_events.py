"""Destroy events on recorded kernel messages (tests/fixtures/record_destroy.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpwatchd.model import Family, TcpState
from tcpwatchd.sources.destroy_parse import (
    TOTALS_END,
    Aggregator,
    CloseKey,
    DestroyEvent,
    Side,
    parse_destroy,
    side_of,
)
from tcpwatchd.sources.netlink import NLATTR, NLMSGHDR, NetlinkError
from tcpwatchd.sources.sockdiag_msg import DIAG_MSG_END, INET_DIAG_INFO, DecodeCache

NETLINK = Path(__file__).resolve().parents[1] / "fixtures" / "netlink"


def _messages(data: bytes) -> list[bytes]:
    out, off = [], 0
    while off < len(data):
        mlen = NLMSGHDR.unpack_from(data, off)[0]
        out.append(data[off : off + mlen])
        off += (mlen + 3) & ~3
    return out


@pytest.fixture(scope="module")
def events() -> list[DestroyEvent]:
    data = (NETLINK / "destroy_events.bin").read_bytes()
    # One recv() gives one message: decode them the way drain() does.
    cache = DecodeCache()
    return [ev for msg in _messages(data) for ev in parse_destroy(msg, cache)]


@pytest.fixture(scope="module")
def truth() -> list[tuple[str, int, str, int, int, int, bool]]:
    rows = []
    for line in (NETLINK / "destroy_events.txt").read_text().splitlines():
        la, lp, ra, rp, sent, received, dumped = line.split()
        rows.append((la, int(lp), ra, int(rp), int(sent), int(received), dumped == "1"))
    return rows


def test_every_connected_socket_has_one_event_with_its_tuple_and_totals(
    events: list[DestroyEvent], truth: list[tuple[str, int, str, int, int, int, bool]]
) -> None:
    by_tuple = {(e.local_address, e.local_port, e.remote_address, e.remote_port): e for e in events}
    assert len(events) == 11  # 8 connected sockets, a refused connect, two listeners
    for la, lp, ra, rp, sent, received, _ in truth:
        ev = by_tuple[(la, lp, ra, rp)]
        assert ev.state is TcpState.CLOSE
        assert ev.family is (Family.INET6 if ":" in la else Family.INET)
        assert ev.totals is not None
        # The SYN and a FIN take one sequence number each: +1 or +2 on what the application moved.
        assert sent + 1 <= ev.totals.bytes_acked <= sent + 2
        assert received <= ev.totals.bytes_received <= received + 1
        assert ev.totals.segs_in > 0 and ev.totals.segs_out > 0
    assert len({e.cookie for e in events}) == 11 and 0 not in {e.cookie for e in events}


def test_sockets_without_a_peer_port_are_listeners_or_failed_connects(events: list[DestroyEvent]) -> None:
    unconnected = [e for e in events if e.remote_port == 0]
    assert sorted(e.local_port for e in unconnected if e.local_port == 6379) == [6379, 6379]
    assert len(unconnected) == 3


def test_aggregate_counts_per_side_port_and_peer(
    events: list[DestroyEvent], truth: list[tuple[str, int, str, int, int, int, bool]]
) -> None:
    dumped = {(r[0], r[1], r[2], r[3]) for r in truth if r[6]}
    seen = {
        e.cookie for e in events if (e.local_address, e.local_port, e.remote_address, e.remote_port) in dumped
    }
    agg = Aggregator(listening={6379}, seen=seen, max_keys=100)
    for ev in events:
        agg.add(ev)
    batch = agg.batch(skipped=0, lost=0, overruns=0, more=False)
    accepted4 = batch.by_key[CloseKey(Side.ACCEPTED, "127.0.0.1", 6379, "127.0.0.1")]
    outgoing4 = batch.by_key[CloseKey(Side.OUTGOING, "127.0.0.1", 6379, "127.0.0.1")]
    assert (accepted4.closed, accepted4.unseen, accepted4.with_totals) == (3, 2, 3)
    assert (outgoing4.closed, outgoing4.unseen) == (3, 2)
    assert accepted4.bytes_received >= 15 and outgoing4.bytes_received >= 9
    assert batch.by_key[CloseKey(Side.ACCEPTED, "::1", 6379, "::1")].closed == 1
    assert batch.by_key[CloseKey(Side.OUTGOING, "::1", 6379, "::1")].closed == 1
    assert len(batch.by_key) == 4
    assert (batch.events, batch.unconnected, batch.overflow_keys) == (11, 3, 0)
    assert dict(batch.by_state) == {TcpState.CLOSE: 11}


def test_key_cap_sends_the_rest_to_overflow(events: list[DestroyEvent]) -> None:
    agg = Aggregator(listening={6379}, seen=(), max_keys=1)
    for ev in events:
        agg.add(ev)
    batch = agg.batch(0, 0, 0, False)
    assert len(batch.by_key) == 1
    assert batch.overflow_keys == batch.overflow.closed == 8 - 3
    assert sum(c.closed for c in batch.by_key.values()) + batch.overflow.closed + batch.unconnected == 11


def _cut_info(msg: bytes, info_len: int) -> bytes:
    """The message with its INET_DIAG_INFO payload cut to `info_len` bytes (the attribute comes last)."""
    a = DIAG_MSG_END
    while True:
        alen, atype = NLATTR.unpack_from(msg, a)
        if atype == INET_DIAG_INFO:
            body = msg[16:a] + NLATTR.pack(4 + info_len, atype) + msg[a + 4 : a + 4 + info_len]
            _mlen, mtype, flags, seq, pid = NLMSGHDR.unpack_from(msg)
            return NLMSGHDR.pack(16 + len(body), mtype, flags, seq, pid) + body
        a += (alen + 3) & ~3


@pytest.mark.parametrize(
    ("info_len", "has_totals"), [(TOTALS_END, True), (TOTALS_END - 4, False), (104, False)]
)
def test_totals_need_tcp_info_up_to_segs_in(info_len: int, has_totals: bool) -> None:
    first = _messages((NETLINK / "destroy_events.bin").read_bytes())[0]
    (ev,) = parse_destroy(_cut_info(first, info_len), DecodeCache())
    assert (ev.totals is not None) is has_totals
    assert ev.remote_port == 6379  # the rest of the event does not depend on tcp_info


def test_an_error_message_raises() -> None:
    with pytest.raises(NetlinkError):
        parse_destroy((NETLINK / "error_enoent.bin").read_bytes(), DecodeCache())


@pytest.mark.parametrize(
    ("local", "remote", "listening", "side"),
    [
        (6379, 40000, {6379}, Side.ACCEPTED),
        (40000, 6379, {6379}, Side.OUTGOING),  # a loopback client of our own listener
        (50000, 443, set(), Side.OUTGOING),  # no listener known: the lower port is the service
        (8080, 51000, set(), Side.ACCEPTED),  # its listener closed before the drain
    ],
)
def test_side(local: int, remote: int, listening: set[int], side: Side) -> None:
    assert side_of(local, remote, listening) is side
