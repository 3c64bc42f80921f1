"""Socket inode -> owning process, by scanning /proc/<pid>/fd incrementally.

A full scan (readlink of every fd of every process) costs 7-8 us per socket, so it is done once; after
that a poll only lists fd directories and readlinks the fds it has not seen, plus the fds whose cached
socket has left the kernel's table (an fd number reused by accept() after a close() between two polls
would otherwise be missed: counting fds is not enough). Processes are keyed by (pid, start time in
ticks), so a recycled pid is a new process. When no socket is new and no process came or went, the
previous attribution is reused without touching /proc/<pid>/fd at all.

Races are normal: a process that exits mid-scan is skipped and counted; an fd directory we may not read
(not root) is counted as denied, and attribution is then partial.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import pwd
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import psutil

from tcpwatchd.model import AttributionStats, Owner
from tcpwatchd.sources.procfs import parse_cgroup, parse_stat, socket_inode

log = logging.getLogger(__name__)

ProcKey = tuple[int, int]  # (pid, start_ticks)
_GONE = (errno.ENOENT, errno.ESRCH)


@dataclass(slots=True)
class _Process:
    owner: Owner
    start_ticks: int
    fds: dict[str, int] = field(default_factory=dict)  # fd number -> socket inode (0: not a socket)


@dataclass(frozen=True, slots=True)
class Attribution:
    owners: Mapping[int, Owner]  # inode -> the counted owner (the oldest holder)
    stats: AttributionStats


class OwnerCache:
    """Keeps the fd tables seen so far and updates them from the socket inodes of each new snapshot."""

    def __init__(self, proc_root: str = "/proc", full_rescan_seconds: float = 300.0) -> None:
        self._root = proc_root
        self._procs: dict[ProcKey, _Process] = {}
        self._last_inodes: frozenset[int] = frozenset()
        self._last_list: Sequence[int] = ()
        self._prefetched = False  # fd tables read by prefetch() for the coming attribute()
        self._prefetch_stats = AttributionStats()
        self._last_pids: frozenset[str] = frozenset()
        self._last: Attribution | None = None
        self._full_rescan_seconds = full_rescan_seconds
        self._next_full = 0.0
        self._users: dict[int, str] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._boot = psutil.boot_time()

    def needs_full_scan(self) -> bool:
        return time.monotonic() >= self._next_full

    def prefetch(self) -> None:
        """Read every fd table now, so that the next `attribute` only catches up on what changed since.

        The poll runs this in a thread while netlink dumps the sockets: both are mostly kernel time
        (readlink, recv) spent outside the GIL, so on two cores the full scan costs little extra.
        Never raises: a failure leaves the full scan to `attribute`.
        """
        try:
            self._procs.clear()
            self._prefetch_stats = self._scan(_list_pids(self._root), frozenset())
        except Exception as e:  # the thread has no caller to raise to; attribute() rescans
            log.debug("fd table prefetch failed: %s", e)
            self._procs.clear()
            return
        self._next_full = time.monotonic() + self._full_rescan_seconds
        self._last = None
        self._prefetched = True

    def attribute(self, inodes: Sequence[int]) -> Attribution:
        """Owners for the given socket inodes (0s ignored)."""
        pids = frozenset(_list_pids(self._root))
        now = time.monotonic()
        full = now >= self._next_full
        if not full and self._last is not None and pids == self._last_pids and inodes == self._last_list:
            # The very same sockets and processes as last poll (compared in C): read nothing.
            stats = _stats(self._last.stats, self._last.owners, self._last_inodes, scanned=0)
            self._last = Attribution(self._last.owners, stats)
            return self._last
        self._last_list = inodes
        current = frozenset(inodes) - {0}
        if not full and self._last is not None and current <= self._last_inodes and pids == self._last_pids:
            # Nothing new: sockets only closed. Drop the closed ones, read nothing.
            owners = {i: o for i, o in self._last.owners.items() if i in current}
            stats = _stats(self._last.stats, owners, current, scanned=0)
            self._last, self._last_inodes = Attribution(owners, stats), current
            return self._last
        if full:
            self._procs.clear()  # fd numbers reused while the old socket lived on are caught here
            self._next_full = now + self._full_rescan_seconds
        if self._prefetched:
            # Read during this poll's dump (prefetch also reset _last, so nothing above returned): use as
            # is. A socket opened in between is unowned until the next poll, which sees an inode it does
            # not know and catches up.
            self._prefetched = False
            stats = self._prefetch_stats
        else:
            stats = self._scan(pids, current)
        owners = self._owners(current)
        stats = _stats(stats, owners, current, scanned=stats.processes_scanned)
        self._last, self._last_inodes, self._last_pids = Attribution(owners, stats), current, pids
        return self._last

    def _scan(self, pids: Iterable[str], current: frozenset[int]) -> AttributionStats:
        seen: dict[ProcKey, _Process] = {}
        denied = vanished = scanned = 0
        for pid_s in pids:
            try:
                key, proc = self._process(int(pid_s))
                self._refresh_fds(pid_s, proc, current)
                scanned += 1
            except PermissionError:
                denied += 1
                continue
            except (FileNotFoundError, ProcessLookupError, psutil.NoSuchProcess):
                vanished += 1  # exited mid-scan: normal
                continue
            except OSError as e:
                if e.errno in _GONE:
                    vanished += 1
                    continue
                raise
            seen[key] = proc
        self._procs = seen
        return AttributionStats(
            processes=len(seen) + denied,
            processes_scanned=scanned,
            processes_denied=denied,
            processes_vanished=vanished,
        )

    def _process(self, pid: int) -> tuple[ProcKey, _Process]:
        with open(f"{self._root}/{pid}/stat", "rb") as f:
            stat = parse_stat(f.read(4096))
        key = (pid, stat.start_ticks)
        proc = self._procs.get(key)
        if proc is None:
            proc = _Process(
                owner=self._new_owner(pid, stat.comm, stat.start_ticks), start_ticks=stat.start_ticks
            )
        elif proc.owner.name != stat.comm:
            # exec() and PR_SET_NAME rename a process without changing its pid or start time
            # (fs/exec.c, __set_task_comm): keep the identity, take the new name.
            proc.owner = dataclasses.replace(proc.owner, name=stat.comm)
        return key, proc

    def _new_owner(self, pid: int, comm: str, start_ticks: int) -> Owner:
        try:
            uid = os.stat(f"{self._root}/{pid}").st_uid
        except FileNotFoundError:
            raise
        try:
            with open(f"{self._root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
                cg = parse_cgroup(f.read(65536))
        except (PermissionError, FileNotFoundError):
            cg = parse_cgroup("")
        return Owner(
            pid=pid,
            name=comm,
            start_time=self._boot + start_ticks / self._ticks,
            user=self._user(uid),
            unit=cg.unit,
            container=cg.container,
        )

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _refresh_fds(self, pid_s: str, proc: _Process, current: frozenset[int]) -> None:
        # Through a directory fd: readlink then resolves one name, not the whole /proc/<pid>/fd path.
        dir_fd = os.open(f"{self._root}/{pid_s}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            proc.fds = _read_fds(dir_fd, proc.fds, current)
        finally:
            os.close(dir_fd)

    def _owners(self, current: frozenset[int]) -> dict[int, Owner]:
        """inode -> oldest holder: a socket shared after fork is counted once, under its parent."""
        best: dict[int, _Process] = {}
        for proc in self._procs.values():
            for inode in proc.fds.values():
                if inode and inode in current:
                    other = best.get(inode)
                    if other is None or (proc.start_ticks, proc.owner.pid) < (
                        other.start_ticks,
                        other.owner.pid,
                    ):
                        best[inode] = proc
        return {inode: proc.owner for inode, proc in best.items()}


def _read_fds(dir_fd: int, old: Mapping[str, int], current: frozenset[int]) -> dict[str, int]:
    fds: dict[str, int] = {}
    readlink = os.readlink
    for name in os.listdir(dir_fd):
        inode = old.get(name)
        # Re-read an fd we have not seen, or whose socket left the table (the number may be reused).
        if inode is None or (inode and inode not in current):
            try:
                inode = socket_inode(readlink(name, dir_fd=dir_fd))
            except FileNotFoundError:
                continue  # closed between listdir and readlink
        fds[name] = inode
    return fds


def _list_pids(root: str) -> list[str]:
    return [e.name for e in os.scandir(root) if e.name.isdigit()]


def _stats(
    base: AttributionStats, owners: Mapping[int, Owner], current: frozenset[int], scanned: int
) -> AttributionStats:
    return AttributionStats(
        processes=base.processes,
        processes_scanned=scanned,
        processes_denied=base.processes_denied,
        processes_vanished=base.processes_vanished if scanned else 0,
        sockets_unowned=len(current) - len(owners),
    )
