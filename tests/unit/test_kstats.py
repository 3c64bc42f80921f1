"""/proc/net/netstat and /proc/net/snmp → flat counters, on recorded and hand-edited text."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tcpwatchd.errors import ParseError
from tcpwatchd.sources import read_kernel_counters
from tcpwatchd.sources.kstats import parse_kstats

PROC = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
POPULATION = PROC / "population"
ODD = PROC / "odd"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Tcp.RtoMin", 200),
        ("Tcp.MaxConn", -1),  # snmp values are signed
        ("Tcp.ActiveOpens", 12),
        ("Tcp.CurrEstab", 16),
        ("TcpExt.ListenOverflows", 1),  # the SYN the full listener dropped (population port 5003)
        ("TcpExt.TCPDeferAcceptDrop", 1),  # the bare ACK the TCP_DEFER_ACCEPT listener ignored (5002)
        ("TcpExt.TW", 2),
        ("TcpExt.TCPAbortOnClose", 0),
        ("IpExt.InNoRoutes", 0),
        ("Ip.DefaultTTL", 64),
        ("Udp.NoPorts", 0),
    ],
)
def test_recorded_counters(key: str, value: int) -> None:
    assert read_kernel_counters(str(POPULATION))[key] == value


def test_every_abort_reason_is_present() -> None:
    counters = read_kernel_counters(str(POPULATION))
    for name in ("OnClose", "OnData", "OnTimeout", "OnLinger", "OnMemory", "Failed"):
        assert f"TcpExt.TCPAbort{name}" in counters


def test_counters_missing_from_an_older_kernel_are_absent() -> None:
    counters = parse_kstats((ODD / "snmp_old_kernel").read_text(), "snmp")
    assert counters["Tcp.OutRsts"] == 12 and counters["Tcp.MaxConn"] == -1
    assert "Tcp.InCsumErrors" not in counters and "Ip.OutTransmits" not in counters
    assert len(counters) == 19 + 14 + 6


@pytest.mark.parametrize(
    ("name", "line_no", "reason"),
    [
        ("netstat_mismatch", 2, "3 names but 2 values"),
        ("netstat_wrong_group", 2, "expected the values of TcpExt, found IpExt"),
        ("netstat_header_only", 3, "IpExt: a header without its values line"),
        ("snmp_not_int", 2, "not an integer"),
    ],
)
def test_malformed_files_are_parse_errors_with_path_and_line(name: str, line_no: int, reason: str) -> None:
    path = str(ODD / name)
    with pytest.raises(ParseError) as caught:
        parse_kstats((ODD / name).read_text(), path)
    assert (caught.value.path, caught.value.line_no) == (path, line_no)
    assert reason in caught.value.reason


def test_a_line_without_a_group_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match=r"not a 'Group: \.\.\.' line"):
        parse_kstats("no colon here\n", "x")


def test_a_missing_file_adds_nothing(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    shutil.copy(POPULATION / "net" / "snmp", tmp_path / "net" / "snmp")
    counters = read_kernel_counters(str(tmp_path))
    assert "Tcp.RtoMin" in counters and not any(k.startswith("TcpExt.") for k in counters)
    assert read_kernel_counters(str(tmp_path / "nowhere")) == {}
