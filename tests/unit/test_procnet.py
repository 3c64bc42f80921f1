"""/proc/net/tcp{,6} parsing on recorded text (tests/fixtures/record_netlink.py) and hand-edited files."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tcpwatchd.config import DaemonConfig
from tcpwatchd.errors import ParseError, SourceUnavailable
from tcpwatchd.model import Family, Socket, TcpState, TimerKind
from tcpwatchd.sources import SOCKET_SOURCES, ProcNetSource, SourceResult
from tcpwatchd.sources.procnet import parse_net_tcp, read_capped, read_net_tcp
from tcpwatchd.sources.taker import SnapshotTaker
from tests.support.population_sources import EXPECTED, KEEPALIVE_OFF, KEEPALIVE_ON

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
POPULATION = PROC / "population"
ODD = PROC / "odd"


def parse(name: str, family: Family = Family.INET, **kwargs: object) -> tuple[tuple[Socket, ...], int]:
    path = ODD / name
    result = parse_net_tcp(path.read_text(), family, path=str(path), byteorder="little", **kwargs)  # type: ignore[arg-type]
    return result.sockets, result.skipped_lines


def by_endpoints(sockets: tuple[Socket, ...]) -> dict[tuple[str, str], Socket]:
    return {(s.local, s.remote): s for s in sockets}


def test_recorded_population() -> None:
    result = ProcNetSource(str(POPULATION)).sockets()
    assert (result.source, result.skipped_lines, result.notes) == ("procnet", 0, ())
    got = Counter((s.state.name, s.local, s.remote, s.rqueue) for s in result.sockets)
    persist = Counter(
        [
            ("LISTEN", "127.0.0.1:5007", "0.0.0.0:0", 0),
            ("ESTABLISHED", "127.0.0.1:5007", "127.0.0.1:6012", 4096),
            ("FIN_WAIT1", "127.0.0.1:6012", "127.0.0.1:5007", 0),
        ]
    )
    assert got == Counter(EXPECTED) + persist


@pytest.mark.parametrize(
    ("local", "remote", "timer", "expires_ms", "has_inode"),
    [
        (*KEEPALIVE_ON, TimerKind.KEEPALIVE, (590_000, 600_000), True),  # TCP_KEEPIDLE 600 s
        (*KEEPALIVE_OFF, TimerKind.OFF, (0, 0), True),
        ("127.0.0.1:5001", "127.0.0.1:6005", TimerKind.TIME_WAIT, (50_000, 60_000), False),
        (
            "127.0.0.1:6003",
            "127.0.0.1:5001",
            TimerKind.TIME_WAIT,
            (50_000, 60_000),
            False,
        ),  # orphan FIN_WAIT2
        ("127.0.0.1:5002", "127.0.0.1:6007", TimerKind.RETRANSMIT, (0, 1_000), False),  # request socket
        ("127.0.0.1:6012", "127.0.0.1:5007", TimerKind.ZERO_WINDOW_PROBE, (0, 10_000), False),  # orphan
    ],
)
def test_recorded_details(
    local: str, remote: str, timer: TimerKind, expires_ms: tuple[int, int], has_inode: bool
) -> None:
    sock = by_endpoints(read_net_tcp(str(POPULATION)).sockets)[(local, remote)]
    assert sock.timer is timer
    assert expires_ms[0] <= sock.timer_expires_ms <= expires_ms[1]
    assert (sock.inode != 0) == has_inode
    assert (sock.cookie, sock.tcp_info) == (None, None)  # /proc has neither


def test_every_state() -> None:
    sockets, skipped = parse("tcp_all_states")
    assert skipped == 0
    assert [s.state for s in sockets] == list(TcpState)
    assert {s.uid for s in sockets} == {1000}


@pytest.mark.parametrize(
    ("local", "remote", "state"),
    [
        ("[::1]:5004", "[::]:0", TcpState.LISTEN),
        ("[::ffff:127.0.0.1]:5005", "[::ffff:127.0.0.1]:6011", TcpState.ESTABLISHED),
        ("[2001:db8::1]:443", "[2001:db8::2]:54321", TcpState.CLOSE_WAIT),
        ("[fe80::1]:22", "[fe80::2]:49153", TcpState.ESTABLISHED),
    ],
)
def test_ipv6_addresses(local: str, remote: str, state: TcpState) -> None:
    sockets, skipped = parse("tcp6_addresses", Family.INET6)
    assert skipped == 0
    sock = by_endpoints(sockets)[(local, remote)]
    assert (sock.state, sock.family) == (state, Family.INET6)


def test_probe_timers_take_retrans_from_the_probe_count() -> None:
    """tcp6_addresses line 3: zero-window probe timer, 25 ticks, `timeout` (icsk_probes_out) 3."""
    sock = by_endpoints(parse("tcp6_addresses", Family.INET6)[0])[("[fe80::1]:22", "[fe80::2]:49153")]
    assert (sock.timer, sock.timer_expires_ms, sock.retrans, sock.wqueue) == (
        TimerKind.ZERO_WINDOW_PROBE,
        250,
        3,
        16,
    )


@pytest.mark.parametrize(
    ("hex_address", "family", "byteorder", "expected"),
    [
        ("0100007F", Family.INET, "little", "127.0.0.1"),
        ("7F000001", Family.INET, "big", "127.0.0.1"),
        ("0112A8C0", Family.INET, "little", "192.168.18.1"),
        ("00000000000000000000000001000000", Family.INET6, "little", "::1"),
        ("00000000000000000000000000000001", Family.INET6, "big", "::1"),
        ("0000000000000000FFFF00000100007F", Family.INET6, "little", "::ffff:127.0.0.1"),
        ("B80D0120000000000000000001000000", Family.INET6, "little", "2001:db8::1"),
    ],
)
def test_address_words_are_in_the_kernels_byte_order(
    hex_address: str, family: Family, byteorder: str, expected: str
) -> None:
    width = "sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
    zero = "0" * len(hex_address)
    line = f"   0: {hex_address}:0050 {zero}:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1"
    result = parse_net_tcp(f"  {width}\n{line}\n", family, byteorder=byteorder)  # type: ignore[arg-type]
    assert [s.local_address for s in result.sockets] == [expected]


@pytest.mark.parametrize(("clk_tck", "expected_ms"), [(100, 599_700), (250, 239_880), (1000, 59_970)])
def test_timer_ticks_become_milliseconds(clk_tck: int, expected_ms: int) -> None:
    sockets, _ = parse("tcp_truncated", clk_tck=clk_tck)
    assert by_endpoints(sockets)[KEEPALIVE_ON].timer_expires_ms == expected_ms


@pytest.mark.parametrize(("name", "parsed", "skipped"), [("tcp_truncated", 2, 1), ("tcp_garbage", 2, 8)])
def test_odd_lines_are_skipped_and_counted(name: str, parsed: int, skipped: int) -> None:
    sockets, n_skipped = parse(name)
    assert (len(sockets), n_skipped) == (parsed, skipped)


@pytest.mark.parametrize("text", ["", "\n", "garbage\n", (ODD / "tcp_bad_header").read_text()])
def test_an_unknown_header_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_net_tcp(text, Family.INET, path="/x/net/tcp")
    assert (caught.value.path, caught.value.line_no) == ("/x/net/tcp", 1)


def test_missing_tcp6_is_normal(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(POPULATION / "net" / "tcp", tmp_path / "net" / "tcp")
    result = read_net_tcp(str(tmp_path))
    assert result.notes == () and {s.family for s in result.sockets} == {Family.INET}


def test_missing_tcp_makes_the_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="procnet"):
        read_net_tcp(str(tmp_path))


def test_reads_are_capped_and_the_cut_line_is_counted(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    text = (POPULATION / "net" / "tcp").read_bytes()
    (tmp_path / "net" / "tcp").write_bytes(text)
    cap = len(text) // 2
    assert read_capped(str(tmp_path / "net" / "tcp"), cap) == text[:cap]
    result = read_net_tcp(str(tmp_path), cap=cap)
    assert result.skipped_lines == 1
    assert len(result.notes) == 1 and "larger than" in result.notes[0]
    full_lines = text[:cap].count(b"\n") - 1  # minus the header
    assert len(result.sockets) == full_lines


class Refused:
    name = "sockdiag"

    def sockets(self) -> SourceResult:
        raise SourceUnavailable(
            "sockdiag", "cannot open NETLINK_SOCK_DIAG: [Errno 1] Operation not permitted"
        )


def test_auto_falls_back_to_proc_and_says_why() -> None:
    taker = SnapshotTaker(DaemonConfig(source="auto"), proc_root=str(POPULATION), sockdiag=Refused())
    snap = taker.take()
    assert snap.source == "procnet" and len(snap.sockets) == len(EXPECTED) + 3
    failed = {s.name: s.error for s in snap.sources if not s.ok}
    assert failed == {
        "sockdiag": "sockdiag unavailable: cannot open NETLINK_SOCK_DIAG: [Errno 1] Operation not permitted"
    }


def test_the_registry_names_every_source() -> None:
    assert set(SOCKET_SOURCES) == {"sockdiag", "procnet"}
    assert all(SOCKET_SOURCES[name]().name == name for name in SOCKET_SOURCES)
