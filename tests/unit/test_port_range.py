"""The ephemeral port range, on /proc/sys text recorded from real namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpwatchd.errors import ParseError
from tcpwatchd.sources.port_range import PortRange, parse_port_range, parse_reserved_within, read_port_range

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "proc" / "facts"


@pytest.mark.parametrize(
    ("root", "expected", "usable"),
    [
        ("sys_default", PortRange(32768, 60999, 0), 28232),
        # 40000-40999 with 8080 (outside), 40100-40199 (100) and 40990-41100 (10 inside) reserved
        ("sys_narrow", PortRange(40000, 40999, 110), 890),
    ],
)
def test_read_port_range(root: str, expected: PortRange, usable: int) -> None:
    got = read_port_range(str(FACTS / root))
    assert got == expected and got.usable == usable


@pytest.mark.parametrize("text", ["", "32768", "32768 60999 1", "a b", "60999 32768", "0 10", "1 70000"])
def test_bad_range_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_port_range(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [("\n", 0), ("1000\n", 1), ("1000-2000\n", 1001), ("1500-1500,1999-3000\n", 3), ("999,2001\n", 0)],
)
def test_reserved_within(text: str, count: int) -> None:
    assert parse_reserved_within(text, 1000, 2000) == count


def test_reserved_garbage_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_reserved_within("80,x-9", 1, 100)


def test_missing_reserved_file_means_none_reserved(tmp_path: Path) -> None:
    (tmp_path / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "net" / "ipv4" / "ip_local_port_range").write_text("1024\t1033\n")
    assert read_port_range(str(tmp_path)) == PortRange(1024, 1033, 0)
