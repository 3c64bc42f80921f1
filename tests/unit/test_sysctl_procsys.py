"""Reading and writing a fake /proc/sys tree (a real directory under tmp_path, nothing mocked)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tcpwatchd.sysctl.procsys import (
    SysctlParseError,
    describe_os_error,
    parse_value,
    read_netns,
    read_one,
    read_sysctl,
    sysctl_path,
    write_sysctl,
)


def _tree(root: Path, values: dict[str, str]) -> str:
    """Lay out `<root>/sys/net/...` files with the given text; returns the proc_root."""
    for name, text in values.items():
        path = root.joinpath("sys", *name.split("."))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


@pytest.mark.parametrize(
    ("text", "value"),
    [("7200\n", 7200), ("0\n", 0), ("-5\n", -5), ("  600 \n", 600), ("2147483647\n", 2**31 - 1)],
)
def test_parse_value(text: str, value: int) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(
    "text", ["", "\n", "abc\n", "1 2\n", "4096\t87380\t6291456\n", "0x10\n", "9" * 25, "1.5\n"]
)
def test_parse_value_refuses_anything_but_one_integer(text: str) -> None:
    with pytest.raises(SysctlParseError):
        parse_value(text)


def test_sysctl_path_maps_dots_to_directories() -> None:
    assert sysctl_path("net.ipv4.tcp_fin_timeout", "/x") == Path("/x/sys/net/ipv4/tcp_fin_timeout")
    assert sysctl_path("net.core.somaxconn") == Path("/proc/sys/net/core/somaxconn")


@pytest.mark.parametrize(
    "name", ["net.ipv4.tcp_fin_timeout/../../kernel", "kernel.panic", "net.ipv4.ip_forward"]
)
def test_sysctl_path_refuses_unknown_names(name: str) -> None:
    with pytest.raises(ValueError, match="not a sysctl"):
        sysctl_path(name, "/x")


def test_read_and_write_round_trip(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"net.ipv4.tcp_keepalive_time": "7200\n"})
    assert read_sysctl("net.ipv4.tcp_keepalive_time", root) == 7200
    write_sysctl("net.ipv4.tcp_keepalive_time", 60, root)
    assert (tmp_path / "sys/net/ipv4/tcp_keepalive_time").read_text() == "60\n"
    assert read_sysctl("net.ipv4.tcp_keepalive_time", root) == 60


def test_write_never_creates_a_file(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"net.ipv4.tcp_keepalive_time": "7200\n"})
    with pytest.raises(FileNotFoundError):
        write_sysctl("net.ipv4.tcp_fin_timeout", 30, root)
    assert not (tmp_path / "sys/net/ipv4/tcp_fin_timeout").exists()


def test_write_refuses_an_unknown_name_before_touching_anything(tmp_path: Path) -> None:
    victim = tmp_path / "sys/kernel/panic"
    victim.parent.mkdir(parents=True)
    victim.write_text("0\n")
    with pytest.raises(ValueError):
        write_sysctl("net.ipv4.tcp_fin_timeout/../../../kernel/panic", 1, str(tmp_path))
    assert victim.read_text() == "0\n"


def test_symlinked_sysctl_file_is_neither_read_nor_written(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("7200\n")
    link = tmp_path / "sys/net/ipv4/tcp_keepalive_time"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    reading = read_one("net.ipv4.tcp_keepalive_time", str(tmp_path))
    assert reading.value is None and "ELOOP" in reading.error
    with pytest.raises(OSError) as info:
        write_sysctl("net.ipv4.tcp_keepalive_time", 1, str(tmp_path))
    assert info.value.errno == errno.ELOOP
    assert target.read_text() == "7200\n"


def test_read_one_turns_every_failure_into_data(tmp_path: Path) -> None:
    root = _tree(
        tmp_path, {"net.ipv4.tcp_keepalive_time": "garbage\x1b[31m\n", "net.ipv4.tcp_retries2": "15\n"}
    )
    (tmp_path / "sys/net/ipv4/tcp_fin_timeout").mkdir()
    assert read_one("net.ipv4.tcp_retries2", root).value == 15
    missing = read_one("net.ipv4.tcp_max_orphans", root)
    assert missing.value is None and missing.missing and "not present" in missing.error
    garbage = read_one("net.ipv4.tcp_keepalive_time", root)
    assert garbage.value is None and not garbage.missing and garbage.error.startswith("cannot parse")
    assert "\x1b" not in garbage.error
    directory = read_one("net.ipv4.tcp_fin_timeout", root)
    assert directory.value is None and "EISDIR" in directory.error


def test_describe_os_error_names_the_errno() -> None:
    assert (
        describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS))) == "Read-only file system (EROFS)"
    )


def test_read_netns(tmp_path: Path) -> None:
    assert read_netns(str(tmp_path)) == ""
    assert read_netns("/proc").startswith("net:[")
