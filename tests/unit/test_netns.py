"""Namespace discovery and generations, on a fake /proc tree: `<pid>/ns/net` are symlinks to files standing
for namespaces (stat follows them, so one file = one (dev, ino), as nsfs gives), `<pid>/stat` real text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcpwatchd.sources.netns import MAX_REPRESENTATIVES, NetnsDiscovery, NetnsKey, continues


class FakeProc:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "nsfs").mkdir(parents=True)

    def namespace(self, name: str) -> Path:
        path = self.root / "nsfs" / name
        path.touch()
        return path

    def process(self, pid: int, ns: str, start: int = 1000) -> None:
        d = self.root / str(pid)
        (d / "ns").mkdir(parents=True, exist_ok=True)
        link = d / "ns" / "net"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(self.root / "nsfs" / ns)
        stat = f"{pid} (proc {pid}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0\n"
        (d / "stat").write_text(stat)

    def exit(self, pid: int) -> None:
        d = self.root / str(pid)
        for path in (d / "ns" / "net", d / "stat"):
            path.unlink()
        (d / "ns").rmdir()
        d.rmdir()

    def own(self, pid: int) -> None:
        (self.root / "self").symlink_to(str(pid))

    def ino(self, ns: str) -> int:
        return os.stat(self.root / "nsfs" / ns).st_ino


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    for name in ("host", "pod", "solo"):
        fake.namespace(name)
    for pid in (1, 2, 3):
        fake.process(pid, "host")
    for pid in (100, 101, 102, 103, 104, 105):
        fake.process(pid, "pod")
    fake.process(200, "solo")
    fake.own(2)
    return fake


def keys(scan_result: object) -> dict[int, NetnsKey]:
    return {ns.key.ino: ns.key for ns in scan_result.namespaces}  # type: ignore[attr-defined]


def test_one_namespace_per_inode_and_the_own_one_flagged(proc: FakeProc) -> None:
    scan = NetnsDiscovery(str(proc.root)).scan()
    by_ino = {ns.key.ino: ns for ns in scan.namespaces}
    assert set(by_ino) == {proc.ino("host"), proc.ino("pod"), proc.ino("solo")}
    assert [ns.own for ns in scan.namespaces].count(True) == 1 and by_ino[proc.ino("host")].own
    assert by_ino[proc.ino("pod")].pids == (100, 101, 102, 103)[:MAX_REPRESENTATIVES]
    assert len({ns.key.generation for ns in scan.namespaces}) == 3
    assert (scan.processes, scan.vanished, scan.denied, scan.reused, scan.dropped) == (10, 0, 0, 0, ())


def test_generations_survive_while_an_anchor_lives(proc: FakeProc) -> None:
    discovery = NetnsDiscovery(str(proc.root))
    first = keys(discovery.scan())
    for pid in (100, 101, 102):  # three of six leave; 103 is still an anchor
        proc.exit(pid)
    proc.process(300, "pod")
    second = discovery.scan()
    assert keys(second) == first and second.dropped == ()
    pod = next(ns for ns in second.namespaces if ns.key.ino == proc.ino("pod"))
    assert pod.pids == (103, 104, 105, 300)


def test_every_process_replaced_means_a_new_namespace(proc: FakeProc) -> None:
    """The inode came back with none of the old processes: a reused inode, a new generation."""
    discovery = NetnsDiscovery(str(proc.root))
    old = keys(discovery.scan())[proc.ino("solo")]
    proc.exit(200)
    proc.process(201, "solo")
    scan = discovery.scan()
    new = keys(scan)[proc.ino("solo")]
    assert new.generation != old.generation and scan.dropped == (old,) and scan.reused == 1


def test_a_recycled_pid_is_not_an_anchor(proc: FakeProc) -> None:
    discovery = NetnsDiscovery(str(proc.root))
    old = keys(discovery.scan())[proc.ino("solo")]
    proc.process(200, "solo", start=99999)  # same pid, another process (a later start time)
    assert keys(discovery.scan())[proc.ino("solo")] != old


def test_a_pinned_namespace_keeps_its_generation_whatever_its_processes(proc: FakeProc) -> None:
    discovery = NetnsDiscovery(str(proc.root))
    old = keys(discovery.scan())[proc.ino("solo")]
    proc.exit(200)
    proc.process(201, "solo")
    assert keys(discovery.scan(pinned={old}))[proc.ino("solo")] == old


def test_a_namespace_absent_for_one_scan_comes_back_new(proc: FakeProc) -> None:
    discovery = NetnsDiscovery(str(proc.root))
    old = keys(discovery.scan())[proc.ino("solo")]
    proc.exit(200)
    gone = discovery.scan(pinned={old})
    assert proc.ino("solo") not in keys(gone) and gone.dropped == (old,)
    proc.process(200, "solo")  # even the same pid and start time: it was gone for a scan
    assert keys(discovery.scan(pinned={old}))[proc.ino("solo")].generation > old.generation


def test_processes_that_exit_mid_scan_are_counted(proc: FakeProc) -> None:
    (proc.root / "104" / "ns" / "net").unlink()
    (proc.root / "104" / "ns" / "net").symlink_to(proc.root / "nsfs" / "deleted")  # dangling: ENOENT
    (proc.root / "not-a-pid").mkdir()
    scan = NetnsDiscovery(str(proc.root)).scan()
    assert (scan.processes, scan.vanished) == (10, 1)


def test_an_unreadable_proc_root_finds_nothing(tmp_path: Path) -> None:
    scan = NetnsDiscovery(str(tmp_path / "absent")).scan()
    assert scan.namespaces == () and scan.processes == 0


@pytest.mark.parametrize(
    ("was_present", "pinned", "live", "same"),
    [(False, True, 3, False), (True, True, 0, True), (True, False, 1, True), (True, False, 0, False)],
)
def test_the_continuity_rule(was_present: bool, pinned: bool, live: int, same: bool) -> None:
    assert continues(was_present, pinned, live) is same
