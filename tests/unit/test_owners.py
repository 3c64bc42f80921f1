"""OwnerCache on a fake /proc tree: real directories, real symlinks, no mocking."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tcpwatchd.sources.owners import OwnerCache

BOOT = 1_700_000_000  # btime of the fake tree's /proc/stat


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
    (tmp_path / "stat").write_text(f"cpu  1 2 3 4 5 6 7 0 0 0\nbtime {BOOT}\nprocesses 9\n")
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
    assert names(cache, [1]) == {1: ('evil"\\\\) x', 10)}  # the backslash doubled (sources/names.py)


def test_a_process_renamed_after_exec_is_shown_by_its_new_name(proc: FakeProc) -> None:
    proc.process(10, "python3", 100, {3: 1})
    cache = OwnerCache(str(proc.root))
    assert names(cache, [1]) == {1: ("python3", 10)}
    proc.process(10, "srv-renamed", 100, {3: 1, 4: 2})  # same pid and start time, new comm
    assert names(cache, [1, 2]) == {1: ("srv-renamed", 10), 2: ("srv-renamed", 10)}


def test_start_times_count_from_the_boot_time_of_the_same_proc_root(proc: FakeProc) -> None:
    proc.process(10, "srv", 250 * os.sysconf("SC_CLK_TCK"), {3: 1})
    owner = OwnerCache(str(proc.root)).attribute([1]).owners[1]
    assert owner.start_time == BOOT + 250


# --- the full scan: threads, prefetch ---------------------------------------------------------------------


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


def test_after_a_prefetch_that_owns_every_socket_the_next_poll_reads_nothing(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1, 4: 2})
    cache = OwnerCache(str(proc.root), scan_threads=2)
    cache.start_full_scan().finish()
    assert cache.attribute([1, 2]).stats.processes_scanned == 1
    assert cache.attribute([1, 2]).stats.processes_scanned == 0


def test_other_sockets_fds_are_not_read_again_when_processes_come_and_go(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A UNIX socket's (or another namespace's) fd never is in the TCP table: an incremental scan, which
    runs whenever a process starts or exits, must not readlink it every poll (a host has thousands)."""
    from tcpwatchd.sources import fdtable

    proc.process(10, "srv", 100, {3: 1, 4: 9001, 5: 9002})  # 9001, 9002: UNIX sockets
    cache = OwnerCache(str(proc.root))
    cache.attribute([1])
    read: list[str] = []
    links = fdtable._links

    def spy(dir_fd: int, fds: list[str]) -> list[str] | None:
        if os.readlink(f"/proc/self/fd/{dir_fd}").endswith("/10/fd"):
            read.extend(fds)
        return links(dir_fd, fds)

    monkeypatch.setattr(fdtable, "_links", spy)
    proc.process(20, "cron", 300, {})  # a process came: the next poll scans
    proc.fd(10, 6, 2)  # and srv opened a TCP socket
    assert names(cache, [1, 2]) == {1: ("srv", 10), 2: ("srv", 10)}
    assert read == ["6"]


def test_an_unknown_sockets_fd_number_reused_for_ours_is_seen(proc: FakeProc) -> None:
    proc.process(10, "srv", 100, {3: 1, 4: 9001})  # 9001: a UNIX socket
    cache = OwnerCache(str(proc.root))
    cache.attribute([1])
    proc.process(20, "cron", 300, {})
    proc.fd(10, 4, 2)  # the UNIX socket closed; fd 4 now holds TCP socket 2
    assert names(cache, [1, 2]) == {1: ("srv", 10), 2: ("srv", 10)}
