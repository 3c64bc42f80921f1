"""The fd-table primitives (sources/fdtable.py) on real processes' /proc/<pid>/fd and a fake tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcpwatchd.sources import fdtable
from tcpwatchd.sources.fdtable import (
    FD_NAMES_KEPT,
    by_fd,
    fd_names,
    fd_table,
    fds_of_socket,
    list_pids,
    open_fd_count,
    read_all_fds,
    read_fds,
)
from tcpwatchd.sources.procfs import socket_inode


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        (["socket:[11]", "/dev/null", "pipe:[5]", "socket:[12]"], [11, 0, 0, 12]),
        (["anon_inode:[eventpoll]", "/tmp/socket:[1] (deleted)"], [0, 0]),
        # Malformed socket targets (never made by sockfs) fall back to the careful parser, whole.
        (["socket:[]", "socket:[13]"], [0, 13]),
        (["socket:[1]x", "socket:[x]", "socket:[14]"], [0, 0, 14]),
    ],
)
def test_fd_links_become_socket_inodes(links: list[str], expected: list[int]) -> None:
    names_ = [str(i) for i in range(len(links))]
    assert by_fd(names_, links) == dict(zip(names_, expected, strict=True))


class Holder:
    """A child process holding socketpairs on fds 3.. (and 0-2), for reading a real /proc/<pid>/fd."""

    def __init__(self, pairs: int, close: tuple[int, ...] = ()) -> None:
        code = (
            "import os, socket, sys\n"
            f"keep = [socket.socketpair() for _ in range({pairs})]\n"
            f"for fd in {close!r}: os.close(fd)\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.child.stdout is not None and self.child.stdout.readline() == "ready\n"

    def fd_dir(self) -> int:
        return os.open(f"/proc/{self.child.pid}/fd", os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        assert self.child.stdin is not None
        self.child.stdin.close()
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait(timeout=10)


@pytest.fixture
def holder() -> Iterator[Callable[..., Holder]]:
    made: list[Holder] = []

    def make(pairs: int, close: tuple[int, ...] = ()) -> Holder:
        made.append(Holder(pairs, close))
        return made[-1]

    yield make
    for h in made:
        h.close()


def listed(dir_fd: int) -> dict[str, int]:
    """The plain way: list the directory, readlink each entry."""
    return {n: socket_inode(os.readlink(n, dir_fd=dir_fd)) for n in os.listdir(dir_fd)}


def test_reading_a_dense_fd_table_by_number_lists_nothing(
    holder: Callable[..., Holder], monkeypatch: pytest.MonkeyPatch
) -> None:
    dir_fd = holder(40).fd_dir()
    try:
        expected = listed(dir_fd)
        assert sum(1 for inode in expected.values() if inode) == 80
        if os.fstat(dir_fd).st_size == 0:
            pytest.skip("this kernel does not report the fd count as st_size (Linux < 6.2)")

        def no_listing(_path: object) -> list[str]:
            raise AssertionError("a dense fd table was listed")

        monkeypatch.setattr(os, "listdir", no_listing)
        assert read_all_fds(dir_fd) == expected
    finally:
        os.close(dir_fd)


def test_an_fd_table_with_a_gap_is_listed_and_read_whole(holder: Callable[..., Holder]) -> None:
    dir_fd = holder(20, close=(7, 12)).fd_dir()
    try:
        expected = listed(dir_fd)
        assert "7" not in expected and "12" not in expected and len(expected) == 3 + 40 - 2
        assert read_all_fds(dir_fd) == expected
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize("count", [0, 1, 5, 3000, 20000, 5])
def test_fd_names_are_the_numbers_below_the_count(count: int) -> None:
    assert fd_names(count) == [str(i) for i in range(count)]
    assert len(fdtable._fd_name_cache) <= FD_NAMES_KEPT


def test_one_call_helpers_on_a_real_process(holder: Callable[..., Holder]) -> None:
    child = holder(3, close=(5,))  # fds 0-2, then socketpairs on 3..8 less 5
    table = fd_table(child.child.pid)
    assert sorted(map(int, table)) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert open_fd_count(child.child.pid) == 8
    inode = table["6"]
    assert inode and fds_of_socket(child.child.pid, inode) == [6]
    assert fds_of_socket(child.child.pid, 1) == []


def test_a_duplicated_socket_is_held_by_several_fds() -> None:
    with socket.socket() as s:
        copy = os.dup(s.fileno())
        try:
            inode = os.fstat(s.fileno()).st_ino
            assert fds_of_socket(os.getpid(), inode) == sorted([s.fileno(), copy])
        finally:
            os.close(copy)


def test_helpers_on_a_fake_tree(tmp_path: Path) -> None:
    fds = tmp_path / "42" / "fd"
    fds.mkdir(parents=True)
    (tmp_path / "self").mkdir()
    for name, target in [("0", "/dev/null"), ("3", "socket:[77]"), ("9", "socket:[78]")]:
        os.symlink(target, fds / name)
    root = str(tmp_path)
    assert list_pids(root) == ["42"]
    assert fd_table(42, root) == {"0": 0, "3": 77, "9": 78}
    assert fds_of_socket(42, 78, root) == [9]
    assert open_fd_count(42, root) == 3  # a plain directory's st_size (4096 here) is not a count
    with pytest.raises(FileNotFoundError):
        fd_table(43, root)


def test_an_incremental_read_rereads_only_new_fds_and_fds_of_closed_sockets(tmp_path: Path) -> None:
    fds = tmp_path / "fd"
    fds.mkdir()
    for name, target in [("3", "socket:[1]"), ("4", "socket:[2]"), ("5", "socket:[3]")]:
        os.symlink(target, fds / name)
    dir_fd = os.open(fds, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # The cache says fd 3 holds socket 9 (still open): trusted. Fd 4's socket 8 closed: re-read.
        old = {"3": 9, "4": 8}
        assert read_fds(dir_fd, old, frozenset({9})) == {"3": 9, "4": 2, "5": 3}
    finally:
        os.close(dir_fd)
