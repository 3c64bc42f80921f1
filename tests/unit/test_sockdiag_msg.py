"""The sock_diag decoder on recorded dumps (tests/fixtures/record_netlink.py) and hand-made messages."""

from __future__ import annotations

import dataclasses
import errno
import socket
import struct
import sys
from collections import Counter
from pathlib import Path

import pytest

from tcpwatchd.errors import ParseError
from tcpwatchd.frozen import frozen_builder
from tcpwatchd.model import Family, Socket, TcpInfo, TcpState, TimerKind
from tcpwatchd.sources import sockdiag
from tcpwatchd.sources.netlink import NLMSGHDR, NetlinkError
from tcpwatchd.sources.procnet import read_net_tcp
from tcpwatchd.sources.sockdiag import request_bytes
from tcpwatchd.sources.sockdiag_msg import (
    TCP_INFO,
    TCP_INFO_BYTES,
    TCPI_BYTES_ACKED,
    TCPI_BYTES_RECEIVED,
    TCPI_LAST_ACK_RECV,
    TCPI_LAST_DATA_RECV,
    TCPI_PROBES,
    TCPI_RETRANSMITS,
    DecodeCache,
    decode_into,
    parse_sockdiag,
)
from tests.support.population_sources import EXPECTED, KEEPALIVE_OFF, KEEPALIVE_ON

NETLINK = Path(__file__).resolve().parents[1] / "fixtures" / "netlink"
POPULATION_PROC = NETLINK.parent / "proc" / "population"
# The recording ran the population with --persist: a receiver that never reads, and a closed sender.
PERSIST = (
    ("LISTEN", "127.0.0.1:5007", "0.0.0.0:0", 0),
    ("ESTABLISHED", "127.0.0.1:5007", "127.0.0.1:6012", 4096),
    ("FIN_WAIT1", "127.0.0.1:6012", "127.0.0.1:5007", 0),
)


def load(name: str) -> bytes:
    return (NETLINK / name).read_bytes()


def population() -> tuple[Socket, ...]:
    v4, v6 = parse_sockdiag(load("population_inet4.bin")), parse_sockdiag(load("population_inet6.bin"))
    assert v4.done and v6.done
    return v4.sockets + v6.sockets


def by_endpoints(sockets: tuple[Socket, ...]) -> dict[tuple[str, str], Socket]:
    return {(s.local, s.remote): s for s in sockets}


def summary(sockets: tuple[Socket, ...]) -> Counter[tuple[str, str, str, int]]:
    return Counter((s.state.name, s.local, s.remote, s.rqueue) for s in sockets)


def test_recorded_population_decodes_to_the_known_sockets() -> None:
    assert summary(population()) == Counter(EXPECTED + PERSIST)


def test_every_message_of_the_recording_is_a_socket() -> None:
    for name in ("population_inet4.bin", "population_inet6.bin"):
        parsed = parse_sockdiag(load(name))
        assert (parsed.skipped, parsed.interrupted) == (0, False)


@pytest.mark.parametrize(
    ("local", "remote", "family", "timer", "has_info", "has_inode"),
    [
        (*KEEPALIVE_ON, Family.INET, TimerKind.KEEPALIVE, True, True),
        (*KEEPALIVE_OFF, Family.INET, TimerKind.OFF, True, True),
        ("127.0.0.1:5001", "127.0.0.1:6005", Family.INET, TimerKind.TIME_WAIT, False, False),
        (
            "127.0.0.1:6003",
            "127.0.0.1:5001",
            Family.INET,
            TimerKind.TIME_WAIT,
            False,
            False,
        ),  # orphan FIN_WAIT2
        ("127.0.0.1:6004", "127.0.0.1:5001", Family.INET, TimerKind.OFF, True, True),  # FIN_WAIT2 with a file
        ("127.0.0.1:5002", "127.0.0.1:6007", Family.INET, TimerKind.RETRANSMIT, False, False),  # request sock
        ("127.0.0.1:6009", "127.0.0.1:5003", Family.INET, TimerKind.RETRANSMIT, True, True),  # SYN_SENT
        ("127.0.0.1:5001", "127.0.0.1:6006", Family.INET, TimerKind.OFF, True, False),  # never accepted
        ("127.0.0.1:6012", "127.0.0.1:5007", Family.INET, TimerKind.ZERO_WINDOW_PROBE, True, False),
        ("127.0.0.1:5001", "0.0.0.0:0", Family.INET, TimerKind.OFF, True, True),
        ("[::1]:6010", "[::1]:5004", Family.INET6, TimerKind.OFF, True, True),
        ("[::ffff:127.0.0.1]:5005", "[::ffff:127.0.0.1]:6011", Family.INET6, TimerKind.OFF, True, True),
    ],
)
def test_socket_details(
    local: str, remote: str, family: Family, timer: TimerKind, has_info: bool, has_inode: bool
) -> None:
    sock = by_endpoints(population())[(local, remote)]
    assert sock.family is family
    assert sock.timer is timer
    assert (sock.tcp_info is not None) == has_info
    assert (sock.inode != 0) == has_inode


def test_timer_expiry_is_in_milliseconds() -> None:
    sockets = by_endpoints(population())
    assert 590_000 < sockets[KEEPALIVE_ON].timer_expires_ms <= 600_000  # TCP_KEEPIDLE 600 s
    assert 50_000 < sockets[("127.0.0.1:5001", "127.0.0.1:6005")].timer_expires_ms <= 60_000  # TIME_WAIT
    assert sockets[KEEPALIVE_OFF].timer_expires_ms == 0


def test_listener_queues_are_backlog_and_its_maximum() -> None:
    sockets = by_endpoints(population())
    listener = sockets[("127.0.0.1:5001", "0.0.0.0:0")]
    assert (listener.rqueue, listener.wqueue) == (1, 16)  # one connection never accepted; listen(16)
    assert sockets[("127.0.0.1:6012", "127.0.0.1:5007")].wqueue > 100_000  # the unsent data behind the FIN


def test_tcp_info_of_an_idle_loopback_connection() -> None:
    info = by_endpoints(population())[KEEPALIVE_ON].tcp_info
    assert info is not None
    assert info.rto_us >= 200_000  # TCP_RTO_MIN (include/net/tcp.h)
    assert 0 < info.rtt_us < 200_000
    assert (info.retransmits, info.probes, info.backoff, info.unacked, info.total_retrans) == (0, 0, 0, 0, 0)
    assert info.last_data_recv_ms > 0 and info.last_ack_recv_ms > 0


@pytest.mark.parametrize(
    ("local", "remote", "acked", "received"),
    [
        ("127.0.0.1:6002", "127.0.0.1:5001", 1001, 0),  # sent 1000 bytes; its SYN counts 1
        ("127.0.0.1:5001", "127.0.0.1:6002", 0, 1000),  # ...which the server never reads
        ("127.0.0.1:6004", "127.0.0.1:5001", 2, 0),  # SYN and FIN (shutdown(SHUT_WR)) acked
        ("127.0.0.1:5001", "127.0.0.1:6004", 0, 1),  # the FIN received
        ("[::1]:5004", "[::1]:6010", 7, 0),  # the accepting side's SYN-ACK does not count
        ("[::1]:6010", "[::1]:5004", 1, 7),
        ("127.0.0.1:6012", "127.0.0.1:5007", 4097, 0),  # the peer's window filled at 4096
        ("127.0.0.1:5007", "127.0.0.1:6012", 0, 4096),
    ],
)
def test_tcp_info_byte_counts(local: str, remote: str, acked: int, received: int) -> None:
    info = by_endpoints(population())[(local, remote)].tcp_info
    assert info is not None and (info.bytes_acked, info.bytes_received, info.probes) == (acked, received, 0)


def test_tcp_info_offsets_are_those_of_linux_uapi_tcp_h() -> None:
    """struct tcp_info: 8 u8s, then u32s from tcpi_rto (8) to tcpi_total_retrans (100), then u64s."""
    u32 = ["rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets",
           "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh",
           "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space",
           "total_retrans"]  # fmt: skip
    offset = {name: 8 + 4 * i for i, name in enumerate(u32)}
    u64 = ["pacing_rate", "max_pacing_rate", "bytes_acked", "bytes_received"]
    offset |= {name: offset["total_retrans"] + 4 + 8 * i for i, name in enumerate(u64)}
    assert (TCPI_RETRANSMITS, TCPI_PROBES) == (2, 3)
    assert (offset["last_data_recv"], offset["last_ack_recv"]) == (TCPI_LAST_DATA_RECV, TCPI_LAST_ACK_RECV)
    assert (offset["bytes_acked"], offset["bytes_received"]) == (TCPI_BYTES_ACKED, TCPI_BYTES_RECEIVED)
    assert (TCP_INFO.size, TCP_INFO_BYTES.size) == (offset["total_retrans"] + 4, offset["bytes_received"] + 8)
    # Every field the structs read sits at its header offset: mark each and read it back.
    blob = bytearray(TCP_INFO_BYTES.size)
    marks = [(2, 1, 11), (3, 1, 12), (offset["rtt"], 4, 13), (offset["total_retrans"], 4, 14),
             (TCPI_BYTES_ACKED, 8, 1 << 40), (TCPI_BYTES_RECEIVED, 8, 15)]  # fmt: skip
    for rel, width, value in marks:
        blob[rel : rel + width] = value.to_bytes(width, sys.byteorder)
    info = TcpInfo(*TCP_INFO_BYTES.unpack(bytes(blob)))
    assert (info.retransmits, info.probes, info.rtt_us, info.total_retrans) == (11, 12, 13, 14)
    assert (info.bytes_acked, info.bytes_received) == (1 << 40, 15)


def tcp_info_cut_to(payload: int) -> bytes:
    """The first ESTABLISHED message of the recording with its tcp_info cut to `payload` bytes (a kernel
    older than the fields we read past it), then NLMSG_DONE."""
    message = next(m for m in _split_messages(load("population_inet4.bin")) if m[17] == TcpState.ESTABLISHED)
    at = 16 + 72
    while struct.unpack_from("=H", message, at + 2)[0] != 2:  # INET_DIAG_INFO
        at += (struct.unpack_from("=H", message, at)[0] + 3) & ~3
    cut = bytearray(message[: at + 4 + payload])
    struct.pack_into("=I", cut, 0, len(cut))
    struct.pack_into("=H", cut, at, 4 + payload)
    return bytes(cut) + bytes(-len(cut) % 4) + load("done_ok.bin")


@pytest.mark.parametrize("payload", [104, 120, 135])
def test_a_kernel_before_4_1_gives_no_byte_counts(payload: int) -> None:
    (sock,) = parse_sockdiag(tcp_info_cut_to(payload)).sockets
    assert sock.tcp_info is not None and sock.tcp_info.rto_us >= 200_000
    assert (sock.tcp_info.bytes_acked, sock.tcp_info.bytes_received) == (-1, -1)


def test_the_remembered_layout_reads_byte_counts_only_where_they_are() -> None:
    """One cache across a long and a short tcp_info: the shortcut must not read past the short one."""
    long_ = _split_messages(load("population_inet4.bin"))
    full = next(m for m in long_ if m[17] == TcpState.ESTABLISHED)
    out: list[Socket] = []
    cache = DecodeCache()
    for data in (full, tcp_info_cut_to(104), full):
        decode_into(data, out, cache)
    assert [s.tcp_info.bytes_acked >= 0 for s in out if s.tcp_info] == [True, False, True]


def test_cookies_are_unique_and_uids_are_root() -> None:
    sockets = population()
    cookies = [s.cookie for s in sockets]
    assert None not in cookies and 0 not in cookies
    assert len(set(cookies)) == len(cookies)
    assert {s.uid for s in sockets} == {0}


def test_decoding_buffer_by_buffer_with_one_cache_equals_decoding_each_message_alone() -> None:
    data = load("population_inet4.bin")
    messages = list(_split_messages(data))
    shared: list[Socket] = []
    cache = DecodeCache()
    for message in messages:
        decode_into(message, shared, cache)
    alone: list[Socket] = []
    for message in messages:
        decode_into(message, alone, DecodeCache())
    assert shared == alone == list(parse_sockdiag(data).sockets)


def test_a_short_tcp_info_attribute_gives_no_tcp_info() -> None:
    parsed = parse_sockdiag(load("tcp_info_truncated.bin"))
    assert parsed.done and parsed.skipped == 0
    assert [s.tcp_info for s in parsed.sockets] == [None, None]
    assert {s.state for s in parsed.sockets} == {TcpState.ESTABLISHED}
    assert parsed.sockets[0].local_address == "127.0.0.1"


def test_a_short_diag_message_is_skipped_and_counted() -> None:
    parsed = parse_sockdiag(load("diag_msg_short.bin"))
    assert (parsed.sockets, parsed.skipped, parsed.done) == ((), 1, True)


@pytest.mark.parametrize(
    ("name", "err"), [("error_enoent.bin", errno.ENOENT), ("done_ebusy.bin", errno.EBUSY)]
)
def test_error_replies_raise_netlink_error(name: str, err: int) -> None:
    with pytest.raises(NetlinkError) as caught:
        parse_sockdiag(load(name))
    assert caught.value.errno == err
    assert isinstance(caught.value, OSError)


def test_a_clean_done_ends_the_dump() -> None:
    assert parse_sockdiag(load("done_ok.bin")).done


def test_a_buffer_without_done_is_not_finished() -> None:
    data = load("population_inet6.bin")
    last = list(_split_messages(data))[:-1]
    parsed = parse_sockdiag(b"".join(last))
    assert not parsed.done and len(parsed.sockets) == len(last)


@pytest.mark.parametrize("cut", [100, 16 + 50, 200])
def test_a_message_longer_than_the_buffer_is_a_parse_error(cut: int) -> None:
    with pytest.raises(ParseError, match="message length"):
        parse_sockdiag(load("population_inet4.bin")[:cut])


def test_unknown_state_is_skipped_and_counted() -> None:
    message = bytearray(_split_messages(load("population_inet4.bin"))[0])
    message[16 + 1] = 13  # idiag_state: no such TCP state
    parsed = parse_sockdiag(bytes(message) + load("done_ok.bin"))
    assert (parsed.sockets, parsed.skipped) == ((), 1)


def test_the_dump_request_layout() -> None:
    req = request_bytes(socket.AF_INET6, 7)
    assert NLMSGHDR.unpack_from(req) == (72, 20, 0x301, 7, 0)  # SOCK_DIAG_BY_FAMILY, REQUEST | DUMP
    family, protocol, ext, states = struct.unpack_from("=BBBxI", req, 16)
    assert (family, protocol, ext, states) == (socket.AF_INET6, socket.IPPROTO_TCP, 1 << 1, 0xFFFFFFFF)
    assert req[24:] == bytes(48)


def test_decoded_sockets_are_ordinary_frozen_model_objects() -> None:
    sock = by_endpoints(population())[KEEPALIVE_ON]
    rebuilt = Socket(**{f.name: getattr(sock, f.name) for f in dataclasses.fields(Socket)})
    assert type(sock) is Socket and sock == rebuilt and hash(sock) == hash(rebuilt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sock.rqueue = 5  # type: ignore[misc]
    assert sock.tcp_info is not None and type(sock.tcp_info) is TcpInfo


def test_frozen_builder_refuses_a_class_without_slots() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int

    with pytest.raises(TypeError):
        frozen_builder(Plain)


def test_recorded_netlink_and_proc_agree() -> None:
    """Recorded a moment apart from the same namespace: same sockets, queues, inodes and timer kinds."""
    proc = read_net_tcp(str(POPULATION_PROC))
    assert proc.skipped_lines == 0

    def key(s: Socket) -> tuple[object, ...]:
        return (s.family, s.state, s.local, s.remote, s.rqueue, s.inode, s.timer)

    assert Counter(map(key, population())) == Counter(map(key, proc.sockets))


def _split_messages(data: bytes) -> list[bytes]:
    out, off = [], 0
    while off + 16 <= len(data):
        (mlen,) = struct.unpack_from("=I", data, off)
        out.append(data[off : off + mlen])
        off += (mlen + 3) & ~3
    return out


def test_background_work_hands_back_its_value_or_its_error() -> None:
    assert sockdiag._Background(lambda: 42).result() == 42

    def fail() -> int:
        raise NetlinkError(errno.EPERM, "refused")

    with pytest.raises(NetlinkError, match="refused"):
        sockdiag._Background(fail).result()
