"""OwnerCache on a fake /proc tree: real directories, real symlinks, no mocking."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tcpwatchd.sources import owners
from tcpwatchd.sources.owners import OwnerCache
from tcpwatchd.sources.procfs import socket_inode


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root

    def process(self, pid: int, comm: str, start: int, fds: dict[int, int], cgroup: str = "0::/\n") -> None:
        d = self.root / str(pid)
        if d.exists():
            shutil.rmtree(d)
        (d / "fd").mkdir(parents=True)
        (d / "stat").write_bytes(
            f"{pid} ({comm}) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0".encode()
        )
        (d / "cgroup").write_text(cgroup)
        for fd, inode in fds.items():
            self.fd(pid, fd, inode)

    def fd(self, pid: int, fd: int, inode: int) -> None:
        link = self.root / str(pid) / "fd" / str(fd)
        if link.is_symlink():
            link.unlink()
        os.symlink(f"socket:[{inode}]" if inode else "/dev/null", link)

    def close_fd(self, pid: int, fd: int) -> None:
        (self.root / str(pid) / "fd" / str(fd)).unlink()

    def exit(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    (tmp_path / "self").mkdir()  # non-numeric entries are ignored
    return FakeProc(tmp_path)


def names(cache: OwnerCache, inodes: list[int]) -> dict[int, tuple[str, int]]:
    return {i: (o.name, o.pid) for i, o in cache.attribute(inodes).owners.items()}


def test_attributes_each_inode_to_its_process(proc: FakeProc) -> None:
    proc.process(10, "nginx", 100, {3: 1001, 4: 1002, 5: 0}, cgroup="0::/system.slice/nginx.service\n")
    proc.process(20, "redis", 200, {6: 2001})
    cache = OwnerCache(str(proc.root))
    attribution = cache.attribute([1001, 1002, 2001, 3003, 0])
    assert {i: o.name for i, o in attribution.owners.items()} == {1001: "nginx", 1002: "nginx", 2001: "redis"}
    assert attribution.owners[1001].unit == "nginx.service"
    assert attribution.stats.sockets_unowned == 1  # 3003: no process holds it
    assert attribution.stats.processes == 2


def test_shared_socket_counts_under_the_oldest_owner_then_the_survivor(proc: FakeProc) -> None:
    proc.process(30, "worker", 500, {3: 7})  # younger child, listed first
    proc.process(10, "master", 100, {3: 7})
    cache = OwnerCache(str(proc.root))
    assert names(cache, [7]) == {7: ("master", 10)}
    proc.exit(10)
    assert names(cache, [7]) == {7: ("worker", 30)}


def test_steady_state_reads_no_fd_table(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1, 4: 2})
    cache = OwnerCache(str(proc.root))
    assert cache.attribute([1, 2]).stats.processes_scanned == 1
    again = cache.attribute([1, 2])
    assert again.stats.processes_scanned == 0
    assert names(cache, [1]) == {1: ("srv", 10)}  # a socket that closed is simply dropped


def test_fd_number_reused_between_polls_is_seen(proc: FakeProc) -> None:
    """accept() + close() between polls can leave the fd count unchanged and reuse the fd number."""
    proc.process(10, "srv", 100, {3: 1, 4: 2})
    cache = OwnerCache(str(proc.root))
    cache.attribute([1, 2])
    proc.fd(10, 4, 3)  # socket 2 closed; fd 4 now holds socket 3
    assert names(cache, [1, 3]) == {1: ("srv", 10), 3: ("srv", 10)}


def test_recycled_pid_is_a_new_process(proc: FakeProc) -> None:
    proc.process(10, "old", 100, {3: 1})
    cache = OwnerCache(str(proc.root))
    assert names(cache, [1]) == {1: ("old", 10)}
    proc.process(10, "new", 900, {3: 5})  # same pid, later start time
    assert names(cache, [5]) == {5: ("new", 10)}


def test_process_without_stat_counts_as_vanished(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1})
    (proc.root / "11").mkdir()  # exited between the /proc listing and the read
    cache = OwnerCache(str(proc.root))
    attribution = cache.attribute([1])
    assert attribution.stats.processes_vanished == 1
    assert names(cache, [1]) == {1: ("srv", 10)}


def test_hostile_name_survives(proc: FakeProc) -> None:
    proc.process(10, 'evil"\\) x', 100, {3: 1})
    cache = OwnerCache(str(proc.root))
    assert names(cache, [1]) == {1: ('evil"\\) x', 10)}


def test_a_process_renamed_after_exec_is_shown_by_its_new_name(proc: FakeProc) -> None:
    proc.process(10, "python3", 100, {3: 1})
    cache = OwnerCache(str(proc.root))
    assert names(cache, [1]) == {1: ("python3", 10)}
    proc.process(10, "srv-renamed", 100, {3: 1, 4: 2})  # same pid and start time, new comm
    assert names(cache, [1, 2]) == {1: ("srv-renamed", 10), 2: ("srv-renamed", 10)}


# --- the full scan: threads, prefetch, reading an fd table ------------------------------------------------


def test_a_threaded_scan_equals_a_single_threaded_one(proc: FakeProc) -> None:
    for pid in range(10, 40):
        proc.process(pid, f"p{pid}", 100 + pid, {3: pid * 10, 4: pid * 10 + 1, 7: 0})
    inodes = [pid * 10 + k for pid in range(10, 40) for k in (0, 1)]
    one = OwnerCache(str(proc.root), scan_threads=1).attribute(inodes)
    three = OwnerCache(str(proc.root), scan_threads=3).attribute(inodes)
    assert one == three
    assert three.stats.processes_scanned == 30


def test_a_finished_prefetch_is_used_without_reading_again(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1, 4: 2})
    cache = OwnerCache(str(proc.root), scan_threads=2)
    assert cache.needs_full_scan()
    cache.start_full_scan().finish()
    proc.fd(10, 5, 3)  # opened after the prefetch read the table
    attribution = cache.attribute([1, 2, 3])
    assert not cache.needs_full_scan()
    assert {i: o.name for i, o in attribution.owners.items()} == {1: "srv", 2: "srv"}
    assert attribution.stats.sockets_unowned == 1  # caught up on the next poll:
    assert names(cache, [1, 2, 3]) == {1: ("srv", 10), 2: ("srv", 10), 3: ("srv", 10)}


def test_a_failed_prefetch_is_scanned_again_by_attribute(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1})
    fd_dir = proc.root / "10" / "fd"
    shutil.rmtree(fd_dir)
    fd_dir.write_text("")  # not a directory: ENOTDIR is no race, the scan fails
    cache = OwnerCache(str(proc.root), scan_threads=2)
    scan = cache.start_full_scan()
    scan.finish()
    assert isinstance(scan.error, NotADirectoryError)
    fd_dir.unlink()
    proc.process(10, "srv", 100, {3: 1})
    assert names(cache, [1]) == {1: ("srv", 10)}


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
    assert owners._by_fd(names_, links) == dict(zip(names_, expected, strict=True))


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
        assert owners._read_all_fds(dir_fd) == expected
    finally:
        os.close(dir_fd)


def test_an_fd_table_with_a_gap_is_listed_and_read_whole(holder: Callable[..., Holder]) -> None:
    dir_fd = holder(20, close=(7, 12)).fd_dir()
    try:
        expected = listed(dir_fd)
        assert "7" not in expected and "12" not in expected and len(expected) == 3 + 40 - 2
        assert owners._read_all_fds(dir_fd) == expected
    finally:
        os.close(dir_fd)


@pytest.mark.parametrize("count", [0, 1, 5, 3000, 20000, 5])
def test_fd_names_are_the_numbers_below_the_count(count: int) -> None:
    assert owners._fd_names(count) == [str(i) for i in range(count)]
    assert len(owners._fd_name_cache) <= owners._FD_NAMES_KEPT


def test_after_a_prefetch_that_owns_every_socket_the_next_poll_reads_nothing(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1, 4: 2})
    cache = OwnerCache(str(proc.root), scan_threads=2)
    cache.start_full_scan().finish()
    assert cache.attribute([1, 2]).stats.processes_scanned == 1
    assert cache.attribute([1, 2]).stats.processes_scanned == 0
